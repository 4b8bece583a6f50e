// Package tiers holds the pure rules of a tiered program: which tier a
// qualifying spend earns, how many points a purchase earns at a tier's
// multiplier, how much a return claws back, and when a tier may be lost.
// It does no I/O and uses no floating point.
package tiers

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"time"

	"github.com/shopspring/decimal"
)

// MaxPoints is the largest number of points one computation may yield. It is
// the largest integer a JSON number carries exactly (2^53 − 1), so every
// client reads points without rounding.
const MaxPoints = 1<<53 - 1

// ErrOverflow reports a computation whose result exceeds MaxPoints.
var ErrOverflow = errors.New("points exceed the supported maximum")

// Tier is one rung of the ladder.
type Tier struct {
	Code            string
	Name            string
	Rank            int
	EarnMultiplier  decimal.Decimal
	QualifyingSpend int64 // minor units over the qualifying period
	Benefits        []string
}

// Ladder is a program's tiers ordered by rank, lowest first.
type Ladder []Tier

// NewLadder sorts tiers by rank.
func NewLadder(ts []Tier) Ladder {
	l := append(Ladder(nil), ts...)
	sort.Slice(l, func(i, j int) bool { return l[i].Rank < l[j].Rank })
	return l
}

// Entry is the tier every new member holds: the lowest rank. ok is false for
// a program with no tiers.
func (l Ladder) Entry() (Tier, bool) {
	if len(l) == 0 {
		return Tier{}, false
	}
	return l[0], true
}

// Find returns the tier with the given code.
func (l Ladder) Find(code string) (Tier, bool) {
	for _, t := range l {
		if t.Code == code {
			return t, true
		}
	}
	return Tier{}, false
}

// ForSpend is the highest tier whose threshold the spend reaches.
func (l Ladder) ForSpend(spend int64) (Tier, bool) {
	var best Tier
	found := false
	for _, t := range l {
		if spend >= t.QualifyingSpend {
			best, found = t, true
		}
	}
	return best, found
}

// Next is the tier ranked just above code, if any.
func (l Ladder) Next(code string) (Tier, bool) {
	for i, t := range l {
		if t.Code == code && i+1 < len(l) {
			return l[i+1], true
		}
	}
	return Tier{}, false
}

// Upgrade returns the tier a member holding current reaches with spend. A
// member is never moved down here: downgrades belong to the periodic review.
func (l Ladder) Upgrade(current Tier, spend int64) Tier {
	t, ok := l.ForSpend(spend)
	if ok && t.Rank > current.Rank {
		return t
	}
	return current
}

// Validate checks that a ladder is well formed: rank 0 is the entry tier with
// no threshold, and thresholds rise strictly with rank, so that every spend
// maps to exactly one tier.
func (l Ladder) Validate() error {
	for i, t := range l {
		if t.Rank == 0 && t.QualifyingSpend != 0 {
			return fmt.Errorf("tier %q: the rank-0 tier must have qualifying_spend 0", t.Code)
		}
		if t.Rank > 0 && t.QualifyingSpend == 0 {
			return fmt.Errorf("tier %q: only the rank-0 tier may have qualifying_spend 0", t.Code)
		}
		if i > 0 && t.QualifyingSpend <= l[i-1].QualifyingSpend {
			return fmt.Errorf("tier %q: qualifying_spend must be above that of %q, the tier ranked below it", t.Code, l[i-1].Code)
		}
		if t.EarnMultiplier.IsNegative() {
			return fmt.Errorf("tier %q: earn_multiplier must not be negative", t.Code)
		}
	}
	return nil
}

// Earn is ⌊U · p · m⌋ with U = minor / 10^exponent: the points a total earns
// at points-per-unit p and multiplier m, in exact decimal arithmetic.
func Earn(minor int64, exponent int32, p, m decimal.Decimal) (int64, error) {
	if minor <= 0 {
		return 0, nil
	}
	v := decimal.New(minor, -exponent).Mul(p).Mul(m).Floor()
	if v.IsNegative() {
		return 0, nil
	}
	if v.GreaterThan(decimal.NewFromInt(MaxPoints)) {
		return 0, ErrOverflow
	}
	return v.IntPart(), nil
}

