package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/pool"
	"github.com/pgrecycle/pgrecycle/wire"
)

// Session-level SET in transaction pooling.
//
// A client's SET search_path, SET ROLE or SET statement_timeout outlives
// its transaction on the backend, and the next client to get that backend
// would run with it: another tenant's schema, another role's privileges.
// The proxy notices such a SET in the client's query text, marks the
// backend with the client, and resets the backend before any other client
// uses it. A plain SET statement of the client's own follows it to its
// next backends (carry.go); others it keeps only while it lands on that
// backend again, as with any pooler. SET LOCAL, SET TRANSACTION and SET
// CONSTRAINTS end with their transaction and cost nothing. The same holds
// for settings changed by set_config() or inside a DO block, and for
// LISTEN, whose notifications would reach the next client: all are reset.

// resetSQL returns a backend to its login settings. Startup parameters,
// pgrecycle's injected ones included, are the values RESET restores.
// It also closes cursors WITH HOLD, drops temporary tables and releases
// session-level advisory locks, which a client leaves behind just as well
// and which would show its data, or hold its locks, under the next one.
const resetSQL = "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; CLOSE ALL; DISCARD TEMP; SELECT pg_advisory_unlock_all()"

// resetSessionSettings undoes another client's session-level settings;
// the caller then applies its own (applyParams).
func resetSessionSettings(b *pool.Backend) error {
	sql := resetSQL
	if b.SQLPrepared {
		// SQL PREPAREs share their namespace with the proxy's statements:
		// those go too, and are prepared again where needed.
		sql += "; DEALLOCATE ALL"
	}
	if err := runSetup(b, sql); err != nil {
		return err
	}
	if b.SQLPrepared {
		b.Statements.Clear()
		b.SQLPrepared = false
	} else if bound := b.Statements.TakeSessionBound(); len(bound) > 0 {
		// Statements parsed beside the client's temporary tables may
		// have taken their types from them: the next client's Parse of
		// the same text must reach the server again.
		if status, err := pool.CloseStatements(b, bound); err != nil || status != 'I' {
			b.Broken = true
			return fmt.Errorf("closing statements after a reset: %v (status %q)", err, status)
		}
	}
	b.SetProxySet(nil)
	b.ClearSessionState()
	b.PathScope, b.PathLocal = "", false
	b.Pinned.Store(false)
	return nil
}

// runSetup runs the proxy's own settings SQL on an idle backend, which
// must stay idle; a backend left in a transaction is marked Broken.
func runSetup(b *pool.Backend, sql string) error {
	status, err := pool.SimpleQuery(b, sql, nil)
	if err != nil {
		return err
	}
	if status != 'I' {
		b.Broken = true
		return errors.New("settings setup left a transaction open")
	}
	return nil
}

// noteSessionSet marks b when the client message about to be forwarded
// (a Query, or a Parse) may run a session-level SET, and returns what it
// found for the statement mapping. Called on the client goroutine in
// transaction pooling, before the message is consumed.
func (s *session) noteSessionSet(b *pool.Backend, typ byte, bodyLen int) stmtKinds {
	if s.carryWatch.Load() {
		s.voidCarry(b) // anything sent after a SET keeps it from being carried
	}
	k := s.scanSessionState(typ, bodyLen)
	if k.set || k.reset || k.prepare {
		if k.set && s.noteCarry(typ, bodyLen) {
			b.SettingsOwner = s.id // a SET its replay describes (carry.go)
		} else {
			b.MarkSessionState(s.id)
		}
	}
	if k.prepare {
		// Left on the backend, the next client's PREPARE of the same
		// name would fail with 42P05.
		b.SQLPrepared = true
	}
	if k.pin && s.pinsBackends() {
		if !b.Pinned.Swap(true) {
			s.log.Info("client keeps its backend: it may hold a session-level advisory lock, a cursor WITH HOLD, a temporary table or a LISTEN")
		}
	}
	if k.path {
		switch q, ok := s.peekQueryText(typ, bodyLen); {
		case ok && len(q) <= 512:
			b.PathScope = string(q)
		case ok:
			sum := sha256.Sum256(q)
			b.PathScope = hex.EncodeToString(sum[:16])
		default: // streamed unread: a scope of its own
			b.PathScope = strconv.FormatInt(time.Now().UnixNano(), 36)
		}
		b.PathLocal = k.pathLocal
	}
	if k.ddl && s.mapStmt {
		// Statements shared on backends may no longer match the tables:
		// once it commits, clients' next Parses get fresh ones, as a
		// fresh Parse on PostgreSQL never fails with "cached plan must
		// not change result type". The client's own next Parses, in the
		// transaction that runs it, need fresh ones at once (Rails
		// re-prepares after a migration's ALTER TABLE in one).
		s.ddlSeen.Store(true)
		s.pool.InvalidateStatements()
	}
	s.noteReset(b, typ, bodyLen, k.reset)
	return k
}

