//go:build linux

package sockio

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func rawConn(t *testing.T, c net.Conn) syscall.RawConn {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// collect waits up to d and returns the tokens reported.
func collect(t *testing.T, w *Watcher, d time.Duration) (got []uint64, closed bool) {
	t.Helper()
	closed, err := w.Wait(d, func(tok uint64) { got = append(got, tok) })
	if err != nil {
		t.Fatal(err)
	}
	return got, closed
}

func TestWatcherReportsOnceWhenReadable(t *testing.T) {
	w, err := NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Free()
	c, s := pair(t)
	const tok = 1<<40 + 7 // both halves of the epoll data word are used
	if err := w.Watch(rawConn(t, c), tok); err != nil {
		t.Fatal(err)
	}
	if got, _ := collect(t, w, 20*time.Millisecond); len(got) != 0 {
		t.Fatalf("reported %v before any data", got)
	}
	_, _ = s.Write([]byte("x"))
	if got, _ := collect(t, w, time.Second); len(got) != 1 || got[0] != tok {
		t.Fatalf("reported %v, want [%d]", got, uint64(tok))
	}
	// One-shot: the unread byte is not reported again until re-armed.
	if got, _ := collect(t, w, 20*time.Millisecond); len(got) != 0 {
		t.Fatalf("reported %v again without a new Watch", got)
	}
	if err := w.Watch(rawConn(t, c), tok); err != nil { // EEXIST -> MOD
		t.Fatal(err)
	}
	if got, _ := collect(t, w, time.Second); len(got) != 1 {
		t.Fatalf("re-armed watch reported %v", got)
	}
}

func TestWatcherReportsHangUpAndUnwatch(t *testing.T) {
	w, err := NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Free()
	c1, s1 := pair(t)
	c2, s2 := pair(t)
	_ = w.Watch(rawConn(t, c1), 1)
	_ = w.Watch(rawConn(t, c2), 2)
	w.Unwatch(rawConn(t, c2))
	_ = s2.Close()
	_ = s1.Close()
	got, _ := collect(t, w, time.Second)
	if len(got) != 1 || got[0] != 1 {
		t.Fatalf("reported %v, want only the watched hung-up socket [1]", got)
	}
}

func TestWatcherClose(t *testing.T) {
	w, err := NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Free()
	done := make(chan bool)
	go func() {
		_, closed := collect(t, w, 10*time.Second)
		done <- closed
	}()
	time.Sleep(20 * time.Millisecond)
	w.Close()
	select {
	case closed := <-done:
		if !closed {
			t.Fatal("Wait returned without reporting closed")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not end a blocked Wait")
	}
	if _, closed := collect(t, w, 0); !closed {
		t.Fatal("a Wait after Close did not report closed")
	}
	if err := w.Watch(nil, 0); err == nil {
		t.Fatal("token 0 accepted")
	}
}

// TestWatcherWaitHoldsNoThread: a Wait parks its goroutine on the
// netpoller. A Wait blocked in epoll_wait would hold an OS thread each
// (and wake sysmon each time it returned).
func TestWatcherWaitHoldsNoThread(t *testing.T) {
	const waiters = 16
	ws := make([]*Watcher, waiters)
	for i := range ws {
		w, err := NewWatcher()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Free()
		ws[i] = w
	}
	before := threadCount(t)
	done := make(chan bool, waiters)
	for _, w := range ws {
		go func() {
			closed, err := w.Wait(10*time.Second, func(uint64) {})
			done <- closed && err == nil
		}()
	}
	time.Sleep(100 * time.Millisecond)
	during := threadCount(t)
	for _, w := range ws {
		w.Close()
	}
	for range ws {
		if !<-done {
			t.Fatal("a Wait ended by Close did not report closed")
		}
	}
	if during-before >= waiters/2 {
		t.Fatalf("%d waiting watchers took %d threads (%d before, %d while waiting)", waiters, during-before, before, during)
	}
}

// TestWatcherWaitTimesOut: a Wait with nothing to report returns at its
// timeout, not before, and reports nothing.
func TestWatcherWaitTimesOut(t *testing.T) {
	w, err := NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Free()
	start := time.Now()
	got, closed := collect(t, w, 50*time.Millisecond)
	if len(got) != 0 || closed {
		t.Fatalf("reported %v, closed %v, with nothing watched", got, closed)
	}
	if waited := time.Since(start); waited < 40*time.Millisecond {
		t.Fatalf("Wait returned after %v, before its 50ms timeout", waited)
	}
}

func threadCount(t *testing.T) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	return len(tasks)
}
