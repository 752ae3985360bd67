package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/pool"
	"github.com/pgrecycle/pgrecycle/proxy/auth"
	"github.com/pgrecycle/pgrecycle/sockio"
	"github.com/pgrecycle/pgrecycle/wire"
)

// errSessionDone ends a session without further reporting.
var errSessionDone = errors.New("session done")

// session is one client connection.
type session struct {
	srv     *Server
	conn    net.Conn // the client stream (TLS once negotiated); client goroutine only
	raw     net.Conn // the accepted socket: safe to close or poke from anywhere
	cr      *wire.Reader
	cw      *wire.Writer
	log     sessionLog
	started time.Time
	// loginDeadline is when client_login_timeout closes the login (zero:
	// never); a wait for a backend during login ends before it.
	loginDeadline time.Time

	db        *config.Database
	user      string
	database  string           // as the client asked
	dbForAuth *config.Database // the database auth.query runs on
	appName   string
	txMode    bool
	// clientGone: a write to the client failed (it disconnected or
	// reset): what the server still sends for it is not worth relaying.
	clientGone atomic.Bool
	pool       *pool.Pool
	key        cancelKey
	id         uint64 // non-zero, unique in this process
	counted    bool   // holds a max_client_conn slot
	countedIn  bool   // counted in Server.clientsIn (per database and user)
	// killed: the admin console's KILL ends this session (poke).
	killed atomic.Bool
	want   map[string]string // guarded by mu once logged in
	// wantSet is the number of the shared set want is (paramSets), 0
	// once want is the session's own: copy a shared set before changing it.
	wantSet uint64
	extra   map[string]string
	// stmtScope is the client's startup search_path, part of the names of
	// its statements on backends (serverStmtName).
	stmtScope string
	// loginWant is want as the login left it (shared, never changed): the
	// values a client's RESET or DISCARD ALL returns to on PostgreSQL.
	loginWant map[string]string
	// restoreOnReset: the client gave startup settings, which its RESET or
	// DISCARD ALL must bring back (restoreStartupSettings); restoreNeeded:
	// one did, and they are not back yet (client goroutine only).
	restoreOnReset, restoreNeeded bool
	// carryWatch: a SET the client sent may be carried once its replies
	// confirm it (carry.go).
	carryWatch atomic.Bool
	// resets is what the client's resets left to restore, allocated at
	// its first reset (client goroutine only; most clients never reset,
	// and every idle client pays for the fields of session).
	resets *resetState
	// unnamedKey names the client's unnamed prepared statement (0: none),
	// whose Parse tail is unnamedTail: a Bind or Describe of it in a later
	// batch may land on a backend whose unnamed statement is another's
	// (pool.Backend.Unnamed), and it is parsed there again first
	// (transaction pooling, client goroutine).
	unnamedKey  uint64
	unnamedSeq  uint32
	unnamedSet  bool // its text runs a session-level SET (sessionset.go)
	unnamedPin  bool // its text may pin the backend (pin.go)
	unnamedTail []byte
	// hiddenReplies counts the replies of pgrecycle's own queries on the
	// attached backend that the relay swallows (session pooling).
	hiddenReplies atomic.Int32
	// ddlSeen: the client sent DDL; at the next ReadyForQuery outside a
	// transaction the pool's shared statements are renewed.
	ddlSeen  atomic.Bool
	admin    bool
	endCause string

	// mu guards the attachment: which backend, how many ReadyForQuery are
	// owed to the client, and whether an extended-protocol batch is open.
	mu        sync.Mutex
	backend   *pool.Backend
	waitingOn *pool.Waiter // set while waiting for a backend
	pending   int
	unsynced  bool
	stopping  bool
	flushSent bool // a Flush since the last Sync: replies may come with none owed
	// skipped: an error left the server skipping to a Sync not yet sent,
	// and nothing more is owed (track); readInline gives the client back.
	skipped   bool
	copyTrack copyTrack
	pumping   bool // a pump goroutine relays this attachment's replies
	pumpDone  chan struct{}
	// wmu is held while the client goroutine writes to the backend, so the
	// pump can't release a backend mid-write.
	wmu sync.Mutex
	sw  serverWriter
	// Transaction pooling only: the replies owed for forwarded messages,
	// and the client's named statements (both guarded by mu).
	reqs    []request
	reqHead int
	batches uint64 // Syncs and Queries forwarded: see batch()
	stmts   map[string]*clientStmt
	mapStmt bool // map named statements (transaction mode, max_prepared_statements > 0)
	// A DEALLOCATE of a client statement sent with the extended protocol
	// (PQexecParams: psycopg 3 evicting its cache) is parsed as an empty
	// query; these carry its target from the unnamed statement to the
	// unnamed portal bound from it. Guarded by mu.
	unnamedDealloc, portalDealloc string

	queries      atomic.Int64
	transactions atomic.Int64
	// xactStart is when the transaction in progress sent its first query
	// (unix ns, 0 outside one); xactNanos sums finished ones.
	xactStart atomic.Int64
	xactNanos atomic.Int64
	// queryStart is when the request in progress reached the backend
	// (unix ns, 0 when none); queryNanos sums finished ones, each up to its
	// ReadyForQuery.
	queryStart   atomic.Int64
	queryNanos   atomic.Int64
	waitingSince atomic.Int64 // unix ns while waiting for a backend (beginWait)

	// txStatus is the transaction status of the attached backend at its
	// last ReadyForQuery (guarded by mu).
	txStatus byte
	// idleSince and idleLimit describe the read deadline armed while the
	// client is idle (client goroutine only).
	idleSince time.Time
	idleLimit time.Duration
	armed     bool
	// watchArmed: the armed deadline is the backend watch's
	// (backendWatchInterval); watchWoke: it just fired.
	watchArmed, watchWoke bool
	// interruptible is true only while the client goroutine waits for the
	// first byte of a message: a read deadline (timeout or poke) may end
	// that wait, never a half-read message.
	interruptible bool
	loggedIn      bool
	bytes         byteCounts
	tls           bool // the client connection is encrypted
	// endPoint is the TLS channel binding data, kept until the login ends.
	endPoint []byte

	// ended is called once when the session is over (run's caller).
	ended func()
	// Parking (park.go). idleWaiting is set while the client goroutine
	// waits at the top of its loop with no backend attached, idleEpoch
	// counts such waits, sweepSeen is the sweeper's last look at it and
	// parkAsked its request to park. parkTok and parkRC (guarded by mu)
	// are set while parked; parkedFlag mirrors parkTok != 0 for the sweep.
	// resumed tells the resumed goroutine to keep idleSince.
	idleWaiting atomic.Bool
	idleEpoch   atomic.Uint32
	sweepSeen   uint32
	sweepIdle   uint8 // sweeps that saw the same idle wait (sweeper only)
	parkAsked   atomic.Bool
	parkedFlag  atomic.Bool
	parkTok     uint64
	parkRC      syscall.RawConn
	resumed     bool
	canPark     bool // plaintext socket, not the admin console (client goroutine only)
	// backendWatched: the park set's watcher watches the backend this
	// client keeps while it idles (pinwatch.go; client goroutine only).
	backendWatched bool
}

