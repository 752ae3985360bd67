package main

import (
	"runtime"

	"go.uber.org/zap"
)

// workerThreads picks GOMAXPROCS: listen.worker_threads when set, else a
// GOMAXPROCS from the environment, else half of what Go would use (its
// default already honours CPU affinity and container limits), at least
// one. A pooler mostly waits on sockets and usually shares its host with
// PostgreSQL or the application; with a thread per CPU the runtime wakes
// idle threads for every burst of work, which costs more CPU per
// transaction than it gains until thousands of clients are busy at once.
func workerThreads(configured int, envSet bool, available int) (n int, source string) {
	switch {
	case configured > 0:
		return configured, "listen.worker_threads"
	case envSet:
		return available, "GOMAXPROCS"
	}
	return max(1, available/2), "half the CPUs available"
}

// threadSetter applies workerThreads at start and at each reload.
type threadSetter struct {
	available int // Go's own GOMAXPROCS at start
	envSet    bool
	log       *zap.Logger
	applied   bool
}

func newThreadSetter(envSet bool, log *zap.Logger) *threadSetter {
	return &threadSetter{available: runtime.GOMAXPROCS(0), envSet: envSet, log: log}
}

func (t *threadSetter) apply(configured int) {
	n, source := workerThreads(configured, t.envSet, t.available)
	if prev := runtime.GOMAXPROCS(n); prev != n || !t.applied {
		t.applied = true
		t.log.Info("worker threads", zap.Int("threads", n), zap.String("from", source),
			zap.Int("cpus_available", t.available))
	}
}
