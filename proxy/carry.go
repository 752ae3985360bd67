package proxy

import (
	"bytes"
	"slices"
	"strings"

	"github.com/pgrecycle/pgrecycle/pool"
	"github.com/pgrecycle/pgrecycle/wire"
)

// Carried settings: a client's session-level SETs follow it in
// transaction pooling.
//
// A client that runs SET search_path, SET ROLE or SET app.tenant = '42'
// outside a transaction expects it to hold for the rest of its session.
// Left on one backend, it would reach the next client of that backend (a
// tenant's schema, a role's privileges), so that backend is reset before
// anyone else gets it (sessionset.go); and the client's next transactions,
// on other backends, would run without it. So a plain SET that the server
// confirms outside a transaction block is recorded, and replayed on each
// backend the client gets that does not have it.
//
// Only a query or unnamed Parse that is exactly one SET statement is
// carried, and only when it committed: its CommandComplete "SET", then
// ReadyForQuery 'I', with no error and no BEGIN between. SETs inside a
// transaction block, SET LOCAL, set_config() and DO blocks are reset but
// not carried. RESET name, RESET ALL, DISCARD ALL and SET name TO DEFAULT
// drop what they reset. The settings the server reports (TimeZone, DateStyle and the
// like) follow the client through ParameterStatus already (params.go).

// carriedSet is one SET statement to replay, under the setting it sets.
type carriedSet struct{ name, sql string }

// carryState is a session's carried settings (guarded by the session's
// mu, as the replies that confirm a SET may be relayed by the pump).
type carryState struct {
	sets []carriedSet
	// sql applies sets, as a backend that has them records it
	// (pool.Backend.Carried); path is the search_path statement among them.
	sql, path string
	// pending is the SET sent and not confirmed yet; the flags are what
	// its replies showed so far.
	pending            carriedSet
	confirmed, inBlock bool
	failed             bool
}

// plainSessionSet reports whether q is exactly one session-level SET
// statement, and which setting it sets (lowercased; the settings the
// server reports are left to params.go). It returns the statement, as
// it will be replayed.
func plainSessionSet(q []byte) (name, stmt string, ok bool) {
	if i := bytes.IndexByte(q, 0); i >= 0 {
		q = q[:i]
	}
	first, rest, _ := bytes.Cut(q, []byte{';'})
	for r := skipBlanksAndComments(rest); len(r) > 0; r = skipBlanksAndComments(r[1:]) {
		if r[0] != ';' {
			return "", "", false // more than one statement (or a ; in quotes)
		}
	}
	first = bytes.TrimRight(skipBlanksAndComments(first), " \t\r\n\f")
	if !hasWordFold(first, "set") {
		return "", "", false
	}
	words := setWords(first[3:], 3)
	if len(words) < 2 {
		return "", "", false
	}
	switch head, _, _ := strings.Cut(words[0], "."); head {
	case "local", "transaction", "constraints":
		return "", "", false // or not PostgreSQL's SET at all: never carried
	case "session":
		switch words[1] {
		case "authorization":
			name = "session_authorization"
		case "characteristics":
			name = "session_characteristics"
		default:
			words = words[1:]
		}
	}
	if name == "" {
		switch {
		case words[0] == "role":
			name = "role"
		case words[0] == "schema":
			name = "search_path"
		case words[0] == "time" || words[0] == "names":
			return "", "", false // TimeZone, client_encoding: reported
		case words[0] == "xml" && words[1] == "option":
			name = "xmloption"
		case len(words) > 1 && (words[1] == "to" || words[1] == "="):
			name = words[0]
		default:
			return "", "", false
		}
	}
	if canonicalTracked(name) != "" {
		return "", "", false
	}
	if all, reset := resetsSetting(first); all || reset != "" {
		// SET x TO DEFAULT returns to the client's startup value, which
		// the proxy restores (sessionset.go); replayed, it would mean the
		// backend's own.
		return "", "", false
	}
	return name, string(first), true
}

// setWords splits the start of a SET statement into up to n words,
// lowercased, with "=" a word of its own and double quotes removed.
func setWords(b []byte, n int) []string {
	var words []string
	for len(words) < n {
		b = skipBlanksAndComments(b)
		if len(b) == 0 {
			break
		}
		if b[0] == '=' {
			words = append(words, "=")
			b = b[1:]
			continue
		}
		if b[0] == '\'' {
			words = append(words, "'") // a literal: the value, not read
			break
		}
		if b[0] == '"' {
			end := bytes.IndexByte(b[1:], '"')
			if end < 0 {
				break
			}
			words = append(words, string(b[1:1+end]))
			b = b[2+end:]
			continue
		}
		// A word ends where hasWordFold's words do; dots join the parts
		// of a custom setting's name (app.tenant).
		i := 0
		for i < len(b) && (b[i] == '_' || b[i] == '$' || b[i] == '.' || b[i] >= '0' && b[i] <= '9' ||
			b[i]|0x20 >= 'a' && b[i]|0x20 <= 'z' || b[i] >= 0x80) {
			i++
		}
		if i == 0 {
			break
		}
		words = append(words, strings.ToLower(string(b[:i])))
		b = b[i:]
	}
	return words
}

