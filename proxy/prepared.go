package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgrecycle/pgrecycle/pool"
	"github.com/pgrecycle/pgrecycle/wire"
)

// Named prepared statements in transaction pooling.
//
// A client's named statements must exist on whichever backend it runs on.
// The proxy remembers each client's Parse (name → query and parameter
// types) and names statements on backends after a hash of their text and
// types, so clients preparing the same statement share one server-side
// statement per backend. Before a Bind or Describe that refers to a client
// statement the backend lacks, the proxy sends the Parse first and swallows
// its ParseComplete.
//
// Replies are matched to requests with a queue of what each forwarded
// message is owed. Where the client must see a reply the server won't
// send (a Parse of a statement the backend already has, a Close of a
// shared statement, DEALLOCATE), the proxy sends the server a cheap
// message that answers in the same place (a Close of a statement that
// doesn't exist, an empty query) and rewrites that answer, so ordering and
// the skip-to-Sync-after-error rule stay PostgreSQL's own.

// noopStatement is never prepared: closing it is a no-op that still gets a
// CloseComplete from the server.
const noopStatement = "pgrecycle_noop"

// clientStmt is a named statement as one client defined it.
type clientStmt struct {
	name    string // the client's
	server  string
	tail    []byte // Parse body after the name: query, parameter count, types
	dealloc string // the client statement it DEALLOCATEs, parsed as an empty query
	// sessionSet: it runs a session-level SET (sessionset.go), so each
	// Bind of it marks the backend; pin: it may leave what keeps the
	// backend with the client (pin.go), so each Bind pins it.
	sessionSet, pin bool
	// batch is the batch of its Parse until the server answers it, then 0.
	batch uint64
	// shape is the shape of its rows the client was last told (shape.go),
	// 0 when it never asked.
	shape uint64
}

// emptyQueryTail is the Parse tail of an empty query without parameters.
var emptyQueryTail = [...]byte{0, 0, 0}

// reqKind is what a forwarded message is owed by the server.
type reqKind uint8

const (
	reqParse             reqKind = iota // client's Parse: ParseComplete forwarded
	reqParseHidden                      // proxy's Parse: ParseComplete swallowed
	reqParseViaClose                    // already prepared: CloseComplete shown as ParseComplete
	reqBind                             // BindComplete
	reqDescribe                         // RowDescription or NoData
	reqExecute                          // CommandComplete, EmptyQuery or PortalSuspended
	reqClose                            // CloseComplete forwarded
	reqCloseHidden                      // eviction: CloseComplete swallowed
	reqSync                             // ReadyForQuery
	reqQuery                            // ReadyForQuery (after any number of results)
	reqQueryDeallocate                  // DEALLOCATE sent as an empty query
	reqExecuteDeallocate                // Execute of a DEALLOCATE parsed as an empty query
	reqParseDuplicate                   // Parse of a name the client holds: its error shown as 42P05
	reqParseProbe                       // Parse of a shared statement's text under a throwaway name: ParseComplete forwarded
	reqBindStale                        // Bind of a statement whose rows changed shape, or whose Parse failed: its error shown as that (tag)
)

type request struct {
	kind   reqKind
	client string // client statement name, for reqParse*, reqExecuteDeallocate
	server string // backend statement name, for reqParse*
	tag    string // CommandComplete tag to show, for reqQueryDeallocate and reqExecuteDeallocate; tagDeallocates on a reqQuery; the error to show, for reqBindStale
	batch  uint64 // for reqParse*: the batch it was sent in (StatementSet, clientStmt.batch)
}

// serverStmtName names a statement on backends after its text and types,
// the client's parse settings (scope: appendParseScope), and the pool's
// statement epoch: a Parse after the server reported a changed result
// type gets a fresh statement, not the stale shared one. Clients of different
// tenants (schema per tenant, chosen by search_path) share no statement:
// the server would re-parse it at each switch of search_path and, where
// the tenants' tables differ in shape, fail with "cached plan must not
// change result type".
func serverStmtName(tail, scope []byte, epoch uint64) string {
	var sum [sha256.Size]byte
	if len(scope) == 0 {
		sum = sha256.Sum256(tail)
	} else {
		h := sha256.New()
		h.Write(scope)
		h.Write([]byte{0})
		h.Write(tail)
		h.Sum(sum[:0])
	}
	name := "pgrecycle_" + hex.EncodeToString(sum[:12])
	if epoch != 0 {
		name += "_" + strconv.FormatUint(epoch, 10)
	}
	return name
}

// renewStatements gives the client's statements mapped to server, whose
// plan the server just refused as stale at a Bind or Describe, a fresh server
// statement for their next use. Clients that never re-prepare (node-pg)
// failed with 0A000 at every later execution, where PostgreSQL fails only
// the statements a client prepared before the change: this one may have
// been prepared after it, and got the stale shared statement. Callers
// hold s.mu.
func (s *session) renewStatements(b *pool.Backend, server string) {
	var scope [256]byte
	for _, cs := range s.stmts {
		if cs.server == server {
			cs.server = serverStmtName(cs.tail, s.appendParseScope(b, scope[:0]), s.pool.StatementEpoch())
		}
	}
}

