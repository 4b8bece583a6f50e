package jobs_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestTierReviewCalendarYearBoundary runs the tier-review job at 23:59 on
// 31 December and at 00:00 on 1 January in Tokyo (UTC+9), where the local
// year turns nine hours before the UTC one. A tier reached in a calendar
// year is kept to the end of the next one (§5), then the spend since
// 1 January, local time, decides.
func TestTierReviewCalendarYearBoundary(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		tokyo, err := time.LoadLocation("Asia/Tokyo")
		if err != nil {
			t.Fatal(err)
		}
		local := func(y int, mo time.Month, d, h, mi int) time.Time { return time.Date(y, mo, d, h, mi, 0, 0, tokyo) }
		e := newEnv(t, dialect, local(2024, 1, 1, 0, 0))
		period, tz := "calendar_year", "Asia/Tokyo"
		e.program(loyalty.ProgramPatch{TierPeriod: &period, Timezone: &tz})
		e.ladder()

		reach := func(when time.Time, total int64) string {
			t.Helper()
			e.clock.Set(when)
			m := e.enrol("")
			if r := e.buy(m, total); r.TierAfter == nil || *r.TierAfter == "insider" {
				t.Fatalf("purchase of %d at %s left the member at %v", total, when, r.TierAfter)
			}
			return m
		}
		// Reached in 2024: kept to the end of 2025.
		mid2024 := reach(local(2024, 6, 15, 12, 0), 35000)
		// 23:30 on 31 December 2024 in Tokyo: still 2024 there.
		lastOf2024 := reach(local(2024, 12, 31, 23, 30), 35000)
		rouge2024 := reach(local(2024, 7, 1, 12, 0), 100000)
		// 00:30 on 1 January 2025 in Tokyo, 15:30 UTC on 31 December 2024:
		// reached in 2025, kept to the end of 2026.
		firstOf2025 := reach(local(2025, 1, 1, 0, 30), 35000)

		names := map[string]string{mid2024: "VIB since June 2024", lastOf2024: "VIB since 23:30 on 31 Dec 2024",
			rouge2024: "Rouge since July 2024", firstOf2025: "VIB since 00:30 on 1 Jan 2025"}
		want := func(when string, tiers map[string]string) {
			t.Helper()
			for m, code := range tiers {
				if got := e.tierOf(m); got != code {
					t.Errorf("%s: the member %s holds %q, want %q", when, names[m], got, code)
				}
			}
		}
		eve := local(2025, 12, 31, 23, 59)
		e.clock.Set(eve)
		rec := e.run(t, "tier-review", eve)
		want("after the review at 23:59 on 31 Dec 2025", map[string]string{
			mid2024: "vib", lastOf2024: "vib", rouge2024: "rouge", firstOf2025: "vib"})
		if s := string(rec.Summary); s != `{"downgraded":0,"judged":0,"brought_forward":false}` {
			t.Errorf("summary at 23:59 %s, want nothing downgraded", s)
		}

		newYear := local(2026, 1, 1, 0, 0)
		e.clock.Set(newYear)
		// Rouge since 2024 spends 40,000 at the first instant of 2026,
		// Tokyo time: that spend counts for 2026 and justifies VIB.
		e.buy(rouge2024, 40000)
		rec = e.run(t, "tier-review", newYear)
		want("after the review at 00:00 on 1 Jan 2026", map[string]string{
			mid2024: "insider", lastOf2024: "insider", rouge2024: "vib", firstOf2025: "vib"})
		if s := string(rec.Summary); s != `{"downgraded":3,"judged":3,"brought_forward":true}` {
			t.Errorf("summary at 00:00 %s, want 3 downgraded", s)
		}
		// A second run as of the same instant changes nothing.
		if s := string(e.run(t, "tier-review", newYear).Summary); s != `{"downgraded":0,"judged":0,"brought_forward":true}` {
			t.Errorf("second run %s, want nothing downgraded", s)
		}
		want("after a second run", map[string]string{
			mid2024: "insider", lastOf2024: "insider", rouge2024: "vib", firstOf2025: "vib"})
	})
}

