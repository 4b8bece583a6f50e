package jobs_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/rewards"
	"github.com/loyalty-engine/loyalty/tiers"
)

// maxPoints is the most one adjustment may credit: 2^53 − 1.
const maxPoints = int64(tiers.MaxPoints)

// TestAggregatesPastInt64 credits 1,100 adjustments of 2^53 − 1 points
// over four members, so that the program-wide sums pass 2^63, and redeems
// three rewards of that cost: the analytics, the redemption-rate snapshot
// and the expiry run all answer with the exact figures.
func TestAggregatesPastInt64(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, at(t, "2026-01-10T10:00:00Z"))
		days := 30
		e.program(loyalty.ProgramPatch{ExpiryDays: &days})
		const perMember, members = 275, 4
		ids := make([]string, members)
		for i := range ids {
			ids[i] = e.enrol("")
			for k := 0; k < perMember; k++ {
				if err := e.adjust(ids[i], maxPoints); err != nil {
					t.Fatalf("adjustment %d: %v", k, err)
				}
			}
		}
		var in rewards.RewardInput
		if err := json.Unmarshal([]byte(`{"code":"big","name":"Big","cost_points":`+fmt.Sprint(maxPoints)+`}`), &in); err != nil {
			t.Fatal(err)
		}
		rw, _, err := e.rw.Create(e.ctx, in, loyalty.IdempotencyKey{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if _, _, err := e.rw.Redeem(e.ctx, admin, ids[i], rewards.RedeemInput{RewardID: rw.ID}, loyalty.IdempotencyKey{}); err != nil {
				t.Fatal(err)
			}
		}
		issued, redeemed := times(members*perMember, maxPoints), times(3, maxPoints)
		left := times(members*perMember-3, maxPoints)
		if issued.IsInt64() {
			t.Fatalf("%s fits in an int64: the test proves nothing", issued)
		}
		e.clock.Set(at(t, "2026-03-01T12:00:00Z"))
		loc := time.UTC
		jan, err := jobs.ParseDayRange("2026-01-01", "2026-01-31", loc)
		if err != nil {
			t.Fatal(err)
		}
		// wantJSON compares v's JSON with want, numbers kept exact.
		wantJSON := func(what string, v any, want string) {
			t.Helper()
			got, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			var a, b any
			da, db := json.NewDecoder(bytes.NewReader(got)), json.NewDecoder(strings.NewReader(want))
			da.UseNumber()
			db.UseNumber()
			if err := da.Decode(&a); err != nil {
				t.Fatalf("%s: %v: %s", what, err, got)
			}
			if err := db.Decode(&b); err != nil {
				t.Fatalf("%s: want: %v", what, err)
			}
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if string(ja) != string(jb) {
				t.Errorf("%s:\n got %s\nwant %s", what, ja, jb)
			}
		}

		t.Run("RedemptionRate", func(t *testing.T) {
			r, err := e.runner.RedemptionRate(e.ctx, jan)
			if err != nil {
				t.Fatal(err)
			}
			wantJSON("rate", r, `{"from":"2026-01-01","to":"2026-01-31","points_issued":`+issued.String()+
				`,"points_redeemed":`+redeemed.String()+`,"rate_percent":0.27}`)
			both, _ := jobs.ParseDayRange("2026-01-01", "2026-02-28", loc)
			l, err := e.runner.RedemptionRateByMonth(e.ctx, both)
			if err != nil {
				t.Fatal(err)
			}
			wantJSON("by month", l, `[{"from":"2026-01-01","to":"2026-01-31","points_issued":`+issued.String()+
				`,"points_redeemed":`+redeemed.String()+`,"rate_percent":0.27},
				{"from":"2026-02-01","to":"2026-02-28","points_issued":0,"points_redeemed":0,"rate_percent":null}]`)
		})

		t.Run("Summary", func(t *testing.T) {
			s, err := e.runner.Summary(e.ctx, jan)
			if err != nil {
				t.Fatal(err)
			}
			wantJSON("points", s.Points, `{"issued":`+issued.String()+`,"redeemed":`+redeemed.String()+
				`,"expired":0,"outstanding":`+left.String()+`}`)
			wantJSON("redemption rate", s.Rates.Redemption, `0.27`)
		})

		t.Run("SnapshotJob", func(t *testing.T) {
			rec := e.run(t, "redemption-rate", at(t, "2026-02-15T00:00:00Z"))
			wantJSON("run summary", json.RawMessage(rec.Summary), `{"months":[{"from":"2026-01-01","to":"2026-01-31","points_issued":`+
				issued.String()+`,"points_redeemed":`+redeemed.String()+`,"rate_percent":0.27},
				{"from":"2026-02-01","to":"2026-02-14","points_issued":0,"points_redeemed":0,"rate_percent":null}]}`)
			var got []string
			if err := e.store.DB().Raw(`SELECT CAST(points_issued AS TEXT) || ' ' || CAST(points_redeemed AS TEXT) || ' ' || COALESCE(rate_percent, 'null')
				FROM redemption_rate_snapshots ORDER BY month`).Scan(&got).Error; err != nil {
				t.Fatal(err)
			}
			if want := []string{issued.String() + " " + redeemed.String() + " 0.27", "0 0 null"}; strings.Join(got, "; ") != strings.Join(want, "; ") {
				t.Errorf("stored snapshots %q, want %q", got, want)
			}
		})

		t.Run("Expiry", func(t *testing.T) {
			rec := e.run(t, "expire-points", e.clock.Now())
			wantJSON("expiry summary", json.RawMessage(rec.Summary), `{"policy":"lot","lots":1097,"members":4,"points":`+left.String()+`}`)
			both, _ := jobs.ParseDayRange("2026-01-01", "2026-02-28", loc)
			s, err := e.runner.Summary(e.ctx, both)
			if err != nil {
				t.Fatal(err)
			}
			wantJSON("points", s.Points, `{"issued":`+issued.String()+`,"redeemed":`+redeemed.String()+
				`,"expired":`+left.String()+`,"outstanding":0}`)
		})
	})
}

