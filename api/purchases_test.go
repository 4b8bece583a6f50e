package api

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

func num(v any) int64 { return int64(v.(float64)) }

func TestPurchaseEarnsAtTheTierHeldBefore(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		steps := []struct {
			total              int64
			points             int64
			tierBefore, after  string
			available, qualify int64
		}{
			{10000, 100, "insider", "insider", 100, 10000},
			{25000, 250, "insider", "vib", 350, 35000}, // reaches VIB, earns at Insider
			{10000, 125, "vib", "vib", 475, 45000},
			{1050, 13, "vib", "vib", 488, 46050},
			{53950, 674, "vib", "rouge", 1162, 100000}, // 674.375
			{999, 14, "rouge", "rouge", 1176, 100999},
		}
		for i, s := range steps {
			r := e.buy(m, s.total, fmt.Sprintf("R-%d", i))
			if num(r["points_earned"]) != s.points || r["tier_before"] != s.tierBefore || r["tier_after"] != s.after {
				t.Fatalf("step %d: earned %v %v→%v, want %d %s→%s", i, r["points_earned"], r["tier_before"], r["tier_after"], s.points, s.tierBefore, s.after)
			}
			bd := r["breakdown"].([]any)[0].(map[string]any)
			if bd["source"] != "tier" || bd["tier"] != s.tierBefore || num(bd["points"]) != s.points {
				t.Fatalf("step %d: breakdown %v", i, bd)
			}
			if got := num(r["balance"].(map[string]any)["available"]); got != s.available {
				t.Fatalf("step %d: available %d, want %d", i, got, s.available)
			}
			b := e.balance(m)
			if b.Available != s.available || b.QualifyingSpend != s.qualify || b.Tier.Code != s.after {
				t.Fatalf("step %d: balance %+v", i, b)
			}
		}
		b := e.balance(m)
		if b.NextTier != nil || b.LifetimeEarned != 1176 {
			t.Fatalf("top tier balance: %+v", b)
		}
		mem := e.do("GET", "/v1/members/"+m, e.admin(), nil).must(t, 200).JSON(t)
		if mem["tier"] != "rouge" {
			t.Fatalf("member tier %v", mem["tier"])
		}
		e.checkLedger()
	})
}

func TestQuoteWritesNothing(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		q := e.do("POST", "/v1/purchases/quote", e.pos(), map[string]any{"member_id": m, "total": 40000, "currency": "USD"}).must(t, 200).JSON(t)
		if num(q["points_earned"]) != 400 || q["tier_after"] != "vib" || q["tier_before"] != "insider" {
			t.Fatalf("quote %v", q)
		}
		led := e.do("GET", "/v1/members/"+m+"/ledger", e.admin(), nil).must(t, 200).JSON(t)
		if len(led["items"].([]any)) != 0 {
			t.Fatalf("quote wrote to the ledger: %v", led)
		}
		if b := e.balance(m); b.Available != 0 || b.QualifyingSpend != 0 || b.Tier.Code != "insider" {
			t.Fatalf("quote changed the balance: %+v", b)
		}
		// The purchase itself earns what the quote said.
		if r := e.buy(m, 40000, "R-1"); num(r["points_earned"]) != 400 {
			t.Fatalf("purchase earned %v", r["points_earned"])
		}
	})
}

