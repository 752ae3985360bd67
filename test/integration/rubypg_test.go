package integration

import (
	"context"
	"os/exec"
	"reflect"
	"testing"
	"time"
)

// rubyPGScript drives Debian's ruby-pg (libpq underneath) through the
// proxy: its own protocol paths (exec_params is always the extended
// protocol, unnamed), the DEALLOCATE and re-prepare a Rails app sends, COPY,
// cancel and a startup search_path list.
const rubyPGScript = `
require 'pg'
require 'json'
cfg = JSON.parse(ARGV[0])
dsn, table = cfg["dsn"], cfg["table"]
out = {"errors" => [], "checks" => {}}
check = lambda do |name, &blk|
  begin
    out["checks"][name] = blk.call
  rescue => e
    out["errors"] << "#{name}: #{e.class}: #{e.message.lines.first.to_s.strip}"
  end
end
a, b, c = 3.times.map { PG.connect(dsn) }

check.("exec_params") { a.exec_params("SELECT $1::int + 1", [41]).getvalue(0, 0) }
check.("prepared") do
  a.prepare("s", "SELECT $1::text || '!'")
  b.prepare("s", "SELECT $1::text || '!'")
  [a.exec_prepared("s", ["a"]).getvalue(0, 0), b.exec_prepared("s", ["b"]).getvalue(0, 0)]
end
check.("deallocate_extended") do
  tag = a.exec_params("DEALLOCATE s", []).cmd_status
  gone = begin; a.exec_prepared("s", ["x"]); "still there"; rescue PG::InvalidSqlStatementName; "gone"; end
  [tag, gone, b.exec_prepared("s", ["b"]).getvalue(0, 0)]
end
check.("reprepare_after_alter") do
  a.exec("CREATE TABLE #{table} (x int); INSERT INTO #{table} VALUES (1)")
  a.prepare("q1", "SELECT * FROM #{table}")
  before = a.exec_prepared("q1").nfields
  a.exec("ALTER TABLE #{table} ADD COLUMN y int")
  err = begin; a.exec_prepared("q1"); "none"; rescue PG::FeatureNotSupported => e; e.result.error_field(PG::PG_DIAG_SQLSTATE); end
  a.exec("DEALLOCATE q1")
  a.prepare("q2", "SELECT * FROM #{table}")
  c.prepare("q3", "SELECT * FROM #{table}")
  [before, err, a.exec_prepared("q2").nfields, c.exec_prepared("q3").nfields]
end
check.("copy") do
  a.exec("CREATE TABLE #{table}_copy (i int, s text)")
  a.copy_data("COPY #{table}_copy FROM STDIN") { 100.times { |i| a.put_copy_data("#{i}\tv#{i}\n") } }
  n = 0
  b.copy_data("COPY #{table}_copy TO STDOUT") { n += 1 while b.get_copy_data }
  n
end
check.("cancel") do
  t = Thread.new { sleep 0.5; c.cancel }
  r = begin; c.exec("SELECT pg_sleep(10)"); "not cancelled"; rescue PG::QueryCanceled; "57014"; end
  t.join
  [r, c.exec("SELECT 7").getvalue(0, 0)]
end
check.("search_path_option") do
  d = PG.connect(dsn + " options='-c search_path=rb_nowhere,public'")
  v = [d.exec("SHOW search_path").getvalue(0, 0), d.exec("SELECT count(*) FROM #{table}").getvalue(0, 0)]
  d.close
  v
end
[a, b, c].each(&:close)
puts JSON.generate(out)
`

func TestRubyPG(t *testing.T) {
	leakCheck(t)
	ruby := requireTool(t, "ruby")
	{
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, ruby, "-e", `require "pg"; print PG::VERSION`).CombinedOutput()
		cancel()
		if err != nil {
			msg := "ruby-pg not loadable (Debian: apt-get install ruby-pg): " + string(out)
			if inCI() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		t.Logf("ruby-pg %s", out)
	}
	script := writeProgram(t, "rubypg_check.rb", rubyPGScript)
	for _, mode := range poolModes() {
		t.Run(mode, func(t *testing.T) { runRubyPG(t, ruby, script, mode) })
	}
}

func runRubyPG(t *testing.T, ruby, script, mode string) {
	// Transaction pooling: a pool of one, so every connection shares the
	// backend and a client's statement from before the ALTER is surely
	// there. Session pooling: a backend for each of the four connections.
	size := 1
	if mode == "session" {
		size = 4
	}
	e := startProxy(t, proxyOpts{mode: mode, size: size})
	ctx := testCtx(t)
	table := uniqueName("rb")
	dropTable(t, e, table)
	dropTable(t, e, table+"_copy")
	var r struct {
		Errors []string
		Checks map[string]any
	}
	runScriptJSON(ctx, t, ruby, script, map[string]string{"dsn": e.kv("postgres", "app"), "table": table}, &r)
	for _, msg := range r.Errors {
		t.Errorf("ruby-pg: %s", msg)
	}
	want := map[string]any{
		"exec_params":           "42",
		"prepared":              []any{"a!", "b!"},
		"deallocate_extended":   []any{"DEALLOCATE", "gone", "b!"},
		"reprepare_after_alter": []any{1.0, "0A000", 2.0, 2.0},
		"copy":                  100.0,
		"cancel":                []any{"57014", "7"},
		"search_path_option":    []any{"rb_nowhere,public", "1"},
	}
	for name, w := range want {
		if got, ok := r.Checks[name]; !ok {
			t.Errorf("%s: no result", name)
		} else if !reflect.DeepEqual(got, w) {
			t.Errorf("%s: got %v, want %v", name, got, w)
		}
	}
}
