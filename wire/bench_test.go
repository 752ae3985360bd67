package wire

import (
	"bytes"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// forwardOne copies one message from r to w the way the proxy does: whole
// when it fits, streamed otherwise, flushing once r has nothing buffered.
func forwardOne(r *Reader, w *Writer) (byte, error) {
	typ, _, err := r.Next()
	if err != nil {
		return 0, err
	}
	if r.Fits() {
		m, err := r.Message()
		if err != nil {
			return 0, err
		}
		if _, err := w.Write(m); err != nil {
			return 0, err
		}
	} else if err := r.Stream(w); err != nil {
		return 0, err
	}
	if r.Buffered() == 0 {
		if err := w.Flush(); err != nil {
			return 0, err
		}
	}
	return typ, nil
}

// loopReader hands out data one batch per Read, forever, like a client
// that sends one batch and waits for the answer.
type loopReader struct {
	data  []byte
	batch int
	off   int
}

func (l *loopReader) Read(p []byte) (int, error) {
	if l.off == len(l.data) {
		l.off = 0
	}
	n := copy(p, l.data[l.off:min(len(l.data), l.off+l.batch)])
	l.off += n
	return n, nil
}

// forwardBatch forwards messages up to and including the next Sync (or one
// message when stopAt is 0).
func forwardBatch(r *Reader, w *Writer, stopAt byte) error {
	for {
		typ, err := forwardOne(r, w)
		if err != nil {
			return err
		}
		if stopAt == 0 || typ == stopAt {
			return nil
		}
	}
}

func pgbenchStream(tb testing.TB, batches int) (data []byte, batchLen int) {
	for i := range batches {
		b := pgbenchBatch(tb, 10000+i) // five-digit aids: equal-length batches
		batchLen = len(b)
		data = append(data, b...)
	}
	return data, batchLen
}

// warmUp forwards a few batches before timing, so that the pool's first
// allocations (buffers, sync.Pool's own queues) don't show up in a
// -benchtime=1x run.
func warmUp(b *testing.B, r *Reader, w *Writer, stopAt byte) {
	for range 3 {
		if err := forwardBatch(r, w, stopAt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForward: one op forwards one pgbench -S transaction
// (Bind/Execute/Sync) client→server, or one 64 KiB CopyData.
func BenchmarkForward(b *testing.B) {
	pool := NewBufferPool(16 << 10)
	stream, batchLen := pgbenchStream(b, 64)

	b.Run("pgbench-S/bytes.Reader", func(b *testing.B) {
		src := bytes.NewReader(stream)
		r := NewPooledReader(src, pool)
		w := NewPooledWriter(io.Discard, pool)
		b.SetBytes(int64(batchLen))
		warmUp(b, r, w, MsgSync)
		b.ReportAllocs()
		for b.Loop() {
			err := forwardBatch(r, w, MsgSync)
			if err == io.EOF {
				src.Reset(stream)
				err = forwardBatch(r, w, MsgSync)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pgbench-S/read-per-batch", func(b *testing.B) {
		r := NewPooledReader(&loopReader{data: stream, batch: batchLen}, pool)
		w := NewPooledWriter(io.Discard, pool)
		b.SetBytes(int64(batchLen))
		warmUp(b, r, w, MsgSync)
		b.ReportAllocs()
		for b.Loop() {
			if err := forwardBatch(r, w, MsgSync); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("copydata-64KiB", func(b *testing.B) {
		msg := encode(b, &pgproto3.CopyData{Data: pattern(64<<10, 1)})
		r := NewPooledReader(&loopReader{data: msg, batch: 8 << 10}, pool)
		w := NewPooledWriter(io.Discard, pool)
		b.SetBytes(int64(len(msg)))
		warmUp(b, r, w, 0)
		b.ReportAllocs()
		for b.Loop() {
			if err := forwardBatch(r, w, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestForwardZeroAlloc holds the hot path to BenchmarkForward's promise.
func TestForwardZeroAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops buffers at random under the race detector")
	}
	pool := NewBufferPool(16 << 10)
	stream, batchLen := pgbenchStream(t, 64)
	big := encode(t, &pgproto3.CopyData{Data: pattern(64<<10, 1)})
	tests := []struct {
		name   string
		src    io.Reader
		stopAt byte
	}{
		{"pgbench-S", &loopReader{data: stream, batch: batchLen}, MsgSync},
		{"pgbench-S/one-byte-reads", &loopReader{data: stream, batch: 1}, MsgSync},
		{"copydata", &loopReader{data: big, batch: 8 << 10}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewPooledReader(tt.src, pool)
			w := NewPooledWriter(io.Discard, pool)
			allocs := testing.AllocsPerRun(1000, func() {
				if err := forwardBatch(r, w, tt.stopAt); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocs per batch, want 0", allocs)
			}
		})
	}
}

func BenchmarkParseStartup(b *testing.B) {
	body := encode(b, &pgproto3.StartupMessage{
		ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{
			"user": "pgbench", "database": "pgbench", "application_name": "pgbench",
			"client_encoding": "UTF8", "DateStyle": "ISO",
		},
	})[4:]
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseStartup(body); err != nil {
			b.Fatal(err)
		}
	}
}
