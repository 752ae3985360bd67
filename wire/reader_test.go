package wire

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"testing"
	"testing/iotest"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestReaderFraming(t *testing.T) {
	sizes := func(ns ...int) [][]byte {
		var out [][]byte
		for i, n := range ns {
			out = append(out, frame(byte('a'+i%26), pattern(n, uint32(i))))
		}
		return out
	}
	streams := []struct {
		name string
		msgs [][]byte
	}{
		{"empty", nil},
		{"one", [][]byte{frame('Q', []byte("SELECT 1\x00"))}},
		{"empty-body", [][]byte{frame('S', nil), frame('H', nil), frame('S', nil)}},
		{"pgbench", nil}, // filled below
		// Around every buffer size in play: 16, 64, 512 (inline), 700, 1k, 16k.
		{"boundaries", sizes(0, 1, 10, 11, 12, 58, 59, 60, 506, 507, 508, 509, 694, 695, 696,
			1018, 1019, 1020, 16379, 16380, 16381)},
		{"large", sizes(3, 70000, 2, 200000, 0)},
	}
	// pgbench: split the encoded batches back into messages.
	var pg [][]byte
	for i := range 20 {
		pg = append(pg, splitMessages(pgbenchBatch(t, i*7919))...)
	}
	streams[3].msgs = pg

	for _, st := range streams {
		data := concat(st.msgs...)
		for _, fr := range framers {
			for _, rm := range readModes {
				t.Run(st.name+"/"+fr.name+"/"+rm.name, func(t *testing.T) {
					r := fr.new(rm.wrap(data))
					got, err := readMessages(t, r)
					if err != io.EOF {
						t.Fatalf("final error = %v, want io.EOF", err)
					}
					equalMessages(t, got, st.msgs)
					if r.Buffered() != 0 {
						t.Fatalf("Buffered() = %d after EOF", r.Buffered())
					}
					// EOF is sticky.
					if _, _, err := r.Next(); err != io.EOF {
						t.Fatalf("second Next after EOF: %v", err)
					}
				})
			}
		}
	}
}

// TestReaderEverySplit cuts a small stream into three reads at every pair of
// positions: the framing must not depend on where reads end.
func TestReaderEverySplit(t *testing.T) {
	msgs := [][]byte{
		frame('Q', []byte("SELECT 1\x00")),
		frame('S', nil),
		frame('d', pattern(23, 1)),
		frame('X', nil),
	}
	data := concat(msgs...)
	for _, fr := range framers {
		t.Run(fr.name, func(t *testing.T) {
			for i := 0; i <= len(data); i++ {
				for j := i; j <= len(data); j++ {
					src := &chunkReader{chunks: [][]byte{
						bytes.Clone(data[:i]), bytes.Clone(data[i:j]), bytes.Clone(data[j:]),
					}}
					r := fr.new(src)
					got, err := readMessages(t, r)
					if err != io.EOF {
						t.Fatalf("split %d,%d: final error %v, want io.EOF", i, j, err)
					}
					equalMessages(t, got, msgs)
				}
			}
		})
	}
}

// TestReaderManyInOneRead: a single Read delivers several messages; the
// reader must hand them out one by one without reading again.
func TestReaderManyInOneRead(t *testing.T) {
	var msgs [][]byte
	for i := range 10 {
		msgs = append(msgs, frame('B', pattern(20+i, uint32(i))))
	}
	data := concat(msgs...)
	reads := 0
	src := readFunc(func(p []byte) (int, error) {
		reads++
		if reads > 1 {
			return 0, io.EOF
		}
		return copy(p, data), nil
	})
	r := NewPooledReader(src, NewBufferPool(16<<10))
	for i, want := range msgs {
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		m, err := r.Message()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m, want) {
			t.Fatalf("message %d differs", i)
		}
		if reads != 1 {
			t.Fatalf("after message %d: %d reads, want 1", i, reads)
		}
		if got, want := r.Buffered(), len(data)-len(concat(msgs[:i+1]...)); got != want {
			t.Fatalf("Buffered() = %d, want %d", got, want)
		}
	}
	if r.holdsBorrowed() {
		t.Fatal("small messages made the pooled reader borrow a buffer")
	}
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

