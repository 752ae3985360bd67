package proxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/pool"
)

// fuzzServer is a proxy whose only database points at a closed port, so
// every path up to the backend connect runs without PostgreSQL.
func fuzzServer(t testing.TB) *Server {
	cfg := config.Default()
	cfg.Auth.Type = "trust"
	cfg.Listen.ClientLoginTimeout = config.Duration(50 * time.Millisecond)
	db := cfg.NewDatabase("app", "127.0.0.1")
	db.Port = 1
	db.Pool.QueryWaitTimeout = config.Duration(20 * time.Millisecond)
	db.Pool.ServerConnectTimeout = config.Duration(20 * time.Millisecond)
	cfg.Databases = map[string]*config.Database{"app": db}
	srv, err := New(Options{Config: cfg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func startupPacket(params ...string) []byte {
	var body []byte
	body = binary.BigEndian.AppendUint32(body, 196608)
	for _, p := range params {
		body = append(body, p...)
		body = append(body, 0)
	}
	body = append(body, 0)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}

// FuzzClientStartup feeds arbitrary bytes to a session as a client would:
// the session must answer or close within its login timeout, never panic,
// and only ever write well-framed messages (or the one-byte SSL answers).
func FuzzClientStartup(f *testing.F) {
	f.Add(startupPacket("user", "u", "database", "app"))
	f.Add(startupPacket("user", "u", "database", "nope"))
	f.Add(append([]byte{0, 0, 0, 8, 4, 210, 22, 47}, startupPacket("user", "u")...)) // SSLRequest then startup
	f.Add([]byte{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 0, 0, 0, 2})               // CancelRequest
	f.Add(startupPacket("user", "u", "options", "-c search_path=x --work-mem=1MB"))
	f.Add(startupPacket("user", "u", "replication", "true"))
	f.Add([]byte{0x16, 3, 1, 0, 5})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		srv := fuzzServer(t)
		defer srv.Close()
		client, server := net.Pipe()
		sess := newSession(srv, server)
		done := make(chan struct{})
		go sess.run(func() { close(done) })
		go func() {
			_, _ = client.Write(in)
		}()
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		out, _ := io.ReadAll(client)
		_ = client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("session did not end")
		}
		checkFraming(t, out)
	})
}

// checkFraming checks a server byte stream: optional single-byte SSL/GSS
// answers, then typed messages with sane lengths.
func checkFraming(t *testing.T, out []byte) {
	for len(out) > 0 && (out[0] == 'N' || out[0] == 'S') && (len(out) == 1 || out[1] != 0) {
		out = out[1:]
	}
	for len(out) > 0 {
		if len(out) < 5 {
			t.Fatalf("truncated message header %q", out)
		}
		n := int(binary.BigEndian.Uint32(out[1:5]))
		if n < 4 || n-4 > len(out)-5 {
			t.Fatalf("bad message length %d for %q", n, out[0])
		}
		out = out[1+n:]
	}
}

func FuzzParseOptions(f *testing.F) {
	f.Add("-c search_path=a,b --statement-timeout=5s")
	f.Add(`-c x=a\ b -cY=1`)
	f.Add("-e")
	f.Fuzz(func(t *testing.T, s string) {
		opts, err := parseOptions(s)
		if err != nil {
			return
		}
		for k := range opts {
			if bytes.ContainsRune([]byte(k), '-') {
				t.Fatalf("option name %q keeps a dash", k)
			}
		}
	})
}