func TestPurchaseReplaysAndConflicts(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		body := map[string]any{"member_id": m, "external_id": "R-1", "store_id": "s1", "total": 5000}

		t.Run("SameReceiptSameBodyReplays", func(t *testing.T) {
			first := e.do("POST", "/v1/purchases", e.pos(), body).must(t, 201)
			again := e.do("POST", "/v1/purchases", e.pos(), body).must(t, 201)
			if again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(first.Body, again.Body) {
				t.Fatalf("replay differs: %s vs %s", first.Body, again.Body)
			}
			if b := e.balance(m); b.Available != 50 {
				t.Fatalf("paid twice: %d", b.Available)
			}
		})
		t.Run("SameReceiptOtherBodyIs409", func(t *testing.T) {
			other := map[string]any{"member_id": m, "external_id": "R-1", "store_id": "s1", "total": 6000}
			r := e.do("POST", "/v1/purchases", e.pos(), other).must(t, 409)
			if r.JSON(t)["code"] != "duplicate" {
				t.Fatalf("%s", r.Body)
			}
		})
		t.Run("SameReceiptOtherStoreIsNew", func(t *testing.T) {
			e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": m, "external_id": "R-1", "store_id": "s2", "total": 5000}).must(t, 201)
		})
		t.Run("IdempotencyKey", func(t *testing.T) {
			b := map[string]any{"member_id": m, "total": 1000}
			first := e.do("POST", "/v1/purchases", e.pos(), b, "Idempotency-Key", "k-1").must(t, 201)
			// Same JSON with other spacing and key order is the same request.
			again := e.do("POST", "/v1/purchases", e.pos(), fmt.Sprintf(`{ "total": 1000,  "member_id": %q }`, m), "Idempotency-Key", "k-1").must(t, 201)
			if again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(first.Body, again.Body) {
				t.Fatal("not replayed")
			}
			e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": m, "total": 2000}, "Idempotency-Key", "k-1").must(t, 422)
			// Keys are scoped to the caller.
			other := e.token(loyalty.RolePOS, "till-2")
			r := e.do("POST", "/v1/purchases", other, b, "Idempotency-Key", "k-1").must(t, 201)
			if r.Header.Get("Idempotent-Replayed") != "" {
				t.Fatal("another caller's key replayed")
			}
		})
		if b := e.balance(m); b.Available != 50+50+10+10 {
			t.Fatalf("available %d", b.Available)
		}
		e.checkLedger()
	})
}

func TestConcurrentPurchasesForOneMember(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		const n = 50
		type answer struct {
			total        int64
			PointsEarned int64   `json:"points_earned"`
			TierBefore   *string `json:"tier_before"`
			TierAfter    *string `json:"tier_after"`
			Breakdown    []struct {
				Source string `json:"source"`
				Tier   string `json:"tier"`
				Points int64  `json:"points"`
			} `json:"breakdown"`
			Balance struct {
				Available       int64 `json:"available"`
				QualifyingSpend int64 `json:"qualifying_spend"`
				Version         int64 `json:"version"`
			} `json:"balance"`
		}
		var wg sync.WaitGroup
		answers := make([]answer, n)
		errs := make(chan string, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				// 50 totals sum to 95,325: the VIB threshold (35,000) is
				// crossed mid-way, Rouge (100,000) never is.
				total := 1000 + int64(i)*37
				r := e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": m, "external_id": fmt.Sprintf("C-%d", i),
					"total": total})
				if r.Status != 201 {
					errs <- fmt.Sprintf("%d %s", r.Status, r.Body)
					return
				}
				r.Decode(t, &answers[i])
				answers[i].total = total
			}(i)
		}
		wg.Wait()
		close(errs)
		for msg := range errs {
			t.Fatal(msg)
		}
		// The purchases took effect one after another in the order of the
		// balance versions they answered. Replayed in that order, each earns
		// ⌊U · m⌋ at the tier held before it (§5, §8), and its answer shows
		// the books right after it.
		sort.Slice(answers, func(i, j int) bool { return answers[i].Balance.Version < answers[j].Balance.Version })
		tierAt := func(spend int64) (code string, num, den int64) {
			if spend >= 35000 {
				return "vib", 5, 4
			}
			return "insider", 1, 1
		}
		code := func(s *string) string {
			if s == nil {
				return "null"
			}
			return *s
		}
		var spend, sum int64
		for k, a := range answers {
			tier, num, den := tierAt(spend)
			want := a.total * num / (100 * den)
			spend += a.total
			sum += want
			after, _, _ := tierAt(spend)
			if a.PointsEarned != want || len(a.Breakdown) != 1 || a.Breakdown[0].Source != "tier" || a.Breakdown[0].Tier != tier || a.Breakdown[0].Points != want {
				t.Errorf("purchase %d of %d (total %d, spend before %d) earned %d %+v, want %d at %s", k+1, n, a.total, spend-a.total, a.PointsEarned, a.Breakdown, want, tier)
			}
			if a.TierBefore == nil || *a.TierBefore != tier || a.TierAfter == nil || *a.TierAfter != after {
				t.Errorf("purchase %d of %d: tier %v → %v, want %s → %s", k+1, n, code(a.TierBefore), code(a.TierAfter), tier, after)
			}
			if a.Balance.Version != int64(k)+2 || a.Balance.Available != sum || a.Balance.QualifyingSpend != spend {
				t.Errorf("purchase %d of %d answered the balance %+v, want version %d, available %d, qualifying spend %d", k+1, n, a.Balance, k+2, sum, spend)
			}
		}
		if spend != 95325 {
			t.Fatalf("the totals add up to %d", spend)
		}
		b := e.balance(m)
		if b.Available != sum || b.LifetimeEarned != sum {
			t.Fatalf("balance %d, lifetime %d, want the rule's sum %d", b.Available, b.LifetimeEarned, sum)
		}
		if b.Version != 1+n {
			t.Fatalf("version %d, want %d", b.Version, 1+n)
		}
		e.checkLedger()
	})
}

