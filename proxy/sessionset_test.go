package proxy

import (
	"slices"
	"strings"
	"testing"
)

func TestContainsSessionSet(t *testing.T) {
	tests := []struct {
		q    string
		want bool
	}{
		{"SET search_path TO tenant_a", true},
		{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", true},
		{"declare c no scroll cursor with\nhold for select 1", true},
		{"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", false},
		{"DECLARE c CURSOR FOR SELECT 1", false},
		{"CREATE TEMP TABLE t (x int)", true},
		{"create temporary view v as select 1", true},
		{"CREATE TABLE t (x int)", false},
		{"SELECT pg_advisory_lock(42)", true},
		{"select pg_try_advisory_lock_shared(1, 2)", true},
		{"SELECT pg_advisory_xact_lock(42)", false},
		{"SELECT pg_advisory_unlock(42)", false},
		{"set statement_timeout = '1s'", true},
		{"  \n\tSet ROLE app_admin;", true},
		{"SET SESSION search_path = a", true},
		{"SET TIME ZONE 'UTC'", true},
		{"SET SESSION AUTHORIZATION bob", true},
		{"-- comment\nSET work_mem = '64MB'", true},
		{"/* a /* nested */ comment */ SET x.y = 1", true},
		{"BEGIN; SET search_path TO b; COMMIT", true},
		{"SELECT 1; set role x\x00trailing", true},
		{"SET LOCAL statement_timeout = '1s'", false},
		{"set local search_path to a", false},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", false},
		{"SET CONSTRAINTS ALL DEFERRED", false},
		{"BEGIN; SET LOCAL x.y = 1; SELECT 1", false},
		{"SELECT 'SET x = 1'", false},
		{"SELECT * FROM settings", false},
		{"SETTINGS", false},
		{"SELECT set_config('role', 'elevated', false)", true},
		{"select PG_CATALOG.SET_CONFIG('search_path', 'x', false)", true},
		{"set_config", true},
		{"SELECT my_set_configuration FROM t", true}, // a false alarm: one reset
		{"SELECT a_b, c_d FROM e_f", false},
		{"DO $$ BEGIN EXECUTE 'SET statement_timeout = 1'; END $$", true},
		{" do language plpgsql $$ $$", true},
		{"LISTEN channel", true},
		{"SELECT 1; listen \"Chan\"", true},
		{"UNLISTEN *", false},
		{"DOMAIN", false},
		{"SELECT done FROM listeners", false},
		{"UPDATE t SET a = 1", false},
		{"RESET ALL", false},
		{"", false},
		{"SELECT 1\x00; SET x = 1", false},
		{"-- SET x = 1\nSELECT 1", false},
	}
	for _, tc := range tests {
		if got := containsSessionSet([]byte(tc.q)); got != tc.want {
			t.Errorf("containsSessionSet(%q) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func FuzzContainsSessionSet(f *testing.F) {
	f.Add([]byte("SET search_path TO a; SELECT 1"))
	f.Add([]byte("/* x */ set local y = 2"))
	f.Add([]byte("/* unterminated"))
	f.Add([]byte(`SET "app.x" = '1';;`))
	f.Add([]byte("set loCAl!="))
	f.Add([]byte("set loCAl.="))
	f.Fuzz(func(t *testing.T, q []byte) {
		set := containsSessionSet(q) // must not panic or hang
		// A statement carried to other backends is one the scan marks:
		// its backend is reset before another client gets it.
		if _, _, ok := plainSessionSet(q); ok && !set {
			t.Fatalf("plainSessionSet carries %q, which containsSessionSet misses", q)
		}
	})
}

func TestContainsReset(t *testing.T) {
	for q, want := range map[string]bool{
		"RESET ALL":                        true,
		"reset search_path":                true,
		"SELECT 1; /* c */ Reset TimeZone": true,
		"DISCARD ALL":                      true,
		"discard plans":                    true,
		"SELECT reset_at FROM t":           false,
		"RESETTING":                        false,
		"":                                 false,
	} {
		if got := containsReset([]byte(q)); got != want {
			t.Errorf("containsReset(%q) = %v, want %v", q, got, want)
		}
	}
}

func TestResetScope(t *testing.T) {
	for _, tc := range []struct {
		q     string
		all   bool
		names []string
	}{
		{"RESET ALL", true, nil},
		{"discard all;", true, nil},
		{"reset search_path", false, []string{"search_path"}},
		{`RESET "TimeZone"; RESET statement_timeout`, false, []string{"timezone", "statement_timeout"}},
		{"DISCARD TEMP", false, nil},
		{"RESET SESSION AUTHORIZATION", false, []string{"session_authorization"}},
		{"SET SESSION AUTHORIZATION DEFAULT", false, []string{"session_authorization"}},
		{"/* c */ RESET ALL; SELECT 1\x00", true, nil},
		{"SELECT 'reset all'", false, nil},
		{"RESET TIME ZONE", false, []string{"timezone"}},
		{"SET TIME ZONE DEFAULT; set session time zone local", false, []string{"timezone", "timezone"}},
		{"SET NAMES DEFAULT", false, []string{"client_encoding"}},
		{"SET DateStyle TO DEFAULT; SET application_name = DEFAULT", false, []string{"datestyle", "application_name"}},
		{"SET SESSION IntervalStyle TO DEFAULT; SET x=DEFAULT; SET y =DEFAULT; SET z= default", false, []string{"intervalstyle", "x", "y", "z"}},
		{"SET LOCAL DateStyle TO DEFAULT", false, nil},
		{"SET DateStyle TO 'ISO, DMY'", false, nil},
	} {
		all, names := resetScope([]byte(tc.q))
		if all != tc.all || !slices.Equal(names, tc.names) {
			t.Errorf("resetScope(%q) = %v, %q; want %v, %q", tc.q, all, names, tc.all, tc.names)
		}
	}
}

func TestStatementKinds(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want stmtKinds
	}{
		{"PREPARE q (int) AS SELECT $1", stmtKinds{prepare: true}},
		{"prepare transaction 'gid'", stmtKinds{}},
		{"ALTER TABLE t ADD COLUMN c int", stmtKinds{ddl: true}},
		{"BEGIN; DROP TABLE t; COMMIT", stmtKinds{ddl: true}},
		{"CREATE TEMP TABLE t (x int)", stmtKinds{set: true, pin: true}},
		{"DO $$BEGIN EXECUTE 'ALTER TABLE t ALTER x TYPE bool USING x <> 0'; END$$", stmtKinds{set: true, ddl: true, pin: true}},
		{"do $$ begin listen jobs; end $$", stmtKinds{set: true, ddl: true, pin: true}},
		{"IMPORT FOREIGN SCHEMA s FROM SERVER f INTO public", stmtKinds{ddl: true}},
		{"LISTEN jobs", stmtKinds{set: true, pin: true}},
		{"UNLISTEN jobs", stmtKinds{}},
		{"SET x.y = 1; RESET ALL", stmtKinds{set: true, reset: true}},
		{"SELECT 'ALTER TABLE t'", stmtKinds{}},
		{"SET LOCAL search_path = tenant_a", stmtKinds{path: true, pathLocal: true}},
		{"BEGIN; SET LOCAL search_path = a; SET search_path = b", stmtKinds{set: true, path: true}},
		{"set search_path to a", stmtKinds{set: true, path: true}},
		{"SELECT set_config('search_path', 'a', true)", stmtKinds{set: true, path: true}},
		{"SET LOCAL work_mem = '1MB'", stmtKinds{}},
		{"SELECT pg_advisory_lock(1)", stmtKinds{set: true, pin: true}},
		{"SELECT pg_try_advisory_lock_shared($1)", stmtKinds{set: true, pin: true}},
		{"SELECT pg_advisory_xact_lock(1)", stmtKinds{}},
		{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", stmtKinds{set: true, pin: true}},
		{"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", stmtKinds{}},
		{"SELECT set_config('work_mem', '1MB', false)", stmtKinds{set: true}},
		{"SELECT * INTO TEMP t FROM s", stmtKinds{set: true, pin: true}},
		{"select 1 as x into\n  temporary table t", stmtKinds{set: true, pin: true}},
		{"WITH w AS (SELECT 1) SELECT * INTO /* c */ LOCAL TEMP t FROM w", stmtKinds{set: true, pin: true}},
		{"SELECT * INTO t FROM s", stmtKinds{}},
		{"SELECT * FROM s WHERE into_temp = 1", stmtKinds{}},
		{"SELECT x_into temp FROM s", stmtKinds{}},
		{"INSERT INTO temp VALUES (1)", stmtKinds{}},
		{"SET DateStyle TO DEFAULT", stmtKinds{set: true, reset: true}},
		{"SET TIME ZONE LOCAL", stmtKinds{set: true, reset: true}},
		{"SET LOCAL DateStyle TO DEFAULT", stmtKinds{}},
		{"CREATE TABLE pg_temp.t (x int)", stmtKinds{set: true, pin: true}},
		{"create function PG_TEMP.f() returns int language sql as 'select 1'", stmtKinds{set: true, pin: true}},
		{"CREATE OR REPLACE TEMP VIEW v AS SELECT 1", stmtKinds{set: true, pin: true}},
		{"CREATE OR REPLACE VIEW v AS SELECT 1", stmtKinds{ddl: true}},
		{"EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1", stmtKinds{set: true, pin: true}},
		{"explain (analyze, costs off) select 1 into temp t", stmtKinds{set: true, pin: true}},
		{"EXPLAIN SELECT 1", stmtKinds{}},
		{"UPDATE pg_settings SET setting = 'off' WHERE name = 'enable_seqscan'", stmtKinds{set: true}},
		{"SELECT setting FROM pg_settings", stmtKinds{}},
		{"UPDATE t SET x = 1", stmtKinds{}},
	} {
		if got := statementKinds([]byte(tc.q)); got != tc.want {
			t.Errorf("statementKinds(%q) = %+v, want %+v", tc.q, got, tc.want)
		}
	}
}

func TestBlockingDatabase(t *testing.T) {
	for q, want := range map[string]string{
		"DROP DATABASE test_app":                                                   "test_app",
		"drop database if exists \"Test App\"\x00":                                 "Test App",
		"/* django */ DROP DATABASE IF EXISTS Test_App WITH (FORCE)":               "test_app",
		"DROP DATABASE \"a\"\"b\"":                                                 `a"b`,
		"ALTER DATABASE old_name RENAME TO new_name":                               "old_name",
		"ALTER DATABASE app SET work_mem = '1MB'":                                  "",
		"CREATE DATABASE copy TEMPLATE src":                                        "src",
		"CREATE DATABASE copy WITH OWNER = 'x' ENCODING 'UTF8' TEMPLATE = \"Src\"": "Src",
		"CREATE DATABASE plain":                                                    "",
		"DROP TABLE database":                                                      "",
		"SELECT 'DROP DATABASE x'":                                                 "",
		"DROP DATABASEX y":                                                         "",
		"DROP DATABASE \"unterminated":                                             "",
		"":                                                                         "",
	} {
		if got := blockingDatabase([]byte(q)); got != want {
			t.Errorf("blockingDatabase(%q) = %q, want %q", q, got, want)
		}
	}
}

// selectsIntoTemp skips eight bytes at a time: INTO TEMP is found at every
// offset and alignment, and lookalikes are not.
func TestSelectsIntoTempEveryOffset(t *testing.T) {
	for pad := 0; pad < 24; pad++ {
		cols := strings.Repeat("c,", pad)
		for _, tc := range []struct {
			q    string
			want bool
		}{
			{"SELECT " + cols + "1 INTO TEMP t FROM s", true},
			{"SELECT " + cols + "1 iNtO\ttemporary t", true},
			{"SELECT " + cols + "1 INTO t FROM s WHERE i = 1", false},
			{"SELECT " + cols + "1 FROM s WHERE x_into temp", false},
			{"SELECT " + cols + "1 FROM iiiiiiiiiiiiiiii", false},
		} {
			if got := selectsIntoTemp([]byte(tc.q)); got != tc.want {
				t.Errorf("selectsIntoTemp(%q) = %v, want %v", tc.q, got, tc.want)
			}
		}
	}
}

func TestDroppedRoles(t *testing.T) {
	for q, want := range map[string][]string{
		"DROP ROLE app":                            {"app"},
		"drop user if exists App, \"Mixed\" ;":     {"app", "Mixed"},
		"/* c */ DROP ROLE a,b , c; CREATE ROLE a": {"a", "b", "c"},
		"DROP ROLE IF EXISTS":                      nil,
		"DROP ROLES x":                             nil,
		"DROP TABLE app":                           nil,
		"ALTER ROLE app RENAME TO b":               nil,
		"SELECT 'DROP ROLE app'":                   nil,
	} {
		if got := droppedRoles([]byte(q)); !slices.Equal(got, want) {
			t.Errorf("droppedRoles(%q) = %q, want %q", q, got, want)
		}
	}
}
