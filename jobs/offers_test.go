package jobs_test

import (
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
