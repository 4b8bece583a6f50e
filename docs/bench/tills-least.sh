#!/usr/bin/env bash
# The least purchase beside the least nightly work, without the engine: how
# far a job's mere presence moves the tills' p99 on this machine, against
# the target of 2× for the nightly jobs (docs/BENCH.md).
#
# On a schema BenchmarkJobsAtScale kept (LOYALTY_BENCH_SCHEMA), pgbench
# plays the benchmark's tills: 4 connections, 200 purchases a second. Each
# purchase is the least one can be, one round trip (the engine takes two):
# a function that locks the member's balance and member rows, inserts the
# purchase, its earn entry, its lot and its event, and moves the balance,
# then commits. The tills run for a spell with nothing beside them, then
# beside a statement that only takes a core (no rows, no I/O, no locks):
# the least any job does while it runs. Each pair is repeated, so every
# such spell is measured against the one just before it. The purchases
# stay in the schema (they are real rows); the function is dropped at the
# end.
#
# Given a first day (FROM, a date), each round then runs the tills beside
# the least expiry of one day more, done as a job must do it beside tills
# (least_expire): the day's members taken in member order, BATCH at a time
# (100 unless set), each batch its own transaction that locks its members'
# balances, closes their lots of the day, writes each lot's expire entry,
# draw and points.expired event, moves each balance and writes its
# balance.changed event, with the WAL's page images compressed as the
# engine's jobs have them (zstd), and REST ms asleep after each batch
# (none unless set: a job paced to write its WAL more slowly). These
# expiries are committed: run it on days no later run of the benchmark
# needs.
#
#   docs/bench/tills-least.sh SCHEMA [rounds] [seconds] [FROM]
set -euo pipefail
schema=$1 rounds=${2:-5} secs=${3:-12} from=${4:-} batch=${BATCH:-100} rest=${REST:-0}
conn=(-h 127.0.0.1 -U postgres)
dir=$(mktemp -d)
export PGOPTIONS="-c search_path=$schema"
trap 'rm -rf "$dir"; psql "${conn[@]}" -qc "DROP FUNCTION IF EXISTS least_purchase(bigint, bigint)" \
	-c "DROP PROCEDURE IF EXISTS least_expire(timestamptz, timestamptz, int, int)" >/dev/null' EXIT
