package proxy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/pool"
	"github.com/pgrecycle/pgrecycle/proxy/auth"
)

// authQuery looks up users absent from the auth file with auth.query, on
// one dedicated connection per database (never a client's backend), and
// caches the answers for auth.query_cache_ttl.
type authQuery struct {
	mu    sync.Mutex
	conns map[string]*pgconn.PgConn // by database name
	cache map[string]authQueryEntry // by database + "\x00" + user
}

type authQueryEntry struct {
	secret  auth.Secret
	found   bool
	expires time.Time
}

func newAuthQuery() *authQuery {
	return &authQuery{conns: make(map[string]*pgconn.PgConn), cache: make(map[string]authQueryEntry)}
}

// lookup returns the user's secret from the database, or found=false.
func (s *Server) authQueryLookup(ctx context.Context, cfg *config.Config, db *config.Database, user string) (auth.Secret, bool, error) {
	aq := s.authq
	key := db.Name + "\x00" + user
	aq.mu.Lock()
	defer aq.mu.Unlock()
	if e, ok := aq.cache[key]; ok && time.Now().Before(e.expires) {
		return e.secret, e.found, nil
	}
	conn := aq.conns[db.Name]
	if conn == nil || conn.IsClosed() {
		c, err := s.connectAuthQuery(ctx, cfg, db)
		if err != nil {
			return auth.Secret{}, false, err
		}
		conn = c
		aq.conns[db.Name] = c
	}
	res := conn.ExecParams(ctx, cfg.Auth.Query, [][]byte{[]byte(user)}, nil, nil, nil).Read()
	if res.Err != nil {
		if conn.IsClosed() {
			delete(aq.conns, db.Name)
		}
		return auth.Secret{}, false, fmt.Errorf("auth.query: %w", res.Err)
	}
	entry := authQueryEntry{expires: time.Now().Add(cfg.Auth.QueryCacheTTL.D())}
	if len(res.Rows) > 0 && len(res.Rows[0]) >= 2 && len(res.Rows[0][1]) > 0 {
		entry.secret = auth.ParseSecret(string(res.Rows[0][1]))
		entry.found = entry.secret.Kind == auth.KindSCRAM || entry.secret.Kind == auth.KindMD5
	}
	aq.cache[key] = entry
	return entry.secret, entry.found, nil
}

func (s *Server) connectAuthQuery(ctx context.Context, cfg *config.Config, db *config.Database) (*pgconn.PgConn, error) {
	password, _ := configuredPassword(cfg, *s.users.Load(), cfg.Auth.QueryUser, "")
	pcfg, err := pool.ParseConnConfig(*db, cfg.Auth.QueryUser, password)
	if err != nil {
		return nil, err
	}
	pcfg.RuntimeParams["application_name"] = "pgrecycle_auth_query"
	pc, err := pgconn.ConnectConfig(ctx, pcfg)
	if err != nil {
		s.log.Error("auth.query connection failed", zap.String("database", db.Name), zap.Error(err))
		return nil, err
	}
	return pc, nil
}

// close ends the dedicated connections.
func (aq *authQuery) close() {
	aq.mu.Lock()
	defer aq.mu.Unlock()
	for name, c := range aq.conns {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.Close(ctx)
		cancel()
		delete(aq.conns, name)
	}
}
