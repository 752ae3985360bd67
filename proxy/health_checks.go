package proxy

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/pool"
)

// The checks of the health advisor: each queries (or reads the pools),
// then evaluates the rows with a pure function that unit tests drive.

// serverChecks are the server-wide checks, run once per server and round.
func (r *healthRun) serverChecks() {
	hc := r.cfg.Health
	if rows, ok := r.query(checkConnections, connectionsQuery); ok {
		r.add(connectionItems(hc, parseConnectionRows(rows))...)
	}
	if hc.XIDAgeFraction > 0 {
		if rows, ok := r.query(checkXIDAge, xidAgeQuery); ok {
			r.add(xidAgeItems(hc, parseXIDRows(rows))...)
		}
	}
	if rows, ok := r.query(checkAutovacuum, autovacuumQuery); ok {
		workers, maxWorkers := parseAutovacuumRows(rows)
		var blocked []blockedRow
		if len(workers) > 0 {
			if brows, ok := r.query(checkVacuumBlocking, blockedByVacuumQuery); ok {
				blocked = parseBlockedRows(brows)
			}
		}
		r.add(vacuumItems(workers, maxWorkers, blocked)...)
	}
	if hostIsLocal(r.db.Host) {
		r.add(hostItems(r.conn.pc.PID(), procFS("/proc"))...)
	}
}

// databaseChecks are the checks of the server database the pgrecycle
// database points at, run once per server database and round.
func (r *healthRun) databaseChecks() {
	hc := r.cfg.Health
	if hc.DeadTuples > 0 {
		if rows, ok := r.query(checkDeadTuples, deadTuplesQuery(hc.DeadTuples/10)); ok {
			r.add(deadTupleItems(hc, parseDeadTupleRows(rows))...)
		}
	}
	if hc.IdleInTransaction > 0 || hc.BypassConnections > 0 {
		before := r.srv.healthPoolPIDs()
		if rows, ok := r.query(checkIdleInTransaction, activityQuery); ok {
			ours := r.srv.healthPoolPIDs()
			for pid := range before {
				ours[pid] = true
			}
			acts := parseActivityRows(rows)
			if hc.IdleInTransaction > 0 {
				r.add(idleInTransactionItems(hc, r.db.DBName, acts, ours))
			}
			if hc.BypassConnections > 0 {
				r.add(bypassItems(hc, r.db.DBName, acts, ours))
			}
		}
	}
}

// --- 1. Backend memory ----------------------------------------------------

// memoryItems reads the pools' last memory samples: the largest backend
// against max_memory and the pool's total against pool.size × max_memory,
// for pools with max_memory set (only they are sampled).
func memoryItems(hc config.Health, pools []*pool.Pool) []healthItem {
	if hc.MemoryFraction <= 0 {
		return nil
	}
	var out []healthItem
	for _, p := range pools {
		opts := p.Options()
		var samples []int64
		open := 0
		for _, b := range p.Backends() {
			open++
			if !b.MemoryAt.IsZero() {
				samples = append(samples, b.MemoryBytes)
			}
		}
		out = append(out, evalMemory(hc, opts.User, int64(opts.Recycle.MaxMemory), opts.Pool.Size, open, samples)...)
	}
	return out
}

