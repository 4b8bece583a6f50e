package loyalty

import (
	"errors"
	"testing"

	"github.com/shopspring/decimal"
)

func payRules(ppu string, minPts, step int64, share string) PointsPayment {
	return PointsPayment{Enabled: true, PointsPerUnit: decimal.RequireFromString(ppu), MinPoints: minPts, StepPoints: step,
		MaxShare: decimal.RequireFromString(share)}
}

func TestPaymentAmount(t *testing.T) {
	cases := []struct {
		name   string
		ppu    string
		points int64
		exp    int32
		want   int64
	}{
		{"USD 500 points pay 10.00", "50", 500, 2, 1000},
		{"USD one point", "50", 1, 2, 2},
		{"USD floors a third of a cent", "3", 1, 2, 33},
		{"USD fractional rate", "0.75", 3, 2, 400},
		{"USD rate with 6 decimals", "1.000001", 1000001, 2, 100000000},
		{"USD rate just above a whole", "1.000001", 1000000, 2, 99999900},
		{"JPY no minor unit", "1", 500, 0, 500},
		{"JPY floors", "3", 500, 0, 166},
		{"KWD three decimals", "50", 500, 3, 10000},
		{"KWD floors", "7", 10, 3, 1428},
		{"no points", "50", 0, 2, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pp := payRules(c.ppu, 0, 1, "1")
			if got := pp.PaymentAmount(c.points, c.exp); got != c.want {
				t.Fatalf("PaymentAmount(%d) at %s per unit, exp %d = %d, want %d", c.points, c.ppu, c.exp, got, c.want)
			}
		})
	}
}

func TestCheckPayment(t *testing.T) {
	sephora := payRules("50", 500, 500, "1")
	half := payRules("50", 500, 500, "0.5")
	cases := []struct {
		name      string
		pp        PointsPayment
		points    int64
		total     int64
		available int64
		exp       int32
		amount    int64
		code      Code // "" for success
	}{
		{"one step", sephora, 500, 10000, 800, 2, 1000, ""},
		{"two steps", sephora, 1000, 10000, 1000, 2, 2000, ""},
		{"not a multiple of the step", sephora, 750, 10000, 1000, 2, 0, Invalid},
		{"below the minimum", payRules("50", 1000, 500, "1"), 500, 10000, 1000, 2, 0, Invalid},
		{"whole basket", sephora, 500, 1000, 500, 2, 1000, ""},
		{"more than the basket", sephora, 1000, 1500, 1000, 2, 0, Invalid},
		{"basket smaller than one step", sephora, 500, 999, 500, 2, 0, Invalid},
		{"max share exactly", half, 500, 2000, 500, 2, 1000, ""},
		{"above max share", half, 500, 1999, 500, 2, 0, Invalid},
		{"not enough points", sephora, 1000, 10000, 999, 2, 0, Conflict},
		{"disabled", PointsPayment{PointsPerUnit: decimal.NewFromInt(50), StepPoints: 500, MaxShare: decimal.NewFromInt(1)},
			500, 10000, 500, 2, 0, Invalid},
		{"negative", sephora, -500, 10000, 500, 2, 0, Invalid},
		{"JPY", payRules("1", 100, 100, "1"), 300, 300, 300, 0, 300, ""},
		{"JPY above the basket", payRules("1", 100, 100, "1"), 400, 300, 400, 0, 0, Invalid},
		{"KWD", payRules("50", 500, 500, "1"), 500, 10000, 500, 3, 10000, ""},
		{"KWD above the basket", payRules("50", 500, 500, "1"), 500, 9999, 500, 3, 0, Invalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			amount, err := c.pp.CheckPayment(c.points, c.total, c.available, c.exp)
			if c.code == "" {
				if err != nil || amount != c.amount {
					t.Fatalf("CheckPayment = %d, %v; want %d", amount, err, c.amount)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != c.code {
				t.Fatalf("CheckPayment = %d, %v; want a %s error", amount, err, c.code)
			}
		})
	}
}

func TestMaxPayment(t *testing.T) {
	cases := []struct {
		name             string
		pp               PointsPayment
		total, available int64
		exp              int32
		want             int64
	}{
		{"balance limits", payRules("50", 500, 500, "1"), 10000, 1200, 2, 1000},
		{"basket limits", payRules("50", 500, 500, "1"), 2500, 5000, 2, 1000},
		{"basket exactly", payRules("50", 500, 500, "1"), 3000, 5000, 2, 1500},
		{"share limits", payRules("50", 500, 500, "0.5"), 3000, 5000, 2, 500},
		{"basket smaller than one step", payRules("50", 500, 500, "1"), 999, 5000, 2, 0},
		{"below the minimum", payRules("50", 1000, 500, "1"), 1500, 5000, 2, 0},
		{"minimum not a step", payRules("50", 700, 500, "1"), 10000, 5000, 2, 5000},
		{"no points", payRules("50", 500, 500, "1"), 10000, 0, 2, 0},
		{"negative balance", payRules("50", 500, 500, "1"), 10000, -20, 2, 0},
		{"step of one, floored amount", payRules("3", 0, 1, "1"), 100, 1000, 2, 3},
		{"JPY", payRules("1", 100, 100, "1"), 350, 1000, 0, 300},
		{"KWD", payRules("50", 500, 500, "1"), 12345, 5000, 3, 500},
		{"disabled", PointsPayment{PointsPerUnit: decimal.NewFromInt(50), StepPoints: 500, MaxShare: decimal.NewFromInt(1)},
			10000, 5000, 2, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.pp.MaxPayment(c.total, c.available, c.exp)
			if got != c.want {
				t.Fatalf("MaxPayment = %d, want %d", got, c.want)
			}
			if got > 0 {
				// The largest allowed is allowed, and one step more is not.
				if _, err := c.pp.CheckPayment(got, c.total, c.available, c.exp); err != nil {
					t.Fatalf("the max %d is refused: %v", got, err)
				}
				if _, err := c.pp.CheckPayment(got+c.pp.StepPoints, c.total, c.available, c.exp); err == nil {
					t.Fatalf("one step above the max, %d, is allowed", got+c.pp.StepPoints)
				}
			}
		})
	}
}

func TestPaymentRefundsSumExactly(t *testing.T) {
	cases := []struct {
		name    string
		paid    int64
		total   int64
		returns []int64
		want    []int64
	}{
		{"one full return", 1500, 10000, []int64{10000}, []int64{1500}},
		{"thirds", 1000, 3000, []int64{1000, 1000, 1000}, []int64{333, 333, 334}},
		{"uneven parts", 500, 10001, []int64{1, 3333, 3333, 3334}, []int64{0, 166, 166, 168}},
		{"partial, never completed", 500, 1000, []int64{300, 300}, []int64{150, 150}},
		{"amount covered, JPY", 166, 500, []int64{100, 100, 300}, []int64{33, 33, 100}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var returned, refunded int64
			for i, amount := range c.returns {
				r := PaymentRefund(c.paid, c.total, amount, returned, refunded)
				if r != c.want[i] {
					t.Fatalf("return %d of %d: refund %d, want %d", i, amount, r, c.want[i])
				}
				returned, refunded = returned+amount, refunded+r
			}
			if returned == c.total && refunded != c.paid {
				t.Fatalf("a full return refunded %d of %d", refunded, c.paid)
			}
		})
	}
}
