package integration

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// TestServerTLS: backends are opened over TLS per database sslmode, with
// the server certificate verified against sslrootcert (verify-full).
func TestServerTLS(t *testing.T) {
	leakCheck(t)
	dir, err := os.MkdirTemp("", "pgr-srvtls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ca, cert, key := writeTestCerts(t, dir)
	// PostgreSQL reads the key as its own account: root-owned keys must be
	// group-readable by it (Debian's ssl-cert group), owned keys 0600.
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("postgres"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			for _, f := range []string{cert, key, ca} {
				_ = os.Chown(f, uid, gid)
			}
		}
	}
	_ = os.Chmod(cert, 0o644)
	_ = os.Chmod(ca, 0o644)
	pg := pgtest.RequireWith(t, pgtest.Options{Name: "srvtls", ExtraConf: map[string]string{
		"ssl": "on", "ssl_cert_file": cert, "ssl_key_file": key,
	}})
	ctx := testCtx(t)
	for _, tc := range []struct {
		sslmode string
		want    bool
	}{{"verify-full", true}, {"require", true}, {"disable", false}} {
		e := startProxy(t, proxyOpts{pg: pg, sslmode: tc.sslmode, dbExtra: fmt.Sprintf("sslrootcert = %q\n", filepath.Clean(ca)),
			hostOverride: "localhost"})
		c := e.connect(ctx)
		var ssl bool
		if err := c.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
			t.Fatalf("sslmode=%s: %v", tc.sslmode, err)
		}
		if ssl != tc.want {
			t.Fatalf("sslmode=%s: backend TLS = %v, want %v", tc.sslmode, ssl, tc.want)
		}
	}
}
