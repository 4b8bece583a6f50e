package loyalty_test

import (
	"slices"
	"sync/atomic"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestRoundTripsPerPurchaseAndRead counts the round trips to PostgreSQL at
// the pgx level, both pools: a purchase takes at most 3 (a new member and
// one with history, with offers live), a balance read 1, and a replay of a
// purchase no more than the purchase.
func TestRoundTripsPerPurchaseAndRead(t *testing.T) {
	if !slices.Contains(loyaltytest.Dialects(t), loyalty.Postgres) {
		t.Skip("PostgreSQL only: SQLite has no round trips")
	}
	e := newOracleEnv(t, loyalty.Postgres, loyalty.ProgramPatch{})
	code, name, kind, bonus := "bonus", "Bonus", "bonus", int64(5)
	mult := decimal.NewFromInt(1)
	if _, _, err := e.svc.CreateOffer(e.ctx, loyalty.OfferInput{Code: &code, Name: &name, Kind: &kind, Multiplier: &mult,
		BonusPoints: &bonus, Target: &loyalty.OfferTarget{All: true}}, loyalty.IdempotencyKey{}); err != nil {
		t.Fatal(err)
	}
	var trips atomic.Int64
	e.store.TraceRoundTrips(func() { trips.Add(1) })
	count := func(fn func()) int64 {
		trips.Store(0)
		fn()
		return trips.Load()
	}
	young, old := e.enrol(), e.enrol()
	for i := 0; i < 50; i++ {
		e.buy(old, 1000, 0)
	}
	e.buy(young, 1000, 0) // every connection of the pool has opened
	for name, m := range map[string]string{"new": young, "with history": old} {
		if n := count(func() { e.buy(m, 1000, 0) }); n > 3 {
			t.Errorf("a purchase of a member %s took %d round trips, want at most 3", name, n)
		} else {
			t.Logf("a purchase of a member %s: %d round trips", name, n)
		}
		if n := count(func() {
			if _, err := e.svc.Balance(e.ctx, e.admin, m); err != nil {
				t.Fatal(err)
			}
		}); n != 1 {
			t.Errorf("a balance read of a member %s took %d round trips, want 1", name, n)
		} else {
			t.Logf("a balance read of a member %s: %d round trip", name, n)
		}
	}
	total := int64(700)
	in := loyalty.PurchaseInput{MemberID: old, ExternalID: "R-replay", StoreID: "s1", Total: &total}
	key := loyalty.IdempotencyKey{Key: "k-replay", Subject: "op", RequestHash: "h"}
	first, _, err := e.svc.PostPurchase(e.ctx, e.admin, in, key)
	if err != nil {
		t.Fatal(err)
	}
	var rep *loyalty.Replay
	n := count(func() {
		if _, rep, err = e.svc.PostPurchase(e.ctx, e.admin, in, key); err != nil {
			t.Fatal(err)
		}
	})
	if rep == nil {
		t.Fatalf("the repeat of purchase %s was not replayed", first.ID)
	}
	if n > 3 {
		t.Errorf("a replayed purchase took %d round trips, want at most 3", n)
	}
	t.Logf("a replayed purchase: %d round trips", n)
}