func TestOnePurchasePostedManyTimesAtOnce(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		body := map[string]any{"member_id": m, "external_id": "R-RACE", "store_id": "s1", "total": 12345}
		const n = 20
		var wg sync.WaitGroup
		bodies := make([][]byte, n)
		statuses := make([]int, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				r := e.do("POST", "/v1/purchases", e.pos(), body, "Idempotency-Key", "race-key")
				statuses[i], bodies[i] = r.Status, r.Body
			}(i)
		}
		wg.Wait()
		for i := range statuses {
			if statuses[i] != 201 || !bytes.Equal(bodies[i], bodies[0]) {
				t.Fatalf("attempt %d: %d %s", i, statuses[i], bodies[i])
			}
		}
		var purchases int64
		if err := e.store.DB().Raw("SELECT COUNT(*) FROM purchases").Scan(&purchases).Error; err != nil {
			t.Fatal(err)
		}
		if b := e.balance(m); purchases != 1 || b.Available != 123 {
			t.Fatalf("%d purchases, available %d", purchases, b.Available)
		}
		e.checkLedger()
	})
}

func TestReturns(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		e.buy(m, 35000, "R-0") // VIB from now on
		p := e.buy(m, 10000, "R-1")
		id := p["id"].(string)
		if num(p["points_earned"]) != 125 {
			t.Fatalf("earned %v", p["points_earned"])
		}
		ret := func(ext string, amount int64) resp {
			return e.do("POST", "/v1/purchases/"+id+"/returns", e.pos(), map[string]any{"external_id": ext, "amount": amount})
		}
		r1 := ret("RET-1", 4000).must(t, 201).JSON(t)
		if num(r1["points_reversed"]) != 50 || r1["purchase_id"] != id {
			t.Fatalf("first return %v", r1)
		}
		// Replayed, not reversed twice.
		again := ret("RET-1", 4000).must(t, 201)
		if again.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatal("return not replayed")
		}
		ret("RET-1", 3000).must(t, 409)
		r2 := ret("RET-2", 3333).must(t, 201).JSON(t)
		if num(r2["points_reversed"]) != 41 { // ⌊125·3333/10000⌋
			t.Fatalf("second return %v", r2)
		}
		ret("RET-3", 2668).must(t, 422) // 2667 left
		r3 := ret("RET-3", 2667).must(t, 201).JSON(t)
		if num(r3["points_reversed"]) != 34 { // the rest: 125-50-41
			t.Fatalf("completing return reversed %v, want 34", r3["points_reversed"])
		}
		ret("RET-4", 1).must(t, 422)
		pur := e.do("GET", "/v1/purchases/"+id, e.pos(), nil).must(t, 200).JSON(t)
		if num(pur["returned_amount"]) != 10000 || num(pur["points_reversed"]) != 125 || len(pur["returns"].([]any)) != 3 {
			t.Fatalf("purchase %v", pur)
		}
		b := e.balance(m)
		if b.Available != 350 || b.QualifyingSpend != 35000 || b.LifetimeEarned != 350 {
			t.Fatalf("balance %+v", b)
		}
		e.checkLedger()
	})
}

func TestReturnAfterPointsWereSpentLeavesDebt(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		p := e.buy(m, 10000, "R-1")
		e.do("POST", "/v1/members/"+m+"/adjustments", e.admin(), map[string]any{"points": -80, "reason": "spent at the counter"}).must(t, 201)
		e.do("POST", "/v1/members/"+m+"/adjustments", e.admin(), map[string]any{"points": -21, "reason": "more than is left"}).must(t, 409)
		e.do("POST", "/v1/purchases/"+p["id"].(string)+"/returns", e.pos(), map[string]any{"external_id": "X", "amount": 10000}).must(t, 201)
		if b := e.balance(m); b.Available != -80 {
			t.Fatalf("available %d, want -80", b.Available)
		}
		e.checkLedger()
		// The next earnings pay the debt first.
		e.buy(m, 5000, "R-2")
		if b := e.balance(m); b.Available != -30 {
			t.Fatalf("available %d, want -30", b.Available)
		}
		e.buy(m, 5000, "R-3")
		if b := e.balance(m); b.Available != 20 {
			t.Fatalf("available %d, want 20", b.Available)
		}
		e.checkLedger()
	})
}

