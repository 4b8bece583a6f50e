package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// Rate is the redemption rate over a range of days (§13).
type Rate struct {
	From           string       `json:"from"`
	To             string       `json:"to"`
	PointsIssued   loyalty.Sum  `json:"points_issued"`
	PointsRedeemed loyalty.Sum  `json:"points_redeemed"`
	RatePercent    *json.Number `json:"rate_percent"`
}

// ratePercent is part ÷ whole × 100 rounded to 2 decimals, or null when
// whole is not above 0.
func ratePercent(whole, part loyalty.Sum) *json.Number {
	if whole.Sign() <= 0 {
		return nil
	}
	n := json.Number(part.Decimal().Mul(decimal.NewFromInt(100)).DivRound(whole.Decimal(), 2).StringFixed(2))
	return &n
}

// countPercent is ratePercent of member counts.
func countPercent(whole, part int64) *json.Number {
	return ratePercent(loyalty.SumOf(whole), loyalty.SumOf(part))
}

// DayRange is a range of calendar days, both inclusive, in a timezone.
type DayRange struct {
	From, To time.Time // local midnights; To is the last day
	Loc      *time.Location
}

// ParseDayRange reads from and to (YYYY-MM-DD) in the program timezone.
func ParseDayRange(from, to string, loc *time.Location) (DayRange, error) {
	var v loyalty.Validation
	f, err := time.ParseInLocation(time.DateOnly, from, loc)
	if err != nil {
		v.Add("from", "must be a date YYYY-MM-DD")
	}
	t, err2 := time.ParseInLocation(time.DateOnly, to, loc)
	if err2 != nil {
		v.Add("to", "must be a date YYYY-MM-DD")
	}
	if err == nil && err2 == nil && t.Before(f) {
		v.Add("to", "must not be before from")
	}
	if err == nil && err2 == nil && t.Sub(f) > 20*366*24*time.Hour {
		v.Add("to", "the range may span at most 20 years")
	}
	return DayRange{From: f, To: t, Loc: loc}, v.Err()
}

// end is the first instant after the range.
func (d DayRange) end() time.Time { return d.To.AddDate(0, 0, 1) }

// issuedRedeemed sums, over entries whose occurred_at is in [from, end),
// the points issued (earn, offer, bonus, gift, feedback and positive adjust, less
// return reversals) and redeemed (redeem and till payments, §16, less
// redeem_cancel and payment_refund refunds). The
// sums are exact: over every member they pass int64 long before a balance
// does.
func (r *Runner) issuedRedeemed(db *gorm.DB, from, end time.Time) (loyalty.Sum, loyalty.Sum, error) {
	var s struct{ Issued, Redeemed loyalty.Sum }
	sum := r.svc.Store().SumSQL
	err := db.Raw(`SELECT
			`+sum(`CASE WHEN kind IN ('earn', 'offer', 'bonus', 'gift', 'feedback') OR (kind = 'adjust' AND points > 0) THEN points
				WHEN kind = 'return' THEN points ELSE 0 END`)+` AS issued,
			`+sum(`CASE WHEN kind IN ('redeem', 'redeem_cancel', 'payment', 'payment_refund') THEN -points ELSE 0 END`)+` AS redeemed
		FROM ledger_entries WHERE occurred_at >= ? AND occurred_at < ?`, loyalty.TS(from), loyalty.TS(end)).Scan(&s).Error
	return s.Issued, s.Redeemed, err
}

// RedemptionRate computes the rate over a range.
func (r *Runner) RedemptionRate(ctx context.Context, d DayRange) (Rate, error) {
	var out Rate
	err := loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		iss, red, err := r.issuedRedeemed(db, d.From, d.end())
		out = Rate{From: d.From.Format(time.DateOnly), To: d.To.Format(time.DateOnly), PointsIssued: iss, PointsRedeemed: red,
			RatePercent: ratePercent(iss, red)}
		return err
	})
	return out, err
}

// RedemptionRateByMonth splits a range at calendar months (the first and
// last month clipped to the range): one aggregate per month.
func (r *Runner) RedemptionRateByMonth(ctx context.Context, d DayRange) ([]Rate, error) {
	out := []Rate{}
	err := loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		for start := d.From; !start.After(d.To); {
			next := time.Date(start.Year(), start.Month()+1, 1, 0, 0, 0, 0, d.Loc)
			last := next.AddDate(0, 0, -1)
			if last.After(d.To) {
				last = d.To
			}
			iss, red, err := r.issuedRedeemed(db, start, last.AddDate(0, 0, 1))
			if err != nil {
				return err
			}
			out = append(out, Rate{From: start.Format(time.DateOnly), To: last.Format(time.DateOnly), PointsIssued: iss,
				PointsRedeemed: red, RatePercent: ratePercent(iss, red)})
			start = next
		}
		return nil
	})
	return out, err
}

