package loyalty_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestSettingsSeenAcrossEngines runs two engines on one database. Each
// keeps the program settings and tiers in memory; a change made through
// one must be what the other's very next quote, purchase and balance use.
func TestSettingsSeenAcrossEngines(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		storeA := loyaltytest.MustOpen(t, dialect)
		storeB := loyaltytest.MustOpenAgain(t, storeA)
		clock := loyaltytest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		a := loyalty.NewService(storeA, loyalty.WithClock(clock.Now))
		b := loyalty.NewService(storeB, loyalty.WithClock(clock.Now))
		admin := loyalty.Principal{Subject: "op", Role: loyalty.RoleAdmin}
		ctx := loyalty.WithPrincipal(context.Background(), admin)

		putTier := func(svc *loyalty.Service, code string, rank int, mult string, spend int64) {
			t.Helper()
			name, m := code, decimal.RequireFromString(mult)
			if _, _, err := svc.PutTier(ctx, code, loyalty.TierInput{Name: &name, Rank: &rank, EarnMultiplier: &m, QualifyingSpend: &spend}); err != nil {
				t.Fatal(err)
			}
		}
		putTier(a, "base", 0, "1", 0)
		ext := "M-1"
		m, _, err := a.EnrolMember(ctx, loyalty.MemberInput{ExternalID: &ext}, loyalty.IdempotencyKey{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		buy := func(svc *loyalty.Service, total int64) loyalty.PurchaseResult {
			t.Helper()
			n++
			r, _, err := svc.PostPurchase(ctx, admin, loyalty.PurchaseInput{MemberID: m.ID, ExternalID: fmt.Sprintf("R-%d", n),
				StoreID: "s1", Total: &total}, loyalty.IdempotencyKey{})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		quote := func(svc *loyalty.Service, total int64) int64 {
			t.Helper()
			q, err := svc.QuotePurchase(ctx, admin, loyalty.PurchaseInput{MemberID: m.ID, StoreID: "s1", Total: &total})
			if err != nil {
				t.Fatal(err)
			}
			return q.PointsEarned
		}
		// Both engines read (and keep) the settings.
		if got := buy(a, 1000).PointsEarned; got != 10 {
			t.Fatalf("engine A earned %d on $10.00 at 1×, want 10", got)
		}
		if got := quote(b, 1000); got != 10 {
			t.Fatalf("engine B quotes %d on $10.00 at 1×, want 10", got)
		}

		// A tier change through A is what B uses next.
		putTier(a, "base", 0, "2", 0)
		if got := quote(b, 1000); got != 20 {
			t.Fatalf("after the multiplier went to 2 through engine A, engine B quotes %d, want 20", got)
		}
		if got := buy(b, 1000).PointsEarned; got != 20 {
			t.Fatalf("after the multiplier went to 2 through engine A, engine B earned %d, want 20", got)
		}

		// A program change through B is what A uses next.
		ppu := decimal.RequireFromString("3")
		if _, err := b.UpdateProgram(ctx, loyalty.ProgramPatch{PointsPerUnit: &ppu}); err != nil {
			t.Fatal(err)
		}
		if got := buy(a, 1000).PointsEarned; got != 60 {
			t.Fatalf("after points_per_unit went to 3 through engine B, engine A earned %d, want 60", got)
		}

		// A new tier through B shows in A's balance as the next tier.
		putTier(b, "gold", 1, "3", 100000)
		bal, err := a.Balance(ctx, admin, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if bal.NextTier == nil || bal.NextTier.Code != "gold" || bal.NextTier.SpendNeeded != 100000-3000 {
			t.Fatalf("engine A's balance after engine B added a tier: next tier %+v, want gold with 97000 to go", bal.NextTier)
		}
		if bal.Available != 10+20+60 {
			t.Fatalf("available %d, want 90", bal.Available)
		}
	})
}

// TestQuickBalanceMatchesSnapshot compares the one-statement balance read
// with the snapshot computation at instants around pending points becoming
// available and lots entering the expiring-soon window and expiring.
func TestQuickBalanceMatchesSnapshot(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		store := loyaltytest.MustOpen(t, dialect)
		start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		clock := loyaltytest.NewClock(start)
		svc := loyalty.NewService(store, loyalty.WithClock(clock.Now))
		admin := loyalty.Principal{Subject: "op", Role: loyalty.RoleAdmin}
		ctx := loyalty.WithPrincipal(context.Background(), admin)
		pending, days, policy := 3, 40, loyalty.ExpiryLot
		if _, err := svc.UpdateProgram(ctx, loyalty.ProgramPatch{PendingDays: &pending, ExpiryPolicy: &policy, ExpiryDays: &days}); err != nil {
			t.Fatal(err)
		}
		name, rank, m, spend := "Base", 0, decimal.NewFromInt(1), int64(0)
		if _, _, err := svc.PutTier(ctx, "base", loyalty.TierInput{Name: &name, Rank: &rank, EarnMultiplier: &m, QualifyingSpend: &spend}); err != nil {
			t.Fatal(err)
		}
		name2, rank2, spend2 := "Gold", 1, int64(50000)
		if _, _, err := svc.PutTier(ctx, "gold", loyalty.TierInput{Name: &name2, Rank: &rank2, EarnMultiplier: &m, QualifyingSpend: &spend2}); err != nil {
			t.Fatal(err)
		}
		ext := "M-Q"
		mem, _, err := svc.EnrolMember(ctx, loyalty.MemberInput{ExternalID: &ext}, loyalty.IdempotencyKey{})
		if err != nil {
			t.Fatal(err)
		}
		// Each purchase's answer carries the balance after it, worked out
		// from the aggregates before it and what it added: it must equal the
		// balance computed afresh. Some purchases are dated back: before the
		// qualifying period, with their points long expired, expiring within
		// the window, still pending, just released.
		for i, back := range []time.Duration{0, 400 * 24 * time.Hour, 38 * 24 * time.Hour, 2 * 24 * time.Hour, 5 * 24 * time.Hour, 0, 0, 3 * 24 * time.Hour} {
			total := int64(1000 * (i + 1))
			in := loyalty.PurchaseInput{MemberID: mem.ID, ExternalID: fmt.Sprintf("Q-%d", i), StoreID: "s1", Total: &total}
			if back > 0 {
				in.OccurredAt = clock.Now().Add(-back).Format(time.RFC3339)
			}
			res, _, err := svc.PostPurchase(ctx, admin, in, loyalty.IdempotencyKey{})
			if err != nil {
				t.Fatal(err)
			}
			full, err := loyalty.BalanceAt(store.DB(), mem.ID, clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			rb, _ := json.Marshal(res.Balance)
			fb, _ := json.Marshal(full)
			if string(rb) != string(fb) {
				t.Fatalf("purchase %d (dated %s back): its answer's balance\n%s\nthe balance computed afresh\n%s", i, back, rb, fb)
			}
			clock.Advance(36 * time.Hour)
		}
		for _, step := range []time.Duration{0, 2 * 24 * time.Hour, 24 * time.Hour, 5 * 24 * time.Hour, 10 * 24 * time.Hour, 30 * 24 * time.Hour, 400 * 24 * time.Hour} {
			clock.Advance(step)
			quick, err := svc.Balance(ctx, admin, mem.ID)
			if err != nil {
				t.Fatal(err)
			}
			full, err := loyalty.BalanceAt(store.DB(), mem.ID, clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			qb, _ := json.Marshal(quick)
			fb, _ := json.Marshal(full)
			q, f := string(qb), string(fb)
			if q != f {
				t.Fatalf("at %s the balance read gives\n%s\nthe snapshot computation\n%s", clock.Now(), q, f)
			}
		}
	})
}
