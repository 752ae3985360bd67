// Package wire frames PostgreSQL protocol messages for the proxy's hot path.
//
// Contracts:
//   - Reader hands out whole messages as slices of its own buffer, valid only
//     until the next call; it never decodes bodies. Messages larger than its
//     buffer are streamed in chunks (Stream), so memory stays bounded.
//   - A Reader or Writer built with a BufferPool borrows its large buffer only
//     while data is in flight and returns it when drained, so idle client
//     connections hold only a small inline buffer.
//   - Writer coalesces: nothing is written until Flush or the buffer fills,
//     giving one write per batch of messages.
//   - Startup-phase packets (no type byte) are read by ReadStartup, bounded
//     in size; their bodies are decoded with pgproto3 types or ParseStartup.
package wire
