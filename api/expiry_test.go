package api

import (
	"sync"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

const oneDay = 24 * time.Hour

// writesSnapshot is what a read must leave alone: the ledger, the lots and
// every stored balance version.
type writesSnapshot struct {
	entries, lots, lotPoints, versions, points int64
}

func (e *env) writes() writesSnapshot {
	e.t.Helper()
	return writesSnapshot{
		entries:   e.dbInt("SELECT COUNT(*) FROM ledger_entries"),
		lots:      e.dbInt("SELECT COUNT(*) FROM lots"),
		lotPoints: e.dbInt("SELECT COALESCE(SUM(remaining), 0) FROM lots"),
		versions:  e.dbInt("SELECT COALESCE(SUM(version), 0) FROM member_balances"),
		points:    e.dbInt("SELECT COALESCE(SUM(points), 0) FROM member_balances"),
	}
}

func TestPendingPointsReleaseAtTheInstant(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"pending_days": 14, "expiry_days": 365}).must(t, 200)
		m := e.enrol()
		e.clock.Advance(123456 * time.Microsecond) // an instant with a fraction of a second
		t0 := e.clock.Now()
		e.buy(m, 10000, "R-1")
		version := func() int64 { return e.dbInt("SELECT version FROM member_balances WHERE member_id = ?", m) }
		v0 := version()

		read := func() loyalty.Balance {
			t.Helper()
			b := e.balance(m)
			e.do("GET", "/v1/members/"+m+"/ledger", e.admin(), nil).must(t, 200)
			e.do("GET", "/v1/members/"+m, e.token(loyalty.RoleMember, m), nil).must(t, 200)
			e.do("GET", "/v1/rewards?member_id="+m, e.pos(), nil).must(t, 200)
			return b
		}
		if b := read(); b.Available != 0 || b.Pending != 100 {
			t.Fatalf("right after the purchase: %+v", b)
		}
		release := t0.AddDate(0, 0, 14)
		e.clock.Set(release.Add(-time.Microsecond))
		if b := read(); b.Available != 0 || b.Pending != 100 {
			t.Fatalf("a microsecond before release: %+v", b)
		}
		// Pending points cannot be spent.
		rw := e.addReward("r10", 10)["id"].(string)
		wantProblemCode(t, e.redeemReward(e.pos(), m, rw), 409, "insufficient_points")
		before := e.writes()
		e.clock.Set(release)
		b := read()
		if b.Available != 100 || b.Pending != 0 {
			t.Fatalf("at release: %+v", b)
		}
		for _, en := range e.ledgerEntries(m) {
			if en.Kind == "earn" && !en.AvailableAt.Equal(release) {
				t.Fatalf("earn available_at %s, want %s", en.AvailableAt, release)
			}
		}
		// Reads never write: the release is computed, not stored.
		if after := e.writes(); after != before {
			t.Fatalf("reads wrote: %+v → %+v", before, after)
		}
		if v := version(); v != v0 {
			t.Fatalf("stored version moved from %d to %d on reads", v0, v)
		}
		if b.Version <= v0 {
			t.Fatalf("the balance's version %d did not move past the stored %d when points were released", b.Version, v0)
		}
		e.redeemReward(e.pos(), m, rw).must(t, 201)
		e.checkLedger()
	})
}

