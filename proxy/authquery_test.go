package proxy

import (
	"strconv"
	"testing"
	"time"
)

// The auth.query cache holds unknown users too, so it is bounded: expired
// answers make room first, then arbitrary ones.
func TestAuthQueryCacheBounded(t *testing.T) {
	aq := newAuthQuery()
	now := time.Now()
	live := authQueryEntry{expires: now.Add(time.Hour)}
	expired := authQueryEntry{expires: now.Add(-time.Second)}
	for i := range maxAuthQueryCache - 1 {
		aq.store("old"+strconv.Itoa(i), expired, now)
	}
	aq.store("keep", live, now)
	aq.store("new", live, now) // full: the expired answers go
	if n := len(aq.cache); n != 2 {
		t.Fatalf("%d cached answers after pruning, want the 2 live ones", n)
	}
	for i := range 2 * maxAuthQueryCache {
		aq.store("u"+strconv.Itoa(i), live, now)
	}
	if n := len(aq.cache); n > maxAuthQueryCache {
		t.Fatalf("%d cached answers, bound %d", n, maxAuthQueryCache)
	}
	if _, ok := aq.cached("u"+strconv.Itoa(2*maxAuthQueryCache-1), now); !ok {
		t.Fatal("the newest answer was not kept")
	}
	aq.forget("", "x") // absent: no effect
	aq.store(authQueryKey("db", "x"), live, now)
	aq.forget("db", "x")
	if _, ok := aq.cached(authQueryKey("db", "x"), now); ok {
		t.Fatal("forget left the answer")
	}
}
