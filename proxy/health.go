package proxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/pool"
	"github.com/pgrecycle/pgrecycle/proxy/auth"
)

// The health advisor. One goroutine (healthLoop, owned by the Server and
// ended by Close) samples every configured database once per
// health.interval, from a connection of its own that it opens for the
// round and closes after it: never a client's backend. The only use of the
// pools is read-only (backend memory samples, pids) except for the generic
// plan check, which borrows one idle pooled backend for one short query,
// and only when no client waits for that pool.
//
// What a round learns is kept per database as items: a measured value
// against a threshold. Items over their threshold are findings: SHOW
// HEALTH lists them, the metrics export every item, and a finding is
// logged as a warning once, when it first crosses its threshold.

// healthAppName is the application_name of the advisor's connections;
// other pgrecycle processes' advisors are recognised by it too.
const healthAppName = "pgrecycle_health"

// authQueryAppName is the application_name of auth.query connections.
const authQueryAppName = "pgrecycle_auth_query"

// Health check names: the "check" column of SHOW HEALTH and label of the
// metrics. README documents each.
const (
	checkAdvisor           = "advisor"
	checkMemory            = "memory"
	checkGenericPlans      = "generic_plans"
	checkXIDAge            = "xid_age"
	checkDeadTuples        = "dead_tuples"
	checkAutovacuum        = "autovacuum"
	checkWraparoundVacuum  = "wraparound_vacuum"
	checkVacuumBlocking    = "vacuum_blocking"
	checkConnections       = "connections"
	checkIdleInTransaction = "idle_in_transaction"
	checkBypass            = "bypass"
	checkOvercommit        = "overcommit"
	checkOOMScore          = "oom_score_adj"
)

// Units of item values, for display.
const (
	unitCount   = "count"
	unitBytes   = "bytes"
	unitSeconds = "seconds"
	unitXIDs    = "xids"
	unitSetting = "setting"
)

// healthItem is one measurement of one object against a threshold.
type healthItem struct {
	check, object string
	value         float64
	threshold     float64
	hasThreshold  bool
	unit          string
	// crossed is decided by the check: most compare value >= threshold,
	// some (kernel settings) want an exact value.
	crossed bool
	advice  string
}

func (it healthItem) key() string { return it.check + "\x00" + it.object }

// healthState is the advisor's memory: results per database, read by SHOW
// HEALTH and the metrics while the advisor's goroutine writes them.
type healthState struct {
	mu  sync.Mutex
	dbs map[string]*dbHealth // by database name (the [databases] section)
}

// dbHealth is what the advisor knows of one database. Fields up to mu's
// readers (items, since, status, sampledAt, attemptedAt) are guarded by
// healthState.mu; the rest belongs to the advisor's goroutine.
type dbHealth struct {
	items       []healthItem
	since       map[string]time.Time // item key → when it crossed, for crossed items
	status      string               // "" when the last round sampled the database, else why not
	advice      string               // what to do about status
	statusSince time.Time            // when status last changed
	sampledAt   time.Time
	attemptedAt time.Time

	// Advisor-goroutine state.
	failures    int
	nextTry     time.Time
	connErrs    map[*pool.Pool]int64
	generic     map[string]genericSeen
	round       int
	unavailable map[string]bool // checks whose query failed (old server, privileges), logged once
	statusShown string          // last status logged
}

// genericSeen keeps a generic-plan finding for a few rounds: each round
// looks at one idle backend per pool, and the next one may not have run
// the statement yet.
type genericSeen struct {
	item  healthItem
	round int
}

// genericKeepRounds is how many rounds a generic-plan finding stays
// without being seen again.
const genericKeepRounds = 10

// maxBackoffRounds caps the rounds skipped after failed connects.
const maxBackoffRounds = 16

