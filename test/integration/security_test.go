package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/proxy"
)

func TestHBARules(t *testing.T) {
	leakCheck(t)
	users := map[string]string{"alice": "alice-secret-pw", "mallory": "mallory-secret-pw"}
	e := startProxy(t, proxyOpts{authType: "scram-sha-256", users: users, extra: `
[[hba]]
database = "all"
user = "mallory"
address = "all"
method = "reject"

[[hba]]
database = "app"
user = "all"
address = "127.0.0.0/8"
method = "md5"
`})
	ctx := testCtx(t)
	c, err := pgx.Connect(ctx, e.dsn("alice", users["alice"], "app"))
	if err != nil {
		t.Fatalf("alice allowed by the md5 rule: %v", err)
	}
	c.Close(ctx)
	_, err = pgx.Connect(ctx, e.dsn("mallory", users["mallory"], "app"))
	if pgCode(err) != "28000" {
		t.Fatalf("mallory: %v, want 28000 from the reject rule", err)
	}
	// No rule matches the admin console: rejected.
	_, err = pgx.Connect(ctx, e.dsn("alice", users["alice"], "pgrecycle", "default_query_exec_mode=simple_protocol"))
	if pgCode(err) != "28000" {
		t.Fatalf("admin console without a matching rule: %v, want 28000", err)
	}
	assertNoSecretsLogged(t, e, users)
}

func TestFailedLoginRateLimit(t *testing.T) {
	leakCheck(t)
	users := map[string]string{"alice": "alice-secret-pw", "bob": "bob-secret-pw"}
	ctx := testCtx(t)
	// A proxy with a limit of 3 failures a minute.
	e3 := startProxyWithAuthExtra(t, users, "max_failed_logins = 3\n")
	for i := 0; i < 3; i++ {
		_, err := pgx.Connect(ctx, e3.dsn("alice", "wrong-guess", "app"))
		if pgCode(err) != "28P01" {
			t.Fatalf("attempt %d: %v, want 28P01", i, err)
		}
	}
	_, err := pgx.Connect(ctx, e3.dsn("alice", users["alice"], "app"))
	if pgCode(err) != "28000" || !strings.Contains(err.Error(), "max_failed_logins") {
		t.Fatalf("after 3 failures: %v, want 28000 naming max_failed_logins", err)
	}
	// Another user from the same address is not locked out.
	c, err := pgx.Connect(ctx, e3.dsn("bob", users["bob"], "app"))
	if err != nil {
		t.Fatalf("bob after alice's failures from the same address: %v", err)
	}
	c.Close(ctx)
	assertNoSecretsLogged(t, e3, map[string]string{"x": "wrong-guess", "alice": users["alice"]})
}

// startProxyWithAuthExtra starts a proxy whose [auth] table gets more keys.
func startProxyWithAuthExtra(t *testing.T, users map[string]string, authExtra string) *env {
	return startProxy(t, proxyOpts{authType: "scram-sha-256", users: users, authExtra: authExtra})
}

// assertNoSecretsLogged searches every log line and field for passwords.
func assertNoSecretsLogged(t *testing.T, e *env, users map[string]string) {
	t.Helper()
	secrets := []string{e.pg.SuperPassword}
	for _, p := range users {
		secrets = append(secrets, p)
	}
	for _, entry := range e.logs.All() {
		line := entry.Message + fmt.Sprint(entry.ContextMap())
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Fatalf("log line leaks a secret: %s", line)
			}
		}
	}
}

func TestReadableSecretsWarned(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	users := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(users, []byte(`"u" "pw"`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pgrecycle.toml")
	toml := fmt.Sprintf("[auth]\nfile = %q\n[databases.app]\nhost = \"127.0.0.1\"\nuser = \"x\"\npassword = \"topsecret\"\n", users)
	if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	srv, err := proxy.New(proxy.Options{Config: cfg, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	var warned []string
	for _, e := range logs.All() {
		warned = append(warned, e.Message+" "+fmt.Sprint(e.ContextMap()["file"]))
	}
	all := strings.Join(warned, "\n")
	if !strings.Contains(all, path) || !strings.Contains(all, users) {
		t.Fatalf("no warning for world-readable secret files:\n%s", all)
	}
	if strings.Contains(all, "topsecret") {
		t.Fatal("warning leaks the password")
	}
}
