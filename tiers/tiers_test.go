package tiers

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestEarnContractExamples(t *testing.T) {
	for _, tc := range []struct {
		name  string
		total int64
		p, m  string
		want  int64
	}{
		{"InsiderWholeDollars", 10000, "1", "1", 100},
		{"VIBWholeDollars", 10000, "1", "1.25", 125},
		{"VIBFloorsFraction", 1050, "1", "1.25", 13}, // 13.125
		{"RougeFloorsFraction", 999, "1", "1.5", 14}, // 14.985
		{"OneCent", 1, "1", "1", 0},
		{"JustUnderAPoint", 99, "1", "1", 0},
		{"ExactlyAPoint", 100, "1", "1", 1},
		{"FractionalPointsPerUnit", 10000, "0.1", "1.25", 12}, // 12.5
		{"ExactDecimalNoFloatDrift", 1000, "1", "1.1", 11},    // 0.1 is not exact in binary
		{"LargeRate", 12345, "10", "1.5", 1851},               // 1851.75
		{"ZeroMultiplier", 10000, "1", "0", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Earn(tc.total, 2, d(tc.p), d(tc.m))
			if err != nil || got != tc.want {
				t.Fatalf("Earn(%d, %s, %s) = %d, %v; want %d", tc.total, tc.p, tc.m, got, err, tc.want)
			}
		})
	}
	t.Run("ZeroDecimalCurrency", func(t *testing.T) {
		if got, _ := Earn(1050, 0, d("1"), d("1.25")); got != 1312 {
			t.Fatalf("JPY 1050 at 1.25 = %d, want 1312", got)
		}
	})
}

func TestEarnNearTheLimit(t *testing.T) {
	if _, err := Earn(math.MaxInt64, 2, d("1000000"), d("1000")); !errors.Is(err, ErrOverflow) {
		t.Fatalf("err = %v, want ErrOverflow", err)
	}
	// The largest total that still fits earns exactly MaxPoints.
	got, err := Earn(MaxPoints*100, 2, d("1"), d("1"))
	if err != nil || got != MaxPoints {
		t.Fatalf("got %d, %v", got, err)
	}
	if _, err := Earn(MaxPoints*100+100, 2, d("1"), d("1")); !errors.Is(err, ErrOverflow) {
		t.Fatalf("one point over MaxPoints: err = %v", err)
	}
}

func TestReversal(t *testing.T) {
	// A purchase of 10000 that earned 125 points.
	t.Run("Proportional", func(t *testing.T) {
		if got := Reversal(125, 10000, 4000, 0, 0, 0); got != 50 {
			t.Fatalf("got %d, want 50", got)
		}
	})
	t.Run("FloorsFraction", func(t *testing.T) {
		if got := Reversal(125, 10000, 3333, 0, 0, 0); got != 41 { // 41.6625
			t.Fatalf("got %d, want 41", got)
		}
	})
	t.Run("FullReturnIsExact", func(t *testing.T) {
		if got := Reversal(125, 10000, 10000, 0, 0, 0); got != 125 {
			t.Fatalf("got %d, want 125", got)
		}
	})
	t.Run("LastOfThreeThirdsTakesTheRest", func(t *testing.T) {
		var returned, reversed int64
		for i, amount := range []int64{3333, 3333, 3334} {
			r := Reversal(125, 10000, amount, returned, reversed, 0)
			returned += amount
			reversed += r
			if i < 2 && r != 41 {
				t.Fatalf("return %d reversed %d, want 41", i, r)
			}
		}
		if reversed != 125 {
			t.Fatalf("three thirds reversed %d, want exactly 125", reversed)
		}
	})
	// §8: points of the purchase already lost to expiry are not taken again.
	t.Run("FullReturnAfterAllExpired", func(t *testing.T) {
		if got := Reversal(125, 10000, 10000, 0, 0, 125); got != 0 {
			t.Fatalf("got %d, want 0", got)
		}
	})
	t.Run("FullReturnAfterPartExpired", func(t *testing.T) {
		// 45 were spent before the other 80 expired: the return takes the 45.
		if got := Reversal(125, 10000, 10000, 0, 0, 80); got != 45 {
			t.Fatalf("got %d, want 45", got)
		}
	})
	t.Run("PartialReturnCappedByExpiry", func(t *testing.T) {
		// ⌊125 · 8000 / 10000⌋ = 100, but only 25 did not expire.
		if got := Reversal(125, 10000, 8000, 0, 0, 100); got != 25 {
			t.Fatalf("got %d, want 25", got)
		}
		// A partial return within what did not expire is proportional.
		if got := Reversal(125, 10000, 1000, 0, 0, 100); got != 12 {
			t.Fatalf("got %d, want 12", got)
		}
	})
	t.Run("SecondReturnAfterExpiry", func(t *testing.T) {
		// 50 reversed, then the lot's other 75 expired: nothing is left to take.
		if got := Reversal(125, 10000, 6000, 4000, 50, 75); got != 0 {
			t.Fatalf("got %d, want 0", got)
		}
	})
	t.Run("NoOverflowOnHugeValues", func(t *testing.T) {
		if got := Reversal(MaxPoints, math.MaxInt64, math.MaxInt64/2, 0, 0, 0); got <= 0 || got > MaxPoints {
			t.Fatalf("got %d", got)
		}
	})
}

