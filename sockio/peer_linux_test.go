//go:build linux

package sockio

import (
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPeerClosed: a live peer is not closed, with or without data waiting;
// a peer that wrote and then closed (a client's Terminate), or reset, is.
func TestPeerClosed(t *testing.T) {
	c, peer := pair(t)
	if PeerClosed(c) {
		t.Fatal("PeerClosed on a live connection")
	}
	if _, err := peer.Write([]byte("X\x00\x00\x00\x04")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if PeerClosed(c) {
		t.Fatal("PeerClosed with data waiting from a live peer")
	}
	peer.Close()
	waitPeerClosed(t, c)

	c2, peer2 := pair(t)
	_ = peer2.(*net.TCPConn).SetLinger(0)
	peer2.Close() // reset
	waitPeerClosed(t, c2)
	if PeerClosed(peer) {
		t.Fatal("PeerClosed on a connection closed at this end: it can't tell, so false")
	}
}

func waitPeerClosed(t *testing.T, c net.Conn) {
	t.Helper()
	waitUntil(t, c, PeerClosed, "PeerClosed false after the peer closed")
}

// waitUntil polls check on c for up to 2 s: the kernel's view of a peer's
// write or close arrives a moment after it.
func waitUntil(t *testing.T, c net.Conn, check func(net.Conn) bool, failure string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !check(c); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(failure)
		}
	}
}

// TestHasDataOrEOF: an idle live socket has nothing; data waiting is seen
// and left in place; so are the peer's close, a reset and a local close.
func TestHasDataOrEOF(t *testing.T) {
	c, peer := pair(t)
	if HasDataOrEOF(c) {
		t.Fatal("HasDataOrEOF on an idle live connection")
	}
	if _, err := peer.Write([]byte("N")); err != nil {
		t.Fatal(err)
	}
	waitHasData(t, c)
	var b [1]byte
	if n, err := c.Read(b[:]); n != 1 || err != nil || b[0] != 'N' {
		t.Fatalf("the peeked byte was consumed: read %d %q %v", n, b[:n], err)
	}
	if HasDataOrEOF(c) {
		t.Fatal("HasDataOrEOF after the data was read")
	}
	peer.Close()
	waitHasData(t, c)

	c2, peer2 := pair(t)
	_ = peer2.(*net.TCPConn).SetLinger(0)
	peer2.Close()
	waitHasData(t, c2)

	c3, _ := pair(t)
	c3.Close()
	if !HasDataOrEOF(c3) {
		t.Fatal("HasDataOrEOF false on a connection closed here")
	}

	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if HasDataOrEOF(p1) {
		t.Fatal("HasDataOrEOF true for a connection without a socket")
	}
}

func waitHasData(t *testing.T, c net.Conn) {
	t.Helper()
	waitUntil(t, c, HasDataOrEOF, "HasDataOrEOF stayed false")
}

// TestChecksDoNotWakeTheRuntime: the checks, and a park's Watch and
// Unwatch, are made while the proxy is otherwise idle (a pinned client's
// backend, a backend handed out after a pause, a client going idle). A
// system call made through the scheduler at such a moment wakes the
// runtime's sysmon thread, which then polls for a while: two or more extra
// thread switches per check, counted here against the same loop without
// the checks. A scheduled peek is measured too, to show the count
// can see the difference on this machine.
func TestChecksDoNotWakeTheRuntime(t *testing.T) {
	c, _ := pair(t)
	w, err := NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Free()
	rc := rawConn(t, c)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const rounds = 200
	measure := func(check func()) int {
		check()
		time.Sleep(5 * time.Millisecond)
		before := threadSwitches(t)
		for range rounds {
			check()
			time.Sleep(time.Millisecond) // every P idle: sysmon goes to its deep sleep
		}
		return threadSwitches(t) - before
	}
	scheduledPeek := func() {
		_ = rc.Control(func(fd uintptr) {
			var b [1]byte
			_, _, _ = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		})
	}
	base := measure(func() {})
	ours := measure(func() {
		_ = HasDataOrEOF(c)
		_ = PeerClosed(c)
		_ = w.Watch(rc, 1) // a client parks
		w.Unwatch(rc)      // and resumes
	})
	scheduled := measure(scheduledPeek)
	t.Logf("thread switches over %d rounds: no check %d, the checks and a watch %d, scheduled peek %d", rounds, base, ours, scheduled)
	if scheduled < base+rounds/2 {
		t.Skipf("a scheduled system call does not wake the runtime here (%d vs %d switches): nothing to compare", scheduled, base)
	}
	if ours >= (base+scheduled)/2 {
		t.Fatalf("the checks cost %d thread switches over %d rounds, the loop alone %d: they wake the runtime", ours, rounds, base)
	}
}

// threadSwitches sums the voluntary context switches of this process's
// threads.
func threadSwitches(t *testing.T) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
		if err != nil {
			continue // the thread exited
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				total += n
			}
		}
	}
	return total
}
