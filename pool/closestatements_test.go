package pool

import (
	"testing"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// CloseStatements closes what exists and shrugs at what doesn't, where a
// DEALLOCATE would fail (and, in a reset query, roll the reset back).
func TestCloseStatements(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	p := newPool(t, testOptions(t, srv, 1))
	b := acquire(t, p)
	defer p.Release(b)
	query(t, b, "PREPARE pgrecycle_close_me AS SELECT 1")
	status, err := CloseStatements(b, []string{"pgrecycle_close_me", "pgrecycle_never_was"})
	if err != nil || status != 'I' {
		t.Fatalf("CloseStatements: %q, %v", status, err)
	}
	if got, _ := query(t, b, "SELECT count(*) FROM pg_prepared_statements WHERE name = 'pgrecycle_close_me'"); len(got) != 1 || got[0] != "0" {
		t.Fatalf("statement still there: %v", got)
	}
}