// TestTierReviewPastAsOf: a review as of a past instant judges the members
// unprotected then, but never moves one below the tier its qualifying
// spend justifies when the run happens, and leaves alone a member whose
// tier changed after as_of.
func TestTierReviewPastAsOf(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, at(t, "2025-01-10T12:00:00Z"))
		e.ladder() // rolling 365-day window
		lapsed := e.enrol("")
		e.buy(lapsed, 35000)
		spentSince := e.enrol("")
		e.buy(spentSince, 35000)
		asOf := at(t, "2026-02-01T00:00:00Z")
		// spentSince buys again after as_of: at the run its spend over the
		// last 365 days justifies VIB.
		e.clock.Set(at(t, "2026-02-10T12:00:00Z"))
		e.buy(spentSince, 35000)
		e.clock.Set(at(t, "2026-02-20T12:00:00Z"))
		rec := e.run(t, "tier-review", asOf)
		if got := e.tierOf(lapsed); got != "insider" {
			t.Errorf("lapsed member holds %q, want insider", got)
		}
		if got := e.tierOf(spentSince); got != "vib" {
			t.Errorf("a member whose spend justifies VIB now was moved to %q by a review as of a past instant", got)
		}
		if s := string(rec.Summary); s != `{"downgraded":1,"judged":2,"brought_forward":false}` {
			t.Errorf("summary %s", s)
		}
		// Nothing more as of an earlier instant still.
		if s := string(e.run(t, "tier-review", asOf.AddDate(0, 0, -5)).Summary); s != `{"downgraded":0,"judged":1,"brought_forward":false}` {
			t.Errorf("an earlier review downgraded again: %s", s)
		}
	})
}

// TestTierReviewJudgesWhomItCanMove: a VIB member whose oldest qualifying
// purchase has left the window, so that its kept row is due, still
// reaches VIB on the purchase since: the review passes it over by its
// spend, without locking or judging it, and moves down only the member
// below the threshold. A year after its last purchase its spend is gone,
// and the next review moves it down too.
func TestTierReviewJudgesWhomItCanMove(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		t0 := time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, t0)
		e.ladder()
		m, gone := e.enrol(""), e.enrol("")
		e.buy(m, 35000)
		e.buy(gone, 35000)
		e.clock.Set(t0.AddDate(0, 0, 100))
		e.buy(m, 36000)
		kept := t0.AddDate(0, 0, 100).Add(time.Hour)
		review := t0.AddDate(0, 0, 400)
		e.clock.Set(review)
		var sum loyalty.TierReviewSummary
		if err := json.Unmarshal(e.run(t, "tier-review", review).Summary, &sum); err != nil {
			t.Fatal(err)
		}
		if sum.Judged != 1 || sum.Downgraded != 1 {
			t.Errorf("the review judged %d and moved down %d members, want 1 and 1 (the member below the threshold)", sum.Judged, sum.Downgraded)
		}
		if got := e.tierOf(m); got != "vib" {
			t.Fatalf("after the review the member holds %q, want vib", got)
		}
		if got := e.tierOf(gone); got != "insider" {
			t.Fatalf("after the review the member whose spend left holds %q, want insider", got)
		}
		if n := e.count(`SELECT COUNT(*) FROM member_balances WHERE member_id = ? AND as_of <= ?`, m, kept); n != 1 {
			t.Errorf("the review wrote the kept state of a member it had no cause to judge")
		}
		// A year after the second purchase its spend is gone: the next
		// review moves it down.
		later := t0.AddDate(0, 0, 470)
		e.clock.Set(later)
		e.run(t, "tier-review", later)
		if got := e.tierOf(m); got != "insider" {
			t.Errorf("a year after its last purchase the member holds %q, want insider", got)
		}
	})
}

// TestTierReviewAfterPeriodChange: a member's kept qualifying spend was
// measured under the qualifying period in force when it was kept. Once
// the period is shortened, the review measures that member again rather
// than passing it over on its kept spend, and moves it down; a change of
// other settings leaves a fresh kept spend standing.
func TestTierReviewAfterPeriodChange(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		t0 := time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, t0)
		e.ladder() // rolling 365-day window
		m := e.enrol("")
		e.buy(m, 35000)
		e.clock.Set(t0.AddDate(0, 0, 380))
		e.buy(m, 35000)
		// reviewAfter changes the settings by patch, reviews on day and
		// wants the member at tier.
		reviewAfter := func(patch loyalty.ProgramPatch, day int, tier, why string) {
			t.Helper()
			e.program(patch)
			at := t0.AddDate(0, 0, day)
			e.clock.Set(at)
			e.run(t, "tier-review", at)
			if got := e.tierOf(m); got != tier {
				t.Errorf("%s the member holds %q, want %s", why, got, tier)
			}
		}
		e.clock.Set(t0.AddDate(0, 0, 390))
		gift := loyalty.BirthdayGift{Enabled: true, BonusPoints: 50, ClaimDays: 30}
		reviewAfter(loyalty.ProgramPatch{BirthdayGift: &gift}, 400, "vib", "after a change of other settings")
		// 30 days: the purchase of day 380 no longer counts on day 420.
		days := 30
		reviewAfter(loyalty.ProgramPatch{TierWindowDays: &days}, 420, "insider", "under a 30-day period with no purchase in it")
	})
}

