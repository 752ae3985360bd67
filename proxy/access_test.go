package proxy

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pgrecycle/pgrecycle/config"
)

// TestHBAAdminConsoleLocalOnly: rules can keep the admin console to the
// unix socket while applications connect over TCP.
func TestHBAAdminConsoleLocalOnly(t *testing.T) {
	cfg := config.Default()
	cfg.HBA = []config.HBARule{
		{Database: "pgrecycle", User: "all", Address: "local", Method: "scram-sha-256"},
		{Database: "pgrecycle", User: "all", Address: "all", Method: "reject"},
		{Database: "all", User: "all", Address: "10.0.0.0/8", Method: "md5"},
		{Database: "app", User: "all", Address: "192.0.2.7", Method: "trust"},
	}
	unix := &net.UnixAddr{Name: "/tmp/.s.PGSQL.6432", Net: "unix"}
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 50000} }
	for _, c := range []struct {
		db     string
		addr   net.Addr
		method string
		ok     bool
	}{
		{"pgrecycle", unix, "scram-sha-256", true},
		{"pgrecycle", tcp("10.1.2.3"), "", false},
		{"app", tcp("10.1.2.3"), "md5", true},
		{"app", tcp("192.0.2.7"), "trust", true},
		{"app", tcp("203.0.113.1"), "", false}, // no rule matches
	} {
		m, ok := hbaMethod(cfg, c.db, "u", c.addr, false)
		if ok != c.ok || (ok && m != c.method) {
			t.Errorf("%s from %v: %q %v, want %q %v", c.db, c.addr, m, ok, c.method, c.ok)
		}
	}
}

// TestHBAPhysicalReplication: as in pg_hba.conf, only the keyword
// "replication" admits a physical replication connection; "all" and the
// database's name do not, while a logical one matches like any login.
func TestHBAPhysicalReplication(t *testing.T) {
	cfg := config.Default()
	tcp := &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 50000}
	cfg.HBA = []config.HBARule{
		{Database: "all", User: "all", Address: "all", Method: "md5"},
	}
	if _, ok := hbaMethod(cfg, "app", "u", tcp, true); ok {
		t.Error(`"all" admitted a physical replication connection`)
	}
	if m, ok := hbaMethod(cfg, "app", "u", tcp, false); !ok || m != "md5" {
		t.Errorf("ordinary or logical login: %q %v, want md5", m, ok)
	}
	cfg.HBA = append([]config.HBARule{{Database: "replication", User: "u", Address: "10.0.0.0/8", Method: "scram-sha-256"}}, cfg.HBA...)
	if m, ok := hbaMethod(cfg, "app", "u", tcp, true); !ok || m != "scram-sha-256" {
		t.Errorf("physical replication with a replication rule: %q %v, want scram-sha-256", m, ok)
	}
	if _, ok := hbaMethod(cfg, "app", "v", tcp, true); ok {
		t.Error("the replication rule for user u admitted user v")
	}
	cfg.HBA = nil
	if m, ok := hbaMethod(cfg, "app", "u", tcp, true); !ok || m != cfg.Auth.Type {
		t.Errorf("without rules: %q %v, want auth.type %q for everyone", m, ok, cfg.Auth.Type)
	}
}

func TestReplicationMode(t *testing.T) {
	for v, want := range map[string]string{"true": replicationPhysical, "ON": replicationPhysical, "1": replicationPhysical,
		"database": replicationLogical, "false": "", "off": "", "0": ""} {
		if got, ok := replicationMode(v); !ok || got != want {
			t.Errorf("replication=%q: %q %v, want %q", v, got, ok, want)
		}
	}
	for _, v := range []string{"Database", "maybe", ""} {
		if _, ok := replicationMode(v); ok {
			t.Errorf("replication=%q accepted; PostgreSQL refuses it", v)
		}
	}
}

func TestFailedLoginsWindow(t *testing.T) {
	f := newFailedLogins()
	now := time.Now()
	for i := 0; i < 3; i++ {
		f.fail("10.0.0.1", "app", now)
	}
	if !f.blocked("10.0.0.1", "app", 3, now) || f.blocked("10.0.0.2", "app", 3, now) {
		t.Fatal("limit not applied per address")
	}
	// One user's failures don't lock out another from the same address.
	if f.blocked("10.0.0.1", "admin", 3, now) {
		t.Fatal("another user from the same address blocked")
	}
	// Spraying many users from one address blocks the address.
	for i := 0; i < 3*addressFailFactor; i++ {
		f.fail("10.0.0.3", fmt.Sprintf("user%d", i), now)
	}
	if !f.blocked("10.0.0.3", "fresh", 3, now) {
		t.Fatal("an address failing for many users is not blocked")
	}
	if f.blocked("10.0.0.1", "app", 3, now.Add(61*time.Second)) {
		t.Fatal("still blocked after the window")
	}
	f.expire(now.Add(61 * time.Second))
	if len(f.windows) != 0 {
		t.Fatal("expired windows kept")
	}
}