func (h *healthState) db(name string) *dbHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dbs == nil {
		h.dbs = make(map[string]*dbHealth)
	}
	d := h.dbs[name]
	if d == nil {
		d = &dbHealth{
			since:       make(map[string]time.Time),
			connErrs:    make(map[*pool.Pool]int64),
			generic:     make(map[string]genericSeen),
			unavailable: make(map[string]bool),
		}
		h.dbs[name] = d
	}
	return d
}

// retain forgets databases no longer configured (all of them when keep is
// nil).
func (h *healthState) retain(keep map[string]*config.Database) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name := range h.dbs {
		if _, ok := keep[name]; !ok {
			delete(h.dbs, name)
		}
	}
}

// healthRow is a snapshot of one item or status for SHOW HEALTH and the
// metrics.
type healthRow struct {
	database string
	item     healthItem
	since    time.Time
}

// healthDBStatus is a snapshot of one database's sampling state.
type healthDBStatus struct {
	database    string
	up          bool
	status      string
	advice      string
	since       time.Time
	sampledAt   time.Time
	attemptedAt time.Time
}

// snapshot returns every item and every database's status, sorted.
func (h *healthState) snapshot() ([]healthRow, []healthDBStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var rows []healthRow
	var sts []healthDBStatus
	for _, name := range slices.Sorted(maps.Keys(h.dbs)) {
		d := h.dbs[name]
		if d.attemptedAt.IsZero() && len(d.items) == 0 {
			continue
		}
		sts = append(sts, healthDBStatus{database: name, up: d.status == "", status: d.status, advice: d.advice,
			since: d.statusSince, sampledAt: d.sampledAt, attemptedAt: d.attemptedAt})
		for _, it := range d.items {
			rows = append(rows, healthRow{database: name, item: it, since: d.since[it.key()]})
		}
	}
	return rows, sts
}

// startHealth starts the advisor's goroutine; Close ends it (it stops with
// the Server's context and is waited for with the other goroutines).
func (s *Server) startHealth() {
	s.wg.Add(1)
	go s.healthLoop()
}

func (s *Server) healthLoop() {
	defer s.wg.Done()
	for {
		interval := s.Config().Health.Interval.D()
		if interval <= 0 { // a Config built in code without [health] defaults
			interval = config.DefaultHealth().Interval.D()
		}
		t := time.NewTimer(interval)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.healthRound()
	}
}

// healthRound samples every configured database once.
func (s *Server) healthRound() {
	cfg := s.Config()
	if !cfg.Health.Enabled {
		s.health.retain(nil)
		return
	}
	s.health.retain(cfg.Databases)
	done := make(map[string]bool) // servers and server databases sampled this round
	for _, name := range slices.Sorted(maps.Keys(cfg.Databases)) {
		if s.ctx.Err() != nil {
			return
		}
		// The fallback section names no database of its own.
		if db := cfg.Databases[name]; db != nil && name != config.FallbackDatabase {
			s.healthSample(cfg, db, done)
		}
	}
}

// healthPoolsOf returns the pools of database name.
func (s *Server) healthPoolsOf(name string) []*pool.Pool {
	var out []*pool.Pool
	for _, p := range s.sortedPools() {
		if p.Options().Database == name {
			out = append(out, p)
		}
	}
	return out
}

