package proxy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/wire"
)

// The admin console: the virtual database "pgrecycle", for the users in
// auth.admin_users. It speaks the simple query protocol only, like
// PgBouncer's, and answers with text-format result sets.

// SQLSTATEs of admin console errors.
const (
	codeSyntaxError     = "42601"
	codeConfigFileError = "F0000"
	codeObjectInUse     = "55006"
)

// adminServerVersion is the server_version reported to admin clients:
// libpq and psql parse the leading number.
const adminServerVersion = "15.0 (pgrecycle)"

// adminStartup completes the login of an admin console client.
func (s *session) adminStartup(cfg *config.Config) error {
	if !slices.Contains(cfg.Auth.AdminUsers, s.user) {
		_ = s.sendError(fatalf(codeInsufficientPriv, "user %q is not allowed on the admin console (auth.admin_users)", s.user))
		s.log.Info("admin console login refused")
		return errSessionDone
	}
	if err := s.cw.Append((&pgproto3.AuthenticationOk{}).Encode); err != nil {
		return err
	}
	version := adminServerVersion
	if s.srv.version != "" {
		version = "15.0 (pgrecycle " + s.srv.version + ")"
	}
	for _, p := range [][2]string{
		{"server_version", version},
		{"server_encoding", "UTF8"},
		{"client_encoding", "UTF8"},
		{"DateStyle", "ISO, MDY"},
		{"TimeZone", "UTC"},
		{"integer_datetimes", "on"},
		{"standard_conforming_strings", "on"},
		{"is_superuser", "off"},
		{"session_authorization", s.user},
		{"application_name", ""},
	} {
		if err := s.cw.Append((&pgproto3.ParameterStatus{Name: p[0], Value: p[1]}).Encode); err != nil {
			return err
		}
	}
	s.srv.cancels.register(s)
	if err := s.cw.Append((&pgproto3.BackendKeyData{ProcessID: s.key.pid, SecretKey: s.key.secret[:]}).Encode); err != nil {
		s.srv.cancels.unregister(s.key)
		return err
	}
	if err := s.cw.Append(func(dst []byte) ([]byte, error) { return appendReady(dst, 'I'), nil }); err != nil {
		s.srv.cancels.unregister(s.key)
		return err
	}
	if err := s.cw.Flush(); err != nil {
		s.srv.cancels.unregister(s.key)
		return err
	}
	_ = s.conn.SetDeadline(time.Time{})
	s.log.Info("admin console login")
	return nil
}

// adminLoop serves admin console commands until the client leaves.
func (s *session) adminLoop() error {
	for {
		typ, _, err := s.cr.Next()
		if err != nil {
			if isTimeout(err) && s.cr.Buffered() == 0 {
				// A poke: Shutdown tells idle clients to leave.
				if s.srv.Draining() {
					s.endCause = "shutdown"
					_ = s.sendError(fatalf(codeAdminShutdown, "terminating connection: pgrecycle is shutting down"))
					return errSessionDone
				}
				_ = s.conn.SetReadDeadline(time.Time{})
				continue
			}
			var pe *wire.ProtocolError
			if errors.As(err, &pe) {
				s.endCause = pe.Error()
				_ = s.sendError(fatalf(codeProtocolViolation, "%s", pe.Error()))
			}
			return err
		}
		switch typ {
		case wire.MsgTerminate:
			_ = s.cr.Skip()
			return nil
		case wire.MsgQuery:
			if !s.cr.Fits() {
				if err := s.failRequest(typ, errorf(codeProgramLimit, "admin command too long")); err != nil {
					return err
				}
				continue
			}
			msg, err := s.cr.Message()
			if err != nil {
				return err
			}
			body := msg[wire.HeaderLen:]
			if n := len(body); n > 0 && body[n-1] == 0 {
				body = body[:n-1]
			}
			stop := s.adminQuery(string(body))
			if err := s.cw.Append(func(dst []byte) ([]byte, error) { return appendReady(dst, 'I'), nil }); err != nil {
				return err
			}
			if err := s.cw.Flush(); err != nil {
				return err
			}
			if stop {
				s.endCause = "admin SHUTDOWN"
				return errSessionDone
			}
		default:
			if err := s.failRequest(typ, errorf(codeFeatureNotSupported, "admin console supports only simple queries")); err != nil {
				return err
			}
		}
	}
}

// codeProgramLimit is program_limit_exceeded.
const codeProgramLimit = "54000"

