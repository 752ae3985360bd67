package proxy

import (
	"encoding/binary"

	"github.com/pgrecycle/pgrecycle/pool"
	"github.com/pgrecycle/pgrecycle/wire"
)

// Result shapes of client statements in transaction pooling.
//
// A client that described its named statement (pgx, asyncpg,
// postgres.js, Npgsql) decodes the rows of its later executions with that
// description, without asking again. On PostgreSQL, once a table it reads
// changes shape, executing the statement fails with 0A000 "cached plan must
// not change result type" and the client prepares it again. Through the
// proxy, an execution on a backend that lacks the statement prepares it
// there afresh, and it would return rows in the new shape under the old
// description: wrong values, or a client that cannot decode them. So the
// shape a client was told is recorded (from its Describe), as is the shape
// of each backend statement a Describe reveals; a Bind checks the two, and
// asks the backend in a round trip of its own where its shape is unknown
// or it lacks the statement. If they differ, the Bind fails as on
// PostgreSQL.

// shapeNoData is the shape of a statement that returns no rows.
const shapeNoData = 1

// rowShape fingerprints a RowDescription by what PostgreSQL compares:
// column names, types and type modifiers (not the table a column came
// from, nor its format), with FNV-1a computed inline: it runs on the
// reply path, where a hash.Hash would allocate. It returns 0 for a
// malformed one.
func rowShape(body []byte) uint64 {
	if len(body) < 2 {
		return 0
	}
	const prime = 1099511628211
	sum := uint64(14695981039346656037)
	mix := func(b []byte) {
		for _, c := range b {
			sum = (sum ^ uint64(c)) * prime
		}
	}
	n := int(binary.BigEndian.Uint16(body))
	rest := body[2:]
	for i := 0; i < n; i++ {
		name, after, ok := wire.CString(rest)
		if !ok || len(after) < 18 {
			return 0
		}
		mix(name)
		sum *= prime      // the name's terminating zero byte
		mix(after[6:10])  // type OID
		mix(after[12:16]) // type modifier
		rest = after[18:]
	}
	if sum > shapeNoData {
		return sum
	}
	return shapeNoData + 1
}

// recordShape keeps the shape a Describe reply (RowDescription or NoData)
// tells the client of the statement it asked about, for the client's
// statement and for the backend's. Callers hold s.mu.
func (s *session) recordShape(b *pool.Backend, r request, typ byte, body []byte) {
	if r.server == "" {
		return
	}
	var shape uint64 // too large to look at: not known
	switch {
	case typ == wire.MsgNoData:
		shape = shapeNoData
	case body != nil:
		shape = rowShape(body)
	}
	b.Statements.SetShape(r.server, shape)
	if cs := s.stmts[r.client]; r.client != "" && cs != nil && cs.server == r.server {
		cs.shape = shape
	}
}

// boundStatementLocked returns the client statement the unnamed portal was
// bound from earlier in the batch being forwarded, for a Describe of that
// portal. Callers hold s.mu.
func (s *session) boundStatementLocked() (client, server string) {
	for i := len(s.reqs) - 1; i >= s.reqHead; i-- {
		if s.reqs[i].kind == reqBind {
			return s.reqs[i].client, s.reqs[i].server
		}
	}
	return "", ""
}

// shapeCheck is what a Bind of a client statement needs before it is
// forwarded (checkShapeLocked).
type shapeCheck uint8

const (
	shapeFine     shapeCheck = iota // nothing, or nothing that can be done
	shapeStale                      // the backend's statement has another shape: fail the Bind
	shapeDescribe                   // ask the backend: its statement's shape is not known
	shapePrepare                    // the backend lacks the statement: try its text first
)

// checkShapeLocked compares the shape the client was told of cs with the
// backend's statement. A question to the backend takes a round trip of
// its own, so it is asked only when nothing is owed or buffered on b.
// Callers hold s.mu.
func (s *session) checkShapeLocked(b *pool.Backend, cs *clientStmt) shapeCheck {
	if cs.shape == 0 {
		return shapeFine // the client never asked: it reads every reply's description
	}
	exists, pending := b.Statements.Lookup(cs.server)
	if exists && pending != 0 {
		return shapeFine // parsed in a batch not answered yet
	}
	if exists {
		switch shape := b.Statements.Shape(cs.server); {
		case shape == cs.shape:
			return shapeFine
		case shape != 0:
			return shapeStale
		}
	}
	if s.pumping || s.head() != nil || b.W.Buffered() > 0 || b.R.Buffered() > 0 || b.TxStatus == 'E' {
		return shapeFine
	}
	if exists {
		return shapeDescribe
	}
	return shapePrepare
}

