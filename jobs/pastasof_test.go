package jobs_test

import (
	"encoding/json"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestExpirePointsPastAsOf: a run as of a past instant expires only the
// lots that had expired by then, dated when each expired; a later run
// expires the rest, and no run expires a lot twice.
func TestExpirePointsPastAsOf(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, at(t, "2026-01-01T10:00:00Z"))
		days := 30
		e.program(loyalty.ProgramPatch{ExpiryDays: &days})
		m := e.enrol("")
		if err := e.adjust(m, 100); err != nil { // expires 31 January
			t.Fatal(err)
		}
		e.clock.Set(at(t, "2026-01-20T10:00:00Z"))
		if err := e.adjust(m, 200); err != nil { // expires 19 February
			t.Fatal(err)
		}
		e.clock.Set(at(t, "2026-03-01T12:00:00Z"))
		expired := func() (n, points int64) {
			t.Helper()
			return e.count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'expire'"),
				e.count("SELECT COALESCE(SUM(points), 0) FROM ledger_entries WHERE kind = 'expire'")
		}
		e.run(t, "expire-points", at(t, "2026-02-05T00:00:00Z"))
		if n, p := expired(); n != 1 || p != -100 {
			t.Errorf("as of 5 Feb: %d expire entries of %d points, want 1 of -100", n, p)
		}
		if n := e.count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'expire' AND occurred_at = ?", at(t, "2026-01-31T10:00:00Z")); n != 1 {
			t.Errorf("the expire entry is not dated when its lot expired")
		}
		for _, asOf := range []string{"2026-03-01T12:00:00Z", "2026-02-05T00:00:00Z", "2026-03-01T12:00:00Z", "2026-01-01T00:00:00Z"} {
			e.run(t, "expire-points", at(t, asOf))
		}
		if n, p := expired(); n != 2 || p != -300 {
			t.Errorf("after later and earlier runs: %d expire entries of %d points, want 2 of -300", n, p)
		}
		if b := e.count("SELECT points FROM member_balances WHERE member_id = ?", m); b != 0 {
			t.Errorf("cached balance %d, want 0", b)
		}
	})
}

// TestRedemptionRatePastAsOf: a run as of a past instant never replaces a
// month's snapshot with one counted over less of that month; a month that
// ended before both runs is recounted in full.
func TestRedemptionRatePastAsOf(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, at(t, "2026-02-10T10:00:00Z"))
		m := e.enrol("")
		if err := e.adjust(m, 700); err != nil {
			t.Fatal(err)
		}
		e.clock.Set(at(t, "2026-03-05T10:00:00Z"))
		if err := e.adjust(m, 1000); err != nil {
			t.Fatal(err)
		}
		e.clock.Set(at(t, "2026-03-20T12:00:00Z"))
		snaps := func() map[string]int64 {
			t.Helper()
			var rows []struct {
				Month        string
				PointsIssued string
			}
			if err := e.store.DB().Raw("SELECT month, CAST(points_issued AS TEXT) AS points_issued FROM redemption_rate_snapshots").
				Scan(&rows).Error; err != nil {
				t.Fatal(err)
			}
			out := map[string]int64{}
			for _, r := range rows {
				v, err := json.Number(r.PointsIssued).Int64()
				if err != nil {
					t.Fatalf("points_issued %q", r.PointsIssued)
				}
				out[r.Month] = v
			}
			return out
		}
		e.run(t, "redemption-rate", e.clock.Now())
		if s := snaps(); len(s) != 2 || s["2026-02"] != 700 || s["2026-03"] != 1000 {
			t.Fatalf("snapshots %v", s)
		}
		// As of 2 March: March would count only two days, without the 1,000.
		rec := e.run(t, "redemption-rate", at(t, "2026-03-02T00:00:00Z"))
		if s := snaps(); len(s) != 2 || s["2026-02"] != 700 || s["2026-03"] != 1000 {
			t.Errorf("after a run as of 2 March: snapshots %v, want February 700 and March still 1000 (%s)", s, rec.Summary)
		}
		// A purchase backdated into February is counted by the next run,
		// whatever its as_of, since February had ended for both runs.
		total := int64(100) // 1 point
		if _, _, err := e.svc.PostPurchase(e.ctx, till, loyalty.PurchaseInput{MemberID: m, StoreID: "store-1", ExternalID: "R-late",
			OccurredAt: "2026-02-20T00:00:00Z", Total: &total}, loyalty.IdempotencyKey{}); err != nil {
			t.Fatal(err)
		}
		e.run(t, "redemption-rate", at(t, "2026-03-02T00:00:00Z"))
		if s := snaps(); s["2026-02"] != 701 || s["2026-03"] != 1000 {
			t.Errorf("after a backdated entry: snapshots %v, want February 701 and March 1000", s)
		}
	})
}

// TestPersonalOffersPastAsOf: a run as of a past instant gives an offer
// only when it is still live now, and never one that overlaps an offer of
// the same template the member holds.
func TestPersonalOffersPastAsOf(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, at(t, "2026-01-15T10:00:00Z"))
		code, name, kind := "fav", "Favourite bonus", "bonus"
		bonus, duration, lookback, minP := int64(10), 7, 60, 1
		if _, _, err := e.svc.CreateOfferTemplate(e.ctx, loyalty.OfferTemplateInput{Code: &code, Name: &name, Kind: &kind,
			BonusPoints: &bonus, DurationDays: &duration, LookbackDays: &lookback, MinPurchases: &minP}, loyalty.IdempotencyKey{}); err != nil {
			t.Fatal(err)
		}
		m := e.enrol("")
		total := int64(5000)
		buy := func() {
			t.Helper()
			if _, _, err := e.svc.PostPurchase(e.ctx, till, loyalty.PurchaseInput{MemberID: m, StoreID: "store-1",
				ExternalID: "R-" + e.clock.Now().Format("20060102"), Total: &total,
				Items: []loyalty.PurchaseItem{{SKU: "S1", Category: "skincare", Amount: &total}}}, loyalty.IdempotencyKey{}); err != nil {
				t.Fatal(err)
			}
		}
		buy()
		e.clock.Set(at(t, "2026-02-25T10:00:00Z"))
		buy()
		e.clock.Set(at(t, "2026-03-01T12:00:00Z"))
		offers := func() int64 {
			t.Helper()
			return e.count("SELECT COUNT(*) FROM offers WHERE owner_member_id = ?", m)
		}
		e.run(t, "personal-offers", e.clock.Now()) // live 1 to 8 March
		if n := offers(); n != 1 {
			t.Fatalf("%d offers, want 1", n)
		}
		// As of 26 February the offer would run to 5 March, overlapping.
		e.run(t, "personal-offers", at(t, "2026-02-26T00:00:00Z"))
		if n := offers(); n != 1 {
			t.Errorf("%d offers after a past run overlapping the live one, want 1", n)
		}
		// As of 1 February it would have ended on 8 February: born expired.
		e.run(t, "personal-offers", at(t, "2026-02-01T00:00:00Z"))
		if n := offers(); n != 1 {
			t.Errorf("%d offers after a past run whose offer would have ended already, want 1", n)
		}
	})
}
