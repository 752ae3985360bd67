package main

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// monotonicMicros reads CLOCK_MONOTONIC in microseconds, as systemd's
// MONOTONIC_USEC wants it.
func monotonicMicros() (string, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "", false
	}
	return strconv.FormatInt(ts.Nano()/1000, 10), true
}
