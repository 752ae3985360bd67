//go:build !linux

package pool

import "net"

// socketHasDataOrEOF is only implemented on Linux; elsewhere the first
// read or write of a dead backend reports it.
func socketHasDataOrEOF(net.Conn) bool { return false }
