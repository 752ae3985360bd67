// Package pgtest runs throwaway PostgreSQL servers for tests.
//
// Each server gets its own data directory under os.TempDir(), a free
// loopback TCP port, a private unix-socket directory and settings tuned for
// speed over durability (fsync=off and friends). It is stopped with
// "pg_ctl stop -m immediate" and its directory removed, so a test pays
// about one second for initdb and start, and leaves nothing behind.
//
// Contracts:
//
//   - Binaries come from BinDir: $PG_BINDIR, else the newest
//     /usr/lib/postgresql/*/bin, else the directory of pg_ctl on $PATH.
//   - PostgreSQL refuses to run as root, so when the test runs as root every
//     server process (initdb, pg_ctl, postgres) runs as the "postgres"
//     account through RunAs, and the server directory is owned by it.
//   - Authentication: unix socket connections are trusted; TCP connections
//     from 127.0.0.1 use scram-sha-256. The superuser is "postgres" with
//     the password SuperPassword.
//   - When PostgreSQL cannot run here (binaries or the postgres account
//     missing), Start returns an error wrapping ErrUnavailable. Require and
//     Shared then skip the test with the reason, except when the environment
//     variable CI is true, where a missing database must fail the build
//     rather than silently pass it.
//   - Start leaves no goroutine running: all work is done by child
//     processes that are waited for, and each helper connection is closed
//     before returning.
//   - If a test binary dies without calling Stop, its server and directory
//     are left behind; the next Start in the same temp directory reaps them
//     (it records the owning process id and checks whether it still lives).
//
// One server per test:
//
//	func TestX(t *testing.T) {
//		srv := pgtest.Require(t) // stopped by t.Cleanup
//		...
//	}
//
// One server shared by a package's tests (startup happens once):
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, pgtest.Options{Name: "proxy"})) }
//
//	func TestY(t *testing.T) {
//		srv := pgtest.Shared(t)
//		...
//	}
//
// Main hands the server to Shared through an environment variable of the
// test process rather than a package variable, so neither pgtest nor the
// test package needs mutable package state. Tests that restart or break the
// server should use Require and a server of their own.
package pgtest
