package rewards_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/rewards"
)

// TestStockHoldsAgainstConcurrentEdits redeems a reward of limited stock by
// many members at once while marketers edit it and tills cancel some of
// the coupons: every coupon taken is one unit of stock gone, every cancel
// one unit back, and redeeming until out_of_stock never issues more than
// the stock the reward started with. An edit that wrote back a stock read
// before a concurrent redemption or cancel would undo it.
func TestStockHoldsAgainstConcurrentEdits(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		const (
			stock    = 300
			members  = 24
			redeemer = 32
			edits    = 100
			editors  = 4
		)
		e := newEnv(t, dialect)
		rw := e.addReward(fmt.Sprintf(`{"code":"race","name":"race","cost_points":1,"stock":%d}`, stock))
		ms := make([]string, members)
		for i := range ms {
			ms[i] = e.member(1000)
		}

		var next, issued, cancelled atomic.Int64
		var mu sync.Mutex
		var failures []string
		fail := func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			failures = append(failures, fmt.Sprintf(format, args...))
		}
		toCancel := make(chan string, stock)
		var redeemers sync.WaitGroup
		var calls []func()
		for w := 0; w < redeemer; w++ {
			redeemers.Add(1)
			calls = append(calls, func() {
				defer redeemers.Done()
				for i := next.Add(1) - 1; i < stock; i = next.Add(1) - 1 {
					red, err := e.redeem(ms[i%members], rw.ID)
					if err != nil {
						// Every attempt fits in the stock: cancels only give back.
						fail("redemption %d: %s", i, reason(err))
						continue
					}
					issued.Add(1)
					if i%5 == 0 {
						toCancel <- red.ID
					}
				}
			})
		}
		calls = append(calls, func() {
			redeemers.Wait()
			close(toCancel)
		})
		for c := 0; c < 2; c++ {
			calls = append(calls, func() {
				for id := range toCancel {
					if _, _, err := e.rw.Cancel(e.ctx, till, id, loyalty.IdempotencyKey{}); err != nil {
						fail("cancel %s: %s", id, reason(err))
						continue
					}
					cancelled.Add(1)
				}
			})
		}
		for w := 0; w < editors; w++ {
			calls = append(calls, func() {
				for k := w; k < edits; k += editors {
					if _, err := e.rw.Update(e.ctx, rw.ID, input(t, fmt.Sprintf(`{"name":"race %d"}`, k))); err != nil {
						fail("edit %d: %s", k, reason(err))
					}
				}
			})
		}
		loyaltytest.Together(calls...)
		for _, f := range failures {
			t.Error(f)
		}
		if t.Failed() {
			t.FailNow()
		}

		live := issued.Load() - cancelled.Load()
		if got := e.stock(rw.ID); got != stock-live {
			t.Fatalf("%d coupons issued and %d cancelled of a stock of %d, but the stock reads %d, want %d",
				issued.Load(), cancelled.Load(), stock, got, stock-live)
		}
		if got := e.dbInt("SELECT COUNT(*) FROM redemptions WHERE status <> ?", rewards.StatusCancelled); got != live {
			t.Fatalf("%d live redemptions stored, the callers were told %d", got, live)
		}

		// Redeem what is left until out_of_stock: never more than the stock.
		for i := 0; ; i++ {
			_, err := e.redeem(ms[i%members], rw.ID)
			if reason(err) == "out_of_stock" {
				break
			}
			if err != nil {
				t.Fatalf("redeeming the rest: %v", err)
			}
			if live++; live > stock {
				t.Fatalf("%d coupons issued against a stock of %d", live, stock)
			}
		}
		if live != stock {
			t.Fatalf("out_of_stock after %d coupons of a stock of %d", live, stock)
		}
		if got := e.dbInt("SELECT COUNT(*) FROM redemptions WHERE status <> ?", rewards.StatusCancelled); got != stock {
			t.Fatalf("%d live redemptions stored of a stock of %d", got, stock)
		}
		if got := e.stock(rw.ID); got != 0 {
			t.Fatalf("stock %d once out of stock", got)
		}
		// Each coupon cost one point; cancels gave theirs back.
		if got := e.dbInt("SELECT SUM(points) FROM member_balances"); got != members*1000-stock {
			t.Fatalf("members hold %d points, want %d", got, members*1000-stock)
		}
	})
}

// TestRetireHoldsAgainstConcurrentEdits retires a reward while marketers
// rename it: the reward stays retired, whichever commits last. An edit that
// wrote back the active flag it read before the retire would bring the
// reward back to the catalog.
func TestRetireHoldsAgainstConcurrentEdits(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		rw := e.addReward(`{"code":"tote","name":"Tote","cost_points":10,"stock":50}`)
		const rounds, renames = 10, 8
		for round := 0; round < rounds; round++ {
			if _, err := e.rw.Update(e.ctx, rw.ID, input(t, `{"active":true}`)); err != nil {
				t.Fatal(err)
			}
			calls := []func(){func() {
				if err := e.rw.Retire(e.ctx, rw.ID); err != nil {
					t.Errorf("retire: %v", err)
				}
			}}
			for k := 0; k < renames; k++ {
				calls = append(calls, func() {
					if _, err := e.rw.Update(e.ctx, rw.ID, input(t, fmt.Sprintf(`{"name":"Tote %d-%d"}`, round, k))); err != nil {
						t.Errorf("rename: %v", err)
					}
				})
			}
			loyaltytest.Together(calls...)
			got, err := e.rw.Get(e.ctx, rw.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Active {
				t.Fatalf("round %d: the reward is active again after a retire raced %d renames", round, renames)
			}
			if got.Stock == nil || *got.Stock != 50 {
				t.Fatalf("round %d: stock %v", round, got.Stock)
			}
		}
	})
}