// resetState is a session's record of its resets.
type resetState struct {
	// all and names: what the resets since the last restore covered.
	all   bool
	names []string
	// stmts: the client's prepared statements ("" the unnamed one) that
	// run RESET or DISCARD, for their Binds.
	stmts map[string]resetInfo
	// carry: the client's session-level SETs (carry.go; guarded by mu,
	// unlike the fields above).
	carry carryState
}

// resetsNoted returns the session's reset record, allocating it.
func (s *session) resetsNoted() *resetState {
	if s.resets == nil {
		s.resets = &resetState{}
	}
	return s.resets
}

// resetInfo is what a RESET or DISCARD returns to the defaults
// (resetScope).
type resetInfo struct {
	all   bool
	names []string
}

// noteReset records a client's RESET or DISCARD (reset: the Query or
// Parse about to be forwarded has one). A Query runs it now; a prepared
// one runs at each Bind of its statement (noteBoundReset).
func (s *session) noteReset(b *pool.Backend, typ byte, bodyLen int, reset bool) {
	if typ == wire.MsgParse {
		if !reset && (s.resets == nil || len(s.resets.stmts) == 0) {
			return
		}
		name, q, ok := s.peekParse(bodyLen)
		if !ok {
			return
		}
		if !reset {
			delete(s.resets.stmts, name) // redefined
			return
		}
		all, names := resetScope(q)
		rs := s.resetsNoted()
		if rs.stmts == nil {
			rs.stmts = make(map[string]resetInfo)
		}
		rs.stmts[name] = resetInfo{all, names}
		return
	}
	if !reset {
		return
	}
	all, names := true, []string(nil)
	if q, ok := s.peekQueryText(typ, bodyLen); ok {
		all, names = resetScope(q)
	}
	s.applyReset(b, resetInfo{all, names})
}

// noteBoundReset handles a Bind of a statement that resets settings.
func (s *session) noteBoundReset(b *pool.Backend) {
	_, name, ok, _ := s.peekBind()
	if !ok {
		return
	}
	if r, found := s.resets.stmts[string(name)]; found {
		if s.txMode {
			b.MarkSessionState(s.id)
		}
		s.applyReset(b, r)
	}
}

// applyReset records a reset run on b. It returns settings to the
// backend's own startup values, not this client's: what the proxy set must
// be set again, and the client's startup settings come back before its
// next request (restoreStartupSettings). RESET name touches that setting
// only; RESET ALL and DISCARD ALL all of them.
func (s *session) applyReset(b *pool.Backend, r resetInfo) {
	b.SettingsMatched = 0
	if s.resets != nil && s.txMode {
		s.dropCarried(b, r)
	}
	if r.all {
		b.ProxySet = nil
	} else {
		for k := range b.ProxySet {
			if slices.Contains(r.names, strings.ToLower(k)) {
				delete(b.ProxySet, k)
			}
		}
	}
	if !s.restoreOnReset || (!r.all && len(r.names) == 0) {
		return
	}
	s.restoreNeeded = true
	rs := s.resetsNoted()
	rs.all = rs.all || r.all
	rs.names = append(rs.names, r.names...)
}

