package proxy

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/proxy/auth"
)

func findItem(t *testing.T, items []healthItem, check, object string) healthItem {
	t.Helper()
	for _, it := range items {
		if it.check == check && it.object == object {
			return it
		}
	}
	t.Fatalf("no item %s/%s in %+v", check, object, items)
	return healthItem{}
}

func TestHealthMemory(t *testing.T) {
	hc := config.DefaultHealth()
	hc.MemoryFraction = 0.5
	if got := evalMemory(hc, "u", 0, 4, 2, []int64{1 << 20}); got != nil {
		t.Fatalf("max_memory off: %+v", got)
	}
	if got := evalMemory(hc, "u", 4<<20, 4, 2, nil); got != nil {
		t.Fatalf("no samples: %+v", got)
	}
	items := evalMemory(hc, "u", 4<<20, 4, 2, []int64{1 << 20, 3 << 20})
	largest := findItem(t, items, checkMemory, "u: largest backend")
	if largest.value != 3<<20 || largest.threshold != 2<<20 || !largest.crossed {
		t.Errorf("largest = %+v", largest)
	}
	total := findItem(t, items, checkMemory, "u: total")
	if total.value != 4<<20 || total.threshold != 8<<20 || total.crossed {
		t.Errorf("total = %+v", total)
	}
	if !strings.Contains(total.advice, "2 sampled of 2 open") || !strings.Contains(total.advice, "4 × 4.0MB = 16.0MB") {
		t.Errorf("total advice: %s", total.advice)
	}
}

func TestMentionsTable(t *testing.T) {
	tests := []struct {
		stmt, schema, name string
		want               bool
	}{
		{"SELECT * FROM parts WHERE v = $1", "public", "parts", true},
		{"select * from public.PARTS where v = $1", "public", "parts", true},
		{`SELECT * FROM "public"."parts"`, "public", "parts", true},
		{"SELECT * FROM parts_archive WHERE v = $1", "public", "parts", false},
		{"SELECT * FROM old_parts", "public", "parts", false},
		{"SELECT parts2 FROM x JOIN parts ON true", "public", "parts", true},
		{"SELECT 1", "public", "parts", false},
		{"SELECT * FROM parts", "public", "", false},
	}
	for _, tt := range tests {
		if got := mentionsTable(tt.stmt, tt.schema, tt.name); got != tt.want {
			t.Errorf("mentionsTable(%q, %q) = %v, want %v", tt.stmt, tt.name, got, tt.want)
		}
	}
}

func TestHealthGenericPlans(t *testing.T) {
	tables := []partitionedTable{{"public", "events", 64}, {"public", "logs", 12}}
	rows := []preparedRow{
		{planCacheMode: "auto", name: "s1", generic: 3, custom: 5, statement: "SELECT * FROM events WHERE v = $1"},
		{planCacheMode: "auto", name: "s2", generic: 2, custom: 5, statement: "SELECT * FROM events WHERE w = $1"},
		{planCacheMode: "auto", name: "s3", generic: 4, custom: 5, statement: "SELECT * FROM other WHERE v = $1"},
		{planCacheMode: "force_custom_plan", name: "s4", generic: 9, statement: "SELECT * FROM logs WHERE v = $1"},
	}
	items := genericPlanItems("app", "alice", tables, rows)
	if len(items) != 1 {
		t.Fatalf("items = %+v", items)
	}
	it := items[0]
	if it.object != "alice: public.events" || it.value != 5 || !it.crossed {
		t.Errorf("item = %+v", it)
	}
	for _, want := range []string{"2 prepared statement(s)", "64 partitions", "plan_cache_mode = auto", "[databases.app.parameters]", "RECYCLE app"} {
		if !strings.Contains(it.advice, want) {
			t.Errorf("advice lacks %q: %s", want, it.advice)
		}
	}
}