func ladder() Ladder {
	return NewLadder([]Tier{
		{Code: "rouge", Rank: 2, EarnMultiplier: d("1.5"), QualifyingSpend: 100000},
		{Code: "insider", Rank: 0, EarnMultiplier: d("1"), QualifyingSpend: 0},
		{Code: "vib", Rank: 1, EarnMultiplier: d("1.25"), QualifyingSpend: 35000},
	})
}

func TestLadderQualification(t *testing.T) {
	l := ladder()
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spend int64
		want  string
	}{{0, "insider"}, {34999, "insider"}, {35000, "vib"}, {99999, "vib"}, {100000, "rouge"}, {1 << 40, "rouge"}} {
		if got, _ := l.ForSpend(tc.spend); got.Code != tc.want {
			t.Errorf("ForSpend(%d) = %s, want %s", tc.spend, got.Code, tc.want)
		}
	}
	insider, _ := l.Find("insider")
	rouge, _ := l.Find("rouge")
	if got := l.Upgrade(insider, 100000); got.Code != "rouge" {
		t.Errorf("upgrade skips tiers: got %s", got.Code)
	}
	if got := l.Upgrade(rouge, 0); got.Code != "rouge" {
		t.Errorf("upgrade never downgrades: got %s", got.Code)
	}
	if next, ok := l.Next("vib"); !ok || next.Code != "rouge" {
		t.Errorf("next of vib = %v", next.Code)
	}
	if _, ok := l.Next("rouge"); ok {
		t.Error("rouge is the top tier")
	}
}

func TestLadderValidate(t *testing.T) {
	bad := []Ladder{
		NewLadder([]Tier{{Code: "a", Rank: 0, QualifyingSpend: 10}}),
		NewLadder([]Tier{{Code: "a", Rank: 0}, {Code: "b", Rank: 1, QualifyingSpend: 0}}),
		NewLadder([]Tier{{Code: "a", Rank: 0}, {Code: "b", Rank: 1, QualifyingSpend: 500}, {Code: "c", Rank: 2, QualifyingSpend: 500}}),
		NewLadder([]Tier{{Code: "a", Rank: 0}, {Code: "b", Rank: 1, QualifyingSpend: 500}, {Code: "c", Rank: 2, QualifyingSpend: 400}}),
	}
	for i, l := range bad {
		if err := l.Validate(); err == nil {
			t.Errorf("ladder %d should be invalid", i)
		}
	}
}

func TestRollingPeriod(t *testing.T) {
	p := Period{Kind: Rolling, WindowDays: 365}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if got := p.Start(at); !got.Equal(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("start = %v", got)
	}
	// Protected for the window after it was reached, to the microsecond.
	reached := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	kept := reached.AddDate(0, 0, 365)
	if !reached.After(p.ReviewCutoff(kept.Add(-time.Microsecond))) {
		t.Errorf("reviewable a microsecond before the window ends: cutoff %v", p.ReviewCutoff(kept.Add(-time.Microsecond)))
	}
	if reached.After(p.ReviewCutoff(kept)) {
		t.Errorf("still protected when the window ends: cutoff %v", p.ReviewCutoff(kept))
	}
}