// clientReader reads from the client, retrying reads that a deadline cut
// short in the middle of a message.
type clientReader struct{ s *session }

func (r clientReader) Read(p []byte) (int, error) {
	for {
		n, err := r.s.conn.Read(p)
		if n > 0 {
			r.s.interruptible = false
			r.s.bytes.received.Add(int64(n))
		}
		if err != nil && n == 0 && r.s.loggedIn && !r.s.interruptible && isTimeout(err) {
			_ = r.s.conn.SetReadDeadline(time.Time{})
			r.s.armed = false
			continue
		}
		return n, err
	}
}

// poke wakes the client goroutine if it is blocked reading the client, or
// resumes it if it is parked; either way it re-examines its state.
func (s *session) poke() {
	if s.unpark() {
		return
	}
	_ = s.raw.SetReadDeadline(time.Now())
	if s.srv.terminating.Load() || s.killed.Load() {
		s.cutBackend()
	}
}

// cutBackend makes the attached backend's blocked reads and writes fail:
// a reply relayed on the client goroutine (readInline) blocks in its
// read, and a request forwarded to a server that stopped reading (or a
// network that stopped carrying) blocks in its write. The session then
// ends now; the backend, left mid-message, is destroyed.
func (s *session) cutBackend() {
	s.mu.Lock()
	b := s.backend
	s.mu.Unlock()
	if b != nil {
		_ = b.Conn.SetDeadline(time.Unix(1, 0))
	}
}

// serverWriter writes to the attached backend and remembers the first
// error, so a dead backend doesn't look like a dead client while a large
// client message is streamed.
type serverWriter struct {
	w   *wire.Writer
	err error
}

func (sw *serverWriter) Write(p []byte) (int, error) {
	if sw.err != nil {
		return len(p), nil
	}
	if _, err := sw.w.Write(p); err != nil {
		sw.err = err
	}
	return len(p), nil
}

func newSession(srv *Server, c net.Conn) *session {
	s := &session{
		id:      srv.sessionIDs.Add(1),
		srv:     srv,
		conn:    sockio.Wrap(c),
		raw:     c,
		started: time.Now(),
	}
	s.log = sessionLog{s}
	s.cr = wire.NewPooledReader(clientReader{s}, srv.bufs)
	s.cw = s.newClientWriter()
	return s
}

func (s *session) newClientWriter() *wire.Writer {
	return wire.NewPooledWriter(sentCounter{w: s.conn, count: &s.bytes, failed: &s.clientGone}, s.srv.bufs)
}

// kill disconnects the client (server shutdown); its goroutine, resumed
// if it was parked, then cleans up.
func (s *session) kill() {
	s.unpark()
	_ = s.raw.Close()
	s.cutBackend()
}

