package pool

import (
	"slices"
	"strconv"
	"testing"
)

// names lists the set from most to least recently used.
func names(s *StatementSet) []string {
	var out []string
	for e := s.order.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*statement).name)
	}
	return out
}

func TestStatementSetZeroValue(t *testing.T) {
	var s StatementSet
	if s.Len() != 0 || s.Has("a") {
		t.Fatal("zero StatementSet is not empty")
	}
	s.Remove("a") // no panic on a nil map
	s.Clear()
	if got := s.Add("a", 2, 0); got != nil {
		t.Fatalf("Add on empty set evicted %q", got)
	}
	if !s.Has("a") || s.Len() != 1 {
		t.Fatal("Add did not record the statement")
	}
}

func TestStatementSetLRUEviction(t *testing.T) {
	var s StatementSet
	for _, n := range []string{"a", "b", "c"} {
		if ev := s.Add(n, 3, 0); len(ev) != 0 {
			t.Fatalf("Add(%q) evicted %q below the limit", n, ev)
		}
	}
	if got, want := names(&s), []string{"c", "b", "a"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	// Beyond max: the least recently used goes.
	if ev := s.Add("d", 3, 0); !slices.Equal(ev, []string{"a"}) {
		t.Fatalf("Add(d) evicted %q, want a", ev)
	}
	if s.Has("a") || s.Len() != 3 {
		t.Fatalf("a still present or wrong Len %d", s.Len())
	}
	// Has refreshes recency: b becomes the most recent, c the oldest.
	if !s.Has("b") {
		t.Fatal("Has(b) = false")
	}
	if got, want := names(&s), []string{"b", "d", "c"}; !slices.Equal(got, want) {
		t.Fatalf("order after Has(b) %v, want %v", got, want)
	}
	if ev := s.Add("e", 3, 0); !slices.Equal(ev, []string{"c"}) {
		t.Fatalf("Add(e) evicted %q, want c (b was refreshed by Has)", ev)
	}
	// Re-adding an existing name refreshes it and evicts nothing.
	if ev := s.Add("d", 3, 0); len(ev) != 0 {
		t.Fatalf("re-Add(d) evicted %q", ev)
	}
	if got, want := names(&s), []string{"d", "e", "b"}; !slices.Equal(got, want) {
		t.Fatalf("order after re-Add(d) %v, want %v", got, want)
	}
}

func TestStatementSetUnbounded(t *testing.T) {
	var s StatementSet
	for i := range 1000 {
		if ev := s.Add("s"+strconv.Itoa(i), 0, 0); len(ev) != 0 {
			t.Fatalf("max 0 evicted %q", ev)
		}
	}
	if s.Len() != 1000 {
		t.Fatalf("Len %d, want 1000", s.Len())
	}
}

func TestStatementSetRemoveClear(t *testing.T) {
	var s StatementSet
	s.Add("a", 10, 0)
	s.Add("b", 10, 0)
	s.Add("c", 10, 0)
	s.Remove("b")
	s.Remove("nope")
	if s.Has("b") || s.Len() != 2 {
		t.Fatalf("Remove(b): Has=%v Len=%d", s.Has("b"), s.Len())
	}
	if got, want := names(&s), []string{"c", "a"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	// Removed entries are not evicted later.
	if ev := s.Add("d", 2, 0); !slices.Equal(ev, []string{"a"}) {
		t.Fatalf("Add(d, 2) evicted %q, want a", ev)
	}
	s.Clear()
	if s.Len() != 0 || s.Has("c") || s.Has("d") || s.order.Len() != 0 {
		t.Fatalf("Clear left Len=%d order=%d", s.Len(), s.order.Len())
	}
	// Usable after Clear.
	s.Add("x", 1, 0)
	if ev := s.Add("y", 1, 0); !slices.Equal(ev, []string{"x"}) {
		t.Fatalf("after Clear, Add(y, 1) evicted %q, want x", ev)
	}
	if got, want := names(&s), []string{"y"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

// A Parse skipped in a failed batch leaves nothing on the server; a Parse
// of the same name in a later batch must not be undone by the failure.
func TestStatementSetPending(t *testing.T) {
	var s StatementSet
	s.Add("a", 0, 1)
	if ok, batch := s.Lookup("a"); !ok || batch != 1 {
		t.Fatalf("Lookup after Add in batch 1: %v %d", ok, batch)
	}
	s.Add("a", 0, 2) // parsed again in batch 2 before batch 1 failed
	s.RemoveFailed("a", 1)
	if ok, batch := s.Lookup("a"); !ok || batch != 2 {
		t.Fatalf("batch 1's failure removed the Parse of batch 2: %v %d", ok, batch)
	}
	s.Confirm("a")
	if ok, batch := s.Lookup("a"); !ok || batch != 0 {
		t.Fatalf("after Confirm: %v %d", ok, batch)
	}
	s.RemoveFailed("a", 2)
	if !s.Has("a") {
		t.Fatal("a confirmed statement was removed as failed")
	}
	s.Add("b", 0, 3)
	s.RemoveFailed("b", 3)
	if s.Has("b") {
		t.Fatal("a failed Parse left its statement")
	}
}

// A lowered limit is enforced at the next Add: every statement over it
// goes, least recently used first.
func TestStatementSetLoweredLimit(t *testing.T) {
	var s StatementSet
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		s.Add(n, 10, 0)
	}
	if ev := s.Add("f", 2, 0); !slices.Equal(ev, []string{"a", "b", "c", "d"}) {
		t.Fatalf("Add under a lowered limit evicted %v, want a b c d", ev)
	}
	if got, want := names(&s), []string{"f", "e"}; !slices.Equal(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
}

func TestStatementSetSessionBound(t *testing.T) {
	var s StatementSet
	s.Add("shared", 10, 0)
	s.Add("beside_temp", 10, 0)
	s.MarkSessionBound("beside_temp")
	s.MarkSessionBound("unknown") // no-op
	s.Add("shared2", 10, 0)
	got := s.TakeSessionBound()
	if len(got) != 1 || got[0] != "beside_temp" {
		t.Fatalf("TakeSessionBound = %v, want [beside_temp]", got)
	}
	if s.Has("beside_temp") || !s.Has("shared") || !s.Has("shared2") || s.Len() != 2 {
		t.Fatalf("after TakeSessionBound: len %d", s.Len())
	}
	if got := s.TakeSessionBound(); len(got) != 0 {
		t.Fatalf("second TakeSessionBound = %v", got)
	}
}

// TestStatementShape: a recorded shape belongs to the statement as
// parsed; parsing the name again forgets it, and so does removing it.
func TestStatementShape(t *testing.T) {
	var s StatementSet
	s.Add("a", 10, 0)
	if s.Shape("a") != 0 || s.Shape("missing") != 0 {
		t.Fatal("a shape before any was recorded")
	}
	s.SetShape("a", 42)
	s.SetShape("missing", 7)
	if s.Shape("a") != 42 || s.Shape("missing") != 0 {
		t.Fatalf("shapes a=%d missing=%d, want 42 and 0", s.Shape("a"), s.Shape("missing"))
	}
	s.Add("a", 10, 3)
	if s.Shape("a") != 0 {
		t.Fatal("a Parse again kept the old statement's shape")
	}
	s.SetShape("a", 43)
	s.Remove("a")
	s.Add("a", 10, 0)
	if s.Shape("a") != 0 {
		t.Fatal("a removed statement's shape came back")
	}
}

func TestStatementSetClearExcept(t *testing.T) {
	var s StatementSet
	for _, name := range []string{"a", "b", "c"} {
		s.Add(name, 10, 0)
	}
	s.ClearExcept([]string{"c"})
	if s.Len() != 1 || !s.Has("c") || s.Has("a") || s.Has("b") {
		t.Fatalf("after ClearExcept(c): %d statements, has a %v b %v c %v", s.Len(), s.Has("a"), s.Has("b"), s.Has("c"))
	}
	if evicted := s.Add("d", 1, 0); len(evicted) != 1 || evicted[0] != "c" {
		t.Fatalf("the LRU order survives: evicted %v, want [c]", evicted)
	}
	s.ClearExcept(nil)
	if s.Len() != 0 {
		t.Fatalf("ClearExcept(nil) left %d", s.Len())
	}
}