func TestExpirePointsLotPolicy(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		t0 := e.clock.Now()
		a := e.enrol()
		b := e.enrol()
		e.buy(a, 10000, "R-1") // a: 100, expires t0+365d
		e.buy(b, 7000, "R-2")  // b: 70, expires t0+365d
		e.clock.Advance(10 * oneDay)
		e.buy(a, 5000, "R-3") // a: 50, expires t0+375d
		rw := e.addReward("r30", 30)["id"].(string)
		e.redeemReward(e.pos(), a, rw).must(t, 201) // from a's first lot: 70 left
		exp1 := t0.AddDate(0, 0, 365)

		e.clock.Set(exp1.Add(-time.Microsecond))
		if got := e.balance(a); got.Available != 120 {
			t.Fatalf("a microsecond before expiry: %+v", got)
		}
		e.clock.Set(exp1)
		// Expired points are no longer available, before the job has run.
		if got := e.balance(a); got.Available != 50 {
			t.Fatalf("at expires_at: available %d, want 50", got.Available)
		}
		if got := e.balance(b); got.Available != 0 {
			t.Fatalf("at expires_at: available %d, want 0", got.Available)
		}
		wantProblemCode(t, e.redeemReward(e.pos(), b, rw), 409, "insufficient_points")

		t.Run("FutureAsOfIs422", func(t *testing.T) {
			r := e.do("POST", "/v1/jobs/expire-points/run", e.marketer(), map[string]any{"as_of": rfc(exp1.Add(time.Hour))})
			wantFieldError(t, r, "as_of")
			if n := e.dbInt("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'expire'"); n != 0 {
				t.Fatalf("a refused run expired %d lots", n)
			}
		})
		t.Run("JustBeforeExpiresNothing", func(t *testing.T) {
			sum := e.runJob("expire-points", exp1.Add(-time.Microsecond))["summary"].(map[string]any)
			if num(sum["lots"]) != 0 {
				t.Fatalf("expired early: %v", sum)
			}
		})
		t.Run("OneEntryPerLotRemainder", func(t *testing.T) {
			run := e.runJob("expire-points", exp1)
			sum := run["summary"].(map[string]any)
			if num(sum["lots"]) != 2 || num(sum["members"]) != 2 || num(sum["points"]) != 140 || sum["policy"] != "lot" {
				t.Fatalf("summary %v", sum)
			}
			if run["as_of"] != rfc(exp1) || run["name"] != "expire-points" || run["started_at"] == nil || run["finished_at"] == nil {
				t.Fatalf("run %v", run)
			}
			for member, want := range map[string]int64{a: -70, b: -70} {
				var n int
				for _, en := range e.ledgerEntries(member) {
					if en.Kind != "expire" {
						continue
					}
					n++
					if en.Points != want || !en.OccurredAt.Equal(exp1) {
						t.Fatalf("expire entry %+v, want %d at %s", en, want, exp1)
					}
				}
				if n != 1 {
					t.Fatalf("%d expire entries", n)
				}
			}
			if got := e.balance(a); got.Available != 50 || got.Pending != 0 {
				t.Fatalf("after the run: %+v", got)
			}
			e.checkLedger()
		})
		t.Run("SameAsOfAgainWritesNothing", func(t *testing.T) {
			before := e.writes()
			sum := e.runJob("expire-points", exp1)["summary"].(map[string]any)
			if num(sum["lots"]) != 0 || num(sum["points"]) != 0 {
				t.Fatalf("second run %v", sum)
			}
			if after := e.writes(); after != before {
				t.Fatalf("second run wrote: %+v → %+v", before, after)
			}
		})
		t.Run("ConcurrentRunsExpireOnce", func(t *testing.T) {
			exp2 := t0.AddDate(0, 0, 375)
			e.clock.Set(exp2)
			var wg sync.WaitGroup
			runs := make([]resp, 4)
			tok := e.marketer()
			for i := range runs {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					runs[i] = e.do("POST", "/v1/jobs/expire-points/run", tok, map[string]any{"as_of": rfc(exp2)})
				}(i)
			}
			wg.Wait()
			var lots int64
			for _, r := range runs {
				rec := r.must(t, 200).JSON(t)
				if rec["status"] != "succeeded" {
					t.Fatalf("run %v", rec)
				}
				lots += num(rec["summary"].(map[string]any)["lots"])
			}
			if lots != 1 {
				t.Fatalf("concurrent runs expired %d lots in all, want 1", lots)
			}
			pts, cnt := kindsOf(e.ledgerEntries(a))
			if cnt["expire"] != 2 || pts["expire"] != -120 {
				t.Fatalf("a's expire entries: %d for %d points", cnt["expire"], pts["expire"])
			}
			if got := e.balance(a); got.Available != 0 {
				t.Fatalf("available %d", got.Available)
			}
			e.checkLedger()
		})
		t.Run("JobsListShowsLastRun", func(t *testing.T) {
			l := e.do("GET", "/v1/jobs", e.marketer(), nil).must(t, 200).JSON(t)
			var found bool
			for _, it := range l["items"].([]any) {
				j := it.(map[string]any)
				if j["name"] != "expire-points" {
					continue
				}
				found = true
				last, _ := j["last_run"].(map[string]any)
				if last == nil || last["status"] != "succeeded" || last["as_of"] != rfc(t0.AddDate(0, 0, 375)) || j["schedule"] == "" {
					t.Fatalf("expire-points %v", j)
				}
			}
			if !found {
				t.Fatalf("jobs %v", l)
			}
			e.do("GET", "/v1/jobs", e.pos(), nil).must(t, 403)
			e.do("POST", "/v1/jobs/expire-points/run", e.pos(), nil).must(t, 403)
			e.do("POST", "/v1/jobs/no-such-job/run", e.admin(), nil).must(t, 404)
		})
	})
}