// adminQuery runs the ;-separated commands of one Query message and
// appends their results (the caller adds ReadyForQuery). It stops at the
// first error. It returns true when the session must end (SHUTDOWN).
func (s *session) adminQuery(q string) bool {
	ran := false
	for _, stmt := range strings.Split(q, ";") {
		stmt = strings.TrimSpace(stmt)
		if stmt == "" {
			continue
		}
		ran = true
		stop, err := s.adminCommand(stmt)
		if err != nil {
			var ce *clientError
			if !errors.As(err, &ce) {
				ce = errorf(codeInternalError, "%s", err.Error())
			}
			_ = s.cw.Append(func(dst []byte) ([]byte, error) { return appendError(dst, ce) })
			s.log.Info("admin command failed", zap.String("command", stmt), zap.String("code", ce.Code), zap.String("message", ce.Message))
			return false
		}
		if stop {
			return true
		}
	}
	if !ran {
		_ = s.cw.Append((&pgproto3.EmptyQueryResponse{}).Encode)
	}
	return false
}

// codeInternalError is internal_error.
const codeInternalError = "XX000"

// adminCommands lists the console's commands for SHOW HELP.
func adminCommands() [][2]string {
	return [][2]string{
		{"SHOW HELP", "this list"},
		{"SHOW VERSION", "pgrecycle version"},
		{"SHOW CONFIG", "configuration in effect (passwords hidden), with defaults"},
		{"SHOW DATABASES", "configured databases"},
		{"SHOW USERS", "users' limits and connections"},
		{"SHOW STATS_TOTALS", "SHOW STATS's totals, with PgBouncer's column names there"},
		{"SHOW STATS_AVERAGES", "SHOW STATS's averages, with PgBouncer's column names there"},
		{"SHOW POOLS", "clients and backends per pool (database, user)"},
		{"SHOW CLIENTS", "logged-in client connections"},
		{"SHOW SERVERS", "backend connections: pid, age, work done, memory, retirement deadline"},
		{"SHOW STATS", "totals and averages per database: transactions, queries, bytes, wait time"},
		{"SHOW RETIREMENTS", "backends closed, by pool and reason"},
		{"SHOW LISTS", "counts of databases, pools, clients and backends"},
		{"SHOW HEALTH", "health advisor findings: check, object, value, threshold, advice"},
		{"RELOAD", "re-read the configuration file"},
		{"PAUSE [db]", "let running transactions finish, hold new ones"},
		{"RESUME [db]", "release held clients"},
		{"RECYCLE [db]", "retire every backend gracefully, at its next release (RECONNECT is the same)"},
		{"WAIT_CLOSE [db]", "wait until the backends RECYCLE or RELOAD retired are closed"},
		{"KILL [db]", "disconnect every client of the database now and retire its backends"},
		{"DISABLE [db]", "refuse new logins to the database; logged-in clients stay"},
		{"ENABLE [db]", "allow logins again after DISABLE"},
		{"SHUTDOWN", "stop accepting clients, let transactions finish, exit"},
	}
}