// TestAdjustPastMemberMaximum fills one member's balance to the largest
// multiple of 2^53 − 1 an int64 holds: one more credit is a 409, not a
// database error, and neither is a credit that would carry its lifetime
// earned points past int64 after a debit made room in its balance. The
// birthday-gifts run of its birthday still gives every other member's
// gift.
func TestAdjustPastMemberMaximum(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, at(t, "2026-03-01T12:00:00Z"))
		// 5,000 points more would carry its lifetime earned points past int64.
		e.program(loyalty.ProgramPatch{BirthdayGift: &loyalty.BirthdayGift{Enabled: true, BonusPoints: 5000, ClaimDays: 30}})
		m := e.enrol("1990-03-01")
		other := e.enrol("1985-03-01")
		n := int64(math.MaxInt64 / maxPoints)
		for i := int64(0); i < n; i++ {
			if err := e.adjust(m, maxPoints); err != nil {
				t.Fatalf("adjustment %d: %v", i, err)
			}
		}
		conflict := func(what string, err error) {
			t.Helper()
			var le *loyalty.Error
			if !errors.As(err, &le) || le.Code != loyalty.Conflict {
				t.Errorf("%s: %v, want a conflict", what, err)
			}
		}
		conflict("a credit past the largest balance", e.adjust(m, maxPoints))
		if err := e.adjust(m, -maxPoints); err != nil {
			t.Fatal(err)
		}
		conflict("a credit past the largest lifetime earned", e.adjust(m, maxPoints))
		b, err := e.svc.Balance(e.ctx, admin, m)
		if err != nil {
			t.Fatal(err)
		}
		if want := (n - 1) * maxPoints; b.Available != want || b.LifetimeEarned != n*maxPoints {
			t.Errorf("available %d, lifetime earned %d; want %d and %d", b.Available, b.LifetimeEarned, want, n*maxPoints)
		}

		rec := e.run(t, "birthday-gifts", e.clock.Now())
		var sum rewards.GiftSummary
		if err := json.Unmarshal(rec.Summary, &sum); err != nil {
			t.Fatal(err)
		}
		if sum.Given != 1 || !sum.Points.Equal(loyalty.SumOf(5000)) {
			t.Errorf("gifts summary %s, want the other member's gift only", rec.Summary)
		}
		if n := e.count("SELECT COUNT(*) FROM member_gifts WHERE member_id = ?", other); n != 1 {
			t.Errorf("the other member has %d gifts, want 1", n)
		}
	})
}

