//go:build !linux

package pool

import (
	"syscall"
	"time"
)

func SetUserTimeout(syscall.RawConn, time.Duration) error { return nil }