// adminCommand runs one command. Errors are *clientError values.
func (s *session) adminCommand(stmt string) (stop bool, err error) {
	words := strings.Fields(stmt)
	verb := strings.ToUpper(words[0])
	args := words[1:]
	srv := s.srv
	oneArg := func() (string, error) {
		switch len(args) {
		case 0:
			return "", nil
		case 1:
			return unquoteIdent(args[0]), nil
		}
		return "", errorf(codeSyntaxError, "%s takes at most one database name", verb)
	}
	noArgs := func() error {
		if len(args) > 0 {
			return errorf(codeSyntaxError, "%s takes no arguments", verb)
		}
		return nil
	}
	switch verb {
	case "SHOW":
		if len(args) != 1 {
			return false, errorf(codeSyntaxError, "usage: SHOW <what>; SHOW HELP lists the commands")
		}
		r, err := s.adminShow(strings.ToUpper(args[0]))
		if err != nil {
			return false, err
		}
		return false, r.write(s, "SHOW")
	case "SET":
		// Tools set client options on connect; there is nothing to set.
		return false, s.writeCommandComplete("SET")
	case "RELOAD":
		if err := noArgs(); err != nil {
			return false, err
		}
		if err := srv.Reload(); err != nil {
			return false, errorf(codeConfigFileError, "reload refused, the old configuration stays in effect: %s", err.Error())
		}
		s.log.Info("configuration reloaded by the admin console")
		return false, s.writeCommandComplete("RELOAD")
	case "PAUSE":
		db, err := oneArg()
		if err != nil {
			return false, err
		}
		if err := srv.Pause(db); err != nil {
			return false, adminError(err)
		}
		s.log.Info("paused by the admin console", zap.String("target", orAll(db)))
		if err := srv.waitPaused(srv.ctx, db); err != nil {
			return false, errorf(codeObjectInUse, "pause of %s did not complete: %s", orAll(db), err.Error())
		}
		return false, s.writeCommandComplete("PAUSE")
	case "RESUME":
		db, err := oneArg()
		if err != nil {
			return false, err
		}
		if err := srv.Resume(db); err != nil {
			return false, adminError(err)
		}
		s.log.Info("resumed by the admin console", zap.String("target", orAll(db)))
		return false, s.writeCommandComplete("RESUME")
	case "WAIT_CLOSE":
		db, err := oneArg()
		if err != nil {
			return false, err
		}
		if err := srv.waitClosed(srv.ctx, db); err != nil {
			return false, adminError(err)
		}
		return false, s.writeCommandComplete("WAIT_CLOSE")
	case "KILL":
		db, err := oneArg()
		if err != nil {
			return false, err
		}
		n, err := srv.Kill(db)
		if err != nil {
			return false, adminError(err)
		}
		s.log.Info("clients killed by the admin console", zap.String("target", orAll(db)), zap.Int("clients", n))
		return false, s.writeCommandComplete("KILL")
	case "DISABLE", "ENABLE":
		db, err := oneArg()
		if err != nil {
			return false, err
		}
		if err := srv.SetDisabled(db, verb == "DISABLE"); err != nil {
			return false, adminError(err)
		}
		s.log.Info("logins "+strings.ToLower(verb)+"d by the admin console", zap.String("target", orAll(db)))
		return false, s.writeCommandComplete(verb)
	case "RECYCLE", "RECONNECT":
		db, err := oneArg()
		if err != nil {
			return false, err
		}
		n, err := srv.Recycle(db)
		if err != nil {
			return false, adminError(err)
		}
		s.log.Info("recycle requested by the admin console", zap.String("target", orAll(db)), zap.Int("backends", n))
		notice := &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000",
			Message: fmt.Sprintf("%d backend connections will be retired (idle ones now, busy ones at their release)", n)}
		if err := s.cw.Append(notice.Encode); err != nil {
			return false, err
		}
		return false, s.writeCommandComplete(verb)
	case "SHUTDOWN":
		if err := noArgs(); err != nil {
			return false, err
		}
		s.log.Info("shutdown requested by the admin console")
		if err := s.writeCommandComplete("SHUTDOWN"); err != nil {
			return false, err
		}
		srv.startShutdown()
		return true, nil
	}
	return false, errorf(codeSyntaxError, "unknown admin console command %q; SHOW HELP lists the commands", words[0])
}

func orAll(db string) string {
	if db == "" {
		return "all databases"
	}
	return "database " + db
}

// unquoteIdent strips the double quotes of a quoted database name.
func unquoteIdent(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	return s
}

func adminError(err error) error {
	var ud errUnknownDatabase
	if errors.As(err, &ud) {
		return errorf(codeUnknownDatabase, "%s", err.Error())
	}
	return errorf(codeObjectInUse, "%s", err.Error())
}

// adminShow builds the result of SHOW what.
func (s *session) adminShow(what string) (*adminResult, error) {
	srv := s.srv
	switch what {
	case "HELP":
		r := newAdminResult(textCol("command"), textCol("description"))
		for _, c := range adminCommands() {
			r.add(c[0], c[1])
		}
		return r, nil
	case "VERSION":
		r := newAdminResult(textCol("version"))
		v := srv.version
		if v == "" {
			v = "unknown"
		}
		r.add("pgrecycle " + v)
		return r, nil
	case "CONFIG":
		entries, err := configEntries(srv.Config())
		if err != nil {
			return nil, err
		}
		r := newAdminResult(textCol("key"), textCol("value"), textCol("default"), textCol("changed"))
		for _, e := range entries {
			var def any
			changed := ""
			if e.hasDefault {
				def = e.def
				if e.def != e.value {
					changed = "yes"
				}
			}
			r.add(e.key, e.value, def, changed)
		}
		return r, nil
	case "DATABASES":
		return s.showDatabases(), nil
	case "POOLS":
		return s.showPools(), nil
	case "USERS":
		return s.showUsers(), nil
	case "CLIENTS":
		return s.showClients(), nil
	case "SERVERS":
		return s.showServers(), nil
	case "STATS":
		return s.showStats(), nil
	case "STATS_TOTALS":
		return s.showStatsTotals(), nil
	case "STATS_AVERAGES":
		return s.showStatsAverages(), nil
	case "RETIREMENTS":
		return s.showRetirements(), nil
	case "LISTS":
		return s.showLists(), nil
	case "HEALTH":
		return s.showHealth(), nil
	}
	return nil, errorf(codeSyntaxError, "unknown SHOW subject %q; SHOW HELP lists the commands", what)
}

