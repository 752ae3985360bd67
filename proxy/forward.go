package proxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"runtime"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/pool"
	"github.com/pgrecycle/pgrecycle/wire"
)

// resetTimeout bounds the proxy's own cleanup queries on a backend.
const resetTimeout = 5 * time.Second

// loop reads client messages and forwards them to the attached backend,
// attaching one at the first message of a transaction.
func (s *session) loop() error {
	for {
		waiting := false // visible to the park sweep (park.go)
		if s.cr.Buffered() == 0 {
			if waiting = s.armIdleDeadline() && s.canPark; waiting {
				s.idleEpoch.Add(1)
				s.idleWaiting.Store(true)
			}
			s.interruptible = true
		}
		typ, bodyLen, err := s.cr.Next()
		s.interruptible = false
		if waiting { // pipelined messages pay no atomic store
			s.idleWaiting.Store(false)
		}
		if err != nil {
			if isTimeout(err) && s.cr.Buffered() == 0 {
				if done, err := s.onIdleDeadline(); done {
					return err
				}
				if s.parkAsked.Swap(false) && s.tryPark() {
					return errParked
				}
				continue
			}
			var pe *wire.ProtocolError
			if errors.As(err, &pe) {
				s.endCause = pe.Error()
				s.sendErrorDetached(fatalf(codeProtocolViolation, "%s", pe.Error()))
			}
			return err
		}
		if s.killed.Load() {
			// KILL raced this request (it came with the client's resume
			// from parking, or behind the poke): it must not run.
			return s.endWith(killedError(), "admin KILL")
		}
		switch typ {
		case wire.MsgTerminate:
			_ = s.cr.Skip()
			return nil
		case wire.MsgQuery, wire.MsgParse, wire.MsgBind, wire.MsgDescribe, wire.MsgExecute, wire.MsgSync,
			wire.MsgFlush, wire.MsgClose, wire.MsgFunctionCall, wire.MsgCopyData, wire.MsgCopyDone, wire.MsgCopyFail:
		default:
			// What PostgreSQL does too; forwarding it would only get the
			// backend killed.
			s.endCause = fmt.Sprintf("invalid frontend message type %d", typ)
			s.finish()
			_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
			_ = s.sendError(fatalf(codeProtocolViolation, "invalid frontend message type %d", typ))
			return errSessionDone
		}
		if err := s.cr.Complete(); err != nil {
			return err
		}
		if typ == wire.MsgCopyData || typ == wire.MsgCopyDone || typ == wire.MsgCopyFail {
			s.mu.Lock()
			// An Execute not yet synced may be a COPY whose CopyInResponse
			// is still on its way: clients stream data behind it without
			// waiting (Postgrex does).
			ignored := s.backend == nil || s.pending == 0 && !s.unsynced && !s.copyTrack.in
			s.mu.Unlock()
			if ignored {
				// The COPY already failed (its backend may even be back in
				// the pool): the rest of its data is dropped, as the server
				// drops it. Forwarded, it would leave the backend waiting
				// for a Sync and tied to this client for good.
				if err := s.cr.Skip(); err != nil {
					return err
				}
				continue
			}
		}
		if typ == wire.MsgSync && s.txMode && s.answerLoneSync() {
			continue
		}
		if s.restoreNeeded {
			s.restoreStartupSettings()
		}
		b, owedUnread, err := s.attachAndMark(typ)
		if err != nil {
			var ce *clientError
			if errors.As(err, &ce) {
				if ce.Severity == "FATAL" {
					s.sendErrorDetached(ce)
					return errSessionDone
				}
				if err := s.failRequest(typ, ce); err != nil {
					return err
				}
				continue
			}
			return err
		}
		if owedUnread && b.W.Available() < wire.HeaderLen+bodyLen {
			// This write goes out to the server while replies are owed
			// and nothing reads them: a client pipelining more than the
			// buffer holds (libpq pipeline mode) without pausing at a
			// message boundary. A pump reads them meanwhile; else the
			// server, blocked writing its replies, stops reading, and
			// pgrecycle blocks writing to it, for good.
			s.startPump(b)
		}
		next, err := s.forward(b, typ, bodyLen)
		if err != nil {
			return err
		}
		switch next {
		case nextReadInline:
			s.flushAwaitingReply(b)
			s.readInline(b)
		case nextPump:
			s.startPump(b)
		}
	}
}

// nextStep is what the client goroutine does once forward has sent a
// batch in transaction pooling.
type nextStep uint8

const (
	nextClient     nextStep = iota // read the client's next message
	nextReadInline                 // replies are owed: relay them here (readInline)
	nextPump                       // a Flush awaits replies: a pump relays them
)

