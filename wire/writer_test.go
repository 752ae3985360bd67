package wire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

var writers = []struct {
	name string
	new  func(io.Writer, int) *Writer
}{
	{"owned", NewWriter},
	{"pooled", func(w io.Writer, size int) *Writer { return NewPooledWriter(w, NewBufferPool(size)) }},
}

func TestWriterCoalesces(t *testing.T) {
	for _, wr := range writers {
		t.Run(wr.name, func(t *testing.T) {
			var rec recWriter
			w := wr.new(&rec, 4096)
			var want []byte
			for i := range 100 {
				m := frame('B', pattern(i%30, uint32(i)))
				want = append(want, m...)
				n, err := w.Write(m)
				if err != nil || n != len(m) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if len(rec.writes) != 0 {
				t.Fatalf("%d writes before Flush", len(rec.writes))
			}
			if w.Buffered() != len(want) {
				t.Fatalf("Buffered() = %d, want %d", w.Buffered(), len(want))
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if len(rec.writes) != 1 {
				t.Fatalf("%d writes for one batch, want 1", len(rec.writes))
			}
			if !bytes.Equal(rec.writes[0], want) {
				t.Fatal("flushed bytes differ")
			}
			if w.Buffered() != 0 {
				t.Fatalf("Buffered() = %d after Flush", w.Buffered())
			}
			// An empty Flush writes nothing.
			if err := w.Flush(); err != nil || len(rec.writes) != 1 {
				t.Fatalf("empty Flush: %v, %d writes", err, len(rec.writes))
			}
			// The next batch is again one write.
			if err := w.Append((&pgproto3.Sync{}).Encode); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(frame('H', nil)); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if len(rec.writes) != 2 || !bytes.Equal(rec.writes[1], concat(frame('S', nil), frame('H', nil))) {
				t.Fatalf("second batch: %q", rec.writes[1:])
			}
		})
	}
}

func TestWriterFlushesWhenFull(t *testing.T) {
	for _, wr := range writers {
		t.Run(wr.name, func(t *testing.T) {
			var rec recWriter
			w := wr.new(&rec, 64)
			var want []byte
			for i := range 5 {
				m := frame('d', pattern(25, uint32(i))) // 30 bytes
				want = append(want, m...)
				if _, err := w.Write(m); err != nil {
					t.Fatal(err)
				}
			}
			// 30+30 fit, the third forces a flush; likewise the fifth.
			if len(rec.writes) != 2 || len(rec.writes[0]) != 60 || len(rec.writes[1]) != 60 {
				t.Fatalf("writes before Flush: %d", len(rec.writes))
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if len(rec.writes) != 3 || !bytes.Equal(rec.all(), want) {
				t.Fatalf("after Flush: %d writes, equal=%v", len(rec.writes), bytes.Equal(rec.all(), want))
			}
			// Exactly the buffer size still buffers.
			if _, err := w.Write(pattern(64, 9)); err != nil || len(rec.writes) != 3 || w.Buffered() != 64 {
				t.Fatalf("buffer-sized write: %v, %d writes, %d buffered", err, len(rec.writes), w.Buffered())
			}
		})
	}
}

func TestWriterWritesThroughLarge(t *testing.T) {
	for _, wr := range writers {
		t.Run(wr.name, func(t *testing.T) {
			var rec recWriter
			w := wr.new(&rec, 64)
			small := frame('B', pattern(10, 1))
			big := frame('d', pattern(1<<20, 2))
			if _, err := w.Write(small); err != nil {
				t.Fatal(err)
			}
			n, err := w.Write(big)
			if err != nil || n != len(big) {
				t.Fatalf("Write(big) = %d, %v", n, err)
			}
			if len(rec.writes) != 2 {
				t.Fatalf("%d writes, want pending flush + big", len(rec.writes))
			}
			if !bytes.Equal(rec.writes[0], small) || !bytes.Equal(rec.writes[1], big) {
				t.Fatal("write-through out of order or altered")
			}
			if rec.ptrs[1] != &big[0] {
				t.Fatal("large message was copied instead of written through")
			}
			if _, err := w.Write(small); err != nil || len(rec.writes) != 2 {
				t.Fatalf("small write after write-through: %v, %d writes", err, len(rec.writes))
			}
			if err := w.Flush(); err != nil || !bytes.Equal(rec.all(), concat(small, big, small)) {
				t.Fatalf("Flush: %v", err)
			}
		})
	}
}

func TestWriterAppendPgproto3(t *testing.T) {
	msgs := []interface{ Encode([]byte) ([]byte, error) }{
		&pgproto3.Parse{Name: "s", Query: "SELECT $1", ParameterOIDs: []uint32{23}},
		&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("1")}},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.ParameterStatus{Name: "TimeZone", Value: "UTC"},
		&pgproto3.BackendKeyData{ProcessID: 7, SecretKey: pattern(32, 1)},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	}
	want := encode(t, msgs...)
	for _, wr := range writers {
		t.Run(wr.name, func(t *testing.T) {
			var rec recWriter
			w := wr.new(&rec, 4096)
			for _, m := range msgs {
				if err := w.Append(m.Encode); err != nil {
					t.Fatal(err)
				}
			}
			if len(rec.writes) != 0 {
				t.Fatal("Append wrote before Flush")
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if len(rec.writes) != 1 || !bytes.Equal(rec.writes[0], want) {
				t.Fatalf("%d writes, equal=%v", len(rec.writes), bytes.Equal(rec.all(), want))
			}
		})
	}
}

// TestWriterAppendOutgrows: an encoder that outgrows the buffer gets its
// output (pending data first) written directly, and the Writer keeps using
// its own buffer.
func TestWriterAppendOutgrows(t *testing.T) {
	for _, wr := range writers {
		t.Run(wr.name, func(t *testing.T) {
			var rec recWriter
			w := wr.new(&rec, 64)
			pending := frame('S', nil)
			if _, err := w.Write(pending); err != nil {
				t.Fatal(err)
			}
			q := &pgproto3.Query{String: strings.Repeat("x", 1000)}
			if err := w.Append(q.Encode); err != nil {
				t.Fatal(err)
			}
			if len(rec.writes) != 1 || !bytes.Equal(rec.writes[0], concat(pending, encode(t, q))) {
				t.Fatalf("%d writes; want pending+query in one", len(rec.writes))
			}
			if w.Buffered() != 0 || cap(w.buf) != 64 || &w.buf[:1][0] != &(*w.own)[0] {
				t.Fatal("Writer lost its own buffer after an oversized Append")
			}
			if err := w.Append((&pgproto3.Sync{}).Encode); err != nil || len(rec.writes) != 1 {
				t.Fatalf("Append after oversized: %v, %d writes", err, len(rec.writes))
			}
			if err := w.Flush(); err != nil || !bytes.Equal(rec.writes[1], pending) {
				t.Fatalf("Flush: %v", err)
			}
		})
	}
}

func TestWriterAppendError(t *testing.T) {
	boom := errors.New("boom")
	var rec recWriter
	w := NewWriter(&rec, 256)
	if _, err := w.Write(frame('S', nil)); err != nil {
		t.Fatal(err)
	}
	err := w.Append(func(dst []byte) ([]byte, error) {
		dst = append(dst, "garbage"...)
		return dst, boom
	})
	if err != boom {
		t.Fatalf("Append: %v", err)
	}
	// pgproto3 refuses a too-long secret key.
	if err := w.Append((&pgproto3.CancelRequest{SecretKey: make([]byte, 300)}).Encode); err == nil {
		t.Fatal("Append of an invalid message succeeded")
	}
	if err := w.Flush(); err != nil || !bytes.Equal(rec.all(), frame('S', nil)) {
		t.Fatalf("failed Append left data behind: %q, %v", rec.all(), err)
	}
}

func TestWriterWriteHeader(t *testing.T) {
	for _, wr := range writers {
		t.Run(wr.name, func(t *testing.T) {
			var rec recWriter
			w := wr.new(&rec, 64)
			body := pattern(100, 3)
			if err := w.WriteHeader('d', len(body)); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(body); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rec.all(), frame('d', body)) {
				t.Fatalf("got %q", rec.all())
			}
		})
	}
	// The header goes into the buffer: no allocation per message.
	w := NewWriter(io.Discard, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		_ = w.WriteHeader('d', 10)
		_ = w.Flush()
	})
	if allocs != 0 {
		t.Fatalf("WriteHeader: %v allocs per call", allocs)
	}
}

