//go:build linux

package sockio

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Watcher reports sockets that become readable (or hung up) without a
// goroutine blocked on each: pgrecycle parks idle clients here, so ten
// thousand idle connections cost no goroutine stacks. Watches are one-shot:
// a socket is reported once and must be watched again to be reported again.
// Only the goroutine calling Wait may call Wait; Watch, Unwatch and Close
// may be called from anywhere.
//
// The watcher's own epoll descriptor sits on the runtime's netpoller (an
// epoll set is readable while it has events), so Wait parks a goroutine,
// not a thread in epoll_wait: a blocking system call would hold a thread
// and, every time it returned, wake sysmon (see doc.go). Every call here
// is raw for the same reason; none of them can block.
type Watcher struct {
	epfd   int
	ep     *os.File // epfd, on the netpoller; owns the descriptor
	rc     syscall.RawConn
	wakefd int // eventfd: a write ends the current and every later Wait
	events [128]syscall.EpollEvent

	// collect's result, kept here so that Wait allocates nothing.
	collectFn func(fd uintptr) bool
	n         int
	errno     syscall.Errno

	closeOnce sync.Once
}

// tokenClosed is the eventfd's token; socket tokens must be non-zero.
const tokenClosed = 0

// NewWatcher returns an empty watcher. Close it, and after its last Wait
// returned, Free it.
func NewWatcher() (*Watcher, error) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_EPOLL_CREATE1, syscall.EPOLL_CLOEXEC, 0, 0)
	if errno != 0 {
		return nil, errno
	}
	epfd := int(r)
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		return nil, err
	}
	ep := os.NewFile(uintptr(epfd), "pgrecycle-watcher")
	// Only a descriptor the netpoller took has deadlines.
	if err := ep.SetReadDeadline(time.Time{}); err != nil {
		_ = ep.Close()
		return nil, fmt.Errorf("sockio: watcher not on the netpoller: %w", err)
	}
	rc, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		return nil, err
	}
	r, _, errno = syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		_ = ep.Close()
		return nil, errno
	}
	w := &Watcher{epfd: epfd, ep: ep, rc: rc, wakefd: int(r)}
	w.collectFn = w.collect
	if errno := epollCtl(epfd, syscall.EPOLL_CTL_ADD, w.wakefd, &syscall.EpollEvent{Events: syscall.EPOLLIN}); errno != 0 {
		_ = syscall.Close(w.wakefd)
		_ = ep.Close()
		return nil, errno
	}
	return w, nil
}

func epollCtl(epfd, op, fd int, ev *syscall.EpollEvent) syscall.Errno {
	_, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return errno
}

// Watch arms a one-shot report of rc's socket under token (non-zero).
func (w *Watcher) Watch(rc syscall.RawConn, token uint64) error {
	if token == tokenClosed {
		return errors.New("sockio: watch token must not be 0")
	}
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(uint32(token)),
		Pad:    int32(uint32(token >> 32)),
	}
	var cerr syscall.Errno
	err := rc.Control(func(fd uintptr) {
		cerr = epollCtl(w.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		if cerr == syscall.EEXIST { // fired once already: re-arm
			cerr = epollCtl(w.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		}
	})
	if err != nil {
		return err
	}
	if cerr != 0 {
		return cerr
	}
	return nil
}

// Unwatch removes rc's socket; it is not an error if it was not watched.
func (w *Watcher) Unwatch(rc syscall.RawConn) {
	_ = rc.Control(func(fd uintptr) {
		var ev syscall.EpollEvent // non-nil for kernels before 2.6.9
		_ = epollCtl(w.epfd, syscall.EPOLL_CTL_DEL, int(fd), &ev)
	})
}

// Wait blocks until sockets are ready, timeout passes or the watcher is
// closed, calls ready with the token of each ready socket, and reports
// whether the watcher is closed.
func (w *Watcher) Wait(timeout time.Duration, ready func(token uint64)) (closed bool, err error) {
	w.n, w.errno = 0, 0
	if timeout <= 0 {
		err = w.rc.Control(func(fd uintptr) { w.collect(fd) })
	} else {
		if err := w.ep.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return false, err
		}
		err = w.rc.Read(w.collectFn)
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return false, nil // nothing before the timeout
	case err != nil:
		return false, err
	case w.errno != 0:
		return false, w.errno
	}
	for i := range w.events[:w.n] {
		ev := &w.events[i]
		token := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
		if token == tokenClosed {
			closed = true
			continue
		}
		ready(token)
	}
	return closed, nil
}

// collect takes what the epoll set has without waiting; false (nothing
// yet) makes the netpoller wait for the set to become readable.
func (w *Watcher) collect(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&w.events[0])), uintptr(len(w.events)), 0, 0, 0)
		switch errno {
		case 0:
			w.n = int(n)
			return n > 0
		case syscall.EINTR:
			continue
		default:
			w.errno = errno
			return true
		}
	}
}

// Close makes the current and every later Wait return closed.
func (w *Watcher) Close() {
	w.closeOnce.Do(func() {
		one := uint64(1)
		_, _, _ = syscall.RawSyscall(syscall.SYS_WRITE, uintptr(w.wakefd), uintptr(unsafe.Pointer(&one)), 8)
	})
}

// Free releases the watcher's descriptors; call it once no Wait runs.
func (w *Watcher) Free() {
	w.Close()
	_ = w.ep.Close()
	_ = syscall.Close(w.wakefd)
}
