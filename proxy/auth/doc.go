// Package auth authenticates clients of the proxy: it plays the server side
// of the PostgreSQL authentication exchange (trust, cleartext password, MD5
// and SCRAM-SHA-256) and parses PgBouncer-format userlist files.
//
// Contracts:
//
//   - The caller frames messages (Conn); this package only decodes message
//     bodies and encodes replies with pgproto3.
//   - Authenticate never sends AuthenticationOk or ErrorResponse: the caller
//     does, so it can finish the startup sequence or report a *Error as FATAL.
//   - Unknown users go through the same exchange as known ones, with a
//     made-up secret, and fail exactly like a wrong password, so a client
//     cannot probe which user names exist.
//   - No password, hash or verifier is ever put in an error, and Secret,
//     SCRAMVerifier and Result print redacted, so they are safe to log.
//   - The package holds no mutable state; everything is safe for concurrent
//     use.
package auth
