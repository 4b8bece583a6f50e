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
#   docs/bench/tills-least.sh SCHEMA [rounds] [seconds]
set -euo pipefail
schema=$1 rounds=${2:-5} secs=${3:-12}
conn=(-h 127.0.0.1 -U postgres)
dir=$(mktemp -d)
export PGOPTIONS="-c search_path=$schema"
trap 'rm -rf "$dir"; psql "${conn[@]}" -qc "DROP FUNCTION IF EXISTS least_purchase(bigint, bigint)" >/dev/null' EXIT
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
# prints the latencies of the purchases that ended while CMD ran.
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
	cat "$dir"/pgbench_log.* | awk -v t0="$t0" -v t1="$t1" '{t = $5 + $6 / 1e6} t >= t0 && t <= t1 {print $3}' | sort -n |
		awk -v l="$label" -v s="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" '{a[NR] = $1}
		END {printf "%-14s %5d purchases in %4.1f s  p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms\n", l, NR, s,
			a[int(NR * 0.5)] / 1000, a[int(NR * 0.99)] / 1000, a[NR] / 1000}'
}
run warm-up sleep 1 >/dev/null
for _ in $(seq "$rounds"); do
	run "alone" sleep $((secs - 1))
	run "beside a core" psql "${conn[@]}" -q -f "$dir/burn.sql"
done