func FuzzStatementReset(f *testing.F) {
	f.Add([]byte("DEALLOCATE foo\x00"))
	f.Add([]byte("deallocate prepare \"Foo\"\"x\";\x00"))
	f.Add([]byte("DISCARD ALL\x00"))
	f.Add([]byte("DEALLOCATE ALL\x00"))
	f.Add([]byte("DEALLOCATE a; DEALLOCATE ALL\x00"))
	f.Add([]byte("RESET ALL; RESET \"TimeZone\"\x00"))
	f.Add([]byte("CREATE DATABASE c WITH OWNER 'x' TEMPLATE = \"t\"\x00"))
	f.Add([]byte("SET TIME ZONE LOCAL; SET x=DEFAULT; RESET TIME ZONE\x00"))
	f.Add([]byte("select * into temp t from pg_temp.x, set_config('a', 'b', false)"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if name := blockingDatabase(b); name != "" && !bytes.Contains(bytes.ToLower(b), []byte("database")) {
			t.Fatalf("blockingDatabase found %q without a DATABASE", name)
		}
		if targets, ok := parseDeallocates(b); ok && len(targets) < 2 {
			t.Fatalf("parseDeallocates accepted %d statements", len(targets))
		}
		if all, names := resetScope(b); !all && len(names) > 0 {
			lower := bytes.ToLower(b)
			if !bytes.Contains(lower, []byte("reset")) && !bytes.Contains(lower, []byte("default")) && !bytes.Contains(lower, []byte("local")) {
				t.Fatal("resetScope found names without a RESET, DEFAULT or LOCAL")
			}
		}
		name, all, dealloc, discard := parseStatementReset(b)
		if discard && (dealloc || all || name != "") {
			t.Fatal("DISCARD ALL recognised as DEALLOCATE too")
		}
		if all && name != "" {
			t.Fatal("DEALLOCATE ALL with a name")
		}
		// statementKinds' SELECT shortcut gives what the full reading
		// (stmtKinds.add) gives.
		if stmt := skipBlanksAndComments(b); hasWordFold(stmt, "select") {
			calls := sessionCalls(stmt)
			var full stmtKinds
			full.add(stmt, calls)
			short := stmtKinds{}
			if selectsIntoTemp(stmt) {
				short.set, short.pin = true, true
			}
			if full != short {
				t.Fatalf("SELECT shortcut %+v, full reading %+v", short, full)
			}
		}
		if got, want := selectsIntoTemp(b), selectsIntoTempByByte(b); got != want {
			t.Fatalf("selectsIntoTemp %v, byte by byte %v", got, want)
		}
		// mapQuery reads a query only when the prefilter lets it through.
		if !mentionsDeallocOrDiscard(b) {
			if _, ok := parseDeallocates(b); ok || dealloc || discard {
				t.Fatal("a DEALLOCATE or DISCARD ALL that mentionsDeallocOrDiscard missed")
			}
		}
	})
}

// FuzzReplyTracking drives the transaction-pooling reply queue with
// arbitrary interleavings of requests and server replies: it must never
// panic, and the queue indexes must stay consistent.
func FuzzReplyTracking(f *testing.F) {
	f.Add([]byte{0, 3, 8, 100, 101, 105, 108})
	f.Add([]byte{1, 2, 3, 4, 5, 8, 110, 114, 115, 116, 117, 118})
	f.Add([]byte{92, 94, 112, 95, 98, 105, 110}) // Execute, Sync, CopyIn, CopyDone, Sync, CommandComplete, ReadyForQuery
	f.Fuzz(func(t *testing.T, ops []byte) {
		s := &session{stmts: map[string]*clientStmt{"c": {server: "pgrecycle_x"}}, txMode: true, mapStmt: true}
		b := &pool.Backend{}
		b.Statements.Add("pgrecycle_x", 10, 0)
		replies := []byte{'1', '2', '3', 'T', 'n', 'C', 'I', 's', 'E', 'D', 'Z', 'N', 'G'}
		for _, op := range ops {
			switch {
			case op >= 90 && op < 100: // what attachAndMark records around a COPY
				switch op % 4 {
				case 0:
					s.copyTrack.command(true)
					s.push(request{kind: reqExecute})
				case 1:
					s.copyTrack.command(false)
					s.pending++
					s.push(request{kind: reqQuery})
				case 2:
					if !s.copyTrack.in {
						s.pending++
						s.copyTrack.sync()
						s.push(request{kind: reqSync})
					}
				case 3:
					s.copyTrack.ended()
				}
				continue
			case op < 100:
				s.push(request{kind: reqKind(op % 12), client: "c", server: "pgrecycle_x", tag: "DEALLOCATE"})
				continue
			}
			typ := replies[int(op-100)%len(replies)]
			switch typ {
			case 'Z':
				s.completeThroughSync(b)
				s.pending = max(0, s.pending-1)
				continue
			case 'G':
				s.copyInStarted()
				if s.pending < 0 || s.reqHead > len(s.reqs) {
					t.Fatalf("after CopyInResponse: pending %d, queue head %d of %d", s.pending, s.reqHead, len(s.reqs))
				}
				continue
			}
			body := []byte("SELECT 1\x00")
			if typ == 'C' && op%2 == 0 {
				body = []byte("DISCARD ALL\x00")
			}
			s.track(b, typ, body)
			if s.reqHead > len(s.reqs) {
				t.Fatalf("queue head %d beyond length %d", s.reqHead, len(s.reqs))
			}
		}
	})
}

// selectsIntoTempByByte is selectsIntoTemp without the eight-byte skip: the
// reference its fast path must agree with.
func selectsIntoTempByByte(stmt []byte) bool {
	for i := 1; i+4 <= len(stmt); i++ {
		if stmt[i]|0x20 != 'i' || !hasWordFold(stmt[i:], "into") {
			continue
		}
		if c := stmt[i-1]; c == '_' || c == '$' || c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z' || c >= 0x80 {
			continue
		}
		next := skipBlanksAndComments(stmt[i+4:])
		if hasWordFold(next, "temp") || hasWordFold(next, "temporary") ||
			hasWordFold(next, "local") || hasWordFold(next, "global") {
			return true
		}
	}
	return false
}