// scanSessionState runs sessionState on the text of the Query or Parse
// about to be forwarded, without consuming it.
//
// The whole text is searched: a SET after a long first statement is as
// much a SET. A message too large for the client buffer is streamed to the
// backend without being held whole, so it is not searched, and counts as
// a session-level SET (its backend is reset before another client gets
// it; a false alarm costs one reset).
func (s *session) scanSessionState(typ byte, bodyLen int) stmtKinds {
	q, ok := s.peekQueryText(typ, bodyLen)
	if !ok {
		return stmtKinds{set: true}
	}
	return statementKinds(q)
}

// peekQueryText returns the SQL of the Query or Parse about to be
// forwarded, without consuming it; ok is false when the message does not
// fit the client buffer.
func (s *session) peekQueryText(typ byte, bodyLen int) ([]byte, bool) {
	peek, err := s.cr.Peek(wire.HeaderLen + bodyLen)
	if err != nil {
		return nil, false
	}
	q := peek[wire.HeaderLen:]
	if typ == wire.MsgParse {
		_, rest, ok := wire.CString(q) // past the statement name, not copied
		return rest, ok
	}
	return q, true
}

// peekParse returns the statement name and SQL of the Parse about to be
// forwarded, without consuming it.
func (s *session) peekParse(bodyLen int) (name string, q []byte, ok bool) {
	peek, err := s.cr.Peek(wire.HeaderLen + bodyLen)
	if err != nil {
		return "", nil, false
	}
	n, rest, ok := wire.CString(peek[wire.HeaderLen:])
	if !ok {
		return "", nil, false
	}
	return string(n), rest, true
}

// resetScope reads which settings the statements of a query return to
// their defaults: all of them (RESET ALL, DISCARD ALL), or the names,
// lowercased, that resetsSetting reads. Other DISCARDs reset none.
func resetScope(q []byte) (all bool, names []string) {
	if i := bytes.IndexByte(q, 0); i >= 0 {
		q = q[:i]
	}
	for _, stmt := range bytes.Split(q, []byte{';'}) {
		a, name := resetsSetting(stmt)
		all = all || a
		if name != "" {
			names = append(names, name)
		}
	}
	return all, names
}

// resetsSetting reads one statement that returns settings to their
// defaults: RESET ALL and DISCARD ALL (all), RESET name, RESET TIME ZONE,
// SET [SESSION] name {TO | =} DEFAULT, SET TIME ZONE {DEFAULT | LOCAL}, SET
// NAMES DEFAULT (the setting's name, lowercased). SET LOCAL is left out:
// it ends with the transaction.
func resetsSetting(stmt []byte) (all bool, name string) {
	// "x=DEFAULT", "x =DEFAULT" and "x= DEFAULT" read as "x = DEFAULT".
	fields := strings.Fields(strings.ReplaceAll(strings.ToLower(string(skipBlanksAndComments(stmt))), "=", " = "))
	if len(fields) < 2 {
		return false, ""
	}
	switch fields[0] {
	case "discard":
		return len(fields) == 2 && fields[1] == "all", ""
	case "reset":
		switch {
		case len(fields) == 2 && fields[1] == "all":
			return true, ""
		case len(fields) == 2:
			return false, strings.Trim(fields[1], `"`)
		case len(fields) == 3 && fields[1] == "time" && fields[2] == "zone":
			return false, "timezone"
		case len(fields) == 3 && fields[1] == "session" && fields[2] == "authorization":
			return false, "session_authorization"
		}
		return false, ""
	case "set":
	default:
		return false, ""
	}
	fields = fields[1:]
	if fields[0] == "session" && len(fields) > 1 && fields[1] != "authorization" && fields[1] != "characteristics" {
		fields = fields[1:]
	}
	switch {
	case len(fields) == 3 && fields[0] == "time" && fields[1] == "zone" && (fields[2] == "default" || fields[2] == "local"):
		return false, "timezone"
	case len(fields) == 2 && fields[0] == "names" && fields[1] == "default":
		return false, "client_encoding"
	case len(fields) == 3 && fields[0] == "session" && fields[1] == "authorization" && fields[2] == "default":
		return false, "session_authorization"
	case len(fields) == 3 && (fields[1] == "to" || fields[1] == "=") && fields[2] == "default":
		return false, strings.Trim(fields[0], `"`)
	}
	return false, ""
}

