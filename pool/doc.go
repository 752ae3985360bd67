// Package pool owns backend connections to PostgreSQL.
//
// Contracts:
//   - Backends are opened with pgconn (TLS, SCRAM and md5 handled there) with
//     the configured startup parameters, then hijacked and driven as raw
//     bytes by the proxy through Backend.R and Backend.W.
//   - Acquire hands out a backend that is idle ('I'), has nothing unread and
//     passed its health checks; waiters are served in FIFO order.
//   - Release takes back only a clean backend: TxStatus 'I', nothing
//     buffered, not marked broken. Anything else is closed, never reused.
//   - Every goroutine the pool starts is tracked and ends by Close.
package pool