// appendParseScope appends what, besides its text, decides what a Parse
// means: the startup search_path and any SET search_path in effect on b
// (which tables), and the settings the server reads while parsing:
// DateStyle and IntervalStyle read literals, TimeZone fixes timestamptz
// literals and 'now', client_encoding decodes the text and
// standard_conforming_strings its backslashes. Clients that differ in any
// of them never share a statement on a backend; the usual case, identical
// settings, still does. Callers hold s.mu.
func (s *session) appendParseScope(b *pool.Backend, dst []byte) []byte {
	dst = append(dst, s.stmtScope...)
	dst = append(dst, 0)
	dst = append(dst, b.PathScope...)
	for _, k := range trackedParams {
		if k == "application_name" {
			continue
		}
		dst = append(dst, 0)
		dst = append(dst, s.want[k]...)
	}
	return dst
}

// isStalePlanError recognises PostgreSQL's "cached plan must not change
// result type" (0A000 from RevalidateCachedQuery, whatever lc_messages
// says): a table a prepared statement reads has changed shape.
func isStalePlanError(body []byte) bool {
	if code, _ := wire.ErrorCode(body); string(code) != "0A000" {
		return false
	}
	return string(wire.ErrorField(body, 'R')) == "RevalidateCachedQuery" ||
		wire.ErrorMessage(body) == "cached plan must not change result type"
}

// push and pop manage the reply queue; callers hold s.mu. Each Sync or
// Query ends a batch (s.batches counts them).
func (s *session) push(r request) {
	if r.kind == reqSync || r.kind == reqQuery || r.kind == reqQueryDeallocate {
		s.batches++
	}
	s.reqs = append(s.reqs, r)
}

// batch names the batch the messages being forwarded belong to, as
// StatementSet records it (never 0).
func (s *session) batch() uint64 { return s.batches + 1 }

func (s *session) head() *request {
	if s.reqHead == len(s.reqs) {
		return nil
	}
	return &s.reqs[s.reqHead]
}

func (s *session) pop() request {
	r := s.reqs[s.reqHead]
	s.reqs[s.reqHead] = request{}
	s.reqHead++
	if s.reqHead == len(s.reqs) {
		s.reqs = s.reqs[:0]
		s.reqHead = 0
	}
	return r
}

func (s *session) clearQueue() {
	for s.head() != nil {
		s.pop()
	}
}

// forgetFailedParse undoes the bookkeeping of a Parse the server did not
// execute (it failed, or was skipped after an earlier error).
func (s *session) forgetFailedParse(b *pool.Backend, r request) {
	switch r.kind {
	case reqParse, reqParseHidden:
		if r.server != "" {
			b.Statements.RemoveFailed(r.server, r.batch)
		}
	case reqParseViaClose, reqParseProbe:
	default:
		return
	}
	if r.client != "" {
		// Unless the client parsed the name again in a later batch.
		if cs := s.stmts[r.client]; cs != nil && cs.server == r.server && cs.batch == r.batch {
			delete(s.stmts, r.client)
		}
	}
}

// clientNameIn returns the first of the client's statements whose server
// name an error body quotes, or "". Callers hold s.mu.
func (s *session) clientNameIn(body []byte) (client, server string) {
	for name, cs := range s.stmts {
		if bytes.Contains(body, []byte(`"`+cs.server+`"`)) {
			return name, cs.server
		}
	}
	return "", ""
}

// appendRenamedError appends the ErrorResponse msg with the shared
// statement named in names ("client\x00server") shown by the client's name.
func appendRenamedError(dst, msg []byte, names string) ([]byte, error) {
	client, server, _ := strings.Cut(names, "\x00")
	var e pgproto3.ErrorResponse
	if err := e.Decode(msg[wire.HeaderLen:]); err != nil {
		return append(dst, msg...), nil
	}
	from, to := `"`+server+`"`, strconv.Quote(client)
	e.Message = strings.ReplaceAll(e.Message, from, to)
	e.Detail = strings.ReplaceAll(e.Detail, from, to)
	return e.Encode(dst)
}

// confirmClientStmt records that the server answered the Parse r of a
// client statement. Callers hold s.mu.
func (s *session) confirmClientStmt(r request) {
	if cs := s.stmts[r.client]; cs != nil && cs.server == r.server {
		cs.batch = 0
	}
}

// reply is what the pump does with a server message in transaction mode.
type reply uint8

const (
	replyForward reply = iota
	replySwallow
	replyAsParseComplete
	replyAsCommandComplete
	replyAsDuplicateStatement // an ErrorResponse shown as 42P05 for the named statement
	replyWithClientName       // an ErrorResponse naming a shared statement, shown with the client's name
	replyAsStalePlan          // an ErrorResponse shown as the one its tag holds, or as 0A000 "cached plan must not change result type"
)

