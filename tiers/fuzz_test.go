package tiers

import (
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// floorEarn is the contract's formula ⌊minor / 10^exponent · p · m⌋ with p
// = pm·10^-pe and m = mm·10^-me, in big integers: an oracle that shares no
// code with Earn.
func floorEarn(minor int64, exponent, pe, me int32, pm, mm int64) *big.Int {
	num := new(big.Int).Mul(big.NewInt(minor), big.NewInt(pm))
	num.Mul(num, big.NewInt(mm))
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exponent+pe+me)), nil)
	// Div is Euclidean division: for a positive divisor it rounds down,
	// negative quotients included.
	return num.Div(num, den)
}

// earnArgs bounds the fuzzer's exponents to what a program can hold: a
// currency has at most 4 decimals (ISO 4217 has 0 to 4) and a rate at most
// 12 here (the API allows 6).
func earnArgs(exp, pe, me uint8) (int32, int32, int32) {
	return int32(exp % 5), int32(pe % 13), int32(me % 13)
}

// FuzzEarn checks Earn against the floor formula for any total, rate and
// multiplier, including negative and int64-edge values: never negative,
// exactly the formula when it fits, ErrOverflow exactly when it does not,
// and never less for a larger total.
func FuzzEarn(f *testing.F) {
	for _, s := range []struct {
		minor int64
		exp   uint8
		pm    int64
		pe    uint8
		mm    int64
		me    uint8
		more  uint64
	}{
		{10000, 2, 1, 0, 125, 2, 1}, // VIB, 10000 → 125
		{1050, 2, 1, 0, 125, 2, 49}, // 13.125 → 13
		{999, 2, 1, 0, 15, 1, 1},    // 14.985 → 14
		{1, 2, 1, 0, 1, 0, 98},      // a cent earns nothing
		{1050, 0, 1, 0, 125, 2, 0},  // zero-decimal currency
		{10000, 2, 1, 1, 125, 2, 1}, // p = 0.1
		{math.MaxInt64, 2, 1000000, 0, 1000, 0, 0},
		{MaxPoints * 100, 2, 1, 0, 1, 0, 100}, // the last total that fits, then one point over
		{math.MaxInt64, 0, 1, 0, 1, 0, 0},
		{math.MinInt64, 2, 1, 0, 1, 0, math.MaxUint64},
		{-1, 2, 1, 0, 1, 0, 2},
		{10000, 2, -1, 0, 1, 0, 1}, // a negative rate earns nothing
		{10000, 2, 1, 0, math.MinInt64, 0, 1},
		{0, 4, math.MaxInt64, 12, math.MaxInt64, 12, 1},
	} {
		f.Add(s.minor, s.exp, s.pm, s.pe, s.mm, s.me, s.more)
	}
	f.Fuzz(func(t *testing.T, minor int64, exp uint8, pm int64, pe uint8, mm int64, me uint8, more uint64) {
		e, pExp, mExp := earnArgs(exp, pe, me)
		p, m := decimal.New(pm, -pExp), decimal.New(mm, -mExp)
		got, err := Earn(minor, e, p, m)
		want := big.NewInt(0)
		if minor > 0 {
			want = floorEarn(minor, e, pExp, mExp, pm, mm)
		}
		switch {
		case want.Sign() < 0:
			if err != nil || got != 0 {
				t.Fatalf("Earn(%d, %d, %s, %s) = %d, %v; a negative product earns 0", minor, e, p, m, got, err)
			}
		case want.Cmp(big.NewInt(MaxPoints)) > 0:
			if !errors.Is(err, ErrOverflow) {
				t.Fatalf("Earn(%d, %d, %s, %s) = %d, %v; want ErrOverflow (formula %s)", minor, e, p, m, got, err, want)
			}
		default:
			if err != nil || got != want.Int64() {
				t.Fatalf("Earn(%d, %d, %s, %s) = %d, %v; want %s", minor, e, p, m, got, err, want)
			}
		}
		if got < 0 {
			t.Fatalf("Earn(%d, %d, %s, %s) = %d: negative", minor, e, p, m, got)
		}
		// Monotone in the total: a larger total earns at least as much,
		// or overflows.
		bigger := minor + int64(more%(1<<62))
		if bigger < minor || err != nil {
			return
		}
		got2, err2 := Earn(bigger, e, p, m)
		if err2 == nil && got2 < got {
			t.Fatalf("Earn(%d) = %d but Earn(%d) = %d at p %s, m %s", minor, got, bigger, got2, p, m)
		}
		if err2 != nil && !errors.Is(err2, ErrOverflow) {
			t.Fatalf("Earn(%d, %d, %s, %s): unexpected error %v", bigger, e, p, m, err2)
		}
	})
}

// returnsFrom splits a purchase of total into partial returns, one per 8
// bytes of cuts, each at least 1 and together at most total; full says
// whether the last one completes the refund.
func returnsFrom(total int64, cuts []byte, full bool) []int64 {
	var out []int64
	left := total
	for len(cuts) >= 8 && left > 0 {
		a := 1 + int64(binary.LittleEndian.Uint64(cuts)%uint64(left))
		cuts = cuts[8:]
		if a == left && !full {
			break
		}
		out = append(out, a)
		left -= a
	}
	if full && left > 0 {
		out = append(out, left)
	}
	return out
}

