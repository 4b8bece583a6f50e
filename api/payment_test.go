package api

import (
	"fmt"
	"sync"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// Points as payment at the till (§16).

// enablePayments sets the Sephora rules: 500 points pay 10.00, in steps of
// 500, up to the whole basket.
func (e *env) enablePayments() {
	e.t.Helper()
	e.do("PUT", "/v1/program", e.marketer(), map[string]any{"points_payment": map[string]any{"enabled": true,
		"points_per_unit": "50", "min_points": 500, "step_points": 500, "max_share": "1"}}).must(e.t, 200)
}

// grant credits points to member by an adjustment.
func (e *env) grant(member string, points int64) {
	e.t.Helper()
	e.do("POST", "/v1/members/"+member+"/adjustments", e.admin(), map[string]any{"points": points, "reason": "opening"}).must(e.t, 201)
}

// payBody is a purchase of total paying points.
func payBody(member string, total, points int64, extID string) map[string]any {
	return map[string]any{"member_id": member, "external_id": extID, "store_id": "store-1", "currency": "USD",
		"total": total, "points_payment": points}
}

// ledgerKinds sums a member's listed entries by kind.
func (e *env) ledgerKinds(member string) map[string]int64 {
	e.t.Helper()
	out := map[string]int64{}
	pages := e.ledgerPages(member, 500)
	for items, ok := pages(); ok; items, ok = pages() {
		for _, en := range items {
			out[en.Kind] += en.Points
		}
	}
	return out
}

func TestPaymentPaysAndEarnsInOnePurchase(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		e.enablePayments()
		m := e.enrol()
		e.grant(m, 1000)

		body := payBody(m, 10000, 500, "R-1")
		r := e.do("POST", "/v1/purchases", e.pos(), body).must(t, 201)
		p := r.JSON(t)
		pay := p["points_payment"].(map[string]any)
		// 500 points pay 10.00; the cash part, 90.00, earns 90 at Insider.
		if num(pay["points"]) != 500 || num(pay["amount"]) != 1000 || num(p["points_earned"]) != 90 {
			t.Fatalf("answer %s", r.Body)
		}
		if got := num(p["balance"].(map[string]any)["available"]); got != 1000-500+90 {
			t.Fatalf("balance after both: available %d, want 590", got)
		}
		b := e.balance(m)
		if b.Available != 590 || b.QualifyingSpend != 9000 || b.LifetimeRedeemed != 500 {
			t.Fatalf("balance %+v", b)
		}
		if k := e.ledgerKinds(m); k["payment"] != -500 || k["earn"] != 90 {
			t.Fatalf("ledger by kind %v", k)
		}
		got := e.do("GET", "/v1/purchases/"+p["id"].(string), e.pos(), nil).must(t, 200).JSON(t)
		if gp := got["points_payment"].(map[string]any); num(gp["points"]) != 500 || num(gp["amount"]) != 1000 {
			t.Fatalf("stored purchase %v", got)
		}

		t.Run("Replay", func(t *testing.T) {
			again := e.do("POST", "/v1/purchases", e.pos(), body).must(t, 201)
			if string(again.Body) != string(r.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("replay %s (%v), first %s", again.Body, again.Header, r.Body)
			}
			changed := payBody(m, 10000, 1000, "R-1")
			e.do("POST", "/v1/purchases", e.pos(), changed).must(t, 409)
			keyed := payBody(m, 5000, 500, "")
			first := e.do("POST", "/v1/purchases", e.pos(), keyed, "Idempotency-Key", "pay-k1").must(t, 201)
			second := e.do("POST", "/v1/purchases", e.pos(), keyed, "Idempotency-Key", "pay-k1").must(t, 201)
			if string(first.Body) != string(second.Body) || second.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("keyed replay %s, first %s", second.Body, first.Body)
			}
			if b := e.balance(m); b.Available != 590-500+40 {
				t.Fatalf("replays paid again: %+v", b)
			}
		})

		t.Run("Rules", func(t *testing.T) {
			before := e.balance(m)
			for _, c := range []struct {
				name          string
				total, points int64
				status        int
			}{
				{"NotAStep", 10000, 250, 422},
				{"AboveTheBasket", 900, 500, 422},
				{"Negative", 10000, -500, 422},
				{"InsufficientPoints", 100000, 1000, 409},
			} {
				r := e.do("POST", "/v1/purchases", e.pos(), payBody(m, c.total, c.points, "X-"+c.name))
				if r.Status != c.status {
					t.Errorf("%s: status %d, want %d: %s", c.name, r.Status, c.status, r.Body)
				}
				if c.status == 409 && fmt.Sprint(r.JSON(t)["code"]) != "insufficient_points" {
					t.Errorf("%s: %s", c.name, r.Body)
				}
			}
			if b := e.balance(m); b.Available != before.Available || b.QualifyingSpend != before.QualifyingSpend {
				t.Fatalf("refused payments changed the balance: %+v, was %+v", b, before)
			}
		})

		t.Run("Disabled", func(t *testing.T) {
			e.do("PUT", "/v1/program", e.marketer(), map[string]any{"points_payment": map[string]any{"enabled": false,
				"points_per_unit": "50", "min_points": 500, "step_points": 500, "max_share": "1"}}).must(t, 200)
			e.do("POST", "/v1/purchases", e.pos(), payBody(m, 10000, 500, "D-1")).must(t, 422)
			q := e.do("POST", "/v1/purchases/quote", e.pos(), map[string]any{"member_id": m, "total": 10000}).must(t, 200).JSON(t)
			if num(q["points_payment_max"]) != 0 {
				t.Fatalf("quote while disabled %v", q)
			}
		})
		e.checkLedger()
	})
}

