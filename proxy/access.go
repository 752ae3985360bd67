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
func hbaMethod(cfg *config.Config, database, user string, client net.Addr) (method string, allowed bool) {
	if len(cfg.HBA) == 0 {
		return cfg.Auth.Type, true
	}
	for _, r := range cfg.HBA {
		if (r.Database == "all" || r.Database == database) && (r.User == "all" || r.User == user) && addressMatches(r.Address, client) {
			return r.Method, r.Method != "reject"
		}
	}
	return "", false
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
// failures from one address within a minute, its logins are refused until
// the minute is over.
type failedLogins struct {
	mu      sync.Mutex
	windows map[string]*failWindow
}

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

// blocked reports whether host has used up its failures.
func (f *failedLogins) blocked(host string, max int, now time.Time) bool {
	if max <= 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.windows[host]
	return w != nil && now.Sub(w.start) < failWindowLength && w.count >= max
}

// fail records a failed attempt from host.
func (f *failedLogins) fail(host string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.windows[host]
	if w == nil || now.Sub(w.start) >= failWindowLength {
		w = &failWindow{start: now}
		f.windows[host] = w
	}
	w.count++
}

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
