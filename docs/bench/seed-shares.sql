-- How the benchmark's seed (benchSeed in jobs/bench_test.go) places the
-- members' spends against the tiers' thresholds, from the seed's own
-- formulas and without seeding: the share of members given a tier (spend
-- × 1.3 over VIB's 35,000), the shares whose tier is above what their
-- spend justifies (VIB below 35,000, Rouge below 100,000), and of those
-- the ones whose protection has ended by the first night (tier_since from
-- the member's number modulo 600), whom the first night's tier review
-- judges. The two sizes the benchmark compares should read alike (they
-- do since the seed draws each purchase's member and total by hashes:
-- VIB members under VIB's threshold 10.2% of the members at both, where products
-- modulo primes had left 9.93% at 100 k and none at 1 M):
--
--   psql -h 127.0.0.1 -U postgres -c "SET work_mem = '1GB'" -v M=100000 -v P=1000000 -f docs/bench/seed-shares.sql
--   psql -h 127.0.0.1 -U postgres -c "SET work_mem = '1GB'" -v M=1000000 -v P=10000000 -f docs/bench/seed-shares.sql
WITH sk AS (
  SELECT 1 + LEAST(:M - 1, floor(:M * power((hashint8(g) & 2147483647) / 2147483648.0, 1.5))::bigint) AS m, 500 + (hashint8(-g) & 2147483647) % 20000 AS total
  FROM generate_series(1::bigint, :P - :P / 2) g
), wk AS (
  SELECT 10 * w AS m, 500 + ((w * 104729 + j * 7919) % 1000003) % 20000 AS total
  FROM generate_series(1::bigint, :M / 10) w, generate_series(0, GREATEST(1, :P / 2 / GREATEST(1, :M / 10)) - 1) j
), s AS (
  SELECT m, SUM(total) AS spend FROM (SELECT * FROM sk UNION ALL SELECT * FROM wk) x GROUP BY m
)
SELECT :M AS members,
  round(100.0 * count(*) FILTER (WHERE spend * 13 / 10 >= 35000) / :M, 2) AS tiered_pct,
  round(100.0 * count(*) FILTER (WHERE spend * 13 / 10 >= 35000 AND spend < 35000) / :M, 2) AS vib_below_pct,
  round(100.0 * count(*) FILTER (WHERE spend * 13 / 10 >= 100000 AND spend < 100000) / :M, 2) AS rouge_below_pct,
  round(100.0 * count(*) FILTER (WHERE m % 600 <= 273 AND ((spend * 13 / 10 >= 35000 AND spend < 35000) OR (spend * 13 / 10 >= 100000 AND spend < 100000))) / :M, 2) AS judged_first_pct
FROM s;
