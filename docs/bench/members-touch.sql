-- The least work of a nightly job that touches the day's members, spread
-- over the whole base (gifts, expiries and tier moves fall on members at
-- random): each transaction updates the balance row and the member row of
-- 50 members drawn at random, and commits. Its time per member at 1 M
-- members against 100 k shows what the base's size alone costs such a
-- job once the member-keyed tables outgrow shared_buffers. Only updated_at
-- changes. On the schemas BenchmarkJobsAtScale kept (LOYALTY_BENCH_SCHEMA),
-- alternating:
--
--   PGOPTIONS='-c search_path=b100k' pgbench -h 127.0.0.1 -U postgres -n -f docs/bench/members-touch.sql \
--     -D members=100000 -t 60 -c 1 postgres
--   PGOPTIONS='-c search_path=b1m' pgbench -h 127.0.0.1 -U postgres -n -f docs/bench/members-touch.sql \
--     -D members=1000000 -t 60 -c 1 postgres
BEGIN;
WITH ids AS (SELECT DISTINCT 'm' || (1 + floor(random() * :members))::bigint AS id FROM generate_series(1, 50))
UPDATE member_balances b SET updated_at = now() FROM ids WHERE b.member_id = ids.id;
WITH ids AS (SELECT DISTINCT 'm' || (1 + floor(random() * :members))::bigint AS id FROM generate_series(1, 50))
UPDATE members m SET updated_at = now() FROM ids WHERE m.id = ids.id;
COMMIT;
