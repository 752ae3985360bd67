package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// HeaderLen is the size of a message header: type byte and int32 length.
const HeaderLen = 5

// MaxMessageLen bounds a message's declared length, as PostgreSQL does
// (PQ_LARGE_MESSAGE_LIMIT); larger or negative lengths are protocol errors.
const MaxMessageLen = 1 << 30

// smallBufSize is what an idle pooled reader keeps inline: enough for the
// typical simple query or Parse/Bind/Execute/Sync batch without borrowing.
const smallBufSize = 512

// ErrTooLarge is returned by Message when the current message does not fit
// the buffer; the caller streams it instead.
var ErrTooLarge = errors.New("wire: message larger than buffer")

// ErrNoMessage means a Message/Stream call without a preceding Next.
var ErrNoMessage = errors.New("wire: no current message")

// ProtocolError is a framing violation by the peer.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "protocol violation: " + e.Msg }

// Reader reads framed messages from a connection.
type Reader struct {
	rd     io.Reader
	pool   *BufferPool
	big    *[]byte // borrowed or owned large buffer, nil when using small
	owned  bool    // big belongs to this reader for its lifetime
	buf    []byte  // current backing store: small[:] or *big
	r, w   int
	maxLen int

	hasMsg  bool
	typ     byte
	bodyLen int
	left    int // bytes of the current message still to stream

	small [smallBufSize]byte
}

// NewPooledReader returns a Reader that borrows large buffers from pool only
// while data is buffered.
func NewPooledReader(rd io.Reader, pool *BufferPool) *Reader {
	r := &Reader{rd: rd, pool: pool, maxLen: MaxMessageLen}
	r.buf = r.small[:]
	return r
}

// NewReader returns a Reader owning a buffer of size bytes.
func NewReader(rd io.Reader, size int) *Reader {
	b := make([]byte, size)
	r := &Reader{rd: rd, big: &b, owned: true, buf: b, maxLen: MaxMessageLen}
	return r
}

// SetMaxLen sets the largest accepted declared message length.
func (r *Reader) SetMaxLen(n int) { r.maxLen = n }

// Buffered reports how many bytes are buffered and not yet consumed.
func (r *Reader) Buffered() int { return r.w - r.r }

// capacity is the largest message Message can return whole.
func (r *Reader) capacity() int {
	if r.big != nil {
		return len(*r.big)
	}
	if r.pool != nil {
		return r.pool.Size()
	}
	return len(r.buf)
}

// release returns a borrowed buffer once everything buffered is consumed.
func (r *Reader) release() {
	if r.r != r.w {
		return
	}
	r.r, r.w = 0, 0
	if r.big != nil && !r.owned {
		r.pool.Put(r.big)
		r.big = nil
		r.buf = r.small[:]
	}
}

// Release drops a borrowed buffer if nothing is buffered. Call before a
// long blocking wait so an idle connection holds no large buffer.
func (r *Reader) Release() { r.release() }

// Reset makes an empty pooled reader read from rd, so idle connections can
// share readers (and their inline buffers) through a sync.Pool. It reports
// false, changing nothing, if r still holds data or a message.
func (r *Reader) Reset(rd io.Reader) bool {
	if r.r != r.w || r.hasMsg || r.owned {
		return false
	}
	r.release()
	r.rd = rd
	r.maxLen = MaxMessageLen
	return true
}

// ensure makes n contiguous bytes available from r.r, reading as needed.
func (r *Reader) ensure(n int) error {
	for r.w-r.r < n {
		if len(r.buf)-r.r < n {
			r.makeRoom(n)
		}
		m, err := r.rd.Read(r.buf[r.w:])
		r.w += m
		if err != nil {
			if r.w-r.r >= n {
				return nil
			}
			if err == io.EOF && r.w-r.r > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// makeRoom compacts the buffer or moves to a large one so n bytes fit.
func (r *Reader) makeRoom(n int) {
	if n > len(r.buf) && r.big == nil && r.pool != nil {
		b := r.pool.Get()
		copy(*b, r.buf[r.r:r.w])
		r.w -= r.r
		r.r = 0
		r.big = b
		r.buf = *b
		return
	}
	copy(r.buf, r.buf[r.r:r.w])
	r.w -= r.r
	r.r = 0
}

// Next reads the header of the next message and returns its type and body
// length. The previous message must have been consumed.
func (r *Reader) Next() (typ byte, bodyLen int, err error) {
	if r.hasMsg {
		return 0, 0, errors.New("wire: previous message not consumed")
	}
	if r.r == r.w {
		r.release()
	}
	if err := r.ensure(HeaderLen); err != nil {
		return 0, 0, err
	}
	typ = r.buf[r.r]
	n := int(int32(binary.BigEndian.Uint32(r.buf[r.r+1:])))
	if n < 4 || n-4 > r.maxLen {
		return 0, 0, &ProtocolError{Msg: fmt.Sprintf("invalid length %d for message type %q", n, typ)}
	}
	r.hasMsg = true
	r.typ = typ
	r.bodyLen = n - 4
	r.left = HeaderLen + r.bodyLen
	return typ, r.bodyLen, nil
}

// Fits reports whether the current message can be returned whole by Message.
func (r *Reader) Fits() bool { return HeaderLen+r.bodyLen <= r.capacity() }

// Message returns the whole current message (header and body) and consumes
// it. The slice is valid until the next call on r.
func (r *Reader) Message() ([]byte, error) {
	if !r.hasMsg || r.left != HeaderLen+r.bodyLen {
		return nil, ErrNoMessage
	}
	n := HeaderLen + r.bodyLen
	if n > r.capacity() {
		return nil, ErrTooLarge
	}
	if err := r.ensure(n); err != nil {
		return nil, err
	}
	msg := r.buf[r.r : r.r+n]
	r.r += n
	r.hasMsg = false
	r.left = 0
	return msg, nil
}

// Stream copies the rest of the current message to w through the buffer,
// in chunks, without holding it whole. w may be nil to discard.
func (r *Reader) Stream(w io.Writer) error {
	if !r.hasMsg {
		return ErrNoMessage
	}
	for r.left > 0 {
		if r.r == r.w {
			r.r, r.w = 0, 0
			if r.big == nil && r.pool != nil {
				r.makeRoom(len(r.buf) + 1)
			}
			m, err := r.rd.Read(r.buf)
			r.w = m
			if err != nil && m == 0 {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		chunk := min(r.left, r.w-r.r)
		if w != nil {
			if _, err := w.Write(r.buf[r.r : r.r+chunk]); err != nil {
				return err
			}
		}
		r.r += chunk
		r.left -= chunk
	}
	r.hasMsg = false
	return nil
}

// Skip consumes the rest of the current message.
func (r *Reader) Skip() error { return r.Stream(nil) }

// StartupPacket reads one untyped startup-phase packet (length + body) of at
// most maxLen bytes and returns its body, valid until the next call.
func (r *Reader) StartupPacket(maxLen int) ([]byte, error) {
	if r.hasMsg {
		return nil, errors.New("wire: previous message not consumed")
	}
	if err := r.ensure(4); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(r.buf[r.r:])))
	if n < 8 || n > maxLen {
		return nil, &ProtocolError{Msg: fmt.Sprintf("invalid startup packet length %d", n)}
	}
	if n > r.capacity() {
		return nil, &ProtocolError{Msg: "startup packet too large"}
	}
	if err := r.ensure(n); err != nil {
		return nil, err
	}
	body := r.buf[r.r+4 : r.r+n]
	r.r += n
	return body, nil
}
