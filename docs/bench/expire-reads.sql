-- The reads of a day's expiry alone, without the engine and without a
-- write: each member's balance row and the index leaves its expire entry
-- (ledger_member_time) and its events (events_member) go into, which any
-- expiry must read before it writes; then the open lots and the
-- qualifying year's purchases that keeping its balance reads as well
-- (lots_member_open_cover, purchases_member_cover). Each is one sorted
-- pass over the day's members, as the least expiry reads them
-- (expire-minimal-kept.sql). What these reads take on a schema that
-- BenchmarkJobsAtScale kept (LOYALTY_BENCH_SCHEMA) is a floor under the
-- expiry's time that no batching or statement shape removes. Nothing is
-- written (a day not yet expired can still be measured after it):
--
--   psql -h 127.0.0.1 -U postgres -v from='2026-03-16 00:00:00+00' -v to='2026-03-17 00:00:00+00' \
--     -c 'SET search_path = b1m' -f docs/bench/expire-reads.sql
\timing on
BEGIN;
SET LOCAL max_parallel_workers_per_gather = 0;
SET LOCAL work_mem = '256MB';
CREATE TEMP TABLE due ON COMMIT DROP AS
  SELECT id, member_id, remaining, expires_at FROM lots
  WHERE remaining > 0 AND expires_at > :'from' AND expires_at <= :'to';
CREATE TEMP TABLE dm ON COMMIT DROP AS SELECT DISTINCT member_id FROM due ORDER BY 1;
SELECT count(*) AS lots, (SELECT count(*) FROM dm) AS members FROM due;
SELECT sum(b.points) AS balances FROM member_balances b WHERE b.member_id IN (SELECT member_id FROM dm);
SELECT count(*) AS entry_leaves FROM dm, LATERAL (SELECT 1 FROM ledger_entries l WHERE l.member_id = dm.member_id
  AND l.occurred_at <= :'to' ORDER BY l.occurred_at DESC, l.id DESC LIMIT 1) l;
SELECT count(*) AS event_leaves FROM dm, LATERAL (SELECT 1 FROM events e WHERE e.member_id = dm.member_id ORDER BY e.id DESC LIMIT 1) e;
SELECT count(*) AS open_lots FROM lots WHERE member_id IN (SELECT member_id FROM dm) AND remaining > 0;
SELECT count(*) AS window_purchases FROM purchases
  WHERE member_id IN (SELECT member_id FROM dm) AND occurred_at >= :'from'::timestamptz - interval '365 days';
ROLLBACK;