// TestReaderNetPipe sends messages over a real pipe in random-sized writes.
func TestReaderNetPipe(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var msgs [][]byte
	for i := range 300 {
		n := rng.IntN(100)
		if i%50 == 0 {
			n = 40000 + rng.IntN(40000)
		}
		msgs = append(msgs, frame(byte('A'+i%26), pattern(n, uint32(i))))
	}
	data := concat(msgs...)
	for _, fr := range framers {
		t.Run(fr.name, func(t *testing.T) {
			c1, c2 := net.Pipe()
			done := make(chan error, 1)
			go func() {
				rng := rand.New(rand.NewPCG(3, 4))
				b := data
				for len(b) > 0 {
					n := min(len(b), 1+rng.IntN(3000))
					if _, err := c1.Write(b[:n]); err != nil {
						done <- err
						return
					}
					b = b[n:]
				}
				done <- c1.Close()
			}()
			r := fr.new(c2)
			got, err := readMessages(t, r)
			if err != io.EOF {
				t.Fatalf("final error %v, want io.EOF", err)
			}
			equalMessages(t, got, msgs)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			c2.Close()
		})
	}
}

// TestReaderIOPipe: every message is its own write on an io.Pipe, so every
// Next for a new message finds the buffer empty and blocks in Read.
func TestReaderIOPipe(t *testing.T) {
	msgs := [][]byte{
		frame('Q', []byte("BEGIN\x00")),
		frame('d', pattern(100000, 9)),
		frame('P', pattern(3000, 8)),
		frame('S', nil),
	}
	pr, pw := io.Pipe()
	go func() {
		for _, m := range msgs {
			if _, err := pw.Write(m); err != nil {
				return
			}
		}
		pw.Close()
	}()
	pool := NewBufferPool(16 << 10)
	var r *Reader
	hook := readFunc(func(p []byte) (int, error) {
		// Reads issued while no message is in progress and nothing is
		// buffered are idle waits: they must not pin a borrowed buffer.
		if !r.hasMsg && r.Buffered() == 0 && r.holdsBorrowed() {
			t.Errorf("idle read while holding a %d-byte borrowed buffer", len(*r.big))
		}
		return pr.Read(p)
	})
	r = NewPooledReader(hook, pool)
	got, err := readMessages(t, r)
	if err != io.EOF {
		t.Fatalf("final error %v, want io.EOF", err)
	}
	equalMessages(t, got, msgs)
	if r.holdsBorrowed() {
		t.Fatal("drained reader still holds a borrowed buffer")
	}
}

// TestReaderLargeMessageStream: a 1 MiB message through a 16 KiB pool comes
// out byte for byte, in chunks no larger than the pooled buffer.
func TestReaderLargeMessageStream(t *testing.T) {
	const pool = 16 << 10
	big := frame(MsgCopyData, pattern(1<<20, 42))
	before := frame('Q', []byte("COPY t FROM STDIN\x00"))
	after := frame(MsgCopyDone, nil)
	data := concat(before, big, after)
	for _, rm := range readModes {
		t.Run(rm.name, func(t *testing.T) {
			r := NewPooledReader(rm.wrap(data), NewBufferPool(pool))
			if _, _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
			if m, err := r.Message(); err != nil || !bytes.Equal(m, before) {
				t.Fatalf("first message: %q, %v", m, err)
			}
			typ, n, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if typ != MsgCopyData || n != 1<<20 {
				t.Fatalf("Next = %q, %d", typ, n)
			}
			if r.Fits() {
				t.Fatal("1 MiB message Fits a 16 KiB buffer")
			}
			if _, err := r.Message(); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Message: %v, want ErrTooLarge", err)
			}
			var w maxChunkWriter
			if err := r.Stream(&w); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(w.Bytes(), big) {
				t.Fatal("streamed message differs from what was sent")
			}
			if w.max > pool {
				t.Fatalf("Stream wrote a %d-byte chunk, more than the %d-byte buffer", w.max, pool)
			}
			if r.big != nil && len(*r.big) != pool {
				t.Fatalf("reader grew a %d-byte buffer", len(*r.big))
			}
			if _, _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
			if m, err := r.Message(); err != nil || !bytes.Equal(m, after) {
				t.Fatalf("last message: %q, %v", m, err)
			}
			if _, _, err := r.Next(); err != io.EOF {
				t.Fatalf("Next at end: %v, want io.EOF", err)
			}
			if r.holdsBorrowed() {
				t.Fatal("drained reader still holds a borrowed buffer")
			}
		})
	}
}