// afterBatch decides nextStep when the client has nothing more buffered.
func (s *session) afterBatch(b *pool.Backend) nextStep {
	if !s.txMode {
		return nextClient
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch mine := s.backend == b && !s.pumping; {
	case mine && s.pending > 0:
		return nextReadInline
	case mine && s.unsynced:
		// Messages without a Sync yet: the server sends an error (or,
		// after a Flush, results) at once, and the client may wait for
		// it before syncing, as with PostgreSQL.
		return nextPump
	}
	return nextClient
}

// waitBackend waits for a backend of the session's pool without a context
// or a fresh timer: a pooled slot holds both the pool's waiter and the
// query_wait_timeout timer, so the wait most transactions make under load
// allocates nothing.
func (s *session) waitBackend() (*pool.Backend, error) {
	slot, _ := s.srv.waitSlots.Get().(*waitSlot)
	if slot == nil {
		slot = &waitSlot{w: pool.NewWaiter(), t: time.NewTimer(time.Hour)}
		slot.t.Stop()
	}
	var timeout <-chan time.Time
	d := s.pool.Options().Pool.QueryWaitTimeout.D()
	if d > 0 {
		slot.t.Reset(d)
		timeout = slot.t.C
	}
	start := s.beginWait()
	s.mu.Lock()
	s.waitingOn = slot.w // a CancelRequest ends the wait (handleCancel)
	s.mu.Unlock()
	b, err := s.pool.AcquireWith(slot.w, timeout, s.srv.ctx.Done())
	s.mu.Lock()
	s.waitingOn = nil
	s.mu.Unlock()
	s.endWait(start)
	slot.t.Stop() // since Go 1.23 no stale tick is left in t.C after Stop
	s.srv.waitSlots.Put(slot)
	switch {
	case err == nil:
		return b, nil
	case errors.Is(err, pool.ErrClosed) || errors.Is(err, pool.ErrStopped) || s.srv.ctx.Err() != nil:
		return nil, fatalf(codeAdminShutdown, "pgrecycle is shutting down")
	case errors.Is(err, pool.ErrInterrupted) && s.killed.Load():
		s.endCause = "admin KILL"
		return nil, killedError()
	case errors.Is(err, pool.ErrInterrupted) && s.clientGone.Load():
		// sweepGoneClients: the request must not run after its client left.
		s.endCause = "client gone"
		return nil, fatalf(codeConnectionFailure, "pgrecycle: client gone while waiting for a server connection")
	case errors.Is(err, pool.ErrInterrupted):
		return nil, errorf(codeQueryCanceled, "canceling statement due to user request")
	case errors.Is(err, pool.ErrWaitTimeout):
		return nil, s.withConnectFailure(errorf(codeQueryCanceled,
			"pgrecycle: no server connection available within query_wait_timeout (%s)", d))
	}
	return nil, fromBackendError("ERROR", err)
}

// waitSlot is what a wait for a backend needs; Server.waitSlots pools them.
type waitSlot struct {
	w *pool.Waiter
	t *time.Timer
}

// attachAndMark returns the backend for the next client message, acquiring
// one if none is attached, and records what the message obliges the server
// to answer, in the same critical section the pump decides releases in.
// owedUnread reports that, before this message, replies were owed that
// nothing reads yet (transaction pooling, no pump).
func (s *session) attachAndMark(typ byte) (b *pool.Backend, owedUnread bool, err error) {
	s.mu.Lock()
	if s.backend == nil {
		s.mu.Unlock()
		if err := s.attach(); err != nil {
			return nil, false, err
		}
		s.mu.Lock()
	}
	b = s.backend
	owedUnread = s.txMode && !s.pumping && (s.pending > 0 || s.unsynced)
	switch typ {
	case wire.MsgQuery, wire.MsgFunctionCall:
		s.pending++
		s.copyTrack.command(false)
	case wire.MsgSync:
		if s.copyTrack.in {
			break // the server ignores Sync in copy-in mode: no ReadyForQuery
		}
		s.pending++
		s.copyTrack.sync()
		s.unsynced = false
		s.flushSent = false
		if s.txMode {
			s.push(request{kind: reqSync})
		}
	case wire.MsgFlush:
		if s.copyTrack.in {
			break // ignored in copy-in mode too
		}
		s.unsynced = true
		s.flushSent = true
	case wire.MsgCopyData, wire.MsgCopyDone, wire.MsgCopyFail:
		if s.pending == 0 {
			s.unsynced = true
		}
		if typ != wire.MsgCopyData {
			s.copyTrack.ended()
		}
	case wire.MsgExecute:
		s.unsynced = true
		s.copyTrack.command(true)
	default:
		s.unsynced = true
	}
	s.mu.Unlock()
	return b, owedUnread, nil
}

// attach acquires a backend, aligns its settings with the client's and
// starts the pump. A backend that turns out dead is replaced.
func (s *session) attach() error {
	if s.srv.draining.Load() {
		return fatalf(codeAdminShutdown, "pgrecycle is shutting down")
	}
	// Fast path, the common case: an idle backend and nothing paused, no
	// timer and no context to set up.
	var b *pool.Backend
	if !s.srv.ops.pausedAny.Load() {
		b = s.pool.TryAcquire()
	}
	var ctx context.Context
	for attempt := 0; ; attempt++ {
		if b == nil && ctx == nil && !s.srv.ops.pausedAny.Load() {
			var err error
			if b, err = s.waitBackend(); err != nil {
				return err
			}
		}
		if b == nil {
			start := s.beginWait() // a client held by PAUSE waits too (SHOW POOLS)
			if ctx == nil {
				var cancel context.CancelFunc
				ctx, cancel = s.waitContext()
				defer cancel()
				s.srv.cancels.holdWait(s, cancel) // a CancelRequest ends the wait
				defer s.srv.cancels.dropWait(s)
				if err := s.srv.waitResumed(ctx, s.db.Name); err != nil {
					s.endWait(start)
					return s.acquireError(ctx, err)
				}
			}
			var err error
			b, err = s.pool.Acquire(ctx)
			s.endWait(start)
			if err != nil {
				return s.acquireError(ctx, err)
			}
		}
		if err := s.applyParams(b); err != nil {
			var qe *pool.QueryError
			if errors.As(err, &qe) && !b.Broken {
				s.pool.Release(b)
				return errorf(qe.Code, "%s", qe.Message)
			}
			s.pool.Destroy(b, "error")
			b = nil
			if attempt < 3 {
				continue
			}
			return fromBackendError("ERROR", err)
		}
		b.InUse.Store(true)
		s.mu.Lock()
		s.backend = b
		s.pending = 0
		s.unsynced = false
		s.flushSent = false
		s.copyTrack = copyTrack{}
		s.stopping = false
		s.pumpDone = nil
		s.pumping = false
		s.txStatus = 'I'
		s.clearQueue()
		s.unnamedDealloc, s.portalDealloc = "", ""
		s.sw.w = b.W
		s.sw.err = nil
		s.mu.Unlock()
		if !s.txMode {
			// Session pooling: the server may speak at any time (LISTEN).
			s.startPump(b)
		}
		return nil
	}
}

// forward copies the current client message to the backend, streaming it
// if it is larger than the buffer, and flushes when the client has nothing
// more buffered: one write per batch. When replies are owed the flush is
// left to flushAwaitingReply, which also waits for them.
func (s *session) forward(b *pool.Backend, typ byte, bodyLen int) (nextStep, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if typ == wire.MsgQuery || typ == wire.MsgExecute {
		b.Queries.Add(1)
		s.queries.Add(1)
		if s.queryStart.Load() == 0 {
			// A transaction starts with a request, so one clock read
			// serves both.
			now := time.Now().UnixNano()
			s.queryStart.Store(now)
			if s.xactStart.Load() == 0 {
				s.xactStart.Store(now)
			}
		}
	}
	var kinds stmtKinds // of a Query or Parse in transaction pooling
	switch {
	case typ != wire.MsgQuery && typ != wire.MsgParse:
		if typ == wire.MsgBind && s.resets != nil && len(s.resets.stmts) > 0 {
			s.noteBoundReset(b)
		}
	case s.txMode:
		kinds = s.noteSessionSet(b, typ, bodyLen)
	case s.restoreOnReset:
		s.noteReset(b, typ, bodyLen, s.scanSessionState(typ, bodyLen).reset)
	}
	if (typ == wire.MsgQuery || typ == wire.MsgParse) && (kinds.ddl || !s.txMode) {
		s.freeDatabaseFor(typ, bodyLen) // DROP DATABASE and the like (dbcommand.go)
		s.freeRolesFor(typ, bodyLen)
	}
	handled := false
	if s.txMode {
		var err error
		if handled, err = s.forwardMapped(b, typ, bodyLen, kinds); err != nil {
			return nextClient, err
		}
	}
	if !handled {
		if s.cr.Fits() {
			msg, err := s.cr.Message()
			if err != nil {
				return nextClient, err
			}
			_, _ = s.sw.Write(msg)
		} else if err := s.cr.Stream(&s.sw); err != nil {
			return nextClient, err
		}
	}
	next := nextClient
	if s.cr.Buffered() == 0 {
		next = s.afterBatch(b)
		if next != nextReadInline && s.sw.err == nil {
			if err := b.W.Flush(); err != nil {
				s.sw.err = err
			}
		}
	}
	if s.sw.err != nil {
		// The pump sees the dead socket and reports to the client.
		b.Broken = true
		_ = b.Conn.Close()
	}
	return next, nil
}

// relayResult says what the server message relayOne handled meant.
type relayResult uint8

const (
	relayed      relayResult = iota // forwarded, rewritten or swallowed
	relayReady                      // a ReadyForQuery was forwarded (status in b.TxStatus)
	relayCopyIn                     // COPY FROM STDIN began: the server now waits for the client
	relayFailed                     // the backend is gone; backendFailed has dealt with it
	relaySkipped                    // an error: the server skips to a Sync the client has yet to send
)

// relayOne reads one message from the backend and relays it to the client,
// flushing the client writer when nothing more is buffered.
func (s *session) relayOne(b *pool.Backend, fatal **clientError) (result relayResult) {
	if b.R.Buffered() == 0 {
		_ = s.cw.Flush()
	}
	if s.clientGone.Load() {
		s.clientLost(b)
		return relayFailed
	}
	typ, _, err := b.R.Next()
	if err != nil {
		s.backendFailed(b, err, *fatal)
		return relayFailed
	}
	if !b.R.Fits() {
		if err := b.R.Stream(s.cw); err != nil {
			s.backendFailed(b, err, *fatal)
			return relayFailed
		}
		return relayed
	}
	msg, err := b.R.Message()
	if err != nil {
		s.backendFailed(b, err, *fatal)
		return relayFailed
	}
	if s.hiddenReplies.Load() > 0 && s.swallowHidden(b, typ, msg) {
		return relayed
	}
	if s.txMode && typ != wire.MsgReadyForQuery {
		r, tag := s.track(b, typ, msg[wire.HeaderLen:])
		if typ == wire.MsgErrorResponse {
			defer s.afterSkippedError(&result)
		}
		switch r {
		case replySwallow:
			return relayed
		case replyAsParseComplete:
			_, _ = s.cw.Write(parseCompleteMsg[:])
			return relayed
		case replyAsCommandComplete:
			// One tag per statement answered (tags joined by newlines).
			for tag != "" {
				one, rest, _ := strings.Cut(tag, "\n")
				_ = s.cw.Append(func(dst []byte) ([]byte, error) { return appendCommandComplete(dst, one), nil })
				tag = rest
			}
			return relayed
		case replyAsDuplicateStatement:
			e := errorf(codeDuplicatePreparedStatement, "prepared statement %q already exists", tag)
			_ = s.cw.Append(func(dst []byte) ([]byte, error) { return appendError(dst, e) })
			return relayed
		case replyWithClientName:
			_ = s.cw.Append(func(dst []byte) ([]byte, error) { return appendRenamedError(dst, msg, tag) })
			return relayed
		case replyAsStalePlan:
			_ = s.cw.Append(func(dst []byte) ([]byte, error) { return appendStaleBindError(dst, tag) })
			return relayed
		}
	}
	if (typ == wire.MsgCommandComplete || typ == wire.MsgErrorResponse || typ == wire.MsgReadyForQuery) && s.carryWatch.Load() {
		s.carryReply(b, typ, msg)
	}
	switch typ {
	case wire.MsgReadyForQuery:
		if len(msg) != wire.HeaderLen+1 {
			s.backendFailed(b, errors.New("malformed ReadyForQuery"), *fatal)
			return relayFailed
		}
		status := msg[wire.HeaderLen]
		b.TxStatus = status
		var now int64
		if start := s.queryStart.Swap(0); start != 0 {
			now = time.Now().UnixNano()
			s.queryNanos.Add(now - start)
		}
		if status == 'I' && s.ddlSeen.Load() && s.ddlSeen.Swap(false) {
			s.pool.InvalidateStatements()
		}
		if q := b.Queries.Load(); status == 'I' && q != b.QueriesAtTx {
			b.QueriesAtTx = q
			b.Transactions.Add(1)
			s.transactions.Add(1)
			if start := s.xactStart.Swap(0); start != 0 {
				if now == 0 {
					now = time.Now().UnixNano()
				}
				s.xactNanos.Add(now - start)
			}
		}
		_, _ = s.cw.Write(msg)
		return relayReady
	case wire.MsgCopyInResponse, wire.MsgCopyBoth:
		s.mu.Lock()
		s.copyInStarted()
		s.mu.Unlock()
		_, _ = s.cw.Write(msg)
		return relayCopyIn
	case wire.MsgParameterStatus:
		if k, v, ok := wire.ParameterStatus(msg[wire.HeaderLen:]); ok {
			name, value := string(k), string(v)
			b.SetParam(name, value)
			if _, tracked := s.want[name]; tracked || canonicalTracked(name) != "" {
				s.mu.Lock()
				if cur, ok := s.want[name]; !ok || cur != value {
					if s.wantSet != 0 {
						s.want = maps.Clone(s.want)
						s.wantSet = 0
					}
					s.want[name] = value
				}
				s.mu.Unlock()
			}
		}
	case wire.MsgNotification:
		s.ownNotification(b, msg)
	case wire.MsgErrorResponse:
		s.mu.Lock()
		s.copyInFailed()
		s.mu.Unlock()
		code, severity := wire.ErrorCode(msg[wire.HeaderLen:])
		if string(code) == codeUndefinedObject && isDroppedRoleError(msg[wire.HeaderLen:]) {
			s.vacateDroppedRole()
		}
		if string(severity) == "FATAL" || string(severity) == "PANIC" {
			// The server is about to close this connection. In
			// transaction pooling the client's session survives: it is
			// told with an ERROR after the close is seen.
			b.Broken = true
			if s.txMode {
				*fatal = &clientError{Severity: "ERROR", Code: codeConnectionFailure,
					Message: "pgrecycle: server connection lost: " + string(code) + " " + wire.ErrorMessage(msg[wire.HeaderLen:])}
				return relayed
			}
			// Session pooling: the server's FATAL is the client's, and
			// the close that follows must not add a second one.
			*fatal = &clientError{relayed: true}
		}
	}
	_, _ = s.cw.Write(msg)
	return relayed
}

// afterSkippedError turns the result of relaying an ErrorResponse into
// relaySkipped when the error left nothing owed (track: skipped).
func (s *session) afterSkippedError(result *relayResult) {
	s.mu.Lock()
	if s.skipped {
		s.skipped = false
		if *result == relayed {
			*result = relaySkipped
		}
	}
	s.mu.Unlock()
}

// readyReceived records a ReadyForQuery: one fewer owed to the client.
// Callers hold s.mu.
func (s *session) readyReceived(b *pool.Backend) {
	if s.pending > 0 {
		s.pending--
	}
	if s.txMode {
		s.completeThroughSync(b)
	}
	s.txStatus = b.TxStatus
	if b.PathLocal && b.TxStatus == 'I' {
		b.PathScope, b.PathLocal = "", false // SET LOCAL search_path ended
	}
}

// readInline relays the server's replies on the client goroutine until
// every ReadyForQuery owed has arrived: in transaction pooling the common
// request-reply round trip then needs no second goroutine and no hand-off.
// The backend is released at ReadyForQuery 'I'; COPY FROM STDIN, or a
// Flush that still awaits replies, hands over to the pump.
func (s *session) readInline(b *pool.Backend) {
	var fatal *clientError
	for {
		switch s.relayOne(b, &fatal) {
		case relayFailed:
			return
		case relaySkipped:
			_ = s.cw.Flush()
			return // the client's loop reads the rest of its batch
		case relayCopyIn:
			_ = s.cw.Flush()
			s.startPump(b)
			return
		case relayReady:
			s.mu.Lock()
			s.readyReceived(b)
			done := s.pending == 0
			release := done && !s.unsynced && b.TxStatus == 'I' && !s.stopping
			if release && b.Pinned.Load() {
				// Asked without the lock (a cancel may want it), once the
				// client has its replies; its next request waits in its
				// socket meanwhile.
				s.mu.Unlock()
				_ = s.cw.Flush()
				held := s.stillPinned(b)
				s.mu.Lock()
				release = !held && !s.stopping
			}
			if release && b.CancelInFlight() {
				// A cancel on its way to b must not reach another
				// client's query: the client keeps b meanwhile, and
				// deliverCancel releases it (releaseAfterCancel).
				release = false
			}
			needPump := done && !release && s.unsynced
			if release {
				s.backend = nil
			}
			s.mu.Unlock()
			if !done {
				continue
			}
			if release {
				// The replies are all in the client writer already: the next
				// waiter can have the backend while they are written out.
				// A waiter that got it runs first: its query reaches the
				// backend now rather than after our write, so the backend
				// isn't idle for that long (most visible with one P).
				if s.releaseBackend(b) {
					runtime.Gosched()
				}
				_ = s.cw.Flush()
				return
			}
			_ = s.cw.Flush()
			if needPump {
				s.startPump(b)
			}
			return
		}
	}
}

// awaitWriter is a connection that can write a request and wait for its
// reply to be readable in one netpoller wait (sockio.Conn).
type awaitWriter interface {
	WriteAwaitReadable(p []byte) error
}

// flushAwaitingReply writes the batch forward left buffered and waits for
// the reply, so readInline's first read finds it.
func (s *session) flushAwaitingReply(b *pool.Backend) {
	if s.sw.err != nil {
		return // the backend is closed: readInline's read reports it
	}
	if s.cw.Buffered() > 0 {
		_ = s.cw.Flush() // nothing owed to the client waits behind the reply
	}
	var err error
	if aw, ok := b.Conn.(awaitWriter); ok {
		err = b.W.FlushWith(aw.WriteAwaitReadable)
	} else {
		err = b.W.Flush()
	}
	if err != nil {
		// As in forward: readInline's read fails and tells the client.
		s.sw.err = err
		b.Broken = true
		_ = b.Conn.Close()
	}
}

// startPump hands the backend's replies to a goroutine of their own, for
// when the server may speak while the client goroutine waits on the
// client: session pooling (notifications), COPY FROM STDIN, Flush.
func (s *session) startPump(b *pool.Backend) {
	done := make(chan struct{})
	s.mu.Lock()
	s.pumpDone = done
	s.pumping = true
	s.mu.Unlock()
	go s.pump(b, done)
}

// pump forwards the backend's messages to the client until the backend is
// released, fails, or the session stops it.
func (s *session) pump(b *pool.Backend, done chan struct{}) {
	defer close(done)
	var fatal *clientError
	for {
		switch s.relayOne(b, &fatal) {
		case relayFailed:
			return
		case relayReady:
			status := b.TxStatus
			s.mu.Lock()
			s.readyReceived(b)
			release := s.txMode && s.pending == 0 && !s.unsynced && status == 'I' && !s.stopping
			pinned := release && b.Pinned.Load()
			idle := s.pending == 0 && !s.unsynced
			s.mu.Unlock()
			if idle && (s.srv.draining.Load() || (status != 'I' && s.pool.Options().Pool.IdleTransactionTimeout > 0) ||
				(status == 'I' && !s.txMode && s.pool.Options().Pool.ClientIdleTimeout > 0)) {
				// The client goroutine armed its read deadline before this
				// state was known: let it re-arm (or end the session).
				s.poke()
			}
			if pinned {
				// The client keeps its backend. The pump leaves, so the
				// client's next request is relayed inline, and readInline
				// checks the pin at its end (here the client goroutine
				// may be writing to b; it can't be asked).
				if s.leavePump(b) {
					// The client goroutine armed its wait before the pin
					// was known: it re-arms it as an idle client on a
					// backend it keeps, watched for notifications and
					// client_idle_timeout.
					s.poke()
					return
				}
				continue
			}
			if release && b.R.Buffered() == 0 && s.tryRelease(b) {
				return
			}
		}
	}
}

// leavePump ends the pump of a pinned backend idle outside a transaction,
// once the client has its replies, unless the client sent more meanwhile.
func (s *session) leavePump(b *pool.Backend) bool {
	_ = s.cw.Flush()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != 0 || s.unsynced || s.stopping || s.backend != b || b.R.Buffered() > 0 {
		return false
	}
	s.pumping = false
	s.pumpDone = nil
	return true
}

// tryRelease hands the backend back after the client got its
// ReadyForQuery, unless the client sent more meanwhile.
func (s *session) tryRelease(b *pool.Backend) bool {
	_ = s.cw.Flush()
	s.mu.Lock()
	if s.pending != 0 || s.unsynced || s.stopping || s.backend != b {
		s.mu.Unlock()
		return false
	}
	s.backend = nil
	s.mu.Unlock()
	// Wait out a client-side write that may still be finishing on b.
	s.wmu.Lock()
	s.wmu.Unlock()
	s.releaseBackend(b)
	if s.srv.draining.Load() || s.pool.Options().Pool.ClientIdleTimeout > 0 {
		s.poke()
	}
	return true
}

// releaseAfterCancel hands back a backend that its client kept, idle,
// only while a cancel was on its way to it (readInline), unless the client
// has sent more since.
func (s *session) releaseAfterCancel(b *pool.Backend) {
	s.mu.Lock()
	idle := s.txMode && s.backend == b && !s.pumping && s.pending == 0 && !s.unsynced &&
		b.TxStatus == 'I' && !s.stopping && !b.Pinned.Load()
	if idle {
		s.backend = nil
	}
	s.mu.Unlock()
	if !idle {
		return
	}
	s.wmu.Lock()
	s.wmu.Unlock()
	s.releaseBackend(b)
	if s.srv.draining.Load() || s.pool.Options().Pool.ClientIdleTimeout > 0 {
		s.poke() // the client goroutine's wait is now a detached one
	}
}

// backendFailed handles a backend lost under a client: the backend is
// closed. In transaction pooling, outside a transaction and with at most
// one request owed, the client gets an ERROR (class 08) and a
// ReadyForQuery for each request it is owed, and keeps its session;
// otherwise, and in session pooling, the session ends with the error.
func (s *session) backendFailed(b *pool.Backend, err error, fatal *clientError) {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return
	}
	// Transaction pooling rides through the loss of a backend only for a
	// single request outside a transaction: it fails, and the next one
	// runs on another backend. Inside a transaction the client's later
	// statements would run in autocommit, committing half of it; with
	// requests pipelined behind the lost one, those never ran and can't be
	// answered truthfully. Then the client is disconnected, as PostgreSQL
	// would.
	rideThrough := s.txMode && s.pending <= 1 && !s.unsynced && (s.txStatus == 'I' || s.txStatus == 0)
	s.mu.Unlock()
	b.Broken = true
	cause, reason := "backend lost", "error"
	told := fatal != nil && fatal.relayed // the server's FATAL is the one error
	if s.srv.terminating.Load() {
		// Shutdown cut the read at shutdown_timeout (poke).
		rideThrough = false
		if !told {
			fatal = s.srv.shutdownTimeoutError()
		}
		cause, reason = "shutdown", "shutdown"
	} else if s.killed.Load() {
		rideThrough = false // so did the admin console's KILL
		if !told {
			fatal = killedError()
		}
		cause, reason = "admin KILL", "admin"
	} else {
		s.log.Warn("backend connection lost", zap.Uint32("pid", b.PID), zap.Error(err), zap.Bool("client_kept", rideThrough))
	}
	if fatal == nil {
		fatal = &clientError{Severity: "ERROR", Code: codeConnectionFailure,
			Message: "pgrecycle: server connection lost: " + err.Error()}
	}
	if !rideThrough {
		s.endCause = cause
		if told {
			_ = s.cw.Flush() // the server's FATAL, if still buffered
		} else {
			fatal.Severity = "FATAL"
			s.cw.Reset()
			_ = s.sendError(fatal)
		}
		s.mu.Lock()
		s.backend = nil
		s.mu.Unlock()
		s.wmu.Lock()
		s.wmu.Unlock()
		s.pool.Destroy(b, reason)
		_ = s.raw.Close()
		return
	}
	// Each request still owed (one, or more sent meanwhile) fails on its
	// own: an error, then its ReadyForQuery.
	sent := 0
	for {
		s.mu.Lock()
		owed := s.pending
		if owed <= sent || s.stopping {
			s.backend = nil
			s.pending = 0
			s.unsynced = false
			s.clearQueue()
			s.mu.Unlock()
			break
		}
		s.mu.Unlock()
		for ; sent < owed; sent++ {
			_ = s.cw.Append(func(dst []byte) ([]byte, error) { return appendError(dst, fatal) })
			_ = s.cw.Append(func(dst []byte) ([]byte, error) { return appendReady(dst, 'I'), nil })
		}
		_ = s.cw.Flush()
	}
	s.wmu.Lock()
	s.wmu.Unlock()
	s.pool.Destroy(b, "error")
}

