package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// packet prefixes body with its startup-packet length.
func packet(body []byte) []byte {
	p := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
	return append(p, body...)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func startupBody(version uint32, kv ...string) []byte {
	b := u32(version)
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	return append(b, 0)
}

func isProtocolError(err error) bool {
	var pe *ProtocolError
	return errors.As(err, &pe)
}

func TestStartupPacketBounds(t *testing.T) {
	rawLen := func(n uint32, rest []byte) []byte { return append(u32(n), rest...) }
	tests := []struct {
		name    string
		data    []byte
		maxLen  int
		wantLen int   // body length on success
		wantErr error // nil, io.EOF, io.ErrUnexpectedEOF; protocol errors below
		proto   bool
	}{
		{"minimum 8", packet(u32(SSLRequestCode)), MaxStartupLen, 4, nil, false},
		{"length 7", rawLen(7, []byte{0, 0, 0}), MaxStartupLen, 0, nil, true},
		{"length 4", rawLen(4, nil), MaxStartupLen, 0, nil, true},
		{"length 0", rawLen(0, nil), MaxStartupLen, 0, nil, true},
		{"negative", rawLen(math.MaxUint32, nil), MaxStartupLen, 0, nil, true},
		{"at max", packet(make([]byte, MaxStartupLen-4)), MaxStartupLen, MaxStartupLen - 4, nil, false},
		{"above max", packet(make([]byte, MaxStartupLen-3)), MaxStartupLen, 0, nil, true},
		{"above small max", packet(make([]byte, 100)), 50, 0, nil, true},
		{"huge declared", rawLen(1<<30, nil), MaxStartupLen, 0, nil, true},
		{"empty", nil, MaxStartupLen, 0, io.EOF, false},
		{"length cut", []byte{0, 0}, MaxStartupLen, 0, io.ErrUnexpectedEOF, false},
		{"body cut", packet(startupBody(3<<16, "user", "u"))[:12], MaxStartupLen, 0, io.ErrUnexpectedEOF, false},
	}
	for _, tt := range tests {
		for _, rm := range readModes {
			t.Run(tt.name+"/"+rm.name, func(t *testing.T) {
				r := NewPooledReader(rm.wrap(tt.data), NewBufferPool(16<<10))
				body, err := r.StartupPacket(tt.maxLen)
				switch {
				case tt.proto:
					if !isProtocolError(err) {
						t.Fatalf("err = %v (%T), want *ProtocolError", err, err)
					}
				case tt.wantErr != nil:
					if err != tt.wantErr {
						t.Fatalf("err = %v, want %v", err, tt.wantErr)
					}
				default:
					if err != nil {
						t.Fatal(err)
					}
					if len(body) != tt.wantLen || !bytes.Equal(body, tt.data[4:]) {
						t.Fatalf("body len %d, want %d", len(body), tt.wantLen)
					}
				}
			})
		}
	}
	t.Run("larger than buffer", func(t *testing.T) {
		r := NewReader(bytes.NewReader(packet(make([]byte, 200))), 64)
		if _, err := r.StartupPacket(MaxStartupLen); !isProtocolError(err) {
			t.Fatalf("err = %v, want *ProtocolError", err)
		}
	})
}

// TestStartupSequence: SSLRequest, then the StartupMessage, then typed
// messages, as a client sends them; data sent after the SSLRequest shows up
// in Buffered().
func TestStartupSequence(t *testing.T) {
	ssl := encode(t, &pgproto3.SSLRequest{})
	sm := encode(t, &pgproto3.StartupMessage{
		ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters:      map[string]string{"user": "alice", "database": "db", "application_name": "pgbench"},
	})
	q := frame('Q', []byte("SELECT 1\x00"))
	for _, rm := range readModes {
		t.Run(rm.name, func(t *testing.T) {
			r := NewPooledReader(rm.wrap(concat(ssl, sm, q)), NewBufferPool(16<<10))
			body, err := r.StartupPacket(MaxStartupLen)
			if err != nil {
				t.Fatal(err)
			}
			v, params, err := ParseStartup(body)
			if err != nil || v != SSLRequestCode || params != nil {
				t.Fatalf("SSLRequest: %d, %v, %v", v, params, err)
			}
			if rm.name == "whole" && r.Buffered() != len(sm)+len(q) {
				t.Fatalf("Buffered() = %d after SSLRequest, want %d", r.Buffered(), len(sm)+len(q))
			}
			body, err = r.StartupPacket(MaxStartupLen)
			if err != nil {
				t.Fatal(err)
			}
			v, params, err = ParseStartup(body)
			if err != nil || v != pgproto3.ProtocolVersion30 {
				t.Fatalf("StartupMessage: %d, %v", v, err)
			}
			got := map[string]string{}
			for _, p := range params {
				got[p.Name] = p.Value
			}
			if !maps.Equal(got, map[string]string{"user": "alice", "database": "db", "application_name": "pgbench"}) {
				t.Fatalf("params %v", params)
			}
			if typ, _, err := r.Next(); err != nil || typ != 'Q' {
				t.Fatalf("Next after startup = %q, %v", typ, err)
			}
			if m, err := r.Message(); err != nil || !bytes.Equal(m, q) {
				t.Fatalf("Message = %q, %v", m, err)
			}
		})
	}
}

func TestParseStartup(t *testing.T) {
	const v30, v32 = 3 << 16, 3<<16 | 2
	tests := []struct {
		name    string
		body    []byte
		version uint32
		params  []Param
		proto   bool
	}{
		{"params in order", startupBody(v30, "user", "bob", "database", "x", "options", "-c a=b"),
			v30, []Param{{"user", "bob"}, {"database", "x"}, {"options", "-c a=b"}}, false},
		{"3.2 accepted", startupBody(v32, "user", "bob"), v32, []Param{{"user", "bob"}}, false},
		{"3.99 accepted", startupBody(3<<16|99, "user", "bob"), 3<<16 | 99, []Param{{"user", "bob"}}, false},
		{"no params", startupBody(v30), v30, nil, false},
		{"empty value", startupBody(v30, "user", "bob", "application_name", ""),
			v30, []Param{{"user", "bob"}, {"application_name", ""}}, false},
		{"non-ASCII", startupBody(v30, "user", "zoë"), v30, []Param{{"user", "zoë"}}, false},
		{"SSLRequest", u32(SSLRequestCode), SSLRequestCode, nil, false},
		{"GSSENCRequest", u32(GSSENCRequestCode), GSSENCRequestCode, nil, false},
		{"CancelRequest", concat(u32(CancelRequestCode), u32(1234), u32(5678)), CancelRequestCode, nil, false},
		{"protocol 2.0", append(u32(2<<16), "garbage"...), 2 << 16, nil, false},
		{"protocol 4.0", u32(4 << 16), 4 << 16, nil, false},
		{"empty", nil, 0, nil, true},
		{"3 bytes", []byte{0, 3, 0}, 0, nil, true},
		{"missing terminator", startupBody(v30, "user", "bob")[:len(startupBody(v30, "user", "bob"))-1], 0, nil, true},
		{"version only", u32(v30), 0, nil, true},
		{"data after terminator", append(startupBody(v30, "user", "bob"), 'x'), 0, nil, true},
		{"second terminator", append(startupBody(v30, "user", "bob"), 0), 0, nil, true},
		{"unterminated name", append(u32(v30), "user"...), 0, nil, true},
		{"unterminated value", append(u32(v30), "user\x00bob"...), 0, nil, true},
		{"name without value", append(u32(v30), "user\x00"...), 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, params, err := ParseStartup(tt.body)
			if tt.proto {
				if !isProtocolError(err) {
					t.Fatalf("err = %v, want *ProtocolError", err)
				}
				if params != nil {
					t.Fatalf("params %v with an error", params)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v != tt.version || !slices.Equal(params, tt.params) {
				t.Fatalf("got %d %v, want %d %v", v, params, tt.version, tt.params)
			}
		})
	}
}

func TestProtocolVersionSplit(t *testing.T) {
	if ProtocolMajor(pgproto3.ProtocolVersion30) != 3 || ProtocolMinor(pgproto3.ProtocolVersion30) != 0 {
		t.Fatal("3.0")
	}
	if ProtocolMajor(pgproto3.ProtocolVersion32) != 3 || ProtocolMinor(pgproto3.ProtocolVersion32) != 2 {
		t.Fatal("3.2")
	}
	if ProtocolMajor(SSLRequestCode) != 1234 || ProtocolMinor(SSLRequestCode) != 5679 {
		t.Fatal("SSLRequest is 1234.5679")
	}
	if ProtocolMinor(CancelRequestCode) != 5678 || ProtocolMinor(GSSENCRequestCode) != 5680 {
		t.Fatal("request codes")
	}
}

func TestParseCancel(t *testing.T) {
	key32 := pattern(32, 7)
	key256 := pattern(256, 8)
	tests := []struct {
		name string
		body []byte
		pid  uint32
		key  []byte
		ok   bool
	}{
		{"3.0 4-byte key", encode(t, &pgproto3.CancelRequest{ProcessID: 4242, SecretKey: []byte{1, 2, 3, 4}})[4:], 4242, []byte{1, 2, 3, 4}, true},
		{"3.2 32-byte key", encode(t, &pgproto3.CancelRequest{ProcessID: 1, SecretKey: key32})[4:], 1, key32, true},
		{"256-byte key", encode(t, &pgproto3.CancelRequest{ProcessID: math.MaxUint32, SecretKey: key256})[4:], math.MaxUint32, key256, true},
		{"257-byte key", concat(u32(CancelRequestCode), u32(1), pattern(257, 1)), 0, nil, false},
		{"3-byte key", concat(u32(CancelRequestCode), u32(1), []byte{1, 2, 3}), 0, nil, false},
		{"no key", concat(u32(CancelRequestCode), u32(1)), 0, nil, false},
		{"code only", u32(CancelRequestCode), 0, nil, false},
		{"empty", nil, 0, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pid, key, err := ParseCancel(tt.body)
			if !tt.ok {
				if !isProtocolError(err) {
					t.Fatalf("err = %v, want *ProtocolError", err)
				}
				return
			}
			if err != nil || pid != tt.pid || !bytes.Equal(key, tt.key) {
				t.Fatalf("got %d %x %v", pid, key, err)
			}
		})
	}
	// Through the Reader, as the proxy does it.
	pkt := encode(t, &pgproto3.CancelRequest{ProcessID: 99, SecretKey: key32})
	r := NewPooledReader(bytes.NewReader(pkt), NewBufferPool(16<<10))
	body, err := r.StartupPacket(MaxStartupLen)
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := ParseStartup(body); err != nil || v != CancelRequestCode {
		t.Fatalf("ParseStartup: %d %v", v, err)
	}
	if pid, key, err := ParseCancel(body); err != nil || pid != 99 || !bytes.Equal(key, key32) {
		t.Fatalf("ParseCancel: %d %x %v", pid, key, err)
	}
}
