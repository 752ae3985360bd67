//go:build linux

package sockio

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

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
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(fds, 0); err == nil && n > 0 {
			closed = fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return closed
}