// clientLost ends the session of a client that a write found gone, with
// its backend still busy: the backend is closed rather than read to the end
// of its reply for nobody (a large result took minutes of CPU), and the
// server stops the query when it next writes.
func (s *session) clientLost(b *pool.Backend) {
	s.cw.Reset() // before backend is nil: then cleanup may use cw
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return
	}
	s.endCause = "client gone" // under mu: serve reads it once finish has seen backend nil
	s.backend = nil
	s.mu.Unlock()
	s.wmu.Lock()
	s.wmu.Unlock()
	s.pool.Destroy(b, "client-gone")
	_ = s.raw.Close()
}

// finish detaches the backend when the client goes away: a clean backend
// is reset (session pooling) or rolled back and returned; anything else is
// closed.
func (s *session) finish() {
	s.mu.Lock()
	b := s.backend
	if b == nil {
		s.mu.Unlock()
		return
	}
	s.stopping = true
	done := s.pumpDone
	s.mu.Unlock()
	if done != nil {
		// Interrupt the pump's read and any write to a client that left;
		// a pump blocked writing to a client that stopped reading gets a
		// moment, not forever (an expired deadline would also break TLS).
		_ = b.Conn.SetReadDeadline(time.Unix(1, 0))
		_ = s.raw.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		<-done
		_ = b.Conn.SetReadDeadline(time.Time{})
	}
	s.mu.Lock()
	b = s.backend
	s.backend = nil
	clean := s.pending == 0 && !s.unsynced
	s.mu.Unlock()
	if s.ddlSeen.Load() && s.ddlSeen.Swap(false) {
		// DDL in a transaction the client left: no ReadyForQuery 'I' will
		// renew shared statements, and the rollback below (or the close)
		// undoes objects they may name (a type, a table): the next Parse
		// of their text must reach the server again.
		s.pool.InvalidateStatements()
	}
	if b == nil {
		return
	}
	s.wmu.Lock()
	s.wmu.Unlock()
	if !clean || b.Broken || b.R.Buffered() > 0 || b.W.Buffered() > 0 {
		s.pool.Destroy(b, "client-gone")
		return
	}
	_ = b.Conn.SetDeadline(time.Now().Add(resetTimeout))
	ok := true
	if b.TxStatus != 'I' {
		if st, err := pool.SimpleQuery(b, "ROLLBACK", nil); err != nil || st != 'I' {
			ok = false
		}
	}
	if ok {
		ok = s.runResetQuery(b)
	}
	if ok && s.txMode && b.SettingsOwner == s.id && b.SettingsDirty {
		// Now rather than when another client gets it: the client's
		// advisory locks and temporary tables go with it, as they would
		// on PostgreSQL, instead of blocking others meanwhile.
		ok = resetSessionSettings(b) == nil
	}
	_ = b.Conn.SetDeadline(time.Time{})
	if !ok || b.Broken {
		s.pool.Destroy(b, "client-gone")
		return
	}
	s.pool.Release(b)
}

