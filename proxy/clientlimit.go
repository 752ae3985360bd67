package proxy

import "sync"

// clientCounts counts logged-in clients per database and per user, for
// pool.max_db_client_connections and limits.max_user_client_connections
// (listen.max_client_conn counts all of them in Server.clients).
type clientCounts struct {
	mu     sync.Mutex
	byDB   map[string]int
	byUser map[string]int
}

// enter counts a client of database db and user user unless a limit (0 =
// none) is reached; it returns the setting that refused and its value, or
// "".
func (c *clientCounts) enter(db, user string, dbLimit, userLimit int) (refused string, limit int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dbLimit > 0 && c.byDB[db] >= dbLimit {
		return "max_db_client_connections", dbLimit
	}
	if userLimit > 0 && c.byUser[user] >= userLimit {
		return "max_user_client_connections", userLimit
	}
	if c.byDB == nil {
		c.byDB, c.byUser = make(map[string]int), make(map[string]int)
	}
	c.byDB[db]++
	c.byUser[user]++
	return "", 0
}

// leave uncounts a client that entered.
func (c *clientCounts) leave(db, user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byDB[db]--; c.byDB[db] <= 0 {
		delete(c.byDB, db)
	}
	if c.byUser[user]--; c.byUser[user] <= 0 {
		delete(c.byUser, user)
	}
}

// ofDB returns how many clients are logged in to a database.
func (c *clientCounts) ofDB(db string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byDB[db]
}

// ofUser returns how many clients are logged in as a user.
func (c *clientCounts) ofUser(user string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byUser[user]
}

// users lists the users with clients.
func (c *clientCounts) users() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.byUser))
	for u := range c.byUser {
		out = append(out, u)
	}
	return out
}