// restoreStartupSettings brings back the client's startup settings after
// its RESET or DISCARD ALL, as PostgreSQL would: they were applied by
// the proxy with SET, which RESET undoes. Called on the client goroutine
// before its next request, once nothing is owed: detached (transaction
// pooling), the client learns its values back and the next backend gets
// them; attached (session pooling), a hidden query sets them, and the
// client learns them from the server's ParameterStatus.
func (s *session) restoreStartupSettings() {
	s.mu.Lock()
	b := s.backend
	idle := s.pending == 0 && !s.unsynced && (b == nil || (!s.txMode && s.txStatus == 'I'))
	s.mu.Unlock()
	if !idle {
		return // inside a transaction or a pipeline: at a later request
	}
	reset := func(name string) bool {
		return s.resets.all || slices.Contains(s.resets.names, strings.ToLower(name))
	}
	s.restoreNeeded = false
	defer func() { s.resets.all, s.resets.names = false, s.resets.names[:0] }()
	// The client's values after the reset: its startup ones for the
	// settings reset, its current ones for the others.
	s.mu.Lock()
	want := maps.Clone(s.want)
	for _, k := range trackedParams {
		if v, ok := s.loginWant[k]; ok && reset(k) {
			want[k] = v
		}
	}
	s.mu.Unlock()
	if b == nil {
		for _, k := range trackedParams {
			if v, ok := want[k]; ok && s.want[k] != v {
				_ = s.cw.Append((&pgproto3.ParameterStatus{Name: k, Value: v}).Encode)
			}
		}
		s.mu.Lock()
		s.want, s.wantSet = want, 0
		s.mu.Unlock()
		return
	}
	sql := paramSQL(want, s.extra, b.Params, b.ProxySet)
	if sql == "" {
		return
	}
	s.hiddenReplies.Add(1)
	s.wmu.Lock()
	_ = s.sw.w.WriteHeader(wire.MsgQuery, len(sql)+1)
	_, _ = s.sw.Write([]byte(sql))
	_, _ = s.sw.Write([]byte{0})
	s.wmu.Unlock() // the request that follows flushes it
	b.SetProxySet(maps.Clone(s.extra))
}

// swallowHidden handles a reply to the proxy's own query (hiddenReplies):
// it reports whether msg was consumed. ParameterStatus and notifications
// go on to the client.
func (s *session) swallowHidden(b *pool.Backend, typ byte, msg []byte) bool {
	switch typ {
	case wire.MsgParameterStatus, wire.MsgNotification:
		return false
	case wire.MsgReadyForQuery:
		if len(msg) == wire.HeaderLen+1 {
			b.TxStatus = msg[wire.HeaderLen]
		}
		s.hiddenReplies.Add(-1)
	case wire.MsgErrorResponse:
		s.log.Warn("restoring the client's startup settings failed", zap.String("error", wire.ErrorMessage(msg[wire.HeaderLen:])))
	}
	return true
}

// sessionState reads SQL text (up to a NUL, if any) once, statement by
// statement: set reports what may leave session state behind (a SET that
// outlives its transaction, DO, LISTEN, or a call of set_config
// anywhere), reset a statement that starts with RESET or DISCARD. It
// splits at every semicolon, in quotes or not: a false alarm costs one
// reset, never a wrong answer.
func sessionState(q []byte) (set, reset bool) {
	k := statementKinds(q)
	return k.set, k.reset
}

