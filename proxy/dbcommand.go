package proxy

import (
	"bytes"
	"slices"
	"strings"
	"time"

	"github.com/pgrecycle/pgrecycle/wire"
	"go.uber.org/zap"
)

// PostgreSQL refuses to drop, rename or copy (as a template) a database
// others are connected to (55006, "database ... is being accessed by other
// users"), and a pooler keeps idle connections open: a test runner's DROP
// DATABASE of its test database, sent through the pooler after its own
// clients disconnected, fails on the pooler's idle backends. pgrecycle
// closes its idle backends to that database first, and those in use when
// released (a client that just left may still be in its reset);
// PostgreSQL waits a few seconds for them to exit. Backends held by
// connected clients still count, as they would on PostgreSQL.

// databaseReleasePause keeps the pools from reconnecting to the database
// ahead of demand (min_idle, replacements) meanwhile.
const databaseReleasePause = 10 * time.Second

// freeDatabaseFor vacates the pools of the database that the Query or
// Parse about to be forwarded needs without other connections.
func (s *session) freeDatabaseFor(typ byte, bodyLen int) {
	q, ok := s.peekQueryText(typ, bodyLen)
	if !ok {
		return // streamed: not a short database command
	}
	name := blockingDatabase(q)
	if name == "" {
		return
	}
	target := s.pool.Options().Target
	closed := 0
	for _, p := range s.srv.poolList() {
		t := p.Options().Target
		if t.DBName == name && t.Host == target.Host && t.Port == target.Port {
			closed += p.Vacate("database-command", databaseReleasePause)
		}
	}
	if closed > 0 {
		s.log.Info("closed idle backends so the database can be dropped, renamed or copied",
			zap.String("dbname", name), zap.Int("backends", closed))
	}
}

// freeRolesFor closes the idle backends logged in as the roles that the
// DROP ROLE (or USER) about to be forwarded drops: a role created again
// under the same name is another role, and a backend of the old one would
// give its next client "invalid role OID". Backends in use retire when
// released.
func (s *session) freeRolesFor(typ byte, bodyLen int) {
	q, ok := s.peekQueryText(typ, bodyLen)
	if !ok {
		return
	}
	roles := droppedRoles(q)
	if len(roles) == 0 {
		return
	}
	target := s.pool.Options().Target
	for _, p := range s.srv.poolList() {
		o := p.Options()
		if o.Target.Host == target.Host && o.Target.Port == target.Port && slices.Contains(roles, o.User) {
			if n := p.Vacate("role-dropped", 0); n > 0 {
				s.log.Info("closed idle backends of a role being dropped", zap.String("role", o.User), zap.Int("backends", n))
			}
		}
	}
}

// droppedRoles returns the roles a DROP ROLE or DROP USER statement, the
// query's first, names; nil for any other statement.
func droppedRoles(q []byte) []string {
	if i := bytes.IndexByte(q, 0); i >= 0 {
		q = q[:i]
	}
	q = skipBlanksAndComments(q)
	if !hasWordFold(q, "drop") {
		return nil
	}
	q = skipBlanksAndComments(q[len("drop"):])
	switch {
	case hasWordFold(q, "role"):
		q = q[len("role"):]
	case hasWordFold(q, "user"):
		q = q[len("user"):]
	default:
		return nil
	}
	q, ok := skipIfExists(skipBlanksAndComments(q))
	if !ok {
		return nil
	}
	var roles []string
	for {
		name, rest := sqlIdentifier(q)
		if name == "" {
			return roles
		}
		roles = append(roles, name)
		q = skipBlanksAndComments(rest)
		if len(q) == 0 || q[0] != ',' {
			return roles
		}
		q = skipBlanksAndComments(q[1:])
	}
}