func evalMemory(hc config.Health, user string, maxMemory int64, size, open int, samples []int64) []healthItem {
	if maxMemory <= 0 || len(samples) == 0 {
		return nil
	}
	var largest, total int64
	for _, n := range samples {
		largest = max(largest, n)
		total += n
	}
	budget := float64(size) * float64(maxMemory)
	lt := hc.MemoryFraction * float64(maxMemory)
	tt := hc.MemoryFraction * budget
	return []healthItem{{
		check: checkMemory, object: user + ": largest backend", unit: unitBytes,
		value: float64(largest), threshold: lt, hasThreshold: true, crossed: float64(largest) >= lt,
		advice: fmt.Sprintf("the largest sampled backend of the pool holds %s, %s of max_memory (%s): backends retire when they pass it (SHOW RETIREMENTS, reason memory). "+
			"If that happens often, recycle them earlier by work (recycle.max_queries) or age (recycle.max_lifetime), or raise max_memory if the host has room",
			formatBytes(float64(largest)), percent(float64(largest), float64(maxMemory)), formatBytes(float64(maxMemory))),
	}, {
		check: checkMemory, object: user + ": total", unit: unitBytes,
		value: float64(total), threshold: tt, hasThreshold: true, crossed: float64(total) >= tt,
		advice: fmt.Sprintf("the pool's backends hold %s together (%d sampled of %d open), %s of pool.size × max_memory (%d × %s = %s): "+
			"make sure the host's memory covers every pool's budget plus shared_buffers, or lower pool.size or max_memory",
			formatBytes(float64(total)), len(samples), open, percent(float64(total), budget), size, formatBytes(float64(maxMemory)), formatBytes(budget)),
	}}
}

// --- 2. Generic plans -----------------------------------------------------

// partitionedQuery lists partitioned tables (the top of each tree) with
// their number of leaf partitions (PostgreSQL 12+).
const partitionedQuery = `SELECT n.nspname, c.relname,
  (SELECT count(*) FROM pg_partition_tree(c.oid) t WHERE t.isleaf)::int8
FROM pg_partitioned_table p
JOIN pg_class c ON c.oid = p.partrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT c.relispartition`

// preparedQuery runs on an idle pooled backend: its parameterised
// statements that ran generic plans (PostgreSQL 14+), with the backend's
// plan_cache_mode on every row (one row with NULLs when there are none).
const preparedQuery = `SELECT current_setting('plan_cache_mode'), s.name, s.generic_plans, s.custom_plans, left(s.statement, 2000)
FROM (SELECT 1) AS one
LEFT JOIN pg_prepared_statements s ON s.generic_plans > 0 AND cardinality(s.parameter_types) > 0
ORDER BY s.generic_plans DESC NULLS LAST LIMIT 100`

type partitionedTable struct {
	schema, name string
	partitions   int64
}

type preparedRow struct {
	planCacheMode string
	name          string
	generic       int64
	custom        int64
	statement     string
}

