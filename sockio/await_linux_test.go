//go:build linux

package sockio

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// The request reaches the peer, and the call returns only once the reply
// can be read: the Read after it needs no wait.
func TestWriteAwaitReadableWaitsForTheReply(t *testing.T) {
	c, s := pair(t)
	const delay = 50 * time.Millisecond
	served := make(chan error, 1)
	go func() {
		buf := make([]byte, 4)
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
			served <- errors.New("peer got " + string(buf))
			return
		}
		time.Sleep(delay)
		_, err := s.Write([]byte("pong"))
		served <- err
	}()
	start := time.Now()
	if err := c.WriteAwaitReadable([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < delay*8/10 {
		t.Fatalf("returned after %v, before the reply (sent after %v)", waited, delay)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond)) // the reply is there already
	buf := make([]byte, 8)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
}

// A peer that closes instead of replying ends the wait; the next Read
// reports the end of the stream.
func TestWriteAwaitReadablePeerCloses(t *testing.T) {
	c, s := pair(t)
	go func() {
		buf := make([]byte, 4)
		_, _ = io.ReadFull(s, buf)
		_ = s.Close()
	}()
	if err := c.WriteAwaitReadable([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after close: %v, want EOF", err)
	}
}

// A request larger than the socket buffers is written in full, waiting for
// the peer to drain it, and the reply still arrives.
func TestWriteAwaitReadableLargeRequest(t *testing.T) {
	c, s := pair(t)
	req := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	done := make(chan error, 1)
	go func() {
		got := make([]byte, len(req))
		if _, err := io.ReadFull(s, got); err != nil {
			done <- err
			return
		}
		if !bytes.Equal(got, req) {
			done <- errors.New("request corrupted")
			return
		}
		_, err := s.Write([]byte("ok"))
		done <- err
	}()
	if err := c.WriteAwaitReadable(req); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("reply %q, %v", buf, err)
	}
}

// A read deadline ends the wait without an error of its own; the next Read
// reports the timeout.
func TestWriteAwaitReadableDeadline(t *testing.T) {
	c, s := pair(t)
	go func() { _, _ = io.ReadFull(s, make([]byte, 4)) }()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if err := c.WriteAwaitReadable([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after the deadline: %v, want a timeout", err)
	}
}

// Writing on a connection already closed on this side fails.
func TestWriteAwaitReadableClosedConn(t *testing.T) {
	c, _ := pair(t)
	_ = c.Close()
	if err := c.WriteAwaitReadable([]byte("ping")); err == nil {
		t.Fatal("write on a closed connection succeeded")
	}
}

func TestWriteAwaitReadableAllocatesNothing(t *testing.T) {
	c, s := pair(t)
	msg := []byte("ping")
	buf := make([]byte, 4)
	go func() { // an echo peer, until the test closes the connection
		echo := make([]byte, 4)
		for {
			if _, err := io.ReadFull(s, echo); err != nil {
				return
			}
			if _, err := s.Write(echo); err != nil {
				return
			}
		}
	}()
	allocs := testing.AllocsPerRun(200, func() {
		if err := c.WriteAwaitReadable(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per request and reply, want 0", allocs)
	}
}