// RateSnapshotSummary is what a redemption-rate run counted. Kept lists
// the months whose stored snapshot had been counted further into the month
// than this run counts, and so was left as it was.
type RateSnapshotSummary struct {
	Months []Rate   `json:"months"`
	Kept   []string `json:"kept,omitempty"`
}

// SnapshotRedemptionRate stores the redemption rate of asOf's month (to
// date) and of the month before (now final), replacing earlier snapshots of
// those months, so a re-run for the same asOf stores the same. Each
// snapshot records how far into its month it counted: a run as of a past
// instant never replaces one counted further (a month to date with a
// shorter one), while a month that had ended for both runs is recounted in
// full, picking up entries backdated into it since. A future asOf is
// refused.
func (r *Runner) SnapshotRedemptionRate(ctx context.Context, asOf time.Time) (RateSnapshotSummary, error) {
	var sum RateSnapshotSummary
	asOf, err := r.svc.AsOf(asOf)
	if err != nil {
		return sum, err
	}
	prog, err := r.svc.Program(ctx)
	if err != nil {
		return sum, err
	}
	loc := prog.Location()
	l := asOf.In(loc)
	thisMonth := time.Date(l.Year(), l.Month(), 1, 0, 0, 0, 0, loc)
	prevMonth := thisMonth.AddDate(0, -1, 0)
	now := r.svc.Now()
	err = loyalty.WriteSet(ctx, r.svc, func(tx *loyalty.Tx) error {
		sum = RateSnapshotSummary{}
		for _, m := range []struct{ start, end time.Time }{{prevMonth, thisMonth}, {thisMonth, asOf}} {
			iss, red, err := r.issuedRedeemed(tx.DB, m.start, m.end)
			if err != nil {
				return err
			}
			rate := ratePercent(iss, red)
			var rs *string
			if rate != nil {
				s := rate.String()
				rs = &s
			}
			month := m.start.Format("2006-01")
			res := tx.DB.Exec(`INSERT INTO redemption_rate_snapshots (month, points_issued, points_redeemed, rate_percent, counted_until, computed_at)
				VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (month) DO UPDATE SET points_issued = excluded.points_issued, points_redeemed = excluded.points_redeemed,
					rate_percent = excluded.rate_percent, counted_until = excluded.counted_until, computed_at = excluded.computed_at
				WHERE redemption_rate_snapshots.counted_until IS NULL OR redemption_rate_snapshots.counted_until <= excluded.counted_until`,
				month, iss, red, rs, loyalty.TS(m.end), now)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected == 0 {
				sum.Kept = append(sum.Kept, month)
			}
			last := m.end.Add(-time.Nanosecond).In(loc)
			if last.Before(m.start) {
				last = m.start
			}
			sum.Months = append(sum.Months, Rate{From: m.start.Format(time.DateOnly), To: last.Format(time.DateOnly),
				PointsIssued: iss, PointsRedeemed: red, RatePercent: rate})
		}
		return nil
	})
	if err != nil {
		return sum, fmt.Errorf("redemption rate snapshot: %w", err)
	}
	return sum, nil
}

// Summary is the program's key figures over a range (§13).
type Summary struct {
	From     string           `json:"from"`
	To       string           `json:"to"`
	Members  MemberCounts     `json:"members"`
	Points   PointCounts      `json:"points"`
	Rates    SummaryRates     `json:"rates"`
	Tiers    map[string]int64 `json:"members_per_tier"`
	Segments map[string]int64 `json:"members_per_segment"`
	// Liability is the outstanding points at the range's end valued at what
	// a point pays at the till (§16), in minor units; null when points
	// cannot pay.
	Liability *json.Number `json:"liability"`
	// BreakagePercent is expired ÷ issued × 100 over the range, 2 decimals;
	// null when nothing was issued.
	BreakagePercent *json.Number `json:"breakage_percent"`
}

// liability values outstanding points at one point's worth, rounded half
// away from zero to a minor unit; nil when points cannot pay.
func liability(outstanding loyalty.Sum, prog *loyalty.Program) *json.Number {
	pp := prog.PointsPayment
	if _, ok := pp.PointValue(prog.Exponent()); !ok {
		return nil
	}
	// outstanding × 10^exponent ÷ points_per_unit, divided last so that
	// nothing is lost before the one rounding.
	n := json.Number(outstanding.Decimal().Shift(prog.Exponent()).DivRound(pp.PointsPerUnit, 0).String())
	return &n
}

// MemberCounts counts members over the range.
type MemberCounts struct {
	Total        int64 `json:"total"`
	New          int64 `json:"new"`
	Active       int64 `json:"active"`
	ActiveBefore int64 `json:"active_before"`
	Lost         int64 `json:"lost"`
}

// PointCounts sums points over the range; outstanding is at its end. Each
// is a sum over every member, exact however large.
type PointCounts struct {
	Issued      loyalty.Sum `json:"issued"`
	Redeemed    loyalty.Sum `json:"redeemed"`
	Expired     loyalty.Sum `json:"expired"`
	Outstanding loyalty.Sum `json:"outstanding"`
}

