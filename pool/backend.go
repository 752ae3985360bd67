package pool

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgrecycle/pgrecycle/sockio"
	"github.com/pgrecycle/pgrecycle/wire"
)

// Backend buffer sizes: backends are few, so each owns its buffers.
const (
	backendReadBuf  = 32 << 10
	backendWriteBuf = 16 << 10
)

// Backend is one PostgreSQL server connection. While acquired it belongs to
// one client session; the pool touches it only when idle.
type Backend struct {
	ID        uint64
	Conn      net.Conn
	R         *wire.Reader
	W         *wire.Writer
	PID       uint32
	SecretKey []byte
	// Params holds the server's current reported (GUC_REPORT) values.
	Params map[string]string
	// ProxySet holds non-reported settings the proxy SET on this backend
	// for a client (startup parameters such as search_path).
	ProxySet map[string]string
	// SettingsMatched is the shared client settings set (the proxy's
	// number for it) last found to match Params and ProxySet; 0 after any
	// change to either. It spares a client of the same set the comparison.
	SettingsMatched uint64
	// Statements are the proxy-named prepared statements on this backend
	// (transaction pooling), shared by clients with identical statements.
	Statements StatementSet
	TxStatus   byte
	Created    time.Time
	// Deadline is when max_lifetime (with jitter) retires it; zero: never.
	// Guarded by the pool's lock: a reload draws it again.
	Deadline time.Time
	LastUsed time.Time
	// Broken marks a backend that must be closed, never reused.
	Broken bool
	// SettingsOwner is the client session (the proxy's number for it) that
	// ran a session-level SET on this backend in transaction pooling; 0:
	// none. Another client gets the backend only after a reset.
	SettingsOwner uint64
	// Carried is the SQL of the session-level SETs this backend has run
	// for its owner as the proxy replays them (the proxy's carry.go; ""
	// none), and SettingsDirty marks any other session state: a client
	// whose own carried SETs equal Carried may take a clean backend over
	// without a reset.
	Carried       string
	SettingsDirty bool
	// Unnamed names whose unnamed prepared statement the backend holds
	// (a key of the proxy's; 0: none or unknown). A simple query destroys
	// it, so SimpleQuery clears this.
	Unnamed uint64
	// SQLPrepared: a client ran SQL PREPARE here (transaction pooling);
	// the reset before another client then also runs DEALLOCATE ALL.
	SQLPrepared bool
	// PathScope is the text of the last statement a client ran here that
	// sets search_path (SET or set_config), "" when none is in effect:
	// statements parsed meanwhile read other tables, so the proxy does not
	// share them with clients parsing under the usual path. PathLocal: it
	// was SET LOCAL, gone when the transaction ends.
	PathScope string
	PathLocal bool
	// Pinned keeps the backend attached to its client between
	// transactions (transaction pooling): the client left something there
	// only it may use, which must outlast its transaction. Atomic: the
	// metrics count pinned backends.
	Pinned atomic.Bool

	Queries      atomic.Int64
	Transactions atomic.Int64
	// QueriesAtTx is Queries at the last transaction end: a ReadyForQuery
	// 'I' with no query since (a Parse/Describe round trip) ends none.
	QueriesAtTx int64
	// State is read by the admin console: "idle", "active", "opening".
	InUse atomic.Bool

	// RetireRequested makes the next release retire the backend (admin
	// RECYCLE, reload with changed startup parameters).
	RetireRequested atomic.Bool
	RetireReason    atomic.Value // string: reason for RetireRequested

	memBytes atomic.Int64
	memAt    atomic.Int64 // unix nanoseconds of the last sample

	// cancelGate is held while a cancel request for this backend is on its
	// way to the server (cancelling tells without waiting): Release waits
	// for it, so a cancel one client sent can't reach the next client's
	// query, and the client's own session needn't be locked meanwhile.
	cancelGate sync.Mutex
	cancelling atomic.Bool

	pool      *Pool
	checkedAt time.Time
}

// Pool returns the pool the backend belongs to.
func (b *Backend) Pool() *Pool { return b.pool }

// HoldForCancel marks a cancel request on its way to b. Call it while b
// still belongs to the client that asked (under the session's lock), then
// Pool.Cancel, then CancelDone.
func (b *Backend) HoldForCancel() {
	b.cancelGate.Lock()
	b.cancelling.Store(true)
}

// CancelDone ends what HoldForCancel began.
func (b *Backend) CancelDone() {
	b.cancelling.Store(false)
	b.cancelGate.Unlock()
}

// CancelInFlight reports whether a cancel request is on its way to b.
func (b *Backend) CancelInFlight() bool { return b.cancelling.Load() }

// awaitCancel waits out a cancel request on its way to b.
func (b *Backend) awaitCancel() {
	if b.cancelling.Load() {
		b.cancelGate.Lock()
		b.cancelGate.Unlock()
	}
}

// Age is how long the backend has existed.
func (b *Backend) Age(now time.Time) time.Duration { return now.Sub(b.Created) }

// close sends Terminate when possible and closes the socket.
func (b *Backend) close(graceful bool) {
	if graceful && !b.Broken {
		_ = b.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		b.W.Reset()
		_, _ = b.Conn.Write([]byte{wire.MsgTerminate, 0, 0, 0, 4})
	}
	_ = b.Conn.Close()
}

// MarkSessionState records that client session owner left session state
// on b that only a reset undoes (a SET, a temporary table, a LISTEN...).
func (b *Backend) MarkSessionState(owner uint64) {
	b.SettingsOwner, b.SettingsDirty = owner, true
}

// ClearSessionState records that b holds no client's session state any
// more (after a reset).
func (b *Backend) ClearSessionState() {
	b.SettingsOwner, b.Carried, b.SettingsDirty = 0, "", false
}

// SetParam records a setting the server reported; the remembered settings
// match (SettingsMatched) no longer holds.
func (b *Backend) SetParam(name, value string) {
	b.Params[name] = value
	b.SettingsMatched = 0
}

// SetProxySet replaces what the proxy SET on b; the remembered settings
// match no longer holds.
func (b *Backend) SetProxySet(m map[string]string) {
	b.ProxySet, b.SettingsMatched = m, 0
}

// HasDataOrEOF reports whether b has something to read: a message
// buffered or in its socket, or EOF. For a backend nobody expects a reply
// from, that is a FATAL or a notice from the server, or its end.
func HasDataOrEOF(b *Backend) bool {
	return b.R.Buffered() > 0 || sockio.HasDataOrEOF(b.Conn)
}