// run serves the session and calls ended when it is over. The login runs
// on this goroutine, whose stack grows deep (SCRAM, pgproto3); the session
// itself then continues on a fresh goroutine with a small stack, which is
// what an idle client keeps.
func (s *session) run(ended func()) {
	if err := s.startup(); err != nil {
		if err != errSessionDone {
			s.log.Debug("client startup failed", zap.Error(err))
			s.tellLoginFailure(err)
		}
		s.cleanup()
		ended()
		return
	}
	s.ended = ended
	go s.serve()
}

// tellLoginFailure tells a client that sent its startup packet why it is
// dropped during the login: it broke the protocol, or did not finish
// within client_login_timeout.
func (s *session) tellLoginFailure(err error) {
	if s.user == "" {
		return
	}
	var ne net.Error
	var pe *wire.ProtocolError
	switch {
	case errors.As(err, &pe):
		_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = s.sendError(fatalf(codeProtocolViolation, "%s", pe.Msg))
	case errors.As(err, &ne) && ne.Timeout() && !s.loginDeadline.IsZero() && !time.Now().Before(s.loginDeadline):
		_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = s.sendError(fatalf(codeConnectionFailure, "pgrecycle: login not completed within client_login_timeout (%s)",
			s.srv.Config().Listen.ClientLoginTimeout.D()))
	}
}

func (s *session) cleanup() {
	s.cw.Reset()
	s.cr.Release()
	_ = s.conn.Close()
	if s.counted {
		s.srv.clients.Add(-1)
	}
	if s.countedIn {
		s.srv.clientsIn.leave(s.database, s.user)
	}
}

// serve runs a logged-in session until it ends or parks; a parked
// session is resumed by calling serve on a new goroutine.
func (s *session) serve() {
	if s.cr == nil { // resumed after parking
		s.cr = s.srv.parked.reader(s)
	}
	var err error
	if s.admin {
		err = s.adminLoop()
	} else {
		err = s.loop()
		if err == errParked {
			return
		}
		s.unwatchPinnedBackend()
		s.finish()
	}
	defer s.ended()
	defer s.cleanup()
	defer s.srv.sessionEnded(s)
	cause := "client closed"
	if s.endCause != "" {
		cause = s.endCause
	} else if err != nil && err != errSessionDone {
		cause = err.Error()
	}
	s.log.Info("session ended",
		zap.Duration("duration", time.Since(s.started)),
		zap.Int64("queries", s.queries.Load()),
		zap.Int64("transactions", s.transactions.Load()),
		zap.String("cause", cause))
}

// sendError writes an ErrorResponse to the client and flushes.
func (s *session) sendError(e *clientError) error {
	if err := s.cw.Append(func(dst []byte) ([]byte, error) { return appendError(dst, e) }); err != nil {
		return err
	}
	return s.cw.Flush()
}

// Send and Receive let the auth package drive the client during login.
func (s *session) Send(msg pgproto3.BackendMessage) error {
	if err := s.cw.Append(msg.Encode); err != nil {
		return err
	}
	return s.cw.Flush()
}

func (s *session) Receive() (byte, []byte, error) {
	typ, n, err := s.cr.Next()
	if err != nil {
		return 0, nil, err
	}
	if n > 64<<10 {
		return 0, nil, &wire.ProtocolError{Msg: "authentication message too large"}
	}
	// Up to 64 KiB, as PostgreSQL accepts (a long password); larger than
	// the buffer, it is read into its own allocation.
	msg, err := s.cr.ReadAll()
	if err != nil {
		return 0, nil, err
	}
	return typ, msg[wire.HeaderLen:], nil
}