func TestPaymentQuoteThenPost(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		e.enablePayments()
		m := e.enrol()
		e.grant(m, 1200)
		doc := openapiDoc(t)
		conforms := func(method, path string, r resp) resp {
			t.Helper()
			openapiConforms(t, doc, method, path, r)
			return r
		}

		q := e.do("POST", "/v1/purchases/quote", e.pos(), map[string]any{"member_id": m, "total": 10000}).must(t, 200).JSON(t)
		if num(q["points_payment_max"]) != 1000 || q["points_payment"] != nil || num(q["points_earned"]) != 100 {
			t.Fatalf("quote without payment %v", q)
		}
		// A basket smaller than one step allows no payment.
		small := e.do("POST", "/v1/purchases/quote", e.pos(), map[string]any{"member_id": m, "total": 999}).must(t, 200).JSON(t)
		if num(small["points_payment_max"]) != 0 {
			t.Fatalf("quote of a small basket %v", small)
		}
		q = e.do("POST", "/v1/purchases/quote", e.pos(), map[string]any{"member_id": m, "total": 10000,
			"points_payment": q["points_payment_max"]}).must(t, 200).JSON(t)
		if pay := q["points_payment"].(map[string]any); num(pay["points"]) != 1000 || num(pay["amount"]) != 2000 || num(q["points_earned"]) != 80 {
			t.Fatalf("quote with payment %v", q)
		}
		if k := e.ledgerKinds(m); k["payment"] != 0 {
			t.Fatalf("the quote wrote %v", k)
		}
		conforms("POST", "/v1/purchases/quote", e.do("POST", "/v1/purchases/quote", e.pos(), payBody(m, 10000, 1000, "")))
		p := conforms("POST", "/v1/purchases", e.do("POST", "/v1/purchases", e.pos(), payBody(m, 10000, 1000, "R-1"))).must(t, 201).JSON(t)
		conforms("GET", "/v1/purchases/{id}", e.do("GET", "/v1/purchases/"+p["id"].(string), e.pos(), nil))
		conforms("POST", "/v1/purchases/{id}/returns", e.do("POST", "/v1/purchases/"+p["id"].(string)+"/returns", e.pos(),
			map[string]any{"external_id": "RET-1", "amount": 5000}))
		if num(p["points_earned"]) != num(q["points_earned"]) || fmt.Sprint(p["points_payment"]) != fmt.Sprint(q["points_payment"]) {
			t.Fatalf("posted %v, quoted %v", p, q)
		}
		// The return of half refunded 500 and reversed 40.
		if b := e.balance(m); b.Available != 1200-1000+80+500-40 {
			t.Fatalf("balance %+v", b)
		}
		e.checkLedger()
	})
}

func TestPaymentsNeverOverdraw(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.enablePayments()
		m := e.enrol()
		const n, k = 20, 5
		e.grant(m, k*500+499)
		var mu sync.Mutex
		status := map[int]int{}
		calls := make([]func(), n)
		for i := range calls {
			calls[i] = func() {
				r := e.do("POST", "/v1/purchases", e.pos(), payBody(m, 1000, 500, fmt.Sprintf("C-%d", i)))
				mu.Lock()
				status[r.Status]++
				mu.Unlock()
			}
		}
		loyaltytest.Together(calls...)
		if status[201] != k || status[409] != n-k {
			t.Fatalf("statuses %v, want %d × 201 and %d × 409", status, k, n-k)
		}
		// Every paying purchase paid 10.00 of 10.00: nothing earned.
		if b := e.balance(m); b.Available != 499 || b.LifetimeRedeemed != k*500 {
			t.Fatalf("balance %+v", b)
		}
		if kinds := e.ledgerKinds(m); kinds["payment"] != -k*500 {
			t.Fatalf("ledger %v", kinds)
		}
		e.checkLedger()
	})
}

