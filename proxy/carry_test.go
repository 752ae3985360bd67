package proxy

import "testing"

func TestPlainSessionSet(t *testing.T) {
	for _, tc := range []struct {
		q, name, stmt string
	}{
		{"SET search_path TO a, b", "search_path", "SET search_path TO a, b"},
		{"  /* c */ set Search_Path=a;  ", "search_path", "set Search_Path=a"},
		{"SET SESSION statement_timeout = '5s'\x00", "statement_timeout", "SET SESSION statement_timeout = '5s'"},
		{`SET "app.tenant" TO '42'`, "app.tenant", `SET "app.tenant" TO '42'`},
		{"SET app.tenant='42';", "app.tenant", "SET app.tenant='42'"},
		{"SET ROLE reader", "role", "SET ROLE reader"},
		{"SET SESSION AUTHORIZATION alice", "session_authorization", "SET SESSION AUTHORIZATION alice"},
		{"SET SCHEMA 'x'", "search_path", "SET SCHEMA 'x'"},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "session_characteristics", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"},
		{"SET XML OPTION DOCUMENT", "xmloption", "SET XML OPTION DOCUMENT"},
		{"SET work_mem TO DEFAULT", "", ""},
		{"SET SESSION AUTHORIZATION DEFAULT", "", ""},
		{"SET ROLE NONE", "role", "SET ROLE NONE"},
		{"SET work_mem TO '8MB' -- note\n", "work_mem", "SET work_mem TO '8MB' -- note"},
		// Not carried: transaction-scoped, reported, several statements.
		{"SET LOCAL search_path TO a", "", ""},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "", ""},
		{"SET CONSTRAINTS ALL DEFERRED", "", ""},
		{"SET TIME ZONE 'UTC'", "", ""},
		{"SET TimeZone = 'UTC'", "", ""},
		{"SET NAMES 'UTF8'", "", ""},
		{"SET application_name = 'x'", "", ""},
		{"SET search_path TO a; SELECT 1", "", ""},
		{"SET search_path TO 'a;b'", "", ""},
		{"SELECT set_config('search_path', 'a', false)", "", ""},
		{"SET", "", ""},
		{"SET x", "", ""},
		{"SETTLE x TO 1", "", ""},
	} {
		name, stmt, ok := plainSessionSet([]byte(tc.q))
		if ok != (tc.name != "") || name != tc.name || stmt != tc.stmt {
			t.Errorf("plainSessionSet(%q) = %q, %q, %v; want %q, %q", tc.q, name, stmt, ok, tc.name, tc.stmt)
		}
	}
}

func TestCarryStateReplacesAndDrops(t *testing.T) {
	var c carryState
	c.carry(carriedSet{"search_path", "SET search_path TO a"})
	c.carry(carriedSet{"role", "SET ROLE r"})
	c.carry(carriedSet{"search_path", "SET search_path TO b"})
	if len(c.sets) != 2 || c.sql != "SET ROLE r\n; SET search_path TO b" || c.path != "SET search_path TO b" {
		t.Fatalf("after three SETs: %+v", c)
	}
	s := &session{resets: &resetState{carry: c}, txMode: true}
	s.dropCarried(nil, resetInfo{names: []string{"role"}})
	if sql, path := s.carried(); sql != "SET search_path TO b" || path != sql {
		t.Fatalf("after RESET role: %q %q", sql, path)
	}
	s.dropCarried(nil, resetInfo{names: []string{"work_mem"}})
	if sql, _ := s.carried(); sql != "SET search_path TO b" {
		t.Fatal("a RESET of an uncarried setting changed the carried ones")
	}
	s.dropCarried(nil, resetInfo{all: true})
	if sql, path := s.carried(); sql != "" || path != "" {
		t.Fatalf("after RESET ALL: %q %q", sql, path)
	}
}