func (s *session) showDatabases() *adminResult {
	srv := s.srv
	cfg := srv.Config()
	r := newAdminResult(textCol("name"), textCol("host"), intCol("port"), textCol("database"), textCol("force_user"),
		intCol("pool_size"), intCol("min_pool_size"), intCol("reserve_pool"), intCol("server_lifetime"),
		textCol("pool_mode"), intCol("max_connections"),
		intCol("current_connections"), intCol("max_client_connections"), intCol("current_client_connections"),
		intCol("paused"), intCol("disabled"))
	conns := make(map[string]int)
	for _, p := range srv.poolList() {
		st := p.Stats()
		conns[st.Database] += st.Active + st.Idle + st.Opening
	}
	names := make([]string, 0, len(cfg.Databases))
	for name := range cfg.Databases {
		names = append(names, name)
	}
	for name := range conns {
		if cfg.Databases[name] == nil && cfg.Database(name) != nil {
			names = append(names, name) // in use through the fallback
		}
	}
	sort.Strings(names)
	for _, name := range names {
		d := cfg.Database(name)
		clients := srv.clientsIn.ofDB(name)
		r.add(name, d.Host, d.Port, d.DBName, d.User, d.Pool.Size, d.Pool.MinIdle, d.Pool.ReservePoolSize,
			int64(d.Recycle.MaxLifetime.D()/time.Second), d.Pool.Mode, d.Pool.MaxDBConnections,
			conns[name], d.Pool.MaxDBClientConnections, clients, srv.Paused(name), srv.loginsDisabled(name))
	}
	return r
}

// showUsers lists the users configured, with backends or with clients:
// their limits (0: none) and what they use now.
func (s *session) showUsers() *adminResult {
	srv := s.srv
	cfg := srv.Config()
	r := newAdminResult(textCol("name"), intCol("max_user_connections"), intCol("current_connections"),
		intCol("max_user_client_connections"), intCol("current_client_connections"))
	seen := make(map[string]bool)
	for name := range cfg.Users {
		seen[name] = true
	}
	for _, name := range srv.clientsIn.users() {
		seen[name] = true
	}
	backends := make(map[string]int)
	srv.mu.Lock()
	for name, lim := range srv.userLimiters {
		seen[name] = true
		_, backends[name] = lim.Usage()
	}
	srv.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(seen)) {
		maxBackends, maxClients := cfg.UserLimits(name)
		clients := srv.clientsIn.ofUser(name)
		r.add(name, maxBackends, backends[name], maxClients, clients)
	}
	return r
}

func (s *session) showPools() *adminResult {
	srv := s.srv
	r := newAdminResult(textCol("database"), textCol("user"), intCol("cl_active"), intCol("cl_waiting"),
		intCol("sv_active"), intCol("sv_idle"), intCol("sv_login"), intCol("maxwait"), intCol("maxwait_us"),
		textCol("pool_mode"), intCol("pool_size"))
	snap := srv.snapshotSessions(s)
	type counts struct {
		clients, waiting int
		maxWait          time.Duration
	}
	now := time.Now()
	byPool := make(map[poolLabels]*counts)
	for _, ci := range snap.clients {
		if ci.admin || ci.pool == nil {
			continue
		}
		c := byPool[ci.labels]
		if c == nil {
			c = &counts{}
			byPool[ci.labels] = c
		}
		c.clients++
		if ci.state == "waiting" {
			c.waiting++
			c.maxWait = max(c.maxWait, now.Sub(ci.waitingSince))
		}
	}
	for _, p := range srv.sortedPools() {
		st := p.Stats()
		opts := p.Options()
		c := byPool[poolLabels{st.Database, st.User}]
		if c == nil {
			c = &counts{}
		}
		// Waits are known to the pool (every Acquire queued there, logins
		// included) and to the sessions that mark them: take the larger.
		waiting := max(st.Waiting, c.waiting)
		maxWait := max(st.MaxWait, c.maxWait)
		active := max(c.clients-c.waiting, 0)
		r.add(st.Database, st.User, active, waiting, st.Active, st.Idle, st.Opening,
			int64(maxWait/time.Second), int64((maxWait%time.Second)/time.Microsecond), opts.Pool.Mode, opts.Pool.Size)
	}
	return r
}