func TestInactivityExpiry(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		setup := func(t *testing.T) *env {
			e := newEnv(t, dialect)
			e.do("PUT", "/v1/program", e.marketer(), map[string]any{"expiry_policy": "inactivity", "expiry_days": 30}).must(t, 200)
			return e
		}
		t.Run("ThirtyDaysAfterLastEarn", func(t *testing.T) {
			e := setup(t)
			t0 := e.clock.Now()
			m := e.enrol()
			e.buy(m, 10000, "R-1")
			e.clock.Advance(10 * oneDay)
			e.buy(m, 5000, "R-2") // the last earn: deadline t0+40d
			deadline := t0.AddDate(0, 0, 40)
			for _, en := range e.ledgerEntries(m) {
				if en.ExpiresAt != nil {
					t.Fatalf("an inactivity program dated an entry's expiry: %+v", en)
				}
			}
			e.clock.Set(t0.AddDate(0, 0, 30))
			b := e.balance(m)
			if b.Available != 150 {
				t.Fatalf("the first purchase's points expired though the member was active: %+v", b)
			}
			if len(b.ExpiringSoon) != 1 || b.ExpiringSoon[0].Points != 150 || !b.ExpiringSoon[0].ExpiresAt.Equal(deadline) {
				t.Fatalf("expiring soon %+v, want 150 at %s", b.ExpiringSoon, deadline)
			}
			e.clock.Set(deadline.Add(-time.Microsecond))
			if b := e.balance(m); b.Available != 150 {
				t.Fatalf("just before the deadline: %+v", b)
			}
			sum := e.runJob("expire-points", e.clock.Now())["summary"].(map[string]any)
			if num(sum["lots"]) != 0 || sum["policy"] != "inactivity" {
				t.Fatalf("expired early: %v", sum)
			}
			e.clock.Set(deadline)
			if b := e.balance(m); b.Available != 0 {
				t.Fatalf("at the deadline: %+v", b)
			}
			sum = e.runJob("expire-points", deadline)["summary"].(map[string]any)
			if num(sum["lots"]) != 2 || num(sum["points"]) != 150 || num(sum["members"]) != 1 {
				t.Fatalf("summary %v", sum)
			}
			pts, cnt := kindsOf(e.ledgerEntries(m))
			if pts["expire"] != -150 || cnt["expire"] != 2 {
				t.Fatalf("expire entries %d for %d", cnt["expire"], pts["expire"])
			}
			e.checkLedger()
			before := e.writes()
			if sum := e.runJob("expire-points", deadline)["summary"].(map[string]any); num(sum["lots"]) != 0 {
				t.Fatalf("second run %v", sum)
			}
			if after := e.writes(); after != before {
				t.Fatalf("second run wrote: %+v → %+v", before, after)
			}
		})
		t.Run("RedemptionResetsTheClock", func(t *testing.T) {
			e := setup(t)
			t0 := e.clock.Now()
			m := e.enrol()
			idle := e.enrol()
			e.buy(m, 10000, "R-1")
			e.buy(idle, 10000, "R-2")
			rw := e.addReward("r30", 30)["id"].(string)
			e.clock.Advance(20 * oneDay)
			e.redeemReward(e.token(loyalty.RoleMember, m), m, rw).must(t, 201)
			deadline := t0.AddDate(0, 0, 50)

			e.clock.Set(t0.AddDate(0, 0, 30))
			if b := e.balance(idle); b.Available != 0 {
				t.Fatalf("the idle member kept its points: %+v", b)
			}
			b := e.balance(m)
			if b.Available != 70 || len(b.ExpiringSoon) != 1 || b.ExpiringSoon[0].Points != 70 || !b.ExpiringSoon[0].ExpiresAt.Equal(deadline) {
				t.Fatalf("after the redemption: %+v, want 70 expiring at %s", b, deadline)
			}
			sum := e.runJob("expire-points", e.clock.Now())["summary"].(map[string]any)
			if num(sum["members"]) != 1 || num(sum["points"]) != 100 {
				t.Fatalf("summary %v: want only the idle member's 100", sum)
			}
			e.checkLedger()
			e.clock.Set(deadline.Add(-time.Microsecond))
			if b := e.balance(m); b.Available != 70 {
				t.Fatalf("just before the deadline %+v", b)
			}
			e.clock.Set(deadline)
			if b := e.balance(m); b.Available != 0 {
				t.Fatalf("at the deadline %+v", b)
			}
			e.runJob("expire-points", deadline)
			if pts, _ := kindsOf(e.ledgerEntries(m)); pts["expire"] != -70 {
				t.Fatalf("expired %d", pts["expire"])
			}
			e.checkLedger()
		})
		t.Run("ExpiredPointsDoNotComeBack", func(t *testing.T) {
			// Points lapsed at the deadline stay lapsed when the member earns
			// again, whether or not the job ran in between.
			e := setup(t)
			t0 := e.clock.Now()
			m := e.enrol()
			e.buy(m, 10000, "R-1")
			e.clock.Set(t0.AddDate(0, 0, 31))
			if b := e.balance(m); b.Available != 0 {
				t.Fatalf("after 31 idle days: %+v", b)
			}
			e.buy(m, 5000, "R-2")
			if b := e.balance(m); b.Available != 50 {
				t.Errorf("a purchase after the deadline revived expired points: available %d, want 50", b.Available)
			}
			e.runJob("expire-points", e.clock.Now())
			if b := e.balance(m); b.Available != 50 {
				t.Errorf("after the job: available %d, want 50", b.Available)
			}
			if pts, _ := kindsOf(e.ledgerEntries(m)); pts["expire"] != -100 {
				t.Errorf("expired %d, want -100", pts["expire"])
			}
			e.checkLedger()
		})
	})
}

