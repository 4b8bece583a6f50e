package loyalty

import (
	"math/big"

	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/tiers"
)

// Points as payment at the till (§16): the arithmetic, pure. A payment of
// points covers ⌊points ÷ points_per_unit × 10^exponent⌋ minor units,
// floored so that a payment never covers more than its points are worth;
// the rest of the total is the cash part, on which the purchase earns and
// which counts towards qualifying spend.

// PaymentAmount is what points pay, in minor units of a currency with exp
// minor digits: ⌊points ÷ points_per_unit × 10^exp⌋, exactly.
func (pp PointsPayment) PaymentAmount(points int64, exp int32) int64 {
	if points <= 0 || !pp.PointsPerUnit.IsPositive() {
		return 0
	}
	// points × 10^exp ÷ ppu with ppu = c × 10^e: an integer quotient of
	// points × 10^exp × 10^-e by c, no rounding before the floor.
	c, e := pp.PointsPerUnit.Coefficient(), pp.PointsPerUnit.Exponent()
	n, d := big.NewInt(points), c
	if exp >= e {
		n.Mul(n, pow10(exp-e))
	} else {
		d.Mul(d, pow10(e-exp))
	}
	q := n.Quo(n, d)
	if !q.IsInt64() {
		return MaxTotal + 1
	}
	return q.Int64()
}

func pow10(n int32) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

// shareLimit is the most a payment may cover of total: ⌊max_share × total⌋.
func (pp PointsPayment) shareLimit(total int64) int64 {
	return pp.MaxShare.Mul(decimal.NewFromInt(total)).Floor().IntPart()
}

// CheckPayment validates a payment of points towards a basket of total held
// by a member with available points, and returns the amount it covers. The
// rules fail as 422 naming the rule (field points_payment), the available
// points as 409 insufficient_points.
func (pp PointsPayment) CheckPayment(points, total, available int64, exp int32) (int64, error) {
	const f = "points_payment"
	switch {
	case !pp.Enabled:
		return 0, Invalidf(f, "points cannot pay in this program")
	case points <= 0 || points > tiers.MaxPoints:
		return 0, Invalidf(f, "must be a positive number of points")
	case points%pp.StepPoints != 0:
		return 0, Invalidf(f, "must be a multiple of %d points", pp.StepPoints)
	case points < pp.MinPoints:
		return 0, Invalidf(f, "must be at least %d points", pp.MinPoints)
	}
	amount := pp.PaymentAmount(points, exp)
	if amount > pp.shareLimit(total) {
		return 0, Invalidf(f, "may pay at most %s of the total (%d)", pp.MaxShare.String(), pp.shareLimit(total))
	}
	if points > available {
		return 0, Errorf(Conflict, "insufficient_points", "%d points are available, %d are needed", max(available, 0), points)
	}
	return amount, nil
}

// MaxPayment is the largest payment the rules allow a member with available
// points towards a basket of total: a multiple of step_points, at least
// min_points, at most available and covering at most max_share of total.
// 0 when no payment is allowed.
func (pp PointsPayment) MaxPayment(total, available int64, exp int32) int64 {
	if !pp.Enabled || pp.StepPoints <= 0 || !pp.PointsPerUnit.IsPositive() || available <= 0 || total <= 0 {
		return 0
	}
	// The largest points whose amount stays within the limit L: amount(P)
	// ≤ L ⇔ P × 10^exp ÷ ppu < L + 1 ⇔ P < (L + 1) × ppu ÷ 10^exp.
	limit := pp.shareLimit(total)
	bound := decimal.NewFromInt(limit + 1).Mul(pp.PointsPerUnit).Shift(-exp)
	most := bound.Ceil().Sub(decimal.NewFromInt(1))
	p := available
	if most.LessThan(decimal.NewFromInt(p)) {
		p = most.IntPart()
	}
	p -= p % pp.StepPoints
	if p <= 0 || p < pp.MinPoints {
		return 0
	}
	return p
}

// PaymentRefund is what a return of amount gives back of a purchase of total
// that paid paid (points, or the amount they covered), when returnedBefore
// of it was returned and refundedBefore given back already: in proportion,
// ⌊paid · amount ÷ total⌋, and exactly the rest on the return that
// completes a full refund, so the refunds sum to the payment.
func PaymentRefund(paid, total, amount, returnedBefore, refundedBefore int64) int64 {
	return tiers.Reversal(paid, total, amount, returnedBefore, refundedBefore, 0)
}
