-- expire-minimal.sql with what the engine's expiry also does for each
-- member, without the engine: the WAL compressed as the engine's jobs set
-- it (zstd), and the reads that keeping a balance needs, by the indexes
-- the engine reads them by: the member's row, its open lots
-- (lots_member_open_cover) and its purchases of the qualifying year
-- (purchases_member_cover): a balance.changed event carries the balance
-- as a read answers it (API.md §7: expiring_soon, qualifying_spend), which
-- needs them. The balances are locked alone, as the engine locks them (the
-- balance row keeps the member's tier since migration 00042). Its cost per
-- lot at 1 M members against 100 k, on the same day's lots of two schemas
-- BenchmarkJobsAtScale kept (LOYALTY_BENCH_SCHEMA), is what the base's size
-- costs such an expiry before any of the engine's own work. Rolled back at
-- the end:
--
--   psql -h 127.0.0.1 -U postgres -v from='2026-03-05 00:00:00+00' -v to='2026-03-06 00:00:00+00' \
--     -c 'SET search_path = b1m' -f docs/bench/expire-minimal-kept.sql
--
-- Given lo and/or hi (member ids), as expire-minimal.sql, it takes only
-- the day's members from lo to hi: SCRIPT=expire-minimal-kept.sql
-- expire-minimal-parts.sh runs it over parts of the day side by side.
\ir member-run.psql
\timing on
BEGIN;
SET LOCAL work_mem = '256MB';
SET LOCAL wal_compression = 'zstd';
SET LOCAL max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE due ON COMMIT DROP AS
  SELECT id, member_id, remaining, expires_at FROM lots
  WHERE remaining > 0 AND expires_at > :'from' AND expires_at <= :'to'
    AND (:'lo' = '' OR member_id >= :'lo') AND (:'hi' = '' OR member_id < :'hi');
SELECT count(*) AS lots, count(DISTINCT member_id) AS members FROM due;
SELECT count(*) AS locked FROM (SELECT 1 FROM member_balances b
  WHERE b.member_id = ANY (ARRAY(SELECT DISTINCT member_id FROM due)) ORDER BY b.member_id FOR NO KEY UPDATE) s;
UPDATE lots SET remaining = 0 FROM due WHERE lots.id = due.id;
INSERT INTO ledger_entries (id, member_id, kind, points, occurred_at, available_at, expires_at, description, created_at)
  SELECT 'x' || id, member_id, 'expire', -remaining, expires_at, expires_at, expires_at, 'expired', now() FROM due;
INSERT INTO lot_draws (entry_id, lot_id, points) SELECT 'x' || id, id, remaining FROM due;
SELECT count(*) AS open_lots FROM lots
  WHERE member_id = ANY (ARRAY(SELECT DISTINCT member_id FROM due)) AND remaining > 0;
SELECT count(*) AS window_purchases FROM purchases
  WHERE member_id = ANY (ARRAY(SELECT DISTINCT member_id FROM due)) AND occurred_at >= :'from'::timestamptz - interval '365 days';
INSERT INTO events (type, member_id, occurred_at, data)
  SELECT 'points.expired', member_id, now(), '{"entry_id":"x' || id || '","member_id":"' || member_id || '","points":' || -remaining || '}' FROM due;
UPDATE member_balances b SET points = b.points - s.p, version = b.version + 1, updated_at = now()
  FROM (SELECT member_id, SUM(remaining) AS p FROM due GROUP BY member_id) s WHERE b.member_id = s.member_id;
INSERT INTO events (type, member_id, occurred_at, data)
  SELECT 'balance.changed', b.member_id, now(), '{"member_id":"' || b.member_id || '","points":' || b.points || '}'
  FROM member_balances b WHERE b.member_id IN (SELECT member_id FROM due);
ROLLBACK;
