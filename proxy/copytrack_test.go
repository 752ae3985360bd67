package proxy

import (
	"slices"
	"testing"
)

func queuedKinds(s *session) []reqKind {
	var kinds []reqKind
	for _, r := range s.reqs[s.reqHead:] {
		kinds = append(kinds, r.kind)
	}
	return kinds
}

// The client's stream, as attachAndMark records it with statement mapping:
// Bind, Execute, Sync (early), then the server's CopyInResponse.
func TestCopyInStartedForgetsEarlySyncs(t *testing.T) {
	s := &session{txMode: true, mapStmt: true}
	s.push(request{kind: reqBind})
	s.copyTrack.command(true)
	s.push(request{kind: reqExecute})
	s.pending++
	s.copyTrack.sync()
	s.push(request{kind: reqSync})

	s.copyInStarted()
	if s.pending != 0 || !s.unsynced || !s.copyTrack.in {
		t.Fatalf("after CopyInResponse: pending %d unsynced %v in copy %v, want 0 true true", s.pending, s.unsynced, s.copyTrack.in)
	}
	if got, want := queuedKinds(s), []reqKind{reqBind, reqExecute}; !slices.Equal(got, want) {
		t.Fatalf("queue %v, want %v: the ignored Sync must leave it", got, want)
	}

	// CopyDone, then the Sync the server answers.
	s.copyTrack.ended()
	s.pending++
	s.copyTrack.sync()
	s.push(request{kind: reqSync})
	if s.copyTrack.in || s.copyTrack.syncsBeforeEnd != 0 {
		t.Fatalf("after CopyDone and Sync: %+v", s.copyTrack)
	}
	if got, want := queuedKinds(s), []reqKind{reqBind, reqExecute, reqSync}; !slices.Equal(got, want) {
		t.Fatalf("queue %v, want %v", got, want)
	}
}

// A client that sent all of it before the CopyInResponse reached the proxy:
// Execute, Sync, CopyData, CopyDone, Sync. Only the first Sync is ignored.
func TestCopyInStartedAfterTheWholeCopyWasSent(t *testing.T) {
	s := &session{txMode: true, mapStmt: true}
	s.copyTrack.command(true)
	s.push(request{kind: reqExecute})
	for range 2 {
		s.pending++
		s.copyTrack.sync()
		s.push(request{kind: reqSync})
		s.copyTrack.ended() // CopyData, CopyDone between the two Syncs
	}
	s.unsynced = false

	s.copyInStarted()
	if s.pending != 1 || s.unsynced || s.copyTrack.in {
		t.Fatalf("pending %d unsynced %v in copy %v, want 1 false false", s.pending, s.unsynced, s.copyTrack.in)
	}
	if got, want := queuedKinds(s), []reqKind{reqExecute, reqSync}; !slices.Equal(got, want) {
		t.Fatalf("queue %v, want %v", got, want)
	}
}

// A COPY by simple Query with no stray Sync changes nothing.
func TestCopyInStartedPlainQuery(t *testing.T) {
	s := &session{}
	s.copyTrack.command(false)
	s.pending = 1
	s.copyInStarted()
	if s.pending != 1 || s.unsynced || !s.copyTrack.in {
		t.Fatalf("pending %d unsynced %v in copy %v", s.pending, s.unsynced, s.copyTrack.in)
	}
}