// startup negotiates the protocol, authenticates the client, picks its
// pool and sends the server parameters, key and ReadyForQuery.
func (s *session) startup() error {
	cfg := s.srv.Config()
	if d := cfg.Listen.ClientLoginTimeout.D(); d > 0 {
		s.loginDeadline = time.Now().Add(d)
		_ = s.conn.SetDeadline(s.loginDeadline)
	}
	var params []wire.Param
	var version uint32
	tlsCfg := s.srv.tlsConfig.Load()
	for first := true; ; first = false {
		if first && tlsCfg != nil && !isUnix(s.raw) {
			b, err := s.cr.PeekBytes(1)
			if err != nil {
				return err
			}
			if b[0] == tlsHandshakeByte {
				raw := &prefixConn{Conn: s.conn, prefix: s.cr.TakeBuffered()}
				if err := s.startTLS(tlsCfg, raw, true); err != nil {
					return err
				}
				continue
			}
		}
		body, err := s.cr.StartupPacket(wire.MaxStartupLen)
		if err != nil {
			var pe *wire.ProtocolError
			if errors.As(err, &pe) {
				// A length out of bounds: not this protocol, or a client
				// that wrote something else first (node-postgres sends
				// Terminate when closed before it connected). As
				// PostgreSQL: log it and close without an answer, which
				// such a client would take for the server's.
				s.log.Info("invalid length of startup packet", zap.String("detail", pe.Msg))
				return errSessionDone
			}
			return err
		}
		v, ps, err := wire.ParseStartup(body)
		if err != nil {
			_ = s.sendError(fatalf(codeProtocolViolation, "%s", err.Error()))
			return err
		}
		switch v {
		case wire.SSLRequestCode, wire.GSSENCRequestCode:
			if s.cr.Buffered() > 0 {
				// Bytes after an encryption request before our answer could
				// be injected by a man in the middle: refuse them.
				_ = s.sendError(fatalf(codeProtocolViolation, "unexpected data after encryption request"))
				return errSessionDone
			}
			if v == wire.SSLRequestCode && tlsCfg != nil && !s.tls && !isUnix(s.raw) {
				if _, err := s.conn.Write([]byte{'S'}); err != nil {
					return err
				}
				if err := s.startTLS(tlsCfg, s.conn, false); err != nil {
					return err
				}
				continue
			}
			if _, err := s.conn.Write([]byte{'N'}); err != nil {
				return err
			}
			continue
		case wire.CancelRequestCode:
			pid, key, err := wire.ParseCancel(body)
			if err == nil {
				s.srv.handleCancel(pid, key)
			}
			return errSessionDone
		}
		if wire.ProtocolMajor(v) != 3 {
			_ = s.sendError(fatalf(codeFeatureNotSupported,
				"unsupported frontend protocol %d.%d: pgrecycle supports 3.0", wire.ProtocolMajor(v), wire.ProtocolMinor(v)))
			return errSessionDone
		}
		version, params = v, ps
		break
	}

	if cfg.TLS.Mode == "require" && !s.tls && !isUnix(s.raw) {
		_ = s.sendError(fatalf(codeInvalidAuthSpec, "pgrecycle requires TLS for TCP connections (tls.mode = require): connect with sslmode=require"))
		s.log.Info("login refused: TLS required")
		return errSessionDone
	}
	var database, options, replication string
	var unrecognized []string
	client := make(map[string]string)
	for _, p := range params {
		switch {
		case p.Name == "user":
			s.user = p.Value
		case p.Name == "database":
			database = p.Value
		case p.Name == "options":
			options = p.Value
		case p.Name == "replication":
			mode, ok := replicationMode(p.Value)
			if !ok {
				_ = s.sendError(fatalf(codeInvalidParameterValue, "invalid value for parameter \"replication\": %q", p.Value))
				return errSessionDone
			}
			replication = mode
		case strings.HasPrefix(p.Name, "_pq_."):
			unrecognized = append(unrecognized, p.Name)
		default:
			client[p.Name] = p.Value
		}
	}
	if s.user == "" {
		_ = s.sendError(fatalf(codeInvalidAuthSpec, "no PostgreSQL user name specified in startup packet"))
		return errSessionDone
	}
	if database == "" {
		database = s.user
	}
	if cfg.IsAdminDatabase(database) {
		database = config.AdminDatabase // hba rules and logs name the console as configured
	}
	s.database = database
	if options != "" {
		opts, err := parseOptions(options)
		if err != nil {
			_ = s.sendError(fatalf(codeFeatureNotSupported, "%s", err.Error()))
			return errSessionDone
		}
		mergeOptions(client, opts)
	}
	if wire.ProtocolMinor(version) > 0 || len(unrecognized) > 0 {
		msg := &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unrecognized}
		if err := s.cw.Append(msg.Encode); err != nil {
			return err
		}
	}

	s.admin = database == config.AdminDatabase
	if s.admin && replication != "" {
		_ = s.sendError(fatalf(codeFeatureNotSupported, "the admin console does not take replication connections"))
		return errSessionDone
	}
	// The admin console gets a few slots past max_client_conn: a pooler
	// full of clients is when an operator needs it.
	limit := int64(cfg.Listen.MaxClientConn)
	if s.admin {
		limit += adminConsoleReserve
	}
	if n := s.srv.clients.Add(1); cfg.Listen.MaxClientConn > 0 && n > limit {
		s.srv.clients.Add(-1)
		_ = s.sendError(fatalf(codeTooManyConnections, "no more connections allowed (max_client_conn = %d)", cfg.Listen.MaxClientConn))
		return errSessionDone
	}
	s.counted = true
	var db *config.Database
	if !s.admin {
		db = cfg.Database(database)
		if replication == replicationPhysical {
			db = cfg.PhysicalReplicationTarget(database)
		}
		if db == nil {
			e := fatalf(codeUnknownDatabase, "database %q does not exist in pgrecycle's configuration", database)
			if replication == replicationPhysical && database == config.ReplicationDatabase {
				e.Hint = "The configured databases point at different servers: a [databases.replication] section says which one physical replication connections go to."
			}
			_ = s.sendError(e)
			s.log.Info("login refused: unknown database")
			return errSessionDone
		}
		if s.srv.loginsDisabled(db.Name) {
			_ = s.sendError(fatalf(codeObjectNotInState, "database %q is not accepting connections: disabled in pgrecycle's admin console (ENABLE allows them)", db.Name))
			s.log.Info("login refused: database disabled")
			return errSessionDone
		}
	}

	s.dbForAuth = db
	res, secret, err := s.authenticate(cfg, replication == replicationPhysical)
	if err != nil {
		return err
	}
	if s.admin {
		return s.adminStartup(cfg)
	}
	_, userLimit := cfg.UserLimits(s.user)
	if refused, limit := s.srv.clientsIn.enter(s.database, s.user, db.Pool.MaxDBClientConnections, userLimit); refused != "" {
		_ = s.sendError(fatalf(codeTooManyConnections, "no more connections allowed (%s = %d)", refused, limit))
		s.log.Info("login refused: client limit reached", zap.String("limit", refused))
		return errSessionDone
	}
	s.countedIn = true
	s.db = db
	s.txMode = db.Pool.Mode == "transaction"
	s.mapStmt = s.txMode && db.Pool.MaxPreparedStatements > 0
	if err := s.Send(&pgproto3.AuthenticationOk{}); err != nil {
		return err
	}

	backendUser, password, pt := s.backendCredentials(cfg, db, res, secret)
	p, err := s.srv.poolFor(db, backendUser, password, pt)
	if err != nil {
		_ = s.sendError(fatalf(codeConnectionFailure, "%s", err.Error()))
		return errSessionDone
	}
	s.pool = p
	if replication != "" {
		return s.replicate(replication, client)
	}
	if err := s.loginParams(db, client); err != nil {
		var ce *clientError
		if errors.As(err, &ce) {
			ce.Severity = "FATAL"
			_ = s.sendError(ce)
			s.log.Info("login refused", zap.String("code", ce.Code), zap.String("message", ce.Message))
			return errSessionDone
		}
		return err
	}
	s.want, s.wantSet = s.srv.params.share(s.want)
	s.loginWant = s.want
	s.srv.cancels.register(s)
	if err := s.sendWelcome(); err != nil {
		s.srv.cancels.unregister(s.key)
		return err
	}
	_ = s.conn.SetDeadline(time.Time{})
	s.loggedIn = true // from now on only idle waits may be cut by deadlines
	_, isSocket := s.conn.(syscall.Conn)
	s.canPark = isSocket && !s.tls && !s.admin
	s.log.Debug("client logged in")
	return nil
}

