//go:build linux

package sockio

import (
	"errors"
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
type Watcher struct {
	epfd   int
	wakefd int // eventfd: a write ends the current and every later Wait
	events [128]syscall.EpollEvent

	closeOnce sync.Once
}

// tokenClosed is the eventfd's token; socket tokens must be non-zero.
const tokenClosed = 0

// NewWatcher returns an empty watcher. Close it, and after its last Wait
// returned, Free it.
func NewWatcher() (*Watcher, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	r, _, errno := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		_ = syscall.Close(epfd)
		return nil, errno
	}
	w := &Watcher{epfd: epfd, wakefd: int(r)}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, w.wakefd, &ev); err != nil {
		_ = syscall.Close(w.wakefd)
		_ = syscall.Close(epfd)
		return nil, err
	}
	return w, nil
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
	var cerr error
	err := rc.Control(func(fd uintptr) {
		cerr = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		if cerr == syscall.EEXIST { // fired once already: re-arm
			cerr = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		}
	})
	if err != nil {
		return err
	}
	return cerr
}

// Unwatch removes rc's socket; it is not an error if it was not watched.
func (w *Watcher) Unwatch(rc syscall.RawConn) {
	_ = rc.Control(func(fd uintptr) {
		var ev syscall.EpollEvent // non-nil for kernels before 2.6.9
		_ = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_DEL, int(fd), &ev)
	})
}

// Wait blocks until sockets are ready, timeout passes or the watcher is
// closed, calls ready with the token of each ready socket, and reports
// whether the watcher is closed.
func (w *Watcher) Wait(timeout time.Duration, ready func(token uint64)) (closed bool, err error) {
	ms := int(timeout / time.Millisecond)
	if timeout > 0 && ms == 0 {
		ms = 1
	}
	n, err := syscall.EpollWait(w.epfd, w.events[:], ms)
	if err == syscall.EINTR {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for i := range w.events[:n] {
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
	_ = syscall.Close(w.epfd)
	_ = syscall.Close(w.wakefd)
}
