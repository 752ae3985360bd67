package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/pool"
	"github.com/pgrecycle/pgrecycle/proxy/auth"
	"github.com/pgrecycle/pgrecycle/wire"
)

// clientBufSize is the size of buffers lent to active client connections.
const clientBufSize = 16 << 10

// maxCachedVerifiers bounds the SCRAM verifiers kept for plain passwords
// (about 150 bytes each).
const maxCachedVerifiers = 1024

// Version is set by the command at build time and reported to clients.
type Options struct {
	Config  *config.Config
	Logger  *zap.Logger
	Version string
}

type poolKey struct{ database, user string }

// Server is the proxy: listeners, sessions and pools.
type Server struct {
	log     *zap.Logger
	version string
	bufs    *wire.BufferPool
	cancels *cancelRegistry
	fails   *failedLogins
	authq   *authQuery
	// verifiers: SCRAM verifiers derived from plain passwords, kept
	// between logins.
	verifiers *auth.VerifierCache

	cfg       atomic.Pointer[config.Config]
	tlsConfig atomic.Pointer[tls.Config] // nil: no TLS toward clients
	users     atomic.Pointer[auth.UserList]

	mu       sync.Mutex
	pools    map[poolKey]*pool.Pool
	limiters map[string]*pool.Limiter // max_db_connections, per database
	// userLimiters: max_user_connections, per backend user.
	userLimiters map[string]*pool.Limiter
	// clientsIn counts logged-in clients per database and user.
	clientsIn clientCounts
	listeners []net.Listener
	sessions  map[*session]struct{}
	closing   bool
	parked    *parkSet  // nil where parking is unsupported
	waitSlots sync.Pool // *waitSlot (forward.go)
	params    *paramSets
	// checkedLogins: startup settings a pool's backends already accepted.
	checkedLogins *checkedLogins

	clients atomic.Int64
	// sessionIDs numbers sessions for pool.Backend.SettingsOwner.
	sessionIDs atomic.Uint64
	// draining is set by Shutdown: no new transactions, idle clients are
	// told and closed, the rest finish first.
	draining atomic.Bool
	// terminating is set when shutdown_timeout passes with clients left:
	// each is told (57P01) and closed, whatever it was doing.
	terminating atomic.Bool
	ops         opsState    // admin console, metrics (inspect.go, metrics.go)
	health      healthState // the health advisor's findings (health.go)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loops, sessions, ticker, health advisor
}

// New validates what it can (auth file) and returns an unstarted Server.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		log:           opts.Logger,
		version:       opts.Version,
		bufs:          wire.NewBufferPool(clientBufSize),
		cancels:       newCancelRegistry(),
		fails:         newFailedLogins(),
		verifiers:     auth.NewVerifierCache(maxCachedVerifiers),
		authq:         newAuthQuery(),
		pools:         make(map[poolKey]*pool.Pool),
		limiters:      make(map[string]*pool.Limiter),
		userLimiters:  make(map[string]*pool.Limiter),
		sessions:      make(map[*session]struct{}),
		params:        newParamSets(),
		checkedLogins: newCheckedLogins(),
		ctx:           ctx,
		cancel:        cancel,
	}
	s.initOps()
	if err := s.setConfig(opts.Config); err != nil {
		cancel()
		return nil, err
	}
	s.parked = newParkSet(s.log)
	return s, nil
}

func (s *Server) setConfig(cfg *config.Config) error {
	users := auth.UserList{}
	if cfg.Auth.File != "" {
		u, err := auth.LoadUserList(cfg.Auth.File)
		if err != nil {
			return fmt.Errorf("auth.file: %w", err)
		}
		users = u
	}
	tc, err := loadTLS(cfg.TLS, s.log)
	if err != nil {
		return err
	}
	warnReadableSecrets(cfg, s.log)
	s.cfg.Store(cfg)
	s.users.Store(&users)
	s.tlsConfig.Store(tc)
	return nil
}

// Config returns the configuration in effect.
func (s *Server) Config() *config.Config { return s.cfg.Load() }

// Listen opens the configured listeners. Use Addr to learn a port chosen
// by the system.
func (s *Server) Listen() error {
	cfg := s.Config()
	lc := net.ListenConfig{KeepAliveConfig: keepaliveConfig(cfg.Listen)}
	if cfg.Listen.Addr != "" {
		tcp := lc
		if cfg.Listen.SOReusePort {
			tcp.Control = setReusePort
		}
		ln, err := tcp.Listen(s.ctx, "tcp", cfg.Listen.Addr)
		if err != nil {
			return fmt.Errorf("listen.addr: %w", err)
		}
		s.listeners = append(s.listeners, ln)
	}
	if path := cfg.Listen.SocketPath(); path != "" {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path) // stale socket of a previous run
		}
		ln, err := lc.Listen(s.ctx, "unix", path)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen.unix_socket_dir: %w", err)
		}
		_ = os.Chmod(path, 0o777)
		if ul, ok := ln.(*net.UnixListener); ok {
			// Another process may own the path by now (an upgrade with
			// so_reuseport): never unlink it on close; a stale file is
			// removed at the next start instead.
			ul.SetUnlinkOnClose(false)
		}
		s.listeners = append(s.listeners, ln)
	}
	if len(s.listeners) == 0 {
		return errors.New("nothing to listen on: set listen.addr or listen.unix_socket_dir")
	}
	if err := s.listenMetrics(); err != nil {
		s.closeListeners()
		return err
	}
	return nil
}