// TestReaderStreamPartlyBuffered: part of a large message arrives with the
// preceding message, so Stream starts from the inline buffer.
func TestReaderStreamPartlyBuffered(t *testing.T) {
	big := frame('d', pattern(5000, 3))
	data := concat(frame('S', nil), big, frame('S', nil))
	src := &chunkReader{chunks: [][]byte{data[:300], data[300:]}}
	r := NewPooledReader(src, NewBufferPool(1024))
	got, err := readMessages(t, r)
	if err != io.EOF {
		t.Fatal(err)
	}
	equalMessages(t, got, [][]byte{frame('S', nil), big, frame('S', nil)})
}

func TestReaderSkip(t *testing.T) {
	msgs := [][]byte{frame('d', pattern(50000, 1)), frame('d', pattern(30, 2)), frame('Z', []byte("I"))}
	for _, fr := range framers {
		for _, rm := range readModes {
			t.Run(fr.name+"/"+rm.name, func(t *testing.T) {
				r := fr.new(rm.wrap(concat(msgs...)))
				for range 2 {
					if _, _, err := r.Next(); err != nil {
						t.Fatal(err)
					}
					if err := r.Skip(); err != nil {
						t.Fatal(err)
					}
				}
				typ, n, err := r.Next()
				if err != nil || typ != 'Z' || n != 1 {
					t.Fatalf("Next after Skip = %q, %d, %v", typ, n, err)
				}
				m, err := r.Message()
				if err != nil || !bytes.Equal(m, msgs[2]) {
					t.Fatalf("Message after Skip = %q, %v", m, err)
				}
			})
		}
	}
}

func TestReaderBadLength(t *testing.T) {
	tests := []struct {
		name     string
		declared uint32
		maxLen   int // 0: default
		ok       bool
	}{
		{"zero", 0, 0, false},
		{"one", 1, 0, false},
		{"three", 3, 0, false},
		{"four (empty body)", 4, 0, true},
		{"minus one", math.MaxUint32, 0, false},
		{"min int32", 1 << 31, 0, false},
		{"max int32", math.MaxInt32, 0, false},
		{"at MaxMessageLen", MaxMessageLen + 4, 0, true},
		{"over MaxMessageLen", MaxMessageLen + 5, 0, false},
		{"at SetMaxLen", 104, 100, true},
		{"over SetMaxLen", 105, 100, false},
	}
	for _, tt := range tests {
		for _, fr := range framers {
			for _, rm := range readModes {
				t.Run(tt.name+"/"+fr.name+"/"+rm.name, func(t *testing.T) {
					data := concat(frame('S', nil), rawHeader('Q', tt.declared), []byte("SELECT 1"))
					r := fr.new(rm.wrap(data))
					if tt.maxLen != 0 {
						r.SetMaxLen(tt.maxLen)
					}
					if _, _, err := r.Next(); err != nil {
						t.Fatal(err)
					}
					if _, err := r.Message(); err != nil {
						t.Fatal(err)
					}
					typ, n, err := r.Next()
					if tt.ok {
						if err != nil || typ != 'Q' || n != int(tt.declared)-4 {
							t.Fatalf("Next = %q, %d, %v; want 'Q', %d", typ, n, err, int(tt.declared)-4)
						}
						return
					}
					var pe *ProtocolError
					if !errors.As(err, &pe) {
						t.Fatalf("Next error = %v (%T), want *ProtocolError", err, err)
					}
					if pe.Error() == "" {
						t.Fatal("empty error text")
					}
				})
			}
		}
	}
}

