package loyalty

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// ExpirySummary counts what an expiry run wrote.
type ExpirySummary struct {
	Policy  string `json:"policy"`
	Lots    int64  `json:"lots"`
	Members int64  `json:"members"`
	Points  Sum    `json:"points"`
}

// ExpirePoints writes one expire entry for the remainder of every lot
// whose points expired at asOf: under the lot policy the lots past their
// expires_at, under the inactivity policy every lot of a member with no
// earn or redeem in the last expiry_days. It is a handful of set-based
// statements over all members. An expire entry's id is derived from its
// lot, and a lot's remainder drops to zero in the same transaction, so a
// second run for the same asOf (or two runs racing) expires nothing twice.
// Expired lots were already left out of available points before this runs;
// the run makes the ledger say so. A past asOf expires what had expired by
// then (a prefix of what a later run expires); a future one is refused.
func (s *Service) ExpirePoints(ctx context.Context, asOf time.Time) (ExpirySummary, error) {
	var sum ExpirySummary
	asOf, err := s.AsOf(asOf)
	if err != nil {
		return sum, err
	}
	err = s.store.writeSerial(ctx, func(tx *gorm.DB) error {
		sum = ExpirySummary{}
		prog, err := loadProgram(tx)
		if err != nil {
			return err
		}
		sum.Policy = prog.ExpiryPolicy
		if prog.ExpiryDays == 0 {
			return nil
		}
		// due selects the lots to expire; occurred is when they expired.
		var due, occurred string
		var args []any
		switch prog.ExpiryPolicy {
		case ExpiryLot:
			due = "l.remaining > 0 AND l.expires_at <= ?"
			occurred = "l.expires_at"
			args = []any{asOf}
		default:
			due = `l.remaining > 0 AND l.member_id IN (SELECT b.member_id FROM member_balances b
				WHERE b.last_activity_at IS NOT NULL AND b.last_activity_at <= ?)`
			occurred = "?"
			args = []any{ts(asOf.AddDate(0, 0, -prog.ExpiryDays))}
		}
		// Lock the balances to change, in one order, before touching lots.
		if s.store.Dialect == Postgres {
			if err := tx.Exec(`SELECT 1 FROM member_balances WHERE member_id IN (SELECT l.member_id FROM lots l WHERE `+due+`)
				ORDER BY member_id FOR UPDATE`, args...).Error; err != nil {
				return err
			}
		}
		var st struct {
			Lots, Members int64
			Points        Sum
		}
		if err := tx.Raw(`SELECT COUNT(*) AS lots, COUNT(DISTINCT l.member_id) AS members, `+s.store.SumSQL("l.remaining")+` AS points
			FROM lots l WHERE `+due, args...).Scan(&st).Error; err != nil {
			return err
		}
		if st.Lots == 0 {
			return nil
		}
		sum.Lots, sum.Members, sum.Points = st.Lots, st.Members, st.Points
		insertArgs := []any{}
		if occurred == "?" {
			insertArgs = append(insertArgs, asOf, asOf)
		}
		insertArgs = append(insertArgs, ts(s.now()))
		insertArgs = append(insertArgs, args...)
		if err := tx.Exec(`INSERT INTO ledger_entries (id, member_id, kind, points, occurred_at, available_at, expires_at,
				description, created_at)
			SELECT 'exp:' || l.id, l.member_id, 'expire', -l.remaining, `+occurred+`, `+occurred+`, l.expires_at,
				'points expired', ? FROM lots l WHERE `+due, insertArgs...).Error; err != nil {
			return err
		}
		if err := tx.Exec(`INSERT INTO lot_draws (entry_id, lot_id, points)
			SELECT 'exp:' || l.id, l.id, l.remaining FROM lots l WHERE `+due, args...).Error; err != nil {
			return err
		}
		// One aggregate joined to the balances: UPDATE … FROM runs on both
		// PostgreSQL and SQLite (3.33+), instead of a subquery per member.
		upd := append([]any{ts(s.now())}, args...)
		if err := tx.Exec(`UPDATE member_balances SET points = member_balances.points - e.points,
				version = member_balances.version + 1, updated_at = ?
			FROM (SELECT l.member_id, SUM(l.remaining) AS points FROM lots l WHERE `+due+` GROUP BY l.member_id) e
			WHERE member_balances.member_id = e.member_id`, upd...).Error; err != nil {
			return err
		}
		return tx.Exec(`UPDATE lots SET remaining = 0 WHERE id IN (SELECT l.id FROM lots l WHERE `+due+`)`, args...).Error
	})
	if err != nil {
		return sum, fmt.Errorf("expire points: %w", err)
	}
	return sum, nil
}