func TestParseAutovacuumQuery(t *testing.T) {
	tests := []struct {
		q     string
		table string
		wrap  bool
	}{
		{"autovacuum: VACUUM ANALYZE public.t (to prevent wraparound)", "public.t", true},
		{"autovacuum: VACUUM public.t (to prevent wraparound)", "public.t", true},
		{"autovacuum: VACUUM public.t", "public.t", false},
		{"autovacuum: ANALYZE public.t", "public.t", false},
		{"<insufficient privilege>", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		table, wrap := parseAutovacuumQuery(tt.q)
		if table != tt.table || wrap != tt.wrap {
			t.Errorf("parseAutovacuumQuery(%q) = %q, %v; want %q, %v", tt.q, table, wrap, tt.table, tt.wrap)
		}
	}
}

// row builds a text-format result row; "\x00" stands for NULL.
func row(vals ...string) [][]byte {
	out := make([][]byte, len(vals))
	for i, v := range vals {
		if v != "\x00" {
			out[i] = []byte(v)
		}
	}
	return out
}

func TestHealthVacuum(t *testing.T) {
	workers, max := parseAutovacuumRows([][][]byte{
		row("101", "app", "autovacuum: VACUUM public.big (to prevent wraparound)", "620.5", "scanning heap", "3"),
		row("102", "app", "autovacuum: VACUUM ANALYZE public.small", "3", "vacuuming indexes", "3"),
		row("103", "other", "<insufficient privilege>", "1", "", "3"),
	})
	if max != 3 || len(workers) != 3 || workers[2].table != "pid 103" {
		t.Fatalf("workers = %+v, max %d", workers, max)
	}
	if w, m := parseAutovacuumRows([][][]byte{row("\x00", "\x00", "\x00", "\x00", "\x00", "5")}); len(w) != 0 || m != 5 {
		t.Fatalf("no workers: %+v %d", w, m)
	}
	blocked := []blockedRow{{pid: 7, blocker: 101, seconds: 30}, {pid: 8, blocker: 101, seconds: 12}, {pid: 9, blocker: 102, seconds: 1}}
	items := vacuumItems(workers, max, blocked)
	all := findItem(t, items, checkAutovacuum, "workers")
	if all.value != 3 || all.threshold != 3 || !all.crossed {
		t.Errorf("workers item = %+v", all)
	}
	wrap := findItem(t, items, checkWraparoundVacuum, "app: public.big")
	if !wrap.crossed || wrap.value != 620.5 || !strings.Contains(wrap.advice, "10m21s") {
		t.Errorf("wraparound item = %+v", wrap)
	}
	b := findItem(t, items, checkVacuumBlocking, "app: public.big")
	if b.value != 2 || !strings.Contains(b.advice, "pids 7, 8") || !strings.Contains(b.advice, "does not yield") {
		t.Errorf("blocking item = %+v", b)
	}
	b = findItem(t, items, checkVacuumBlocking, "app: public.small")
	if b.value != 1 || !strings.Contains(b.advice, "yields after deadlock_timeout") {
		t.Errorf("blocking item = %+v", b)
	}
	for _, it := range items {
		if it.check == checkWraparoundVacuum && it.object != "app: public.big" {
			t.Errorf("regular autovacuum reported as anti-wraparound: %+v", it)
		}
	}
	if items := vacuumItems(workers[1:2], 3, nil); len(items) != 1 || items[0].crossed {
		t.Errorf("one regular worker: %+v", items)
	}
}

func TestHealthXIDAge(t *testing.T) {
	hc := config.DefaultHealth()
	items := xidAgeItems(hc, parseXIDRows([][][]byte{row("old", "170000000", "200000000"), row("young", "1000", "200000000")}))
	if it := findItem(t, items, checkXIDAge, "old"); !it.crossed || it.threshold != 160000000 {
		t.Errorf("old = %+v", it)
	}
	if it := findItem(t, items, checkXIDAge, "young"); it.crossed {
		t.Errorf("young = %+v", it)
	}
}

func TestHealthDeadTuples(t *testing.T) {
	hc := config.DefaultHealth()
	rows := parseDeadTupleRows([][][]byte{
		row("public", "churn", "2000000", "1000000", "\x00", "t"),
		row("public", "huge", "2000000", "100000000", "60", "f"),
		row("public", "small", "500000", "0", "3600", "f"),
	})
	items := deadTupleItems(hc, rows)
	churn := findItem(t, items, checkDeadTuples, "public.churn")
	if !churn.crossed || !strings.Contains(churn.advice, "never vacuumed") || !strings.Contains(churn.advice, "autovacuum is disabled") {
		t.Errorf("churn = %+v", churn)
	}
	if huge := findItem(t, items, checkDeadTuples, "public.huge"); huge.crossed || !strings.Contains(huge.advice, "last vacuumed 1m ago") {
		t.Errorf("huge (2%% dead) = %+v", huge)
	}
	if small := findItem(t, items, checkDeadTuples, "public.small"); small.crossed {
		t.Errorf("small = %+v", small)
	}
	hc.DeadTuplesFraction = 0
	if huge := findItem(t, deadTupleItems(hc, rows), checkDeadTuples, "public.huge"); !huge.crossed {
		t.Errorf("dead_tuples_fraction 0: huge = %+v", huge)
	}
	if q := deadTuplesQuery(0); !strings.Contains(q, ">= 1\n") {
		t.Errorf("query floor: %s", q)
	}
}

func TestHealthConnections(t *testing.T) {
	hc := config.DefaultHealth()
	c := parseConnectionRows([][][]byte{row("active", "10", "400", "3"), row("idle", "300", "400", "3")})
	items := connectionItems(hc, c)
	total := findItem(t, items, checkConnections, "total")
	if total.value != 310 || total.threshold != 0.8*397 || total.crossed {
		t.Errorf("total = %+v", total)
	}
	if it := findItem(t, items, checkConnections, "idle"); it.value != 300 || it.hasThreshold {
		t.Errorf("idle = %+v", it)
	}
	c.byState["idle in transaction"] = 10
	if total := findItem(t, connectionItems(hc, c), checkConnections, "total"); !total.crossed {
		t.Errorf("320 of 397 usable: %+v", total)
	}
	hc.ConnectionsFraction = 0
	if total := findItem(t, connectionItems(hc, c), checkConnections, "total"); total.crossed || total.hasThreshold {
		t.Errorf("check off: %+v", total)
	}
}

func TestHealthActivity(t *testing.T) {
	hc := config.DefaultHealth()
	acts := parseActivityRows([][][]byte{
		row("1", "app", "web", "10.0.0.5", "idle in transaction", "400", "900"),
		row("2", "app", "web", "10.0.0.5", "idle in transaction (aborted)", "10", "900"),
		row("3", "postgres", "pgrecycle_health", "local", "active", "0", "900"),
		row("4", "app", "", "10.0.0.6", "idle", "5", "1"),
		row("5", "batch", "cron", "10.0.0.7", "active", "1", "60"),
		row("6", "app", "web", "10.0.0.5", "idle in transaction", "350", "900"),
	})
	ours := map[int64]bool{6: true}
	it := idleInTransactionItems(hc, "appdb", acts, ours)
	if !it.crossed || it.value != 400 || it.threshold != 300 {
		t.Errorf("idle in transaction = %+v", it)
	}
	if !strings.Contains(it.advice, "2 session(s)") || !strings.Contains(it.advice, "pid 1 (user app") ||
		!strings.Contains(it.advice, "pid 6") || !strings.Contains(it.advice, "through pgrecycle") ||
		!strings.Contains(it.advice, "pool.idle_transaction_timeout") || strings.Contains(it.advice, "pid 2 ") {
		t.Errorf("idle in transaction advice: %s", it.advice)
	}
	hc.IdleInTransaction = config.Duration(time.Hour)
	if it := idleInTransactionItems(hc, "appdb", acts, ours); it.crossed {
		t.Errorf("under an hour: %+v", it)
	}

	hc.BypassConnections = 2
	b := bypassItems(hc, "appdb", acts, ours)
	// 1, 2 (web) and 5 (cron) bypass; 3 is an advisor, 4 is too young, 6 is ours.
	if b.value != 3 || !b.crossed || !strings.Contains(b.advice, `application "web", from 10.0.0.5 ×2`) {
		t.Errorf("bypass = %+v", b)
	}
	hc.BypassConnections = 4
	if b := bypassItems(hc, "appdb", acts, ours); b.crossed {
		t.Errorf("bypass under threshold: %+v", b)
	}
}

func writeProc(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHealthHost(t *testing.T) {
	root := t.TempDir()
	writeProc(t, root, map[string]string{
		"sys/vm/overcommit_memory": "1",
		"100/comm":                 "postgres",
		"100/status":               "Name:\tpostgres\nPPid:\t50\nUid:\t100",
		"100/oom_score_adj":        "-1000",
		"50/comm":                  "postgres",
		"50/oom_score_adj":         "-1000",
	})
	items := hostItems(100, procFS(root))
	if it := findItem(t, items, checkOvercommit, "vm.overcommit_memory"); !it.crossed || it.value != 1 {
		t.Errorf("overcommit = %+v", it)
	}
	oom := findItem(t, items, checkOOMScore, "postmaster")
	if oom.crossed || oom.value != -1000 || !strings.Contains(oom.advice, "PG_OOM_ADJUST_VALUE=0)") {
		t.Errorf("oom = %+v", oom)
	}

	writeProc(t, root, map[string]string{"sys/vm/overcommit_memory": "2", "50/oom_score_adj": "0", "100/oom_score_adj": "0"})
	items = hostItems(100, procFS(root))
	if it := findItem(t, items, checkOvercommit, "vm.overcommit_memory"); it.crossed {
		t.Errorf("overcommit 2 = %+v", it)
	}
	if it := findItem(t, items, checkOOMScore, "postmaster"); !it.crossed || it.value != 0 {
		t.Errorf("oom 0 = %+v", it)
	}

	// Another pid namespace: the pid is not a PostgreSQL process here.
	writeProc(t, root, map[string]string{"100/comm": "bash"})
	for _, it := range hostItems(100, procFS(root)) {
		if it.check == checkOOMScore {
			t.Errorf("oom item for a process that is not PostgreSQL: %+v", it)
		}
	}
	if items := hostItems(0, procFS(filepath.Join(root, "missing"))); len(items) != 0 {
		t.Errorf("nothing readable: %+v", items)
	}
}

func TestHostIsLocal(t *testing.T) {
	for host, want := range map[string]bool{
		"/var/run/postgresql": true, "localhost": true, "127.0.0.1": true, "127.1.2.3": true, "::1": true,
		"10.0.0.1": false, "db.example.com": false, "": false,
	} {
		if got := hostIsLocal(host); got != want {
			t.Errorf("hostIsLocal(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestDecodeDataRow(t *testing.T) {
	var body []byte
	body = binary.BigEndian.AppendUint16(body, 3)
	body = binary.BigEndian.AppendUint32(body, 3)
	body = append(body, "abc"...)
	body = binary.BigEndian.AppendUint32(body, 0xFFFFFFFF) // NULL
	body = binary.BigEndian.AppendUint32(body, 0)
	row, ok := decodeDataRow(body)
	if !ok || len(row) != 3 || string(row[0]) != "abc" || row[1] != nil || row[2] == nil || len(row[2]) != 0 {
		t.Fatalf("row = %q, %v", row, ok)
	}
	if _, ok := decodeDataRow(body[:8]); ok {
		t.Fatal("truncated row accepted")
	}
	if _, ok := decodeDataRow(nil); ok {
		t.Fatal("empty body accepted")
	}
}

func TestFormatHealthValue(t *testing.T) {
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{512, unitBytes, "512B"},
		{1.5 * (1 << 20), unitBytes, "1.5MB"},
		{3 << 30, unitBytes, "3.0GB"},
		{300, unitSeconds, "5m"},
		{3725.4, unitSeconds, "1h2m5s"},
		{0.25, unitSeconds, "250ms"},
		{100000, unitCount, "100000"},
		{0.4, unitCount, "0.4"},
		{170000000, unitXIDs, "170000000"},
		{-1000, unitSetting, "-1000"},
	}
	for _, tt := range tests {
		if got := formatHealthValue(tt.v, tt.unit); got != tt.want {
			t.Errorf("formatHealthValue(%v, %s) = %q, want %q", tt.v, tt.unit, got, tt.want)
		}
	}
}

func TestHealthCredentials(t *testing.T) {
	cfg := config.Default()
	cfg.Users["mon"] = &config.User{Password: "monpw"}
	users := auth.UserList{"qu": auth.ParseSecret("qupw"), "scram": auth.ParseSecret("md5" + strings.Repeat("a", 32))}
	db := cfg.NewDatabase("app", "h")

	if _, _, ok := healthCredentials(cfg, users, db); ok {
		t.Error("credentials found where there are none")
	}
	cfg.Auth.QueryUser = "qu"
	if u, p, ok := healthCredentials(cfg, users, db); !ok || u != "qu" || p != "qupw" {
		t.Errorf("auth.query_user: %q %q %v", u, p, ok)
	}
	db.User, db.Password = "owner", "ownerpw"
	if u, p, ok := healthCredentials(cfg, users, db); !ok || u != "owner" || p != "ownerpw" {
		t.Errorf("database user: %q %q %v", u, p, ok)
	}
	cfg.Health.User = "mon"
	if u, p, ok := healthCredentials(cfg, users, db); !ok || u != "mon" || p != "monpw" {
		t.Errorf("health.user: %q %q %v", u, p, ok)
	}
	cfg.Health.User = "scram"
	if u, p, ok := healthCredentials(cfg, users, db); !ok || u != "scram" || p != "" {
		t.Errorf("health.user with a hash only: %q %q %v", u, p, ok)
	}
}

func TestHealthPublish(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	s := &Server{log: zap.New(core)}
	d := s.health.db("app")
	dead := healthItem{check: checkDeadTuples, object: "public.t", value: 2e6, threshold: 1e6, hasThreshold: true, unit: unitCount, crossed: true}
	mem := healthItem{check: checkMemory, object: "u: total", value: 1, threshold: 2, hasThreshold: true, unit: unitBytes}
	t0 := time.Now()

	s.healthPublish(d, "app", []healthItem{dead, mem, dead}, t0, "", "", true, false)
	s.healthPublish(d, "app", []healthItem{dead, mem}, t0.Add(time.Second), "", "", true, false)
	if n := logs.FilterMessage("health: threshold crossed").Len(); n != 1 {
		t.Fatalf("crossed logged %d times, want 1", n)
	}
	rows, sts := s.health.snapshot()
	if len(rows) != 2 || len(sts) != 1 || !sts[0].up || !rows[0].since.Equal(t0) {
		t.Fatalf("snapshot = %+v %+v", rows, sts)
	}

	// A round that could not sample keeps the findings, replaces memory.
	mem2 := mem
	mem2.value = 5
	mem2.crossed = true
	s.healthPublish(d, "app", []healthItem{mem2}, t0.Add(2*time.Second), "not sampled: x", "fix x", false, true)
	rows, sts = s.health.snapshot()
	if len(rows) != 2 || sts[0].up || sts[0].status != "not sampled: x" {
		t.Fatalf("after a skipped round: %+v %+v", rows, sts)
	}
	if n := logs.FilterMessage("health: database not sampled").Len(); n != 1 {
		t.Fatalf("not sampled logged %d times", n)
	}
	s.healthPublish(d, "app", []healthItem{mem2}, t0.Add(3*time.Second), "not sampled: x", "fix x", false, true)
	if n := logs.FilterMessage("health: database not sampled").Len(); n != 1 {
		t.Fatalf("unchanged status logged again: %d", n)
	}

	// Fixed: back under the threshold, logged once.
	fixed := dead
	fixed.crossed, fixed.value = false, 10
	s.healthPublish(d, "app", []healthItem{fixed}, t0.Add(4*time.Second), "", "", true, false)
	if n := logs.FilterMessage("health: back under threshold").Len(); n != 2 {
		t.Fatalf("back under threshold logged %d times, want 2 (dead tuples, memory)", n)
	}
	rows, sts = s.health.snapshot()
	if len(rows) != 1 || rows[0].item.crossed || !sts[0].up || !rows[0].since.IsZero() {
		t.Fatalf("after the fix: %+v %+v", rows, sts)
	}

	// Credentials gone: the SQL findings go too.
	s.healthPublish(d, "app", []healthItem{dead}, t0.Add(5*time.Second), "", "", true, false)
	s.healthPublish(d, "app", []healthItem{mem}, t0.Add(6*time.Second), "not sampled: no credentials", "set one", false, false)
	if rows, _ := s.health.snapshot(); len(rows) != 1 || rows[0].item.check != checkMemory {
		t.Fatalf("without credentials: %+v", rows)
	}

	s.health.retain(map[string]*config.Database{})
	if rows, sts := s.health.snapshot(); len(rows)+len(sts) != 0 {
		t.Fatalf("removed database kept: %+v %+v", rows, sts)
	}
}