// blockingDatabase returns the database a statement needs free of other
// connections: DROP DATABASE's, ALTER DATABASE ... RENAME's, the TEMPLATE
// of CREATE DATABASE; "" for any other statement. These run outside
// transaction blocks, so the statement is the query's first.
func blockingDatabase(q []byte) string {
	if i := bytes.IndexByte(q, 0); i >= 0 {
		q = q[:i]
	}
	q = skipBlanksAndComments(q)
	var verb string
	for _, v := range [...]string{"drop", "alter", "create"} {
		if hasWordFold(q, v) {
			verb = v
		}
	}
	if verb == "" {
		return ""
	}
	q = skipBlanksAndComments(q[len(verb):])
	if !hasWordFold(q, "database") {
		return ""
	}
	q = skipBlanksAndComments(q[len("database"):])
	if verb == "drop" {
		var ok bool
		if q, ok = skipIfExists(q); !ok {
			return ""
		}
	}
	name, rest := sqlIdentifier(q)
	switch verb {
	case "drop":
		return name
	case "alter":
		if hasWordFold(skipBlanksAndComments(rest), "rename") {
			return name
		}
		return ""
	}
	// CREATE DATABASE name [WITH] [option [=] value] ...: find TEMPLATE.
	for q = skipBlanksAndComments(rest); len(q) > 0; q = skipBlanksAndComments(q) {
		if hasWordFold(q, "template") {
			q = skipBlanksAndComments(q[len("template"):])
			if len(q) > 0 && q[0] == '=' {
				q = skipBlanksAndComments(q[1:])
			}
			name, _ := sqlIdentifier(q)
			return name
		}
		q = skipToken(q)
	}
	return ""
}

// skipIfExists passes a DROP's optional IF EXISTS; ok is false for an IF
// without EXISTS.
func skipIfExists(q []byte) (rest []byte, ok bool) {
	if !hasWordFold(q, "if") {
		return q, true
	}
	q = skipBlanksAndComments(q[len("if"):])
	if !hasWordFold(q, "exists") {
		return nil, false
	}
	return skipBlanksAndComments(q[len("exists"):]), true
}

// sqlIdentifier reads an identifier as PostgreSQL does: quoted verbatim
// ("" for a quote), else folded to lower case. The rest follows it.
func sqlIdentifier(q []byte) (string, []byte) {
	if len(q) > 0 && q[0] == '"' {
		var name []byte
		for i := 1; i < len(q); i++ {
			if q[i] != '"' {
				name = append(name, q[i])
				continue
			}
			if i+1 < len(q) && q[i+1] == '"' {
				name = append(name, '"')
				i++
				continue
			}
			return string(name), q[i+1:]
		}
		return "", nil // unterminated
	}
	i := 0
	for i < len(q) && isIdentByte(q[i]) {
		i++
	}
	return string(bytes.ToLower(q[:i])), q[i:]
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// skipToken passes one word, quoted identifier, string literal or other
// character.
func skipToken(q []byte) []byte {
	switch {
	case q[0] == '"' || q[0] == '\'':
		for i := 1; i < len(q); i++ {
			if q[i] == q[0] {
				if i+1 < len(q) && q[i+1] == q[0] {
					i++
					continue
				}
				return q[i+1:]
			}
		}
		return nil
	case isIdentByte(q[0]):
		i := 0
		for i < len(q) && isIdentByte(q[i]) {
			i++
		}
		return q[i:]
	}
	return q[1:]
}

// isDroppedRoleError recognises the error of a backend whose role was
// dropped (by a DROP ROLE run outside pgrecycle) while it was logged in:
// PostgreSQL can no longer name the session's user.
func isDroppedRoleError(body []byte) bool {
	return strings.HasPrefix(wire.ErrorMessage(body), "invalid role OID")
}

// vacateDroppedRole closes the pool's backends once one shows its role is
// gone: they all logged in as that role, and each would fail every client
// it serves, the same way, until it retired (a role created again under
// the same name is another role). The client that saw the error keeps its
// backend until it releases it.
func (s *session) vacateDroppedRole() {
	if n := s.pool.Vacate("role-dropped", 0); n > 0 {
		s.log.Warn("closed the backends of a role dropped outside pgrecycle", zap.Int("backends", n))
	}
}