func TestReaderUnexpectedEOF(t *testing.T) {
	small := frame('Q', []byte("SELECT 1\x00"))
	large := frame('d', pattern(70000, 5))
	tests := []struct {
		name string
		data []byte
		use  string // how to consume the truncated message: message, stream, skip
	}{
		{"header 1 byte", small[:1], ""},
		{"header 4 bytes", small[:4], ""},
		{"after message, header 3 bytes", concat(small, small[:3]), ""},
		{"no body", small[:5], "message"},
		{"body cut", small[:len(small)-1], "message"},
		{"body cut, stream", small[:len(small)-1], "stream"},
		{"body cut, skip", small[:8], "skip"},
		{"large body cut", large[:len(large)-1], "stream"},
		{"large body cut early", large[:6], "stream"},
		{"large no body", large[:5], "skip"},
	}
	for _, tt := range tests {
		for _, fr := range framers {
			for _, rm := range readModes {
				t.Run(tt.name+"/"+fr.name+"/"+rm.name, func(t *testing.T) {
					r := fr.new(rm.wrap(tt.data))
					var err error
					for {
						if _, _, err = r.Next(); err != nil {
							break
						}
						switch {
						case tt.use == "skip":
							err = r.Skip()
						case tt.use == "stream" || !r.Fits():
							err = r.Stream(io.Discard)
						default:
							_, err = r.Message()
						}
						if err != nil {
							break
						}
					}
					if err != io.ErrUnexpectedEOF {
						t.Fatalf("error = %v, want io.ErrUnexpectedEOF", err)
					}
				})
			}
		}
	}
}

func TestReaderCleanEOF(t *testing.T) {
	for _, fr := range framers {
		for _, rm := range readModes {
			t.Run(fr.name+"/"+rm.name, func(t *testing.T) {
				r := fr.new(rm.wrap(nil))
				for range 2 {
					if _, _, err := r.Next(); err != io.EOF {
						t.Fatalf("Next on empty input: %v, want io.EOF", err)
					}
				}
			})
		}
	}
}

func TestReaderReadErrors(t *testing.T) {
	boom := errors.New("boom")
	t.Run("error before header", func(t *testing.T) {
		r := NewPooledReader(iotest.ErrReader(boom), NewBufferPool(1024))
		if _, _, err := r.Next(); err != boom {
			t.Fatalf("Next: %v, want boom", err)
		}
	})
	// TimeoutReader fails its second Read: a message split over two reads
	// must report that error, not a short message.
	msg := frame('d', pattern(2000, 1))
	for _, fr := range framers {
		t.Run("timeout mid-message/"+fr.name, func(t *testing.T) {
			src := &chunkReader{chunks: [][]byte{msg[:100], msg[100:]}}
			r := fr.new(iotest.TimeoutReader(src))
			if _, _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
			var err error
			if r.Fits() {
				_, err = r.Message()
			} else {
				err = r.Stream(io.Discard)
			}
			if err != iotest.ErrTimeout {
				t.Fatalf("error %v, want ErrTimeout", err)
			}
		})
	}
	t.Run("stream write error", func(t *testing.T) {
		r := NewReader(bytes.NewReader(msg), 64)
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if err := r.Stream(&recWriter{err: boom}); err != boom {
			t.Fatalf("Stream: %v, want boom", err)
		}
	})
}