// track matches a server message against the reply queue. body is nil for
// a message too large to buffer (only DataRow-like messages are).
func (s *session) track(b *pool.Backend, typ byte, body []byte) (reply, string) {
	switch typ {
	case '1', '2', '3', 'T', 'n', 'C', 'I', 's', 'E':
	default:
		return replyForward, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.head()
	if typ == 'C' && body != nil && isDiscardAllTag(body) {
		// The server ran it (DISCARD ALL, or a DEALLOCATE ALL that must
		// reach SQL PREPAREs): the backend's statements and the client's
		// are gone, but for those parsed after it in the stream.
		s.forgetDiscarded(b)
		b.SetProxySet(nil)
		b.SQLPrepared = false
	}
	if h == nil {
		return replyForward, ""
	}
	switch typ {
	case '1':
		switch h.kind {
		case reqParse:
			if r := s.pop(); r.server != "" {
				b.Statements.Confirm(r.server)
				s.confirmClientStmt(r)
			}
		case reqParseHidden:
			b.Statements.Confirm(s.pop().server)
			return replySwallow, ""
		case reqParseProbe:
			s.confirmClientStmt(s.pop())
		}
	case '2':
		if h.kind == reqBind {
			s.pop()
		}
	case '3':
		switch h.kind {
		case reqClose:
			s.pop()
		case reqCloseHidden:
			s.pop()
			return replySwallow, ""
		case reqParseViaClose:
			s.confirmClientStmt(s.pop())
			return replyAsParseComplete, ""
		}
	case 'T', 'n':
		if h.kind == reqDescribe {
			s.recordShape(b, s.pop(), typ, body)
		}
	case 'C', 's':
		if h.kind == reqExecute {
			s.pop()
		}
	case 'I':
		switch h.kind {
		case reqExecute:
			s.pop()
		case reqQueryDeallocate:
			return replyAsCommandComplete, h.tag
		case reqExecuteDeallocate:
			r := s.pop()
			if r.client != "" {
				delete(s.stmts, r.client)
			}
			return replyAsCommandComplete, r.tag
		}
	case 'E':
		if body != nil && isStalePlanError(body) {
			// The client re-prepares (pgjdbc, pgx, Rails do): that Parse, and
			// every other client's, must not get the stale statement back.
			s.pool.InvalidateStatements()
			if (h.kind == reqBind || h.kind == reqDescribe) && h.server != "" {
				s.renewStatements(b, h.server)
			}
		}
		var rewritten reply
		var name string
		switch {
		case h.kind == reqParseDuplicate:
			// The server's syntax error stands for PostgreSQL's own.
			rewritten, name = replyAsDuplicateStatement, h.client
		case h.kind == reqBindStale:
			rewritten, name = replyAsStalePlan, h.tag
		case body != nil && bytes.Contains(body, []byte(`"pgrecycle_`)):
			// The server names a shared statement: the client knows it
			// by its own name.
			if client, server := s.clientNameIn(body); client != "" {
				rewritten, name = replyWithClientName, client+"\x00"+server
				if code, _ := wire.ErrorCode(body); string(code) == "26000" {
					// Gone from the backend (a DEALLOCATE of the shared
					// name): the next use prepares it again.
					b.Statements.Remove(server)
				}
			}
		case h.kind == reqQuery && h.tag == tagDeallocates && body != nil:
			// A DEALLOCATE of the client's statement among other SQL
			// reaches the server, which knows the statement by its shared
			// name only (psqlODBC wraps its DEALLOCATE in a SAVEPOINT). On
			// PostgreSQL it would be gone: the client may prepare the
			// name again. (Only then: a SQL EXECUTE of the client's
			// protocol-level statement fails the same way, and the
			// statement stays.)
			if code, _ := wire.ErrorCode(body); string(code) == "26000" {
				if n := quotedName(wire.ErrorMessage(body)); n != "" {
					delete(s.stmts, n)
				}
			}
		}
		switch h.kind {
		case reqQuery, reqQueryDeallocate, reqSync:
			// ReadyForQuery follows and completes it.
		default:
			// The server skips everything up to the next Sync, simple
			// queries too (pgjdbc's autosave sends SAVEPOINT as one
			// before its Sync): they get no ReadyForQuery.
			s.forgetFailedParse(b, s.pop())
			queries := false
			for h := s.head(); h != nil && h.kind != reqSync; h = s.head() {
				if r := s.pop(); r.kind == reqQuery || r.kind == reqQueryDeallocate {
					queries = true
					if s.pending > 0 {
						s.pending--
					}
				} else {
					s.forgetFailedParse(b, r)
				}
			}
			// The Sync the server waits for may still be with the client:
			// the proxy must go back to reading it.
			s.skipped = queries && s.pending == 0
		}
		if rewritten != replyForward {
			return rewritten, name
		}
	}
	return replyForward, ""
}

// forgetDiscarded forgets the statements a DISCARD ALL or DEALLOCATE ALL
// that the server just ran dropped: all but those whose Parse follows it in
// the stream, which the server prepares afterwards (the head of the queue
// is the request it answers). Callers hold s.mu.
func (s *session) forgetDiscarded(b *pool.Backend) {
	var keep []string
	var later map[string]*clientStmt
	for i := s.reqHead + 1; i < len(s.reqs); i++ {
		r := &s.reqs[i]
		switch r.kind {
		case reqParse, reqParseHidden:
			if r.server != "" {
				keep = append(keep, r.server)
			}
		case reqParseViaClose, reqParseProbe:
		default:
			continue
		}
		if cs := s.stmts[r.client]; r.client != "" && cs != nil && cs.server == r.server {
			if later == nil {
				later = make(map[string]*clientStmt)
			}
			later[r.client] = cs
		}
	}
	b.Statements.ClearExcept(keep)
	s.stmts = later
}

// completeThroughSync pops the request a ReadyForQuery answers, and any
// left unanswered before it. Callers hold s.mu.
func (s *session) completeThroughSync(b *pool.Backend) {
	for h := s.head(); h != nil; h = s.head() {
		r := s.pop()
		if r.kind == reqSync || r.kind == reqQuery || r.kind == reqQueryDeallocate {
			return
		}
		s.forgetFailedParse(b, r)
	}
}

// isDiscardAllTag recognises the CommandComplete of DISCARD ALL and
// DEALLOCATE ALL, after which the backend holds no prepared statements.
func isDiscardAllTag(body []byte) bool {
	return string(body) == "DISCARD ALL\x00" || string(body) == "DEALLOCATE ALL\x00"
}

// forwardMapped forwards one client message in transaction pooling,
// rewriting statement names and recording what the server owes. It returns
// false when the message needs no mapping and should be forwarded raw
// after the request was recorded. kinds is what noteSessionSet found in a
// Parse or Query. Without statement mapping (max_prepared_statements = 0)
// named statements pass as they are, but the unnamed statement is still
// followed across backends and the replies still matched: an error's skip
// to the next Sync must be seen, and no client may bind another's query.
func (s *session) forwardMapped(b *pool.Backend, typ byte, bodyLen int, kinds stmtKinds) (handled bool, err error) {
	switch typ {
	case wire.MsgParse:
		return true, s.mapParse(b, kinds)
	case wire.MsgBind:
		return s.mapBind(b, bodyLen)
	case wire.MsgDescribe, wire.MsgClose:
		return s.mapDescribeClose(b, typ)
	case wire.MsgQuery:
		return s.mapQuery(b, bodyLen, kinds)
	}
	var r request
	switch typ {
	case wire.MsgExecute:
		r.kind = reqExecute
		if s.portalDealloc != "" { // unsynchronised read: only the client goroutine writes it
			return false, s.markExecuteDeallocate()
		}
	case wire.MsgFunctionCall:
		r.kind = reqQuery
	default:
		return false, nil // Sync (recorded by attachAndMark), Flush, COPY data
	}
	s.mu.Lock()
	s.push(r)
	s.mu.Unlock()
	return false, nil
}

// mapParse handles a Parse: unnamed ones pass through; named ones are
// recorded for the client and prepared on the backend under the shared
// name unless it is already there. kinds is what noteSessionSet found
// in its text, unless the message was too large to scan there.
func (s *session) mapParse(b *pool.Backend, kinds stmtKinds) error {
	scanned := s.cr.Fits()
	msg, err := s.cr.ReadAll()
	if err != nil {
		return err
	}
	name, tail, ok := wire.CString(msg[wire.HeaderLen:])
	if !scanned && ok {
		kinds = statementKinds(tail)
	}
	if !ok || len(name) == 0 || !s.mapStmt {
		// Unnamed, or named without statement mapping: forwarded as is.
		s.mu.Lock()
		s.push(request{kind: reqParse})
		target := ""
		if ok {
			target = s.deallocTarget(b, tail)
		}
		s.unnamedDealloc = target
		s.mu.Unlock()
		if target != "" {
			// An empty query answers Describe with NoData and Execute
			// with EmptyQueryResponse, shown as DEALLOCATE's
			// CommandComplete (reqExecuteDeallocate).
			tail = emptyQueryTail[:]
			_ = s.sw.w.WriteHeader(wire.MsgParse, 1+len(tail))
			_, _ = s.sw.Write([]byte{0})
			_, _ = s.sw.Write(tail)
		} else {
			_, _ = s.sw.Write(msg)
		}
		if ok && len(name) == 0 {
			s.keepUnnamed(b, tail, kinds)
		}
		return nil
	}
	client := string(name)
	max := s.pool.Options().Pool.MaxPreparedStatements

	s.mu.Lock()
	if cs := s.stmts[client]; cs != nil && (cs.batch == 0 || cs.batch == s.batch()) {
		// PostgreSQL refuses to redefine a statement: the server is sent
		// a Parse that fails, so it skips the rest of the batch as it
		// would, and its error is shown as 42P05. (A statement whose Parse
		// is in an earlier batch still unanswered may yet be skipped: that
		// one is redefined.)
		s.push(request{kind: reqParseDuplicate, client: client})
		s.mu.Unlock()
		s.writeParse(duplicateStatement, duplicateStatementTail[:])
		return nil
	}
	stmt := &clientStmt{name: client}
	if stmt.dealloc = s.deallocTarget(b, tail); stmt.dealloc != "" {
		tail = emptyQueryTail[:] // a DEALLOCATE prepared by name (pgx's statement cache)
	}
	stmt.tail = append([]byte(nil), tail...)
	stmt.batch = s.batch()
	var scope [256]byte
	stmt.server = serverStmtName(stmt.tail, s.appendParseScope(b, scope[:0]), s.pool.StatementEpoch())
	stmt.sessionSet, stmt.pin = kinds.set, kinds.pin
	if s.stmts == nil {
		s.stmts = make(map[string]*clientStmt)
	}
	s.stmts[client] = stmt
	exists, pending := b.Statements.Lookup(stmt.server)
	if exists && (pending == 0 || pending == s.batch()) && (s.txStatus != 'I' && s.txStatus != 0 || s.pending > 0) {
		// On the backend, but the server may be in a failed transaction,
		// where a Close succeeds and this Parse would not (25P02): the
		// text is parsed under a throwaway name, then closed, so the
		// client gets the server's own answer.
		s.push(request{kind: reqParseProbe, client: client, server: stmt.server, batch: s.batch()})
		s.push(request{kind: reqCloseHidden})
		s.mu.Unlock()
		s.srv.observeStatement(true)
		s.writeParse(probeStatement, stmt.tail)
		s.writeClose(probeStatement)
		return nil
	}
	if exists && (pending == 0 || pending == s.batch()) {
		// On the backend, or parsed earlier in this batch: the server
		// gets there first, or skips both.
		s.push(request{kind: reqParseViaClose, client: client, server: stmt.server, batch: s.batch()})
		s.mu.Unlock()
		s.srv.observeStatement(true)
		s.writeClose(noopStatement)
		return nil
	}
	s.srv.observeStatement(false)
	closes := s.addStatement(b, stmt.server, exists, max)
	s.push(request{kind: reqParse, client: client, server: stmt.server, batch: s.batch()})
	s.mu.Unlock()
	for _, name := range closes {
		s.writeClose(name)
	}
	s.writeParse(stmt.server, stmt.tail)
	return nil
}

// addStatement records server as parsed on b in this batch and returns
// the statements to close first, each queued as a hidden Close: those
// evicted to stay within max_prepared_statements (all the excess, after a
// reload lowered it), or server itself when an earlier batch still
// unanswered parsed it (that batch may fail and skip it, or not).
// Callers hold s.mu.
func (s *session) addStatement(b *pool.Backend, server string, exists bool, max int) []string {
	evicted := b.Statements.Add(server, max, s.batch())
	if b.Pinned.Load() {
		b.Statements.MarkSessionBound(server)
	}
	if exists {
		evicted = append(evicted, server)
	}
	for range evicted {
		s.push(request{kind: reqCloseHidden})
	}
	return evicted
}

// probeStatement is the throwaway name of reqParseProbe.
const probeStatement = "pgrecycle_probe"

// duplicateStatement and its query make a Parse that the server rejects
// (a syntax error) without creating anything, standing for a client's
// Parse of a name it already holds.
const duplicateStatement = "pgrecycle_duplicate"

var duplicateStatementTail = [...]byte{'p', 'g', 'r', 'e', 'c', 'y', 'c', 'l', 'e', 0, 0, 0}

// ensurePrepared makes the backend hold cs before a message that uses it.
// Callers hold s.mu; the returned writes must be done after unlocking, in
// order: the closes (if any), then the parse (if needed).
func (s *session) ensurePrepared(b *pool.Backend, cs *clientStmt) (closes []string, parse bool) {
	exists, pending := b.Statements.Lookup(cs.server)
	if exists && (pending == 0 || pending == s.batch()) {
		s.srv.observeStatement(true)
		return nil, false
	}
	s.srv.observeStatement(false)
	closes = s.addStatement(b, cs.server, exists, s.pool.Options().Pool.MaxPreparedStatements)
	s.push(request{kind: reqParseHidden, server: cs.server, batch: s.batch()})
	return closes, true
}

func (s *session) writeEnsure(cs *clientStmt, closes []string, parse bool) {
	for _, name := range closes {
		s.writeClose(name)
	}
	if parse {
		s.writeParse(cs.server, cs.tail)
	}
}

// keepUnnamed records the client's unnamed statement, just parsed on b.
// Its text is kept whatever its size, as a named statement's is: lib/pq
// parses every query with arguments as the unnamed statement and binds it
// in a later round trip, which may land on another backend.
func (s *session) keepUnnamed(b *pool.Backend, tail []byte, kinds stmtKinds) {
	s.unnamedSeq++
	s.unnamedKey = s.id<<32 | uint64(s.unnamedSeq)
	b.Unnamed = s.unnamedKey
	s.unnamedSet, s.unnamedPin = kinds.set, kinds.pin
	if cap(s.unnamedTail) > 4*len(tail) && cap(s.unnamedTail) > unnamedKeepSmall {
		s.unnamedTail = nil // do not hold on to one huge statement's buffer
	}
	s.unnamedTail = append(s.unnamedTail[:0], tail...)
}

// unnamedKeepSmall is a buffer size for the unnamed statement's text that
// is kept for reuse even when the next text is much shorter.
const unnamedKeepSmall = 8 << 10

// ensureUnnamedLocked makes b's unnamed statement the client's before a
// Bind or Describe of it: another client's Parse, or the proxy's own
// queries, may have replaced it since the client's Parse in an earlier
// batch, and the Bind would run another client's query. The client's
// Parse is sent again; when it has none (it never parsed one, or a simple
// query destroyed it), the unnamed statement is closed instead, so the
// Bind fails with 26000 as on PostgreSQL. Callers hold s.mu and call
// writeUnnamed after unlocking.
func (s *session) ensureUnnamedLocked(b *pool.Backend) (parse, closeIt bool) {
	if s.unnamedKey != 0 && b.Unnamed == s.unnamedKey {
		return false, false
	}
	if s.unnamedKey != 0 && s.unnamedTail != nil {
		s.push(request{kind: reqParseHidden, batch: s.batch()})
		b.Unnamed = s.unnamedKey
		return true, false
	}
	s.push(request{kind: reqCloseHidden})
	b.Unnamed = 0
	return false, true
}

// writeUnnamed writes what ensureUnnamedLocked decided.
func (s *session) writeUnnamed(parse, closeIt bool) {
	switch {
	case parse:
		s.writeParse("", s.unnamedTail)
	case closeIt:
		s.writeClose("")
	}
}

// peekBind returns the portal and statement names of the Bind about to
// be forwarded, without consuming it; ok is false when they are not both
// within the peek (names are at most 63 bytes on PostgreSQL).
func (s *session) peekBind() (portal, name []byte, ok bool, err error) {
	peek, err := s.cr.Peek(wire.HeaderLen + 2*64 + 2)
	if err == wire.ErrTooLarge {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, err
	}
	portal, rest, ok := wire.CString(peek[wire.HeaderLen:])
	if ok {
		name, _, ok = wire.CString(rest)
	}
	return portal, name, ok, nil
}

// mapBind rewrites the statement name of a Bind, streaming its (possibly
// large) parameter values untouched.
func (s *session) mapBind(b *pool.Backend, bodyLen int) (bool, error) {
	portal, name, ok, err := s.peekBind()
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	var cs *clientStmt
	if ok && len(name) > 0 {
		cs = s.stmts[string(name)]
	}
	if ok && len(portal) == 0 {
		switch {
		case len(name) == 0:
			s.portalDealloc = s.unnamedDealloc
		case cs != nil:
			s.portalDealloc = cs.dealloc
		default:
			s.portalDealloc = ""
		}
	}
	if cs == nil {
		var parse, closeIt bool
		if ok && len(name) == 0 {
			parse, closeIt = s.ensureUnnamedLocked(b)
			// Bound where it may not have been parsed (a later round
			// trip on another backend): mark that backend as its Parse did.
			if s.unnamedSet && s.unnamedKey != 0 {
				b.MarkSessionState(s.id)
			}
			if s.unnamedPin && s.unnamedKey != 0 && s.pinsBackends() {
				b.Pinned.Store(true)
			}
		}
		s.push(request{kind: reqBind})
		s.mu.Unlock()
		s.writeUnnamed(parse, closeIt)
		return false, nil
	}
	if cs.sessionSet {
		s.noteCarryBindLocked(b, cs)
	}
	if cs.pin && s.pinsBackends() {
		b.Pinned.Store(true)
	}
	check := s.checkShapeLocked(b, cs)
	var asked uint64
	if check == shapeDescribe || check == shapePrepare {
		s.mu.Unlock()
		shape, failure, err := s.askShape(b, cs, check)
		s.mu.Lock()
		switch {
		case err != nil:
			// As a failed forward: the read of the reply reports it.
			s.sw.err = err
			b.Broken = true
			_ = b.Conn.Close()
			check = shapeFine
		case failure != nil && check == shapeDescribe:
			// Not on the server after all: prepared again below.
			b.Statements.Remove(cs.server)
			check = shapeFine
		case failure != nil:
			s.push(request{kind: reqBindStale, tag: string(failure)})
			s.mu.Unlock()
			return true, s.writeStaleBind()
		case check == shapeDescribe:
			b.Statements.SetShape(cs.server, shape)
			fallthrough
		default:
			asked = shape
			if shape != 0 && shape != cs.shape {
				check = shapeStale
			}
		}
	}
	if check == shapeStale {
		s.push(request{kind: reqBindStale})
		s.mu.Unlock()
		return true, s.writeStaleBind()
	}
	evicted, parse := s.ensurePrepared(b, cs)
	if parse && asked != 0 {
		b.Statements.SetShape(cs.server, asked) // what its text gave just now
	}
	bound := ""
	if len(portal) == 0 {
		bound = cs.name // a Describe of the portal tells its shape
	}
	s.push(request{kind: reqBind, server: cs.server, client: bound})
	s.mu.Unlock()
	s.writeEnsure(cs, evicted, parse)

	newLen := bodyLen - len(name) + len(cs.server)
	_ = s.sw.w.WriteHeader(wire.MsgBind, newLen)
	_, _ = s.sw.Write(portal)
	_, _ = s.sw.Write([]byte{0})
	_, _ = s.sw.Write([]byte(cs.server))
	_, _ = s.sw.Write([]byte{0})
	if err := s.cr.Consume(wire.HeaderLen + len(portal) + 1 + len(name) + 1); err != nil {
		return true, err
	}
	return true, s.cr.Stream(&s.sw)
}

// mapDescribeClose rewrites Describe of a client statement, and turns a
// Close of one into a no-op the server still answers: other clients may
// share the backend's statement.
func (s *session) mapDescribeClose(b *pool.Backend, typ byte) (bool, error) {
	msg, err := s.cr.ReadAll()
	if err != nil {
		return true, err
	}
	body := msg[wire.HeaderLen:]
	kind := reqDescribe
	if typ == wire.MsgClose {
		kind = reqClose
	}
	var name []byte
	ok := len(body) >= 2 && body[0] == 'S'
	if ok {
		name, _, ok = wire.CString(body[1:])
	}
	if !ok || len(name) == 0 {
		var parse, closeIt bool
		r := request{kind: kind}
		s.mu.Lock()
		switch {
		case ok && typ == wire.MsgDescribe:
			parse, closeIt = s.ensureUnnamedLocked(b)
		case ok: // Close of the unnamed statement
			s.unnamedKey, b.Unnamed = 0, 0
		case typ == wire.MsgDescribe && len(body) == 2 && body[0] == 'P':
			r.client, r.server = s.boundStatementLocked() // the unnamed portal's statement
		}
		s.push(r)
		s.mu.Unlock()
		s.writeUnnamed(parse, closeIt)
		_, _ = s.sw.Write(msg)
		return true, nil
	}
	s.mu.Lock()
	cs := s.stmts[string(name)]
	if typ == wire.MsgClose && !s.mapStmt {
		s.push(request{kind: reqClose})
		s.mu.Unlock()
		_, _ = s.sw.Write(msg)
		return true, nil
	}
	if typ == wire.MsgClose {
		delete(s.stmts, string(name))
		s.push(request{kind: reqClose})
		s.mu.Unlock()
		s.writeClose(noopStatement)
		return true, nil
	}
	if cs == nil {
		s.push(request{kind: reqDescribe})
		s.mu.Unlock()
		_, _ = s.sw.Write(msg)
		return true, nil
	}
	evicted, parse := s.ensurePrepared(b, cs)
	s.push(request{kind: reqDescribe, server: cs.server, client: string(name)})
	s.mu.Unlock()
	s.writeEnsure(cs, evicted, parse)
	_ = s.sw.w.WriteHeader(wire.MsgDescribe, 1+len(cs.server)+1)
	_, _ = s.sw.Write([]byte{'S'})
	_, _ = s.sw.Write([]byte(cs.server))
	_, _ = s.sw.Write([]byte{0})
	return true, nil
}

// mapQuery catches DEALLOCATE and DISCARD ALL sent as SQL: they act on
// the client's own statements, not on the shared ones of the backend.
func (s *session) mapQuery(b *pool.Backend, bodyLen int, kinds stmtKinds) (bool, error) {
	// A simple query destroys the unnamed statement, the client's too.
	b.Unnamed, s.unnamedKey = 0, 0
	if bodyLen > 256 || !s.mapStmt {
		s.mu.Lock()
		s.push(request{kind: reqQuery})
		s.mu.Unlock()
		return false, nil
	}
	peek, err := s.cr.Peek(wire.HeaderLen + bodyLen)
	if err != nil {
		return false, err
	}
	var target string
	var all, isDealloc, isDiscard bool
	// Most queries have neither word: one pass over the bytes spares
	// them the tokenizer.
	if mentionsDeallocOrDiscard(peek[wire.HeaderLen:]) {
		target, all, isDealloc, isDiscard = parseStatementReset(peek[wire.HeaderLen:])
		if !isDealloc && !isDiscard {
			if targets, ok := parseDeallocates(peek[wire.HeaderLen:]); ok {
				return s.mapDeallocates(b, targets)
			}
		}
	}
	s.mu.Lock()
	switch {
	case s.txStatus == 'E':
		// In a failed transaction the server refuses DEALLOCATE and
		// DISCARD with 25P02 and the statements stay: so do the client's.
	case isDealloc && !all && s.stmts[target] == nil:
		// Not a protocol-level statement of the client's: a statement of
		// SQL PREPARE lives on the backend, and an unknown name gets the
		// server's own 26000.
	case isDealloc && all && b.SQLPrepared:
		// DEALLOCATE ALL must reach the client's SQL PREPAREs on the
		// backend: the server runs it (its CommandComplete makes track
		// forget the proxy's statements there), and the client's
		// protocol-level statements go too.
		s.stmts = nil
	case isDealloc:
		tag := "DEALLOCATE"
		if all {
			tag = "DEALLOCATE ALL"
			s.stmts = nil
		} else {
			delete(s.stmts, target)
		}
		s.push(request{kind: reqQueryDeallocate, tag: tag})
		s.mu.Unlock()
		return true, s.sendEmptyQuery()
	case isDiscard && s.txStatus == 'I':
		// (In a transaction block the server refuses DISCARD ALL.)
		s.stmts = nil
	}
	r := request{kind: reqQuery}
	if kinds.dealloc {
		r.tag = tagDeallocates
	}
	s.push(r)
	s.mu.Unlock()
	return false, nil
}

// mapDeallocates answers a query made only of DEALLOCATEs ("" standing
// for ALL), as mapQuery does one, when each names a statement of the
// client's: the server gets an empty query, and its reply becomes one
// CommandComplete per statement.
func (s *session) mapDeallocates(b *pool.Backend, targets []string) (bool, error) {
	s.mu.Lock()
	if s.txStatus == 'E' {
		s.push(request{kind: reqQuery}) // the server's 25P02, as in mapQuery
		s.mu.Unlock()
		return false, nil
	}
	if b.SQLPrepared && slices.Contains(targets, "") {
		// A DEALLOCATE ALL for SQL PREPAREs: the server runs the query,
		// as in mapQuery.
		s.stmts = nil
		s.push(request{kind: reqQuery})
		s.mu.Unlock()
		return false, nil
	}
	tags := make([]string, len(targets))
	for i, t := range targets {
		if t != "" && s.stmts[t] == nil {
			// A statement of SQL PREPARE, or an unknown one: the server
			// answers the whole query.
			s.push(request{kind: reqQuery})
			s.mu.Unlock()
			return false, nil
		}
		tags[i] = "DEALLOCATE"
		if t == "" {
			tags[i] = "DEALLOCATE ALL"
		}
	}
	for _, t := range targets {
		if t == "" {
			s.stmts = nil
		} else {
			delete(s.stmts, t)
		}
	}
	s.push(request{kind: reqQueryDeallocate, tag: strings.Join(tags, "\n")})
	s.mu.Unlock()
	return true, s.sendEmptyQuery()
}

// sendEmptyQuery drops the client's Query and sends the server an empty
// one, whose answer stands for the DEALLOCATEs the proxy answered itself.
func (s *session) sendEmptyQuery() error {
	if err := s.cr.Skip(); err != nil {
		return err
	}
	_ = s.sw.w.WriteHeader(wire.MsgQuery, 1)
	_, _ = s.sw.Write([]byte{0})
	return nil
}

// deallocTarget returns the client statement a Parse's query deallocates,
// deallocAll for DEALLOCATE ALL, or "" when it is anything else or names
// no statement of the client's (the server then answers it, with 26000 if
// it is unknown there too). Like the simple-query DEALLOCATE (mapQuery) it
// acts on the client's statements only: run on the server, DEALLOCATE ALL
// would also drop the shared statements that Parses later in the stream
// count on. Only SQL PREPAREs on the backend need the server's. Callers
// hold s.mu.
func (s *session) deallocTarget(b *pool.Backend, tail []byte) string {
	if !s.mapStmt || !startsWithDeallocate(tail) {
		return "" // almost every Parse: decided without scanning the query
	}
	query, _, ok := wire.CString(tail)
	if !ok || len(query) > 256 {
		return ""
	}
	target, all, isDealloc, _ := parseStatementReset(query)
	switch {
	case !isDealloc:
		return ""
	case all && (b.SQLPrepared || s.txStatus == 'E'):
		return "" // (in a failed transaction the server refuses it, 25P02)
	case all:
		return deallocAll
	case s.stmts[target] == nil:
		return ""
	}
	return target
}

// deallocAll is deallocTarget's answer for DEALLOCATE ALL (no statement
// name holds a NUL).
const deallocAll = "\x00all"

// markExecuteDeallocate records an Execute: of the unnamed portal bound
// from a rewritten DEALLOCATE, its EmptyQueryResponse is shown as
// DEALLOCATE and the client's statement is forgotten then.
func (s *session) markExecuteDeallocate() error {
	peek, err := s.cr.Peek(wire.HeaderLen + 1)
	if err != nil {
		return err
	}
	r := request{kind: reqExecute}
	s.mu.Lock()
	if peek[wire.HeaderLen] == 0 { // the unnamed portal
		r = request{kind: reqExecuteDeallocate, client: s.portalDealloc, tag: "DEALLOCATE"}
		if r.client == deallocAll {
			// The statements parsed before it in the stream go; those
			// parsed after it stay, as on the server.
			r.client, r.tag = "", "DEALLOCATE ALL"
			s.stmts = nil
		}
	}
	s.push(r)
	s.mu.Unlock()
	return nil
}

// writeParse writes a Parse of a backend-named statement.
func (s *session) writeParse(server string, tail []byte) {
	_ = s.sw.w.WriteHeader(wire.MsgParse, len(server)+1+len(tail))
	_, _ = s.sw.Write([]byte(server))
	_, _ = s.sw.Write([]byte{0})
	_, _ = s.sw.Write(tail)
}

// writeClose writes a Close of a backend statement.
func (s *session) writeClose(server string) {
	_ = s.sw.w.WriteHeader(wire.MsgClose, 1+len(server)+1)
	_, _ = s.sw.Write([]byte{'S'})
	_, _ = s.sw.Write([]byte(server))
	_, _ = s.sw.Write([]byte{0})
}

// parseCompleteMsg and commandComplete are the rewritten replies.
var parseCompleteMsg = [...]byte{'1', 0, 0, 0, 4}

func appendCommandComplete(dst []byte, tag string) []byte {
	dst = wire.AppendHeader(dst, wire.MsgCommandComplete, len(tag)+1)
	dst = append(dst, tag...)
	return append(dst, 0)
}

var _ = binary.BigEndian

func hasPrefixFold(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// tagDeallocates marks a client Query with a DEALLOCATE statement, for
// its 26000 (request.tag).
const tagDeallocates = "\x00deallocate"

// quotedName returns the first double-quoted name in a server message
// ("prepared statement \"x\" does not exist"), or "".
func quotedName(msg string) string {
	_, rest, ok := strings.Cut(msg, `"`)
	if !ok {
		return ""
	}
	name, _, ok := strings.Cut(rest, `"`)
	if !ok {
		return ""
	}
	return name
}
