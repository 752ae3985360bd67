package integration

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestServerFatalRelayedOnce: in session pooling a FATAL the server sends
// before closing (here idle_in_transaction_session_timeout) reaches the
// client as the only error, then the close, as from PostgreSQL. A second
// FATAL of pgrecycle's own ("server connection lost") made node-postgres
// emit 'error' twice and crash (found by the node-postgres sweep).
func TestServerFatalRelayedOnce(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "session", size: 2})
	fe, c := e.rawFrontend(t)
	fe.Send(&pgproto3.Query{String: "SET idle_in_transaction_session_timeout = '100ms'; BEGIN"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	expectUntilReady(t, fe)

	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var errs []string
	for {
		typ, body, err := readMessage(c)
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			t.Fatalf("after errors %q: %v (the connection should close after the FATAL)", errs, err)
		}
		if typ != 'E' {
			t.Fatalf("unexpected message %q after errors %q", typ, errs)
		}
		var er pgproto3.ErrorResponse
		if err := er.Decode(body); err != nil {
			t.Fatal(err)
		}
		errs = append(errs, er.Severity+" "+er.Code+" "+er.Message)
	}
	if len(errs) != 1 || !strings.HasPrefix(errs[0], "FATAL 25P03 ") {
		t.Fatalf("the client got %q; want only the server's FATAL 25P03", errs)
	}
}