func TestExpiryDaysZeroNeverExpires(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		for _, policy := range []string{"lot", "inactivity"} {
			t.Run(policy, func(t *testing.T) {
				e := newEnv(t, dialect)
				e.do("PUT", "/v1/program", e.marketer(), map[string]any{"expiry_policy": policy, "expiry_days": 0}).must(t, 200)
				m := e.enrol()
				e.buy(m, 10000, "R-1")
				e.do("POST", "/v1/members/"+m+"/adjustments", e.admin(), map[string]any{"points": 25, "reason": "goodwill"}).must(t, 201)
				for _, en := range e.ledgerEntries(m) {
					if en.ExpiresAt != nil {
						t.Fatalf("entry with an expiry: %+v", en)
					}
				}
				e.clock.Advance(10 * 365 * oneDay)
				b := e.balance(m)
				if b.Available != 125 || len(b.ExpiringSoon) != 0 {
					t.Fatalf("ten years on: %+v", b)
				}
				sum := e.runJob("expire-points", e.clock.Now())["summary"].(map[string]any)
				if num(sum["lots"]) != 0 {
					t.Fatalf("summary %v", sum)
				}
				if _, cnt := kindsOf(e.ledgerEntries(m)); cnt["expire"] != 0 {
					t.Fatal("expire entries written")
				}
				e.checkLedger()
			})
		}
	})
}

