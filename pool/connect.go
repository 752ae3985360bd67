package pool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/sockio"
	"github.com/pgrecycle/pgrecycle/wire"
)

type connectConfig struct {
	pg      *pgconn.Config
	network string
	addr    string
}

// quoteDSN quotes a keyword/value connection string value.
func quoteDSN(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// ConnString is the keyword/value connection string pgconn parses for a
// database section, as user with password ("" for none). Every connection
// pgrecycle opens to PostgreSQL starts from it.
func ConnString(t config.Database, user, password string) string {
	sslmode := t.SSLMode
	if sslmode == "" {
		sslmode = config.DefaultSSLMode
	}
	parts := []string{
		"host=" + quoteDSN(t.Host),
		"port=" + strconv.Itoa(t.Port),
		"dbname=" + quoteDSN(t.DBName),
		"user=" + quoteDSN(user),
		"sslmode=" + quoteDSN(sslmode),
	}
	if password != "" {
		parts = append(parts, "password="+quoteDSN(password))
	}
	if t.SSLRootCert != "" {
		parts = append(parts, "sslrootcert="+quoteDSN(t.SSLRootCert))
	}
	return strings.Join(parts, " ")
}

// ParseConnConfig is the pgconn configuration of a connection the proxy
// opens outside a pool (auth_query, the health advisor) to database t as
// user: a password PostgreSQL and pgconn would prepare differently for
// SCRAM is answered as PostgreSQL expects, as for pool backends.
func ParseConnConfig(t config.Database, user, password string) (*pgconn.Config, error) {
	pt := passwordLogin(user, password)
	if pt != nil {
		password = passthroughDummy
	}
	cfg, err := pgconn.ParseConfig(ConnString(t, user, password))
	if err != nil {
		return nil, err
	}
	if pt != nil {
		cfg.AfterNetConnect = pt.wrap
		cfg.ChannelBinding = "disable"
	}
	return cfg, nil
}

func newConnectConfig(opts Options) (connectConfig, error) {
	t := opts.Target
	password := opts.Password
	if opts.Passthrough == nil {
		opts.Passthrough = passwordLogin(opts.User, opts.Password)
	}
	if opts.Passthrough != nil {
		password = passthroughDummy
	}
	cfg, err := pgconn.ParseConfig(ConnString(t, opts.User, password))
	if err != nil {
		return connectConfig{}, fmt.Errorf("database %q: %w", opts.Database, err)
	}
	cfg.RuntimeParams = make(map[string]string, len(opts.Params))
	for k, v := range opts.Params {
		cfg.RuntimeParams[k] = v
	}
	cfg.ConnectTimeout = opts.Pool.ServerConnectTimeout.D()
	d := dialerFor(opts)
	cfg.DialFunc = d.DialContext
	if opts.Passthrough != nil {
		cfg.AfterNetConnect = opts.Passthrough.wrap
		// The wrapper hides the TLS connection from pgconn, so SCRAM
		// channel binding can't be used with a passed-through key.
		cfg.ChannelBinding = "disable"
	}
	// Never let environment fallbacks (PGPASSFILE, service files) surprise us.
	cfg.OnNotice = nil
	cc := connectConfig{pg: cfg}
	if strings.HasPrefix(t.Host, "/") {
		cc.network = "unix"
		cc.addr = fmt.Sprintf("%s/.s.PGSQL.%d", t.Host, t.Port)
	} else {
		cc.network = "tcp"
		cc.addr = net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	}
	return cc, nil
}

// dialerFor applies the TCP keepalive and user-timeout settings.
func dialerFor(opts Options) *net.Dialer {
	l := opts.Listen
	d := &net.Dialer{Timeout: opts.Pool.ServerConnectTimeout.D()}
	if !l.TCPKeepalive {
		d.KeepAlive = -1
	} else {
		d.KeepAliveConfig = net.KeepAliveConfig{
			Enable:   true,
			Idle:     l.TCPKeepIdle.D(),
			Interval: l.TCPKeepIntvl.D(),
			Count:    l.TCPKeepCnt,
		}
	}
	if ut := l.TCPUserTimeout.D(); ut > 0 {
		d.Control = func(network, address string, c syscall.RawConn) error {
			return SetUserTimeout(c, ut)
		}
	}
	return d
}

// connect opens and hijacks one backend.
func (p *Pool) connect(ctx context.Context) (*Backend, error) { return p.connectWith(ctx, nil) }

// connectWith is connect with startup parameters added to (or replacing)
// the pool's own.
func (p *Pool) connectWith(ctx context.Context, extra map[string]string) (*Backend, error) {
	p.mu.Lock()
	cfg := p.connCfg.pg.Copy()
	p.mu.Unlock()
	for k, v := range extra {
		cfg.RuntimeParams[k] = v
	}
	if cfg.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.ConnectTimeout)
		defer cancel()
	}
	// pgconn, after a failed connect, may dial again in a goroutine of its
	// own to send a CancelRequest; refusing dials once the attempt is over
	// keeps that goroutine short-lived and the pool's Close complete.
	var attemptOver atomic.Bool
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if attemptOver.Load() {
			return nil, errors.New("connect attempt over")
		}
		return dial(ctx, network, addr)
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	attemptOver.Store(true)
	if err != nil {
		return nil, err
	}
	// pgconn may still have a background reader on the socket (started when
	// a login write was slow); SyncConn stops it, or its read would steal
	// the backend's first bytes and hold the socket's read lock.
	if err := pc.SyncConn(ctx); err != nil {
		_ = pc.Close(ctx)
		return nil, err
	}
	hj, err := pc.Hijack()
	if err != nil {
		_ = pc.Close(ctx)
		return nil, err
	}
	now := time.Now()
	conn := sockio.Wrap(unwrapConn(hj.Conn))
	b := &Backend{
		Conn:      conn,
		R:         wire.NewReader(conn, backendReadBuf),
		W:         wire.NewWriter(conn, backendWriteBuf),
		PID:       hj.PID,
		SecretKey: hj.SecretKey,
		Params:    hj.ParameterStatuses,
		TxStatus:  hj.TxStatus,
		Created:   now,
		LastUsed:  now,
		pool:      p,
	}
	if b.Params == nil {
		b.Params = make(map[string]string)
	}
	if b.TxStatus == 0 {
		b.TxStatus = 'I'
	}
	return b, nil
}

