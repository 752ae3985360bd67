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

// maxAuthQueryCache bounds the cached answers: unknown user names are
// cached too, and a client can make up as many as it likes.
const maxAuthQueryCache = 10000

// authQuery looks up users absent from the auth file with auth.query, on
// one dedicated connection per database (never a client's backend). With
// auth.query_cache_ttl above zero the answers are reused for that long,
// except one that a failed login has just used.
type authQuery struct {
	mu    sync.Mutex
	dbs   map[string]*authQueryConn // by database name
	cache map[string]authQueryEntry // by database + "\x00" + user
}

// authQueryConn is a database's lookup connection; its mutex serialises
// the lookups on it without holding up other databases'.
type authQueryConn struct {
	mu   sync.Mutex
	conn *pgconn.PgConn
}

type authQueryEntry struct {
	secret  auth.Secret
	found   bool
	expires time.Time
}

func newAuthQuery() *authQuery {
	return &authQuery{dbs: make(map[string]*authQueryConn), cache: make(map[string]authQueryEntry)}
}

func authQueryKey(db, user string) string { return db + "\x00" + user }

// cached returns a live cached answer.
func (aq *authQuery) cached(key string, now time.Time) (authQueryEntry, bool) {
	aq.mu.Lock()
	defer aq.mu.Unlock()
	e, ok := aq.cache[key]
	return e, ok && now.Before(e.expires)
}

// store caches an answer, making room first: expired entries go, and if
// that is not enough, arbitrary ones down to nine tenths of the bound, so
// that a full cache is swept once per many stores, not at each.
func (aq *authQuery) store(key string, e authQueryEntry, now time.Time) {
	aq.mu.Lock()
	defer aq.mu.Unlock()
	if len(aq.cache) >= maxAuthQueryCache {
		for k, old := range aq.cache {
			if !now.Before(old.expires) {
				delete(aq.cache, k)
			}
		}
		for k := range aq.cache {
			if len(aq.cache) < maxAuthQueryCache*9/10 {
				break
			}
			delete(aq.cache, k)
		}
	}
	aq.cache[key] = e
}

// forget drops the cached answer for user: a login it refused may have
// been refused for a password changed since, and the next attempt must
// see the new one.
func (aq *authQuery) forget(db, user string) {
	aq.mu.Lock()
	defer aq.mu.Unlock()
	delete(aq.cache, authQueryKey(db, user))
}

// conn returns db's lookup connection holder.
func (aq *authQuery) conn(db string) *authQueryConn {
	aq.mu.Lock()
	defer aq.mu.Unlock()
	c := aq.dbs[db]
	if c == nil {
		c = &authQueryConn{}
		aq.dbs[db] = c
	}
	return c
}

// authQueryLookup returns the user's secret from the database, or
// found=false.
func (s *Server) authQueryLookup(ctx context.Context, cfg *config.Config, db *config.Database, user string) (auth.Secret, bool, error) {
	aq := s.authq
	key := authQueryKey(db.Name, user)
	ttl := cfg.Auth.QueryCacheTTL.D()
	if ttl > 0 {
		if e, ok := aq.cached(key, time.Now()); ok {
			return e.secret, e.found, nil
		}
	}
	qc := aq.conn(db.Name)
	qc.mu.Lock()
	defer qc.mu.Unlock()
	if qc.conn == nil || qc.conn.IsClosed() {
		c, err := s.connectAuthQuery(ctx, cfg, db)
		if err != nil {
			return auth.Secret{}, false, err
		}
		qc.conn = c
	}
	res := qc.conn.ExecParams(ctx, cfg.Auth.Query, [][]byte{[]byte(user)}, nil, nil, nil).Read()
	if res.Err != nil {
		if qc.conn.IsClosed() {
			qc.conn = nil
		}
		return auth.Secret{}, false, fmt.Errorf("auth.query: %w", res.Err)
	}
	var entry authQueryEntry
	if len(res.Rows) > 0 && len(res.Rows[0]) >= 2 && len(res.Rows[0][1]) > 0 {
		entry.secret = auth.ParseSecret(string(res.Rows[0][1]))
		entry.found = entry.secret.Kind == auth.KindSCRAM || entry.secret.Kind == auth.KindMD5
	}
	if ttl > 0 {
		now := time.Now()
		entry.expires = now.Add(ttl)
		aq.store(key, entry, now)
	}
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
	dbs := aq.dbs
	aq.dbs = make(map[string]*authQueryConn)
	aq.mu.Unlock()
	for _, qc := range dbs {
		qc.mu.Lock()
		if qc.conn != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = qc.conn.Close(ctx)
			cancel()
			qc.conn = nil
		}
		qc.mu.Unlock()
	}
}
