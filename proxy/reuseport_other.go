//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package proxy

import (
	"errors"
	"syscall"
)

// setReusePort refuses: this platform has no SO_REUSEPORT that lets
// processes share a port.
func setReusePort(network, address string, c syscall.RawConn) error {
	return errors.New("listen.so_reuseport is not supported on this platform")
}
