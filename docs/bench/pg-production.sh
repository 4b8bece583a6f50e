#!/usr/bin/env bash
# A throwaway PostgreSQL cluster run as docker-compose.yml runs production
# (shared_buffers=512MB, wal_compression=lz4, max_wal_size=4GB, autovacuum
# on; SHARED_BUFFERS=6GB overrides the first, PG_EXTRA adds settings). For
# BenchmarkJobsAtScale beside the machine's own cluster, which keeps its
# settings:
#
#   docs/bench/pg-production.sh start /tmp/pgprod 55433
#   LOYALTY_TEST_POSTGRES_URL='postgres://postgres@127.0.0.1:55433/postgres?sslmode=disable' \
#     LOYALTY_BENCH_SCALE=1 go test ./jobs -run '^$' -bench JobsAtScale -benchtime 1x -timeout 3h -v
#   docs/bench/pg-production.sh stop /tmp/pgprod
#
# Run as root, the cluster runs as the postgres user, so the folder's parent
# must be open to it (/tmp is; a folder from mktemp -d is not).
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?a folder for the cluster}
port=${3:-55433}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_postgres() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case $cmd in
start)
	if [ ! -d "$dir/data" ]; then
		mkdir -p "$dir"
		[ "$(id -u)" = 0 ] && chown postgres: "$dir"
		as_postgres "$bin/initdb" -D "$dir/data" -U postgres -A trust >/dev/null
	fi
	as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 120 -o "-p $port -k $dir \
		-c listen_addresses=127.0.0.1 -c shared_buffers=${SHARED_BUFFERS:-512MB} \
		-c wal_compression=lz4 -c max_wal_size=4GB ${PG_EXTRA:-}" start
	echo "shared_buffers=${SHARED_BUFFERS:-512MB} on 127.0.0.1:$port"
	;;
stop)
	as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast stop
	;;
*)
	echo "usage: $0 start|stop dir [port]" >&2
	exit 2
	;;
esac