func TestPaymentRefundsOnReturns(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		e.enablePayments()
		m := e.enrol()
		e.grant(m, 1000)
		// 1000 points pay 20.00 of 30.00; the cash part, 10.00, earns 10.
		p := e.do("POST", "/v1/purchases", e.pos(), payBody(m, 3000, 1000, "R-1")).must(t, 201).JSON(t)
		id := p["id"].(string)
		if b := e.balance(m); b.Available != 10 || b.QualifyingSpend != 1000 {
			t.Fatalf("after the purchase %+v", b)
		}
		rate := func() int64 {
			var r struct {
				PointsRedeemed int64 `json:"points_redeemed"`
			}
			e.do("GET", "/v1/analytics/redemption-rate?from=2026-03-01&to=2026-03-01", e.marketer(), nil).must(t, 200).Decode(t, &r)
			return r.PointsRedeemed
		}
		if got := rate(); got != 1000 {
			t.Fatalf("redeemed %d, want the payment's 1000", got)
		}
		steps := []struct {
			refunded, available, spend int64
		}{
			// ⌊1000 · 1000 / 3000⌋ = 333 twice, then the rest; the earned 10
			// reverse 3, 3, 4; the cash part returned is 1000 − ⌊2000 ·
			// 1000 / 3000⌋ = 334, 334, then 332.
			{333, 10 + 333 - 3, 666},
			{333, 10 + 666 - 6, 332},
			{334, 1000, 0},
		}
		for i, s := range steps {
			r := e.do("POST", "/v1/purchases/"+id+"/returns", e.pos(), map[string]any{"external_id": fmt.Sprintf("RET-%d", i), "amount": 1000}).
				must(t, 201).JSON(t)
			if num(r["points_refunded"]) != s.refunded {
				t.Fatalf("return %d: %v", i, r)
			}
			if b := e.balance(m); b.Available != s.available || b.QualifyingSpend != s.spend {
				t.Fatalf("return %d: balance %+v, want available %d, spend %d", i, b, s.available, s.spend)
			}
		}
		if k := e.ledgerKinds(m); k["payment"]+k["payment_refund"] != 0 || k["earn"]+k["return"] != 0 {
			t.Fatalf("after a full return, ledger %v", k)
		}
		got := e.do("GET", "/v1/purchases/"+id, e.pos(), nil).must(t, 200).JSON(t)
		if num(got["points_refunded"]) != 1000 {
			t.Fatalf("stored purchase %v", got)
		}
		if got := rate(); got != 0 {
			t.Fatalf("redeemed %d after the refunds, want 0", got)
		}
		if b := e.balance(m); b.LifetimeRedeemed != 0 {
			t.Fatalf("lifetime redeemed %d", b.LifetimeRedeemed)
		}
		e.checkLedger()
	})
}

func TestPaymentRefundIntoExpiredLots(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.enablePayments()
		m := e.enrol()
		t0 := e.clock.Now()
		e.grant(m, 1000) // expires at t0 + 365 days
		e.clock.Set(t0.AddDate(0, 0, 300))
		p := e.do("POST", "/v1/purchases", e.pos(), payBody(m, 10000, 1000, "R-1")).must(t, 201).JSON(t)
		// The cash part, 80.00, earns 80 expiring a year after the purchase.
		if b := e.balance(m); b.Available != 80 {
			t.Fatalf("after the purchase %+v", b)
		}
		e.clock.Set(t0.AddDate(0, 0, 400))
		r := e.do("POST", "/v1/purchases/"+p["id"].(string)+"/returns", e.pos(), map[string]any{"external_id": "RET-1", "amount": 10000}).
			must(t, 201).JSON(t)
		if num(r["points_refunded"]) != 1000 || num(r["points_reversed"]) != 80 {
			t.Fatalf("return %v", r)
		}
		// The paid points came from a lot that expired meanwhile: they come
		// back expired, and nothing is spendable.
		if b := e.balance(m); b.Available != 0 || b.Pending != 0 {
			t.Fatalf("refund into expired lots became spendable: %+v", b)
		}
		if k := e.ledgerKinds(m); k["payment_refund"] != 1000 || k["expire"] != -1000 {
			t.Fatalf("ledger %v", k)
		}
		// The stored entries hold the expiry once the job stores it (the
		// listing shows it from the lot's expires_at on, §7).
		e.do("POST", "/v1/jobs/expire-points/run", e.marketer(), nil).must(t, 200)
		if b := e.balance(m); b.Available != 0 {
			t.Fatalf("after expire-points %+v", b)
		}
		e.do("POST", "/v1/purchases", e.pos(), payBody(m, 10000, 500, "R-2")).must(t, 409)
		e.checkLedger()
	})
}
