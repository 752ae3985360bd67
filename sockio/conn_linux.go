//go:build linux

package sockio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Conn is a net.Conn whose Read and Write go straight to the socket. One
// goroutine may read while another writes; two concurrent reads (or two
// concurrent writes) are not supported, which matches how pgrecycle uses a
// connection.
type Conn struct {
	net.Conn
	rc syscall.RawConn

	// Per-call state lives here, not in closures, so that Read and Write
	// allocate nothing: readFn and writeFn are bound once in Wrap.
	readFn  func(fd uintptr) bool
	rbuf    []byte
	rn      int
	rerrno  syscall.Errno
	writeFn func(fd uintptr) bool
	wbuf    []byte
	wn      int
	werrno  syscall.Errno
	// WriteAwaitReadable's callback and whether it has written yet.
	awaitFn func(fd uintptr) bool
	wrote   bool
}

// Wrap returns c reading and writing through raw system calls when it is a
// TCP or unix socket, and c itself otherwise (TLS, pipes, test doubles).
func Wrap(c net.Conn) net.Conn {
	var sc syscall.Conn
	switch t := c.(type) {
	case *net.TCPConn:
		sc = t
	case *net.UnixConn:
		sc = t
	default:
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	w := &Conn{Conn: c, rc: rc}
	w.readFn = w.readOnce
	w.writeFn = w.writeAll
	w.awaitFn = w.writeThenAwait
	return w
}

// SyscallConn exposes the socket, as *net.TCPConn does (socket options,
// idle peeks).
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// NetConn returns the wrapped connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Read reads what the socket has, waiting on the netpoller when it has
// nothing; io.EOF at end of stream, as net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	if err != nil {
		return 0, err // deadline or closed: a *net.OpError, as net.Conn gives
	}
	if c.rerrno != 0 {
		return 0, c.opError("read", c.rerrno)
	}
	if c.rn == 0 {
		return 0, io.EOF
	}
	return c.rn, nil
}

// readOnce and writeAll use recvfrom and sendto rather than read and
// write: on a socket they reach the same code without the file layer's
// checks (position lock, access checks, fsnotify), a few percent of the
// kernel's time per message.
func (c *Conn) readOnce(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)), 0, 0, 0)
		switch e {
		case 0:
			c.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.rerrno = e
			return true
		}
	}
}

// Write writes all of p, waiting on the netpoller while the socket buffer
// is full.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wbuf, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n := c.wn
	c.wbuf = nil
	if err != nil {
		return n, err
	}
	if c.werrno != 0 {
		return n, c.opError("write", c.werrno)
	}
	return n, nil
}

func (c *Conn) writeAll(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&c.wbuf[c.wn])), uintptr(len(c.wbuf)-c.wn), 0, 0, 0)
		switch e {
		case 0:
			c.wn += int(n)
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

// opError shapes a failed call like net.Conn's errors, so errors.Is
// (syscall.ECONNRESET, syscall.EPIPE) and net.Error keep working.
func (c *Conn) opError(op string, e syscall.Errno) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, e)}
}

// WriteAwaitReadable writes all of p and then waits until the socket is
// readable, for a request whose reply is read next: the Read that follows
// finds the reply instead of first trying a read that can only fail with
// EAGAIN (one system call fewer per round trip).
//
// The write happens inside the netpoller's read preparation, which forgets
// any readiness seen before it. That is safe only because the peer answers
// every request: its reply, or its close, arrives after the write and so
// after the preparation. Do not use it where data may already be waiting
// unannounced (a client that pipelines).
//
// When the socket buffer is full the rest is written as Write does and
// nothing is awaited; a deadline or close during the wait is left for the
// next Read to report.
func (c *Conn) WriteAwaitReadable(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	c.wbuf, c.wn, c.werrno, c.wrote = p, 0, 0, false
	err := c.rc.Read(c.awaitFn)
	n := c.wn
	c.wbuf = nil
	switch {
	case c.werrno != 0:
		return c.opError("write", c.werrno)
	case n < len(p) && err == nil:
		_, err := c.Write(p[n:])
		return err
	case n < len(p):
		return err // closed before anything could be written
	}
	return nil
}

func (c *Conn) writeThenAwait(fd uintptr) bool {
	if c.wrote {
		return true // readable (or a spurious wake-up): the next Read reads
	}
	c.wrote = true
	if !c.writeAll(fd) || c.werrno != 0 {
		return true // buffer full, or failed: the caller takes over
	}
	return false
}
