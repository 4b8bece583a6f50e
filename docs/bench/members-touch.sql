-- The least work of a nightly job that touches the day's members, spread
-- over the whole base (gifts, expiries and tier moves fall on members at
-- random): each transaction updates the balance row and the member row of
-- 50 members drawn at random, and commits. Its time per member at 1 M
-- members against 100 k shows what the base's size alone costs such a
-- job once the member-keyed tables outgrow shared_buffers. Only updated_at
-- changes. Member g's id is the seed's (memberID in jobs/bench_test.go:
-- UUIDv7 text of the day it enrolled over the md5 of 'm' || g; before
-- 6 December this script still drew the short ids 'm' || g of an older
-- seed, and so touched no row). On the schemas BenchmarkJobsAtScale kept
-- (LOYALTY_BENCH_SCHEMA), alternating:
--
--   PGOPTIONS='-c search_path=b100k' pgbench -h 127.0.0.1 -U postgres -n -f docs/bench/members-touch.sql \
--     -D members=100000 -t 60 -c 1 postgres
--   PGOPTIONS='-c search_path=b1m' pgbench -h 127.0.0.1 -U postgres -n -f docs/bench/members-touch.sql \
--     -D members=1000000 -t 60 -c 1 postgres
BEGIN;
CREATE TEMP TABLE ids ON COMMIT DROP AS
  WITH g AS (SELECT DISTINCT (1 + floor(random() * :members))::bigint AS g FROM generate_series(1, 50))
  SELECT overlay(overlay(overlay(md5('m' || g) PLACING lpad(to_hex(floor(extract(epoch FROM
    '2024-01-01'::timestamptz + (g % 700) * interval '1 day') * 1000)::bigint), 12, '0') FROM 1 FOR 12)
    PLACING '7' FROM 13 FOR 1) PLACING '8' FROM 17 FOR 1)::uuid::text AS id FROM g;
UPDATE member_balances b SET updated_at = now() FROM ids WHERE b.member_id = ids.id;
UPDATE members m SET updated_at = now() FROM ids WHERE m.id = ids.id;
COMMIT;