func TestBalanceETag(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		path := "/v1/members/" + m + "/balance"
		r := e.do("GET", path, e.admin(), nil).must(t, 200)
		etag := r.Header.Get("ETag")
		if etag != fmt.Sprintf(`"%d"`, num(r.JSON(t)["version"])) {
			t.Fatalf("ETag %q is not the version of %s", etag, r.Body)
		}
		e.do("GET", path, e.admin(), nil, "If-None-Match", etag).must(t, 304)
		e.buy(m, 1000, "R-1")
		r2 := e.do("GET", path, e.admin(), nil, "If-None-Match", etag).must(t, 200)
		if r2.Header.Get("ETag") == etag {
			t.Fatal("ETag did not change after a purchase")
		}
		// The member's own app reads the same numbers as the till.
		own := e.do("GET", path, e.token(loyalty.RoleMember, m), nil).must(t, 200)
		if num(own.JSON(t)["available"]) != num(r2.JSON(t)["available"]) {
			t.Fatal("app and till disagree")
		}
	})
}

func TestPendingPointsAndExpiry(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"pending_days": 14, "expiry_days": 365}).must(t, 200)
		m := e.enrol()
		path := "/v1/members/" + m + "/balance"
		e.buy(m, 10000, "R-1")
		b := e.balance(m)
		if b.Available != 0 || b.Pending != 100 {
			t.Fatalf("right after: %+v", b)
		}
		etag := e.do("GET", path, e.admin(), nil).Header.Get("ETag")
		e.clock.Advance(14*24*time.Hour - time.Second)
		if b := e.balance(m); b.Pending != 100 {
			t.Fatalf("a second early: %+v", b)
		}
		e.do("GET", path, e.admin(), nil, "If-None-Match", etag).must(t, 304)
		e.clock.Advance(time.Second)
		if b := e.balance(m); b.Available != 100 || b.Pending != 0 {
			t.Fatalf("on the day: %+v", b)
		}
		// Pending points becoming available change the representation, so
		// the ETag changes too, though nothing was written.
		e.do("GET", path, e.admin(), nil, "If-None-Match", etag).must(t, 200)
		e.clock.Set(time.Date(2027, 2, 1, 12, 0, 0, 0, time.UTC))
		b = e.balance(m)
		if len(b.ExpiringSoon) != 1 || b.ExpiringSoon[0].Points != 100 ||
			!b.ExpiringSoon[0].ExpiresAt.Equal(time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)) {
			t.Fatalf("expiring soon: %+v", b.ExpiringSoon)
		}
		e.clock.Set(time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC))
		if b := e.balance(m); b.Available != 0 {
			t.Fatalf("expired points still available: %+v", b)
		}
	})
}

func TestCalendarYearQualification(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"tier_period": "calendar_year", "timezone": "America/New_York"}).must(t, 200)
		e.beautyLadder()
		m := e.enrol()
		// 31 December 2025, 23:00 in New York: last year's spend.
		e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": m, "total": 30000,
			"occurred_at": "2025-12-31T23:00:00-05:00"}).must(t, 201)
		if b := e.balance(m); b.QualifyingSpend != 0 {
			t.Fatalf("last year's purchase counted: %d", b.QualifyingSpend)
		}
		r := e.buy(m, 30000, "R-2")
		if r["tier_after"] != "insider" {
			t.Fatalf("upgraded on last year's spend: %v", r["tier_after"])
		}
		r = e.buy(m, 5000, "R-3")
		if r["tier_after"] != "vib" {
			t.Fatalf("35000 this year should reach vib: %v", r["tier_after"])
		}
	})
}

