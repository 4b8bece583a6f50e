package api

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

func TestSmokeOffersAndGifts(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		o := e.do("POST", "/v1/offers", e.marketer(), map[string]any{"code": "skin-x2", "name": "x2 skincare", "kind": "multiplier", "multiplier": "2",
			"conditions": map[string]any{"categories": []string{"skincare"}}, "target": map[string]any{"all": true}}).must(t, 201).JSON(t)
		e.do("POST", "/v1/offers", e.marketer(), map[string]any{"code": "bonus50", "name": "50 bonus", "kind": "bonus", "bonus_points": 50,
			"conditions": map[string]any{"min_spend": 5000}, "target": map[string]any{"member_ids": []string{m}}, "max_uses_per_member": 1}).must(t, 201)
		r := e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": m, "total": 10000, "items": []map[string]any{
			{"sku": "A", "category": "skincare", "amount": 4000}, {"sku": "B", "category": "makeup", "amount": 6000}}}).must(t, 201).JSON(t)
		if num(r["points_earned"]) != 100+40+50 {
			t.Fatalf("%v", r)
		}
		_ = o
		r = e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": m, "total": 10000}).must(t, 201).JSON(t)
		if num(r["points_earned"]) != 100 {
			t.Fatalf("second %v", r)
		}
		l := e.do("GET", "/v1/members/"+m+"/offers", e.token(loyalty.RoleMember, m), nil).must(t, 200).JSON(t)
		if len(l["items"].([]any)) != 2 {
			t.Fatalf("%v", l)
		}
		// Birthday gift
		rw := e.do("POST", "/v1/rewards", e.marketer(), map[string]any{"code": "mini", "name": "Mini", "cost_points": 500}).must(t, 201).JSON(t)
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"birthday_gift": map[string]any{"enabled": true, "reward_ids": []string{rw["id"].(string)}, "bonus_points": 25, "claim_days": 30}}).must(t, 200)
		e.do("PATCH", "/v1/members/"+m, e.pos(), map[string]any{"birthday": "1990-03-01", "timezone": "Asia/Tokyo"}).must(t, 200)
		run := e.do("POST", "/v1/jobs/birthday-gifts/run", e.marketer(), map[string]any{"as_of": "2026-03-01T00:00:00Z"}).must(t, 200).JSON(t)
		if run["status"] != "succeeded" {
			t.Fatalf("%v", run)
		}
		e.do("POST", "/v1/jobs/birthday-gifts/run", e.marketer(), map[string]any{"as_of": "2026-03-01T01:00:00Z"}).must(t, 200)
		g := e.do("GET", "/v1/members/"+m+"/gifts", e.admin(), nil).must(t, 200).JSON(t)["items"].([]any)
		if len(g) != 1 {
			t.Fatalf("gifts %v / run %v", g, run)
		}
		gid := g[0].(map[string]any)["id"].(string)
		e.do("POST", "/v1/members/"+m+"/gifts/"+gid+"/claim", e.token(loyalty.RoleMember, m), map[string]any{"reward_id": rw["id"]}).must(t, 201)
		e.do("POST", "/v1/members/"+m+"/gifts/"+gid+"/claim", e.token(loyalty.RoleMember, m), map[string]any{"reward_id": rw["id"]}).must(t, 409)
		if b := e.balance(m); b.Available != 290+25 {
			t.Fatalf("balance %+v", b)
		}
		e.checkLedger()
		// personal offers
		e.do("POST", "/v1/offer-templates", e.marketer(), map[string]any{"code": "fav", "name": "x2 fav", "kind": "multiplier", "multiplier": "2", "min_purchases": 1}).must(t, 201)
		e.clock.Advance(time.Hour)
		run = e.do("POST", "/v1/jobs/personal-offers/run", e.marketer(), nil).must(t, 200).JSON(t)
		if run["summary"].(map[string]any)["offers"].(float64) != 1 {
			t.Fatalf("%v", run)
		}
		run = e.do("POST", "/v1/jobs/personal-offers/run", e.marketer(), nil).must(t, 200).JSON(t)
		if run["summary"].(map[string]any)["offers"].(float64) != 0 {
			t.Fatalf("%v", run)
		}
	})
}

func TestBirthdayJobAnswersToBothNames(t *testing.T) {
	e := newEnv(t, loyalty.SQLite)
	for _, name := range []string{"birthday-gifts", "birthday-gift"} {
		r := e.do("POST", "/v1/jobs/"+name+"/run", e.marketer(), nil).must(t, 200).JSON(t)
		if r["name"] != "birthday-gifts" || r["status"] != "succeeded" {
			t.Fatalf("%s: %v", name, r)
		}
	}
	e.do("POST", "/v1/jobs/no-such-job/run", e.marketer(), nil).must(t, 404)
}

func TestRateLimitPerCaller(t *testing.T) { loyaltytest.Each(t, testRateLimitPerCaller) }

func testRateLimitPerCaller(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	e.app = New(e.svc, Config{Auth: e.auth, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), RateLimit: 3}, NewMetrics())
	tok := e.pos()
	for i := 0; i < 3; i++ {
		e.do("GET", "/v1/tiers", tok, nil).must(t, 200)
	}
	r := e.do("GET", "/v1/tiers", tok, nil).must(t, 429)
	if r.JSON(t)["code"] != "rate_limited" || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%s", r.Body)
	}
	// Another caller has its own allowance.
	e.do("GET", "/v1/tiers", e.token(loyalty.RolePOS, "till-2"), nil).must(t, 200)
}