// healthSample runs one round for one database and publishes the result.
func (s *Server) healthSample(cfg *config.Config, db *config.Database, done map[string]bool) {
	d := s.health.db(db.Name)
	d.round++
	now := time.Now()
	hc := cfg.Health
	pools := s.healthPoolsOf(db.Name)

	// Backend memory needs no connection: it comes from the pools' samples.
	items := memoryItems(hc, pools)

	skip := func(status, advice string) {
		s.healthPublish(d, db.Name, items, now, status, advice, false, true)
	}
	user, password, ok := healthCredentials(cfg, *s.users.Load(), db)
	switch {
	case !ok:
		s.healthPublish(d, db.Name, items, now, "not sampled: no credentials",
			fmt.Sprintf("set health.user, databases.%s.user or auth.query_user (a role with pg_monitor) so the advisor can connect", db.Name), false, false)
		return
	case s.Paused(db.Name):
		skip("not sampled: database paused", "RESUME "+db.Name+" to sample it again")
		return
	case now.Before(d.nextTry):
		skip(d.status, d.advice) // backing off after a failed connect
		return
	}
	grew := false
	for _, p := range pools {
		n := p.Stats().ConnectErrors
		if prev, seen := d.connErrs[p]; seen && n > prev {
			grew = true
		}
		d.connErrs[p] = n
	}
	if grew {
		skip("not sampled: the pools fail to connect", "the advisor waits until the database accepts connections again")
		return
	}

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	conn, err := s.healthConnect(ctx, db, user, password, hc.QueryTimeout.D())
	if err != nil {
		if s.ctx.Err() != nil {
			return
		}
		d.failures++
		rounds := 1 << min(d.failures-1, 4)
		s.log.Debug("health: connect failed", zap.String("database", db.Name), zap.Int("failures", d.failures),
			zap.Int("next_in_rounds", rounds), zap.Error(err))
		d.nextTry = now.Add(time.Duration(min(rounds, maxBackoffRounds)) * hc.Interval.D()).Add(-hc.Interval.D() / 2)
		skip("not sampled: cannot connect: "+err.Error(),
			fmt.Sprintf("the advisor connects as %q (health.user, databases.%s.user or auth.query_user) and retries in %d rounds", user, db.Name, rounds))
		return
	}
	defer conn.close()
	d.failures, d.nextTry = 0, time.Time{}

	r := &healthRun{srv: s, cfg: cfg, db: db, d: d, conn: conn, pools: pools}
	serverKey := db.Host + "\x00" + strconv.Itoa(db.Port)
	if !done[serverKey] {
		done[serverKey] = true
		r.serverChecks()
	}
	if dbKey := serverKey + "\x00" + db.DBName; !done[dbKey] {
		done[dbKey] = true
		r.databaseChecks()
	}
	r.genericPlanChecks() // per pool: every pgrecycle database has its own
	if conn.broken() {
		if s.ctx.Err() != nil {
			return
		}
		skip("not sampled: connection lost during the round", "the advisor tries again next round")
		return
	}
	items = append(items, r.items...)
	s.healthPublish(d, db.Name, items, now, "", "", true, false)
}

// healthPublish stores a round's items, logs newly crossed thresholds and
// those back under them. A round that could not sample the database for
// now (keep) keeps the previous round's SQL findings, still the latest
// knowledge, and replaces only what it measured (memory).
func (s *Server) healthPublish(d *dbHealth, name string, items []healthItem, now time.Time, status, advice string, sampled, keep bool) {
	if keep {
		kept := items
		s.health.mu.Lock()
		for _, it := range d.items {
			if it.check != checkMemory {
				kept = append(kept, it)
			}
		}
		s.health.mu.Unlock()
		items = kept
	}
	items = uniqueItems(items)
	log := s.log.With(zap.String("database", name))
	s.health.mu.Lock()
	prevSince := d.since
	d.since = make(map[string]time.Time)
	var crossed, cleared []healthItem
	for _, it := range items {
		if !it.crossed {
			continue
		}
		if t, ok := prevSince[it.key()]; ok {
			d.since[it.key()] = t
		} else {
			d.since[it.key()] = now
			crossed = append(crossed, it)
		}
	}
	for _, it := range d.items {
		if _, was := prevSince[it.key()]; was {
			if _, still := d.since[it.key()]; !still {
				cleared = append(cleared, it)
			}
		}
	}
	d.items = items
	d.attemptedAt = now
	if sampled {
		d.sampledAt = now
	}
	d.status, d.advice = status, advice
	logStatus := status != d.statusShown
	if logStatus || d.statusSince.IsZero() {
		d.statusSince = now
	}
	d.statusShown = status
	s.health.mu.Unlock()

	for _, it := range crossed {
		log.Warn("health: threshold crossed", zap.String("check", it.check), zap.String("object", it.object),
			zap.String("value", it.valueText()), zap.String("threshold", it.thresholdText()), zap.String("advice", it.advice))
	}
	for _, it := range cleared {
		log.Info("health: back under threshold", zap.String("check", it.check), zap.String("object", it.object),
			zap.String("value", it.valueText()))
	}
	if logStatus {
		if status == "" {
			log.Info("health: database sampled")
		} else {
			log.Warn("health: database not sampled", zap.String("reason", status), zap.String("advice", advice))
		}
	}
}

