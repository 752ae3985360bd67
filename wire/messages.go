package wire

import (
	"bytes"
	"encoding/binary"
)

// Message type bytes the proxy inspects.
const (
	// Frontend
	MsgQuery        = 'Q'
	MsgParse        = 'P'
	MsgBind         = 'B'
	MsgDescribe     = 'D'
	MsgExecute      = 'E'
	MsgSync         = 'S'
	MsgFlush        = 'H'
	MsgClose        = 'C'
	MsgTerminate    = 'X'
	MsgFunctionCall = 'F'
	MsgCopyData     = 'd'
	MsgCopyDone     = 'c'
	MsgCopyFail     = 'f'
	MsgPassword     = 'p'

	// Backend
	MsgReadyForQuery   = 'Z'
	MsgParameterStatus = 'S'
	MsgErrorResponse   = 'E'
	MsgNoticeResponse  = 'N'
	MsgNotification    = 'A'
	MsgCopyInResponse  = 'G'
	MsgCopyOutResponse = 'H'
	MsgCopyBoth        = 'W'
	MsgCommandComplete = 'C'
	MsgBackendKeyData  = 'K'
	MsgAuthentication  = 'R'
	MsgRowDescription  = 'T'
	MsgNoData          = 'n'
)

// CString splits a NUL-terminated string off the front of b.
func CString(b []byte) (s []byte, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// ParameterStatus decodes a ParameterStatus body without allocating.
func ParameterStatus(body []byte) (name, value []byte, ok bool) {
	name, rest, ok := CString(body)
	if !ok {
		return nil, nil, false
	}
	value, _, ok = CString(rest)
	return name, value, ok
}

// ErrorCode returns the SQLSTATE ('C' field) of an ErrorResponse or
// NoticeResponse body, and its severity ('V', else 'S').
func ErrorCode(body []byte) (code, severity []byte) {
	for len(body) > 0 && body[0] != 0 {
		field := body[0]
		val, rest, ok := CString(body[1:])
		if !ok {
			return code, severity
		}
		switch field {
		case 'C':
			code = val
		case 'V':
			severity = val
		case 'S':
			if severity == nil {
				severity = val
			}
		}
		body = rest
	}
	return code, severity
}

// AppendHeader appends a message header for a body of n bytes.
func AppendHeader(dst []byte, typ byte, n int) []byte {
	dst = append(dst, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(n+4))
	return dst
}

// ErrorMessage returns the message ('M' field) of an ErrorResponse or
// NoticeResponse body.
func ErrorMessage(body []byte) string {
	return string(ErrorField(body, 'M'))
}

// ErrorField returns one field of an ErrorResponse or NoticeResponse body,
// nil when it is absent.
func ErrorField(body []byte, field byte) []byte {
	for len(body) > 0 && body[0] != 0 {
		f := body[0]
		val, rest, ok := CString(body[1:])
		if !ok {
			break
		}
		if f == field {
			return val
		}
		body = rest
	}
	return nil
}
