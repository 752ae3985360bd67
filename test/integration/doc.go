// Package integration tests pgrecycle end to end: a real PostgreSQL started
// by test/pgtest, pgrecycle in-process in front of it (configured from a
// TOML file, as the binary is), and real clients: pgx, psql, pgbench,
// psycopg 3, asyncpg, ruby-pg and pgjdbc. Every test checks for goroutine
// leaks.
package integration