// FuzzReversal plays a purchase's returns in sequence and checks each
// reversal and their sum: never negative; a partial return takes exactly
// ⌊earned · amount / total⌋ and never more than is left; a larger return
// from the same state never takes less; the sum never exceeds what was
// earned, and the returns of a full refund take back exactly that.
func FuzzReversal(f *testing.F) {
	le := func(vs ...uint64) []byte {
		b := make([]byte, 0, 8*len(vs))
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
		return b
	}
	f.Add(int64(125), int64(10000), le(3999, 2999), true)
	f.Add(int64(100), int64(3), le(0, 0), true) // three returns of 1: 33 + 33 + 34
	f.Add(int64(7), int64(1000), le(0, 0, 0, 0, 0), false)
	f.Add(int64(0), int64(5000), le(2499), true)
	f.Add(int64(MaxPoints), int64(math.MaxInt64), le(math.MaxUint64, 12345), true)
	f.Add(int64(1), int64(math.MaxInt64), le(0), false)
	f.Add(int64(MaxPoints), int64(1), []byte{}, true)
	f.Fuzz(func(t *testing.T, earned, total int64, cuts []byte, full bool) {
		// A purchase earns 0 to MaxPoints for a total above 0.
		if earned < 0 {
			earned = -(earned + 1)
		}
		earned %= MaxPoints + 1
		if total <= 0 {
			total = -(total + 1)
			if total == 0 {
				total = 1
			}
		}
		var returned, reversed int64
		for i, amount := range returnsFrom(total, cuts, full) {
			r := Reversal(earned, total, amount, returned, reversed, 0)
			left := earned - reversed
			if r < 0 || r > left {
				t.Fatalf("return %d of %d (of %d earning %d, %d returned, %d reversed): %d reversed, want 0 to %d",
					i, amount, total, earned, returned, reversed, r, left)
			}
			completes := returned+amount == total
			if !completes {
				floor := new(big.Int).Mul(big.NewInt(earned), big.NewInt(amount))
				floor.Div(floor, big.NewInt(total))
				want := floor.Int64()
				if want > left {
					want = left
				}
				if r != want {
					t.Fatalf("partial return %d of %d (of %d earning %d): %d reversed, want ⌊%d·%d/%d⌋ = %d",
						i, amount, total, earned, r, earned, amount, total, want)
				}
				if amount > 1 {
					if smaller := Reversal(earned, total, amount-1, returned, reversed, 0); smaller > r {
						t.Fatalf("returning %d takes %d but returning %d takes %d", amount-1, smaller, amount, r)
					}
				}
			}
			returned += amount
			reversed += r
		}
		if reversed > earned {
			t.Fatalf("returns of %d of %d reversed %d of %d earned", returned, total, reversed, earned)
		}
		if returned == total && reversed != earned {
			t.Fatalf("a full refund of %d reversed %d, want exactly the %d earned", total, reversed, earned)
		}
	})
}

// FuzzReversalInt64 feeds Reversal arbitrary int64s, impossible states
// included (sums that overflow, amounts above the total): it must not
// panic, and for a consistent state (0 ≤ reversedBefore ≤ earned,
// 0 ≤ returnedBefore < total, 0 ≤ expired ≤ earned − reversedBefore) it
// stays within what is left to reverse and has not expired.
func FuzzReversalInt64(f *testing.F) {
	for _, s := range [][6]int64{
		{125, 10000, 4000, 0, 0, 0},
		{math.MaxInt64, math.MaxInt64, math.MaxInt64, math.MaxInt64, 0, 0},
		{math.MaxInt64, 1, math.MaxInt64, math.MaxInt64 - 1, 0, math.MaxInt64},
		{math.MinInt64, math.MaxInt64, 1, 0, math.MinInt64, math.MinInt64},
		{MaxPoints, math.MaxInt64, math.MaxInt64 - 1, 0, 0, MaxPoints - 1},
		{100, 0, 1, 0, 0, 0},
		{100, -5, -5, -5, -5, -5},
		{100, 3, 1, 2, 200, 0},
		{100, 3, 1, 0, 40, 60},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5])
	}
	f.Fuzz(func(t *testing.T, earned, total, amount, returnedBefore, reversedBefore, expired int64) {
		r := Reversal(earned, total, amount, returnedBefore, reversedBefore, expired)
		consistent := earned >= 0 && reversedBefore >= 0 && reversedBefore <= earned &&
			returnedBefore >= 0 && returnedBefore < total && expired >= 0 && expired <= earned-reversedBefore
		if !consistent {
			return
		}
		if left := earned - reversedBefore - expired; r < 0 || r > left {
			t.Fatalf("Reversal(%d, %d, %d, %d, %d, %d) = %d, want 0 to %d",
				earned, total, amount, returnedBefore, reversedBefore, expired, r, left)
		}
	})
}

