package pool

import (
	"syscall"
	"testing"
	"time"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// TestBackendSocketOptions: tcp_keepalive, tcp_keepidle, tcp_keepintvl,
// tcp_keepcnt and tcp_user_timeout reach the backend sockets.
func TestBackendSocketOptions(t *testing.T) {
	leakCheck(t)
	opts := testOptions(t, pgtest.Shared(t), 1)
	opts.Listen.TCPKeepalive = true
	opts.Listen.TCPKeepIdle = config.Duration(7 * time.Second)
	opts.Listen.TCPKeepIntvl = config.Duration(3 * time.Second)
	opts.Listen.TCPKeepCnt = 4
	opts.Listen.TCPUserTimeout = config.Duration(9 * time.Second)
	p := newPool(t, opts)
	b := acquire(t, p)
	defer p.Release(b)
	tc, ok := b.Conn.(syscall.Conn)
	if !ok {
		t.Fatalf("backend connection is %T, want a socket", b.Conn)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	get := func(level, opt int) int {
		var v int
		var gerr error
		if err := rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil {
			t.Fatal(err)
		}
		if gerr != nil {
			t.Fatal(gerr)
		}
		return v
	}
	for _, c := range []struct {
		name       string
		level, opt int
		want       int
	}{
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 7},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 3},
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 4},
		{"TCP_USER_TIMEOUT", syscall.IPPROTO_TCP, 0x12, 9000},
	} {
		if got := get(c.level, c.opt); got != c.want {
			t.Errorf("%s = %d, want %d", c.name, got, c.want)
		}
	}
}