func keepaliveConfig(l config.Listen) net.KeepAliveConfig {
	if !l.TCPKeepalive {
		return net.KeepAliveConfig{Enable: false, Idle: -1, Interval: -1, Count: -1}
	}
	return net.KeepAliveConfig{Enable: true, Idle: l.TCPKeepIdle.D(), Interval: l.TCPKeepIntvl.D(), Count: l.TCPKeepCnt}
}

// Addr returns the TCP listener's address (nil without one).
func (s *Server) Addr() net.Addr {
	for _, ln := range s.listeners {
		if ln.Addr().Network() == "tcp" {
			return ln.Addr()
		}
	}
	return nil
}

// Serve runs the accept loops and the pool ticker until Close.
func (s *Server) Serve() {
	for _, ln := range s.listeners {
		s.wg.Add(1)
		go s.acceptLoop(ln)
	}
	s.wg.Add(1)
	go s.tickLoop()
	if s.parked != nil {
		s.wg.Add(1)
		go s.runParkSet(parkSweep(cmp.Or(s.Config().Listen.ClientParkAfter.D(), time.Second)))
	}
	s.startHealth()
	s.serveMetrics()
}

// acceptLoop accepts clients, backing off on temporary errors (fd
// exhaustion) instead of spinning, as net/http does.
func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			s.log.Warn("accept failed, backing off", zap.Error(err), zap.Duration("delay", delay))
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
			if ut := s.Config().Listen.TCPUserTimeout.D(); ut > 0 {
				if rc, err := tc.SyscallConn(); err == nil {
					_ = pool.SetUserTimeout(rc, ut)
				}
			}
		}
		sess := newSession(s, c)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.sessions[sess] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go sess.run(func() {
			s.mu.Lock()
			delete(s.sessions, sess)
			s.mu.Unlock()
			s.wg.Done()
		})
	}
}

// tickLoop drives pool housekeeping: idle timeouts and lifetimes.
func (s *Server) tickLoop() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			for _, p := range s.poolList() {
				p.Tick(now)
			}
			s.sweepGoneClients(now)
			s.fails.expire(now)
		}
	}
}

func (s *Server) poolList() []*pool.Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*pool.Pool, 0, len(s.pools))
	for _, p := range s.pools {
		out = append(out, p)
	}
	return out
}

// poolFor returns (creating on first use) the pool for a database and
// backend user.
func (s *Server) poolFor(db *config.Database, user, password string, pt *pool.Passthrough) (*pool.Pool, error) {
	key := poolKey{db.Name, user}
	s.mu.Lock()
	if p, ok := s.pools[key]; ok {
		s.mu.Unlock()
		// This login's credentials are the newest: a rotated password
		// (userlist reload, auth_query) reaches new backends with it. A
		// login that brought none (trust, cert) leaves the pool's alone.
		if password != "" || pt != nil {
			if err := p.SetCredentials(password, pt); err != nil {
				return nil, err
			}
		}
		return p, nil
	}
	defer s.mu.Unlock()
	if s.closing {
		return nil, pool.ErrClosed
	}
	cfg := s.Config()
	lim := s.limiters[db.Name]
	if lim == nil {
		lim = pool.NewLimiter("max_db_connections", db.Pool.MaxDBConnections)
		s.limiters[db.Name] = lim
	}
	userLim := s.userLimiters[user]
	if userLim == nil {
		backends, _ := cfg.UserLimits(user)
		userLim = pool.NewLimiter("max_user_connections", backends)
		s.userLimiters[user] = userLim
	}
	p, err := pool.New(pool.Options{
		Limits:      []*pool.Limiter{lim, userLim},
		Database:    db.Name,
		User:        user,
		Password:    password,
		Passthrough: pt,
		Target:      *db,
		Params:      cfg.StartupParameters(db.Name, user),
		Pool:        db.Pool,
		Recycle:     db.Recycle,
		Listen:      cfg.Listen,
		Logger:      s.log,
	})
	if err != nil {
		return nil, err
	}
	s.pools[key] = p
	return p, nil
}

func (s *Server) closeListeners() {
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
}

