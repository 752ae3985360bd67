package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/pool"
)

// Prometheus metrics. Each Server has its own registry: no global
// collectors. Most values are read at scrape time from the pools and the
// sessions (the collector below), so the hot path pays nothing for them;
// only the wait-time histogram, the statement-cache counters and the
// cancel counter are updated as things happen.

// memoryBuckets returns the upper bounds of the backend memory histogram:
// 1 MiB to 4 GiB, doubling.
func memoryBuckets() []float64 { return prometheus.ExponentialBuckets(1<<20, 2, 13) }

// waitBuckets returns the upper bounds of the wait-time histogram, in
// seconds.
func waitBuckets() []float64 {
	return []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
}

// metricsState is a Server's registry, its event-driven metrics and the
// HTTP server that exposes them.
type metricsState struct {
	registry   *prometheus.Registry
	wait       *prometheus.HistogramVec
	stmtHits   prometheus.Counter
	stmtMisses prometheus.Counter
	cancels    *prometheus.CounterVec

	ln      net.Listener // nil when [metrics] addr is empty
	http    *http.Server
	serving chan struct{} // closed when the HTTP server's goroutine ends
}

func newMetrics(srv *Server) *metricsState {
	m := &metricsState{
		registry: prometheus.NewRegistry(),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pgrecycle_wait_seconds",
			Help:    "Time clients waited for a backend connection, per transaction (transaction pooling) or session.",
			Buckets: waitBuckets(),
		}, []string{"database", "user"}),
		stmtHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgrecycle_prepared_statement_cache_hits_total",
			Help: "Client Parse messages served by a statement already prepared on the backend.",
		}),
		stmtMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgrecycle_prepared_statement_cache_misses_total",
			Help: "Client Parse messages that had to prepare the statement on the backend.",
		}),
		cancels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgrecycle_cancel_requests_total",
			Help: "Client cancel requests, by outcome: forwarded to the backend, wait (ended a wait for a backend), coalesced (one for the same session was being delivered, which is delivered once more after it), unknown (no such key).",
		}, []string{"result"}),
	}
	m.registry.MustRegister(m.wait, m.stmtHits, m.stmtMisses, m.cancels, newCollector(srv))
	prefixed := prometheus.WrapRegistererWithPrefix("pgrecycle_", m.registry)
	prefixed.MustRegister(collectors.NewGoCollector())
	m.registry.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "pgrecycle"}))
	return m
}

// observeWait records that a client of pool p waited d for a backend.
func (srv *Server) observeWait(p *pool.Pool, d time.Duration) {
	if p == nil {
		return
	}
	w := srv.waitsFor(p)
	w.count.Add(1)
	w.nanos.Add(int64(d))
	w.obs.Observe(d.Seconds())
}

// observeStatement counts a client Parse against the backend statement
// cache: hit when the backend already had the statement.
func (srv *Server) observeStatement(hit bool) {
	if hit {
		srv.ops.metrics.stmtHits.Inc()
	} else {
		srv.ops.metrics.stmtMisses.Inc()
	}
}

// listenMetrics binds [metrics] addr, if set; Listen calls it so the port
// is known (MetricsAddr) before Serve.
func (srv *Server) listenMetrics() error {
	addr := srv.Config().Metrics.Addr
	if addr == "" {
		return nil
	}
	var lc net.ListenConfig
	if srv.Config().Listen.SOReusePort {
		lc.Control = setReusePort // an upgrade starts the new process on the same addr
	}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics.addr: %w", err)
	}
	m := srv.ops.metrics
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog:      zap.NewStdLog(srv.log.Named("metrics")),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("/healthz", srv.healthz)
	if srv.Config().Metrics.Pprof {
		// Opt-in profiling on the metrics address, for the hot path work.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	m.ln = ln
	m.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          zap.NewStdLog(srv.log.Named("metrics")),
	}
	return nil
}

// MetricsAddr returns the address of the metrics HTTP server (nil when
// [metrics] addr is empty or before Listen).
func (srv *Server) MetricsAddr() net.Addr {
	if m := srv.ops.metrics; m.ln != nil {
		return m.ln.Addr()
	}
	return nil
}

