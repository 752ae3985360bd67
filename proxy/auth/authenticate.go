package auth

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Method names accepted by Authenticate and reported in Result.Method.
const (
	MethodTrust = "trust"
	MethodPlain = "plain"
	MethodMD5   = "md5"
	MethodSCRAM = "scram-sha-256"
	// MethodCert is TLS client certificate authentication; the proxy
	// checks it from the connection (the certificate's common name must be
	// the user), without a password exchange.
	MethodCert = "cert"
)

// SQLSTATE codes carried by *Error.
const (
	CodeInvalidPassword      = "28P01"
	CodeInvalidAuthorization = "28000"
	CodeProtocolViolation    = "08P01"
)

// Frontend message types seen during authentication.
const (
	passwordResponseType byte = 'p' // PasswordMessage, SASLInitialResponse, SASLResponse
	terminateType        byte = 'X'
)

// Conn is the client connection during authentication. The proxy frames
// messages itself; this package decodes bodies and encodes replies with
// pgproto3.
type Conn interface {
	// Send encodes msg and flushes it to the client.
	Send(msg pgproto3.BackendMessage) error
	// Receive returns the next frontend message: its type byte and its body
	// without the 4-byte length. body is valid until the next Receive.
	Receive() (typ byte, body []byte, err error)
}

// ChannelBinder is a Conn over TLS that can bind SCRAM to its channel
// (SCRAM-SHA-256-PLUS): TLSServerEndPoint returns the tls-server-end-point
// data of the server certificate, or nil to offer no binding.
type ChannelBinder interface {
	TLSServerEndPoint() []byte
}

// Result describes a successful authentication.
type Result struct {
	Method    string // the method actually used: "trust", "plain", "md5", "scram-sha-256"
	Password  string // the cleartext password when the client sent it (plain method), else ""
	ClientKey []byte // SCRAM ClientKey recovered from the client's proof, for passthrough; nil otherwise
}

// String is redacted: Password and ClientKey are each enough to log in.
func (r Result) String() string {
	s := "auth.Result{Method: " + r.Method
	if r.Password != "" {
		s += ", Password: ***"
	}
	if r.ClientKey != nil {
		s += ", ClientKey: ***"
	}
	return s + "}"
}

// GoString keeps %#v redacted as well.
func (r Result) GoString() string { return r.String() }

// Error is an authentication failure to report to the client as a FATAL
// ErrorResponse. Code is a SQLSTATE: 28P01 wrong password or unknown user,
// 28000 unsupported method, 08P01 protocol violation or malformed message.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message + " (SQLSTATE " + e.Code + ")" }

// ErrorResponse builds the message the caller sends to the client.
func (e *Error) ErrorResponse() *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{
		Severity:            "FATAL",
		SeverityUnlocalized: "FATAL",
		Code:                e.Code,
		Message:             e.Message,
	}
}

func passwordFailed(user string) *Error {
	// PostgreSQL's wording, without escaping, so clients and scripts that
	// match on it keep working.
	return &Error{Code: CodeInvalidPassword, Message: `password authentication failed for user "` + user + `"`}
}

func protocolViolation(msg string) *Error {
	return &Error{Code: CodeProtocolViolation, Message: msg}
}

