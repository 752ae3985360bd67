package integration

import (
	"testing"
)

func TestSimpleQueryThroughProxy(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{})
	ctx := testCtx(t)
	c := e.connect(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 42 {
		t.Fatalf("got %d", n)
	}
	var mode string
	if err := c.QueryRow(ctx, "SHOW plan_cache_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "force_custom_plan" {
		t.Fatalf("plan_cache_mode = %q", mode)
	}
}
