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

var errRefProtocol = errors.New("protocol error")

// refFrame is the obvious framing of a whole byte string: the messages it
// holds, then io.EOF (clean end), io.ErrUnexpectedEOF (cut message) or
// errRefProtocol (bad length).
func refFrame(data []byte, maxLen int) ([][]byte, error) {
	var msgs [][]byte
	for {
		switch {
		case len(data) == 0:
			return msgs, io.EOF
		case len(data) < HeaderLen:
			return msgs, io.ErrUnexpectedEOF
		}
		n := int(int32(binary.BigEndian.Uint32(data[1:5])))
		if n < 4 || n-4 > maxLen {
			return msgs, errRefProtocol
		}
		if len(data) < 1+n {
			return msgs, io.ErrUnexpectedEOF
		}
		msgs = append(msgs, data[:1+n])
		data = data[1+n:]
	}
}

func fuzzReaderSeeds(t testing.TB) [][]byte {
	return [][]byte{
		nil,
		frame('Q', []byte("SELECT 1\x00")),
		concat(pgbenchBatch(t, 1), pgbenchBatch(t, 22)),
		concat(frame('S', nil), frame('d', pattern(300, 1)), frame('c', nil)),
		rawHeader('Q', 0),
		rawHeader('Q', 3),
		rawHeader('Q', 0xffffffff),
		rawHeader('Q', 0x80000000),
		rawHeader('d', MaxMessageLen+5),
		concat(rawHeader('d', 1000), pattern(10, 2)),
		frame('Q', []byte("SELECT 1\x00"))[:7],
		[]byte{'Z', 0, 0},
	}
}

// FuzzReader feeds arbitrary bytes through Next/Message/Stream/Skip (and
// Peek/Consume) with a
// small buffer and arbitrary read boundaries. The Reader must agree with
// refFrame, never hand out a message that disagrees with its header, and
// stop.
func FuzzReader(f *testing.F) {
	for i, s := range fuzzReaderSeeds(f) {
		f.Add(s, uint16(16+i*7), byte(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, size uint16, mode byte) {
		bufSize := HeaderLen + int(size)%2048
		var src io.Reader = bytes.NewReader(data)
		switch mode & 7 {
		case 1:
			src = iotest.OneByteReader(src)
		case 2:
			src = iotest.HalfReader(src)
		case 3:
			src = iotest.DataErrReader(src)
		case 4:
			src = &chunkReader{chunks: splitEvery(bytes.Clone(data), 1+int(size)%13)}
		}
		var r *Reader
		if mode&0x20 != 0 {
			r = NewReader(src, bufSize)
		} else {
			r = NewPooledReader(src, NewBufferPool(bufSize))
		}
		maxLen := MaxMessageLen
		if mode&0x40 != 0 {
			maxLen = int(size)
			r.SetMaxLen(maxLen)
		}
		consume := (mode >> 3) & 3

		want, wantErr := refFrame(data, maxLen)
		var err error
		var got int
		for i := 0; ; i++ {
			if i > len(data)/HeaderLen+1 {
				t.Fatalf("%d messages from %d bytes", i, len(data))
			}
			var typ byte
			var n int
			typ, n, err = r.Next()
			if err != nil {
				break
			}
			if n < 0 || n > maxLen {
				t.Fatalf("Next accepted body length %d", n)
			}
			var m []byte
			switch {
			case mode&0x80 != 0:
				// Peek a prefix, Consume part of it, Stream the rest.
				var peek []byte
				peek, err = r.Peek(min(1+int(size)%64, bufSize))
				if err != nil {
					break
				}
				if len(peek) != min(1+int(size)%64, bufSize, HeaderLen+n) {
					t.Fatalf("Peek returned %d bytes", len(peek))
				}
				c := len(peek) / 2
				m = bytes.Clone(peek[:c])
				if err = r.Consume(c); err != nil {
					t.Fatalf("Consume(%d) after Peek: %v", c, err)
				}
				var buf bytes.Buffer
				err = r.Stream(&buf)
				m = append(m, buf.Bytes()...)
			case consume == 2:
				err = r.Skip()
			case consume == 1 || consume == 0 && !r.Fits():
				var buf bytes.Buffer
				err = r.Stream(&buf)
				m = buf.Bytes()
			default:
				m, err = r.Message()
				if errors.Is(err, ErrTooLarge) {
					if r.Fits() {
						t.Fatal("ErrTooLarge for a message that Fits")
					}
					var buf bytes.Buffer
					err = r.Stream(&buf)
					m = buf.Bytes()
				}
			}
			if err != nil {
				break
			}
			if got >= len(want) {
				t.Fatalf("reader returned message %d, reference has %d", got, len(want))
			}
			w := want[got]
			got++
			if typ != w[0] || n != len(w)-HeaderLen {
				t.Fatalf("message %d: Next = %q, %d; want %q, %d", got, typ, n, w[0], len(w)-HeaderLen)
			}
			if consume != 2 || mode&0x80 != 0 {
				checkMessage(t, m, typ, n)
				if !bytes.Equal(m, w) {
					t.Fatalf("message %d differs from the input", got)
				}
			}
			if r.Buffered() < 0 || r.Buffered() > len(data) {
				t.Fatalf("Buffered() = %d", r.Buffered())
			}
		}
		if got != len(want) {
			t.Fatalf("got %d messages, reference %d (err %v, reference %v)", got, len(want), err, wantErr)
		}
		switch wantErr {
		case errRefProtocol:
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *ProtocolError", err)
			}
		default:
			if err != wantErr {
				t.Fatalf("err = %v, want %v", err, wantErr)
			}
		}
		if err == io.EOF && r.holdsBorrowed() {
			t.Fatal("reader at EOF holds a borrowed buffer")
		}
	})
}

