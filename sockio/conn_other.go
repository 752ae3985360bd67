//go:build !linux

package sockio

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Wrap returns c unchanged: the raw path is Linux-only.
func Wrap(c net.Conn) net.Conn { return c }

// Watcher is unavailable off Linux: NewWatcher fails and idle clients keep
// their goroutine.
type Watcher struct{}

// NewWatcher reports that parking is unsupported here.
func NewWatcher() (*Watcher, error) { return nil, errors.New("sockio: no watcher on this platform") }

func (w *Watcher) Watch(rc syscall.RawConn, token uint64) error { return errors.ErrUnsupported }
func (w *Watcher) Unwatch(rc syscall.RawConn)                   {}
func (w *Watcher) Wait(timeout time.Duration, ready func(token uint64)) (bool, error) {
	return true, nil
}
func (w *Watcher) Close() {}
func (w *Watcher) Free()  {}

// PeerClosed can't tell on this platform.
func PeerClosed(c net.Conn) bool { return false }

// HasDataOrEOF can't tell on this platform; the first read or write of a
// dead connection reports it.
func HasDataOrEOF(c net.Conn) bool { return false }
