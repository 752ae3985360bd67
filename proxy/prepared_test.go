package proxy

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestIsStalePlanError(t *testing.T) {
	enc := func(e *pgproto3.ErrorResponse) []byte {
		b, err := e.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b[5:]
	}
	tests := []struct {
		name string
		e    *pgproto3.ErrorResponse
		want bool
	}{
		{"english", &pgproto3.ErrorResponse{Severity: "ERROR", Code: "0A000",
			Message: "cached plan must not change result type", Routine: "RevalidateCachedQuery"}, true},
		{"localized, by routine", &pgproto3.ErrorResponse{Severity: "FEHLER", Code: "0A000",
			Message: "gecachter Plan darf den Ergebniszeilentyp nicht ändern", Routine: "RevalidateCachedQuery"}, true},
		{"no routine field", &pgproto3.ErrorResponse{Severity: "ERROR", Code: "0A000",
			Message: "cached plan must not change result type"}, true},
		{"other 0A000", &pgproto3.ErrorResponse{Severity: "ERROR", Code: "0A000",
			Message: "cannot use subquery in check constraint", Routine: "transformSubLink"}, false},
		{"same routine, other code", &pgproto3.ErrorResponse{Severity: "ERROR", Code: "42P01",
			Message: "relation does not exist", Routine: "RevalidateCachedQuery"}, false},
	}
	for _, tc := range tests {
		if got := isStalePlanError(enc(tc.e)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseStatementReset(t *testing.T) {
	type want struct {
		name                  string
		all, dealloc, discard bool
	}
	for q, w := range map[string]want{
		"DEALLOCATE s1\x00":                 {name: "s1", dealloc: true},
		"deallocate S6":                     {name: "s6", dealloc: true},
		`DEALLOCATE "S5"`:                   {name: "S5", dealloc: true},
		`DEALLOCATE "with space"`:           {name: "with space", dealloc: true},
		`DEALLOCATE PREPARE "with space"`:   {name: "with space", dealloc: true},
		`deallocate "include_ _name"`:       {name: "include_ _name", dealloc: true},
		`DEALLOCATE "semi;colon"`:           {name: "semi;colon", dealloc: true},
		`DEALLOCATE "q""uote"`:              {name: `q"uote`, dealloc: true},
		"DEALLOCATE s7 -- trailing comment": {name: "s7", dealloc: true},
		"/* c */ DEALLOCATE\ns4 /* c */ ;":  {name: "s4", dealloc: true},
		"DEALLOCATE prepare":                {name: "prepare", dealloc: true},
		"DEALLOCATE PREPARE ALL;":           {all: true, dealloc: true},
		"discard ALL":                       {discard: true},
		"DEALLOCATE s1; SELECT 1":           {},
		"SELECT 1; DEALLOCATE s2":           {},
		"DEALLOCATE 's'":                    {},
		"DEALLOCATE $1":                     {},
		`DEALLOCATE "unterminated`:          {},
		`DEALLOCATE ""`:                     {},
		"DEALLOCATE a b":                    {},
		"DISCARD TEMP":                      {},
		"SELECT 1":                          {},
	} {
		name, all, dealloc, discard := parseStatementReset([]byte(q))
		if got := (want{name, all, dealloc, discard}); got != w {
			t.Errorf("parseStatementReset(%q) = %+v, want %+v", q, got, w)
		}
		if (w.dealloc || w.discard) && !mentionsDeallocOrDiscard([]byte(q)) {
			t.Errorf("mentionsDeallocOrDiscard(%q) = false: mapQuery would not read it", q)
		}
	}
}

func TestParseDeallocates(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want []string
		ok   bool
	}{
		{"DEALLOCATE a; DEALLOCATE b\x00", []string{"a", "b"}, true},
		{"/* c */ DEALLOCATE a; -- x\nDEALLOCATE b", []string{"a", "b"}, true},
		{" deallocate prepare \"X\"; DEALLOCATE ALL;", []string{"X", ""}, true},
		{"DEALLOCATE a", nil, false},
		{"DEALLOCATE a; SELECT 1", nil, false},
		{"DEALLOCATE a; DEALLOCATE 'b'", nil, false},
		{"SELECT 1; DEALLOCATE a", nil, false},
		{`DEALLOCATE "semi;colon"; DEALLOCATE "with space";`, []string{"semi;colon", "with space"}, true},
		{"DEALLOCATE a;; -- done", nil, false},
	} {
		got, ok := parseDeallocates([]byte(tc.q))
		if ok != tc.ok || (ok && !slices.Equal(got, tc.want)) {
			t.Errorf("parseDeallocates(%q) = %q, %v; want %q, %v", tc.q, got, ok, tc.want, tc.ok)
		}
	}
}
