package integration

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stallRelay forwards TCP connections to a server, or, once stalled,
// accepts new ones and leaves them unanswered: a server too busy to take a
// connection, seen from the proxy. Everything ends with the test.
type stallRelay struct {
	port    int
	stalled atomic.Bool
	// frozen stops the relayed connections reading either way: a server
	// that stopped reading, or a network that stopped carrying.
	frozen atomic.Bool
	closed atomic.Bool
	mu     sync.Mutex
	held   []net.Conn
}

// relay copies src to dst, pausing while the relay is frozen.
func (r *stallRelay) relay(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		for r.frozen.Load() && !r.closed.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
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
			go func() { defer wg.Done(); r.relay(up, c) }()
			go func() { defer wg.Done(); r.relay(c, up) }()
		}
	}()
	t.Cleanup(func() {
		r.closed.Store(true)
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