// releaseBackend hands a backend back to the pool at the end of a
// transaction (transaction pooling), after server_reset_query when
// server_reset_query_always asks for it, as PgBouncer does. It reports
// whether a waiting client got the backend.
func (s *session) releaseBackend(b *pool.Backend) bool {
	if opts := s.pool.Options().Pool; opts.ServerResetQueryAlways && opts.ServerResetQuery != "" {
		_ = b.Conn.SetDeadline(time.Now().Add(resetTimeout))
		ok := s.runResetQuery(b)
		_ = b.Conn.SetDeadline(time.Time{})
		if !ok {
			s.pool.Destroy(b, "error")
			return false
		}
	}
	return s.pool.Release(b)
}

// runResetQuery runs server_reset_query on b where it applies (session
// pooling, or server_reset_query_always) and reports whether b is still
// clean and idle.
func (s *session) runResetQuery(b *pool.Backend) bool {
	opts := &s.pool.Options().Pool
	if opts.ServerResetQuery == "" || s.txMode && !opts.ServerResetQueryAlways {
		return true
	}
	if st, err := pool.SimpleQuery(b, opts.ServerResetQuery, nil); err != nil || st != 'I' {
		return false
	}
	b.SetProxySet(nil)
	q := strings.ToLower(opts.ServerResetQuery)
	if strings.Contains(q, "discard all") {
		b.ClearSessionState() // it includes SET SESSION AUTHORIZATION DEFAULT and RESET ALL
	}
	if strings.Contains(q, "discard all") || strings.Contains(q, "deallocate all") {
		b.Statements.Clear()
	}
	return true
}

