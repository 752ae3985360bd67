package integration

import (
	"bytes"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestRepliesRelayedWithoutHandOff: in transaction pooling, a client's
// Sync-terminated requests (simple queries, prepared and unnamed extended
// ones) are answered by the client's own goroutine, with no reply pump
// handing messages over between goroutines (issue #8: no goroutine
// hand-off per message). Goroutine stacks are sampled throughout; session
// pooling, whose pump relays notifications, is the control that the
// sampling sees a pump when there is one.
func TestRepliesRelayedWithoutHandOff(t *testing.T) {
	leakCheck(t)
	for _, tc := range []struct {
		mode     string
		wantPump bool
	}{{"transaction", false}, {"session", true}} {
		t.Run(tc.mode, func(t *testing.T) {
			e := startProxy(t, proxyOpts{mode: tc.mode, size: 4})
			ctx := testCtx(t)
			const clients, rounds = 4, 150
			conns := make([]*pgx.Conn, clients)
			for i := range conns {
				conns[i] = e.connect(ctx)
			}

			var samples, withPump atomic.Int64
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				buf := make([]byte, 1<<20)
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
					n := runtime.Stack(buf, true)
					samples.Add(1)
					if bytes.Contains(buf[:n], []byte("proxy.(*session).pump(")) {
						withPump.Add(1)
					}
				}
			}()

			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := range rounds {
						var got int
						var err error
						switch r % 3 {
						case 0:
							err = c.QueryRow(ctx, "SELECT $1::int", r).Scan(&got)
						case 1:
							err = c.QueryRow(ctx, "SELECT $1::int", pgx.QueryExecModeSimpleProtocol, r).Scan(&got)
						default:
							err = c.QueryRow(ctx, "SELECT $1::int + 0", pgx.QueryExecModeDescribeExec, r).Scan(&got)
						}
						if err == nil && got != r {
							t.Errorf("client %d round %d: got %d", i, r, got)
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(stop)
			<-sampled
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if samples.Load() < 20 {
				t.Fatalf("only %d stack samples: the traffic ended too soon to tell", samples.Load())
			}
			if got := withPump.Load() > 0; got != tc.wantPump {
				t.Fatalf("%s pooling: reply pump seen in %d of %d samples, want pump: %v", tc.mode, withPump.Load(), samples.Load(), tc.wantPump)
			}
		})
	}
}
