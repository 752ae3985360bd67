package proxy

import "strings"

// Recognising DEALLOCATE and DISCARD ALL sent as SQL, which in transaction
// pooling act on the client's own statement names (mapQuery). The names
// are read as PostgreSQL reads identifiers: quoted ones exactly (ecpg
// deallocates "include_ _name"), others folded to lower case; comments
// anywhere.

// parseStatementReset recognises a whole query that is DEALLOCATE
// [PREPARE] {name | ALL} or DISCARD ALL.
func parseStatementReset(body []byte) (name string, all, dealloc, discard bool) {
	// Almost every query is something else: decide on the first letters,
	// without splitting the text.
	head := skipBlanksAndComments(body)
	if !hasPrefixFold(head, "deallocate") && !hasPrefixFold(head, "discard") {
		return "", false, false, false
	}
	stmts, ok := sqlWords(body)
	if !ok || len(stmts) != 1 {
		return "", false, false, false
	}
	return statementReset(stmts[0])
}

// statementReset is parseStatementReset for one statement's words.
func statementReset(w []sqlWord) (name string, all, dealloc, discard bool) {
	switch {
	case len(w) == 2 && w[0].is("discard") && w[1].is("all"):
		return "", false, false, true
	case len(w) >= 2 && w[0].is("deallocate"):
		rest := w[1:]
		if len(rest) == 2 && rest[0].is("prepare") {
			rest = rest[1:]
		}
		if len(rest) != 1 {
			return "", false, false, false
		}
		if rest[0].is("all") {
			return "", true, true, false
		}
		return rest[0].ident(), false, true, false
	}
	return "", false, false, false
}

// parseDeallocates recognises a query of several statements, each a
// DEALLOCATE [PREPARE] {name | ALL}; it returns their targets, "" for ALL.
func parseDeallocates(body []byte) ([]string, bool) {
	if !startsWithDeallocate(body) {
		return nil, false
	}
	stmts, ok := sqlWords(body)
	if !ok || len(stmts) < 2 {
		return nil, false
	}
	targets := make([]string, 0, len(stmts))
	for _, w := range stmts {
		name, all, dealloc, _ := statementReset(w)
		if !dealloc {
			return nil, false
		}
		if all {
			name = ""
		}
		targets = append(targets, name)
	}
	return targets, true
}

// startsWithDeallocate reports whether a query begins, after blanks and
// comments, with DEALLOCATE in any case.
func startsWithDeallocate(q []byte) bool {
	return hasPrefixFold(skipBlanksAndComments(q), "deallocate")
}

// sqlWord is a keyword or identifier of a query.
type sqlWord struct {
	text   string
	quoted bool
}

// is reports whether w is the unquoted keyword kw.
func (w sqlWord) is(kw string) bool { return !w.quoted && strings.EqualFold(w.text, kw) }

// ident is the name w stands for.
func (w sqlWord) ident() string {
	if w.quoted {
		return w.text
	}
	return strings.ToLower(w.text)
}

// sqlWords splits a query made only of words, quoted identifiers and
// comments into its statements (empty ones dropped). ok is false for
// anything else: a string, a number-like or dollar-quoted token, an
// operator, which these commands never hold.
func sqlWords(q []byte) (stmts [][]sqlWord, ok bool) {
	var cur []sqlWord
	for {
		q = skipBlanksAndComments(q)
		if len(q) == 0 || q[0] == 0 {
			break
		}
		switch c := q[0]; {
		case c == ';':
			if len(cur) > 0 {
				stmts = append(stmts, cur)
			}
			cur = nil
			q = q[1:]
		case c == '"':
			var name []byte
			i, closed := 1, false
			for i < len(q) && !closed {
				switch {
				case q[i] == '"' && i+1 < len(q) && q[i+1] == '"':
					name = append(name, '"')
					i += 2
				case q[i] == '"':
					closed = true
					i++
				default:
					name = append(name, q[i])
					i++
				}
			}
			if !closed || len(name) == 0 {
				return nil, false
			}
			cur = append(cur, sqlWord{text: string(name), quoted: true})
			q = q[i:]
		case isIdentStart(c):
			i := 1
			for i < len(q) && (isIdentStart(q[i]) || q[i] >= '0' && q[i] <= '9' || q[i] == '$') {
				i++
			}
			cur = append(cur, sqlWord{text: string(q[:i])})
			q = q[i:]
		default:
			return nil, false
		}
	}
	if len(cur) > 0 {
		stmts = append(stmts, cur)
	}
	return stmts, true
}

// isIdentStart: a byte an unquoted identifier may start with (letters,
// underscore, and any byte of a multi-byte character).
func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

// mentionsDeallocOrDiscard reports whether q contains "deallocate" or
// "discard" in any case, anywhere (comments and quotes included): without
// either, parseStatementReset and parseDeallocates find nothing.
func mentionsDeallocOrDiscard(q []byte) bool {
	for i := range q {
		if q[i]|0x20 == 'd' && (hasPrefixFold(q[i:], "deallocate") || hasPrefixFold(q[i:], "discard")) {
			return true
		}
	}
	return false
}
