package integration

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestUnixSocketListener: psql-style clients reach pgrecycle through
// listen.unix_socket_dir as DIR/.s.PGSQL.PORT.
func TestUnixSocketListener(t *testing.T) {
	leakCheck(t)
	o, dir, port := withUnixSocket(t, proxyOpts{})
	e := startProxy(t, o)
	ctx := testCtx(t)
	c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=app", dir, port))
	if err != nil {
		t.Fatalf("connect over the unix socket: %v", err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(ctx, "SELECT 7").Scan(&n); err != nil || n != 7 {
		t.Fatalf("query over the unix socket: %v", err)
	}
	// Logs name the socket, not the peer's empty address ("@").
	entries := e.logs.FilterMessage("client logged in").All()
	if len(entries) == 0 {
		t.Fatal("no login logged")
	}
	if got, want := entries[len(entries)-1].ContextMap()["client"], "unix:"+filepath.Join(dir, fmt.Sprintf(".s.PGSQL.%d", port)); got != want {
		t.Fatalf("client logged as %v, want %q", got, want)
	}
}

// TestSessionModeResetsBackendBetweenClients: in session pooling the
// server_reset_query (DISCARD ALL) runs before a backend serves another
// client, so no session state leaks.
func TestSessionModeResetsBackendBetweenClients(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "session", size: 1})
	ctx := testCtx(t)
	a, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app"))
	if err != nil {
		t.Fatal(err)
	}
	var pidA uint32
	if err := a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pidA); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE TEMP TABLE leak (x int)", "SET work_mem = '3MB'", "PREPARE leaky AS SELECT 1"} {
		if _, err := a.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	a.Close(ctx)
	b := e.connect(ctx)
	var pidB uint32
	if err := b.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pidB); err != nil {
		t.Fatal(err)
	}
	if pidA != pidB {
		t.Fatalf("session pool of size 1 used a new backend (%d then %d): the reset path closed it", pidA, pidB)
	}
	var n int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE name = 'leaky'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d prepared statements leaked from the previous client", n)
	}
	var wm string
	if err := b.QueryRow(ctx, "SHOW work_mem").Scan(&wm); err != nil || wm == "3MB" {
		t.Fatalf("work_mem leaked: %q %v", wm, err)
	}
	if err := b.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'leak'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("temp table leaked: %d %v", n, err)
	}
}

// TestSessionEndLogged: one log line per session end, with its duration
// and counts.
func TestSessionEndLogged(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{})
	ctx := testCtx(t)
	c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app", "default_query_exec_mode=simple_protocol"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	c.Close(ctx)
	deadline := time.Now().Add(3 * time.Second)
	for e.logs.FilterMessage("session ended").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	entries := e.logs.FilterMessage("session ended").All()
	if len(entries) != 1 {
		t.Fatalf("%d session-end lines, want 1", len(entries))
	}
	m := entries[0].ContextMap()
	if m["queries"] != int64(3) || m["transactions"] != int64(3) {
		t.Fatalf("session end counts: %v", m)
	}
	if _, ok := m["duration"]; !ok {
		t.Fatalf("no duration in %v", m)
	}
}

// TestReusePortHandover: two pgrecycle processes share one port with
// so_reuseport; when the old one drains and stops, clients keep
// connecting to the new one.
func TestReusePortHandover(t *testing.T) {
	leakCheck(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	old := startProxy(t, proxyOpts{addr: addr, listenExtra: "so_reuseport = true\n"})
	_ = startProxy(t, proxyOpts{addr: addr, listenExtra: "so_reuseport = true\n"})
	ctx := testCtx(t)
	old.srv.Shutdown()
	for i := 0; i < 20; i++ {
		c, err := pgx.Connect(ctx, old.dsn("postgres", "x", "app"))
		if err != nil {
			t.Fatalf("connect %d after the old process stopped: %v", i, err)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)
	}
}
