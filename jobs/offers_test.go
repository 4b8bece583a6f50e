package jobs_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestPersonalOffersForAPastDay gives the offers of a run for a past day
// with their offer.assigned events, and a second run gives neither again;
// members who already hold a live offer, or bought too little, get none.
func TestPersonalOffersForAPastDay(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, now)
		two := 2
		if _, _, err := e.svc.CreateOfferTemplate(e.ctx, loyalty.OfferTemplateInput{Code: strp("fav"), Name: strp("x2 favourite"),
			Kind: strp("multiplier"), Multiplier: decimalp("2"), MinPurchases: &two}, loyalty.IdempotencyKey{}); err != nil {
			t.Fatal(err)
		}
		var buyers []string
		for i := range 4 {
			m := e.enrol("")
			for range 2 + i%2 {
				e.buyAt(m, 2000, now.AddDate(0, 0, -20), "books", "music")
			}
			buyers = append(buyers, m)
		}
		once := e.enrol("")
		e.buyAt(once, 2000, now.AddDate(0, 0, -20), "books")
		past := now.AddDate(0, 0, -3)
		e.run(t, "personal-offers", past)
		offers := e.count(`SELECT COUNT(*) FROM offers WHERE owner_member_id IS NOT NULL`)
		events := e.count(`SELECT COUNT(*) FROM events WHERE type = 'offer.assigned'`)
		if offers != int64(len(buyers)) || events != offers {
			t.Errorf("a run for %s gave %d offers and %d offer.assigned events, want %d of each", past, offers, events, len(buyers))
		}
		e.clock.Advance(time.Hour)
		e.run(t, "personal-offers", past.Add(time.Hour))
		if n := e.count(`SELECT COUNT(*) FROM offers WHERE owner_member_id IS NOT NULL`); n != offers {
			t.Errorf("a second run: %d offers, was %d", n, offers)
		}
		if n := e.count(`SELECT COUNT(*) FROM events WHERE type = 'offer.assigned'`); n != events {
			t.Errorf("a second run: %d offer.assigned events, was %d", n, events)
		}
	})
}

// TestPersonalOffersOfTwoTemplates: one run gives the offers of every
// active template, each judged on its own threshold, and a second run the
// same day gives none again.
func TestPersonalOffersOfTwoTemplates(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, now)
		for _, tpl := range []struct {
			code string
			min  int
		}{{"fav", 2}, {"loyal", 3}} {
			if _, _, err := e.svc.CreateOfferTemplate(e.ctx, loyalty.OfferTemplateInput{Code: strp(tpl.code), Name: strp(tpl.code),
				Kind: strp("multiplier"), Multiplier: decimalp("2"), MinPurchases: &tpl.min}, loyalty.IdempotencyKey{}); err != nil {
				t.Fatal(err)
			}
		}
		twice, thrice := e.enrol(""), e.enrol("")
		for range 2 {
			e.buyAt(twice, 2000, now.AddDate(0, 0, -20), "books")
		}
		for range 3 {
			e.buyAt(thrice, 2000, now.AddDate(0, 0, -20), "music")
		}
		given := func() map[string]int64 {
			got := map[string]int64{}
			for _, m := range []string{twice, thrice} {
				got[m] = e.count(`SELECT COUNT(*) FROM offers WHERE owner_member_id = ?`, m)
			}
			return got
		}
		e.run(t, "personal-offers", now)
		if got := given(); got[twice] != 1 || got[thrice] != 2 {
			t.Errorf("offers after a run: %d for the member with 2 purchases (want 1), %d for the one with 3 (want 2)", got[twice], got[thrice])
		}
		e.clock.Advance(time.Hour)
		e.run(t, "personal-offers", now.Add(time.Hour))
		if got := given(); got[twice] != 1 || got[thrice] != 2 {
			t.Errorf("offers after a second run: %v", got)
		}
	})
}

