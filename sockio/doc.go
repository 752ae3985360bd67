// Package sockio reads and writes sockets with raw read(2) and write(2)
// calls while the runtime's netpoller still does all the waiting.
//
// Why: a Go system call made the usual way (syscall.Read, net.Conn.Read)
// enters the scheduler, and when every P was idle (a proxy waiting on
// PostgreSQL between messages is idle most of the time) that entry wakes the
// runtime's sysmon thread and resets it to polling every 20 µs. On the
// 2-core benchmark that was a thread wake-up for every couple of
// transactions. The sockets are non-blocking, so the raw calls never sleep
// in the kernel: EAGAIN hands the wait to syscall.RawConn, which parks the
// goroutine on the netpoller exactly as net.Conn does, deadlines included.
//
// The same rule covers the package's other calls: the socket checks
// (PeerClosed, HasDataOrEOF) and the parked clients' Watcher, whose own
// epoll set waits on the netpoller rather than in a blocking epoll_wait.
package sockio
