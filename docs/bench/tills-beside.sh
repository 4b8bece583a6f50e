#!/usr/bin/env bash
# The least a nightly job costs the tills, without the engine: a till-like
# client (pgbench, 4 connections, 200 single-row inserts a second, each its
# own commit) for 10 s alone, beside a statement that only takes a core
# (one, then two), beside one that takes a core for 20 ms at a time and
# then sleeps (busy half, a quarter, a tenth and a twentieth of the
# time: a job paced to leave the tills room), and beside one that writes
# WAL at about the nightly jobs' rate (20,000 rows of 200 bytes, then 0.2 s
# asleep: about 22 MB/s) with little CPU. Prints each run's commit
# latencies. In a scratch database of its own, dropped at the end:
#
#   docs/bench/tills-beside.sh [rounds] [psql connection options]
set -euo pipefail
rounds=${1:-3}
shift || true
conn=(-h 127.0.0.1 -U postgres "$@")
db=tills_beside
dir=$(mktemp -d)
trap 'rm -rf "$dir"; psql "${conn[@]}" -qc "DROP DATABASE IF EXISTS $db" >/dev/null' EXIT
psql "${conn[@]}" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
psql "${conn[@]}" -d $db -qc "CREATE TABLE till (id bigint, v text); CREATE TABLE hog (id bigint, v text)"
cat >"$dir/till.sql" <<'SQL'
\set id random(1, 1000000000)
INSERT INTO till (id, v) VALUES (:id, repeat('x', 200));
SQL
cat >"$dir/burn.sql" <<'SQL'
DO $$ DECLARE i bigint := 0; t timestamptz := clock_timestamp(); BEGIN
  WHILE clock_timestamp() < t + interval '10 s' LOOP i := i + 1; END LOOP; END $$;
SQL
# duty.sql: 20 ms busy, then :rest ms asleep, for 10 s.
cat >"$dir/duty.sql" <<'SQL'
DO $$ DECLARE t timestamptz := clock_timestamp(); b timestamptz; BEGIN
  WHILE clock_timestamp() < t + interval '10 s' LOOP
    b := clock_timestamp();
    WHILE clock_timestamp() < b + interval '20 ms' LOOP END LOOP;
    PERFORM pg_sleep(:rest / 1000.0);
  END LOOP; END $$;
SQL
for rest in 20 60 180 380; do sed "s/:rest/$rest/" "$dir/duty.sql" >"$dir/duty$rest.sql"; done
cat >"$dir/wal.sql" <<'SQL'
DO $$ DECLARE t timestamptz := clock_timestamp(); BEGIN
  WHILE clock_timestamp() < t + interval '10 s' LOOP
    INSERT INTO hog SELECT g, repeat('y', 200) FROM generate_series(1, 20000) g;
    PERFORM pg_sleep(0.2);
  END LOOP; END $$;
SQL
run() {
	local label=$1
	shift
	(cd "$dir" && rm -f pgbench_log.* &&
		pgbench "${conn[@]}" -n -c 4 -j 2 -R 200 -T 10 -l -f till.sql $db >/dev/null 2>&1) &
	local pb=$!
	sleep 0.3
	for f in "$@"; do psql "${conn[@]}" -d $db -qf "$dir/$f" & done
	wait
	cat "$dir"/pgbench_log.* | awk '{print $3}' | sort -n | awk -v l="$label" '{a[NR] = $1}
		END {printf "%-14s %5d commits  p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms\n", l, NR, a[int(NR * 0.5)] / 1000, a[int(NR * 0.99)] / 1000, a[NR] / 1000}'
	psql "${conn[@]}" -d $db -qc "TRUNCATE hog"
}
for _ in $(seq "$rounds"); do
	run alone
	run "one core" burn.sql
	run "two cores" burn.sql burn.sql
	run "core 1/2" duty20.sql
	run "core 1/4" duty60.sql
	run "core 1/10" duty180.sql
	run "core 1/20" duty380.sql
	run "WAL 22 MB/s" wal.sql
done