// authenticate runs the configured method against the auth file.
func (s *session) authenticate(cfg *config.Config, physicalReplication bool) (auth.Result, auth.Secret, error) {
	host := hostOf(s.raw.RemoteAddr())
	if s.srv.fails.blocked(host, s.user, cfg.Auth.MaxFailedLogins, time.Now()) {
		_ = s.sendError(fatalf(codeInvalidAuthSpec, "too many failed logins for user %q from %s: try again in a minute (auth.max_failed_logins)", s.user, host))
		s.log.Warn("login refused: too many failed logins for this user from this address")
		return auth.Result{}, auth.Secret{}, errSessionDone
	}
	method, allowed := hbaMethod(cfg, s.database, s.user, s.raw.RemoteAddr(), physicalReplication)
	if !allowed && physicalReplication {
		_ = s.sendError(fatalf(codeInvalidAuthSpec, "no [[hba]] rule allows host %q, user %q, a physical replication connection (database = \"replication\" in a rule allows them)", host, s.user))
		s.log.Warn("login refused by the access rules")
		return auth.Result{}, auth.Secret{}, errSessionDone
	}
	if !allowed {
		_ = s.sendError(fatalf(codeInvalidAuthSpec, "no [[hba]] rule allows host %q, user %q, database %q", host, s.user, s.database))
		s.log.Warn("login refused by the access rules")
		return auth.Result{}, auth.Secret{}, errSessionDone
	}
	if method == auth.MethodCert {
		res, err := s.authenticateCert(host)
		return res, auth.Secret{}, err
	}
	users := *s.srv.users.Load()
	secret, found := users[s.user]
	fromQuery := !found && cfg.Auth.Query != "" && method != "trust" && s.dbForAuth != nil
	if fromQuery {
		ctx, cancel := context.WithTimeout(s.srv.ctx, 10*time.Second)
		sec, ok, err := s.srv.authQueryLookup(ctx, cfg, s.dbForAuth, s.user)
		cancel()
		if err != nil {
			_ = s.sendError(fatalf(codeConnectionFailure, "pgrecycle: could not look up the user (auth.query failed)"))
			s.log.Error("auth.query lookup failed", zap.Error(err))
			return auth.Result{}, auth.Secret{}, errSessionDone
		}
		secret, found = sec, ok
	}
	res, err := auth.Authenticate(s, method, s.user, secret, found, s.srv.verifiers)
	s.endPoint = nil
	if err != nil {
		var ae *auth.Error
		if errors.As(err, &ae) {
			if ae.Code == codeInvalidPassword {
				s.srv.fails.fail(host, s.user, time.Now())
				if fromQuery {
					s.srv.authq.forget(s.dbForAuth.Name, s.user)
				}
			}
			_ = s.sendError(&clientError{Severity: "FATAL", Code: ae.Code, Message: ae.Message})
			s.log.Warn("authentication failed", zap.String("method", method), zap.String("code", ae.Code))
			return res, auth.Secret{}, errSessionDone
		}
		return res, auth.Secret{}, err
	}
	return res, secret, nil
}

