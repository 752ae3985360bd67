package integration

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestPreparedQuickTx(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 3})
	ctx := testCtx(t)
	err := parallel(20, func(i int) error {
		c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app"))
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		for j := 0; j < 50; j++ {
			var n int
			if err := c.QueryRow(ctx, "SELECT $1::int + $2::int", i, j).Scan(&n); err != nil {
				return fmt.Errorf("client %d iter %d: %w", i, j, err)
			}
			if n != i+j {
				return fmt.Errorf("got %d want %d", n, i+j)
			}
			var s string
			if err := c.QueryRow(ctx, fmt.Sprintf("SELECT 'q%d'::text", j%7)).Scan(&s); err != nil {
				return fmt.Errorf("client %d iter %d q2: %w", i, j, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
