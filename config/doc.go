// Package config defines pgrecycle's TOML configuration: the schema, its
// defaults, loading and validation.
//
// # Contract
//
//   - Load reads a file and calls Parse with the file's directory as base
//     directory; relative paths in the file (auth.file, listen.unix_socket_dir,
//     databases.NAME.sslrootcert) are resolved against it, so the process may
//     run from any working directory. Parse with baseDir "" leaves them as
//     written.
//   - A *Config returned by Load or Parse is complete and valid: every key has
//     its value (explicit or default), and each Database already carries its
//     effective settings: Pool and Recycle are the global [pool]/[recycle]
//     with the keys of [databases.NAME.pool]/[databases.NAME.recycle] on top
//     (only the keys a section sets override), and Parameters is the global
//     [parameters] merged with the database's own (database wins). Consumers
//     never need to look at the global sections to serve a database.
//   - Parameter names are lower-cased (PostgreSQL treats them
//     case-insensitively, and one spelling per name keeps the precedence
//     global < database < user well defined). Values may be written as TOML
//     strings, integers, floats or booleans; they are kept in their string
//     form, booleans as "on"/"off". A nested table names a dotted
//     setting: `myext.limit = 1` is the parameter "myext.limit".
//   - A Config is a value: treat it as read-only once loaded and share it
//     freely between goroutines. A reload loads a new Config; Diff tells what
//     changed. Clone gives a private copy to modify; Redacted gives a copy fit
//     for logs and SHOW CONFIG.
//   - Every problem is refused, never silently ignored: unknown keys (at any
//     depth), wrong types, bad units, out-of-range values. Errors are *Error
//     values naming the full dotted key and the line (of the key, or of its
//     section when the value is inherited or missing); several
//     problems are joined with errors.Join, one per line, so a user fixes
//     them all in one pass.
//
// # Units
//
// Durations (Duration) use Go syntax: "90s", "15m", "1h30m", "0". Sizes
// (ByteSize) use PostgreSQL's 1024-based units: "512kB", "64MB", "1GB", or a
// number of bytes.
package config
