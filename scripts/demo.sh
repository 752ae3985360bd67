#!/usr/bin/env bash
# Demo: pgrecycle in front of a throwaway PostgreSQL.
#
#   scripts/demo.sh                  start PostgreSQL and pgrecycle, run psql and
#                                    pgbench through the proxy, clean up
#   DEMO_KEEP=1 scripts/demo.sh      stay up until Ctrl-C, to try it by hand
#   PGRECYCLE_UPSTREAM=host:port     use that PostgreSQL instead of a throwaway
#                                    one (PGRECYCLE_UPSTREAM_USER, _PASSWORD and
#                                    _DB default to postgres, none, postgres);
#                                    note that pgbench -i recreates the
#                                    pgbench_* tables there
#   DEMO_ONLY_PG=1 scripts/demo.sh   only start and check PostgreSQL (tests the
#                                    script without a pgrecycle binary)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)
export PATH="$PATH:/usr/local/go/bin"
# psql/pgbench must not pick up the caller's connection settings.
unset PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD PGSERVICE PGOPTIONS PGSSLMODE

say() { printf '\n== %s\n' "$*"; }
die() {
	echo "demo: $*" >&2
	exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/pgrecycle-demo.XXXXXX")
# The postgres account must reach the data and socket dirs inside.
chmod 755 "$work"
pg_started=false
proxy_pid=""

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$proxy_pid" ] && kill -0 "$proxy_pid" 2>/dev/null; then
		# Ctrl-C reached pgrecycle too (same process group): give its
		# graceful shutdown a moment before insisting.
		if $interrupted; then
			for _ in $(seq 30); do kill -0 "$proxy_pid" 2>/dev/null || break; sleep 0.1; done
		fi
		kill -TERM "$proxy_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$proxy_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$proxy_pid" 2>/dev/null || true
		wait "$proxy_pid" 2>/dev/null || true
	fi
	if [ "$rc" -ne 0 ]; then
		# The logs vanish with the work dir: show them while they exist.
		for log in "$work/pgrecycle.log" "$work/postgres.log"; do
			[ -s "$log" ] && { echo "--- last lines of $log"; tail -n 30 "$log"; }
		done
	fi
	if $pg_started; then
		as_pg "$pg_bin/pg_ctl" stop -D "$work/data" -m fast -w >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
	exit "$rc"
}
interrupted=false
keeping=false
trap cleanup EXIT
# Ctrl-C is how DEMO_KEEP=1 is meant to end: that is a success.
trap 'interrupted=true; if $keeping; then exit 0; else exit 130; fi' INT
trap 'exit 143' TERM

# PostgreSQL refuses to run as root: run server programs as postgres then,
# from a directory that account can enter.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd "$work" && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# port_busy PORT: something accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port [PREFERRED]: PREFERRED if free, else a random free port.
free_port() {
	local p=${1:-}
	if [ -n "$p" ] && ! port_busy "$p"; then
		echo "$p"
		return
	fi
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 40000))
		port_busy "$p" || { echo "$p"; return; }
	done
	die "no free port found"
}

# wait_port PORT SECONDS [PID]: until PORT accepts, or PID dies.
wait_port() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		port_busy "$1" && return 0
		if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then
			return 1
		fi
		sleep 0.1
	done
	return 1
}

find_pg_bin() {
	if [ -n "${PG_BINDIR:-}" ]; then
		echo "$PG_BINDIR"
		return
	fi
	local d
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	if [ -n "$d" ] && [ -x "$d/initdb" ]; then
		echo "$d"
		return
	fi
	command -v pg_ctl >/dev/null && dirname "$(command -v pg_ctl)" && return
	die "PostgreSQL server binaries not found (set PG_BINDIR, or apt-get install postgresql)"
}

command -v psql >/dev/null || die "psql not found (apt-get install postgresql-client)"