// answerLoneSync answers a Sync with nothing before it, in transaction
// pooling with no backend attached, as the server would: ReadyForQuery,
// idle. It is the second Sync of a pipeline whose batch failed before
// reaching a server (query_wait_timeout: libpq pipelines and psycopg's
// pipeline() send one), or a driver's ping; before, it waited for a
// backend, and failed again with the same error.
func (s *session) answerLoneSync() bool {
	s.mu.Lock()
	detached := s.backend == nil
	s.mu.Unlock()
	if !detached {
		return false
	}
	if err := s.cr.Skip(); err != nil {
		return true // the next read reports it
	}
	_ = s.cw.Append(func(dst []byte) ([]byte, error) { return appendReady(dst, 'I'), nil })
	if s.cr.Buffered() == 0 {
		_ = s.cw.Flush()
	}
	return true
}

// failRequest answers a request that got no backend: ErrorResponse, the
// rest of the extended-protocol batch skipped up to Sync, ReadyForQuery.
func (s *session) failRequest(typ byte, ce *clientError) error {
	if err := s.cr.Skip(); err != nil {
		return err
	}
	if err := s.sendError(ce); err != nil {
		return err
	}
	s.log.Info("request failed", zap.String("code", ce.Code), zap.String("message", ce.Message))
	for typ != wire.MsgQuery && typ != wire.MsgSync && typ != wire.MsgFunctionCall {
		var err error
		typ, _, err = s.cr.Next()
		if err != nil {
			return err
		}
		if typ == wire.MsgTerminate {
			return errSessionDone
		}
		if err := s.cr.Skip(); err != nil {
			return err
		}
	}
	if err := s.cw.Append(func(dst []byte) ([]byte, error) { return appendReady(dst, 'I'), nil }); err != nil {
		return err
	}
	return s.cw.Flush()
}

