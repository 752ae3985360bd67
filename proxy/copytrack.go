package proxy

// COPY FROM STDIN and the Syncs the server never answers.
//
// PostgreSQL ignores Sync and Flush while it is in copy-in mode. A client
// may send a Sync with the Execute that starts a COPY, before knowing it
// is one (tokio-postgres always does), or during the COPY data: the server
// answers neither with ReadyForQuery. The session counts the ReadyForQuery
// messages it owes the client from the Syncs it forwards, so those Syncs
// must not count, or in transaction pooling the backend is never released.

// copyTrack follows, on the client's message stream, what the server will
// make of Syncs around a COPY. Guarded by session.mu.
type copyTrack struct {
	in bool // the server is in copy-in mode: Sync and Flush are ignored
	// Since the last Query, FunctionCall or Execute: the Syncs forwarded
	// before any CopyDone or CopyFail (ignored if that command turns out
	// to be a COPY FROM STDIN), whether it came as an Execute, whether
	// the COPY's end was already sent, and whether a Sync followed it.
	syncsBeforeEnd int
	extended       bool
	endSent        bool
	syncAfterEnd   bool
}

// command records a client message that may start a COPY.
func (c *copyTrack) command(extended bool) {
	*c = copyTrack{extended: extended}
}

// sync records a Sync the server will see outside copy-in mode, unless
// the last command starts a COPY.
func (c *copyTrack) sync() {
	if c.endSent {
		c.syncAfterEnd = true
		return
	}
	c.syncsBeforeEnd++
}

// ended records the client's CopyDone or CopyFail.
func (c *copyTrack) ended() {
	c.in = false
	c.endSent = true
}

// copyInStarted runs at the server's CopyInResponse (or CopyBoth): the last
// command is a COPY, and the Syncs sent after it and before its end reach
// the server in copy-in mode. Callers hold s.mu.
func (s *session) copyInStarted() {
	c := &s.copyTrack
	if n := c.syncsBeforeEnd; n > 0 {
		s.pending = max(0, s.pending-n)
		if s.txMode {
			s.dropIgnoredSyncs(n)
		}
		if c.extended && !c.syncAfterEnd {
			// The extended-protocol batch still needs the Sync that
			// follows CopyDone.
			s.unsynced = true
		}
		c.syncsBeforeEnd = 0
	}
	c.in = !c.endSent
}

// copyInFailed runs at an ErrorResponse: the server has left copy-in mode
// (and, for an Execute, skips to the next Sync, which it answers).
// Callers hold s.mu.
func (s *session) copyInFailed() {
	s.copyTrack.in = false
}

// dropIgnoredSyncs removes from the reply queue the first n Syncs after
// the COPY's Execute or Query, the last command queued.
func (s *session) dropIgnoredSyncs(n int) {
	last := -1
	for i := s.reqHead; i < len(s.reqs); i++ {
		if k := s.reqs[i].kind; k == reqExecute || k == reqQuery {
			last = i
		}
	}
	if last < 0 {
		return
	}
	kept := s.reqs[:last+1]
	for _, r := range s.reqs[last+1:] {
		if r.kind == reqSync && n > 0 {
			n--
			continue
		}
		kept = append(kept, r)
	}
	clear(s.reqs[len(kept):])
	s.reqs = kept
}