func TestDebtAfterRedemptionAndReturn(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		setup := func(t *testing.T) (e *env, m, purchase, redemption string) {
			e = newEnv(t, dialect)
			m = e.enrol()
			purchase = e.buy(m, 10000, "R-1")["id"].(string) // 100
			rw := e.addReward("r80", 80)["id"].(string)
			redemption = e.redeemReward(e.pos(), m, rw).must(t, 201).JSON(t)["id"].(string)
			ret := e.do("POST", "/v1/purchases/"+purchase+"/returns", e.pos(), map[string]any{"external_id": "X", "amount": 10000}).must(t, 201).JSON(t)
			if num(ret["points_reversed"]) != 100 || num(ret["balance"].(map[string]any)["available"]) != -80 {
				t.Fatalf("return %v", ret)
			}
			if b := e.balance(m); b.Available != -80 {
				t.Fatalf("available %d, want -80", b.Available)
			}
			e.checkLedger()
			return e, m, purchase, redemption
		}
		t.Run("NextPurchasePaysTheDebt", func(t *testing.T) {
			e, m, _, _ := setup(t)
			rw := e.addReward("r1", 1)["id"].(string)
			wantProblemCode(t, e.redeemReward(e.pos(), m, rw), 409, "insufficient_points")
			e.buy(m, 5000, "R-2")
			if b := e.balance(m); b.Available != -30 {
				t.Fatalf("available %d, want -30", b.Available)
			}
			wantProblemCode(t, e.redeemReward(e.pos(), m, rw), 409, "insufficient_points")
			e.buy(m, 5000, "R-3")
			if b := e.balance(m); b.Available != 20 {
				t.Fatalf("available %d, want 20", b.Available)
			}
			e.checkLedger()
		})
		t.Run("CancelAfterReturnPaysTheDebt", func(t *testing.T) {
			e, m, _, red := setup(t)
			c := e.do("POST", "/v1/redemptions/"+red+"/cancel", e.pos(), nil).must(t, 200).JSON(t)
			if num(c["balance"].(map[string]any)["available"]) != 0 {
				t.Fatalf("cancel %v", c)
			}
			if b := e.balance(m); b.Available != 0 || b.LifetimeRedeemed != 0 {
				t.Fatalf("after the cancel %+v", b)
			}
			if d := e.dbInt("SELECT debt FROM member_balances WHERE member_id = ?", m); d != 0 {
				t.Fatalf("debt %d left", d)
			}
			e.checkLedger()
			e.buy(m, 5000, "R-2")
			if b := e.balance(m); b.Available != 50 {
				t.Fatalf("available %d, want 50", b.Available)
			}
			e.checkLedger()
		})
		t.Run("CancelAfterPartPaid", func(t *testing.T) {
			e, m, _, red := setup(t)
			e.buy(m, 5000, "R-2") // pays 50 of the 80
			e.do("POST", "/v1/redemptions/"+red+"/cancel", e.admin(), nil).must(t, 200)
			if b := e.balance(m); b.Available != 50 {
				t.Fatalf("available %d, want 50", b.Available)
			}
			if d := e.dbInt("SELECT debt FROM member_balances WHERE member_id = ?", m); d != 0 {
				t.Fatalf("debt %d left", d)
			}
			pts, _ := kindsOf(e.ledgerEntries(m))
			if pts["earn"] != 150 || pts["redeem"] != -80 || pts["return"] != -100 || pts["redeem_cancel"] != 80 {
				t.Fatalf("ledger %v", pts)
			}
			e.checkLedger()
		})
		t.Run("ExpiredRefundDoesNotPayDebt", func(t *testing.T) {
			// A redemption drew from a lot that has since expired and from a
			// purchase later returned. Cancelling it gives the expired lot's
			// points back already expired: they must not pay the return's debt.
			e := newEnv(t, dialect)
			t0 := e.clock.Now()
			m := e.enrol()
			e.buy(m, 10000, "R-1") // lot 1: 100, expires t0+365d
			e.clock.Advance(oneDay)
			p2 := e.buy(m, 10000, "R-2")["id"].(string) // lot 2: 100, expires t0+366d
			rw := e.addReward("r150", 150)["id"].(string)
			red := e.redeemReward(e.pos(), m, rw).must(t, 201).JSON(t)["id"].(string) // 100 from lot 1, 50 from lot 2
			e.clock.Set(t0.AddDate(0, 0, 365).Add(time.Hour))
			e.runJob("expire-points", e.clock.Now()) // lot 1 is empty: nothing to expire
			e.do("POST", "/v1/purchases/"+p2+"/returns", e.pos(), map[string]any{"external_id": "X", "amount": 10000}).must(t, 201)
			if b := e.balance(m); b.Available != -50 {
				t.Fatalf("after the return: available %d, want -50", b.Available)
			}
			e.do("POST", "/v1/redemptions/"+red+"/cancel", e.pos(), nil).must(t, 200)
			e.runJob("expire-points", e.clock.Now())
			// Lot 2's 50 come back and pay the debt; lot 1's 100 come back expired.
			if b := e.balance(m); b.Available != 0 {
				t.Errorf("after the cancel: available %d, want 0 (expired points paid the debt)", b.Available)
			}
			if pts, _ := kindsOf(e.ledgerEntries(m)); pts["expire"] != -100 {
				t.Errorf("expired %d, want -100", pts["expire"])
			}
			e.checkLedger()
		})
		t.Run("DebtSurvivesExpiry", func(t *testing.T) {
			e, m, _, _ := setup(t)
			e.clock.Advance(400 * oneDay)
			e.runJob("expire-points", e.clock.Now())
			if b := e.balance(m); b.Available != -80 {
				t.Fatalf("available %d, want -80", b.Available)
			}
			e.checkLedger()
		})
	})
}