// authenticateCert accepts a client whose TLS certificate the handshake
// verified against tls.client_ca_file and whose common name is the user,
// as PostgreSQL's cert method does without a user map.
func (s *session) authenticateCert(host string) (auth.Result, error) {
	var cn string
	if tc, ok := s.conn.(*tls.Conn); ok {
		if chains := tc.ConnectionState().VerifiedChains; len(chains) > 0 && len(chains[0]) > 0 {
			cn = chains[0][0].Subject.CommonName
		}
	}
	switch {
	case cn == "":
		_ = s.sendError(fatalf(codeInvalidAuthSpec, "connection requires a valid client certificate"))
	case cn != s.user:
		s.srv.fails.fail(host, s.user, time.Now())
		_ = s.sendError(fatalf(codeInvalidAuthSpec, "certificate authentication failed for user %q: the certificate is for %q", s.user, cn))
	default:
		return auth.Result{Method: auth.MethodCert}, nil
	}
	s.log.Warn("authentication failed", zap.String("method", auth.MethodCert))
	return auth.Result{}, errSessionDone
}

// backendCredentials decides whom the backend connection logs in as, and
// with what: the database's configured user, a configured or cleartext
// password, or the client's own SCRAM key or md5 hash passed through.
func (s *session) backendCredentials(cfg *config.Config, db *config.Database, res auth.Result, secret auth.Secret) (string, string, *pool.Passthrough) {
	users := *s.srv.users.Load()
	if db.User != "" {
		password, _ := configuredPassword(cfg, users, db.User, db.Password)
		return db.User, password, nil
	}
	if password, ok := configuredPassword(cfg, users, s.user, ""); ok {
		return s.user, password, nil
	}
	if res.Password != "" {
		return s.user, res.Password, nil
	}
	switch {
	case secret.Kind == auth.KindSCRAM && len(res.ClientKey) > 0:
		return s.user, "", &pool.Passthrough{ClientKey: res.ClientKey, ServerKey: secret.SCRAM.ServerKey}
	case secret.Kind == auth.KindMD5:
		return s.user, "", &pool.Passthrough{MD5: secret.MD5}
	}
	return s.user, "", nil
}

// configuredPassword is the backend password the configuration holds for
// user: given (a database's password), else [users.NAME] password, else a
// cleartext entry of the auth file. ok is false when none is configured.
func configuredPassword(cfg *config.Config, users auth.UserList, user, given string) (password string, ok bool) {
	if given != "" {
		return given, true
	}
	if u := cfg.Users[user]; u != nil && u.Password != "" {
		return u.Password, true
	}
	if sec, found := users[user]; found && sec.Kind == auth.KindPlain {
		return sec.Plain, true
	}
	return "", false
}

// loginWaitEnd is when a wait during the login must give up: shortly
// before client_login_timeout, leaving time to tell the client (past the
// deadline its socket refuses even the FATAL). Callers check that
// loginDeadline is set.
func (s *session) loginWaitEnd() time.Time {
	return s.loginDeadline.Add(-min(time.Second, time.Until(s.loginDeadline)/10))
}

// adminConsoleReserve is how many admin console logins are admitted past
// max_client_conn.
const adminConsoleReserve = 8

// loginParams fixes the client's view of the tracked parameters and checks
// its other startup settings on a backend, so a bad value fails the login
// as it would on PostgreSQL.
func (s *session) loginParams(db *config.Database, client map[string]string) error {
	ctx, cancel := s.waitContext()
	defer cancel()
	loginBound := false // the login deadline, not query_wait_timeout, ends the wait
	if !s.loginDeadline.IsZero() {
		// Leave time to tell the client: past the deadline its socket
		// refuses even the FATAL.
		end := s.loginWaitEnd()
		if d, ok := ctx.Deadline(); !ok || end.Before(d) {
			loginBound = true
			var cancelLogin context.CancelFunc
			ctx, cancelLogin = context.WithDeadline(ctx, end)
			defer cancelLogin()
		}
	}
	params, err := s.pool.ServerParams(ctx)
	if err != nil {
		return s.loginAcquireError(ctx, err, loginBound)
	}
	s.want = make(map[string]string, len(trackedParams))
	for _, k := range trackedParams {
		if v, ok := params[k]; ok {
			s.want[k] = v
		}
	}
	var given []string
	s.restoreOnReset = len(client) > 0
	for name, v := range client {
		if k := canonicalTracked(name); k != "" {
			if k == "application_name" {
				v = s.truncateAppName(v)
				s.appName = v
			}
			s.want[k] = v
			given = append(given, k)
			continue
		}
		if ce := checkParameterName(name); ce != nil {
			return ce
		}
		if s.extra == nil {
			s.extra = make(map[string]string)
		}
		s.extra[name] = v
		if strings.EqualFold(name, "search_path") {
			s.stmtScope = v
		}
	}
	// Settings the server must judge: the untracked ones, and tracked
	// values other than the server's (application_name takes anything).
	toCheck := make(map[string]string, len(s.extra)+len(given))
	for k, v := range s.extra {
		toCheck[k] = v
	}
	for _, k := range given {
		if k != "application_name" && s.want[k] != params[k] {
			toCheck[k] = s.want[k]
		}
	}
	if len(toCheck) == 0 {
		return nil
	}
	opts := s.pool.Options()
	key := checkedLoginKey(opts.Database, opts.User, toCheck)
	if canonical, ok := s.srv.checkedLogins.lookup(key); ok {
		for k, v := range canonical {
			s.want[k] = v
		}
		return nil
	}
	b, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.loginAcquireError(ctx, err, loginBound)
	}
	if err := s.applyParams(b); err != nil {
		s.releaseOrDestroy(b)
		var qe *pool.QueryError
		if errors.As(err, &qe) {
			return fatalf(qe.Code, "%s", qe.Message)
		}
		return fromBackendError("FATAL", err)
	}
	canonical := make(map[string]string, len(given))
	for _, k := range given {
		// The server's canonical spelling; application_name stays each
		// client's own.
		if v, ok := b.Params[k]; ok {
			s.want[k] = v
			if k != "application_name" {
				canonical[k] = v
			}
		}
	}
	s.pool.Release(b)
	s.srv.checkedLogins.store(key, canonical)
	return nil
}

