package pool

import (
	"context"
	"testing"
	"time"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// A dedicated backend logs in like the pool's, with its own parameters
// on top, and stays outside the pool: no slot, no min_idle warming of a
// pool nobody asked a backend of, and cancels reach it.
func TestOpenDedicated(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	opts := testOptions(t, srv, 1)
	opts.Pool.MinIdle = 1
	p := newPool(t, opts)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := p.OpenDedicated(ctx, map[string]string{"application_name": "dedicated"})
	if err != nil {
		t.Fatalf("OpenDedicated: %v", err)
	}
	defer p.CloseDedicated(b)
	if got, _ := query(t, b, "SHOW application_name"); len(got) != 1 || got[0] != "dedicated" {
		t.Errorf("application_name = %v, want the dedicated parameter over the pool's", got)
	}
	if got, _ := query(t, b, "SHOW plan_cache_mode"); len(got) != 1 || got[0] != "force_custom_plan" {
		t.Errorf("plan_cache_mode = %v, want the pool's injected parameter", got)
	}

	p.Tick(time.Now())
	time.Sleep(200 * time.Millisecond)
	if s := p.Stats(); s.Idle+s.Active+s.Opening != 0 {
		t.Errorf("Stats = %+v: the dedicated backend counted, or min_idle warmed a pool no client used", s)
	}
	// The pool's one slot is free for a client meanwhile.
	p.Release(acquire(t, p))

	done := make(chan error, 1)
	go func() {
		_, err := SimpleQuery(b, "SELECT pg_sleep(30)", nil)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if err := p.Cancel(ctx, b); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	select {
	case err := <-done:
		if qe, ok := err.(*QueryError); !ok || qe.Code != "57014" {
			t.Errorf("cancelled query: %v, want 57014", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancel did not reach the dedicated backend")
	}
}