// FuzzReversalAfterExpiry plays a purchase's returns with its points
// partly spent and the rest expiring before one of them, as the ledger
// would: the purchase's own lot holds what was neither spent nor taken
// back, and expires whole. No return takes expired points (a return
// before the expiry is proportional, as ever; after it, capped at what did
// not expire), and a full refund takes back exactly what did not expire:
// the member never loses a point twice.
func FuzzReversalAfterExpiry(f *testing.F) {
	le := func(vs ...uint64) []byte {
		b := make([]byte, 0, 8*len(vs))
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
		return b
	}
	f.Add(int64(100), int64(10000), int64(0), le(9999), true, uint8(0))
	f.Add(int64(100), int64(10000), int64(60), le(4999), true, uint8(1))
	f.Add(int64(125), int64(10000), int64(10), le(3332, 3332), true, uint8(2))
	f.Add(int64(7), int64(3), int64(7), le(0, 0), false, uint8(1))
	f.Add(int64(MaxPoints), int64(math.MaxInt64), int64(1), le(math.MaxUint64, 12345), true, uint8(1))
	f.Fuzz(func(t *testing.T, earned, total, spent int64, cuts []byte, full bool, lapseBefore uint8) {
		if earned < 0 {
			earned = -(earned + 1)
		}
		earned %= MaxPoints + 1
		if total <= 0 {
			total = -(total + 1)
			if total == 0 {
				total = 1
			}
		}
		if spent < 0 {
			spent = -(spent + 1)
		}
		if earned > 0 {
			spent %= earned + 1
		} else {
			spent = 0
		}
		own := earned - spent // what the purchase's lot still holds
		var returned, reversed, expired int64
		returns := returnsFrom(total, cuts, full)
		for i, amount := range returns {
			if i == int(lapseBefore) {
				expired, own = own, 0
			}
			r := Reversal(earned, total, amount, returned, reversed, expired)
			if left := earned - reversed - expired; r < 0 || r > left {
				t.Fatalf("return %d of %d: %d reversed, want 0 to %d (earned %d, reversed %d, expired %d)",
					i, amount, r, left, earned, reversed, expired)
			}
			if expired == 0 && returned+amount < total {
				floor := new(big.Int).Mul(big.NewInt(earned), big.NewInt(amount))
				floor.Div(floor, big.NewInt(total))
				if want := min(floor.Int64(), earned-reversed); r != want {
					t.Fatalf("return %d before any expiry: %d reversed, want %d", i, r, want)
				}
			}
			own -= min(own, r) // a return takes the purchase's own points first
			returned += amount
			reversed += r
		}
		if reversed+expired > earned {
			t.Fatalf("reversed %d and expired %d of %d earned: points lost twice", reversed, expired, earned)
		}
		if returned == total && reversed+expired != earned {
			t.Fatalf("a full refund reversed %d with %d expired, want %d in all", reversed, expired, earned)
		}
	})
}

// FuzzReviewCutoff checks ReviewCutoff against the protection rule of §5
// stated the other way round: a tier reached at reached may be reviewed
// down at at exactly when at is WindowDays or more after reached (rolling),
// or falls in a calendar year, in the program's timezone, at least two
// after the one reached fell in (calendar year).
func FuzzReviewCutoff(f *testing.F) {
	const year = int64(365*24*3600) * 1e6 // in microseconds
	f.Add(int64(1_750_000_000)*1e6, year, uint16(365), false, uint8(0))
	f.Add(int64(1_750_000_000)*1e6, 2*year, uint16(365), true, uint8(1))
	f.Add(int64(1_767_243_599_999_999), int64(1), uint16(1), true, uint8(1)) // the last microsecond of 2025 in New York
	f.Add(int64(0), -year, uint16(3650), true, uint8(2))
	zones := []string{"UTC", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Australia/Lord_Howe"}
	f.Fuzz(func(t *testing.T, reachedMicros, laterMicros int64, window uint16, calendar bool, zone uint8) {
		loc, err := time.LoadLocation(zones[int(zone)%len(zones)])
		if err != nil {
			t.Skip(err)
		}
		// Instants the store can hold: microseconds, 1970 to about 2100.
		span := 130 * year
		reached := time.UnixMicro(((reachedMicros % span) + span) % span).UTC()
		at := reached.Add(time.Duration(laterMicros%(5*year)) * time.Microsecond)
		p := Period{Kind: Rolling, WindowDays: 1 + int(window)%3650, Location: loc}
		want := !at.Before(reached.AddDate(0, 0, p.WindowDays))
		if calendar {
			p.Kind = CalendarYear
			want = at.In(loc).Year() >= reached.In(loc).Year()+2
		}
		if got := !reached.After(p.ReviewCutoff(at)); got != want {
			t.Fatalf("%s period in %s: a tier reached at %s reviewable at %s: %v, want %v (cutoff %s)",
				p.Kind, loc, reached, at, got, want, p.ReviewCutoff(at))
		}
	})
}