func TestReaderMisuse(t *testing.T) {
	data := concat(frame('d', pattern(3000, 1)), frame('S', nil))
	r := NewPooledReader(bytes.NewReader(data), NewBufferPool(1024))
	if _, err := r.Message(); err != ErrNoMessage {
		t.Fatalf("Message before Next: %v", err)
	}
	if err := r.Stream(io.Discard); err != ErrNoMessage {
		t.Fatalf("Stream before Next: %v", err)
	}
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Next(); err == nil {
		t.Fatal("Next with the previous message unconsumed succeeded")
	}
	if _, err := r.StartupPacket(MaxStartupLen); err == nil {
		t.Fatal("StartupPacket with a message unconsumed succeeded")
	}
	// ErrTooLarge leaves the message in place for Stream.
	if _, err := r.Message(); err != ErrTooLarge {
		t.Fatalf("Message: %v, want ErrTooLarge", err)
	}
	var buf bytes.Buffer
	if err := r.Stream(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), data[:3005]) {
		t.Fatal("stream after ErrTooLarge differs")
	}
	if _, err := r.Message(); err != ErrNoMessage {
		t.Fatalf("Message after Stream consumed it: %v", err)
	}
	if typ, _, err := r.Next(); err != nil || typ != 'S' {
		t.Fatalf("Next = %q, %v", typ, err)
	}
}

// TestReaderRelease: a pooled reader gives its borrowed buffer back once it
// is drained, and keeps it while it still holds data.
func TestReaderRelease(t *testing.T) {
	pool := NewBufferPool(16 << 10)
	mid := frame('P', pattern(4000, 1)) // fits the pool, not the inline buffer
	big := frame('d', pattern(1<<20, 2))
	small := frame('S', nil)

	t.Run("after large stream", func(t *testing.T) {
		r := NewPooledReader(bytes.NewReader(big), pool)
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if err := r.Stream(io.Discard); err != nil {
			t.Fatal(err)
		}
		if !r.holdsBorrowed() {
			t.Fatal("streaming did not borrow (test assumption)")
		}
		r.Release()
		if r.holdsBorrowed() || !r.onSmall() {
			t.Fatal("Release kept the borrowed buffer")
		}
		if _, _, err := r.Next(); err != io.EOF {
			t.Fatalf("Next: %v", err)
		}
	})
	t.Run("after mid-size message", func(t *testing.T) {
		r := NewPooledReader(bytes.NewReader(mid), pool)
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		m, err := r.Message()
		if err != nil || !bytes.Equal(m, mid) {
			t.Fatalf("Message: %v", err)
		}
		if !r.holdsBorrowed() {
			t.Fatal("a 4 KB message fit the 512-byte inline buffer?")
		}
		r.Release()
		if r.holdsBorrowed() || !r.onSmall() {
			t.Fatal("Release kept the borrowed buffer")
		}
	})
	t.Run("keeps buffer while data is buffered", func(t *testing.T) {
		r := NewPooledReader(bytes.NewReader(concat(mid, small)), pool)
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Message(); err != nil {
			t.Fatal(err)
		}
		if r.Buffered() != len(small) {
			t.Fatalf("Buffered() = %d", r.Buffered())
		}
		r.Release()
		if !r.holdsBorrowed() {
			t.Fatal("Release dropped a buffer that still holds data")
		}
		if typ, _, err := r.Next(); err != nil || typ != 'S' {
			t.Fatalf("Next after Release = %q, %v", typ, err)
		}
		if _, err := r.Message(); err != nil {
			t.Fatal(err)
		}
		r.Release()
		if r.holdsBorrowed() {
			t.Fatal("drained reader kept the borrowed buffer")
		}
	})
	t.Run("Next releases before waiting", func(t *testing.T) {
		src := &chunkReader{chunks: [][]byte{bytes.Clone(mid), bytes.Clone(big), bytes.Clone(small)}}
		var r *Reader
		r = NewPooledReader(readFunc(func(p []byte) (int, error) {
			if !r.hasMsg && r.Buffered() == 0 && r.holdsBorrowed() {
				t.Error("Next waited for data while holding a borrowed buffer")
			}
			return src.Read(p)
		}), pool)
		got, err := readMessages(t, r)
		if err != io.EOF {
			t.Fatal(err)
		}
		equalMessages(t, got, [][]byte{mid, big, small})
		if r.holdsBorrowed() {
			t.Fatal("reader at EOF holds a borrowed buffer")
		}
	})
	t.Run("small traffic never borrows", func(t *testing.T) {
		data := concat(pgbenchBatch(t, 1), pgbenchBatch(t, 2), frame('Q', pattern(400, 1)))
		src := iotest.HalfReader(bytes.NewReader(data))
		var r *Reader
		r = NewPooledReader(readFunc(func(p []byte) (int, error) {
			if r.holdsBorrowed() {
				t.Error("small messages borrowed a buffer")
			}
			return src.Read(p)
		}), pool)
		if _, err := readMessages(t, r); err != io.EOF {
			t.Fatal(err)
		}
		if r.holdsBorrowed() {
			t.Fatal("small messages borrowed a buffer")
		}
	})
	t.Run("owned reader keeps its buffer", func(t *testing.T) {
		r := NewReader(bytes.NewReader(concat(mid, big)), 8192)
		own := r.big
		if _, err := readMessages(t, r); err != io.EOF {
			t.Fatal(err)
		}
		r.Release()
		if r.big != own || len(r.buf) != 8192 {
			t.Fatal("owned reader lost its buffer")
		}
	})
}

