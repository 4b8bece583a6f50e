package loyalty_test

import (
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/tiers"
)

// Rules that run both in Go (one account under its lock, or a read) and in
// SQL (the set-based jobs), checked against each other on random data.

// ledger lists a member's whole ledger as Service.Ledger shows it now.
func (e *oracleEnv) ledger(member string) []loyalty.Entry {
	e.t.Helper()
	var out []loyalty.Entry
	page := loyalty.Page{Limit: 50}
	for {
		l, err := e.svc.Ledger(e.ctx, e.admin, member, page)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, l.Items...)
		if l.NextCursor == nil {
			return out
		}
		page.Cursor = *l.NextCursor
	}
}

// TestLapseSQLMatchesGo: before the expire-points job runs, the ledger
// listing shows the expire entries due by the Go rule (account.lapse); the
// job then stores them by the SQL rule (lapseSQL). On random histories,
// under both policies, the listing must be the same before and after every
// run: same ids, instants, points and descriptions.
func TestLapseSQLMatchesGo(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		for _, policy := range []string{loyalty.ExpiryLot, loyalty.ExpiryInactivity} {
			t.Run(policy, func(t *testing.T) {
				pending, days := 2, 30
				e := newOracleEnv(t, dialect, loyalty.ProgramPatch{PendingDays: &pending, ExpiryPolicy: &policy, ExpiryDays: &days})
				rng := rand.New(rand.NewSource(13))
				members := []string{e.enrol(), e.enrol(), e.enrol(), e.enrol()}
				for step := 0; step < 12; step++ {
					for _, m := range members {
						switch rng.Intn(4) {
						case 0, 1:
							e.buy(m, int64(100+rng.Intn(5000)), time.Duration(rng.Intn(45*24))*time.Hour+time.Duration(rng.Intn(1e6))*time.Microsecond)
						case 2:
							if err := e.adjust(m, int64(1+rng.Intn(30))); err != nil {
								t.Fatal(err)
							}
						case 3:
							var le *loyalty.Error
							if err := e.adjust(m, -int64(1+rng.Intn(30))); err != nil && !(errors.As(err, &le) && le.Code == loyalty.Conflict) {
								t.Fatal(err)
							}
						}
					}
					e.clock.Advance(time.Duration(rng.Intn(12*24)) * time.Hour)
					before := map[string][]loyalty.Entry{}
					for _, m := range members {
						before[m] = e.ledger(m)
					}
					if _, err := e.svc.ExpirePoints(e.ctx, e.clock.Now()); err != nil {
						t.Fatal(err)
					}
					for _, m := range members {
						if after := e.ledger(m); !reflect.DeepEqual(after, before[m]) {
							t.Fatalf("step %d, member %s: the listing before the expiry run (Go rule)\n%+v\nand after it (SQL rule)\n%+v",
								step, m, before[m], after)
						}
					}
				}
			})
		}
	})
}