members=$(psql "${conn[@]}" -Atc "SELECT count(*) FROM members")
psql "${conn[@]}" -q <<'SQL'
CREATE OR REPLACE FUNCTION least_purchase(g bigint, total bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	mid text;
	pid text := gen_random_uuid()::text;
	eid text := gen_random_uuid()::text;
	pts bigint := total / 100;
BEGIN
	SELECT m.id INTO mid FROM member_balances b JOIN members m ON m.id = b.member_id
		WHERE m.external_id = 'C' || g FOR NO KEY UPDATE OF b, m;
	INSERT INTO purchases (id, member_id, store_id, external_id, channel, occurred_at, local_date, local_day,
		currency, total, returned_amount, points_earned, points_reversed, tier_code, created_at)
		VALUES (pid, mid, 'store-1', pid, 'pos', now(), to_char(now(), 'YYYY-MM-DD'), 0, 'USD', total, 0, pts, 0, 'insider', now());
	INSERT INTO ledger_entries (id, member_id, kind, points, occurred_at, available_at, expires_at, purchase_id, description, created_at)
		VALUES (eid, mid, 'earn', pts, now(), now(), now() + interval '1 year', pid, 'purchase', now());
	INSERT INTO lots (id, entry_id, member_id, points, remaining, available_at, expires_at, created_at)
		VALUES (eid, eid, mid, pts, pts, now(), now() + interval '1 year', now());
	INSERT INTO events (type, member_id, occurred_at, data)
		VALUES ('points.earned', mid, now(), '{"member_id":"' || mid || '","points":' || pts || '}');
	UPDATE member_balances SET points = points + pts, lifetime_earned = lifetime_earned + pts, version = version + 1,
		last_activity_at = now(), updated_at = now() WHERE member_id = mid;
END $$;
CREATE OR REPLACE PROCEDURE least_expire(d_from timestamptz, d_to timestamptz, per int, rest_ms int) LANGUAGE plpgsql AS $$
DECLARE
	lo text := '';
	hi text;
	batches int := 0;
	lots bigint;
	members bigint;
	wal0 pg_lsn := pg_current_wal_insert_lsn();
	t0 timestamptz := clock_timestamp();
BEGIN
	SET client_min_messages = warning;
	DROP TABLE IF EXISTS due_all;
	RESET client_min_messages;
	CREATE TEMP TABLE due_all AS SELECT id, member_id FROM lots
		WHERE remaining > 0 AND expires_at > d_from AND expires_at <= d_to;
	CREATE INDEX ON due_all (member_id);
	SELECT count(*), count(DISTINCT member_id) INTO lots, members FROM due_all;
	COMMIT;
	LOOP
		SET LOCAL wal_compression = 'zstd';
		SELECT max(member_id) INTO hi FROM (SELECT DISTINCT member_id FROM due_all WHERE member_id > lo ORDER BY member_id LIMIT per) s;
		EXIT WHEN hi IS NULL;
		PERFORM 1 FROM member_balances WHERE member_id IN (SELECT member_id FROM due_all WHERE member_id > lo AND member_id <= hi)
			ORDER BY member_id FOR NO KEY UPDATE;
		WITH o AS MATERIALIZED (
			SELECT l.id, l.member_id, l.remaining, l.expires_at FROM due_all d JOIN lots l ON l.id = d.id
			WHERE d.member_id > lo AND d.member_id <= hi AND l.remaining > 0
		), closed AS (
			UPDATE lots SET remaining = 0 FROM o WHERE lots.id = o.id RETURNING o.*
		), draws AS (
			INSERT INTO lot_draws (entry_id, lot_id, points) SELECT 'x' || id, id, remaining FROM closed
		), entries AS (
			INSERT INTO ledger_entries (id, member_id, kind, points, occurred_at, available_at, expires_at, description, created_at)
			SELECT 'x' || id, member_id, 'expire', -remaining, expires_at, expires_at, expires_at, 'expired', now() FROM closed
		), expired AS (
			INSERT INTO events (type, member_id, occurred_at, data)
			SELECT 'points.expired', member_id, now(),
				'{"entry_id":"x' || id || '","member_id":"' || member_id || '","points":' || -remaining || '}' FROM closed
		), moved AS (
			UPDATE member_balances b SET points = b.points - s.p, version = b.version + 1, updated_at = now()
			FROM (SELECT member_id, sum(remaining) AS p FROM closed GROUP BY member_id) s
			WHERE b.member_id = s.member_id RETURNING b.member_id, b.points
		)
		INSERT INTO events (type, member_id, occurred_at, data)
		SELECT 'balance.changed', member_id, now(), '{"member_id":"' || member_id || '","points":' || points || '}' FROM moved;
		COMMIT;
		IF rest_ms > 0 THEN
			PERFORM pg_sleep(rest_ms / 1000.0);
		END IF;
		lo := hi;
		batches := batches + 1;
	END LOOP;
	RAISE NOTICE 'least expiry: % lots of % members in % batches, % s, % kB of WAL a lot, % MB/s', lots, members, batches,
		round(extract(epoch FROM clock_timestamp() - t0)::numeric, 2),
		round((pg_current_wal_insert_lsn() - wal0) / 1024.0 / greatest(lots, 1), 1),
		round((pg_current_wal_insert_lsn() - wal0) / 1048576.0 / extract(epoch FROM clock_timestamp() - t0)::numeric, 1);
END $$;
SQL
cat >"$dir/till.sql" <<SQL
\set g random(1, $members)
\set total random(500, 20500)
SELECT least_purchase(:g, :total);
SQL
cat >"$dir/burn.sql" <<SQL
DO \$\$ DECLARE t timestamptz := clock_timestamp(); BEGIN
  WHILE clock_timestamp() < t + interval '$((secs - 1)) s' LOOP PERFORM 1; END LOOP; END \$\$;
SQL
# run LABEL CMD…: the tills for secs seconds, and CMD started 0.5 s in
# (each new connection's first purchases plan the function's statements);
# prints the latencies of the purchases that ended while CMD ran, and
# keeps them for the pooled figures at the end.
stats() {
	sort -n | awk -v l="$1" -v s="$2" '{a[NR] = $1}
		END {printf "%-14s %5d purchases in %5.1f s  p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms\n", l, NR, s,
			a[int(NR * 0.5)] / 1000, a[int(NR * 0.99)] / 1000, a[NR] / 1000}'
}
run() {
	local label=$1
	shift
	(cd "$dir" && rm -f pgbench_log.* &&
		pgbench "${conn[@]}" -n -c 4 -j 2 -R 200 -T "$secs" -l -f till.sql postgres >/dev/null 2>&1) &
	local pb=$! t0 t1
	sleep 0.5
	t0=$(date +%s.%N)
	"$@" >/dev/null
	t1=$(date +%s.%N)
	wait $pb
	local s
	s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
	cat "$dir"/pgbench_log.* | awk -v t0="$t0" -v t1="$t1" '{t = $5 + $6 / 1e6} t >= t0 && t <= t1 {print $3}' |
		tee -a "$dir/pool-${label// /_}" | stats "$label" "$s"
	awk -v s="$s" 'BEGIN {print s}' >>"$dir/secs-${label// /_}"
}
run warm-up sleep 1 >/dev/null
for i in $(seq "$rounds"); do
	run "alone" sleep $((secs - 1))
	run "beside a core" psql "${conn[@]}" -q -f "$dir/burn.sql"
	if [ -n "$from" ]; then
		day=$(date -u -d "$from + $((i - 1)) day" +%F)
		run "beside expiry" psql "${conn[@]}" -q -c "CALL least_expire('$day 00:00:00+00', '$day 00:00:00+00'::timestamptz + interval '1 day', $batch, $rest)"
	fi
done
echo "pooled over the $rounds rounds:"
for label in "alone" "beside a core" "beside expiry"; do
	f="$dir/pool-${label// /_}"
	[ -s "$f" ] && stats "$label" "$(awk '{s += $1} END {print s}' "$dir/secs-${label// /_}")" <"$f"
done
