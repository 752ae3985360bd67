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

// gcPercent picks the collector's target: GOGC from the environment when
// set (Go has applied it already), else defaultGCPercent.
func gcPercent(envSet bool) (percent int, source string) {
	if envSet {
		return -1, "GOGC"
	}
	return defaultGCPercent, "default"
}

// applyGCPercent sets the collector's target once at start.
func applyGCPercent(envSet bool, log *zap.Logger) {
	percent, source := gcPercent(envSet)
	if percent < 0 {
		log.Info("garbage collection", zap.String("from", source))
		return
	}
	debug.SetGCPercent(percent)
	log.Info("garbage collection", zap.Int("gogc", percent), zap.String("from", source))
}
