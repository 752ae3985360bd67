package main

import (
	"runtime/debug"

	"go.uber.org/zap"
)

// defaultGCPercent is the GOGC pgrecycle runs with unless the environment
// sets one. Its steady state allocates nothing per message, so the
// collector runs mostly after logins; what it governs is how far the heap
// may grow past the memory that is live, and that memory is mostly the
// state of idle clients. Go's 100 lets the process hold about twice that
// (about 4 KiB of RSS per idle client); 50 holds about 1.5 times it for
// more frequent, cheap collections during login bursts.
const defaultGCPercent = 50

// applyGCPercent sets the collector's target once at start: GOGC from
// the environment when set (Go has applied it already), else
// defaultGCPercent.
func applyGCPercent(envSet bool, log *zap.Logger) {
	if envSet {
		log.Info("garbage collection", zap.String("from", "GOGC"))
		return
	}
	debug.SetGCPercent(defaultGCPercent)
	log.Info("garbage collection", zap.Int("gogc", defaultGCPercent), zap.String("from", "default"))
}