// stmtKinds is what statementKinds finds in a query.
type stmtKinds struct {
	set, reset bool // as sessionState
	// ddl: a statement starting with ALTER, DROP, CREATE or IMPORT, or a
	// DO block, after which statements prepared before may no longer
	// match their tables.
	ddl bool
	// prepare: SQL PREPARE, a statement that outlives the session's
	// transactions, and that only DEALLOCATE ALL clears.
	prepare bool
	// path: the query sets search_path (SET, SET LOCAL or set_config);
	// pathLocal: only with SET LOCAL.
	path, pathLocal bool
	// pin: it may leave what only this client may use and what must last
	// beyond its transaction (a session-level advisory lock, a cursor WITH
	// HOLD, a temporary table, a LISTEN; a DO block may): the client keeps
	// the backend while pinCheckSQL finds any (pin.go).
	pin bool
	// dealloc: a statement starts with DEALLOCATE.
	dealloc bool
}

// statementKinds is sessionState with DDL and SQL PREPARE told apart.
func statementKinds(q []byte) (k stmtKinds) {
	if i := bytes.IndexByte(q, 0); i >= 0 {
		q = q[:i]
	}
	calls := sessionCalls(q)
	k.set = calls.setConfig || calls.advisoryLock
	k.pin = calls.advisoryLock
	if calls.setConfig && containsFold(q, "search_path") {
		k.path = true // set_config('search_path', ...), local or not
	}
	for {
		stmt, rest, more := bytes.Cut(q, []byte{';'})
		stmt = skipBlanksAndComments(stmt)
		if hasWordFold(stmt, "select") {
			// The common statement, and one only SELECT ... INTO TEMP
			// concerns (leavesSessionObject).
			if selectsIntoTemp(stmt) {
				k.set, k.pin = true, true
			}
		} else {
			k.add(stmt, calls)
		}
		if !more {
			return k
		}
		q = rest
	}
}

// add records what one statement (not a SELECT) of a query does.
func (k *stmtKinds) add(stmt []byte, calls sessionMentions) {
	if hasWordFold(stmt, "set") && (containsFold(stmt, "default") || containsFold(stmt, "local")) {
		// SET x TO DEFAULT resets x (and is a SET too, below).
		if all, name := resetsSetting(stmt); all || name != "" {
			k.reset = true
		}
	}
	switch {
	case hasWordFold(stmt, "reset") || hasWordFold(stmt, "discard"):
		k.reset = true
	case hasWordFold(stmt, "set") && containsFold(stmt, "search_path"):
		local := hasWordFold(skipBlanksAndComments(stmt[3:]), "local")
		k.pathLocal = local && (k.pathLocal || !k.path)
		k.path = true
		k.set = k.set || !local
	case leavesSessionObject(stmt):
		k.set, k.pin = true, true
	case calls.tempSchema && hasWordFold(stmt, "create") && containsFold(stmt, "pg_temp"):
		// CREATE TABLE pg_temp.t, CREATE FUNCTION pg_temp.f: a
		// temporary object without the TEMP keyword.
		k.set, k.pin = true, true
	case isSessionSet(stmt):
		k.set = true
		if hasWordFold(stmt, "do") {
			// A DO block may run DDL (migrations do), LISTEN (Postgrex
			// re-listens that way), create a temporary table or take an
			// advisory lock, out of sight: the pin check at the end of
			// the transaction finds out whether it left anything.
			k.ddl, k.pin = true, true
		}
	case calls.settingsView && hasWordFold(stmt, "update") && containsFold(stmt, "pg_settings"):
		k.set = true // UPDATE pg_settings SET setting = ...: a SET
	case hasWordFold(stmt, "alter") || hasWordFold(stmt, "drop") || hasWordFold(stmt, "create") ||
		hasWordFold(stmt, "import"): // IMPORT FOREIGN SCHEMA creates tables
		k.ddl = true
	case hasWordFold(stmt, "prepare") && !hasWordFold(skipBlanksAndComments(stmt[7:]), "transaction"):
		k.prepare = true
	case hasWordFold(stmt, "deallocate"):
		k.dealloc = true
	}
}

