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
// whose points lapsed by asOf: the lots past their own expires_at and,
// under the inactivity policy, every lot of a member with no earn or redeem
// in the last expiry_days. Each entry is the one the ledger listing has
// shown since the lot lapsed (account.lapsedEntry): its id is derived from
// the lot, it is dated when the lot lapsed (its expires_at, or the
// inactivity deadline if that came first) and it takes what is left of the
// lot. It is a handful of set-based statements over all members. A lot's
// remainder drops to zero in the same transaction, so a second run for the
// same asOf (or two runs racing) expires nothing twice. Lapsed lots were
// already left out of available points before this runs; the run makes the
// ledger store what it showed. A past asOf expires what had lapsed by
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
		x := lapseSQL(s.store.Dialect, prog, asOf)
		x.args["now"] = ts(s.now())
		// Lock the balances to change, in one order, before touching lots.
		if s.store.Dialect == Postgres {
			if err := tx.Exec(`SELECT 1 FROM member_balances WHERE member_id IN (SELECT l.member_id FROM `+x.from+` WHERE `+x.due+`)
				ORDER BY member_id FOR UPDATE`, x.args).Error; err != nil {
				return err
			}
		}
		var st struct {
			Lots, Members int64
			Points        Sum
		}
		if err := tx.Raw(`SELECT COUNT(*) AS lots, COUNT(DISTINCT l.member_id) AS members, `+s.store.SumSQL("l.remaining")+` AS points
			FROM `+x.from+` WHERE `+x.due, x.args).Scan(&st).Error; err != nil {
			return err
		}
		if st.Lots == 0 {
			return nil
		}
		sum.Lots, sum.Members, sum.Points = st.Lots, st.Members, st.Points
		if err := tx.Exec(`INSERT INTO ledger_entries (id, member_id, kind, points, occurred_at, available_at, expires_at,
				description, created_at)
			SELECT '`+expirePrefix+`' || l.id, l.member_id, '`+KindExpire+`', -l.remaining, `+x.at+`, `+x.at+`, l.expires_at,
				`+x.why+`, @now FROM `+x.from+` WHERE `+x.due, x.args).Error; err != nil {
			return err
		}
		if err := tx.Exec(`INSERT INTO lot_draws (entry_id, lot_id, points)
			SELECT '`+expirePrefix+`' || l.id, l.id, l.remaining FROM `+x.from+` WHERE `+x.due, x.args).Error; err != nil {
			return err
		}
		// One aggregate joined to the balances: UPDATE … FROM runs on both
		// PostgreSQL and SQLite (3.33+), instead of a subquery per member.
		// The lots closed here take their instants of change (at most
		// three each, see kept.go) out of what later reads count, so the
		// version moves past them; the kept state is left for the next
		// read or write to compute (next_change_at = as_of).
		if err := tx.Exec(`UPDATE member_balances SET points = member_balances.points - e.points,
				version = member_balances.version + 1 + 3 * e.lots, updated_at = @now, next_change_at = member_balances.as_of
			FROM (SELECT l.member_id, SUM(l.remaining) AS points, COUNT(*) AS lots FROM `+x.from+` WHERE `+x.due+` GROUP BY l.member_id) e
			WHERE member_balances.member_id = e.member_id`, x.args).Error; err != nil {
			return err
		}
		return tx.Exec(`UPDATE lots SET remaining = 0 WHERE id IN (SELECT l.id FROM `+x.from+` WHERE `+x.due+`)`, x.args).Error
	})
	if err != nil {
		return sum, fmt.Errorf("expire points: %w", err)
	}
	return sum, nil
}

// lapseRule is account.lapse over all lots at once, in SQL: from joins a
// lot l to what decides its lapse, due selects the lots lapsed at asOf with
// points left, at is when each lapsed and why the entry's description.
type lapseRule struct {
	from, due, at, why string
	args               map[string]any
}

// lapseSQL writes the lapse rule for the program's policy. A lot lapses at
// its own expires_at; under the inactivity policy, all of a member's lots
// lapse at its deadline, last_activity_at + expiry_days, when that comes
// first. The deadline is computed in SQL, the one place where the two
// dialects differ: a fixed number of hours on PostgreSQL (an interval of
// days would follow the session's daylight saving time), whole days on
// SQLite's text timestamps with their fraction of a second kept (SQLite's
// own formatting keeps only milliseconds). Both add exactly 24 h a day, as
// time.AddDate does on the UTC instants the store keeps.
func lapseSQL(dialect string, prog *Program, asOf time.Time) lapseRule {
	r := lapseRule{from: "lots l", due: "l.remaining > 0 AND l.expires_at <= @as_of", at: "l.expires_at", why: "'" + expiredByLot + "'",
		args: map[string]any{"as_of": asOf}}
	if prog.ExpiryPolicy != ExpiryInactivity || prog.ExpiryDays == 0 {
		return r
	}
	deadline := "datetime(substr(b.last_activity_at, 1, 19), '+' || @days || ' days') || substr(b.last_activity_at, 20)"
	if dialect == Postgres {
		deadline = "(b.last_activity_at + make_interval(hours => CAST(@hours AS integer)))"
	}
	byLot := "l.expires_at IS NOT NULL AND (b.last_activity_at IS NULL OR l.expires_at <= " + deadline + ")"
	r.from = "lots l JOIN member_balances b ON b.member_id = l.member_id"
	r.due = "l.remaining > 0 AND (l.expires_at <= @as_of OR b.last_activity_at <= @idle_since)"
	r.at = "CASE WHEN " + byLot + " THEN l.expires_at ELSE " + deadline + " END"
	r.why = "CASE WHEN " + byLot + " THEN '" + expiredByLot + "' ELSE '" + expiredByInactivity + "' END"
	r.args["idle_since"] = ts(asOf.AddDate(0, 0, -prog.ExpiryDays))
	r.args["days"] = prog.ExpiryDays
	r.args["hours"] = prog.ExpiryDays * 24
	return r
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
		cutoff := period.ReviewCutoff(asOf)
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
