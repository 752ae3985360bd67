package integration

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// TestCancelRequestFlood: a burst of CancelRequests with made-up keys
// cancels nothing, costs bounded resources, and the proxy keeps serving.
func TestCancelRequestFlood(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{})
	ctx := testCtx(t)
	c := e.connect(ctx)
	addr := net.JoinHostPort(e.host, fmt.Sprint(e.port))
	err := parallel(8, func(int) error {
		for i := 0; i < 100; i++ {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return err
			}
			msg := make([]byte, 16)
			binary.BigEndian.PutUint32(msg[0:], 16)
			binary.BigEndian.PutUint32(msg[4:], 80877102)
			binary.BigEndian.PutUint32(msg[8:], rand.Uint32())
			binary.BigEndian.PutUint32(msg[12:], rand.Uint32())
			_, _ = conn.Write(msg)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			var one [1]byte
			_, _ = conn.Read(one[:]) // the proxy closes the connection
			conn.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("proxy not serving after a cancel flood: %v", err)
	}
}

// TestHalfMessageStallHarmsNoOne: a client that sends half a message and
// stalls holds no backend from the others, and leaves cleanly.
func TestHalfMessageStallHarmsNoOne(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	staller := e.connect(ctx)
	raw := staller.PgConn().Conn()
	// A Query message announcing 1000 bytes, of which 10 arrive.
	head := []byte{'Q', 0, 0, 0x03, 0xec}
	if _, err := raw.Write(append(head, []byte("SELECT 1; ")...)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	other := e.connect(ctx)
	var n int
	if err := other.QueryRow(ctx, "SELECT 2").Scan(&n); err != nil || n != 2 {
		t.Fatalf("other client blocked by a stalled half message: %v", err)
	}
	raw.Close()
}

// TestServerCheckQueryRuns: with server_check_delay = 0 every reuse of an
// idle backend runs server_check_query first.
func TestServerCheckQueryRuns(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1, dbExtra: "[databases.app.pool]\nserver_check_delay = \"0s\"\nserver_check_query = \"SELECT set_config('pgrecycle.checked', 'yes', false)\"\n"})
	ctx := testCtx(t)
	c := e.connect(ctx)
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil { // the backend is now idle and old enough
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	var v string
	if err := c.QueryRow(ctx, "SELECT coalesce(current_setting('pgrecycle.checked', true), 'no')").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != "yes" {
		t.Fatalf("server_check_query did not run before reuse (checked = %q)", v)
	}
}
