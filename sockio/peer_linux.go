//go:build linux

package sockio

import (
	"crypto/tls"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// These checks are made from hot paths (a backend handed out after a
// pause, a pinned client's idle backend every few milliseconds), so they use
// raw system calls, as the rest of this package does (see doc.go): neither
// call can block, and a scheduled one would wake sysmon.

// PeerClosed reports, without waiting or reading, whether the other end of
// c has closed or reset the connection, even with unread data before the
// close (a client's Terminate): POLLRDHUP. False when it can't tell.
func PeerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	_ = rc.Control(func(fd uintptr) {
		fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		var zero unix.Timespec
		n, _, e := syscall.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
		if e == 0 && n > 0 {
			closed = fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return closed
}

// HasDataOrEOF reports, without consuming anything, whether c's socket has
// bytes to read, has reached end of stream, has failed or is closed. A TLS
// connection's socket is looked at under the record layer: any record
// counts. False for connections without a socket (pipes, test doubles).
func HasDataOrEOF(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true // closed
	}
	readable := true // stays true if closed
	_ = rc.Control(func(fd uintptr) {
		var b [1]byte
		_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		readable = e != syscall.EAGAIN // a byte, EOF (0 bytes) or an error
	})
	return readable
}