// TierReviewSummary counts what a tier review changed.
type TierReviewSummary struct {
	Downgraded int64 `json:"downgraded"`
}

// ReviewTiers moves down every member whose tier is no longer protected
// (tier_window_days after it was reached; for calendar years, the end of
// the year after) to the highest tier its qualifying spend at asOf
// justifies. Upgrades are not its business: they happen at purchase time.
// One statement over all members; running it twice changes nothing more.
//
// A future asOf is refused. A past one reviews the members unprotected at
// asOf on their spend up to asOf, as a review run then would have; but as
// a purchase since then would have lifted such a member back, none is moved
// below the tier its spend justifies now, and a member whose tier changed
// after asOf is left alone (its tier_since is after the cutoff).
func (s *Service) ReviewTiers(ctx context.Context, asOf time.Time) (TierReviewSummary, error) {
	var sum TierReviewSummary
	asOf, err := s.AsOf(asOf)
	if err != nil {
		return sum, err
	}
	now := ts(s.now())
	err = s.store.write(ctx, func(tx *gorm.DB) error {
		prog, err := loadProgram(tx)
		if err != nil {
			return err
		}
		period := prog.Period()
		start := period.Start(asOf)
		// A tier reached at or before cutoff is no longer protected at asOf.
		var cutoff time.Time
		if period.Kind == "calendar_year" {
			l := asOf.In(prog.Location())
			cutoff = time.Date(l.Year()-1, 1, 1, 0, 0, 0, 0, prog.Location()).UTC().Add(-time.Microsecond)
		} else {
			cutoff = asOf.AddDate(0, 0, -prog.TierWindowDays)
		}
		// The qualifying spend over [from, to], summed exactly: one member's
		// purchases may add up past int64.
		spend := `COALESCE((SELECT ` + s.store.SumOrderSQL("p.total - p.returned_amount") + ` FROM purchases p
				WHERE p.member_id = members.id AND p.occurred_at >= ? AND p.occurred_at <= ?), 0)`
		cond, spendArgs := `t.qualifying_spend <= `+spend, []any{start, asOf}
		// A scheduled run is as of its minute, seconds ago: only an as_of
		// further back than a clock's skew is judged on today's spend too,
		// which costs a second sum.
		if now.Sub(asOf) > ClockSkew {
			cond += ` OR t.qualifying_spend <= ` + spend
			spendArgs = append(spendArgs, period.Start(now), now)
		}
		justified := `(SELECT t.code FROM tiers t WHERE ` + cond + ` ORDER BY t.rank DESC LIMIT 1)`
		args := append(append([]any{}, spendArgs...), asOf, now, ts(cutoff))
		res := tx.Exec(`UPDATE members SET tier_code = `+justified+`, tier_since = ?, updated_at = ?
			WHERE status = 'active' AND tier_code IS NOT NULL AND tier_since <= ?
			AND (SELECT rank FROM tiers WHERE code = members.tier_code) >
				(SELECT rank FROM tiers WHERE code = `+justified+`)`,
			append(args, spendArgs...)...)
		sum.Downgraded = res.RowsAffected
		return res.Error
	})
	if err != nil {
		return sum, fmt.Errorf("review tiers: %w", err)
	}
	return sum, nil
}
