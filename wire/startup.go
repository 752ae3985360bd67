package wire

import (
	"bytes"
	"encoding/binary"
)

// Startup-phase request codes (the "protocol version" field).
const (
	CancelRequestCode = 80877102
	SSLRequestCode    = 80877103
	GSSENCRequestCode = 80877104
	// MaxStartupLen bounds a startup packet, like PostgreSQL's
	// MAX_STARTUP_PACKET_LENGTH.
	MaxStartupLen = 10000
)

// ProtocolMajor and ProtocolMinor split a startup version code.
func ProtocolMajor(v uint32) uint32 { return v >> 16 }

// ProtocolMinor is the minor half of a startup version code.
func ProtocolMinor(v uint32) uint32 { return v & 0xffff }

// Param is one startup parameter, in the order the client sent it.
type Param struct{ Name, Value string }

// ParseStartup decodes a startup packet body: version code and, for a
// StartupMessage, its parameters. Any minor version is accepted here; the
// caller negotiates it down.
func ParseStartup(body []byte) (version uint32, params []Param, err error) {
	if len(body) < 4 {
		return 0, nil, &ProtocolError{Msg: "startup packet too short"}
	}
	version = binary.BigEndian.Uint32(body)
	if ProtocolMajor(version) != 3 {
		// Request codes and unsupported versions: the caller decides.
		return version, nil, nil
	}
	rest := body[4:]
	for len(rest) > 0 {
		if rest[0] == 0 {
			if len(rest) != 1 {
				return 0, nil, &ProtocolError{Msg: "data after startup packet terminator"}
			}
			return version, params, nil
		}
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return 0, nil, &ProtocolError{Msg: "unterminated startup parameter name"}
		}
		name := string(rest[:i])
		rest = rest[i+1:]
		j := bytes.IndexByte(rest, 0)
		if j < 0 {
			return 0, nil, &ProtocolError{Msg: "unterminated startup parameter value"}
		}
		params = append(params, Param{Name: name, Value: string(rest[:j])})
		rest = rest[j+1:]
	}
	return 0, nil, &ProtocolError{Msg: "startup packet missing terminator"}
}

// ParseCancel decodes a CancelRequest body (after the code): process ID and
// secret key (4 bytes in protocol 3.0, up to 256 in 3.2).
func ParseCancel(body []byte) (pid uint32, key []byte, err error) {
	if len(body) < 12 || len(body) > 8+256 {
		return 0, nil, &ProtocolError{Msg: "malformed CancelRequest"}
	}
	return binary.BigEndian.Uint32(body[4:8]), body[8:], nil
}