// askShape asks b, in one round trip, for the shape of cs's rows: of the
// backend's statement (shapeDescribe), or of cs's text prepared under a
// throwaway name and closed again (shapePrepare). When the text fails to
// prepare, failure is the server's ErrorResponse body, for the client: in
// a transaction block the failure has aborted it, so the Parse that would
// follow could only report that. A notification that arrives meanwhile
// goes to the client's writer.
func (s *session) askShape(b *pool.Backend, cs *clientStmt, check shapeCheck) (shape uint64, failure []byte, err error) {
	name := cs.server
	if check == shapePrepare {
		name = probeStatement
	}
	err = b.W.Append(func(dst []byte) ([]byte, error) {
		if check == shapePrepare {
			dst = wire.AppendHeader(dst, wire.MsgParse, len(name)+1+len(cs.tail))
			dst = append(append(append(dst, name...), 0), cs.tail...)
		}
		dst = wire.AppendHeader(dst, wire.MsgDescribe, 1+len(name)+1)
		dst = append(append(append(dst, 'S'), name...), 0)
		if check == shapePrepare {
			dst = wire.AppendHeader(dst, wire.MsgClose, 1+len(name)+1)
			dst = append(append(append(dst, 'S'), name...), 0)
		}
		return wire.AppendHeader(dst, wire.MsgSync, 0), nil
	})
	if err == nil {
		err = b.W.Flush()
	}
	if err != nil {
		return 0, nil, err
	}
	for {
		typ, _, err := b.R.Next()
		if err != nil {
			return 0, nil, err
		}
		if !b.R.Fits() {
			if err := b.R.Skip(); err != nil {
				return 0, nil, err
			}
			continue
		}
		msg, err := b.R.Message()
		if err != nil {
			return 0, nil, err
		}
		body := msg[wire.HeaderLen:]
		switch typ {
		case wire.MsgRowDescription:
			shape = rowShape(body)
		case wire.MsgNoData:
			shape = shapeNoData
		case wire.MsgErrorResponse:
			if failure == nil {
				failure = append([]byte(nil), body...)
			}
		case wire.MsgNotification:
			s.ownNotification(b, msg)
			_, _ = s.cw.Write(msg)
		case wire.MsgParameterStatus:
			if k, v, ok := wire.ParameterStatus(body); ok {
				b.SetParam(string(k), string(v))
			}
		case wire.MsgReadyForQuery:
			if len(body) == 1 {
				b.TxStatus = body[0]
			}
			if failure != nil {
				shape = 0
			}
			return shape, failure, nil
		}
	}
}

// writeStaleBind replaces the client's Bind, whose statement changed
// shape or failed to prepare, with one of a statement that never exists:
// the server fails it and skips the rest of the batch, as PostgreSQL does
// on the error, and track shows that error in its place (reqBindStale).
func (s *session) writeStaleBind() error {
	if err := s.cr.Skip(); err != nil {
		return err
	}
	_ = s.sw.w.WriteHeader(wire.MsgBind, 1+len(noopStatement)+1+6)
	_, _ = s.sw.Write([]byte{0})
	_, _ = s.sw.Write([]byte(noopStatement))
	_, _ = s.sw.Write([]byte{0, 0, 0, 0, 0, 0, 0})
	return nil
}

// appendStaleBindError appends what the client's Bind got (reqBindStale):
// the error its statement's Parse met, or PostgreSQL's error for a
// prepared statement whose rows changed shape.
func appendStaleBindError(dst []byte, failure string) ([]byte, error) {
	if failure != "" {
		dst = wire.AppendHeader(dst, wire.MsgErrorResponse, len(failure))
		return append(dst, failure...), nil
	}
	return appendError(dst, errorf(codeFeatureNotSupported, "cached plan must not change result type"))
}