func (s *session) showClients() *adminResult {
	r := newAdminResult(textCol("user"), textCol("database"), textCol("state"), textCol("addr"), intCol("port"),
		textCol("local_addr"), intCol("local_port"), textCol("connect_time"), intCol("wait"), intCol("wait_us"),
		textCol("application_name"), intCol("queries"), intCol("transactions"), intCol("server_pid"))
	now := time.Now()
	for _, ci := range s.srv.snapshotSessions(s).clients {
		addr, port := hostPort(ci.remote)
		laddr, lport := hostPort(ci.local)
		var wait time.Duration
		if !ci.waitingSince.IsZero() {
			wait = now.Sub(ci.waitingSince)
		}
		var pid any
		if ci.serverPID != 0 {
			pid = ci.serverPID
		}
		r.add(ci.user, ci.database, ci.state, addr, port, laddr, lport, ci.connected,
			int64(wait/time.Second), int64((wait%time.Second)/time.Microsecond),
			ci.appName, ci.totals.queries, ci.totals.transactions, pid)
	}
	return r
}

func (s *session) showServers() *adminResult {
	r := newAdminResult(textCol("database"), textCol("user"), intCol("pid"), textCol("state"), textCol("connect_time"),
		intCol("age"), intCol("queries"), intCol("transactions"), intCol("memory_bytes"), textCol("memory_sampled_at"),
		textCol("retire_at"), intCol("retiring"))
	now := time.Now()
	for _, p := range s.srv.sortedPools() {
		db, user := p.Key()
		for _, b := range p.Backends() {
			var mem any
			if !b.MemoryAt.IsZero() {
				mem = b.MemoryBytes
			}
			retireAt := ""
			if !b.Deadline.IsZero() {
				retireAt = b.Deadline.UTC().Format(adminTimeLayout)
			}
			sampled := ""
			if !b.MemoryAt.IsZero() {
				sampled = b.MemoryAt.UTC().Format(adminTimeLayout)
			}
			r.add(db, user, b.PID, b.State(), b.Created, int64(now.Sub(b.Created)/time.Second),
				b.Queries, b.Transactions, mem, sampled, retireAt, b.RetireRequested)
		}
	}
	return r
}

// dbStats are one database's counters for SHOW STATS and its variants.
type dbStats struct {
	name                 string
	t                    sessionTotals
	waitCount, waitNanos int64
}

// derived values, in PgBouncer's units: times in microseconds, averages
// per second since the start except for times, which are per transaction,
// per query or per wait.
func (d *dbStats) xactUS() int64  { return d.t.xactNanos / int64(time.Microsecond) }
func (d *dbStats) queryUS() int64 { return d.t.queryNanos / int64(time.Microsecond) }
func (d *dbStats) waitUS() int64  { return d.waitNanos / int64(time.Microsecond) }
func (d *dbStats) avgXactUS() int64 {
	return perUnit(d.xactUS(), d.t.transactions)
}
func (d *dbStats) avgQueryUS() int64 { return perUnit(d.queryUS(), d.t.queries) }
func (d *dbStats) avgWaitUS() int64  { return perUnit(d.waitUS(), d.waitCount) }

func perUnit(total, n int64) int64 {
	if n <= 0 {
		return 0
	}
	return total / n
}

// databaseStats gathers the counters per database (configured ones, and
// the fallback's in use), sorted by name, and the seconds since the start.
func (s *session) databaseStats() ([]*dbStats, int64) {
	srv := s.srv
	by := make(map[string]*dbStats)
	get := func(db string) *dbStats {
		d := by[db]
		if d == nil {
			d = &dbStats{name: db}
			by[db] = d
		}
		return d
	}
	for name := range srv.Config().Databases {
		if name != config.FallbackDatabase {
			get(name)
		}
	}
	for l, t := range srv.snapshotSessions(s).totals {
		get(l.database).t.add(t)
	}
	for l, w := range srv.waitTotals() {
		d := get(l.database)
		d.waitCount += w.count
		d.waitNanos += w.nanos
	}
	out := slices.SortedFunc(maps.Values(by), func(a, b *dbStats) int { return strings.Compare(a.name, b.name) })
	return out, max(int64(time.Since(srv.ops.started)/time.Second), 1)
}

