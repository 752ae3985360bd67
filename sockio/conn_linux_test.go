//go:build linux

package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns a wrapped client end and the plain server end of a loopback
// TCP connection.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	w, ok := Wrap(c).(*Conn)
	if !ok {
		t.Fatalf("Wrap(%T) did not wrap", c)
	}
	t.Cleanup(func() { _ = w.Close(); _ = s.Close() })
	return w, s
}

func TestReadWaitsForDataAndSeesEOF(t *testing.T) {
	c, s := pair(t)
	go func() {
		time.Sleep(20 * time.Millisecond) // the first read must wait on the poller
		_, _ = s.Write([]byte("hello"))
		_ = s.Close()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "hello" {
		t.Fatalf("read %q, want hello", got)
	}
}

func TestLargeWriteWaitsForSlowReader(t *testing.T) {
	c, s := pair(t)
	// Far larger than the socket buffers, so Write meets EAGAIN and must
	// resume where it stopped.
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18)
	done := make(chan []byte)
	go func() {
		time.Sleep(20 * time.Millisecond)
		got, _ := io.ReadAll(s)
		done <- got
	}()
	n, err := c.Write(want)
	if err != nil || n != len(want) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
	}
	_ = c.Conn.(*net.TCPConn).CloseWrite()
	if got := <-done; !bytes.Equal(got, want) {
		t.Fatalf("peer got %d bytes, want %d (equal: false)", len(got), len(want))
	}
}

func TestReadDeadlineIsATimeout(t *testing.T) {
	c, _ := pair(t)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past deadline = %v, want a net.Error timeout", err)
	}
	// The connection stays usable once the deadline is cleared.
	_ = c.SetReadDeadline(time.Time{})
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestClosedConnReportsErrClosed(t *testing.T) {
	c, _ := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 8))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	_ = c.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read on closed conn = %v, want net.ErrClosed", err)
	}
}

func TestResetIsAnErrno(t *testing.T) {
	c, s := pair(t)
	// An abortive close (linger 0) makes the peer's next read ECONNRESET.
	_ = s.(*net.TCPConn).SetLinger(0)
	_ = s.Close()
	_, err := c.Read(make([]byte, 8))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after reset = %v, want ECONNRESET", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("error %v is not a read *net.OpError", err)
	}
}

func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("Wrap changed a net.Pipe end")
	}
}

func TestUnixSocketWrapped(t *testing.T) {
	path := t.TempDir() + "/s"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		s, err := ln.Accept()
		if err == nil {
			_, _ = s.Write([]byte("ok"))
			_ = s.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	w := Wrap(c)
	defer w.Close()
	if _, ok := w.(*Conn); !ok {
		t.Fatalf("unix conn not wrapped: %T", w)
	}
	got, err := io.ReadAll(w)
	if err != nil || string(got) != "ok" {
		t.Fatalf("read %q, %v", got, err)
	}
}

func TestReadWriteAllocateNothing(t *testing.T) {
	c, s := pair(t)
	msg := []byte("ping")
	buf := make([]byte, 16)
	echo := make([]byte, 16)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		n, err := s.Read(echo)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(echo[:n]); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per round trip through the wrapped conn, want 0", allocs)
	}
}