// genericPlanChecks looks for statements on partitioned tables that ran
// generic plans, on one idle backend per pool whose plan_cache_mode is not
// force_custom_plan.
func (r *healthRun) genericPlanChecks() {
	hc := r.cfg.Health
	if hc.GenericPlanPartitions <= 0 {
		clear(r.d.generic)
		return
	}
	var candidates []*pool.Pool
	for _, p := range r.pools {
		if !strings.EqualFold(p.Options().Params["plan_cache_mode"], "force_custom_plan") {
			candidates = append(candidates, p)
		}
	}
	var tables []partitionedTable
	if len(candidates) > 0 {
		if rows, ok := r.query(checkGenericPlans, partitionedQuery); ok {
			for _, t := range parsePartitionedRows(rows) {
				if t.partitions >= int64(hc.GenericPlanPartitions) {
					tables = append(tables, t)
				}
			}
		}
	}
	if len(tables) == 0 {
		clear(r.d.generic)
		return
	}
	if !r.d.unavailable[checkGenericPlans+"/prepared"] && !r.srv.Draining() {
		for _, p := range candidates {
			rows, sampled, err := sampleIdleBackend(p, preparedQuery, hc.QueryTimeout.D())
			if err != nil {
				// An undefined column or relation: PostgreSQL before 14.
				if qe := (*pool.QueryError)(nil); errors.As(err, &qe) && (qe.Code == "42703" || qe.Code == "42P01") {
					r.d.unavailable[checkGenericPlans+"/prepared"] = true
					r.srv.log.Info("health: generic plan counts unavailable (pg_prepared_statements.generic_plans needs PostgreSQL 14)",
						zap.String("database", r.db.Name), zap.Error(err))
					break
				}
				continue
			}
			if !sampled {
				continue
			}
			for _, it := range genericPlanItems(r.db.Name, p.Options().User, tables, parsePreparedRows(rows)) {
				r.d.generic[it.key()] = genericSeen{item: it, round: r.d.round}
			}
		}
	}
	for k, g := range r.d.generic {
		if r.d.round-g.round >= genericKeepRounds {
			delete(r.d.generic, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.d.generic)) {
		r.add(r.d.generic[k].item)
	}
}

// genericPlanItems matches the statements that ran generic plans to the
// partitioned tables they name: one item per (pool user, table).
func genericPlanItems(database, user string, tables []partitionedTable, rows []preparedRow) []healthItem {
	type acc struct {
		t                partitionedTable
		generic, custom  int64
		statements       int
		example, setting string
	}
	by := map[string]*acc{}
	for _, row := range rows {
		if row.generic <= 0 || strings.EqualFold(row.planCacheMode, "force_custom_plan") {
			continue
		}
		for _, t := range tables {
			if !mentionsTable(row.statement, t.schema, t.name) {
				continue
			}
			k := t.schema + "." + t.name
			a := by[k]
			if a == nil {
				a = &acc{t: t, example: row.statement, setting: row.planCacheMode}
				by[k] = a
			}
			a.generic += row.generic
			a.custom += row.custom
			a.statements++
		}
	}
	var out []healthItem
	for _, k := range slices.Sorted(maps.Keys(by)) {
		a := by[k]
		example := strings.Join(strings.Fields(a.example), " ")
		if len(example) > 120 {
			example = example[:120] + "…"
		}
		out = append(out, healthItem{
			check: checkGenericPlans, object: user + ": " + k, unit: unitCount,
			value: float64(a.generic), threshold: 1, hasThreshold: true, crossed: true,
			advice: fmt.Sprintf("%d prepared statement(s) on %s (%d partitions) ran %d generic plan(s) (and %d custom) on a pooled backend with plan_cache_mode = %s: "+
				"a generic plan covers every partition, costs memory in every backend and is often slower. "+
				"Set plan_cache_mode = \"force_custom_plan\" in [parameters] or [databases.%s.parameters]; pgrecycle sends it to new backends, RECYCLE %s renews the others. Statement: %s",
				a.statements, k, a.t.partitions, a.generic, a.custom, a.setting, database, database, example),
		})
	}
	return out
}

// mentionsTable reports whether a statement names a table, as a whole
// identifier (case-insensitively, quoted or not).
func mentionsTable(statement, schema, name string) bool {
	s := strings.ToLower(statement)
	n := strings.ToLower(name)
	if n == "" {
		return false
	}
	isIdent := func(c byte) bool {
		return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c >= 0x80
	}
	for i := 0; ; {
		j := strings.Index(s[i:], n)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(n)
		if (j == 0 || !isIdent(s[j-1])) && (end == len(s) || !isIdent(s[end])) {
			return true
		}
		i = j + 1
	}
}

// sampleIdleBackend runs query on an idle backend of p, only when one is
// idle and no client waits: a client never queues behind the advisor. It
// reports whether a backend was sampled. The backend goes back to the pool
// at once; a failure breaks it (the pool replaces it), a server error
// (*pool.QueryError) does not.
func sampleIdleBackend(p *pool.Pool, query string, timeout time.Duration) ([][][]byte, bool, error) {
	if st := p.Stats(); st.Idle == 0 || st.Waiting > 0 {
		return nil, false, nil
	}
	b := p.TryAcquire() // an idle backend or nothing; never queues, never opens one
	if b == nil {
		return nil, false, nil
	}
	var rows [][][]byte
	_ = b.Conn.SetDeadline(time.Now().Add(timeout))
	status, err := pool.SimpleQuery(b, query, func(body []byte) {
		if row, ok := decodeDataRow(body); ok {
			rows = append(rows, row)
		}
	})
	_ = b.Conn.SetDeadline(time.Time{})
	if err == nil && status != 'I' {
		b.Broken = true
		err = errors.New("health query left a transaction open")
	}
	p.Release(b)
	if err != nil {
		return nil, false, err
	}
	return rows, true, nil
}

// decodeDataRow copies the values of a text-format DataRow body.
func decodeDataRow(body []byte) ([][]byte, bool) {
	if len(body) < 2 {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	row := make([][]byte, n)
	for i := range n {
		if len(body) < 4 {
			return nil, false
		}
		l := int32(binary.BigEndian.Uint32(body))
		body = body[4:]
		if l < 0 {
			continue
		}
		if int(l) > len(body) {
			return nil, false
		}
		row[i] = append(make([]byte, 0, l), body[:l]...)
		body = body[l:]
	}
	return row, true
}

func parsePartitionedRows(rows [][][]byte) []partitionedTable {
	var out []partitionedTable
	for _, r := range rows {
		if len(r) >= 3 {
			out = append(out, partitionedTable{schema: colStr(r[0]), name: colStr(r[1]), partitions: colInt(r[2])})
		}
	}
	return out
}

func parsePreparedRows(rows [][][]byte) []preparedRow {
	var out []preparedRow
	for _, r := range rows {
		if len(r) < 5 || r[1] == nil {
			continue
		}
		out = append(out, preparedRow{planCacheMode: colStr(r[0]), name: colStr(r[1]), generic: colInt(r[2]),
			custom: colInt(r[3]), statement: colStr(r[4])})
	}
	return out
}

// --- 3. Wraparound and vacuum --------------------------------------------

// xidAgeQuery lists the oldest databases by age(datfrozenxid).
const xidAgeQuery = `SELECT datname, age(datfrozenxid)::int8, current_setting('autovacuum_freeze_max_age')::int8
FROM pg_database WHERE datallowconn ORDER BY 2 DESC LIMIT 10`

type xidRow struct {
	database       string
	age, freezeMax int64
}

func parseXIDRows(rows [][][]byte) []xidRow {
	var out []xidRow
	for _, r := range rows {
		if len(r) >= 3 {
			out = append(out, xidRow{database: colStr(r[0]), age: colInt(r[1]), freezeMax: colInt(r[2])})
		}
	}
	return out
}

// wraparoundLimit is where PostgreSQL stops assigning transaction IDs.
const wraparoundLimit = 1 << 31

func xidAgeItems(hc config.Health, rows []xidRow) []healthItem {
	var out []healthItem
	for _, r := range rows {
		if r.freezeMax <= 0 {
			continue
		}
		t := hc.XIDAgeFraction * float64(r.freezeMax)
		out = append(out, healthItem{
			check: checkXIDAge, object: r.database, unit: unitXIDs,
			value: float64(r.age), threshold: t, hasThreshold: true, crossed: float64(r.age) >= t,
			advice: fmt.Sprintf("age(datfrozenxid) of database %s is %d transactions, %s of autovacuum_freeze_max_age (%d) and %s of the wraparound limit (2^31): "+
				"past autovacuum_freeze_max_age, anti-wraparound autovacuums start on its oldest tables, and they don't yield to locks. "+
				"Freeze ahead at a quiet time: VACUUM (FREEZE) the tables with the oldest age(relfrozenxid); look for long transactions, prepared transactions and replication slots that hold the horizon back",
				r.database, r.age, percent(float64(r.age), float64(r.freezeMax)), r.freezeMax, percent(float64(r.age), wraparoundLimit)),
		})
	}
	return out
}

// deadTuplesQuery lists the tables of the current database with the most
// dead tuples (at least min).
func deadTuplesQuery(min int64) string {
	return `SELECT s.schemaname, s.relname, s.n_dead_tup, s.n_live_tup,
  extract(epoch FROM now() - greatest(s.last_autovacuum, s.last_vacuum))::float8,
  EXISTS (SELECT 1 FROM unnest(c.reloptions) o WHERE o ~* '^autovacuum_enabled=(false|off|no|0)$')
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.n_dead_tup >= ` + strconv.FormatInt(max(min, 1), 10) + `
ORDER BY s.n_dead_tup DESC LIMIT 5`
}

type deadTupleRow struct {
	table         string
	dead, live    int64
	sinceVacuum   float64 // seconds; < 0: never vacuumed
	autovacuumOff bool
}

func parseDeadTupleRows(rows [][][]byte) []deadTupleRow {
	var out []deadTupleRow
	for _, r := range rows {
		if len(r) < 6 {
			continue
		}
		since := -1.0
		if r[4] != nil {
			since = colFloat(r[4])
		}
		out = append(out, deadTupleRow{table: colStr(r[0]) + "." + colStr(r[1]), dead: colInt(r[2]), live: colInt(r[3]),
			sinceVacuum: since, autovacuumOff: colBool(r[5])})
	}
	return out
}

func deadTupleItems(hc config.Health, rows []deadTupleRow) []healthItem {
	var out []healthItem
	for _, r := range rows {
		share := 1.0
		if all := r.dead + r.live; all > 0 {
			share = float64(r.dead) / float64(all)
		}
		crossed := r.dead >= hc.DeadTuples && share >= hc.DeadTuplesFraction
		last := "never vacuumed"
		if r.sinceVacuum >= 0 {
			last = "last vacuumed " + formatHealthValue(r.sinceVacuum, unitSeconds) + " ago"
		}
		extra := ""
		if r.autovacuumOff {
			extra = "; autovacuum is disabled on it (autovacuum_enabled = false): enable it again (ALTER TABLE ... RESET (autovacuum_enabled))"
		}
		out = append(out, healthItem{
			check: checkDeadTuples, object: r.table, unit: unitCount,
			value: float64(r.dead), threshold: float64(hc.DeadTuples), hasThreshold: true, crossed: crossed,
			advice: fmt.Sprintf("%d dead tuples, %.0f%% of the table, %s%s. Run VACUUM (ANALYZE) on it; if autovacuum can't keep up, lower the table's autovacuum_vacuum_scale_factor or raise autovacuum_vacuum_cost_limit; "+
				"long transactions (idle_in_transaction) keep vacuum from removing dead tuples; tables emptied by DELETE are better dropped (partitions) or truncated",
				r.dead, 100*share, last, extra),
		})
	}
	return out
}

// autovacuumQuery lists the running autovacuum workers.
const autovacuumQuery = `SELECT a.pid, coalesce(a.datname, ''), coalesce(a.query, ''),
  coalesce(extract(epoch FROM now() - a.xact_start), 0)::float8, coalesce(p.phase, ''),
  current_setting('autovacuum_max_workers')::int8
FROM (SELECT 1) AS one
LEFT JOIN pg_stat_activity a ON a.backend_type = 'autovacuum worker'
LEFT JOIN pg_stat_progress_vacuum p ON p.pid = a.pid`

// blockedByVacuumQuery lists sessions waiting for a lock an autovacuum
// worker holds. pg_blocking_pids is called only for sessions waiting on a
// lock, and only when a worker runs.
const blockedByVacuumQuery = `SELECT w.pid, b.pid, coalesce(extract(epoch FROM now() - w.query_start), 0)::float8
FROM pg_stat_activity w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
JOIN pg_stat_activity b ON b.pid = bp.pid
WHERE w.wait_event_type = 'Lock' AND b.backend_type = 'autovacuum worker'`

type vacuumWorker struct {
	pid        int64
	database   string
	table      string // from the query text: "autovacuum: VACUUM schema.table ..."
	wraparound bool
	seconds    float64
	phase      string
}

type blockedRow struct {
	pid, blocker int64
	seconds      float64
}

func parseAutovacuumRows(rows [][][]byte) (workers []vacuumWorker, maxWorkers int64) {
	for _, r := range rows {
		if len(r) < 6 {
			continue
		}
		maxWorkers = colInt(r[5])
		if r[0] == nil {
			continue
		}
		w := vacuumWorker{pid: colInt(r[0]), database: colStr(r[1]), seconds: colFloat(r[3]), phase: colStr(r[4])}
		w.table, w.wraparound = parseAutovacuumQuery(colStr(r[2]))
		if w.table == "" {
			w.table = "pid " + strconv.FormatInt(w.pid, 10)
		}
		workers = append(workers, w)
	}
	return workers, maxWorkers
}

// parseAutovacuumQuery reads the table of an autovacuum worker's query
// text, such as "autovacuum: VACUUM ANALYZE public.t (to prevent
// wraparound)".
func parseAutovacuumQuery(q string) (table string, wraparound bool) {
	rest, ok := strings.CutPrefix(q, "autovacuum: ")
	if !ok {
		return "", false
	}
	rest, wraparound = strings.CutSuffix(rest, " (to prevent wraparound)")
	f := strings.Fields(rest)
	if len(f) < 2 {
		return "", wraparound
	}
	return f[len(f)-1], wraparound
}

func parseBlockedRows(rows [][][]byte) []blockedRow {
	var out []blockedRow
	for _, r := range rows {
		if len(r) >= 3 {
			out = append(out, blockedRow{pid: colInt(r[0]), blocker: colInt(r[1]), seconds: colFloat(r[2])})
		}
	}
	return out
}

func vacuumItems(workers []vacuumWorker, maxWorkers int64, blocked []blockedRow) []healthItem {
	var out []healthItem
	if maxWorkers > 0 {
		out = append(out, healthItem{
			check: checkAutovacuum, object: "workers", unit: unitCount,
			value: float64(len(workers)), threshold: float64(maxWorkers), hasThreshold: true,
			crossed: int64(len(workers)) >= maxWorkers,
			advice: fmt.Sprintf("all %d autovacuum workers are busy: vacuum may be falling behind (see dead_tuples and xid_age). "+
				"Raise autovacuum_vacuum_cost_limit (or lower autovacuum_vacuum_cost_delay) so each worker finishes sooner, or raise autovacuum_max_workers", maxWorkers),
		})
	}
	for _, w := range workers {
		if !w.wraparound {
			continue
		}
		obj := w.table
		if w.database != "" {
			obj = w.database + ": " + w.table
		}
		out = append(out, healthItem{
			check: checkWraparoundVacuum, object: obj, unit: unitSeconds,
			value: w.seconds, threshold: 0, hasThreshold: true, crossed: true,
			advice: fmt.Sprintf("an anti-wraparound autovacuum (pid %d, phase %q) has run for %s on %s: unlike a regular one it does not give way to locks, so DDL and LOCK TABLE on the table wait behind it, and every query behind them. "+
				"Let it finish (cancelled, it starts again). Next time freeze ahead: VACUUM (FREEZE) large, rarely updated tables at a quiet time before their age reaches autovacuum_freeze_max_age",
				w.pid, w.phase, formatHealthValue(w.seconds, unitSeconds), w.table),
		})
	}
	byWorker := map[int64][]blockedRow{}
	for _, b := range blocked {
		byWorker[b.blocker] = append(byWorker[b.blocker], b)
	}
	for _, w := range workers {
		bs := byWorker[w.pid]
		if len(bs) == 0 {
			continue
		}
		longest := 0.0
		pids := make([]string, 0, len(bs))
		for _, b := range bs {
			longest = max(longest, b.seconds)
			if len(pids) < 5 {
				pids = append(pids, strconv.FormatInt(b.pid, 10))
			}
		}
		kind := "a regular autovacuum yields after deadlock_timeout, so this should pass"
		if w.wraparound {
			kind = "this is an anti-wraparound autovacuum, which does not yield: the sessions wait until it ends; avoid DDL and LOCK TABLE on the table meanwhile"
		}
		obj := w.table
		if w.database != "" {
			obj = w.database + ": " + w.table
		}
		out = append(out, healthItem{
			check: checkVacuumBlocking, object: obj, unit: unitCount,
			value: float64(len(bs)), threshold: 1, hasThreshold: true, crossed: true,
			advice: fmt.Sprintf("%d session(s) wait for locks held by the autovacuum of %s (pid %d), the longest for %s (pids %s): %s",
				len(bs), w.table, w.pid, formatHealthValue(longest, unitSeconds), strings.Join(pids, ", "), kind),
		})
	}
	return out
}

// --- 4. Connections -------------------------------------------------------

// connectionsQuery counts client backends by state, with the limits.
const connectionsQuery = `SELECT coalesce(state, 'unknown'), count(*)::int8,
  current_setting('max_connections')::int8, current_setting('superuser_reserved_connections')::int8
FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1 ORDER BY 1`

type connectionRows struct {
	byState            map[string]int64
	maxConns, reserved int64
}

func parseConnectionRows(rows [][][]byte) connectionRows {
	c := connectionRows{byState: map[string]int64{}}
	for _, r := range rows {
		if len(r) >= 4 {
			c.byState[colStr(r[0])] += colInt(r[1])
			c.maxConns, c.reserved = colInt(r[2]), colInt(r[3])
		}
	}
	return c
}

func connectionItems(hc config.Health, c connectionRows) []healthItem {
	if c.maxConns <= 0 {
		return nil
	}
	var total int64
	states := slices.Sorted(maps.Keys(c.byState))
	parts := make([]string, 0, len(states))
	var out []healthItem
	for _, st := range states {
		n := c.byState[st]
		total += n
		parts = append(parts, fmt.Sprintf("%s %d", st, n))
		out = append(out, healthItem{check: checkConnections, object: st, unit: unitCount, value: float64(n)})
	}
	usable := float64(max(c.maxConns-c.reserved, 1))
	item := healthItem{
		check: checkConnections, object: "total", unit: unitCount, value: float64(total),
		advice: fmt.Sprintf("%d client backends (%s) of max_connections %d (%d reserved for superusers): new connections will soon be refused. "+
			"Lower pool sizes (pool.size, max_db_connections), send the applications that connect directly through pgrecycle (see bypass), "+
			"or raise max_connections (each backend costs memory)", total, strings.Join(parts, ", "), c.maxConns, c.reserved),
	}
	if hc.ConnectionsFraction > 0 {
		item.threshold = hc.ConnectionsFraction * usable
		item.hasThreshold = true
		item.crossed = float64(total) >= item.threshold
	}
	return append([]healthItem{item}, out...)
}

// activityQuery lists the client backends of the current database.
const activityQuery = `SELECT pid, coalesce(usename, ''), coalesce(application_name, ''),
  coalesce(host(client_addr), 'local'), coalesce(state, ''),
  coalesce(extract(epoch FROM now() - state_change), 0)::float8,
  coalesce(extract(epoch FROM now() - backend_start), 0)::float8
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`

type activityRow struct {
	pid                          int64
	user, app, addr, state       string
	stateSeconds, backendSeconds float64
}

func parseActivityRows(rows [][][]byte) []activityRow {
	var out []activityRow
	for _, r := range rows {
		if len(r) >= 7 {
			out = append(out, activityRow{pid: colInt(r[0]), user: colStr(r[1]), app: colStr(r[2]), addr: colStr(r[3]),
				state: colStr(r[4]), stateSeconds: colFloat(r[5]), backendSeconds: colFloat(r[6])})
		}
	}
	return out
}

func idleInTransactionItems(hc config.Health, dbname string, acts []activityRow, ours map[int64]bool) healthItem {
	limit := hc.IdleInTransaction.D().Seconds()
	var old []activityRow
	oldest := 0.0
	for _, a := range acts {
		if !strings.HasPrefix(a.state, "idle in transaction") {
			continue
		}
		oldest = max(oldest, a.stateSeconds)
		if a.stateSeconds >= limit {
			old = append(old, a)
		}
	}
	slices.SortFunc(old, func(a, b activityRow) int { return cmp.Compare(b.stateSeconds, a.stateSeconds) })
	var desc []string
	through := false
	for i, a := range old {
		if i == 3 {
			desc = append(desc, fmt.Sprintf("and %d more", len(old)-3))
			break
		}
		via := "connected directly"
		if ours[a.pid] {
			via = "through pgrecycle"
			through = true
		}
		desc = append(desc, fmt.Sprintf("pid %d (user %s, application %q, from %s, %s) for %s", a.pid, a.user, a.app, a.addr, via,
			formatHealthValue(a.stateSeconds, unitSeconds)))
	}
	fix := "set idle_in_transaction_session_timeout for the role or database"
	if through {
		fix = "set pool.idle_transaction_timeout for clients through pgrecycle and idle_in_transaction_session_timeout for the others"
	}
	return healthItem{
		check: checkIdleInTransaction, object: dbname, unit: unitSeconds,
		value: oldest, threshold: limit, hasThreshold: true, crossed: len(old) > 0,
		advice: fmt.Sprintf("%d session(s) idle in a transaction for longer than %s: %s. They hold their locks and keep vacuum from removing dead tuples. "+
			"Fix the application (a missing COMMIT or ROLLBACK); %s; end one now with SELECT pg_terminate_backend(pid)",
			len(old), formatHealthValue(limit, unitSeconds), strings.Join(desc, "; "), fix),
	}
}

// bypassGrace leaves out backends younger than this: a pool's backend
// being opened is in pg_stat_activity before the pool lists it.
const bypassGrace = 2 * time.Second

func bypassItems(hc config.Health, dbname string, acts []activityRow, ours map[int64]bool) healthItem {
	sources := map[string]int{}
	n := 0
	for _, a := range acts {
		if ours[a.pid] || a.app == healthAppName || a.app == authQueryAppName || a.backendSeconds < bypassGrace.Seconds() {
			continue
		}
		n++
		sources[fmt.Sprintf("user %s, application %q, from %s", a.user, a.app, a.addr)]++
	}
	keys := slices.SortedFunc(maps.Keys(sources), func(a, b string) int {
		if c := cmp.Compare(sources[b], sources[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	var desc []string
	for i, k := range keys {
		if i == 5 {
			desc = append(desc, fmt.Sprintf("and %d more sources", len(keys)-5))
			break
		}
		desc = append(desc, fmt.Sprintf("%s ×%d", k, sources[k]))
	}
	t := float64(hc.BypassConnections)
	return healthItem{
		check: checkBypass, object: dbname, unit: unitCount,
		value: float64(n), threshold: t, hasThreshold: true, crossed: float64(n) >= t,
		advice: fmt.Sprintf("%d client backend(s) of database %s don't come through this pgrecycle: %s. They escape pool limits and recycling; "+
			"point those applications at pgrecycle, or bound them (ALTER ROLE ... CONNECTION LIMIT). Several pgrecycle processes in front of one database count each other's backends: raise health.bypass_connections then",
			n, dbname, strings.Join(desc, "; ")),
	}
}

// healthPoolPIDs returns the pids of every pool's open backends.
func (s *Server) healthPoolPIDs() map[int64]bool {
	out := make(map[int64]bool)
	for _, p := range s.poolList() {
		for _, b := range p.Backends() {
			out[int64(b.PID)] = true
		}
	}
	return out
}