# --- PostgreSQL ------------------------------------------------------------
pg_user=${PGRECYCLE_UPSTREAM_USER:-postgres}
pg_password=${PGRECYCLE_UPSTREAM_PASSWORD:-}
pg_db=${PGRECYCLE_UPSTREAM_DB:-postgres}
if [ -n "${PGRECYCLE_UPSTREAM:-}" ]; then
	pg_host=${PGRECYCLE_UPSTREAM%:*}
	pg_port=${PGRECYCLE_UPSTREAM##*:}
	if [ "$pg_host" = "$PGRECYCLE_UPSTREAM" ] || [ -z "$pg_port" ]; then
		die "PGRECYCLE_UPSTREAM must be host:port, got '$PGRECYCLE_UPSTREAM'"
	fi
	say "using PostgreSQL at $pg_host:$pg_port"
else
	pg_bin=$(find_pg_bin)
	pg_host=127.0.0.1
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || die "running as root needs a postgres account to run PostgreSQL"
		chown postgres: "$work"
	fi
	say "initdb ($pg_bin)"
	as_pg "$pg_bin/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 --locale=C \
		--no-sync >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; die "initdb failed"; }
	conf=$(cat "$work/data/postgresql.conf")
	# A port free now may be taken before postgres binds it: retry.
	for attempt in 1 2 3 4 5; do
		pg_port=$(free_port)
		cat >"$work/data/postgresql.conf" <<-EOF
			$conf
			listen_addresses = '127.0.0.1'
			port = $pg_port
			unix_socket_directories = '$work'
			max_connections = 100
			fsync = off
			synchronous_commit = off
			full_page_writes = off
		EOF
		if as_pg "$pg_bin/pg_ctl" start -D "$work/data" -l "$work/postgres.log" -w -t 60 >/dev/null; then
			pg_started=true
			break
		fi
		if [ "$attempt" -eq 5 ] || ! grep -q 'could not bind' "$work/postgres.log"; then
			die "PostgreSQL did not start"
		fi
	done
	say "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port"
fi

pg_dsn="host=$pg_host port=$pg_port dbname=$pg_db user=$pg_user"
PGPASSWORD=$pg_password PGCONNECT_TIMEOUT=10 psql "$pg_dsn" -Atc 'SELECT version()' ||
	die "cannot connect to PostgreSQL ($pg_dsn)"

if [ "${DEMO_ONLY_PG:-}" = 1 ]; then
	say "DEMO_ONLY_PG=1: PostgreSQL works, stopping here"
	exit 0
fi

# --- pgrecycle ---------------------------------------------------------------
say "building pgrecycle"
command -v go >/dev/null || die "go not found (expected in /usr/local/go/bin)"
go build -o bin/pgrecycle ./cmd/pgrecycle

proxy_port=$(free_port 6432)
config="$work/pgrecycle.toml"
# TOML basic strings: escape backslashes and quotes of the password.
toml_password=${pg_password//\\/\\\\}
toml_password=${toml_password//\"/\\\"}
cat >"$config" <<EOF
[listen]
addr = "127.0.0.1:$proxy_port"

[auth]
type = "trust"

[pool]
mode = "transaction"
size = 5

[parameters]
plan_cache_mode = "force_custom_plan"

[databases.demo]
host = "$pg_host"
port = $pg_port
dbname = "$pg_db"
user = "$pg_user"
$([ -n "$pg_password" ] && echo "password = \"$toml_password\"")

[log]
level = "info"
format = "console"
EOF

say "starting pgrecycle on 127.0.0.1:$proxy_port"
"$repo/bin/pgrecycle" -config "$config" >"$work/pgrecycle.log" 2>&1 &
proxy_pid=$!
wait_port "$proxy_port" 15 "$proxy_pid" || die "pgrecycle did not start listening on $proxy_port"

proxy_dsn="host=127.0.0.1 port=$proxy_port dbname=demo user=postgres"
export PGCONNECT_TIMEOUT=10

say "psql through pgrecycle: the injected parameter and the backend serving us"
psql "$proxy_dsn" -c 'SHOW plan_cache_mode' \
	-c 'SELECT pid, now() FROM pg_stat_activity WHERE pid = pg_backend_pid()'
plan_cache_mode=$(psql "$proxy_dsn" -Atc 'SHOW plan_cache_mode')

say "pgbench -i through pgrecycle"
pgbench -h 127.0.0.1 -p "$proxy_port" -U postgres -i -s 1 -q demo 2>&1 | tail -n 3

say "pgbench: 10 clients, 5 s, extended protocol, through a pool of 5"
bench_out=$(pgbench -h 127.0.0.1 -p "$proxy_port" -U postgres -c 10 -j 2 -T 5 -M extended demo 2>&1) || {
	echo "$bench_out"
	die "pgbench failed"
}
echo "$bench_out" | grep -E '^(number of (transactions|failed)|latency average|tps)'

# Ask PostgreSQL directly how many backends served those 10 clients.
backends=$(PGPASSWORD=$pg_password psql "$pg_dsn" -Atc \
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")

say "summary"
echo "  plan_cache_mode via pgrecycle: $plan_cache_mode (expected force_custom_plan)"
echo "  pgbench: $(echo "$bench_out" | grep -E '^tps' | head -n 1)"
echo "  backends open on PostgreSQL after 10 pgbench clients: $backends (pool size 5)"
[ "$plan_cache_mode" = force_custom_plan ] || die "parameter injection did not work"

if [ "${DEMO_KEEP:-}" = 1 ]; then
	say "pgrecycle is up until Ctrl-C"
	echo "  psql \"$proxy_dsn\""
	echo "  postgres://postgres@127.0.0.1:$proxy_port/demo?sslmode=disable"
	echo "  admin console: psql \"host=127.0.0.1 port=$proxy_port dbname=pgrecycle user=postgres\""
	echo "  logs: $work/pgrecycle.log"
	keeping=true
	# Exits via the INT trap, which runs the cleanup; or if pgrecycle dies.
	wait "$proxy_pid" || die "pgrecycle exited"
fi