// TestTierReviewSQLMatchesGo runs the tier review (SQL: the qualifying
// spend summed per member, the cutoff, the tier the spend justifies) on
// random histories and checks every member against tiers.Ladder.Review fed
// with the qualifying spend the kept balance computes in Go.
func TestTierReviewSQLMatchesGo(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		window := 30
		e := newOracleEnv(t, dialect, loyalty.ProgramPatch{TierWindowDays: &window})
		one := decimal.NewFromInt(1)
		var ts []tiers.Tier
		for _, tr := range []struct {
			code  string
			rank  int
			spend int64
		}{{"base", 0, 0}, {"silver", 1, 20000}, {"gold", 2, 50000}} {
			name, rank, spend := tr.code, tr.rank, tr.spend
			if _, _, err := e.svc.PutTier(e.ctx, tr.code, loyalty.TierInput{Name: &name, Rank: &rank, EarnMultiplier: &one, QualifyingSpend: &spend}); err != nil {
				t.Fatal(err)
			}
			ts = append(ts, tiers.Tier{Code: tr.code, Rank: tr.rank, QualifyingSpend: tr.spend})
		}
		ladder := tiers.NewLadder(ts)
		period := tiers.Period{Kind: tiers.Rolling, WindowDays: window}
		rng := rand.New(rand.NewSource(13))
		var members []string
		for i := 0; i < 8; i++ {
			members = append(members, e.enrol())
		}
		checked := 0
		for step := 0; step < 10; step++ {
			for _, m := range members {
				if rng.Intn(3) == 0 {
					continue
				}
				total := int64(1000 + rng.Intn(30000))
				p := e.buy(m, total, time.Duration(rng.Intn(20*24))*time.Hour)
				if rng.Intn(3) == 0 {
					e.n++
					amount := 1 + rng.Int63n(total)
					if _, _, err := e.svc.PostReturn(e.ctx, e.admin, p, loyalty.ReturnInput{ExternalID: fmt.Sprintf("RT-%d", e.n), Amount: &amount},
						loyalty.IdempotencyKey{}); err != nil {
						t.Fatal(err)
					}
				}
			}
			e.clock.Advance(time.Duration(rng.Intn(20*24)) * time.Hour)
			now := e.clock.Now()
			want := map[string]string{}
			for _, m := range members {
				mem, err := e.svc.Member(e.ctx, e.admin, m)
				if err != nil {
					t.Fatal(err)
				}
				b, err := loyalty.BalanceAt(e.store.DB(), m, now)
				if err != nil {
					t.Fatal(err)
				}
				held, _ := ladder.Find(*mem.Tier)
				got, moved := ladder.Review(period, held, *mem.TierSince, now, b.QualifyingSpend)
				want[m] = got.Code
				if moved {
					checked++
				}
			}
			if _, err := e.svc.ReviewTiers(e.ctx, now); err != nil {
				t.Fatal(err)
			}
			for _, m := range members {
				mem, err := e.svc.Member(e.ctx, e.admin, m)
				if err != nil {
					t.Fatal(err)
				}
				if *mem.Tier != want[m] {
					t.Fatalf("step %d, member %s: the review (SQL) left tier %s, tiers.Ladder.Review (Go) says %s", step, m, *mem.Tier, want[m])
				}
			}
		}
		if checked == 0 {
			t.Fatal("no member was moved down: the data does not exercise the review")
		}
	})
}

// TestDrawOrderSQLMatchesGo checks that the books read a member's lots, in
// batches, in the order lotBefore (available) and pendingBefore (pending)
// define, on random lots with ties in expiry and availability and
// never-expiring ones, more than one batch of each.
func TestDrawOrderSQLMatchesGo(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newOracleEnv(t, dialect, loyalty.ProgramPatch{})
		m := e.enrol()
		now := e.clock.Now()
		rng := rand.New(rand.NewSource(13))
		perm := rng.Perm(400)
		for i := 0; i < 400; i++ {
			avail := now.Add(time.Duration(rng.Intn(41)-30) * 12 * time.Hour)
			var exp *time.Time
			if rng.Intn(3) > 0 {
				x := now.Add(time.Duration(rng.Intn(25)-4) * 24 * time.Hour)
				exp = &x
			}
			remaining := int64(rng.Intn(10))
			if err := loyalty.InsertLot(e.store.DB(), m, fmt.Sprintf("L%04d", perm[i]), remaining, avail, exp); err != nil {
				t.Fatal(err)
			}
		}
		for _, pending := range []bool{false, true} {
			bySQL, byGo, err := loyalty.DrawOrders(e.store.DB(), m, now, pending)
			if err != nil {
				t.Fatal(err)
			}
			if len(byGo) < 60 && !pending {
				t.Fatalf("only %d available lots: not more than one batch", len(byGo))
			}
			if !reflect.DeepEqual(bySQL, byGo) {
				t.Fatalf("pending %v: SQL reads\n%v\nGo sorts\n%v", pending, bySQL, byGo)
			}
		}
	})
}
