package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseUserList(t *testing.T) {
	md5s := testMD5Secret(testPassword, "bob")
	scramS := testSCRAMString(t, testPassword)
	input := "\uFEFF; PgBouncer-style comment\r\n" +
		"# another comment\n" +
		"\n" +
		"   \t\n" +
		"  ; indented comment\n" +
		`"alice" "` + testPassword + `"` + "\n" +
		`"bob"	"` + md5s + `"` + "\r\n" +
		`  "carol"   "` + scramS + `"   ` + "\n" +
		`"dq""user" "pa""ss""word"` + "\n" +
		`"nopw" ""` + "\n" +
		`"extra" "pw" "ignored third field"` + "\n" +
		`"with space" "with space too"` // no final newline
	list, err := ParseUserList(strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Secret{
		"alice":      {Kind: KindPlain, Plain: testPassword},
		"bob":        {Kind: KindMD5, MD5: md5s},
		"dq\"user":   {Kind: KindPlain, Plain: `pa"ss"word`},
		"nopw":       {Kind: KindNone},
		"extra":      {Kind: KindPlain, Plain: "pw"},
		"with space": {Kind: KindPlain, Plain: "with space too"},
	}
	if len(list) != len(want)+1 {
		t.Fatalf("got %d users, want %d", len(list), len(want)+1)
	}
	for u, w := range want {
		g, ok := list[u]
		if !ok || g.Kind != w.Kind || g.Plain != w.Plain || g.MD5 != w.MD5 {
			t.Errorf("user %q: got %v (present %v), want %v", u, g.Kind, ok, w.Kind)
		}
	}
	carol := list["carol"]
	if carol.Kind != KindSCRAM || !carol.Verify("carol", testPassword) {
		t.Errorf("carol: %v", carol)
	}
}

func TestParseUserListEmpty(t *testing.T) {
	for _, in := range []string{"", "\n\n", "; only a comment\n# and another"} {
		list, err := ParseUserList(strings.NewReader(in))
		if err != nil || len(list) != 0 {
			t.Errorf("%q: %v %v", in, list, err)
		}
	}
}

func TestParseUserListErrors(t *testing.T) {
	const pw = "s3cr3t-Passw0rd"
	scramS := testSCRAMString(t, pw)
	cases := []struct {
		name string
		line string
		want string
	}{
		{"unquoted user", `alice "` + pw + `"`, "user name"},
		{"unterminated user", `"alice ` + pw, "missing closing quote for the user name"},
		{"empty user", `"" "` + pw + `"`, "empty user name"},
		{"missing password", `"alice"`, "password"},
		{"unquoted password", `"alice" ` + pw, "password"},
		{"unterminated password", `"alice" "` + pw, "missing closing quote for the password"},
		{"fields glued", `"alice""` + pw + `"`, "password"},
		{"malformed scram", `"alice" "` + scramS[:len(scramS)-3] + `"`, "SCRAM-SHA-256 verifier but is malformed"},
		{"uppercase md5", `"alice" "md5` + strings.Repeat("AB", 16) + `"`, "md5 hash"},
		{"duplicate", `"alice" "x"` + "\n" + `"alice" "` + pw + `"`, "duplicate user (first on line 3)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := "; header\n\n" + tc.line + "\n"
			_, err := ParseUserList(strings.NewReader(in))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("want *ParseError, got %v", err)
			}
			wantLine := 3
			if tc.name == "duplicate" {
				wantLine = 4
			}
			if pe.Line != wantLine {
				t.Errorf("line %d, want %d (%v)", pe.Line, wantLine, err)
			}
			if !strings.HasPrefix(err.Error(), "line ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			for _, leak := range []string{pw, scramS[20:40], strings.Repeat("AB", 16), "alice"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error %q leaks the password", err)
				}
			}
		})
	}
}

func TestLoadUserList(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(path, []byte(`"alice" "`+testPassword+`"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := LoadUserList(path)
	if err != nil || !list["alice"].Verify("alice", testPassword) {
		t.Fatalf("%v %v", list, err)
	}

	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte("\nalice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadUserList(bad)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 2 || !strings.Contains(err.Error(), bad) {
		t.Fatalf("got %v", err)
	}

	if _, err := LoadUserList(filepath.Join(dir, "missing.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}