// maxIdentifierLen is PostgreSQL's NAMEDATALEN - 1: the bytes kept of an
// application_name.
const maxIdentifierLen = 63

// truncateAppName cuts a startup application_name to what PostgreSQL
// keeps (whole UTF-8 characters) and queues the NOTICE PostgreSQL gives
// at login, which the client would otherwise miss: the proxy applies the
// value with a SET whose replies it hides.
func (s *session) truncateAppName(v string) string {
	if len(v) <= maxIdentifierLen {
		return v
	}
	cut := maxIdentifierLen
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	_ = s.cw.Append((&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "42622",
		Message: `identifier "` + v + `" will be truncated to "` + v[:cut] + `"`}).Encode)
	return v[:cut]
}

// sendWelcome sends AuthenticationOk's followers: ParameterStatus,
// BackendKeyData and ReadyForQuery.
func (s *session) sendWelcome() error {
	params, err := s.pool.ServerParams(context.Background())
	if err != nil {
		return err
	}
	return s.writeWelcome(params, s.want, 'I')
}

// writeWelcome writes a ParameterStatus for each of params (the value in
// want instead, where it has one), the client's BackendKeyData and a
// ReadyForQuery with status, and flushes.
func (s *session) writeWelcome(params, want map[string]string, status byte) error {
	for k, v := range params {
		if w, ok := want[k]; ok {
			v = w
		}
		if err := s.cw.Append((&pgproto3.ParameterStatus{Name: k, Value: v}).Encode); err != nil {
			return err
		}
	}
	if err := s.cw.Append((&pgproto3.BackendKeyData{ProcessID: s.key.pid, SecretKey: s.key.secret[:]}).Encode); err != nil {
		return err
	}
	if err := s.cw.Append(func(dst []byte) ([]byte, error) { return appendReady(dst, status), nil }); err != nil {
		return err
	}
	return s.cw.Flush()
}

// waitContext bounds a wait for a backend by query_wait_timeout.
func (s *session) waitContext() (context.Context, context.CancelFunc) {
	if d := s.pool.Options().Pool.QueryWaitTimeout.D(); d > 0 {
		return context.WithTimeout(s.srv.ctx, d)
	}
	return context.WithCancel(s.srv.ctx)
}

// acquireError explains a failed wait for a backend.
func (s *session) acquireError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, pool.ErrClosed) || s.srv.ctx.Err() != nil:
		return fatalf(codeAdminShutdown, "pgrecycle is shutting down")
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return s.withConnectFailure(errorf(codeQueryCanceled,
			"pgrecycle: no server connection available within query_wait_timeout (%s)", s.pool.Options().Pool.QueryWaitTimeout.D()))
	case errors.Is(err, context.Canceled) && s.killed.Load():
		s.endCause = "admin KILL"
		return killedError()
	case errors.Is(err, context.Canceled) && s.clientGone.Load():
		s.endCause = "client gone"
		return fatalf(codeConnectionFailure, "pgrecycle: client gone while waiting for a server connection")
	case errors.Is(err, context.Canceled):
		return errorf(codeQueryCanceled, "canceling statement due to user request") // a CancelRequest
	}
	return fromBackendError("ERROR", err)
}

// withConnectFailure adds to a wait's error why the pool could not open a
// backend, when its latest connect failed: the client learns the database
// is unreachable or refusing, not only that it waited.
func (s *session) withConnectFailure(e *clientError) *clientError {
	if err := s.pool.ConnectFailing(); err != nil {
		e.Detail = "pgrecycle's latest connection attempt to the database server failed: " + err.Error()
	}
	return e
}

// loginAcquireError is acquireError for the login, whose wait also ends
// before client_login_timeout.
func (s *session) loginAcquireError(ctx context.Context, err error, loginBound bool) error {
	if loginBound && errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil && s.srv.ctx.Err() == nil {
		return s.withConnectFailure(fatalf(codeConnectionFailure,
			"pgrecycle: no server connection available within client_login_timeout (%s); see pgrecycle's log for why",
			s.srv.Config().Listen.ClientLoginTimeout.D()))
	}
	return s.acquireError(ctx, err)
}