// sendErrorDetached reports an error when no pump owns the client writer.
func (s *session) sendErrorDetached(ce *clientError) {
	s.mu.Lock()
	attached := s.backend != nil
	s.mu.Unlock()
	if !attached {
		_ = s.sendError(ce)
	}
}

// armIdleDeadline sets the read deadline for the wait that is about to
// start: client_idle_timeout outside a transaction,
// idle_transaction_timeout inside one, none otherwise. It reports whether
// no backend is attached, i.e. whether the client may park if the wait
// lasts. A resumed parked client keeps the idleSince it parked with.
func (s *session) armIdleDeadline() (detached bool) {
	opts := &s.pool.Options().Pool // not a copy: once per batch
	s.mu.Lock()
	b := s.backend
	attached := b != nil
	inTx := attached && s.pending == 0 && !s.unsynced && s.txStatus != 'I' && s.txStatus != 0
	idleSession := attached && (!s.txMode || b.Pinned.Load()) && s.pending == 0 && !s.unsynced && s.txStatus == 'I'
	pinnedUnread := idleSession && s.txMode && !s.pumping && b.R.Buffered() > 0
	s.mu.Unlock()
	var limit time.Duration
	switch {
	case inTx:
		limit = opts.IdleTransactionTimeout.D()
	case !attached || idleSession:
		limit = opts.ClientIdleTimeout.D()
	}
	if s.srv.draining.Load() && (!attached || idleSession) || s.killed.Load() {
		limit = time.Nanosecond
	}
	pinnedIdle := idleSession && s.txMode
	keep := (s.resumed && !attached || s.watchWoke && (inTx || pinnedIdle)) && !s.idleSince.IsZero()
	s.resumed, s.watchWoke = false, false
	switch {
	case limit <= 0:
		s.idleSince = time.Time{} // no clock read per transaction when no timeout applies
	case !keep:
		s.idleSince = time.Now()
	}
	s.idleLimit = limit
	// In transaction pooling nothing reads a backend while its client
	// idles in a transaction: a deadline wakes the client goroutine to
	// look (checkIdleBackend). One armed in an earlier transaction is kept,
	// and one left from a transaction that ended fires once, harmlessly:
	// a busy client pays about one timer per second, not one per statement.
	// A client idle between transactions on a backend it keeps (pin.go)
	// may be waiting for notifications, which are looked for more often.
	watch := inTx && s.txMode || pinnedIdle
	interval := backendWatchInterval
	watchSocket := false
	switch {
	case pinnedUnread:
		interval = 0 // a notification came with the last reply
	case pinnedIdle && s.srv.parked != nil:
		watchSocket = true // the watcher wakes the wait (pinwatch.go)
	case pinnedIdle:
		interval = pinnedWatchInterval
	}
	if !watchSocket {
		s.unwatchPinnedBackend()
	}
	switch {
	case limit > 0:
		deadline := s.idleSince.Add(limit)
		if watch && limit > interval {
			deadline = time.Now().Add(interval)
		}
		_ = s.conn.SetReadDeadline(deadline)
		s.armed, s.watchArmed = true, false
	case watch:
		if !s.armed || pinnedIdle {
			_ = s.conn.SetReadDeadline(time.Now().Add(interval))
			s.armed, s.watchArmed = true, true
		}
	case s.armed && !s.watchArmed:
		_ = s.conn.SetReadDeadline(time.Time{})
		s.armed = false
	}
	// Armed after the deadline, which a report at once must override.
	if watchSocket && !s.watchPinnedBackend(b) {
		_ = s.conn.SetReadDeadline(time.Now().Add(pinnedWatchInterval))
		s.armed, s.watchArmed = true, limit <= 0
	}
	return !attached
}

