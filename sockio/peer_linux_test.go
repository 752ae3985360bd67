//go:build linux

package sockio

import (
	"net"
	"testing"
	"time"
)

// TestPeerClosed: a live peer is not closed, with or without data waiting;
// a peer that wrote and then closed (a client's Terminate), or reset, is.
func TestPeerClosed(t *testing.T) {
	c, peer := pair(t)
	if PeerClosed(c) {
		t.Fatal("PeerClosed on a live connection")
	}
	if _, err := peer.Write([]byte("X\x00\x00\x00\x04")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if PeerClosed(c) {
		t.Fatal("PeerClosed with data waiting from a live peer")
	}
	peer.Close()
	waitPeerClosed(t, c)

	c2, peer2 := pair(t)
	_ = peer2.(*net.TCPConn).SetLinger(0)
	peer2.Close() // reset
	waitPeerClosed(t, c2)
	if PeerClosed(peer) {
		t.Fatal("PeerClosed on a connection closed at this end: it can't tell, so false")
	}
}

func waitPeerClosed(t *testing.T, c net.Conn) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !PeerClosed(c); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("PeerClosed false after the peer closed")
		}
	}
}