// TestReaderPgproto3 reads what pgproto3's frontend encoders produce and
// checks pgproto3 decodes the bodies the Reader hands out.
func TestReaderPgproto3(t *testing.T) {
	longQuery := "SELECT '" + string(bytes.Repeat([]byte("x"), 30000)) + "'"
	sent := []pgproto3.FrontendMessage{
		&pgproto3.Query{String: "SELECT 1"},
		&pgproto3.Parse{Name: "s1", Query: "SELECT $1::int", ParameterOIDs: []uint32{23}},
		&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("42")}},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{MaxRows: 10},
		&pgproto3.Sync{},
		&pgproto3.Query{String: longQuery},
		&pgproto3.Terminate{},
	}
	var data []byte
	for _, m := range sent {
		data = append(data, encode(t, m)...)
	}
	r := NewPooledReader(iotest.HalfReader(bytes.NewReader(data)), NewBufferPool(16<<10))
	got, err := readMessages(t, r)
	if err != io.EOF {
		t.Fatal(err)
	}
	if len(got) != len(sent) {
		t.Fatalf("%d messages, want %d", len(got), len(sent))
	}
	wantTypes := []byte{MsgQuery, MsgParse, MsgBind, MsgDescribe, MsgExecute, MsgSync, MsgQuery, MsgTerminate}
	for i, m := range got {
		if m[0] != wantTypes[i] {
			t.Fatalf("message %d type %q, want %q", i, m[0], wantTypes[i])
		}
	}
	var q pgproto3.Query
	if err := q.Decode(got[6][HeaderLen:]); err != nil || q.String != longQuery {
		t.Fatalf("long query did not survive streaming: %v", err)
	}
	var b pgproto3.Bind
	if err := b.Decode(got[2][HeaderLen:]); err != nil || b.PreparedStatement != "s1" || string(b.Parameters[0]) != "42" {
		t.Fatalf("Bind: %+v, %v", b, err)
	}
}