// Authenticate runs the exchange for method ("trust", "plain", "md5",
// "scram-sha-256") for user, whose secret is secret; found is false when the
// user is unknown. An unknown user, or one with a KindNone secret, goes
// through the same exchange with a made-up secret and then fails like a
// wrong password. Under plain and scram-sha-256, when found is false and
// secret is a SCRAM verifier (see MockSecret), it is the made-up verifier;
// otherwise a random one is made up.
//
// The method can change with the secret, as in PostgreSQL: md5 with a
// SCRAM-only secret runs SCRAM, and scram-sha-256 with an MD5-only secret
// runs md5, since neither response can be checked against the other secret.
//
// verifiers, when not nil, keeps the SCRAM verifiers derived from plain
// passwords between logins.
//
// It sends neither AuthenticationOk nor ErrorResponse: on failure it returns
// a *Error for the caller to report. I/O errors are returned as they are,
// and a client's Terminate is returned as io.EOF.
func Authenticate(c Conn, method, user string, secret Secret, found bool, verifiers *VerifierCache) (Result, error) {
	switch method {
	case MethodTrust:
		return Result{Method: MethodTrust}, nil
	case MethodPlain, MethodMD5, MethodSCRAM:
	default:
		return Result{}, &Error{Code: CodeInvalidAuthorization, Message: fmt.Sprintf("authentication method %q is not supported", method)}
	}
	known := found && secret.Kind != KindNone
	if !known {
		// A user without a password gets the same treatment as an unknown
		// one: a full exchange that cannot succeed.
		secret = mockSecret(method, secret, found)
	}

	var res Result
	var err error
	switch method {
	case MethodPlain:
		res, err = authPlain(c, user, secret)
	case MethodMD5:
		if secret.Kind == KindSCRAM {
			res, err = authSCRAM(c, user, secret, verifiers)
		} else {
			res, err = authMD5(c, user, secret)
		}
	default: // MethodSCRAM
		if secret.Kind == KindMD5 {
			res, err = authMD5(c, user, secret)
		} else {
			res, err = authSCRAM(c, user, secret, verifiers)
		}
	}
	if err != nil {
		return Result{}, err
	}
	if !known {
		// Unreachable unless the client guessed the made-up secret; checked
		// anyway so that an unknown user can never get in.
		return Result{}, passwordFailed(user)
	}
	return res, nil
}

// mockSecret makes up the secret of an unknown user so that the exchange
// looks like a real one. Under md5 it is an MD5 hash so that the client sees
// the challenge the configured method announces.
func mockSecret(method string, given Secret, found bool) Secret {
	if method == MethodMD5 {
		return Secret{Kind: KindMD5, MD5: md5Prefix + hex.EncodeToString(randomBytes(md5.Size))}
	}
	if !found && given.Kind == KindSCRAM {
		return given
	}
	return Secret{Kind: KindSCRAM, SCRAM: SCRAMVerifier{
		Iterations: defaultIterations,
		Salt:       randomBytes(saltLen),
		StoredKey:  randomBytes(sha256.Size),
		ServerKey:  randomBytes(sha256.Size),
	}}
}

// receivePassword reads the client's next message, which must be a password
// response ('p'): PasswordMessage, SASLInitialResponse or SASLResponse all
// share that type byte.
func receivePassword(c Conn, expected string) ([]byte, error) {
	typ, body, err := c.Receive()
	if err != nil {
		return nil, err
	}
	switch typ {
	case passwordResponseType:
		return body, nil
	case terminateType:
		// The client gave up; that is a close, not a failure to report.
		return nil, io.EOF
	default:
		return nil, protocolViolation(fmt.Sprintf("expected %s, got message type %q", expected, typ))
	}
}

// randomBytes relies on crypto/rand.Read never failing (Go 1.24+: it
// aborts the process rather than return weak randomness).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func authPlain(c Conn, user string, secret Secret) (Result, error) {
	if err := c.Send(&pgproto3.AuthenticationCleartextPassword{}); err != nil {
		return Result{}, err
	}
	password, err := receivePasswordMessage(c)
	if err != nil {
		return Result{}, err
	}
	if password == "" || !secret.Verify(user, password) {
		return Result{}, passwordFailed(user)
	}
	return Result{Method: MethodPlain, Password: password}, nil
}

func receivePasswordMessage(c Conn) (string, error) {
	body, err := receivePassword(c, "a password message")
	if err != nil {
		return "", err
	}
	var msg pgproto3.PasswordMessage
	if err := msg.Decode(body); err != nil {
		return "", protocolViolation("malformed password message")
	}
	return msg.Password, nil
}
