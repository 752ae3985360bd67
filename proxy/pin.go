package proxy

import (
	"encoding/binary"

	"github.com/pgrecycle/pgrecycle/pool"
)

// In transaction pooling a client may leave on its backend what only it
// may use and what must outlast its transaction: a session-level advisory
// lock (Rails takes one around migrations, on a connection of its own), a
// cursor WITH HOLD (Django's iterator() outside a transaction), a
// temporary table, type or function, a LISTEN (whose notifications the client waits for
// between its transactions; pgrecycle looks for them on the idle backend
// every pinnedWatchInterval). Handed to another client, the backend would
// be reset first and the client would lose them; so the client keeps the
// backend, as in session pooling, until at the end of one of its
// transactions nothing of the kind is left (pinCheckSQL), or it
// disconnects (the reset then runs at once, releasing its locks for the
// others).

// pinsBackends reports whether the client's session objects pin its
// backend: not when server_reset_query_always runs server_reset_query
// after every transaction, which clears them anyway (PgBouncer's way).
func (s *session) pinsBackends() bool {
	opts := &s.pool.Options().Pool
	return !(opts.ServerResetQueryAlways && opts.ServerResetQuery != "")
}

// pinCheckSQL asks whether the backend still holds what pins it.
const pinCheckSQL = `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())` +
	` OR EXISTS (SELECT 1 FROM pg_catalog.pg_cursors WHERE is_holdable)` +
	` OR EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema())` +
	` OR EXISTS (SELECT 1 FROM pg_catalog.pg_type WHERE typnamespace = pg_catalog.pg_my_temp_schema())` +
	` OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE pronamespace = pg_catalog.pg_my_temp_schema())` +
	` OR EXISTS (SELECT 1 FROM pg_catalog.pg_listening_channels())`

// stillPinned reports whether a pinned backend, idle outside a
// transaction, must stay with its client; false unpins it. A failed check
// keeps the pin (the client's next request finds out what is wrong). A
// notification that arrives during the check goes to the client's
// writer, which the caller flushes.
func (s *session) stillPinned(b *pool.Backend) bool {
	held := true
	status, err := pool.SimpleQueryKeepingNotifications(b, pinCheckSQL, func(row []byte) {
		// One column: int16 count, int32 length, the value ("t" or "f").
		if len(row) >= 7 && binary.BigEndian.Uint16(row) == 1 && binary.BigEndian.Uint32(row[2:]) == 1 {
			held = row[6] == 't'
		}
	}, func(msg []byte) {
		s.ownNotification(b, msg)
		_, _ = s.cw.Write(msg)
	})
	if err != nil || status != 'I' {
		return true
	}
	if !held {
		b.Pinned.Store(false)
	}
	return held
}