func TestTierReviewJob(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"tier_window_days": 365}).must(t, 200)
		e.beautyLadder()
		t0 := e.clock.Now()
		// idle reaches VIB now on a purchase 300 days old: its spend leaves the
		// window after 65 days, but the tier is kept for 365.
		idle := e.enrol()
		e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": idle, "total": 35000,
			"occurred_at": rfc(t0.AddDate(0, 0, -300))}).must(t, 201)
		loyal := e.enrol()
		e.buy(loyal, 35000, "L-1")
		// top reaches Rouge now on old spend, then spends enough for VIB only:
		// the review takes it down one tier, not to the bottom.
		top := e.enrol()
		e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": top, "total": 100000,
			"occurred_at": rfc(t0.AddDate(0, 0, -300))}).must(t, 201)
		tierOf := func(m string) string {
			t.Helper()
			return e.do("GET", "/v1/members/"+m, e.admin(), nil).must(t, 200).JSON(t)["tier"].(string)
		}
		if tierOf(idle) != "vib" || tierOf(loyal) != "vib" || tierOf(top) != "rouge" {
			t.Fatal("not VIB, VIB and Rouge")
		}
		review := func(at time.Time) int64 {
			t.Helper()
			e.clock.Set(at)
			return num(e.runJob("tier-review", at)["summary"].(map[string]any)["downgraded"])
		}
		if n := review(t0.AddDate(0, 0, 100)); n != 0 {
			t.Fatalf("%d downgraded after 100 days", n)
		}
		if b := e.balance(idle); b.QualifyingSpend != 0 || b.Tier.Code != "vib" {
			t.Fatalf("idle after 100 days: %+v", b)
		}
		// loyal keeps buying; top buys a little.
		e.buy(loyal, 20000, "L-2")
		e.buy(top, 40000, "T-2")
		e.clock.Set(t0.AddDate(0, 0, 300))
		e.buy(loyal, 20000, "L-3")
		if n := review(t0.AddDate(0, 0, 365).Add(-time.Microsecond)); n != 0 || tierOf(idle) != "vib" {
			t.Fatalf("downgraded %d a microsecond before the 365 days", n)
		}
		// A client holding idle's balance ETag must not be told 304 once the
		// review has changed the tier the balance shows.
		balancePath := "/v1/members/" + idle + "/balance"
		etag := e.do("GET", balancePath, e.admin(), nil).must(t, 200).Header.Get("ETag")
		e.do("GET", balancePath, e.admin(), nil, "If-None-Match", etag).must(t, 304)
		if n := review(t0.AddDate(0, 0, 365)); n != 2 {
			t.Fatalf("%d downgraded at 365 days, want 2", n)
		}
		after := e.do("GET", balancePath, e.admin(), nil, "If-None-Match", etag).must(t, 200)
		if after.Header.Get("ETag") == etag || after.JSON(t)["tier"].(map[string]any)["code"] != "insider" {
			t.Fatalf("balance after the downgrade: ETag %s (was %s), %s", after.Header.Get("ETag"), etag, after.Body)
		}
		if tierOf(idle) != "insider" {
			t.Fatalf("idle is %s", tierOf(idle))
		}
		if tierOf(top) != "vib" {
			t.Fatalf("top, with 40000 in the window, is %s", tierOf(top))
		}
		if tierOf(loyal) != "vib" {
			t.Fatalf("loyal, whose spend still qualifies, is %s", tierOf(loyal))
		}
		// The moves, up by purchase and down by the review, left the
		// books whole (the ledger's checks count the lapsed points
		// expired).
		e.runJob("expire-points", e.clock.Now())
		e.checkLedger()
		if n := review(t0.AddDate(0, 0, 365)); n != 0 {
			t.Fatalf("a second review downgraded %d", n)
		}
		// loyal's qualifying spend (L-2 and L-3: 40000) still justifies VIB later on.
		if n := review(t0.AddDate(0, 0, 400)); n != 0 || tierOf(loyal) != "vib" {
			t.Fatalf("loyal downgraded: %d", n)
		}
	})
}