func TestReaderPeekConsume(t *testing.T) {
	bind := encode(t, &pgproto3.Bind{DestinationPortal: "", PreparedStatement: "stmt1", Parameters: [][]byte{pattern(3000, 1)}})
	for _, fr := range framers {
		for _, rm := range readModes {
			t.Run(fr.name+"/"+rm.name, func(t *testing.T) {
				r := fr.new(rm.wrap(concat(bind, frame('S', nil))))
				if _, _, err := r.Next(); err != nil {
					t.Fatal(err)
				}
				want := min(16, r.capacity())
				peek, err := r.Peek(16)
				if err != nil || !bytes.Equal(peek, bind[:want]) {
					t.Fatalf("Peek = %q, %v", peek, err)
				}
				// Peek again: same bytes, nothing consumed.
				if again, err := r.Peek(16); err != nil || !bytes.Equal(again, bind[:want]) {
					t.Fatalf("second Peek = %q, %v", again, err)
				}
				if err := r.Consume(r.Buffered() + 1); err == nil {
					t.Fatal("Consume beyond the buffered (peeked) data succeeded")
				}
				if err := r.Consume(HeaderLen); err != nil {
					t.Fatal(err)
				}
				if _, err := r.Peek(1); err != ErrNoMessage {
					t.Fatalf("Peek after Consume: %v", err)
				}
				var buf bytes.Buffer
				if err := r.Stream(&buf); err != nil || !bytes.Equal(buf.Bytes(), bind[HeaderLen:]) {
					t.Fatalf("Stream after Consume: %v, equal=%v", err, bytes.Equal(buf.Bytes(), bind[HeaderLen:]))
				}
				typ, _, err := r.Next()
				if err != nil || typ != 'S' {
					t.Fatalf("Next = %q, %v", typ, err)
				}
				// Peek past the message is capped at the message.
				if p, err := r.Peek(100); err != nil || !bytes.Equal(p, frame('S', nil)) {
					t.Fatalf("Peek(100) of Sync = %q, %v", p, err)
				}
				if err := r.Consume(HeaderLen); err != nil {
					t.Fatal(err)
				}
				if _, _, err := r.Next(); err != io.EOF {
					t.Fatalf("Next at end: %v", err)
				}
			})
		}
	}
}

func TestReaderReadAll(t *testing.T) {
	msgs := [][]byte{frame('P', pattern(100, 1)), frame('P', pattern(100000, 2)), frame('S', nil)}
	for _, fr := range framers {
		for _, rm := range readModes {
			t.Run(fr.name+"/"+rm.name, func(t *testing.T) {
				r := fr.new(rm.wrap(concat(msgs...)))
				for i, want := range msgs {
					if _, _, err := r.Next(); err != nil {
						t.Fatal(err)
					}
					m, err := r.ReadAll()
					if err != nil || !bytes.Equal(m, want) {
						t.Fatalf("ReadAll %d: %v, equal=%v", i, err, bytes.Equal(m, want))
					}
				}
				if _, _, err := r.Next(); err != io.EOF {
					t.Fatalf("Next at end: %v", err)
				}
			})
		}
	}
}

// A reader handed from one connection to another (parked clients share
// readers) reads only the new connection, and refuses while it holds data.
func TestReaderReset(t *testing.T) {
	pool := NewBufferPool(4096)
	one := append(frame('Q', []byte("one\x00")), frame('Q', []byte("two\x00"))...)
	r := NewPooledReader(bytes.NewReader(one), pool)
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if r.Reset(bytes.NewReader(nil)) {
		t.Fatal("Reset accepted a reader in the middle of a message")
	}
	if _, err := r.Message(); err != nil {
		t.Fatal(err)
	}
	if r.Buffered() == 0 {
		t.Fatal("test needs the second message buffered")
	}
	if r.Reset(bytes.NewReader(nil)) {
		t.Fatal("Reset accepted a reader holding another message")
	}
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Message(); err != nil {
		t.Fatal(err)
	}
	big := frame('D', bytes.Repeat([]byte("x"), 3000)) // borrows a large buffer
	r2 := NewPooledReader(bytes.NewReader(big), pool)
	if _, _, err := r2.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Message(); err != nil {
		t.Fatal(err)
	}
	if !r2.Reset(bytes.NewReader(frame('S', []byte("s\x00")))) || r2.big != nil {
		t.Fatal("Reset of an empty reader failed or kept its large buffer")
	}
	typ, n, err := r2.Next()
	if err != nil || typ != 'S' || n != 2 {
		t.Fatalf("after Reset: %q %d %v, want the new connection's message", typ, n, err)
	}
}
