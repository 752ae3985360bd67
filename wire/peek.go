package wire

import "fmt"

// Peek returns the first n bytes of the current, not yet consumed message
// (header included) without consuming them, so the proxy can rewrite a
// message's leading names and stream the rest. n is capped at the message
// size; it must fit the buffer.
func (r *Reader) Peek(n int) ([]byte, error) {
	if !r.hasMsg || r.left != HeaderLen+r.bodyLen {
		return nil, ErrNoMessage
	}
	n = min(n, HeaderLen+r.bodyLen)
	if n > r.capacity() {
		return nil, ErrTooLarge
	}
	if err := r.ensure(n); err != nil {
		return nil, err
	}
	return r.buf[r.r : r.r+n], nil
}

// Consume drops n bytes of the current message that Peek returned; Stream
// then forwards the rest.
func (r *Reader) Consume(n int) error {
	if !r.hasMsg || n > r.left || n > r.w-r.r {
		return fmt.Errorf("wire: consume %d bytes beyond the peeked message", n)
	}
	r.r += n
	r.left -= n
	if r.left == 0 {
		r.hasMsg = false
	}
	return nil
}

// ReadAll returns the whole current message, allocating when it is larger
// than the buffer. Only for the rare large message the proxy must keep
// (a named Parse of a very long query).
func (r *Reader) ReadAll() ([]byte, error) {
	if r.Fits() {
		return r.Message()
	}
	// Grow with the data that actually arrives, not the declared length.
	out := make([]byte, 0, min(HeaderLen+r.bodyLen, 64<<10))
	w := appendWriter{&out}
	if err := r.Stream(w); err != nil {
		return nil, err
	}
	return out, nil
}

type appendWriter struct{ b *[]byte }

func (w appendWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}

// PeekBytes returns the next n buffered bytes, reading as needed, without
// consuming them; for the startup phase (e.g. to recognise a TLS
// ClientHello) where there is no current message.
func (r *Reader) PeekBytes(n int) ([]byte, error) {
	if r.hasMsg {
		return nil, ErrNoMessage
	}
	if err := r.ensure(n); err != nil {
		return nil, err
	}
	return r.buf[r.r : r.r+n], nil
}

// TakeBuffered returns a copy of everything buffered and empties the
// buffer, so another reader (a TLS layer) can start with those bytes.
func (r *Reader) TakeBuffered() []byte {
	out := append([]byte(nil), r.buf[r.r:r.w]...)
	r.r, r.w = 0, 0
	r.release()
	return out
}

// Complete reads until the whole current message is buffered, when it fits
// the buffer, without consuming it: the proxy waits for a client's whole
// message before it takes a backend for it, so a client that stalls
// mid-message holds none.
func (r *Reader) Complete() error {
	if !r.hasMsg || r.left != HeaderLen+r.bodyLen || !r.Fits() {
		return nil
	}
	return r.ensure(HeaderLen + r.bodyLen)
}