// containsSessionSet is sessionState's set.
func containsSessionSet(q []byte) bool {
	set, _ := sessionState(q)
	return set
}

// containsReset is sessionState's reset.
func containsReset(q []byte) bool {
	_, reset := sessionState(q)
	return reset
}

// sessionMentions is what sessionCalls finds in a query.
type sessionMentions struct {
	setConfig    bool // set_config, any call
	advisoryLock bool // a session-level advisory lock
	tempSchema   bool // pg_temp
	settingsView bool // pg_settings
}

// sessionCalls finds, in one pass over the query's underscores, the names
// that may leave session state: set_config, the session-level advisory
// locks, pg_temp and pg_settings, in any case.
func sessionCalls(q []byte) (m sessionMentions) {
	for i := 2; i < len(q); {
		j := bytes.IndexByte(q[i:], '_')
		if j < 0 {
			return
		}
		i += j
		if hasPrefixFold(q[i-2:], "pg_temp") {
			m.tempSchema = true
		}
		if hasPrefixFold(q[i-2:], "pg_settings") {
			m.settingsView = true
		}
		if i >= 3 && hasPrefixFold(q[i-3:], "set_config") {
			m.setConfig = true
		}
		// pg_advisory_lock and pg_try_advisory_lock (and their _shared
		// forms) hold until the session ends; the _xact_ ones do not.
		if i >= 8 && hasPrefixFold(q[i-8:], "advisory_lock") {
			m.advisoryLock = true
		}
		i++
	}
	return
}

// containsFold reports whether b contains word, ASCII case-insensitively.
func containsFold(b []byte, word string) bool {
	for i := 0; i+len(word) <= len(b); i++ {
		if hasPrefixFold(b[i:], word) {
			return true
		}
	}
	return false
}

// explained skips EXPLAIN's options, (...) or words, to the statement.
func explained(q []byte) []byte {
	q = skipBlanksAndComments(q)
	if len(q) > 0 && q[0] == '(' {
		if i := bytes.IndexByte(q, ')'); i >= 0 {
			return skipBlanksAndComments(q[i+1:])
		}
		return nil
	}
	for _, w := range [...]string{"analyze", "analyse", "verbose"} {
		if hasWordFold(q, w) {
			q = skipBlanksAndComments(q[len(w):])
		}
	}
	return q
}

// isSessionSet reports whether one statement is SET, but not SET LOCAL,
// SET TRANSACTION or SET CONSTRAINTS, or is DO (its body may SET through
// EXECUTE) or LISTEN. (Session objects: leavesSessionObject.)
func isSessionSet(stmt []byte) bool {
	stmt = skipBlanksAndComments(stmt)
	if hasWordFold(stmt, "do") || hasWordFold(stmt, "listen") {
		return true
	}
	if !hasWordFold(stmt, "set") {
		return false
	}
	next := skipBlanksAndComments(stmt[3:])
	return !hasWordFold(next, "local") && !hasWordFold(next, "transaction") && !hasWordFold(next, "constraints")
}

