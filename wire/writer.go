package wire

import (
	"encoding/binary"
	"io"
)

// Writer coalesces messages into one write per batch.
type Writer struct {
	wr   io.Writer
	pool *BufferPool
	own  *[]byte // borrowed buffer (pooled) or owned buffer
	buf  []byte  // pending bytes, backed by *own
}

// NewPooledWriter returns a Writer that borrows its buffer only while it
// holds unflushed data.
func NewPooledWriter(wr io.Writer, pool *BufferPool) *Writer {
	return &Writer{wr: wr, pool: pool}
}

// NewWriter returns a Writer owning a buffer of size bytes.
func NewWriter(wr io.Writer, size int) *Writer {
	b := make([]byte, size)
	return &Writer{wr: wr, own: &b, buf: b[:0]}
}

func (w *Writer) grab() {
	if w.own == nil {
		w.own = w.pool.Get()
		w.buf = (*w.own)[:0]
	}
}

// Buffered reports the number of unflushed bytes.
func (w *Writer) Buffered() int { return len(w.buf) }

// Available reports how many more bytes fit before a Write must send what
// is buffered (0 for a pooled writer holding no buffer).
func (w *Writer) Available() int { return cap(w.buf) - len(w.buf) }

// Write buffers p, flushing first when it would not fit; a p larger than
// the buffer is written through directly.
func (w *Writer) Write(p []byte) (int, error) {
	w.grab()
	if len(w.buf)+len(p) > cap(w.buf) {
		if err := w.flushBuffered(); err != nil {
			return 0, err
		}
		if len(p) > cap(w.buf) {
			return w.wr.Write(p)
		}
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// Append lets a message encoder (pgproto3's Encode(dst) style) append to the
// pending data without an intermediate copy.
func (w *Writer) Append(encode func(dst []byte) ([]byte, error)) error {
	w.grab()
	b, err := encode(w.buf)
	if err != nil {
		return err
	}
	if cap(b) != cap(w.buf) {
		// The encoder outgrew the buffer: write what it built and keep ours.
		w.buf = w.buf[:0]
		_, err := w.wr.Write(b)
		return err
	}
	w.buf = b
	return nil
}

// WriteHeader buffers a message header of the given type and body length.
func (w *Writer) WriteHeader(typ byte, bodyLen int) error {
	w.grab()
	if cap(w.buf)-len(w.buf) >= HeaderLen {
		// In place: a local array passed to Write would escape (1 alloc).
		w.buf = AppendHeader(w.buf, typ, bodyLen)
		return nil
	}
	var h [HeaderLen]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(bodyLen+4))
	_, err := w.Write(h[:])
	return err
}

func (w *Writer) flushBuffered() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.wr.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Flush writes pending data and, for a pooled writer, returns the buffer.
func (w *Writer) Flush() error {
	if w.own == nil {
		return nil
	}
	err := w.flushBuffered()
	if w.pool != nil {
		w.pool.Put(w.own)
		w.own = nil
		w.buf = nil
	}
	return err
}

// FlushWith hands the pending data to write instead of the underlying
// writer (a write that also waits for the reply), then empties the buffer
// as Flush does.
func (w *Writer) FlushWith(write func(p []byte) error) error {
	if w.own == nil {
		return nil
	}
	var err error
	if len(w.buf) > 0 {
		err = write(w.buf)
		w.buf = w.buf[:0]
	}
	if w.pool != nil {
		w.pool.Put(w.own)
		w.own = nil
		w.buf = nil
	}
	return err
}

// Reset drops pending data without writing it.
func (w *Writer) Reset() {
	if w.own == nil {
		return
	}
	w.buf = w.buf[:0]
	if w.pool != nil {
		w.pool.Put(w.own)
		w.own = nil
		w.buf = nil
	}
}