// isFatalConnectError tells errors that retrying can't fix (bad password,
// unknown database, rejected parameter) from transient ones (server
// starting, shutting down, too many connections, network).
func isFatalConnectError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch {
	case strings.HasPrefix(pgErr.Code, "57P"), strings.HasPrefix(pgErr.Code, "08"),
		pgErr.Code == "53300", strings.HasPrefix(pgErr.Code, "53"):
		return false
	}
	return true
}

// runCheck runs server_check_query on an idle backend.
func runCheck(b *Backend, query string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	_ = b.Conn.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = b.Conn.SetDeadline(time.Time{}) }()
	status, err := SimpleQuery(b, query, nil)
	if err != nil {
		b.Broken = true
		return err
	}
	if status != 'I' {
		b.Broken = true
		return fmt.Errorf("check query left transaction status %q", status)
	}
	return nil
}

// QueryError is an ErrorResponse the server sent to a proxy-issued query.
type QueryError struct{ Code, Message string }

func (e *QueryError) Error() string { return e.Code + ": " + e.Message }

// SimpleQuery runs a proxy-issued simple query on b and consumes its
// response up to ReadyForQuery, recording ParameterStatus changes. onRow,
// when set, sees each DataRow body. It returns the final transaction status.
// A notification arriving meanwhile is dropped: use SimpleQueryKeepingNotifications
// where a client listens on b.
func SimpleQuery(b *Backend, sql string, onRow func(body []byte)) (byte, error) {
	return SimpleQueryKeepingNotifications(b, sql, onRow, nil)
}

// SimpleQueryKeepingNotifications is SimpleQuery handing each
// NotificationResponse that arrives during the query, whole, to
// onNotification (when set): it belongs to the client that listens.
func SimpleQueryKeepingNotifications(b *Backend, sql string, onRow func(body []byte), onNotification func(msg []byte)) (byte, error) {
	b.Unnamed = 0 // a simple query destroys the unnamed statement
	if err := b.W.Append(func(dst []byte) ([]byte, error) {
		dst = wire.AppendHeader(dst, wire.MsgQuery, len(sql)+1)
		dst = append(dst, sql...)
		return append(dst, 0), nil
	}); err != nil {
		b.Broken = true
		return 0, err
	}
	if err := b.W.Flush(); err != nil {
		b.Broken = true
		return 0, err
	}
	return readUntilReady(b, onRow, onNotification)
}