// TestPersonalOffersFollowTheDays runs the personal offers night after
// night while members buy (some receipts dated days back), offers end and
// a marketer pauses one: every run after the first judges only the members
// whose answer can have changed, and after each one no member is left who
// qualifies (enough purchases with a category in the lookback, active) and
// holds no live offer of the template, as a run over every member would
// leave it. A paused offer's member, in the way of the same day's offer at
// a later run that day, gets its offer the next night without buying.
func TestPersonalOffersFollowTheDays(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		start := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, start.AddDate(0, 0, -12))
		two, lookback, duration := 2, 10, 3
		if _, _, err := e.svc.CreateOfferTemplate(e.ctx, loyalty.OfferTemplateInput{Code: strp("fav"), Name: strp("x2 favourite"),
			Kind: strp("multiplier"), Multiplier: decimalp("2"), MinPurchases: &two, LookbackDays: &lookback,
			DurationDays: &duration}, loyalty.IdempotencyKey{}); err != nil {
			t.Fatal(err)
		}
		members := make([]string, 30)
		for i := range members {
			members[i] = e.enrol("")
		}
		rng := rand.New(rand.NewPCG(7, 18))
		cats := []string{"books", "music", "games"}
		buy := func(m string, at time.Time) { e.buyAt(m, 1000+rng.Int64N(5000), at, cats[rng.IntN(len(cats))]) }
		e.clock.Set(start.Add(-time.Minute))
		for _, m := range members {
			for range rng.IntN(3) {
				buy(m, start.Add(-time.Duration(1+rng.IntN(200))*time.Hour))
			}
		}
		// left is how many members a run over every member would still give
		// an offer as of asOf.
		left := func(asOf time.Time) int64 {
			from := asOf.AddDate(0, 0, -lookback)
			return e.count(`SELECT COUNT(*) FROM members m WHERE m.status = 'active'
				AND (SELECT COUNT(*) FROM purchases p WHERE p.member_id = m.id AND p.occurred_at >= ? AND p.occurred_at <= ?) >= ?
				AND EXISTS (SELECT 1 FROM purchases p JOIN purchase_items i ON i.purchase_id = p.id
					WHERE p.member_id = m.id AND p.occurred_at >= ? AND p.occurred_at <= ? AND i.category <> '')
				AND NOT EXISTS (SELECT 1 FROM offers o WHERE o.owner_member_id = m.id AND o.template_id IS NOT NULL
					AND o.status = 'active' AND o.ends_at > ? AND o.starts_at < ?)`,
				from, asOf, two, from, asOf, asOf, asOf.AddDate(0, 0, duration))
		}
		night := func(asOf time.Time, forward int) loyalty.PersonalOffersSummary {
			t.Helper()
			e.clock.Set(asOf)
			var sum loyalty.PersonalOffersSummary
			if err := json.Unmarshal(e.run(t, "personal-offers", asOf).Summary, &sum); err != nil {
				t.Fatal(err)
			}
			if sum.BroughtForward != forward {
				t.Errorf("as of %s: %d templates brought forward, want %d", asOf, sum.BroughtForward, forward)
			}
			return sum
		}
		var paused string
		var given int64
		for d := range 14 {
			asOf := start.AddDate(0, 0, d)
			if d > 0 {
				e.clock.Set(asOf.Add(-time.Minute))
				for _, m := range members {
					switch r := rng.IntN(20); {
					case m == paused:
					case r < 5: // today's receipt
						buy(m, asOf.Add(-time.Duration(1+rng.IntN(20))*time.Hour))
					case r == 5: // a receipt of four days ago, sent today
						buy(m, asOf.AddDate(0, 0, -4))
					}
				}
			}
			forward := 1
			if d == 0 {
				forward = 0
			}
			sum := night(asOf, forward)
			if d > 0 {
				given += sum.Offers
			}
			if n := left(asOf); n != 0 {
				t.Errorf("night %d: %d members qualify without a live offer", d, n)
			}
			if d == 5 && paused == "" {
				// A marketer pauses one of tonight's offers in the day, of a
				// member who still qualifies tomorrow; a run late that day
				// cannot give it the day's offer again (its id is taken).
				var o struct{ ID, OwnerMemberID string }
				if err := e.store.DB().Raw(`SELECT o.id, o.owner_member_id FROM offers o WHERE o.template_id IS NOT NULL AND o.starts_at = ?
					AND (SELECT COUNT(*) FROM purchases p WHERE p.member_id = o.owner_member_id AND p.occurred_at >= ?) >= ?
					ORDER BY o.id LIMIT 1`, asOf, asOf.AddDate(0, 0, 1-lookback), two).Scan(&o).Error; err != nil || o.ID == "" {
					t.Fatalf("no offer given on night %d to pause (%v)", d, err)
				}
				paused = o.OwnerMemberID
				e.clock.Set(asOf.Add(8 * time.Hour))
				status := loyalty.OfferPaused
				if _, err := e.svc.UpdateOffer(e.ctx, o.ID, loyalty.OfferInput{Status: &status}); err != nil {
					t.Fatal(err)
				}
				late := asOf.Add(20 * time.Hour)
				night(late, 1)
				if n := left(late); n != 1 {
					t.Errorf("late on night %d: %d members qualify without a live offer, want 1 (the paused one)", d, n)
				}
			}
		}
		if given == 0 {
			t.Error("no night after the first gave an offer")
		}
		if n := e.count(`SELECT COUNT(*) FROM offers WHERE owner_member_id = ? AND status = 'active' AND starts_at > ?`,
			paused, start.AddDate(0, 0, 5)); n == 0 {
			t.Error("the member whose offer was paused got no offer on a later night")
		}
	})
}