func FuzzParseStartup(f *testing.F) {
	seeds := [][]byte{
		startupBody(3<<16, "user", "alice", "database", "db"),
		startupBody(3<<16|2, "user", "bob", "_pq_.foo", "bar"),
		startupBody(3 << 16),
		u32(SSLRequestCode),
		u32(GSSENCRequestCode),
		concat(u32(CancelRequestCode), u32(7), pattern(32, 1)),
		append(startupBody(3<<16, "user", "x"), 'y'),
		append(u32(3<<16), "user\x00bob"...),
		{0, 3, 0},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, params, err := ParseStartup(body)
		if err != nil {
			if !isProtocolError(err) {
				t.Fatalf("err %v (%T) is not a *ProtocolError", err, err)
			}
			if params != nil {
				t.Fatal("params with an error")
			}
		} else {
			if v != binary.BigEndian.Uint32(body) {
				t.Fatalf("version %d, body says %d", v, binary.BigEndian.Uint32(body))
			}
			if ProtocolMajor(v) != 3 {
				if params != nil {
					t.Fatalf("params for a non-3.x code %d", v)
				}
			} else {
				// A 3.x packet that parses re-encodes to itself.
				kv := make([]string, 0, 2*len(params))
				for _, p := range params {
					if p.Name == "" {
						t.Fatal("empty parameter name")
					}
					kv = append(kv, p.Name, p.Value)
				}
				if re := startupBody(v, kv...); !bytes.Equal(re, body) {
					t.Fatalf("re-encoded %q, body %q", re, body)
				}
			}
		}
		// The same body framed as a packet through the Reader.
		pkt := packet(body)
		r := NewPooledReader(iotest.HalfReader(bytes.NewReader(pkt)), NewBufferPool(16<<10))
		got, rerr := r.StartupPacket(MaxStartupLen)
		switch {
		case len(pkt) < 8 || len(pkt) > MaxStartupLen:
			if !isProtocolError(rerr) {
				t.Fatalf("StartupPacket of %d bytes: %v", len(pkt), rerr)
			}
		case rerr != nil || !bytes.Equal(got, body):
			t.Fatalf("StartupPacket: %v", rerr)
		}
	})
}

func FuzzParseCancel(f *testing.F) {
	f.Add(concat(u32(CancelRequestCode), u32(42), []byte{1, 2, 3, 4}))
	f.Add(concat(u32(CancelRequestCode), u32(42), pattern(32, 1)))
	f.Add(concat(u32(CancelRequestCode), u32(42), pattern(256, 2)))
	f.Add(concat(u32(CancelRequestCode), u32(42), pattern(257, 3)))
	f.Add(concat(u32(CancelRequestCode), u32(42)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		pid, key, err := ParseCancel(body)
		valid := len(body) >= 12 && len(body) <= 8+256
		if !valid {
			if !isProtocolError(err) {
				t.Fatalf("%d-byte body: err %v, want *ProtocolError", len(body), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%d-byte body: %v", len(body), err)
		}
		if pid != binary.BigEndian.Uint32(body[4:8]) || !bytes.Equal(key, body[8:]) {
			t.Fatalf("pid %d key %x from %x", pid, key, body)
		}
		// pgproto3 encodes the same packet back.
		if binary.BigEndian.Uint32(body) == CancelRequestCode {
			enc, err := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: key}).Encode(nil)
			if err != nil || !bytes.Equal(enc, packet(body)) {
				t.Fatalf("pgproto3 re-encoding differs: %v", err)
			}
		}
	})
}