// noteCarry records a plain SET about to be forwarded as pending, when
// nothing sent before it can put it in a transaction block: the client is
// outside one, and (a Query) nothing else is owed or (an unnamed Parse) no
// earlier batch is. It reports whether it did. Client goroutine.
func (s *session) noteCarry(typ byte, bodyLen int) bool {
	q, ok := s.peekQueryText(typ, bodyLen)
	if !ok {
		return false
	}
	if typ == wire.MsgParse {
		if peek, err := s.cr.Peek(wire.HeaderLen + 1); err != nil || peek[wire.HeaderLen] != 0 {
			return false // a named statement may run later, or never
		}
	}
	name, stmt, ok := plainSessionSet(q)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.txStatus != 'I' || (typ == wire.MsgQuery && (s.pending != 1 || s.unsynced)) || (typ == wire.MsgParse && s.pending != 0) {
		return false
	}
	s.watchCarryLocked(carriedSet{name: name, sql: stmt})
	return true
}

// watchCarryLocked makes set the pending SET whose replies carryReply
// follows. Callers hold s.mu.
func (s *session) watchCarryLocked(set carriedSet) {
	c := &s.resetsNoted().carry
	c.pending = set
	c.confirmed, c.inBlock, c.failed = false, false, false
	s.carryWatch.Store(true)
}

// noteCarryBindLocked is noteCarry for a Bind of the client's named
// statement cs, which runs a session-level SET (pgjdbc prepares a
// statement it runs often, SETs included): a plain SET, bound when nothing
// earlier is owed and outside a transaction block, is carried like one
// sent as a query; anything else marks b as before. Callers hold s.mu.
func (s *session) noteCarryBindLocked(b *pool.Backend, cs *clientStmt) {
	s.voidCarryLocked(b) // an earlier SET of this batch is followed by more
	q, _, _ := wire.CString(cs.tail)
	name, stmt, ok := plainSessionSet(q)
	if !ok || s.txStatus != 'I' || s.pending != 0 {
		b.MarkSessionState(s.id)
		return
	}
	s.watchCarryLocked(carriedSet{name: name, sql: stmt})
	b.SettingsOwner = s.id // a SET its replay describes
}

// voidCarry gives up the pending SET: the client sent more before its
// batch ended. It may still run, so b counts as holding state that no
// replay describes. Client goroutine.
func (s *session) voidCarry(b *pool.Backend) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.voidCarryLocked(b)
}

func (s *session) voidCarryLocked(b *pool.Backend) {
	if s.carryWatch.Load() {
		s.resets.carry.pending = carriedSet{}
		s.carryWatch.Store(false)
		b.SettingsDirty = true
	}
}

// carryReply follows the replies to a pending SET: its CommandComplete
// confirms it, and the ReadyForQuery that ends its batch commits it, or
// not.
func (s *session) carryReply(b *pool.Backend, typ byte, msg []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &s.resets.carry
	switch typ {
	case wire.MsgCommandComplete:
		switch tag, _, _ := wire.CString(msg[wire.HeaderLen:]); string(tag) {
		case "SET":
			c.confirmed = true
		case "BEGIN", "START TRANSACTION":
			c.inBlock = true
		}
	case wire.MsgErrorResponse:
		c.failed = true
	case wire.MsgReadyForQuery:
		switch {
		case c.confirmed && !c.failed && !c.inBlock && len(msg) > wire.HeaderLen && msg[wire.HeaderLen] == 'I':
			c.carry(c.pending)
			b.SettingsOwner, b.Carried = s.id, c.sql
		case c.confirmed && !c.failed:
			b.SettingsDirty = true // set inside a transaction block: it may last
		}
		c.pending = carriedSet{}
		s.carryWatch.Store(false)
	}
}

// carry records set, replacing an earlier SET of the same setting.
func (c *carryState) carry(set carriedSet) {
	c.sets = slices.DeleteFunc(c.sets, func(old carriedSet) bool { return old.name == set.name })
	c.sets = append(c.sets, set)
	c.changed()
}

// changed brings sql and path up to date with sets.
func (c *carryState) changed() {
	var sb strings.Builder
	c.path = ""
	for i, cs := range c.sets {
		if i > 0 {
			sb.WriteString("\n; ") // a statement may end in a -- comment
		}
		sb.WriteString(cs.sql)
		if cs.name == "search_path" {
			c.path = cs.sql
		}
	}
	c.sql = sb.String()
}

// dropCarried forgets the carried settings a reset returns to their
// defaults on b (all, or those named). Client goroutine.
func (s *session) dropCarried(b *pool.Backend, r resetInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &s.resets.carry
	n := len(c.sets)
	if r.all {
		c.sets = nil
	} else {
		c.sets = slices.DeleteFunc(c.sets, func(cs carriedSet) bool { return slices.Contains(r.names, cs.name) })
	}
	if len(c.sets) != n {
		c.changed()
		if b != nil && b.SettingsOwner == s.id {
			b.Carried = c.sql
		}
	}
}

// carried returns the SQL that applies the session's carried settings
// ("" when there are none), and their search_path statement. Client
// goroutine.
func (s *session) carried() (sql, path string) {
	if s.resets == nil {
		return "", ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resets.carry.sql, s.resets.carry.path
}
