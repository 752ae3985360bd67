package integration

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// stallRelay forwards TCP connections to a server, or, once stalled,
// accepts new ones and leaves them unanswered: a server too busy to take a
// connection, seen from the proxy. Everything ends with the test.
type stallRelay struct {
	port    int
	stalled atomic.Bool
	mu      sync.Mutex
	held    []net.Conn
}

func (r *stallRelay) heldCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}

// dropHeld closes the connections left unanswered while stalled.
func (r *stallRelay) dropHeld() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.held {
		c.Close()
	}
	r.held = nil
}

func newStallRelay(t *testing.T, target string) *stallRelay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &stallRelay{port: l.Addr().(*net.TCPAddr).Port}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if conns == nil {
			return false // closing
		}
		conns = append(conns, c)
		return true
	}
	conns = []net.Conn{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if !track(c) {
				c.Close()
				return
			}
			if r.stalled.Load() {
				r.mu.Lock()
				r.held = append(r.held, c) // never answered: dropHeld or cleanup closes it
				r.mu.Unlock()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil || !track(up) {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	})
	return r
}
