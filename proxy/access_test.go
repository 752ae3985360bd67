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
		m, ok := hbaMethod(cfg, c.db, "u", c.addr)
		if ok != c.ok || (ok && m != c.method) {
			t.Errorf("%s from %v: %q %v, want %q %v", c.db, c.addr, m, ok, c.method, c.ok)
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
