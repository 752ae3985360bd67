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
	} {
		got, ok := parseDeallocates([]byte(tc.q))
		if ok != tc.ok || (ok && !slices.Equal(got, tc.want)) {
			t.Errorf("parseDeallocates(%q) = %q, %v; want %q, %v", tc.q, got, ok, tc.want, tc.ok)
		}
	}
}