// onIdleDeadline decides what a read deadline means: shutdown, an idle
// timeout, or a poke to re-evaluate. done reports that the session ends.
func (s *session) onIdleDeadline() (done bool, err error) {
	s.mu.Lock()
	attached := s.backend != nil
	inTx := attached && s.pending == 0 && !s.unsynced && s.txStatus != 'I'
	idleSession := attached && (!s.txMode || s.backend.Pinned.Load()) && s.pending == 0 && !s.unsynced && s.txStatus == 'I'
	s.mu.Unlock()
	_ = s.conn.SetReadDeadline(time.Time{})
	s.armed, s.watchArmed = false, false
	expired := s.idleLimit > 0 && time.Since(s.idleSince) >= s.idleLimit
	var ce *clientError
	var cause string
	switch {
	case s.srv.terminating.Load():
		ce, cause = s.srv.shutdownTimeoutError(), "shutdown"
	case s.killed.Load():
		ce, cause = killedError(), "admin KILL"
	case s.srv.draining.Load() && (!attached || idleSession):
		ce, cause = fatalf(codeAdminShutdown, "terminating connection: pgrecycle is shutting down"), "shutdown"
	case expired && inTx:
		ce = fatalf("25P03", "terminating connection due to idle-in-transaction timeout (idle_transaction_timeout = %s)", s.idleLimit)
		cause = "idle_transaction_timeout"
	case expired && (!attached || idleSession):
		ce = fatalf("57P05", "terminating connection due to idle timeout (client_idle_timeout = %s)", s.idleLimit)
		cause = "client_idle_timeout"
	case s.txMode && (inTx || idleSession): // idleSession: on a backend it keeps
		s.watchWoke = true // the idle clock goes on
		return s.checkIdleBackend(), errSessionDone
	default:
		return false, nil
	}
	return true, s.endWith(ce, cause)
}

