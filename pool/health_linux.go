package pool

import (
	"crypto/tls"
	"net"
	"syscall"
)

// socketHasDataOrEOF reports whether an idle backend socket has something
// to read: an unsolicited message (a FATAL from a shutting-down server, a
// notification) or EOF. Either way the backend must not be handed out.
func socketHasDataOrEOF(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	bad := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			bad = false
		case err != nil:
			bad = true
		default:
			bad = true // n == 0 is EOF; n > 0 is unsolicited data
			_ = n
		}
		return true
	})
	return bad || err != nil
}