// applyParams brings a backend's settings to this client's: another
// client's session state is reset, the client's tracked and startup
// settings are applied, and then its carried SETs (carry.go), which are
// later than its startup settings and win over them.
func (s *session) applyParams(b *pool.Backend) error {
	carried, path := s.carried()
	if b.SettingsOwner != 0 && (b.Carried != carried || b.SettingsDirty && b.SettingsOwner != s.id) {
		// Another client's settings, or an outdated set of this one's.
		s.log.Debug("resetting the server connection's session state")
		if err := resetSessionSettings(b); err != nil {
			return err
		}
	}
	replay := carried != "" && b.SettingsOwner == 0
	if b.SettingsOwner != 0 {
		// This client's, or another's that ran exactly its carried SETs
		// and nothing else: nothing to undo.
		b.SettingsOwner = s.id
	}
	applied, err := s.applyClientSettings(b)
	if err != nil {
		return err
	}
	if carried != "" && (replay || applied) {
		// Applied settings may have overwritten a carried one.
		return s.replayCarried(b, carried, path)
	}
	return nil
}

// applyClientSettings sets the client's tracked and startup settings where
// b's differ, and reports whether it ran anything.
func (s *session) applyClientSettings(b *pool.Backend) (bool, error) {
	// A set found to match this backend since its settings last changed
	// needs no look: the common case, a dozen map lookups saved.
	memo := s.wantSet
	if len(s.extra) != 0 {
		memo = 0 // the set number doesn't cover extra
	}
	if memo != 0 && b.SettingsMatched == memo {
		return false, nil
	}
	sql := paramSQL(s.want, s.extra, b.Params, b.ProxySet)
	if sql == "" {
		b.SettingsMatched = memo
		return false, nil
	}
	b.SettingsMatched = 0
	if err := runSetup(b, sql); err != nil {
		return false, err
	}
	var set map[string]string
	if len(s.extra) > 0 {
		set = maps.Clone(s.extra)
	}
	b.SetProxySet(set)
	return true, nil
}

// replayCarried runs the client's carried SETs on b. If that fails (a role
// membership revoked since, say), the client is told and they are dropped,
// so that its next transaction does not fail the same way.
func (s *session) replayCarried(b *pool.Backend, carried, path string) error {
	dirty := b.SettingsDirty
	// Whatever a failed replay leaves, another client gets it reset.
	b.MarkSessionState(s.id)
	if err := runSetup(b, carried); err != nil {
		var qe *pool.QueryError
		if errors.As(err, &qe) {
			s.dropCarried(nil, resetInfo{all: true})
			s.log.Warn("setting a client's session settings again on another server connection failed; they are dropped", zap.String("error", qe.Message))
			return &pool.QueryError{Code: qe.Code, Message: "pgrecycle: your session settings (SET) could not be set again on another server connection, and are dropped: " + qe.Message}
		}
		return err
	}
	b.Carried, b.SettingsDirty = carried, dirty
	if path != "" {
		b.PathScope = path // statement names follow search_path (serverStmtName)
	}
	return nil
}

func (s *session) releaseOrDestroy(b *pool.Backend) {
	if b.Broken {
		s.pool.Destroy(b, "error")
		return
	}
	s.pool.Release(b)
}

// sessionLog logs with the session's client, user and database attached.
// It adds them per call rather than with zap's With, which would keep a
// cloned encoder (a kilobyte or more) alive for every idle client.
type sessionLog struct{ s *session }

// clientAddr names a client's address for logs: a unix socket peer has
// none ("@"), so the socket it came through is named instead.
func clientAddr(c net.Conn) string {
	if isUnix(c) {
		return "unix:" + c.LocalAddr().String()
	}
	return c.RemoteAddr().String()
}

func (l sessionLog) with(fields []zap.Field) []zap.Field {
	out := make([]zap.Field, 0, len(fields)+3)
	out = append(out, zap.String("client", clientAddr(l.s.raw)))
	if l.s.user != "" {
		out = append(out, zap.String("user", l.s.user), zap.String("database", l.s.database))
	}
	return append(out, fields...)
}

func (l sessionLog) Debug(msg string, fields ...zap.Field) {
	if ce := l.s.srv.log.Check(zap.DebugLevel, msg); ce != nil {
		ce.Write(l.with(fields)...)
	}
}

func (l sessionLog) Info(msg string, fields ...zap.Field) {
	if ce := l.s.srv.log.Check(zap.InfoLevel, msg); ce != nil {
		ce.Write(l.with(fields)...)
	}
}

func (l sessionLog) Warn(msg string, fields ...zap.Field) {
	if ce := l.s.srv.log.Check(zap.WarnLevel, msg); ce != nil {
		ce.Write(l.with(fields)...)
	}
}

func (l sessionLog) Error(msg string, fields ...zap.Field) {
	if ce := l.s.srv.log.Check(zap.ErrorLevel, msg); ce != nil {
		ce.Write(l.with(fields)...)
	}
}
