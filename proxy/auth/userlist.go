package auth

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// UserList is a parsed PgBouncer userlist.txt, keyed by user name.
type UserList map[string]Secret

// ParseError reports a malformed userlist line. It quotes nothing from the
// line, not even the user name: on a line with a misplaced quote, what was
// read as the name may be the password.
type ParseError struct {
	Line   int
	Reason string
}

func (e *ParseError) Error() string {
	return "line " + strconv.Itoa(e.Line) + ": " + e.Reason
}

// ParseUserList reads the PgBouncer userlist format: one `"user" "secret"`
// per line, where a doubled "" inside quotes is a literal quote; lines whose
// first non-blank character is ';' or '#' are comments, blank lines are
// skipped, and anything after the second field is ignored, as PgBouncer
// does. The secret is classified by ParseSecret. The first malformed line is
// returned as a *ParseError.
func ParseUserList(r io.Reader) (UserList, error) {
	list := UserList{}
	firstSeen := map[string]int{}
	br := bufio.NewReader(r)
	for lineNo := 1; ; lineNo++ {
		line, readErr := br.ReadString('\n')
		if readErr != nil && !errors.Is(readErr, io.EOF) {
			return nil, readErr
		}
		if lineNo == 1 {
			// Editors on Windows like to prepend a byte-order mark.
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		if err := parseUserLine(list, firstSeen, lineNo, line); err != nil {
			return nil, err
		}
		if readErr != nil {
			return list, nil
		}
	}
}

func parseUserLine(list UserList, firstSeen map[string]int, lineNo int, line string) error {
	fail := func(reason string) error { return &ParseError{Line: lineNo, Reason: reason} }

	t := strings.TrimLeft(strings.TrimRight(line, "\r\n"), " \t")
	if t == "" || t[0] == ';' || t[0] == '#' {
		return nil
	}
	user, rest, err := readQuoted(t)
	if err != nil {
		return fail(err.Error() + " for the user name")
	}
	if user == "" {
		return fail("empty user name")
	}
	rest = strings.TrimLeft(rest, " \t")
	password, _, err := readQuoted(rest)
	if err != nil {
		return fail(err.Error() + " for the password")
	}
	// A typo in a hash must not silently turn it into a plain password that
	// anyone who has seen the hash could type.
	secret := ParseSecret(password)
	if secret.Kind == KindPlain && strings.HasPrefix(password, scramPrefix) {
		return fail("password looks like a SCRAM-SHA-256 verifier but is malformed")
	}
	if secret.Kind == KindPlain && len(password) == md5SecretLen && strings.HasPrefix(password, md5Prefix) {
		return fail(`password looks like an md5 hash but is not "md5" and 32 lowercase hex digits`)
	}
	// A repeated user is almost surely a mistake; picking one line would
	// hide it.
	if first, dup := firstSeen[user]; dup {
		return fail("duplicate user (first on line " + strconv.Itoa(first) + ")")
	}
	firstSeen[user] = lineNo
	list[user] = secret
	return nil
}

// readQuoted reads one double-quoted field at the start of s and returns its
// unescaped value and what follows the closing quote.
func readQuoted(s string) (value, rest string, err error) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", errors.New("expected a double-quoted field")
	}
	var b strings.Builder
	s = s[1:]
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			return "", "", errors.New("missing closing quote")
		}
		b.WriteString(s[:i])
		if i+1 < len(s) && s[i+1] == '"' {
			b.WriteByte('"')
			s = s[i+2:]
			continue
		}
		return b.String(), s[i+1:], nil
	}
}

// LoadUserList reads and parses the userlist file at path.
func LoadUserList(path string) (UserList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	list, err := ParseUserList(f)
	if err != nil {
		return nil, fmt.Errorf("userlist %s: %w", path, err)
	}
	return list, nil
}