// showStats is PgBouncer's SHOW STATS: totals, then averages.
func (s *session) showStats() *adminResult {
	r := newAdminResult(textCol("database"), intCol("total_xact_count"), intCol("total_query_count"),
		intCol("total_received"), intCol("total_sent"), intCol("total_xact_time"), intCol("total_query_time"),
		intCol("total_wait_time"), intCol("avg_xact_count"), intCol("avg_query_count"), intCol("avg_recv"),
		intCol("avg_sent"), intCol("avg_xact_time"), intCol("avg_query_time"), intCol("avg_wait_time"))
	stats, secs := s.databaseStats()
	for _, d := range stats {
		r.add(d.name, d.t.transactions, d.t.queries, d.t.received, d.t.sent, d.xactUS(), d.queryUS(), d.waitUS(),
			d.t.transactions/secs, d.t.queries/secs, d.t.received/secs, d.t.sent/secs,
			d.avgXactUS(), d.avgQueryUS(), d.avgWaitUS())
	}
	return r
}

// newStatsPartResult has the columns of SHOW STATS_TOTALS and
// STATS_AVERAGES.
func newStatsPartResult() *adminResult {
	return newAdminResult(textCol("database"), intCol("xact_count"), intCol("query_count"), intCol("bytes_received"),
		intCol("bytes_sent"), intCol("xact_time"), intCol("query_time"), intCol("wait_time"))
}

// showStatsTotals is SHOW STATS_TOTALS: SHOW STATS's totals only, named as
// PgBouncer names them there (monitoring exporters read it).
func (s *session) showStatsTotals() *adminResult {
	r := newStatsPartResult()
	stats, _ := s.databaseStats()
	for _, d := range stats {
		r.add(d.name, d.t.transactions, d.t.queries, d.t.received, d.t.sent, d.xactUS(), d.queryUS(), d.waitUS())
	}
	return r
}

// showStatsAverages is SHOW STATS_AVERAGES: SHOW STATS's averages only.
func (s *session) showStatsAverages() *adminResult {
	r := newStatsPartResult()
	stats, secs := s.databaseStats()
	for _, d := range stats {
		r.add(d.name, d.t.transactions/secs, d.t.queries/secs, d.t.received/secs, d.t.sent/secs,
			d.avgXactUS(), d.avgQueryUS(), d.avgWaitUS())
	}
	return r
}

func (s *session) showRetirements() *adminResult {
	r := newAdminResult(textCol("database"), textCol("user"), textCol("reason"), intCol("count"))
	for _, p := range s.srv.sortedPools() {
		st := p.Stats()
		reasons := make([]string, 0, len(st.Retired))
		for reason := range st.Retired {
			reasons = append(reasons, reason)
		}
		sort.Strings(reasons)
		for _, reason := range reasons {
			r.add(st.Database, st.User, reason, st.Retired[reason])
		}
	}
	return r
}

func (s *session) showLists() *adminResult {
	srv := s.srv
	r := newAdminResult(textCol("list"), intCol("items"))
	snap := srv.snapshotSessions(s)
	users := make(map[string]bool)
	var free, used, admins int
	for _, ci := range snap.clients {
		switch {
		case ci.admin:
			admins++
		case ci.state == "idle":
			free++
		default:
			used++
		}
	}
	pools := srv.poolList()
	var idle, active, opening int
	for _, p := range pools {
		st := p.Stats()
		users[st.User] = true
		idle += st.Idle
		active += st.Active
		opening += st.Opening
	}
	login := int(srv.clients.Load()) - len(snap.clients)
	r.add("databases", len(srv.Config().Databases))
	r.add("users", len(users))
	r.add("pools", len(pools))
	r.add("free_clients", free)
	r.add("used_clients", used)
	r.add("login_clients", max(login, 0))
	r.add("admin_clients", admins)
	r.add("free_servers", idle)
	r.add("used_servers", active)
	r.add("login_servers", opening)
	return r
}
