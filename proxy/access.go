package proxy

import (
	"net"
	"sync"
	"time"

	"github.com/pgrecycle/pgrecycle/config"
)

// hbaMethod picks the authentication method for a login from the [[hba]]
// rules: the first rule matching decides; "reject" or no match refuses.
// Without rules, auth.type applies to everyone.
func hbaMethod(cfg *config.Config, database, user string, client net.Addr, physicalReplication bool) (method string, allowed bool) {
	if len(cfg.HBA) == 0 {
		return cfg.Auth.Type, true
	}
	for _, r := range cfg.HBA {
		if databaseMatches(r.Database, database, physicalReplication) && (r.User == "all" || r.User == user) && addressMatches(r.Address, client) {
			return r.Method, r.Method != "reject"
		}
	}
	return "", false
}

// databaseMatches applies a rule's database to a login. As in
// pg_hba.conf, a physical replication connection matches only the
// keyword "replication" ("all" does not cover it); a logical one matches
// its database like any login.
func databaseMatches(rule, database string, physicalReplication bool) bool {
	if physicalReplication {
		return rule == "replication"
	}
	return rule == "all" || rule == database
}

func addressMatches(rule string, client net.Addr) bool {
	if rule == "all" {
		return true
	}
	tcp, isTCP := client.(*net.TCPAddr)
	if rule == "local" {
		return !isTCP
	}
	if !isTCP {
		return false
	}
	if _, n, err := net.ParseCIDR(rule); err == nil {
		return n.Contains(tcp.IP)
	}
	ip := net.ParseIP(rule)
	return ip != nil && ip.Equal(tcp.IP)
}

// failedLogins limits password guessing: after auth.max_failed_logins
// failures for one user from one address within a minute, that user's
// logins from there are refused until the minute is over; an address that
// fails addressFailFactor times as often, across users, is refused for
// everyone. Keyed by user too, so one client with a stale password does not
// lock out every other user (and the admin) behind the same NAT.
type failedLogins struct {
	mu      sync.Mutex
	windows map[string]*failWindow
}

// addressFailFactor scales max_failed_logins for an address's failures
// across all users (password spraying).
const addressFailFactor = 10

type failWindow struct {
	start time.Time
	count int
}

const failWindowLength = time.Minute

func newFailedLogins() *failedLogins {
	return &failedLogins{windows: make(map[string]*failWindow)}
}

func hostOf(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	return "local"
}

// blocked reports whether user, or host as a whole, has used up its
// failures.
func (f *failedLogins) blocked(host, user string, max int, now time.Time) bool {
	if max <= 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.full(failKey(host, user), max, now) || f.full(host, max*addressFailFactor, now)
}

func (f *failedLogins) full(key string, max int, now time.Time) bool {
	w := f.windows[key]
	return w != nil && now.Sub(w.start) < failWindowLength && w.count >= max
}

// fail records a failed attempt for user from host.
func (f *failedLogins) fail(host, user string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count(failKey(host, user), now)
	f.count(host, now)
}

func (f *failedLogins) count(key string, now time.Time) {
	w := f.windows[key]
	if w == nil || now.Sub(w.start) >= failWindowLength {
		w = &failWindow{start: now}
		f.windows[key] = w
	}
	w.count++
}

// failKey names one user's failures from one address; the NUL can't be in
// either.
func failKey(host, user string) string { return host + "\x00" + user }

// expire forgets finished windows (called from the server's tick).
func (f *failedLogins) expire(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for h, w := range f.windows {
		if now.Sub(w.start) >= failWindowLength {
			delete(f.windows, h)
		}
	}
}
