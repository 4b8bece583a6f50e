#!/usr/bin/env bash
# The least work of a day's expiry (expire-minimal.sql) split over PARTS
# sessions side by side, each over its own run of the day's members in
# member order, as the engine's expiry runs its batches on PostgreSQL
# (expiryWorkers): how far the least work goes when it has every core of
# the server. Each part is rolled back, as expire-minimal.sql is; a
# CHECKPOINT comes first, so that every part writes its pages' first
# images as a night's job would. Prints each part's lots, members and
# seconds, and the seconds until the last part ended. SCRIPT names another
# script of this folder that takes lo and hi alike (expire-minimal-kept.sql).
#
#   docs/bench/expire-minimal-parts.sh SCHEMA FROM TO [PARTS]
#   docs/bench/expire-minimal-parts.sh b1m '2026-03-23 00:00:00+00' '2026-03-24 00:00:00+00' 2
set -euo pipefail
schema=$1 from=$2 to=$3 parts=${4:-2} script=${SCRIPT:-expire-minimal.sql}
here=$(dirname "$0")
psql=(psql -h "${PGHOST:-127.0.0.1}" -U "${PGUSER:-postgres}" -X -q -At)
# The members at which each part after the first starts.
bounds=$("${psql[@]}" -c "SELECT string_agg(b, ' ') FROM (
  SELECT unnest(percentile_disc(ARRAY(SELECT generate_series(1, $parts - 1)::float8 / $parts))
    WITHIN GROUP (ORDER BY member_id)) AS b
  FROM $schema.lots WHERE remaining > 0 AND expires_at > '$from' AND expires_at <= '$to') s")
read -r -a starts <<< "$bounds"
"${psql[@]}" -c CHECKPOINT
began=$(date +%s.%N)
for ((i = 0; i < parts; i++)); do
  lo='' hi=${starts[i]:-}
  ((i > 0)) && lo=${starts[i - 1]}
  (
    t0=$(date +%s.%N)
    counts=$("${psql[@]}" -v from="$from" -v to="$to" -v lo="$lo" -v hi="$hi" -c "SET search_path = $schema" \
      -f "$here/$script" | grep -E '^[0-9]+\|[0-9]+$')
    echo "part $((i + 1)): $counts (lots|members) in $(echo "$(date +%s.%N) - $t0" | bc) s"
  ) &
done
wait
echo "all $parts parts: $(echo "$(date +%s.%N) - $began" | bc) s"