func TestMembersAndTiers(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.do("POST", "/v1/members", e.pos(), map[string]any{"external_id": "X-1", "email": "Ada@Example.com",
			"phone": "+14155550123", "first_name": "Ada", "birthday": "1990-02-28", "timezone": "Europe/Paris"}).must(t, 201).JSON(t)
		id := m["id"].(string)
		if m["email"] != "ada@example.com" || m["status"] != "active" || m["tier"] != nil {
			t.Fatalf("member %v", m)
		}
		for _, dup := range []map[string]any{{"external_id": "X-1"}, {"email": "ada@example.com"}, {"phone": "+14155550123"}} {
			e.do("POST", "/v1/members", e.pos(), dup).must(t, 409)
		}
		for _, q := range []string{"external_id=X-1", "email=ADA@example.com", "phone=%2B14155550123"} {
			l := e.do("GET", "/v1/members?"+q, e.pos(), nil).must(t, 200).JSON(t)
			if items := l["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != id {
				t.Fatalf("lookup %s: %v", q, l)
			}
		}
		// The entry tier reaches members enrolled before it existed.
		e.beautyLadder()
		if got := e.do("GET", "/v1/members/"+id, e.admin(), nil).JSON(t)["tier"]; got != "insider" {
			t.Fatalf("tier %v", got)
		}
		e.do("DELETE", "/v1/tiers/insider", e.marketer(), nil).must(t, 409)
		e.do("PUT", "/v1/tiers/gold", e.marketer(), map[string]any{"name": "Gold", "rank": 1, "earn_multiplier": "2", "qualifying_spend": 1}).must(t, 409)
		e.do("DELETE", "/v1/tiers/rouge", e.marketer(), nil).must(t, 204)
		e.do("DELETE", "/v1/tiers/rouge", e.marketer(), nil).must(t, 404)
		tiers := e.do("GET", "/v1/tiers", e.pos(), nil).must(t, 200).JSON(t)["items"].([]any)
		if len(tiers) != 2 {
			t.Fatalf("tiers %v", tiers)
		}
		// Erasure keeps the ledger.
		e.buy(id, 1000, "R-1")
		e.do("PATCH", "/v1/members/"+id, e.pos(), map[string]any{"first_name": "Adele", "phone": nil}).must(t, 200)
		got := e.do("GET", "/v1/members/"+id, e.admin(), nil).JSON(t)
		if got["first_name"] != "Adele" || got["phone"] != nil || got["email"] != "ada@example.com" {
			t.Fatalf("patched %v", got)
		}
		e.do("DELETE", "/v1/members/"+id, e.admin(), nil).must(t, 204)
		got = e.do("GET", "/v1/members/"+id, e.admin(), nil).must(t, 200).JSON(t)
		if got["status"] != "erased" || got["email"] != nil || got["first_name"] != nil {
			t.Fatalf("erased %v", got)
		}
		if b := e.balance(id); b.Available != 10 {
			t.Fatalf("ledger lost on erasure: %+v", b)
		}
		e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": id, "total": 100}).must(t, 409)
	})
}

func TestLedgerPages(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		for i := 0; i < 7; i++ {
			e.buy(m, int64(100*(i+1)), fmt.Sprintf("R-%d", i))
			e.clock.Advance(time.Minute)
		}
		var seen []int64
		cursor := ""
		for pages := 0; ; pages++ {
			r := e.do("GET", "/v1/members/"+m+"/ledger?limit=3&cursor="+cursor, e.admin(), nil).must(t, 200).JSON(t)
			for _, it := range r["items"].([]any) {
				seen = append(seen, num(it.(map[string]any)["points"]))
			}
			if r["next_cursor"] == nil {
				break
			}
			cursor = r["next_cursor"].(string)
			if pages > 5 {
				t.Fatal("no end")
			}
		}
		if fmt.Sprint(seen) != "[7 6 5 4 3 2 1]" {
			t.Fatalf("newest first: %v", seen)
		}
	})
}

func TestOperations(t *testing.T) {
	e := newEnv(t, loyalty.SQLite)
	e.do("GET", "/healthz", "", nil).must(t, 200)
	e.do("GET", "/readyz", "", nil).must(t, 200)
	m := e.enrol()
	e.buy(m, 1000, "R-1")
	metrics := string(e.do("GET", "/metrics", e.admin(), nil).must(t, 200).Body)
	for _, want := range []string{"loyalty_purchases_total 1", "loyalty_points_issued_total 10", `route="/v1/purchases"`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	e.store.Close()
	r := e.do("GET", "/readyz", "", nil).must(t, 503)
	if r.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("content type %q", r.Header.Get("Content-Type"))
	}
	e.do("GET", "/v1/members/"+m+"/balance", e.admin(), nil).must(t, 503)
	e.do("GET", "/healthz", "", nil).must(t, 200)
}
