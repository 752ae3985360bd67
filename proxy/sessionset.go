package proxy

import (
	"bytes"
	"errors"

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
// uses it. The client that set it keeps it only while it lands on that
// backend again, as with any pooler; SET LOCAL, SET TRANSACTION and SET
// CONSTRAINTS end with their transaction and cost nothing. The same holds
// for settings changed by set_config() or inside a DO block, and for
// LISTEN, whose notifications would reach the next client: all are reset.

// sessionSetScanLimit bounds how much of a query is searched for SET.
const sessionSetScanLimit = 2048

// resetSQL returns a backend to its login settings. Startup parameters,
// pgrecycle's injected ones included, are the values RESET restores.
const resetSQL = "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *"

// resetSessionSettings undoes another client's session-level settings;
// the caller then applies its own (applyParams).
func resetSessionSettings(b *pool.Backend) error {
	if err := runSetup(b, resetSQL); err != nil {
		return err
	}
	b.ProxySet = nil
	b.SettingsOwner = 0
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
// (a Query, or a Parse) may run a session-level SET. Called on the client
// goroutine in transaction pooling, before the message is consumed.
func (s *session) noteSessionSet(b *pool.Backend, typ byte, bodyLen int) {
	n := min(bodyLen, sessionSetScanLimit)
	peek, err := s.cr.Peek(wire.HeaderLen + n)
	if err != nil {
		return // larger than the buffer: streamed, not searched
	}
	q := peek[wire.HeaderLen:]
	if typ == wire.MsgParse {
		_, rest, ok := wire.CString(q)
		if !ok {
			return
		}
		q = rest
	}
	set, reset := sessionState(q)
	if set || reset {
		b.SettingsOwner = s.id
	}
	if reset {
		// RESET and DISCARD return the backend to its own startup values,
		// not this client's: what the proxy set must be set again.
		b.ProxySet = nil
	}
}

// sessionState reads SQL text (up to a NUL, if any) once, statement by
// statement: set reports what may leave session state behind (a SET that
// outlives its transaction, DO, LISTEN, or a call of set_config
// anywhere), reset a statement that starts with RESET or DISCARD. It
// splits at every semicolon, in quotes or not: a false alarm costs one
// reset, never a wrong answer.
func sessionState(q []byte) (set, reset bool) {
	if i := bytes.IndexByte(q, 0); i >= 0 {
		q = q[:i]
	}
	set = callsSetConfig(q)
	for {
		stmt, rest, more := bytes.Cut(q, []byte{';'})
		stmt = skipBlanksAndComments(stmt)
		switch {
		case hasWordFold(stmt, "reset") || hasWordFold(stmt, "discard"):
			reset = true
		case isSessionSet(stmt):
			set = true
		}
		if !more || set && reset {
			return set, reset
		}
		q = rest
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

// callsSetConfig reports whether q mentions set_config, in any case.
func callsSetConfig(q []byte) bool {
	for i := 3; i < len(q); {
		j := bytes.IndexByte(q[i:], '_')
		if j < 0 {
			return false
		}
		i += j
		if hasPrefixFold(q[i-3:], "set_config") {
			return true
		}
		i++
	}
	return false
}

// isSessionSet reports whether one statement is SET, but not SET LOCAL,
// SET TRANSACTION or SET CONSTRAINTS, or is DO (its body may SET through
// EXECUTE) or LISTEN.
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
