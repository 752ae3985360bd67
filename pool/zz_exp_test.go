package pool

import (
	"testing"
	"time"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

func TestZZExp(t *testing.T) {
	srv := pgtest.Shared(t)
	ctx := testContext(t, time.Minute)
	for _, def := range []string{"(id int)", "(id int, a text, b text)", "(id int primary key, a text, b text)"} {
		if err := srv.Exec(ctx, `DROP SCHEMA IF EXISTS memtest CASCADE; CREATE SCHEMA memtest; DO $$ BEGIN FOR i IN 1..1500 LOOP EXECUTE format('CREATE TABLE memtest.t%s `+def+`', i); END LOOP; END $$`); err != nil {
			t.Fatal(err)
		}
		opts := testOptions(t, srv, 1)
		p := newPool(t, opts)
		b := acquire(t, p)
		m0 := queryOne(t, b, contextsQuery)
		r0, _ := procRssAnon(b.PID)
		query(t, b, touchTables(1500))
		m1 := queryOne(t, b, contextsQuery)
		r1, _ := procRssAnon(b.PID)
		t.Logf("%s: contexts %s -> %s, rssanon %d -> %d", def, m0, m1, r0>>10, r1>>10)
		p.Release(b)
		p.Close()
	}
}
