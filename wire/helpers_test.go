package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/jackc/pgx/v5/pgproto3"
)

// frame returns a complete typed message: type byte, length, body.
func frame(typ byte, body []byte) []byte {
	return append(AppendHeader(nil, typ, len(body)), body...)
}

// rawHeader returns a header with an arbitrary declared length.
func rawHeader(typ byte, declared uint32) []byte {
	h := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[1:], declared)
	return h
}

// pattern returns n deterministic, non-periodic bytes.
func pattern(n int, seed uint32) []byte {
	b := make([]byte, n)
	x := seed*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// splitMessages cuts well-formed framed bytes into messages.
func splitMessages(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := 1 + int(binary.BigEndian.Uint32(b[1:5]))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func encode(t testing.TB, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	var out []byte
	for _, m := range msgs {
		var err error
		out, err = m.Encode(out)
		if err != nil {
			t.Fatalf("encode %T: %v", m, err)
		}
	}
	return out
}

// pgbenchBatch is what pgbench -S -M prepared sends per transaction:
// Bind, Execute, Sync.
func pgbenchBatch(t testing.TB, aid int) []byte {
	return encode(t,
		&pgproto3.Bind{
			PreparedStatement:    "P0_1",
			ParameterFormatCodes: []int16{0},
			Parameters:           [][]byte{[]byte(itoa(aid))},
			ResultFormatCodes:    []int16{0},
		},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// chunkReader returns its chunks one per Read (never merging two), then EOF.
type chunkReader struct{ chunks [][]byte }

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

// splitEvery cuts b into pieces of n bytes.
func splitEvery(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// readModes vary the read boundaries the framing sees.
var readModes = []struct {
	name string
	wrap func([]byte) io.Reader
}{
	{"whole", func(b []byte) io.Reader { return bytes.NewReader(b) }},
	{"one-byte", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
	{"half", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }},
	{"data-err", func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }},
	{"chunks-7", func(b []byte) io.Reader { return &chunkReader{chunks: splitEvery(b, 7)} }},
	{"chunks-1000", func(b []byte) io.Reader { return &chunkReader{chunks: splitEvery(b, 1000)} }},
}

// framers are the Reader configurations under test.
var framers = []struct {
	name string
	new  func(io.Reader) *Reader
}{
	{"pooled-64", func(rd io.Reader) *Reader { return NewPooledReader(rd, NewBufferPool(64)) }},
	{"pooled-1k", func(rd io.Reader) *Reader { return NewPooledReader(rd, NewBufferPool(1024)) }},
	{"pooled-16k", func(rd io.Reader) *Reader { return NewPooledReader(rd, NewBufferPool(16<<10)) }},
	{"owned-16", func(rd io.Reader) *Reader { return NewReader(rd, 16) }},
	{"owned-700", func(rd io.Reader) *Reader { return NewReader(rd, 700) }},
	{"owned-16k", func(rd io.Reader) *Reader { return NewReader(rd, 16<<10) }},
}

// readMessages reads messages until an error, returning a copy of each whole
// message (header included). Messages that fit are taken with Message, the
// rest with Stream. It checks that every message agrees with its header.
func readMessages(t testing.TB, r *Reader) ([][]byte, error) {
	t.Helper()
	var out [][]byte
	for i := 0; ; i++ {
		if i > 1<<20 {
			t.Fatal("reader does not terminate")
		}
		typ, n, err := r.Next()
		if err != nil {
			return out, err
		}
		var got []byte
		if r.Fits() {
			m, err := r.Message()
			if err != nil {
				return out, err
			}
			got = bytes.Clone(m)
		} else {
			if _, err := r.Message(); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Message on a message that does not fit: err = %v, want ErrTooLarge", err)
			}
			var buf bytes.Buffer
			if err := r.Stream(&buf); err != nil {
				return out, err
			}
			got = buf.Bytes()
		}
		checkMessage(t, got, typ, n)
		out = append(out, got)
	}
}

func checkMessage(t testing.TB, m []byte, typ byte, bodyLen int) {
	t.Helper()
	if len(m) != HeaderLen+bodyLen {
		t.Fatalf("message %q: len %d, want %d", typ, len(m), HeaderLen+bodyLen)
	}
	if m[0] != typ {
		t.Fatalf("message type %q, Next said %q", m[0], typ)
	}
	if got := int(binary.BigEndian.Uint32(m[1:5])); got != bodyLen+4 {
		t.Fatalf("message %q declares %d, Next said body %d", typ, got, bodyLen)
	}
}

func equalMessages(t testing.TB, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("message %d (%q, %d bytes) differs from what was sent (%q, %d bytes)",
				i, got[i][:min(1, len(got[i]))], len(got[i]), want[i][:1], len(want[i]))
		}
	}
}

// holdsBorrowed reports whether a pooled reader holds a buffer from its pool.
func (r *Reader) holdsBorrowed() bool { return r.big != nil && !r.owned }

// onSmall reports whether the reader is using its inline buffer.
func (r *Reader) onSmall() bool { return len(r.buf) > 0 && &r.buf[0] == &r.small[0] }

// recWriter records each Write it receives.
type recWriter struct {
	writes [][]byte
	ptrs   []*byte
	err    error // returned by every Write when set
}

func (w *recWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.writes = append(w.writes, bytes.Clone(p))
	if len(p) > 0 {
		w.ptrs = append(w.ptrs, &p[0])
	} else {
		w.ptrs = append(w.ptrs, nil)
	}
	return len(p), nil
}

func (w *recWriter) all() []byte { return concat(w.writes...) }

// maxChunkWriter records the largest single Write, to show streaming is
// bounded by the buffer.
type maxChunkWriter struct {
	bytes.Buffer
	max int
}

func (w *maxChunkWriter) Write(p []byte) (int, error) {
	w.max = max(w.max, len(p))
	return w.Buffer.Write(p)
}
