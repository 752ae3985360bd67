package proxy

import (
	"sort"
	"strings"
	"sync"
)

// maxCheckedLogins bounds the cache of startup settings already checked on
// a backend; past it the cache starts over.
const maxCheckedLogins = 1024

// checkedLogins remembers which startup settings a pool's backends
// accepted, and the server's spelling of the tracked ones. Drivers send
// the same settings at every login (pgjdbc, asyncpg, a client_encoding or
// an options string from the DSN): only the first such login must take a
// backend to check them, so later ones log in even when every backend is
// busy. The settings are still applied at each attach.
type checkedLogins struct {
	mu sync.Mutex
	m  map[string]map[string]string
}

func newCheckedLogins() *checkedLogins {
	return &checkedLogins{m: make(map[string]map[string]string)}
}

// key names the settings of one login on one pool.
func checkedLoginKey(database, user string, settings map[string]string) string {
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)
	var sb strings.Builder
	sb.WriteString(database)
	sb.WriteByte(0)
	sb.WriteString(user)
	for _, k := range names {
		sb.WriteByte(0)
		sb.WriteString(k)
		sb.WriteByte('=')
		sb.WriteString(settings[k])
	}
	return sb.String()
}

// lookup returns the canonical values recorded for key.
func (c *checkedLogins) lookup(key string) (canonical map[string]string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	canonical, ok = c.m[key]
	return canonical, ok
}

func (c *checkedLogins) store(key string, canonical map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCheckedLogins {
		clear(c.m)
	}
	c.m[key] = canonical
}

// reset forgets everything: a reload may have changed what is valid.
func (c *checkedLogins) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}