// uniqueItems drops later items with the key of an earlier one, so the
// metrics never see one label set twice.
func uniqueItems(items []healthItem) []healthItem {
	seen := make(map[string]bool, len(items))
	out := items[:0:0]
	for _, it := range items {
		if seen[it.key()] {
			continue
		}
		seen[it.key()] = true
		out = append(out, it)
	}
	return out
}

// healthCredentials picks the advisor's role for db: health.user, else the
// database's user, else auth.query_user. Passwords come from the database
// section, [users.NAME] password or a plain password in the auth file.
func healthCredentials(cfg *config.Config, users auth.UserList, db *config.Database) (user, password string, ok bool) {
	pw := func(u string) string {
		if uu := cfg.Users[u]; uu != nil && uu.Password != "" {
			return uu.Password
		}
		if sec, ok := users[u]; ok && sec.Kind == auth.KindPlain {
			return sec.Plain
		}
		return ""
	}
	switch {
	case cfg.Health.User != "":
		if cfg.Health.User == db.User && db.Password != "" {
			return db.User, db.Password, true
		}
		return cfg.Health.User, pw(cfg.Health.User), true
	case db.User != "":
		if db.Password != "" {
			return db.User, db.Password, true
		}
		return db.User, pw(db.User), true
	case cfg.Auth.QueryUser != "":
		return cfg.Auth.QueryUser, pw(cfg.Auth.QueryUser), true
	}
	return "", "", false
}

// healthConn is the advisor's own connection for one round.
type healthConn struct {
	pc      *pgconn.PgConn
	ctx     context.Context
	timeout time.Duration
	over    *atomic.Bool // refuses pgconn's late dials (cancel requests) once the round is over
	lost    bool
}

// healthConnect opens the advisor's connection: read-only, with
// statement_timeout and lock_timeout at query_timeout.
func (s *Server) healthConnect(ctx context.Context, db *config.Database, user, password string, timeout time.Duration) (*healthConn, error) {
	pcfg, err := pool.ParseConnConfig(*db, user, password)
	if err != nil {
		return nil, err
	}
	ms := strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)
	pcfg.RuntimeParams = map[string]string{
		"application_name":              healthAppName,
		"statement_timeout":             ms,
		"lock_timeout":                  ms,
		"default_transaction_read_only": "on",
	}
	pcfg.ConnectTimeout = db.Pool.ServerConnectTimeout.D()
	over := new(atomic.Bool)
	dial := pcfg.DialFunc
	pcfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if over.Load() {
			return nil, errors.New("health round over")
		}
		return dial(ctx, network, addr)
	}
	cctx := ctx
	if pcfg.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, pcfg.ConnectTimeout)
		defer cancel()
	}
	pc, err := pgconn.ConnectConfig(cctx, pcfg)
	if err != nil {
		over.Store(true)
		return nil, err
	}
	return &healthConn{pc: pc, ctx: ctx, timeout: timeout, over: over}, nil
}

// query runs one statement and returns its rows as text values (nil for
// NULL). A *pgconn.PgError leaves the connection usable.
func (c *healthConn) query(sql string) ([][][]byte, error) {
	if c.lost {
		return nil, errors.New("connection lost")
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.timeout+time.Second)
	defer cancel()
	res, err := c.pc.Exec(ctx, sql).ReadAll()
	if err == nil && len(res) > 0 {
		err = res[0].Err
	}
	if err != nil {
		if c.pc.IsClosed() {
			c.lost = true
		}
		return nil, err
	}
	if len(res) == 0 {
		return nil, nil
	}
	return res[0].Rows, nil
}