// Close stops accepting, disconnects every client, closes every pool and
// waits for all goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.wg.Wait()
		<-s.ops.done // the first Close has finished
		return
	}
	s.closing = true
	s.mu.Unlock()
	s.cancel()
	s.closeListeners()
	for _, sess := range s.sessionList() {
		sess.kill()
	}
	if s.parked != nil {
		s.parked.w.Close()
	}
	s.wg.Wait()
	if s.parked != nil {
		s.parked.w.Free()
	}
	for _, p := range s.poolList() {
		p.Close()
	}
	s.authq.close()
	s.closeOps()
}

// Reload re-reads the configuration file. Until the operability work lands
// it only swaps settings read per login (auth file, databases).
func (s *Server) Reload() error {
	cur := s.Config()
	if cur.Path == "" {
		return errors.New("no configuration file to reload")
	}
	cfg, err := config.Load(cur.Path)
	if err != nil {
		return err
	}
	if err := s.setConfig(cfg); err != nil {
		return err
	}
	s.checkedLogins.reset()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, lim := range s.limiters {
		if db := cfg.Database(name); db != nil {
			lim.SetMax(db.Pool.MaxDBConnections)
		}
	}
	for user, lim := range s.userLimiters {
		backends, _ := cfg.UserLimits(user)
		lim.SetMax(backends)
	}
	for key, p := range s.pools {
		db := cfg.Database(key.database)
		if db == nil {
			// Removed: its clients finish, new logins get 3D000; its idle
			// backends close now, the others when released.
			if n := p.Vacate("reload", 0); n > 0 {
				s.log.Info("reload: database removed, its idle backends closed", zap.Stringer("pool", p), zap.Int("backends", n))
			}
			continue
		}
		old := p.Options()
		opts := *old
		opts.Target = *db
		opts.Params = cfg.StartupParameters(db.Name, key.user)
		opts.Pool = db.Pool
		opts.Recycle = db.Recycle
		opts.Listen = cfg.Listen
		given := ""
		if db.User != "" {
			opts.User, given = db.User, db.Password
		}
		// A password rotated in the file reaches new backends now; a
		// passed-through key changes at the user's next login.
		if password, ok := configuredPassword(cfg, *s.users.Load(), opts.User, given); ok {
			opts.Password, opts.Passthrough = password, nil
		}
		if err := p.Update(opts); err != nil {
			s.log.Error("reload: pool not updated", zap.Stringer("pool", p), zap.Error(err))
		}
	}
	changed := config.Diff(cur, cfg)
	for _, key := range changed {
		if restartOnly(key) {
			s.log.Warn("reload: this setting takes effect at the next start; the running process keeps the old value",
				zap.String("key", key))
		}
	}
	s.log.Info("configuration reloaded", zap.String("config", cfg.Path), zap.Strings("changed", changed))
	return nil
}

// restartOnly reports whether a configuration key is read only when the
// listeners open: a reload records it but cannot apply it.
func restartOnly(key string) bool {
	switch key {
	case "listen.addr", "listen.unix_socket_dir", "listen.so_reuseport", "metrics.addr":
		return true
	}
	return false
}

// Shutdown stops accepting clients and drains: idle clients are told
// (57P01) and closed, clients in a transaction finish it first; after
// listen.shutdown_timeout the clients left are told (57P01), their open
// transactions rolled back, and closed.
func (s *Server) Shutdown() {
	s.draining.Store(true)
	s.closeListeners()
	s.pokeSessions()
	if !s.waitSessions(time.Now().Add(s.Config().Listen.ShutdownTimeout.D()), false) {
		// Each session ends itself, so that its FATAL is not written over
		// a reply it is relaying; a session stuck elsewhere (a write to a
		// client that stopped reading) is closed after a moment. Pokes
		// repeat because a session may clear its read deadline just after
		// one.
		s.terminating.Store(true)
		s.waitSessions(time.Now().Add(terminateGrace), true)
	}
	s.Close()
}

// shutdownTimeoutError tells a client it was cut at shutdown_timeout.
func (s *Server) shutdownTimeoutError() *clientError {
	return fatalf(codeAdminShutdown, "terminating connection: pgrecycle is shutting down (shutdown_timeout = %s reached)", s.Config().Listen.ShutdownTimeout)
}

// terminateGrace is how long sessions get, after shutdown_timeout, to tell
// their clients and roll back before the rest are cut.
const terminateGrace = 2 * time.Second

// waitSessions waits until no session is left or deadline passes, poking
// the sessions at each look when poke is set; it reports whether none is
// left.
func (s *Server) waitSessions(deadline time.Time, poke bool) bool {
	for {
		s.mu.Lock()
		n := len(s.sessions)
		s.mu.Unlock()
		if n == 0 {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		if poke {
			s.pokeSessions()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// pokeSessions wakes every session blocked reading its client so it can
// notice a state change (draining).
func (s *Server) pokeSessions() {
	for _, sess := range s.sessionList() {
		sess.poke()
	}
}
