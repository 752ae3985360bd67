package proxy

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgrecycle/pgrecycle/wire"
)

// SQLSTATEs the proxy reports itself.
const (
	codeProtocolViolation          = "08P01"
	codeConnectionFailure          = "08006"
	codeInvalidAuthSpec            = "28000"
	codeInvalidPassword            = "28P01"
	codeUnknownDatabase            = "3D000"
	codeTooManyConnections         = "53300"
	codeQueryCanceled              = "57014"
	codeAdminShutdown              = "57P01"
	codeFeatureNotSupported        = "0A000"
	codeInsufficientPriv           = "42501"
	codeObjectNotInState           = "55000"
	codeDuplicatePreparedStatement = "42P05"
	codeUndefinedObject            = "42704"
	codeInvalidParameterValue      = "22023"
)

// clientError is an error to report to the client as an ErrorResponse.
type clientError struct {
	Severity string // "ERROR" or "FATAL"
	Code     string
	Message  string
	Detail   string
	Hint     string
	// relayed: the client already has the server's own FATAL, as
	// PostgreSQL sends it; nothing more is sent (backendFailed).
	relayed bool
}

func (e *clientError) Error() string { return e.Code + ": " + e.Message }

func fatalf(code, format string, args ...any) *clientError {
	return &clientError{Severity: "FATAL", Code: code, Message: fmt.Sprintf(format, args...)}
}

func errorf(code, format string, args ...any) *clientError {
	return &clientError{Severity: "ERROR", Code: code, Message: fmt.Sprintf(format, args...)}
}

// fromBackendError turns a backend connect error into what the client sees:
// the server's own SQLSTATE and message when it gave one.
func fromBackendError(severity string, err error) *clientError {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return &clientError{Severity: severity, Code: pgErr.Code, Message: pgErr.Message, Detail: pgErr.Detail, Hint: pgErr.Hint}
	}
	var ce *clientError
	if errors.As(err, &ce) {
		c := *ce
		c.Severity = severity
		return &c
	}
	return &clientError{Severity: severity, Code: codeConnectionFailure,
		Message: "pgrecycle: could not connect to the database server: " + err.Error()}
}

// appendError appends an ErrorResponse to dst.
func appendError(dst []byte, e *clientError) ([]byte, error) {
	msg := &pgproto3.ErrorResponse{
		Severity: e.Severity, SeverityUnlocalized: e.Severity,
		Code: e.Code, Message: e.Message, Detail: e.Detail, Hint: e.Hint,
	}
	return msg.Encode(dst)
}

// appendReady appends ReadyForQuery with the given status.
func appendReady(dst []byte, status byte) []byte {
	dst = wire.AppendHeader(dst, wire.MsgReadyForQuery, 1)
	return append(dst, status)
}