// leavesSessionObject reports whether one statement leaves an object that
// outlives its transaction: a cursor WITH HOLD, a temporary table (CREATE
// TEMP, SELECT ... INTO TEMP), a LISTEN. A false alarm, such as a column
// named holder, costs one reset.
func leavesSessionObject(stmt []byte) bool {
	stmt = skipBlanksAndComments(stmt)
	switch {
	case hasWordFold(stmt, "listen"):
		// Notifications go to the backend that listens, while its
		// client waits for them between transactions.
		return true
	case hasWordFold(stmt, "declare"):
		return containsFold(stmt, "hold") && !containsFold(stmt, "without hold")
	case hasWordFold(stmt, "create"):
		// A temporary table (or view, sequence) lives until the session ends.
		next := skipBlanksAndComments(stmt[6:])
		if hasWordFold(next, "or") { // CREATE OR REPLACE TEMP VIEW
			next = skipBlanksAndComments(next[2:])
			if hasWordFold(next, "replace") {
				next = skipBlanksAndComments(next[7:])
			}
		}
		return hasWordFold(next, "temp") || hasWordFold(next, "temporary") ||
			hasWordFold(next, "local") || hasWordFold(next, "global")
	case hasWordFold(stmt, "explain"):
		// EXPLAIN ANALYZE runs it: CREATE TEMP TABLE ... AS, SELECT INTO.
		return leavesSessionObject(explained(stmt[7:]))
	case hasWordFold(stmt, "select") || hasWordFold(stmt, "with"):
		return selectsIntoTemp(stmt)
	}
	return false
}

// selectsIntoTemp reports whether a SELECT creates a temporary table
// (SELECT ... INTO TEMP|TEMPORARY|LOCAL|GLOBAL name), which lives until the
// session ends. Like the rest of this scan it looks into quotes too: a
// false alarm costs one reset.
func selectsIntoTemp(stmt []byte) bool {
	for i := 1; i+4 <= len(stmt); i++ {
		// Every SELECT pays for this scan, so go eight bytes at a time to
		// the next i or I (0x49|0x20 == 0x69; no other byte ORs to it).
		// The lowest flagged byte of the zero-byte test is exact.
		for i+8 <= len(stmt) {
			v := binary.LittleEndian.Uint64(stmt[i:]) | 0x2020202020202020 ^ 0x6969696969696969
			if found := (v - 0x0101010101010101) &^ v & 0x8080808080808080; found != 0 {
				i += bits.TrailingZeros64(found) / 8
				break
			}
			i += 8
		}
		if i+4 > len(stmt) {
			break
		}
		if stmt[i]|0x20 != 'i' || !hasWordFold(stmt[i:], "into") {
			continue
		}
		if c := stmt[i-1]; c == '_' || c == '$' || c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z' || c >= 0x80 {
			continue // part of a longer word
		}
		next := skipBlanksAndComments(stmt[i+4:])
		if hasWordFold(next, "temp") || hasWordFold(next, "temporary") ||
			hasWordFold(next, "local") || hasWordFold(next, "global") {
			return true
		}
	}
	return false
}

// hasWordFold reports whether b starts with word, in any case, followed by
// something that ends a word.
func hasWordFold(b []byte, word string) bool {
	if !hasPrefixFold(b, word) {
		return false
	}
	if len(b) == len(word) {
		return true
	}
	c := b[len(word)]
	return !(c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80)
}

// skipBlanksAndComments skips white space, -- comments and /* */ comments
// (nested, as PostgreSQL's).
func skipBlanksAndComments(b []byte) []byte {
	for {
		i := 0
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r' || b[i] == '\f') {
			i++
		}
		b = b[i:]
		switch {
		case len(b) >= 2 && b[0] == '-' && b[1] == '-':
			j := 2
			for j < len(b) && b[j] != '\n' {
				j++
			}
			b = b[j:]
		case len(b) >= 2 && b[0] == '/' && b[1] == '*':
			depth, j := 1, 2
			for j < len(b) && depth > 0 {
				switch {
				case j+1 < len(b) && b[j] == '/' && b[j+1] == '*':
					depth++
					j += 2
				case j+1 < len(b) && b[j] == '*' && b[j+1] == '/':
					depth--
					j += 2
				default:
					j++
				}
			}
			b = b[j:]
		default:
			return b
		}
	}
}