func (c *healthConn) broken() bool { return c.lost || c.pc.IsClosed() }

// close ends the connection and waits for pgconn's clean-up goroutine, so
// nothing outlives the round.
func (c *healthConn) close() {
	c.over.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.pc.Close(ctx)
	// pgconn bounds its clean-up (a cancel request) to 15 seconds.
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case <-c.pc.CleanupDone():
	case <-t.C:
	}
}

// healthRun is one round's sampling of one database.
type healthRun struct {
	srv   *Server
	cfg   *config.Config
	db    *config.Database
	d     *dbHealth
	conn  *healthConn
	pools []*pool.Pool
	items []healthItem
}

func (r *healthRun) add(items ...healthItem) { r.items = append(r.items, items...) }

// query runs one check's statement; a server error (old version, missing
// privilege) makes the check unavailable for this round and is logged
// once.
func (r *healthRun) query(check, sql string) ([][][]byte, bool) {
	rows, err := r.conn.query(sql)
	if err == nil {
		return rows, true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && !r.conn.broken() && !r.d.unavailable[check] {
		r.d.unavailable[check] = true
		r.srv.log.Info("health: check unavailable on this server", zap.String("database", r.db.Name),
			zap.String("check", check), zap.String("error", pe.Code+": "+pe.Message))
	}
	return nil, false
}

// Row value helpers: text-format values as Go types.
func colStr(v []byte) string { return string(v) }

func colInt(v []byte) int64 {
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(v), 64)
		if ferr != nil {
			return 0
		}
		return int64(f)
	}
	return n
}

func colFloat(v []byte) float64 {
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return 0
	}
	return f
}

func colBool(v []byte) bool { return len(v) > 0 && (v[0] == 't' || v[0] == '1') }

// valueText and thresholdText format an item for people.
func (it healthItem) valueText() string { return formatHealthValue(it.value, it.unit) }

func (it healthItem) thresholdText() string {
	if !it.hasThreshold {
		return ""
	}
	return formatHealthValue(it.threshold, it.unit)
}

func formatHealthValue(v float64, unit string) string {
	switch unit {
	case unitBytes:
		return formatBytes(v)
	case unitSeconds:
		d := time.Duration(v * float64(time.Second))
		if d >= time.Second {
			d = d.Round(time.Second)
		} else {
			d = d.Round(time.Millisecond)
		}
		return config.Duration(d).String()
	case unitCount, unitXIDs, unitSetting:
		if v != math.Trunc(v) {
			return strconv.FormatFloat(v, 'f', 1, 64) // a threshold from a fraction
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// formatBytes writes a size with PostgreSQL's 1024-based units.
func formatBytes(v float64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	i := 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(v, 'f', 0, 64) + units[0]
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + units[i]
}

// percent formats a share for advice texts.
func percent(part, whole float64) string {
	if whole <= 0 {
		return "?"
	}
	return strconv.FormatFloat(100*part/whole, 'f', 0, 64) + "%"
}

// showHealth is SHOW HEALTH: one row per finding, and one per database the
// last round could not sample.
func (s *session) showHealth() *adminResult {
	r := newAdminResult(textCol("database"), textCol("check"), textCol("object"), textCol("value"),
		textCol("threshold"), textCol("advice"), textCol("since"))
	rows, sts := s.srv.health.snapshot()
	for _, st := range sts {
		if !st.up {
			r.add(st.database, checkAdvisor, st.database, st.status, nil, st.advice, st.since)
		}
	}
	for _, row := range rows {
		if !row.item.crossed {
			continue
		}
		it := row.item
		var threshold any
		if it.hasThreshold {
			threshold = it.thresholdText()
		}
		r.add(row.database, it.check, it.object, it.valueText(), threshold, it.advice, row.since)
	}
	return r
}
