package console_test

import (
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/rewards"
)

// formValues reads the values of the named inputs of a page's form, as a
// browser would send them back unchanged.
func formValues(t testing.TB, p page, names ...string) url.Values {
	t.Helper()
	out := url.Values{}
	for _, n := range names {
		m := regexp.MustCompile(`name="` + regexp.QuoteMeta(n) + `"[^>]*value="([^"]*)"`).FindStringSubmatch(p.Body)
		if m == nil {
			t.Fatalf("no input %q on the page: %.3000s", n, p.Body)
		}
		out.Set(n, m[1])
	}
	return out
}

// TestRewardEditKeepsStockTaken edits a reward through the console form
// while members redeem it: the form was drawn with the stock of that
// moment, and saving it with the stock field untouched must not put back
// the units redeemed since. A stock the operator types in is still set.
func TestRewardEditKeepsStockTaken(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		ctx := context.Background()
		var in rewards.RewardInput
		if err := json.Unmarshal([]byte(`{"code":"tote","name":"Tote","cost_points":10,"stock":5}`), &in); err != nil {
			t.Fatal(err)
		}
		rw, _, err := e.rw.Create(ctx, in, loyalty.IdempotencyKey{})
		if err != nil {
			t.Fatal(err)
		}
		admin := loyalty.Principal{Subject: "op", Role: loyalty.RoleAdmin}
		m := e.enrol()
		pts := int64(100)
		if _, _, err := e.svc.Adjust(ctx, admin, m.ID, loyalty.AdjustmentInput{Points: &pts, Reason: "test"}, loyalty.IdempotencyKey{}); err != nil {
			t.Fatal(err)
		}
		mk := e.client()
		csrf := mk.signIn(e.token(loyalty.RoleMarketer, "mk-1"))

		edit := mk.get("/console/rewards/"+rw.ID).must(t, 200).contains(t, `name="stock" type="number" min="0" value="5"`)
		// Two coupons are taken while the operator is on the page.
		for i := 0; i < 2; i++ {
			if _, _, err := e.rw.Redeem(ctx, admin, m.ID, rewards.RedeemInput{RewardID: rw.ID}, loyalty.IdempotencyKey{}); err != nil {
				t.Fatal(err)
			}
		}
		form := formValues(t, edit, "code", "cost_points", "stock", "stock_shown")
		form.Set("name", "Canvas tote")
		form.Set("active", "1")
		mk.post("/console/rewards/"+rw.ID, csrf, form).must(t, 303)
		got, err := e.rw.Get(ctx, rw.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "Canvas tote" || got.Stock == nil || *got.Stock != 3 {
			t.Fatalf("after saving the form drawn at stock 5 with 2 redeemed since: name %q, stock %v, want 3", got.Name, deref(got.Stock))
		}

		// The operator restocks: the number typed is the stock.
		edit = mk.get("/console/rewards/"+rw.ID).must(t, 200)
		form = formValues(t, edit, "code", "name", "cost_points", "stock_shown")
		form.Set("stock", "40")
		form.Set("active", "1")
		mk.post("/console/rewards/"+rw.ID, csrf, form).must(t, 303)
		if got, _ := e.rw.Get(ctx, rw.ID); got.Stock == nil || *got.Stock != 40 {
			t.Fatalf("stock %v after typing 40", deref(got.Stock))
		}
	})
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