// TestTierReviewBroughtForward runs the tier review every night for two
// months on a 30-day window (with a week without runs), each run after
// the first looking only at the members whose tier could have become
// movable since the last one. Three members can each be found by one
// source alone: a purchase leaving the window (a), the end of the
// protection of a tier the review itself set (b), a return (c); a weekly
// shopper (d) stays VIB. Every night a whole review then runs as of the
// same instant and must move no one: the run brought forward missed no
// member. A change of the settings makes the next run a whole one.
func TestTierReviewBroughtForward(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		day := func(n, hour int) time.Time { return t0.AddDate(0, 0, n).Add(time.Duration(hour) * time.Hour) }
		e := newEnv(t, dialect, day(0, 12))
		window := 30
		e.program(loyalty.ProgramPatch{TierWindowDays: &window})
		e.ladder()
		a, b, c, d := e.enrol(""), e.enrol(""), e.enrol(""), e.enrol("")
		names := map[string]string{a: "a (a purchase leaves)", b: "b (protection ends)", c: "c (a return)", d: "d (weekly)"}
		buys := map[int][]struct {
			member string
			total  int64
		}{
			// a: VIB on day 0; its day-15 purchase keeps it there past the
			// protection (night 31) until it leaves the window (night 46).
			0: {{a, 35000}, {b, 100000}, {c, 35000}},
			// b: Rouge on day 0, moved to VIB by the review of night 31 on
			// its day-5 purchase, which leaves while the new tier is
			// protected (night 36); the protection ends on night 61.
			5:  {{b, 35000}},
			15: {{a, 35000}},
			// c: its day-20 purchase keeps it VIB until a return on day 40
			// takes it under the threshold.
			20: {{c, 35000}},
		}
		want := map[int]map[string]string{
			30: {a: "vib", b: "rouge", c: "vib"},
			31: {a: "vib", b: "vib", c: "vib"},
			40: {c: "vib"},
			41: {c: "insider"},
			45: {a: "vib"},
			46: {a: "insider"},
			60: {b: "vib"},
			61: {b: "insider", d: "vib"},
		}
		var cPurchase string
		for n := 0; n <= 64; n++ {
			if n >= 1 && (n < 50 || n > 57) {
				night := day(n, 0)
				e.clock.Set(night)
				var sum struct {
					Downgraded     int64 `json:"downgraded"`
					BroughtForward bool  `json:"brought_forward"`
				}
				if err := json.Unmarshal(e.run(t, "tier-review", night).Summary, &sum); err != nil {
					t.Fatal(err)
				}
				if wantForward := n > 1 && n != 34; sum.BroughtForward != wantForward {
					t.Errorf("night %d: brought_forward %v, want %v", n, sum.BroughtForward, wantForward)
				}
				for m, tier := range want[n] {
					if got := e.tierOf(m); got != tier {
						t.Errorf("night %d: member %s holds %q, want %q", n, names[m], got, tier)
					}
				}
				// The whole review as of the same night finds no one left.
				if err := e.store.DB().Exec(`DELETE FROM tier_review_runs`).Error; err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(e.run(t, "tier-review", night).Summary, &sum); err != nil {
					t.Fatal(err)
				}
				if sum.BroughtForward || sum.Downgraded != 0 {
					t.Errorf("night %d: the whole review moved %d more members (brought_forward %v)", n, sum.Downgraded, sum.BroughtForward)
				}
			}
			e.clock.Set(day(n, 12))
			for _, p := range buys[n] {
				r := e.buy(p.member, p.total)
				if p.member == c && n == 20 {
					cPurchase = r.ID
				}
			}
			if n%7 == 0 {
				e.buy(d, 10000)
			}
			switch n {
			case 33:
				// Any change of the settings: the next run is a whole one.
				name := "Beauty Insider"
				e.program(loyalty.ProgramPatch{Name: &name})
			case 40:
				amount := int64(5000)
				if _, _, err := e.svc.PostReturn(e.ctx, till, cPurchase, loyalty.ReturnInput{ExternalID: "RET-1", Amount: &amount},
					loyalty.IdempotencyKey{}); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