// TestMemberSpendPastInt64 gives one member 9,300 purchases of the largest
// total (10^15 minor units) in the last year, straight in SQL: its spend
// passes int64. The jobs that sum one member's purchases (segments' RFM
// monetary value, tier-review's qualifying spend, personal-offers'
// favourite category) still run, and judge that spend as the largest.
func TestMemberSpendPastInt64(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, at(t, "2025-01-10T12:00:00Z"))
		e.ladder()
		big, idle := e.enrol(""), e.enrol("")
		e.buy(big, 100000) // Rouge since January 2025
		e.buy(idle, 100000)
		code, name, kind := "fav", "Favourite bonus", "bonus"
		bonus, duration, lookback, minP := int64(10), 7, 60, 1
		if _, _, err := e.svc.CreateOfferTemplate(e.ctx, loyalty.OfferTemplateInput{Code: &code, Name: &name, Kind: &kind,
			BonusPoints: &bonus, DurationDays: &duration, LookbackDays: &lookback, MinPurchases: &minP}, loyalty.IdempotencyKey{}); err != nil {
			t.Fatal(err)
		}
		now := at(t, "2026-03-01T12:00:00Z")
		e.clock.Set(now)
		day := now.AddDate(0, 0, -1)
		db := e.store.DB()
		const n = 9300
		if err := db.Exec(`WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?)
			INSERT INTO purchases (id, member_id, store_id, external_id, channel, occurred_at, local_date, local_day, currency,
				total, returned_amount, points_earned, points_reversed, tier_code, created_at)
			SELECT 'big-' || n, ?, 'store-1', 'BIG-' || n, 'pos', ?, ?, ?, 'USD', ?, 0, 0, 0, 'rouge', ? FROM g`,
			n, big, day, day.Format(time.DateOnly), loyalty.LocalDay(day, time.UTC), loyalty.MaxTotal, day).Error; err != nil {
			t.Fatal(err)
		}
		if err := db.Exec(`INSERT INTO purchase_items (purchase_id, line, sku, category, quantity, unit_price, amount)
			SELECT id, 1, 'SKU-1', 'skincare', 1, total, total FROM purchases WHERE id LIKE 'big-%'`).Error; err != nil {
			t.Fatal(err)
		}

		// The member's own figures hold at the largest int64: its balance
		// reads, and it still buys, at the tier its spend justifies.
		b, err := e.svc.Balance(e.ctx, admin, big)
		if err != nil {
			t.Fatalf("balance of the big spender: %v", err)
		}
		if b.QualifyingSpend != math.MaxInt64 || b.NextTier != nil {
			t.Errorf("big spender's qualifying spend %d, next tier %+v; want %d and none", b.QualifyingSpend, b.NextTier, int64(math.MaxInt64))
		}
		if r := e.buy(big, 10000); r.PointsEarned != 150 || r.TierAfter == nil || *r.TierAfter != "rouge" {
			t.Errorf("the big spender's purchase earned %d at %v, want 150 at rouge", r.PointsEarned, r.TierAfter)
		}

		e.run(t, "segments", now)
		if n := e.count("SELECT COUNT(*) FROM member_segments WHERE member_id = ? AND segment_code LIKE 'rfm%'", big); n != 1 {
			t.Errorf("the big spender is in %d RFM segments, want 1", n)
		}
		rec := e.run(t, "tier-review", now)
		if got := e.tierOf(big); got != "rouge" {
			t.Errorf("the big spender was moved to %q (%s)", got, rec.Summary)
		}
		if got := e.tierOf(idle); got != "insider" {
			t.Errorf("the idle member holds %q, want insider", got)
		}
		e.run(t, "personal-offers", now)
		if n := e.count("SELECT COUNT(*) FROM offers WHERE owner_member_id = ? AND personal_category = 'skincare'", big); n != 1 {
			t.Errorf("%d personal offers on skincare for the big spender, want 1", n)
		}
	})
}