func TestCalendarYearPeriod(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	p := Period{Kind: CalendarYear, Location: ny}
	// 1 January 03:00 UTC is still 31 December in New York.
	at := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	if got := p.Start(at); !got.Equal(time.Date(2025, 1, 1, 5, 0, 0, 0, time.UTC)) {
		t.Errorf("start = %v, want 2025-01-01 05:00 UTC", got)
	}
	at = time.Date(2026, 1, 1, 6, 0, 0, 0, time.UTC)
	if got := p.Start(at); !got.Equal(time.Date(2026, 1, 1, 5, 0, 0, 0, time.UTC)) {
		t.Errorf("start = %v, want 2026-01-01 05:00 UTC", got)
	}
	// Reached in June 2025: kept to the end of 2026, New York time.
	reached := time.Date(2025, 6, 15, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		at        time.Time
		reviewed  bool
		situation string
	}{
		{time.Date(2026, 12, 31, 23, 59, 59, 999999000, ny), false, "the last microsecond of the next year"},
		{time.Date(2027, 1, 1, 3, 0, 0, 0, time.UTC), false, "1 January in UTC, still 31 December in New York"},
		{time.Date(2027, 1, 1, 0, 0, 0, 0, ny), true, "the first instant of the year after"},
	} {
		if got := !reached.After(p.ReviewCutoff(c.at)); got != c.reviewed {
			t.Errorf("at %s (%s): reviewable %v, want %v", c.at, c.situation, got, c.reviewed)
		}
	}
	// The year a tier is reached in is New York's too.
	lastOf2025 := time.Date(2025, 12, 31, 23, 59, 59, 999999000, ny)
	firstOf2026 := time.Date(2026, 1, 1, 0, 0, 0, 0, ny)
	at = time.Date(2027, 1, 1, 0, 0, 0, 0, ny)
	if lastOf2025.After(p.ReviewCutoff(at)) {
		t.Errorf("a tier reached on 31 December 2025 is still protected in 2027")
	}
	if !firstOf2026.After(p.ReviewCutoff(at)) {
		t.Errorf("a tier reached on 1 January 2026 is reviewable in 2027")
	}
}

func TestLadderUpgradeTable(t *testing.T) {
	l := ladder()
	for _, tc := range []struct {
		held  string
		spend int64
		want  string
	}{
		{"insider", 0, "insider"},
		{"insider", 34999, "insider"},
		{"insider", 35000, "vib"},
		{"insider", 100000, "rouge"},
		{"vib", 0, "vib"},
		{"vib", 100000, "rouge"},
		{"rouge", 35000, "rouge"},
	} {
		held, _ := l.Find(tc.held)
		if got := l.Upgrade(held, tc.spend); got.Code != tc.want {
			t.Errorf("Upgrade(%s, %d) = %s, want %s", tc.held, tc.spend, got.Code, tc.want)
		}
	}
}

func TestReview(t *testing.T) {
	l := ladder()
	at := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	rolling := Period{Kind: Rolling, WindowDays: 365}
	year := Period{Kind: CalendarYear, Location: time.UTC}
	for _, tc := range []struct {
		name   string
		p      Period
		held   string
		since  time.Time
		spends []int64
		want   string
	}{
		{"Protected", rolling, "rouge", at.AddDate(0, 0, -364), []int64{0}, "rouge"},
		{"AtTheCutoff", rolling, "rouge", at.AddDate(0, 0, -365), []int64{0}, "insider"},
		{"FallsToWhatTheSpendJustifies", rolling, "rouge", at.AddDate(-2, 0, 0), []int64{40000}, "vib"},
		{"KeptWhenJustified", rolling, "vib", at.AddDate(-2, 0, 0), []int64{35000}, "vib"},
		{"NeverUp", rolling, "insider", at.AddDate(-2, 0, 0), []int64{200000}, "insider"},
		{"TheHigherSpendCounts", rolling, "rouge", at.AddDate(-2, 0, 0), []int64{0, 100000}, "rouge"},
		{"NoSpendNoReview", rolling, "rouge", at.AddDate(-2, 0, 0), nil, "rouge"},
		{"CalendarYearAfter", year, "rouge", time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), []int64{0}, "rouge"},
		{"CalendarYearBefore", year, "rouge", time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC), []int64{0}, "insider"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held, _ := l.Find(tc.held)
			got, moved := l.Review(tc.p, held, tc.since, at, tc.spends...)
			if got.Code != tc.want || moved != (tc.want != tc.held) {
				t.Fatalf("Review = %s (moved %v), want %s", got.Code, moved, tc.want)
			}
		})
	}
}