// serveMetrics starts the metrics HTTP server; Serve calls it.
func (srv *Server) serveMetrics() {
	m := srv.ops.metrics
	if m.ln == nil || m.serving != nil {
		return
	}
	m.serving = make(chan struct{})
	go func() {
		defer close(m.serving)
		if err := m.http.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			srv.log.Error("metrics server stopped", zap.Error(err))
		}
	}()
}

// stopMetrics stops the metrics HTTP server and waits for its goroutines.
func (srv *Server) stopMetrics() {
	m := srv.ops.metrics
	if m.ln == nil {
		return
	}
	if m.serving == nil {
		_ = m.ln.Close() // listened, never served
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.http.Shutdown(ctx); err != nil {
		_ = m.http.Close()
	}
	<-m.serving
}

// healthz answers 200 while clients are accepted and 503 once a shutdown
// has begun.
func (srv *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	srv.mu.Lock()
	closing := srv.closing
	srv.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if closing || srv.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("shutting down\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// collector reads pools and sessions at scrape time.
type collector struct {
	srv        *Server
	memBuckets []float64

	info            *prometheus.Desc
	clientConns     *prometheus.Desc
	parkedClients   *prometheus.Desc
	clients         *prometheus.Desc
	backends        *prometheus.Desc
	poolSize        *prometheus.Desc
	pinned          *prometheus.Desc
	waiting         *prometheus.Desc
	maxWait         *prometheus.Desc
	paused          *prometheus.Desc
	queries         *prometheus.Desc
	transactions    *prometheus.Desc
	xactSeconds     *prometheus.Desc
	querySeconds    *prometheus.Desc
	received        *prometheus.Desc
	sent            *prometheus.Desc
	retirements     *prometheus.Desc
	connectErrors   *prometheus.Desc
	memory          *prometheus.Desc
	memoryMax       *prometheus.Desc
	backendsSampled *prometheus.Desc
	health          healthDescs
}

func newCollector(srv *Server) *collector {
	pl := []string{"database", "user"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("pgrecycle_"+name, help, labels, nil)
	}
	return &collector{
		srv:             srv,
		memBuckets:      memoryBuckets(),
		info:            d("build_info", "Always 1; the version label tells the pgrecycle version.", "version"),
		clientConns:     d("client_connections", "Client connections open, including those logging in and admin console ones."),
		parkedClients:   d("clients_parked", "Idle clients parked (listen.client_park_after): no goroutine or buffer until their next byte."),
		clients:         d("clients", "Logged-in clients by pool and state: active (a backend attached), idle, waiting (for a backend).", append(pl, "state")...),
		backends:        d("backends", "Backend connections by pool and state: active (lent to a client), idle, opening.", append(pl, "state")...),
		poolSize:        d("pool_size", "Configured maximum of backends (pool.size).", pl...),
		pinned:          d("backends_pinned", "Backends kept by their client between transactions (transaction pooling): it holds a session-level advisory lock, a cursor WITH HOLD or a temporary table.", pl...),
		waiting:         d("pool_waiting_clients", "Requests waiting for a backend of the pool.", pl...),
		maxWait:         d("pool_max_wait_seconds", "Age of the oldest request waiting for a backend of the pool.", pl...),
		paused:          d("database_paused", "1 while the database is paused (admin PAUSE).", "database"),
		queries:         d("queries_total", "Client queries served (Query messages and Executes).", pl...),
		transactions:    d("transactions_total", "Client transactions served.", pl...),
		xactSeconds:     d("transaction_seconds_total", "Time clients spent in transactions, from the first query to the server's ReadyForQuery outside a transaction.", pl...),
		querySeconds:    d("query_seconds_total", "Time of client requests, from reaching the server to its ReadyForQuery (a request pipelined behind another is not timed).", pl...),
		received:        d("client_received_bytes_total", "Bytes received from clients.", pl...),
		sent:            d("client_sent_bytes_total", "Bytes sent to clients.", pl...),
		retirements:     d("retirements_total", "Backends closed, by reason (lifetime, queries, transactions, memory, idle, error, admin, reload, ...).", append(pl, "reason")...),
		connectErrors:   d("connect_errors_total", "Failed attempts to open a backend.", pl...),
		memory:          d("backend_memory_bytes", "Last sampled memory of the open backends (one observation per sampled backend, recomputed at each scrape).", pl...),
		memoryMax:       d("backend_memory_max_bytes", "Largest last sampled memory among the pool's open backends.", pl...),
		backendsSampled: d("backend_memory_sampled_backends", "Open backends with a memory sample.", pl...),
		health:          newHealthDescs(),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.info, c.clientConns, c.parkedClients, c.clients, c.backends, c.poolSize, c.pinned, c.waiting,
		c.maxWait, c.paused, c.queries, c.transactions, c.xactSeconds, c.querySeconds, c.received, c.sent, c.retirements, c.connectErrors,
		c.memory, c.memoryMax, c.backendsSampled} {
		ch <- d
	}
	c.health.describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	srv := c.srv
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(c.info, 1, srv.version)
	gauge(c.clientConns, float64(srv.clients.Load()))
	gauge(c.parkedClients, float64(srv.ParkedClients()))

	snap := srv.snapshotSessions(nil)
	type clientCounts struct{ active, idle, waiting int }
	byPool := make(map[poolLabels]*clientCounts)
	for _, ci := range snap.clients {
		if ci.admin || ci.pool == nil {
			continue
		}
		cc := byPool[ci.labels]
		if cc == nil {
			cc = &clientCounts{}
			byPool[ci.labels] = cc
		}
		switch ci.state {
		case "active":
			cc.active++
		case "waiting":
			cc.waiting++
		default:
			cc.idle++
		}
	}

	for _, p := range srv.poolList() {
		st := p.Stats()
		l := []string{st.Database, st.User}
		key := poolLabels{st.Database, st.User}
		if byPool[key] == nil {
			byPool[key] = &clientCounts{}
		}
		if _, ok := snap.totals[key]; !ok {
			snap.totals[key] = sessionTotals{}
		}
		gauge(c.backends, float64(st.Active), st.Database, st.User, "active")
		gauge(c.backends, float64(st.Idle), st.Database, st.User, "idle")
		gauge(c.backends, float64(st.Opening), st.Database, st.User, "opening")
		gauge(c.poolSize, float64(p.Options().Pool.Size), l...)
		gauge(c.pinned, float64(st.Pinned), l...)
		gauge(c.waiting, float64(st.Waiting), l...)
		gauge(c.maxWait, st.MaxWait.Seconds(), l...)
		for reason, n := range st.Retired {
			counter(c.retirements, float64(n), st.Database, st.User, reason)
		}
		counter(c.connectErrors, float64(st.ConnectErrors), l...)

		buckets := make(map[float64]uint64, len(c.memBuckets))
		for _, ub := range c.memBuckets {
			buckets[ub] = 0
		}
		var count uint64
		var sum, maxMem float64
		for _, b := range p.Backends() {
			if b.MemoryAt.IsZero() {
				continue
			}
			v := float64(b.MemoryBytes)
			count++
			sum += v
			maxMem = max(maxMem, v)
			for _, ub := range c.memBuckets {
				if v <= ub {
					buckets[ub]++
				}
			}
		}
		ch <- prometheus.MustNewConstHistogram(c.memory, count, sum, buckets, l...)
		gauge(c.memoryMax, maxMem, l...)
		gauge(c.backendsSampled, float64(count), l...)
	}

	for key, cc := range byPool {
		gauge(c.clients, float64(cc.active), key.database, key.user, "active")
		gauge(c.clients, float64(cc.idle), key.database, key.user, "idle")
		gauge(c.clients, float64(cc.waiting), key.database, key.user, "waiting")
	}
	for key, t := range snap.totals {
		counter(c.queries, float64(t.queries), key.database, key.user)
		counter(c.transactions, float64(t.transactions), key.database, key.user)
		counter(c.xactSeconds, float64(t.xactNanos)/1e9, key.database, key.user)
		counter(c.querySeconds, float64(t.queryNanos)/1e9, key.database, key.user)
		counter(c.received, float64(t.received), key.database, key.user)
		counter(c.sent, float64(t.sent), key.database, key.user)
	}
	for name := range srv.Config().Databases {
		if name == config.FallbackDatabase {
			continue
		}
		v := 0.0
		if srv.Paused(name) {
			v = 1
		}
		gauge(c.paused, v, name)
	}
	c.health.collect(srv, ch)
}
