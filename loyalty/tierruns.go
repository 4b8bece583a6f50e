package loyalty

import (
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/tiers"
)

// tierRun is the one row of tier_review_runs: where the tier review stands
// (see ReviewTiers).
type tierRun struct {
	AsOf          time.Time
	ConfigVersion int64
}

// lastTierRun reads tier_review_runs; ok is false before the first run.
func lastTierRun(db *gorm.DB) (r tierRun, ok bool, err error) {
	var rows []tierRun
	if err := db.Raw(`SELECT as_of, config_version FROM tier_review_runs WHERE id = 1`).Scan(&rows).Error; err != nil {
		return tierRun{}, false, err
	}
	if len(rows) == 0 {
		return tierRun{}, false, nil
	}
	r = rows[0]
	r.AsOf = ts(r.AsOf)
	return r, true, nil
}

// saveTierRun writes tier_review_runs, unless a run for a later as-of
// already stands there.
func saveTierRun(tx *gorm.DB, r tierRun) error {
	return tx.Exec(`INSERT INTO tier_review_runs (id, as_of, config_version) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET as_of = excluded.as_of, config_version = excluded.config_version
		WHERE tier_review_runs.as_of <= excluded.as_of`, r.AsOf, r.ConfigVersion).Error
}

// tierTouchedSQL selects the member ids whose tier can have become movable
// between the review prev stands at and one at asOf under the same
// settings (period p): a member passed over by prev was protected, or its
// spend at prev.AsOf reached its tier's threshold. Only these can be due
// now:
//   - protection ended since: tier_since in (cutoff at prev.AsOf, cutoff at
//     asOf], above the lowest tier, by members_tier_since;
//   - a purchase left the qualifying period since (its occurred_at in
//     [start at prev.AsOf, start at asOf)), found by local_date, a day
//     either side of the instants;
//   - a return written since prev's mark (MarkCutoff: a margin before
//     its as-of, less a clock's skew, as a run's as-of may be that far
//     ahead of its start), which takes its cash out of a purchase's spend.
//
// A purchase only adds to a spend; a tier moved since (up by a purchase,
// down by a review, set by hand) is protected from its tier_since, which
// is when it moved; a member enrolled since holds the entry tier; and a
// change of the settings (the program's or the tiers') moves
// config_version, which makes the next run a whole one.
func tierTouchedSQL(p tiers.Period, prev tierRun, asOf time.Time) (string, []any) {
	from, to := p.Start(prev.AsOf), p.Start(asOf)
	lo, hi := LocalDatesAround(from, to)
	sql := `SELECT id FROM members WHERE tier_code IN (SELECT code FROM tiers WHERE rank > (SELECT MIN(rank) FROM tiers))
			AND tier_since > ? AND tier_since <= ?
		UNION SELECT member_id FROM purchases WHERE local_date >= ? AND local_date <= ? AND occurred_at >= ? AND occurred_at < ?
		UNION SELECT member_id FROM returns WHERE created_at > ?`
	return sql, []any{
		ts(p.ReviewCutoff(prev.AsOf)), ts(p.ReviewCutoff(asOf)),
		lo, hi, ts(from), ts(to),
		ts(prev.AsOf.Add(-MarkMargin - ClockSkew)),
	}
}