func TestWriterPooledBuffer(t *testing.T) {
	var rec recWriter
	w := NewPooledWriter(&rec, NewBufferPool(1024))
	if w.own != nil {
		t.Fatal("new pooled writer holds a buffer")
	}
	if err := w.Flush(); err != nil || w.own != nil || len(rec.writes) != 0 {
		t.Fatalf("idle Flush: %v, own=%v, %d writes", err, w.own != nil, len(rec.writes))
	}
	if _, err := w.Write(frame('S', nil)); err != nil {
		t.Fatal(err)
	}
	if w.own == nil {
		t.Fatal("pooled writer buffered without a buffer")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.own != nil || w.Buffered() != 0 {
		t.Fatal("Flush kept the borrowed buffer")
	}
	// Reset drops pending data, writes nothing and returns the buffer.
	if _, err := w.Write(frame('Q', []byte("x\x00"))); err != nil {
		t.Fatal(err)
	}
	w.Reset()
	if w.own != nil || w.Buffered() != 0 || len(rec.writes) != 1 {
		t.Fatalf("Reset: own=%v buffered=%d writes=%d", w.own != nil, w.Buffered(), len(rec.writes))
	}
	w.Reset() // idempotent
	if _, err := w.Write(frame('H', nil)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil || !bytes.Equal(rec.writes[1], frame('H', nil)) {
		t.Fatalf("after Reset: %v", err)
	}
	// An owned writer keeps its buffer through Flush and Reset.
	ow := NewWriter(&rec, 128)
	own := ow.own
	_, _ = ow.Write([]byte("abc"))
	ow.Reset()
	_, _ = ow.Write([]byte("def"))
	_ = ow.Flush()
	if ow.own != own || cap(ow.buf) != 128 || !bytes.Equal(rec.writes[2], []byte("def")) {
		t.Fatal("owned writer changed buffers")
	}
}

func TestWriterErrors(t *testing.T) {
	boom := errors.New("boom")
	for _, wr := range writers {
		t.Run(wr.name, func(t *testing.T) {
			rec := recWriter{err: boom}
			w := wr.new(&rec, 64)
			if _, err := w.Write(pattern(40, 1)); err != nil {
				t.Fatalf("buffered Write failed: %v", err)
			}
			if n, err := w.Write(pattern(40, 2)); err != boom || n != 0 {
				t.Fatalf("Write forcing a flush = %d, %v; want 0, boom", n, err)
			}
			if _, err := w.Write(pattern(100, 3)); err != boom {
				t.Fatalf("write-through: %v", err)
			}
			if _, err := w.Write(pattern(10, 4)); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != boom {
				t.Fatalf("Flush: %v", err)
			}
			if w.Buffered() != 0 {
				t.Fatal("failed Flush kept data")
			}
			if err := w.Append((&pgproto3.Query{String: strings.Repeat("y", 200)}).Encode); err != boom {
				t.Fatalf("oversized Append: %v", err)
			}
		})
	}
}

// TestWriterReaderNetPipe: Writer on one end of a net.Pipe, Reader on the
// other; small and large messages, batches flushed at random points.
func TestWriterReaderNetPipe(t *testing.T) {
	var msgs [][]byte
	for i := range 200 {
		n := (i * 37) % 300
		if i%40 == 0 {
			n = 100000
		}
		msgs = append(msgs, frame(byte('a'+i%26), pattern(n, uint32(i))))
	}
	c1, c2 := net.Pipe()
	defer c2.Close()
	errc := make(chan error, 1)
	go func() {
		w := NewPooledWriter(c1, NewBufferPool(1024))
		for i, m := range msgs {
			var err error
			if i%3 == 0 {
				err = w.WriteHeader(m[0], len(m)-HeaderLen)
				if err == nil {
					_, err = w.Write(m[HeaderLen:])
				}
			} else {
				err = w.Append(func(dst []byte) ([]byte, error) { return append(dst, m...), nil })
			}
			if err == nil && i%7 == 0 {
				err = w.Flush()
			}
			if err != nil {
				errc <- err
				return
			}
		}
		if err := w.Flush(); err != nil {
			errc <- err
			return
		}
		errc <- c1.Close()
	}()
	r := NewPooledReader(c2, NewBufferPool(16<<10))
	got, err := readMessages(t, r)
	if err != io.EOF {
		t.Fatal(err)
	}
	equalMessages(t, got, msgs)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestWriterFlushWith(t *testing.T) {
	for _, wr := range writers {
		t.Run(wr.name, func(t *testing.T) {
			var rec recWriter
			w := wr.new(&rec, 1024)
			if err := w.FlushWith(func([]byte) error { t.Fatal("called with nothing pending"); return nil }); err != nil {
				t.Fatal(err)
			}
			m := frame('Q', []byte("SELECT 1\x00"))
			if _, err := w.Write(m); err != nil {
				t.Fatal(err)
			}
			var got []byte
			if err := w.FlushWith(func(p []byte) error { got = append(got, p...); return nil }); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, m) || len(rec.writes) != 0 || w.Buffered() != 0 {
				t.Fatalf("FlushWith handed %q (want %q), %d direct writes, %d left buffered", got, m, len(rec.writes), w.Buffered())
			}
			boom := errors.New("boom")
			_, _ = w.Write(m)
			if err := w.FlushWith(func([]byte) error { return boom }); !errors.Is(err, boom) || w.Buffered() != 0 {
				t.Fatalf("failed FlushWith: %v, %d left buffered", err, w.Buffered())
			}
		})
	}
}

func TestWriterAvailable(t *testing.T) {
	w := NewWriter(io.Discard, 64)
	if got := w.Available(); got != 64 {
		t.Fatalf("empty: Available = %d, want 64", got)
	}
	_, _ = w.Write(make([]byte, 40))
	if got := w.Available(); got != 24 {
		t.Fatalf("after 40 bytes: Available = %d, want 24", got)
	}
	_, _ = w.Write(make([]byte, 30)) // does not fit: flushes first
	if got := w.Available(); got != 34 {
		t.Fatalf("after a write that flushed: Available = %d, want 34", got)
	}
}