// endWith ends the session: it detaches (rolling back an open
// transaction), then tells the client why.
func (s *session) endWith(ce *clientError, cause string) error {
	s.finish() // detach: rolls back an open transaction, frees the writer
	// After finish: a pump that ended the session on its own (shutdown
	// cuts its read too) has set its cause, and has exited.
	s.endCause = cause
	_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = s.sendError(ce)
	return errSessionDone
}

// backendWatchInterval is how often a backend attached to a client idle
// in a transaction (transaction pooling, where nothing reads it then) is
// checked for a message: the server may have ended the session (a
// terminate, idle_in_transaction_session_timeout, a crash).
const backendWatchInterval = time.Second

// pinnedWatchInterval is how often the backend a client keeps between
// transactions (transaction pooling, pin.go) is checked while the client
// idles: notifications for its LISTEN reach it within this delay.
const pinnedWatchInterval = 50 * time.Millisecond

// checkIdleBackend relays what the backend of a client idle in a
// transaction has sent meanwhile. When the backend is gone, the client is
// told and disconnected, as PostgreSQL would (backendFailed), and the
// backend's slot serves the others; it reports whether the session ended.
func (s *session) checkIdleBackend() bool {
	s.mu.Lock()
	b := s.backend
	quiet := b == nil || s.pumping || s.pending != 0 || s.unsynced
	s.mu.Unlock()
	if quiet {
		return false
	}
	var fatal *clientError
	for pool.HasDataOrEOF(b) {
		if s.relayOne(b, &fatal) == relayFailed {
			return true
		}
	}
	_ = s.cw.Flush()
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