// SummaryRates are the range's rates, in percent with 2 decimals.
type SummaryRates struct {
	Redemption *json.Number `json:"redemption_rate"`
	Churn      *json.Number `json:"churn_rate"`
	Retention  *json.Number `json:"retention_rate"`
}

// Summary computes the key figures. "Active" in a period means at least one
// purchase in it; the period before is as long as the range and ends where
// it starts. Lost members were active in the period before and not in the
// range: churn rate = lost ÷ active before × 100. Retention rate =
// (active in the range − new customers in it) ÷ active before × 100, where
// a new customer made its first purchase ever in the range.
func (r *Runner) Summary(ctx context.Context, d DayRange) (Summary, error) {
	out := Summary{From: d.From.Format(time.DateOnly), To: d.To.Format(time.DateOnly), Tiers: map[string]int64{}, Segments: map[string]int64{}}
	from, end := loyalty.TS(d.From), loyalty.TS(d.end())
	// The period before has as many calendar days as the range.
	days := 0
	for t := d.From; !t.After(d.To); t = t.AddDate(0, 0, 1) {
		days++
	}
	before := loyalty.TS(d.From.AddDate(0, 0, -days))
	prog, err := r.svc.Program(ctx)
	if err != nil {
		return out, fmt.Errorf("summary: %w", err)
	}
	err = loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		var m struct{ Total, New int64 }
		if err := db.Raw(`SELECT COUNT(CASE WHEN enrolled_at < ? THEN 1 END) AS total,
			COUNT(CASE WHEN enrolled_at >= ? AND enrolled_at < ? THEN 1 END) AS new FROM members`, end, from, end).Scan(&m).Error; err != nil {
			return err
		}
		out.Members.Total, out.Members.New = m.Total, m.New
		var a struct{ Active, ActiveBefore, Lost, NewCustomers int64 }
		if err := db.Raw(`SELECT
				COUNT(CASE WHEN now_n > 0 THEN 1 END) AS active,
				COUNT(CASE WHEN before_n > 0 THEN 1 END) AS active_before,
				COUNT(CASE WHEN before_n > 0 AND now_n = 0 THEN 1 END) AS lost,
				COUNT(CASE WHEN now_n > 0 AND first_at >= ? THEN 1 END) AS new_customers
			FROM (SELECT member_id,
					COUNT(CASE WHEN occurred_at >= ? AND occurred_at < ? THEN 1 END) AS now_n,
					COUNT(CASE WHEN occurred_at >= ? AND occurred_at < ? THEN 1 END) AS before_n,
					MIN(occurred_at) AS first_at
				FROM purchases WHERE occurred_at < ? GROUP BY member_id) s`,
			from, from, end, before, from, end).Scan(&a).Error; err != nil {
			return err
		}
		out.Members.Active, out.Members.ActiveBefore, out.Members.Lost = a.Active, a.ActiveBefore, a.Lost
		out.Rates.Churn = countPercent(a.ActiveBefore, a.Lost)
		out.Rates.Retention = countPercent(a.ActiveBefore, a.Active-a.NewCustomers)
		iss, red, err := r.issuedRedeemed(db, from, end)
		if err != nil {
			return err
		}
		out.Points.Issued, out.Points.Redeemed = iss, red
		out.Rates.Redemption = ratePercent(iss, red)
		var p struct{ Expired, Outstanding loyalty.Sum }
		sum := r.svc.Store().SumSQL
		if err := db.Raw(`SELECT `+sum(`CASE WHEN kind = 'expire' AND occurred_at >= ? THEN -points ELSE 0 END`)+` AS expired,
			`+sum(`points`)+` AS outstanding FROM ledger_entries WHERE occurred_at < ?`, from, end).Scan(&p).Error; err != nil {
			return err
		}
		out.Points.Expired, out.Points.Outstanding = p.Expired, p.Outstanding
		out.Liability = liability(p.Outstanding, prog)
		out.BreakagePercent = ratePercent(iss, p.Expired)
		var tiers []struct {
			Code string
			N    int64
		}
		if err := db.Raw(`SELECT COALESCE(tier_code, '') AS code, COUNT(*) AS n FROM members WHERE status = 'active' GROUP BY tier_code`).
			Scan(&tiers).Error; err != nil {
			return err
		}
		for _, t := range tiers {
			out.Tiers[t.Code] = t.N
		}
		var segs []struct {
			Code string
			N    int64
		}
		if err := db.Raw(`SELECT segment_code AS code, COUNT(*) AS n FROM member_segments GROUP BY segment_code`).Scan(&segs).Error; err != nil {
			return err
		}
		for _, s := range segs {
			out.Segments[s.Code] = s.N
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("summary: %w", err)
	}
	return out, nil
}
