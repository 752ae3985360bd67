package integration

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// TestMain shares one PostgreSQL across the package and checks that no
// goroutine outlives the tests.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, pgtest.Options{Name: "integration", ExtraConf: map[string]string{"max_connections": "400"}}))
}

// leakCheck fails the test if goroutines started during it survive it.
func leakCheck(t *testing.T) {
	t.Helper()
	opts := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		if err := goleak.Find(opts); err != nil {
			t.Errorf("goroutine leak: %v", err)
		}
	})
}