// CloseStatements closes prepared statements on an idle backend with the
// protocol's Close, which, unlike DEALLOCATE, succeeds for a name the
// server does not hold, in one round trip. It returns the final
// transaction status.
func CloseStatements(b *Backend, names []string) (byte, error) {
	for _, name := range names {
		if err := b.W.Append(func(dst []byte) ([]byte, error) {
			dst = wire.AppendHeader(dst, wire.MsgClose, 1+len(name)+1)
			dst = append(dst, 'S')
			dst = append(dst, name...)
			return append(dst, 0), nil
		}); err != nil {
			b.Broken = true
			return 0, err
		}
	}
	if err := b.W.Append(func(dst []byte) ([]byte, error) { return wire.AppendHeader(dst, wire.MsgSync, 0), nil }); err != nil {
		b.Broken = true
		return 0, err
	}
	if err := b.W.Flush(); err != nil {
		b.Broken = true
		return 0, err
	}
	return readUntilReady(b, nil, nil)
}

// readUntilReady consumes a proxy-issued request's replies up to
// ReadyForQuery (SimpleQueryKeepingNotifications).
func readUntilReady(b *Backend, onRow func(body []byte), onNotification func(msg []byte)) (byte, error) {
	var qerr *QueryError
	for {
		typ, _, err := b.R.Next()
		if err != nil {
			b.Broken = true
			return 0, err
		}
		if !b.R.Fits() {
			if err := b.R.Skip(); err != nil {
				b.Broken = true
				return 0, err
			}
			continue
		}
		msg, err := b.R.Message()
		if err != nil {
			b.Broken = true
			return 0, err
		}
		body := msg[wire.HeaderLen:]
		switch typ {
		case wire.MsgReadyForQuery:
			if len(body) != 1 {
				b.Broken = true
				return 0, errors.New("malformed ReadyForQuery")
			}
			b.TxStatus = body[0]
			if qerr != nil {
				return b.TxStatus, qerr
			}
			return b.TxStatus, nil
		case wire.MsgParameterStatus:
			if k, v, ok := wire.ParameterStatus(body); ok {
				b.Params[string(k)] = string(v)
			}
		case wire.MsgErrorResponse:
			code, severity := wire.ErrorCode(body)
			qerr = &QueryError{Code: string(code), Message: wire.ErrorMessage(body)}
			// A FATAL ends the connection; an ERROR such as 57014 (a cancel
			// or statement_timeout) leaves a healthy backend.
			if sev := string(severity); sev == "FATAL" || sev == "PANIC" || strings.HasPrefix(string(code), "08") {
				b.Broken = true
			}
		case 'D':
			if onRow != nil {
				onRow(body)
			}
		case wire.MsgNotification:
			if onNotification != nil {
				onNotification(msg)
			}
		case wire.MsgCopyInResponse:
			// A check query must not start COPY; abort it.
			b.Broken = true
			return 0, errors.New("proxy query started COPY")
		}
	}
}

// Cancel asks the server to cancel whatever b is running, on a new
// connection, as the protocol requires.
func (p *Pool) Cancel(ctx context.Context, b *Backend) error {
	p.mu.Lock()
	network, addr := p.connCfg.network, p.connCfg.addr
	p.mu.Unlock()
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	msg := make([]byte, 12, 12+len(b.SecretKey))
	binary.BigEndian.PutUint32(msg[0:], uint32(12+len(b.SecretKey)))
	binary.BigEndian.PutUint32(msg[4:], wire.CancelRequestCode)
	binary.BigEndian.PutUint32(msg[8:], b.PID)
	msg = append(msg, b.SecretKey...)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	// The server closes the connection when done; wait briefly for it so
	// the cancel is delivered before we report success.
	var one [1]byte
	_, _ = c.Read(one[:])
	return nil
}