// Reversal is the points a return of amount claws back from a purchase of
// total that earned earned points, when returnedBefore of it was already
// returned, reversedBefore points already clawed back and expired of its
// points already lost to expiry. A return is proportional,
// ⌊earned · amount / total⌋, except the one that completes a full refund,
// which takes exactly what is left so that a full return reverses earned
// to the point. Points that expired are not taken a second time: together
// the returns never take more than earned − expired.
func Reversal(earned, total, amount, returnedBefore, reversedBefore, expired int64) int64 {
	if total <= 0 || amount <= 0 {
		return 0
	}
	left := earned - reversedBefore
	if expired > 0 {
		left -= min(expired, left)
	}
	if returnedBefore+amount >= total {
		return max(left, 0)
	}
	// Integer division, exact for any int64s: a decimal quotient is rounded
	// to 16 places, which for totals above 10^16 can round 17.99… up to 18.
	q := new(big.Int).Mul(big.NewInt(earned), big.NewInt(amount))
	q.Div(q, big.NewInt(total))
	var r int64
	switch {
	case q.IsInt64():
		r = q.Int64()
	case q.Sign() > 0:
		r = math.MaxInt64
	}
	if r > left {
		r = left
	}
	if r < 0 {
		return 0
	}
	return r
}

// Period kinds.
const (
	Rolling      = "rolling"
	CalendarYear = "calendar_year"
)

// Period is the span over which qualifying spend is counted.
type Period struct {
	Kind       string // Rolling or CalendarYear
	WindowDays int    // Rolling: length of the window
	Location   *time.Location
}

func (p Period) loc() *time.Location {
	if p.Location == nil {
		return time.UTC
	}
	return p.Location
}

// Start is the first instant whose purchases count towards the qualifying
// spend measured at at: the last WindowDays for a rolling period, 1 January
// in the program's timezone for a calendar year.
func (p Period) Start(at time.Time) time.Time {
	if p.Kind == CalendarYear {
		l := at.In(p.loc())
		return time.Date(l.Year(), 1, 1, 0, 0, 0, 0, p.loc()).UTC()
	}
	return at.AddDate(0, 0, -p.WindowDays).UTC()
}

// ReviewCutoff is the last instant at which a tier may have been reached
// for the tier-review at at to move it down: a tier is kept for WindowDays
// after it was reached on a rolling period, and to the end of the calendar
// year after the one it was reached in (in the program's timezone) on a
// calendar-year period. A tier reached after the cutoff is still protected.
// The tier-review job selects members with it; what tier they fall to is
// ForSpend of their qualifying spend, never higher than the one they hold.
func (p Period) ReviewCutoff(at time.Time) time.Time {
	if p.Kind == CalendarYear {
		l := at.In(p.loc())
		return time.Date(l.Year()-1, 1, 1, 0, 0, 0, 0, p.loc()).UTC().Add(-time.Microsecond)
	}
	return at.AddDate(0, 0, -p.WindowDays).UTC()
}

// Review is the tier-review rule: the tier held by a member who reached
// held at since, after the review at at, given its qualifying spends (the
// spend at at and, for a review run late, the spend now: the highest
// counts). A tier reached after p.ReviewCutoff(at) is still protected;
// otherwise the member falls to the tier its spend justifies when that is
// below held. Upgrades are not the review's business. moved reports a
// change. The tier-review job runs the same rule in SQL over all members
// (loyalty.Service.ReviewTiers), and a test checks the two against each
// other.
func (l Ladder) Review(p Period, held Tier, since, at time.Time, spends ...int64) (t Tier, moved bool) {
	if since.After(p.ReviewCutoff(at)) || len(spends) == 0 {
		return held, false
	}
	best := spends[0]
	for _, s := range spends[1:] {
		best = max(best, s)
	}
	just, ok := l.ForSpend(best)
	if !ok || just.Rank >= held.Rank {
		return held, false
	}
	return just, true
}

// AddMinor adds minor-unit amounts, reporting overflow.
func AddMinor(a, b int64) (int64, bool) {
	if (b > 0 && a > math.MaxInt64-b) || (b < 0 && a < math.MinInt64-b) {
		return 0, false
	}
	return a + b, true
}