func TestExpirePointsAlongsideWrites(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		t0 := e.clock.Now()
		const n = 12
		members := make([]string, n)
		for i := range members {
			members[i] = e.enrol()
			e.buy(members[i], 10000, "OLD-"+members[i]) // 100 each, expiring t0+365d
		}
		e.clock.Advance(100 * oneDay)
		for i, m := range members {
			if i%2 == 0 {
				e.buy(m, 5000, "NEW-"+m) // 50, expiring t0+465d
			}
		}
		rw := e.addReward("r20", 20)["id"].(string)
		exp := t0.AddDate(0, 0, 365)
		e.clock.Set(exp.Add(time.Minute))
		mk, pos := e.marketer(), e.pos()
		var wg sync.WaitGroup
		start := make(chan struct{})
		jobs := make([]resp, 3)
		for i := range jobs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				jobs[i] = e.do("POST", "/v1/jobs/expire-points/run", mk, map[string]any{"as_of": rfc(exp)})
			}(i)
		}
		writes := make([]resp, 0, 2*n)
		var mu sync.Mutex
		for i, m := range members {
			wg.Add(1)
			go func(i int, m string) {
				defer wg.Done()
				<-start
				var r1, r2 resp
				r1 = e.redeemReward(pos, m, rw)
				r2 = e.do("POST", "/v1/purchases", pos, map[string]any{"member_id": m, "external_id": "LATE-" + m, "total": 1000})
				mu.Lock()
				writes = append(writes, r1, r2)
				mu.Unlock()
			}(i, m)
		}
		close(start)
		wg.Wait()
		var expired int64
		for _, r := range jobs {
			rec := r.must(t, 200).JSON(t)
			if rec["status"] != "succeeded" {
				t.Fatalf("run %v", rec)
			}
			expired += num(rec["summary"].(map[string]any)["points"])
		}
		if expired != 100*n {
			t.Fatalf("the runs expired %d points in all, want %d", expired, 100*n)
		}
		for _, r := range writes {
			if r.Status != 201 && r.Status != 409 {
				t.Fatalf("write alongside the job: %d %s", r.Status, r.Body)
			}
		}
		for i, m := range members {
			// The redemption could only use the newer lot (or, racing the
			// purchase, its points).
			pts, cnt := kindsOf(e.ledgerEntries(m))
			if cnt["expire"] != 1 || pts["expire"] != -100 {
				t.Fatalf("member %d: %d expire entries for %d points", i, cnt["expire"], pts["expire"])
			}
		}
		e.checkLedger()
	})
}
