// Package proxy serves PostgreSQL clients: listener, startup and
// authentication, routing to pools, session and transaction pooling,
// client-visible parameters, and cancel requests.
//
// Contracts:
//   - Each client session has one goroutine reading the client; while a
//     backend is attached, one more goroutine (the pump) forwards the
//     backend's replies. Both exit when the session ends; Server.Close
//     waits for all of them.
//   - Messages are forwarded as raw bytes; only headers are inspected,
//     plus the bodies of ReadyForQuery, ParameterStatus and ErrorResponse
//     from the server.
//   - A backend is released only at ReadyForQuery 'I' with no request
//     outstanding; otherwise it is rolled back or closed, never reused dirty.
//   - Clients get proxy-issued cancel keys; a cancel reaches the backend
//     the client is using at that moment and no other.
package proxy
