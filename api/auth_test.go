package api

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

var allRoles = []loyalty.Role{loyalty.RoleAdmin, loyalty.RoleMarketer, loyalty.RolePOS, loyalty.RoleMember}

// newAuthEnv is newEnv with the token verification configured by auth, for
// the issuer and audience checks.
func newAuthEnv(t testing.TB, dialect string, auth AuthConfig) *env {
	t.Helper()
	e := &env{t: t, dialect: dialect, clock: loyaltytest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)),
		auth: auth}
	e.store = loyaltytest.MustOpen(t, dialect)
	m := NewMetrics()
	e.svc = loyalty.NewService(e.store, loyalty.WithClock(e.clock.Now), loyalty.WithObserver(m))
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	e.app = New(e.svc, Config{Auth: e.auth, Logger: log}, m)
	return e
}

// assertProblem checks that r is an RFC 9457 problem document of status:
// the content type, and type, title, status and detail in the body. When
// field is not empty the errors array must name it (exactly, or as the
// prefix of a nested field such as items[0].amount).
func assertProblem(t testing.TB, r resp, status int, field string) {
	t.Helper()
	if r.Status >= 500 {
		t.Errorf("status %d: bad input must never yield a 5xx: %s", r.Status, r.Body)
		return
	}
	if r.Status != status {
		t.Errorf("status %d, want %d: %s", r.Status, status, r.Body)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p struct {
		Type   *string `json:"type"`
		Title  *string `json:"title"`
		Status *int    `json:"status"`
		Detail *string `json:"detail"`
		Errors []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Errorf("problem body is not JSON: %v: %s", err, r.Body)
		return
	}
	switch {
	case p.Type == nil || *p.Type == "":
		t.Errorf("problem has no type: %s", r.Body)
	case p.Title == nil || *p.Title == "":
		t.Errorf("problem has no title: %s", r.Body)
	case p.Status == nil || *p.Status != r.Status:
		t.Errorf("problem status does not repeat the HTTP status %d: %s", r.Status, r.Body)
	case p.Detail == nil || *p.Detail == "":
		t.Errorf("problem has no detail: %s", r.Body)
	}
	if status == http.StatusUnprocessableEntity && field != "" {
		if len(p.Errors) == 0 {
			t.Errorf("422 without an errors array: %s", r.Body)
			return
		}
		for _, fe := range p.Errors {
			if fe.Field == field || strings.HasPrefix(fe.Field, field+".") || strings.HasPrefix(fe.Field, field+"[") {
				return
			}
		}
		t.Errorf("errors do not name field %q: %s", field, r.Body)
	}
}

// assertUnauthorized checks a 401 problem with a WWW-Authenticate challenge.
func assertUnauthorized(t testing.TB, r resp) {
	t.Helper()
	assertProblem(t, r, http.StatusUnauthorized, "")
	if r.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without WWW-Authenticate: %s", r.Body)
	}
}

// matrixRoute is one route of the /v1 group: build makes the path and body
// of one call by role (with fresh fixtures where the call consumes them);
// roles may call it, answered with ok.
type matrixRoute struct {
	method string
	route  string // the route template, for names
	build  func(role loyalty.Role) (path string, body any)
	roles  []loyalty.Role
	ok     int
}

func TestRoleMatrix(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		own := e.enrol()
		pur := e.buy(own, 10000, "RM-PURCHASE")["id"].(string)
		const (
			admin    = loyalty.RoleAdmin
			marketer = loyalty.RoleMarketer
			pos      = loyalty.RolePOS
		)
		n := 0
		next := func() int { n++; return n }
		// Rewards fixtures: points to spend, a paid reward, a redemption
		// to read and a coupon to look up. Cancelling and using consume a
		// redemption, so those calls each get a fresh one.
		e.do("POST", "/v1/members/"+own+"/adjustments", e.admin(), map[string]any{"points": 1000, "reason": "matrix"}).must(t, 201)
		newReward := func() string {
			return e.do("POST", "/v1/rewards", e.admin(), map[string]any{"code": fmt.Sprintf("rm-reward-%d", next()),
				"name": "Matrix reward", "cost_points": 10}).must(t, 201).JSON(t)["id"].(string)
		}
		reward := newReward()
		redeem := func() map[string]any {
			return e.do("POST", "/v1/members/"+own+"/redemptions", e.admin(), map[string]any{"reward_id": reward}).must(t, 201).JSON(t)
		}
		kept := redeem()
		keptID, keptCoupon := kept["id"].(string), kept["coupon_code"].(string)
		// Offers fixtures: an offer for every member that needs activation
		// and never applies (its minimum spend is out of reach), and a
		// template. Activating twice is harmless, so every call reuses them.
		offer := e.do("POST", "/v1/offers", e.admin(), map[string]any{"code": "rm-offer", "name": "Matrix offer", "kind": "bonus",
			"bonus_points": 5, "conditions": map[string]any{"min_spend": 1_000_000_000}, "target": map[string]any{"all": true},
			"requires_activation": true}).must(t, 201).JSON(t)["id"].(string)
		template := e.do("POST", "/v1/offer-templates", e.admin(), map[string]any{"code": "rm-template", "name": "Matrix template",
			"kind": "bonus", "bonus_points": 5, "active": false}).must(t, 201).JSON(t)["id"].(string)
		// Birthday gifts: the job gives own, and every member born on the
		// clock's day, a gift of a free reward. A claim consumes its gift, so
		// a member claims own's and the other roles each a fresh member's.
		giftReward := e.do("POST", "/v1/rewards", e.admin(), map[string]any{"code": "rm-gift", "name": "Matrix gift",
			"cost_points": 0}).must(t, 201).JSON(t)["id"].(string)
		e.do("PUT", "/v1/program", e.admin(), map[string]any{"birthday_gift": map[string]any{"enabled": true,
			"reward_ids": []string{giftReward}, "bonus_points": 0, "claim_days": 30}}).must(t, 200)
		birthday := e.clock.Now().AddDate(-36, 0, 0).Format(time.DateOnly)
		e.do("PATCH", "/v1/members/"+own, e.admin(), map[string]any{"birthday": birthday}).must(t, 200)
		runJob := func(name string) {
			if run := e.do("POST", "/v1/jobs/"+name+"/run", e.admin(), nil).must(t, 200).JSON(t); run["status"] != "succeeded" {
				t.Fatalf("job %s: %v", name, run)
			}
		}
		giftOf := func(member string) string {
			runJob("birthday-gifts")
			var l struct {
				Items []struct {
					ID string `json:"id"`
				} `json:"items"`
			}
			e.do("GET", "/v1/members/"+member+"/gifts", e.admin(), nil).must(t, 200).Decode(t, &l)
			if len(l.Items) != 1 {
				t.Fatalf("member %s has %d gifts, want 1", member, len(l.Items))
			}
			return l.Items[0].ID
		}
		ownGift := giftOf(own)
		// Churn: a few members' purchases over two months, then the model.
		for i, days := range [][]int{{60, 30, 2}, {45, 5}, {20}} {
			m := e.enrol()
			for _, d := range days {
				e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": m, "external_id": fmt.Sprintf("RM-H-%d-%d", i, d),
					"store_id": "store-1", "currency": "USD", "total": 2000,
					"occurred_at": e.clock.Now().AddDate(0, 0, -d).Format(time.RFC3339)}).must(t, 201)
			}
		}
		runJob("churn-risk")
		// Webhooks: an endpoint kept, and a fresh one for each delete.
		newHook := func() string {
			return e.do("POST", "/v1/webhooks", e.admin(), map[string]any{"url": "https://rm.example/h", "events": []string{"*"}}).
				must(t, 201).JSON(t)["id"].(string)
		}
		hook := newHook()
		// An import, ended, to read.
		imp, err := e.svc.BeginImport(context.Background(), loyalty.ImportOptions{Kind: loyalty.ImportMembers, DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.RunImport(context.Background(), imp.ID, strings.NewReader("external_id\nrm-x\n")); err != nil {
			t.Fatal(err)
		}
		routes := []matrixRoute{
			{"GET", "/v1/program", func(loyalty.Role) (string, any) { return "/v1/program", nil },
				[]loyalty.Role{marketer, admin}, 200},
			{"PUT", "/v1/program", func(loyalty.Role) (string, any) {
				return "/v1/program", map[string]any{"name": "Beauty Insider"}
			}, []loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/tiers", func(loyalty.Role) (string, any) { return "/v1/tiers", nil }, allRoles, 200},
			{"PUT", "/v1/tiers/:code", func(loyalty.Role) (string, any) {
				i := next()
				return fmt.Sprintf("/v1/tiers/extra-%d", i), map[string]any{"name": "Extra", "rank": 10 + i,
					"earn_multiplier": "2", "qualifying_spend": 1_000_000 + i}
			}, []loyalty.Role{marketer, admin}, 201},
			{"DELETE", "/v1/tiers/:code", func(loyalty.Role) (string, any) {
				i := next()
				code := fmt.Sprintf("gone-%d", i)
				e.do("PUT", "/v1/tiers/"+code, e.admin(), map[string]any{"name": "Gone", "rank": 100 + i,
					"earn_multiplier": "3", "qualifying_spend": 10_000_000 + i}).must(t, 201)
				return "/v1/tiers/" + code, nil
			}, []loyalty.Role{marketer, admin}, 204},
			{"POST", "/v1/members", func(loyalty.Role) (string, any) {
				return "/v1/members", map[string]any{"external_id": fmt.Sprintf("RM-M-%d", next())}
			}, []loyalty.Role{pos, marketer, admin}, 201},
			{"GET", "/v1/members", func(loyalty.Role) (string, any) { return "/v1/members?external_id=RM-M-1", nil },
				[]loyalty.Role{pos, marketer, admin}, 200},
			{"GET", "/v1/members/:id", func(loyalty.Role) (string, any) { return "/v1/members/" + own, nil }, allRoles, 200},
			{"PATCH", "/v1/members/:id", func(loyalty.Role) (string, any) {
				return "/v1/members/" + own, map[string]any{"first_name": "Ann"}
			}, allRoles, 200},
			{"DELETE", "/v1/members/:id", func(loyalty.Role) (string, any) { return "/v1/members/" + e.enrol(), nil },
				[]loyalty.Role{admin}, 204},
			{"GET", "/v1/members/:id/balance", func(loyalty.Role) (string, any) {
				return "/v1/members/" + own + "/balance", nil
			}, allRoles, 200},
			{"GET", "/v1/members/:id/balance/stream", func(loyalty.Role) (string, any) {
				return "/v1/members/" + own + "/balance/stream", nil
			}, []loyalty.Role{loyalty.RoleMember, pos, admin}, 200},
			{"GET", "/v1/members/:id/ledger", func(loyalty.Role) (string, any) {
				return "/v1/members/" + own + "/ledger", nil
			}, allRoles, 200},
			{"POST", "/v1/members/:id/adjustments", func(loyalty.Role) (string, any) {
				return "/v1/members/" + own + "/adjustments", map[string]any{"points": 10, "reason": "goodwill"}
			}, []loyalty.Role{admin}, 201},
			{"POST", "/v1/purchases/quote", func(loyalty.Role) (string, any) {
				return "/v1/purchases/quote", map[string]any{"member_id": own, "currency": "USD", "total": 1000}
			}, []loyalty.Role{pos, admin}, 200},
			{"POST", "/v1/purchases", func(loyalty.Role) (string, any) {
				return "/v1/purchases", map[string]any{"member_id": own, "external_id": fmt.Sprintf("RM-P-%d", next()),
					"store_id": "store-1", "currency": "USD", "total": 1000}
			}, []loyalty.Role{pos, admin}, 201},
			{"POST", "/v1/purchases/batch", func(loyalty.Role) (string, any) {
				return "/v1/purchases/batch", map[string]any{"purchases": []any{map[string]any{"member_id": own,
					"external_id": fmt.Sprintf("RM-B-%d", next()), "store_id": "store-1", "currency": "USD", "total": 1000}}}
			}, []loyalty.Role{pos, admin}, 200},
			{"GET", "/v1/purchases/:id", func(loyalty.Role) (string, any) { return "/v1/purchases/" + pur, nil }, allRoles, 200},
			{"POST", "/v1/purchases/:id/returns", func(loyalty.Role) (string, any) {
				return "/v1/purchases/" + pur + "/returns", map[string]any{"external_id": fmt.Sprintf("RM-R-%d", next()), "amount": 100}
			}, []loyalty.Role{pos, admin}, 201},
			{"POST", "/v1/rewards", func(loyalty.Role) (string, any) {
				return "/v1/rewards", map[string]any{"code": fmt.Sprintf("rm-new-%d", next()), "name": "New", "cost_points": 0}
			}, []loyalty.Role{marketer, admin}, 201},
			{"GET", "/v1/rewards", func(loyalty.Role) (string, any) { return "/v1/rewards", nil }, allRoles, 200},
			{"GET", "/v1/rewards/:id", func(loyalty.Role) (string, any) { return "/v1/rewards/" + reward, nil }, allRoles, 200},
			{"PATCH", "/v1/rewards/:id", func(loyalty.Role) (string, any) {
				return "/v1/rewards/" + reward, map[string]any{"description": fmt.Sprintf("changed %d", next())}
			}, []loyalty.Role{marketer, admin}, 200},
			{"DELETE", "/v1/rewards/:id", func(loyalty.Role) (string, any) { return "/v1/rewards/" + newReward(), nil },
				[]loyalty.Role{marketer, admin}, 204},
			{"POST", "/v1/members/:id/redemptions", func(loyalty.Role) (string, any) {
				return "/v1/members/" + own + "/redemptions", map[string]any{"reward_id": reward}
			}, []loyalty.Role{loyalty.RoleMember, pos, admin}, 201},
			{"GET", "/v1/members/:id/redemptions", func(loyalty.Role) (string, any) {
				return "/v1/members/" + own + "/redemptions", nil
			}, allRoles, 200},
			{"GET", "/v1/redemptions/:id", func(loyalty.Role) (string, any) { return "/v1/redemptions/" + keptID, nil }, allRoles, 200},
			{"POST", "/v1/redemptions/:id/cancel", func(loyalty.Role) (string, any) {
				return "/v1/redemptions/" + redeem()["id"].(string) + "/cancel", nil
			}, []loyalty.Role{loyalty.RoleMember, pos, admin}, 200},
			{"GET", "/v1/coupons/:code", func(loyalty.Role) (string, any) { return "/v1/coupons/" + keptCoupon, nil },
				[]loyalty.Role{pos, admin}, 200},
			{"POST", "/v1/coupons/:code/use", func(loyalty.Role) (string, any) {
				return "/v1/coupons/" + redeem()["coupon_code"].(string) + "/use", nil
			}, []loyalty.Role{pos, admin}, 200},
			{"POST", "/v1/offers", func(loyalty.Role) (string, any) {
				return "/v1/offers", map[string]any{"code": fmt.Sprintf("rm-offer-%d", next()), "name": "New offer", "kind": "bonus",
					"bonus_points": 1}
			}, []loyalty.Role{marketer, admin}, 201},
			{"GET", "/v1/offers", func(loyalty.Role) (string, any) { return "/v1/offers", nil }, []loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/offers/:id", func(loyalty.Role) (string, any) { return "/v1/offers/" + offer, nil },
				[]loyalty.Role{marketer, admin}, 200},
			{"PATCH", "/v1/offers/:id", func(loyalty.Role) (string, any) {
				return "/v1/offers/" + offer, map[string]any{"name": fmt.Sprintf("Matrix offer %d", next())}
			}, []loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/offers/:id/reach", func(loyalty.Role) (string, any) { return "/v1/offers/" + offer + "/reach", nil },
				[]loyalty.Role{marketer, admin}, 200},
			{"POST", "/v1/offer-templates", func(loyalty.Role) (string, any) {
				return "/v1/offer-templates", map[string]any{"code": fmt.Sprintf("rm-template-%d", next()), "name": "New template",
					"kind": "bonus", "bonus_points": 1, "active": false}
			}, []loyalty.Role{marketer, admin}, 201},
			{"GET", "/v1/offer-templates", func(loyalty.Role) (string, any) { return "/v1/offer-templates", nil },
				[]loyalty.Role{marketer, admin}, 200},
			{"PATCH", "/v1/offer-templates/:id", func(loyalty.Role) (string, any) {
				return "/v1/offer-templates/" + template, map[string]any{"name": fmt.Sprintf("Matrix template %d", next())}
			}, []loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/members/:id/offers", func(loyalty.Role) (string, any) { return "/v1/members/" + own + "/offers", nil },
				allRoles, 200},
			{"POST", "/v1/members/:id/offers/:offer_id/activate", func(loyalty.Role) (string, any) {
				return "/v1/members/" + own + "/offers/" + offer + "/activate", nil
			}, []loyalty.Role{loyalty.RoleMember, pos, admin}, 200},
			{"GET", "/v1/members/:id/gifts", func(loyalty.Role) (string, any) { return "/v1/members/" + own + "/gifts", nil },
				allRoles, 200},
			{"POST", "/v1/members/:id/gifts/:gift_id/claim", func(role loyalty.Role) (string, any) {
				m, g := own, ownGift
				if role != loyalty.RoleMember {
					m = e.do("POST", "/v1/members", e.admin(), map[string]any{"external_id": fmt.Sprintf("RM-B-%d", next()),
						"birthday": birthday}).must(t, 201).JSON(t)["id"].(string)
					g = giftOf(m)
				}
				return "/v1/members/" + m + "/gifts/" + g + "/claim", map[string]any{"reward_id": giftReward}
			}, []loyalty.Role{loyalty.RoleMember, pos, admin}, 201},
			{"GET", "/v1/analytics/redemption-rate", func(loyalty.Role) (string, any) {
				return "/v1/analytics/redemption-rate?from=2026-02-01&to=2026-03-01", nil
			}, []loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/analytics/summary", func(loyalty.Role) (string, any) {
				return "/v1/analytics/summary?from=2026-02-01&to=2026-03-01", nil
			}, []loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/analytics/churn-model", func(loyalty.Role) (string, any) { return "/v1/analytics/churn-model", nil },
				[]loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/analytics/churn-risk", func(loyalty.Role) (string, any) {
				return "/v1/analytics/churn-risk?min_risk=0", nil
			}, []loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/analytics/cx", func(loyalty.Role) (string, any) { return "/v1/analytics/cx?group_by=store", nil },
				[]loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/analytics/clv-model", func(loyalty.Role) (string, any) { return "/v1/analytics/clv-model", nil },
				[]loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/analytics/clv", func(loyalty.Role) (string, any) { return "/v1/analytics/clv", nil },
				[]loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/analytics/store-categories", func(loyalty.Role) (string, any) {
				return "/v1/analytics/store-categories?store_id=store-1", nil
			}, []loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/analytics/category-lapse", func(loyalty.Role) (string, any) { return "/v1/analytics/category-lapse", nil },
				[]loyalty.Role{marketer, admin}, 200},
			{"POST", "/v1/feedback", func(role loyalty.Role) (string, any) {
				m := own
				if role != loyalty.RoleMember {
					m = e.do("POST", "/v1/members", e.admin(), map[string]any{"external_id": fmt.Sprintf("RM-F-%d", next())}).
						must(t, 201).JSON(t)["id"].(string)
				}
				return "/v1/feedback", map[string]any{"member_id": m, "kind": "nps", "score": 9}
			}, []loyalty.Role{loyalty.RoleMember, pos, admin}, 201},
			// Segments answer before any segments run.
			{"GET", "/v1/segments", func(loyalty.Role) (string, any) { return "/v1/segments", nil }, []loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/segments/:code/members", func(loyalty.Role) (string, any) { return "/v1/segments/loyal/members", nil },
				[]loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/members/export", func(loyalty.Role) (string, any) { return "/v1/members/export", nil }, []loyalty.Role{admin}, 200},
			{"GET", "/v1/ledger/export", func(loyalty.Role) (string, any) { return "/v1/ledger/export?from=2026-01-01&to=2026-03-01", nil },
				[]loyalty.Role{admin}, 200},
			{"GET", "/v1/jobs", func(loyalty.Role) (string, any) { return "/v1/jobs", nil }, []loyalty.Role{marketer, admin}, 200},
			{"POST", "/v1/jobs/:name/run", func(loyalty.Role) (string, any) { return "/v1/jobs/tier-review/run", nil },
				[]loyalty.Role{marketer, admin}, 200},
			{"GET", "/v1/audit", func(loyalty.Role) (string, any) { return "/v1/audit", nil }, []loyalty.Role{admin}, 200},
			{"GET", "/v1/events", func(loyalty.Role) (string, any) { return "/v1/events", nil }, []loyalty.Role{admin}, 200},
			{"POST", "/v1/imports", func(loyalty.Role) (string, any) {
				return fmt.Sprintf("/v1/imports?kind=members&dry_run=true&matrix=%d", next()), "external_id\nrm-y\n"
			}, []loyalty.Role{admin}, 202},
			{"GET", "/v1/imports/:id", func(loyalty.Role) (string, any) { return "/v1/imports/" + imp.ID, nil }, []loyalty.Role{admin}, 200},
			{"GET", "/v1/imports/:id/errors", func(loyalty.Role) (string, any) { return "/v1/imports/" + imp.ID + "/errors", nil },
				[]loyalty.Role{admin}, 200},
			{"POST", "/v1/webhooks", func(loyalty.Role) (string, any) {
				return "/v1/webhooks", map[string]any{"url": "https://rm.example/hook", "events": []string{"*"}}
			}, []loyalty.Role{admin}, 201},
			{"GET", "/v1/webhooks", func(loyalty.Role) (string, any) { return "/v1/webhooks", nil }, []loyalty.Role{admin}, 200},
			{"GET", "/v1/webhooks/:id", func(loyalty.Role) (string, any) { return "/v1/webhooks/" + hook, nil }, []loyalty.Role{admin}, 200},
			{"PATCH", "/v1/webhooks/:id", func(loyalty.Role) (string, any) {
				return "/v1/webhooks/" + hook, map[string]any{"description": fmt.Sprintf("matrix %d", next())}
			}, []loyalty.Role{admin}, 200},
			{"DELETE", "/v1/webhooks/:id", func(loyalty.Role) (string, any) { return "/v1/webhooks/" + newHook(), nil }, []loyalty.Role{admin}, 204},
			{"POST", "/v1/webhooks/:id/rotate-secret", func(loyalty.Role) (string, any) {
				return "/v1/webhooks/" + hook + "/rotate-secret", nil
			}, []loyalty.Role{admin}, 200},
			{"GET", "/v1/webhooks/:id/deliveries", func(loyalty.Role) (string, any) { return "/v1/webhooks/" + hook + "/deliveries", nil },
				[]loyalty.Role{admin}, 200},
			{"POST", "/v1/webhooks/:id/deliveries/:delivery_id/retry", func(loyalty.Role) (string, any) {
				// A dead letter, as the dispatcher leaves one.
				id := fmt.Sprintf("rm-dead-%d", next())
				if err := e.store.DB().Exec(`INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_position, event_type, status,
					attempts, created_at, updated_at) VALUES (?, ?, ?, 1, 'member.created', 'failed', 5, ?, ?)`,
					id, hook, next(), e.clock.Now(), e.clock.Now()).Error; err != nil {
					t.Fatal(err)
				}
				return "/v1/webhooks/" + hook + "/deliveries/" + id + "/retry", nil
			}, []loyalty.Role{admin}, 202},
		}
		// The matrix must list exactly the routes the app registers.
		registered := map[string]bool{}
		for _, r := range e.app.GetRoutes(true) {
			if strings.HasPrefix(r.Path, "/v1/") && r.Method != http.MethodHead {
				registered[r.Method+" "+r.Path] = true
			}
		}
		for _, rt := range routes {
			if !registered[rt.method+" "+rt.route] {
				t.Errorf("the matrix lists %s %s, which the app does not register", rt.method, rt.route)
			}
			delete(registered, rt.method+" "+rt.route)
		}
		for r := range registered {
			t.Errorf("route %s is missing from the matrix", r)
		}
		tokens := map[loyalty.Role]string{
			admin:              e.admin(),
			marketer:           e.marketer(),
			pos:                e.pos(),
			loyalty.RoleMember: e.token(loyalty.RoleMember, own),
		}
		for _, rt := range routes {
			for _, role := range allRoles {
				t.Run(rt.method+" "+rt.route+" as "+string(role), func(t *testing.T) {
					allowed := false
					for _, r := range rt.roles {
						allowed = allowed || r == role
					}
					path, body := rt.build(role)
					r := e.do(rt.method, path, tokens[role], body)
					if allowed {
						if r.Status != rt.ok {
							t.Errorf("allowed call: status %d, want %d: %s", r.Status, rt.ok, r.Body)
						}
						return
					}
					assertProblem(t, r, http.StatusForbidden, "")
				})
			}
			t.Run(rt.method+" "+rt.route+" without a token", func(t *testing.T) {
				path, body := rt.build(loyalty.RoleAdmin)
				assertUnauthorized(t, e.do(rt.method, path, "", body))
			})
		}
		t.Run("UnknownRoute", func(t *testing.T) {
			// Authentication comes before routing: without a token even an
			// unknown /v1 path is 401; with one it is a 404 problem.
			assertUnauthorized(t, e.do("GET", "/v1/no-such-route", "", nil))
			assertProblem(t, e.do("GET", "/v1/no-such-route", tokens[admin], nil), http.StatusNotFound, "")
		})
		// The calls above that were refused wrote nothing. Each route ran
		// once per role and once without a token: the rewards are the paid
		// one, the gift, the two created by marketer and admin and the five
		// made to be retired (two of them were); own's redemptions are the
		// kept one, the three allowed redemptions, the five made for each of
		// cancel and use, of which three were cancelled and two used, and its
		// gift claimed with a member token; the offers and the templates are
		// the fixture and the two created by marketer and admin.
		t.Run("RefusedCallsWroteNothing", func(t *testing.T) {
			var rw struct {
				Items []struct {
					Active bool `json:"active"`
				} `json:"items"`
			}
			e.do("GET", "/v1/rewards?include_retired=true&limit=500", e.admin(), nil).must(t, 200).Decode(t, &rw)
			active := 0
			for _, r := range rw.Items {
				if r.Active {
					active++
				}
			}
			if len(rw.Items) != 9 || active != 7 {
				t.Errorf("%d rewards, %d active; want 9, 7 active", len(rw.Items), active)
			}
			var rd struct {
				Items []struct {
					Status string `json:"status"`
				} `json:"items"`
			}
			e.do("GET", "/v1/members/"+own+"/redemptions?limit=500", e.admin(), nil).must(t, 200).Decode(t, &rd)
			count := map[string]int{}
			for _, r := range rd.Items {
				count[r.Status]++
			}
			if len(rd.Items) != 15 || count["issued"] != 10 || count["cancelled"] != 3 || count["used"] != 2 {
				t.Errorf("%d redemptions by status %v; want 15: 10 issued, 3 cancelled, 2 used", len(rd.Items), count)
			}
			// Every paid redemption took 10 points; the three cancelled gave
			// theirs back and the gift took none.
			b := e.balance(own)
			if b.LifetimeRedeemed != 10*(14-3) {
				t.Errorf("lifetime_redeemed %d, want %d", b.LifetimeRedeemed, 10*(14-3))
			}
			for path, want := range map[string]int{"/v1/offers?limit=500": 3, "/v1/offer-templates": 3} {
				var l struct {
					Items []any `json:"items"`
				}
				e.do("GET", path, e.admin(), nil).must(t, 200).Decode(t, &l)
				if len(l.Items) != want {
					t.Errorf("GET %s: %d items, want %d", path, len(l.Items), want)
				}
			}
		})
		e.checkLedger()
	})
}

func TestMemberIsolation(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		me, other := e.enrol(), e.enrol()
		myPurchase := e.buy(me, 5000, "ISO-ME")["id"].(string)
		otherPurchase := e.buy(other, 7000, "ISO-OTHER")["id"].(string)
		tok := e.token(loyalty.RoleMember, me)

		t.Run("OtherMemberIsNotFound", func(t *testing.T) {
			for _, c := range []struct {
				method, path string
				body         any
			}{
				{"GET", "/v1/members/" + other, nil},
				{"GET", "/v1/members/" + other + "/balance", nil},
				{"GET", "/v1/members/" + other + "/ledger", nil},
				{"GET", "/v1/purchases/" + otherPurchase, nil},
				{"PATCH", "/v1/members/" + other, map[string]any{"first_name": "Mallory"}},
				{"PATCH", "/v1/members/" + other, map[string]any{"email": "mallory@example.com"}},
				// An id that does not exist answers the same way.
				{"GET", "/v1/members/no-such-member", nil},
				{"GET", "/v1/members/no-such-member/balance", nil},
			} {
				t.Run(c.method+" "+c.path, func(t *testing.T) {
					assertProblem(t, e.do(c.method, c.path, tok, c.body), http.StatusNotFound, "")
				})
			}
			m := e.do("GET", "/v1/members/"+other, e.admin(), nil).must(t, 200).JSON(t)
			if m["first_name"] != nil || m["email"] == "mallory@example.com" {
				t.Errorf("another member was changed through a member token: %v", m)
			}
		})

		t.Run("OwnResources", func(t *testing.T) {
			for _, path := range []string{"/v1/members/" + me, "/v1/members/" + me + "/balance",
				"/v1/members/" + me + "/ledger", "/v1/purchases/" + myPurchase} {
				e.do("GET", path, tok, nil).must(t, 200)
			}
			b := e.do("GET", "/v1/members/"+me+"/balance", tok, nil).must(t, 200).JSON(t)
			if b["member_id"] != me || b["available"].(float64) != 50 {
				t.Errorf("own balance: %v", b)
			}
			l := e.do("GET", "/v1/members/"+me+"/ledger", tok, nil).must(t, 200).JSON(t)
			if items := l["items"].([]any); len(items) != 1 {
				t.Errorf("own ledger has %d entries, want 1: %v", len(items), l)
			}
		})

		t.Run("OwnContactFields", func(t *testing.T) {
			m := e.do("PATCH", "/v1/members/"+me, tok, map[string]any{"email": "Me.New@Example.com"}).must(t, 200).JSON(t)
			if m["email"] != "me.new@example.com" {
				t.Errorf("email after patch: %v", m["email"])
			}
			e.do("PATCH", "/v1/members/"+me, tok, map[string]any{"phone": "+14155550199", "first_name": "Me"}).must(t, 200)
		})

		t.Run("OwnProtectedFields", func(t *testing.T) {
			for _, body := range []map[string]any{
				{"birthday": "1990-05-17"},
				{"external_id": "SELF-CHOSEN"},
				{"email": "sneaky@example.com", "birthday": "1990-05-17"},
				{"timezone": "Europe/Paris"},
			} {
				assertProblem(t, e.do("PATCH", "/v1/members/"+me, tok, body), http.StatusForbidden, "")
			}
			m := e.do("GET", "/v1/members/"+me, e.admin(), nil).must(t, 200).JSON(t)
			if m["birthday"] != nil || m["email"] != "me.new@example.com" || m["external_id"] == "SELF-CHOSEN" {
				t.Errorf("a refused patch changed the member: %v", m)
			}
		})
	})
}

func TestPOSStoreRestriction(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		till := e.tokenStore(loyalty.RolePOS, "till-s1", "store-1")

		t.Run("OtherStorePurchase", func(t *testing.T) {
			body := map[string]any{"member_id": m, "external_id": "S2-1", "store_id": "store-2", "currency": "USD", "total": 1000}
			assertProblem(t, e.do("POST", "/v1/purchases", till, body), http.StatusForbidden, "")
			assertProblem(t, e.do("POST", "/v1/purchases/quote", till, body), http.StatusForbidden, "")
			if b := e.balance(m); b.Available != 0 || b.Pending != 0 {
				t.Errorf("a refused purchase earned points: %+v", b)
			}
		})

		t.Run("StoreFromToken", func(t *testing.T) {
			r := e.do("POST", "/v1/purchases", till, map[string]any{"member_id": m, "external_id": "S1-1",
				"currency": "USD", "total": 2000}).must(t, 201).JSON(t)
			if r["store_id"] != "store-1" {
				t.Errorf("store_id %v, want store-1", r["store_id"])
			}
			p := e.do("GET", "/v1/purchases/"+r["id"].(string), e.admin(), nil).must(t, 200).JSON(t)
			if p["store_id"] != "store-1" {
				t.Errorf("stored store_id %v, want store-1", p["store_id"])
			}
			e.do("POST", "/v1/purchases", till, map[string]any{"member_id": m, "external_id": "S1-2",
				"store_id": "store-1", "currency": "USD", "total": 2000}).must(t, 201)
		})

		t.Run("OtherStoreReturn", func(t *testing.T) {
			other := e.do("POST", "/v1/purchases", e.admin(), map[string]any{"member_id": m, "external_id": "S2-2",
				"store_id": "store-2", "currency": "USD", "total": 3000}).must(t, 201).JSON(t)["id"].(string)
			before := e.balance(m)
			r := e.do("POST", "/v1/purchases/"+other+"/returns", till, map[string]any{"external_id": "RET-S2", "amount": 1000})
			assertProblem(t, r, http.StatusForbidden, "")
			p := e.do("GET", "/v1/purchases/"+other, e.admin(), nil).must(t, 200).JSON(t)
			if p["returned_amount"].(float64) != 0 {
				t.Errorf("a refused return was recorded: %v", p)
			}
			if after := e.balance(m); after.Available != before.Available {
				t.Errorf("a refused return moved the balance from %d to %d", before.Available, after.Available)
			}
			// A till without a store claim may serve every store.
			e.do("POST", "/v1/purchases/"+other+"/returns", e.pos(), map[string]any{"external_id": "RET-S2", "amount": 1000}).must(t, 201)
		})

		t.Run("OwnStoreReturn", func(t *testing.T) {
			own := e.do("POST", "/v1/purchases", till, map[string]any{"member_id": m, "external_id": "S1-3",
				"currency": "USD", "total": 4000}).must(t, 201).JSON(t)["id"].(string)
			e.do("POST", "/v1/purchases/"+own+"/returns", till, map[string]any{"external_id": "RET-S1", "amount": 4000}).must(t, 201)
		})
		e.checkLedger()
	})
}

// b64 is unpadded base64url, as JWT segments are.
func b64(v any) string {
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		var err error
		if b, err = json.Marshal(x); err != nil {
			panic(err)
		}
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// hmacJWT signs header.payload with HMAC-SHA256 whatever the header claims,
// for algorithm-confusion tokens.
func hmacJWT(header, claims any, secret []byte) string {
	in := b64(header) + "." + b64(claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestTokenAttacks(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		member := e.enrol()
		now := time.Now()
		exp := now.Add(time.Hour).Unix()
		adminClaims := map[string]any{"sub": "op-1", "role": "admin", "exp": exp}
		signed := func(m jwt.SigningMethod, claims map[string]any, secret []byte) string {
			t.Helper()
			s, err := jwt.NewWithClaims(m, jwt.MapClaims(claims)).SignedString(secret)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		without := func(key string) map[string]any {
			c := map[string]any{}
			for k, v := range adminClaims {
				if k != key {
					c[k] = v
				}
			}
			return c
		}
		with := func(key string, v any) map[string]any {
			c := without(key)
			c[key] = v
			return c
		}
		valid := signed(jwt.SigningMethodHS256, adminClaims, testSecret)
		memberTok := e.token(loyalty.RoleMember, member)
		parts := strings.Split(memberTok, ".")
		var payload map[string]any
		raw, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &payload); err != nil {
			t.Fatal(err)
		}
		payload["role"] = "admin"
		tampered := parts[0] + "." + b64(payload) + "." + parts[2]

		// The route answers every role, so any token that gets through is
		// 200 and every rejection shows as 401.
		const route = "/v1/tiers"
		t.Run("Control", func(t *testing.T) {
			e.do("GET", route, valid, nil).must(t, 200)
			e.do("GET", "/v1/members/"+member, memberTok, nil).must(t, 200)
		})

		for _, c := range []struct{ name, token string }{
			{"AlgNone", b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(adminClaims) + "."},
			{"AlgNoneCapitalised", b64(`{"alg":"None","typ":"JWT"}`) + "." + b64(adminClaims) + "."},
			{"AlgNoneWithSignature", b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(adminClaims) + "." + strings.Split(valid, ".")[2]},
			{"HS512", signed(jwt.SigningMethodHS512, adminClaims, testSecret)},
			{"HS384", signed(jwt.SigningMethodHS384, adminClaims, testSecret)},
			{"RS256HeaderHMACSigned", hmacJWT(map[string]any{"alg": "RS256", "typ": "JWT"}, adminClaims, testSecret)},
			{"WrongSecret", signed(jwt.SigningMethodHS256, adminClaims, []byte("another-secret-another-secret-another"))},
			{"EmptySecret", hmacJWT(map[string]any{"alg": "HS256", "typ": "JWT"}, adminClaims, nil)},
			{"TamperedPayload", tampered},
			{"SignatureStripped", parts[0] + "." + parts[1] + "."},
			{"MissingExp", signed(jwt.SigningMethodHS256, without("exp"), testSecret)},
			{"ExpiredExp", signed(jwt.SigningMethodHS256, with("exp", now.Add(-time.Hour).Unix()), testSecret)},
			{"NotYetValid", signed(jwt.SigningMethodHS256, with("nbf", now.Add(time.Hour).Unix()), testSecret)},
			{"UnknownRole", signed(jwt.SigningMethodHS256, with("role", "superuser"), testSecret)},
			{"RoleCase", signed(jwt.SigningMethodHS256, with("role", "ADMIN"), testSecret)},
			{"RoleNotString", signed(jwt.SigningMethodHS256, with("role", []string{"admin"}), testSecret)},
			{"MissingRole", signed(jwt.SigningMethodHS256, without("role"), testSecret)},
			{"MissingSub", signed(jwt.SigningMethodHS256, without("sub"), testSecret)},
			{"EmptySub", signed(jwt.SigningMethodHS256, with("sub", ""), testSecret)},
			{"Garbage", "garbage"},
			{"GarbageSegments", "a.b.c"},
			{"EmptySegments", ".."},
			{"HeaderOnly", b64(`{"alg":"HS256","typ":"JWT"}`)},
			{"TwoSegments", strings.Join(strings.Split(valid, ".")[:2], ".")},
			{"FourSegments", valid + ".extra"},
			{"NotBase64", "!!!.@@@.###"},
			{"LongGarbage", strings.Repeat("A", 3000)},
		} {
			t.Run(c.name, func(t *testing.T) {
				assertUnauthorized(t, e.do("GET", route, c.token, nil))
			})
		}

		for _, c := range []struct{ name, header string }{
			{"BearerNothing", "Bearer "},
			{"BearerOnly", "Bearer"},
			{"BasicScheme", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:admin"))},
			{"BasicSchemeWithJWT", "Basic " + valid},
			{"TokenScheme", "Token " + valid},
			{"NoScheme", valid},
		} {
			t.Run(c.name, func(t *testing.T) {
				assertUnauthorized(t, e.do("GET", route, "", nil, "Authorization", c.header))
			})
		}
	})
}

func TestTokenIssuerAudience(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		cfg := AuthConfig{Secret: testSecret, Issuer: "https://auth.example.com", Audience: "loyalty-api"}
		e := newAuthEnv(t, dialect, cfg)
		sign := func(c AuthConfig) string {
			t.Helper()
			tok, err := SignToken(c, loyalty.RoleAdmin, "op-1", "", time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		mapSigned := func(claims map[string]any) string {
			t.Helper()
			s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims)).SignedString(testSecret)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		exp := time.Now().Add(time.Hour).Unix()
		t.Run("Right", func(t *testing.T) {
			e.do("GET", "/v1/program", sign(cfg), nil).must(t, 200)
			e.do("GET", "/v1/program", mapSigned(map[string]any{"sub": "op-1", "role": "admin", "exp": exp,
				"iss": cfg.Issuer, "aud": []string{"other-api", cfg.Audience}}), nil).must(t, 200)
		})
		for _, c := range []struct {
			name string
			tok  string
		}{
			{"WrongIssuer", sign(AuthConfig{Secret: testSecret, Issuer: "https://evil.example.com", Audience: cfg.Audience})},
			{"NoIssuer", sign(AuthConfig{Secret: testSecret, Audience: cfg.Audience})},
			{"WrongAudience", sign(AuthConfig{Secret: testSecret, Issuer: cfg.Issuer, Audience: "other-api"})},
			{"NoAudience", sign(AuthConfig{Secret: testSecret, Issuer: cfg.Issuer})},
			{"IssuerCase", sign(AuthConfig{Secret: testSecret, Issuer: "https://AUTH.example.com", Audience: cfg.Audience})},
			{"AudienceList", mapSigned(map[string]any{"sub": "op-1", "role": "admin", "exp": exp,
				"iss": cfg.Issuer, "aud": []string{"a", "b"}})},
		} {
			t.Run(c.name, func(t *testing.T) {
				assertUnauthorized(t, e.do("GET", "/v1/program", c.tok, nil))
			})
		}
	})
}

// TestTokenForeignKeysAndTimes completes TestTokenAttacks: tokens really
// signed with asymmetric keys (the engine verifies HS256 only), an HMAC
// keyed with a public key, and an iat in the future.
func TestTokenForeignKeysAndTimes(t *testing.T) { loyaltytest.Each(t, testTokenForeignKeysAndTimes) }

func testTokenForeignKeysAndTimes(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	now := time.Now()
	claims := jwt.MapClaims{"sub": "op-1", "role": "admin", "exp": now.Add(time.Hour).Unix()}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for key, val := range claims {
			c[key] = val
		}
		c[k] = v
		return c
	}
	sign := func(m jwt.SigningMethod, c jwt.Claims, key any) string {
		t.Helper()
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	t.Run("Control", func(t *testing.T) {
		e.do("GET", "/v1/tiers", sign(jwt.SigningMethodHS256, claims, testSecret), nil).must(t, 200)
		// A clock a second or two ahead of the engine's is within the leeway.
		e.do("GET", "/v1/tiers", sign(jwt.SigningMethodHS256, with("iat", now.Add(2*time.Second).Unix()), testSecret), nil).must(t, 200)
	})
	for _, c := range []struct{ name, token string }{
		{"RS256", sign(jwt.SigningMethodRS256, claims, rsaKey)},
		{"PS256", sign(jwt.SigningMethodPS256, claims, rsaKey)},
		{"ES256", sign(jwt.SigningMethodES256, claims, ecKey)},
		{"EdDSA", sign(jwt.SigningMethodEdDSA, claims, edKey)},
		{"HS256KeyedWithPublicKey", sign(jwt.SigningMethodHS256, claims, pubPEM)},
		{"IssuedInTheFuture", sign(jwt.SigningMethodHS256, with("iat", now.Add(time.Hour).Unix()), testSecret)},
		{"NotBeforeAndIssuedInTheFuture", sign(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "op-1", "role": "admin",
			"exp": now.Add(2 * time.Hour).Unix(), "nbf": now.Add(time.Hour).Unix(), "iat": now.Add(time.Hour).Unix()}, testSecret)},
		{"ExpiredALongTimeAgo", sign(jwt.SigningMethodHS256, with("exp", 1), testSecret)},
		{"ExpNotANumber", sign(jwt.SigningMethodHS256, with("exp", "tomorrow"), testSecret)},
		{"ExpBeyondInt64", sign(jwt.SigningMethodHS256, with("exp", 1e300), testSecret)},
	} {
		t.Run(c.name, func(t *testing.T) {
			assertUnauthorized(t, e.do("GET", "/v1/tiers", c.token, nil))
		})
	}
}

// TestErasedMemberToken uses a member's token after an admin erased the
// member: every write it tries is refused and changes nothing, and what it
// can still read holds no personal data.
func TestErasedMemberToken(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		birthday := e.clock.Now().AddDate(-30, 0, 0).Format(time.DateOnly)
		m := e.do("POST", "/v1/members", e.pos(), map[string]any{"external_id": "ER-1", "email": "erased@example.com",
			"phone": "+14155550111", "first_name": "Erin", "last_name": "Rased", "birthday": birthday}).must(t, 201).JSON(t)["id"].(string)
		e.do("POST", "/v1/members/"+m+"/adjustments", e.admin(), map[string]any{"points": 1000, "reason": "fixture"}).must(t, 201)
		reward := e.do("POST", "/v1/rewards", e.admin(), map[string]any{"code": "er-reward", "name": "R", "cost_points": 10}).
			must(t, 201).JSON(t)["id"].(string)
		e.do("PUT", "/v1/program", e.admin(), map[string]any{"birthday_gift": map[string]any{"enabled": true,
			"reward_ids": []string{reward}, "claim_days": 30}}).must(t, 200)
		e.do("POST", "/v1/jobs/birthday-gifts/run", e.admin(), nil).must(t, 200)
		var gifts struct {
			Items []struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			} `json:"items"`
		}
		e.do("GET", "/v1/members/"+m+"/gifts", e.admin(), nil).must(t, 200).Decode(t, &gifts)
		if len(gifts.Items) != 1 {
			t.Fatalf("%d gifts, want 1", len(gifts.Items))
		}
		gift := gifts.Items[0].ID
		offer := e.ofOffer(map[string]any{"code": "er-opt-in", "kind": "bonus", "bonus_points": 40, "requires_activation": true,
			"target": map[string]any{"all": true}})
		tok := e.token(loyalty.RoleMember, m)
		e.do("GET", "/v1/members/"+m, tok, nil).must(t, 200)
		e.do("DELETE", "/v1/members/"+m, e.admin(), nil).must(t, 204)
		before := e.balance(m)

		for _, c := range []struct {
			name, method, path string
			body               any
		}{
			{"PatchContact", "PATCH", "/v1/members/" + m, map[string]any{"email": "back@example.com"}},
			{"Redeem", "POST", "/v1/members/" + m + "/redemptions", map[string]any{"reward_id": reward}},
			{"ClaimGift", "POST", "/v1/members/" + m + "/gifts/" + gift + "/claim", map[string]any{"reward_id": reward}},
			{"ActivateOffer", "POST", "/v1/members/" + m + "/offers/" + offer + "/activate", nil},
		} {
			t.Run(c.name, func(t *testing.T) {
				assertProblem(t, e.do(c.method, c.path, tok, c.body), http.StatusConflict, "")
			})
		}
		t.Run("NothingChanged", func(t *testing.T) {
			if after := e.balance(m); after.Available != before.Available || after.LifetimeRedeemed != before.LifetimeRedeemed {
				t.Errorf("balance moved from %+v to %+v", before, after)
			}
			var reds struct {
				Items []any `json:"items"`
			}
			e.do("GET", "/v1/members/"+m+"/redemptions", e.admin(), nil).must(t, 200).Decode(t, &reds)
			if len(reds.Items) != 0 {
				t.Errorf("an erased member's token redeemed: %v", reds.Items)
			}
			e.do("GET", "/v1/members/"+m+"/gifts", e.admin(), nil).must(t, 200).Decode(t, &gifts)
			if gifts.Items[0].Status != "available" {
				t.Errorf("the gift is %s, want still available", gifts.Items[0].Status)
			}
		})
		t.Run("ReadsHoldNoPersonalData", func(t *testing.T) {
			for _, path := range []string{"/v1/members/" + m, "/v1/members/" + m + "/balance", "/v1/members/" + m + "/ledger",
				"/v1/members/" + m + "/gifts", "/v1/members/" + m + "/redemptions", "/v1/members/" + m + "/offers"} {
				r := e.do("GET", path, tok, nil)
				if r.Status >= 500 {
					t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
				}
				for _, pii := range []string{"erased@example.com", "4155550111", "Erin", "Rased", birthday, "ER-1"} {
					if strings.Contains(string(r.Body), pii) {
						t.Errorf("GET %s still shows %q: %s", path, pii, r.Body)
					}
				}
			}
		})
	})
}

// TestMemberIsolationEveryRoute calls every route that names a member, or
// a member's purchase, redemption, offer or gift, with another member's
// token: each is a 404 (403 where the role may not call the route at all),
// and the other member's data is unchanged.
func TestMemberIsolationEveryRoute(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		birthday := e.clock.Now().AddDate(-30, 0, 0).Format(time.DateOnly)
		a := e.enrol()
		b := e.do("POST", "/v1/members", e.pos(), map[string]any{"external_id": "ISO-B", "email": "b@example.com", "first_name": "Bea",
			"birthday": birthday}).must(t, 201).JSON(t)["id"].(string)
		e.do("POST", "/v1/members/"+b+"/adjustments", e.admin(), map[string]any{"points": 1000, "reason": "fixture"}).must(t, 201)
		purchase := e.buy(b, 5000, "ISO-B-1")["id"].(string)
		reward := e.do("POST", "/v1/rewards", e.admin(), map[string]any{"code": "iso-reward", "name": "R", "cost_points": 10}).
			must(t, 201).JSON(t)["id"].(string)
		red := e.do("POST", "/v1/members/"+b+"/redemptions", e.admin(), map[string]any{"reward_id": reward}).must(t, 201).JSON(t)
		offer := e.do("POST", "/v1/offers", e.admin(), map[string]any{"code": "iso-offer", "name": "O", "kind": "bonus", "bonus_points": 1,
			"target": map[string]any{"all": true}, "requires_activation": true}).must(t, 201).JSON(t)["id"].(string)
		e.do("PUT", "/v1/program", e.admin(), map[string]any{"birthday_gift": map[string]any{"enabled": true,
			"reward_ids": []string{reward}, "claim_days": 30}}).must(t, 200)
		e.do("POST", "/v1/jobs/birthday-gifts/run", e.admin(), nil).must(t, 200)
		var gifts struct {
			Items []struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			} `json:"items"`
		}
		e.do("GET", "/v1/members/"+b+"/gifts", e.admin(), nil).must(t, 200).Decode(t, &gifts)
		if len(gifts.Items) != 1 {
			t.Fatalf("%d gifts, want 1", len(gifts.Items))
		}
		gift := gifts.Items[0].ID
		before := e.balance(b)
		tokA := e.token(loyalty.RoleMember, a)

		type call struct {
			method, route, path string
			body                any
			status              int
		}
		calls := []call{
			{"GET", "/v1/members/:id", "/v1/members/" + b, nil, 404},
			{"PATCH", "/v1/members/:id", "/v1/members/" + b, map[string]any{"first_name": "Mallory"}, 404},
			{"DELETE", "/v1/members/:id", "/v1/members/" + b, nil, 403},
			{"GET", "/v1/members/:id/balance", "/v1/members/" + b + "/balance", nil, 404},
			{"GET", "/v1/members/:id/ledger", "/v1/members/" + b + "/ledger", nil, 404},
			{"GET", "/v1/members/:id/balance/stream", "/v1/members/" + b + "/balance/stream", nil, 404},
			{"POST", "/v1/members/:id/adjustments", "/v1/members/" + b + "/adjustments", map[string]any{"points": 5, "reason": "x"}, 403},
			{"GET", "/v1/purchases/:id", "/v1/purchases/" + purchase, nil, 404},
			{"POST", "/v1/purchases/:id/returns", "/v1/purchases/" + purchase + "/returns", map[string]any{"amount": 5000}, 403},
			{"POST", "/v1/members/:id/redemptions", "/v1/members/" + b + "/redemptions", map[string]any{"reward_id": reward}, 404},
			{"GET", "/v1/members/:id/redemptions", "/v1/members/" + b + "/redemptions", nil, 404},
			{"GET", "/v1/redemptions/:id", "/v1/redemptions/" + red["id"].(string), nil, 404},
			{"POST", "/v1/redemptions/:id/cancel", "/v1/redemptions/" + red["id"].(string) + "/cancel", nil, 404},
			{"GET", "/v1/coupons/:code", "/v1/coupons/" + red["coupon_code"].(string), nil, 403},
			{"POST", "/v1/coupons/:code/use", "/v1/coupons/" + red["coupon_code"].(string) + "/use", nil, 403},
			{"GET", "/v1/members/:id/offers", "/v1/members/" + b + "/offers", nil, 404},
			{"POST", "/v1/members/:id/offers/:offer_id/activate", "/v1/members/" + b + "/offers/" + offer + "/activate", nil, 404},
			{"GET", "/v1/members/:id/gifts", "/v1/members/" + b + "/gifts", nil, 404},
			{"POST", "/v1/members/:id/gifts/:gift_id/claim", "/v1/members/" + b + "/gifts/" + gift + "/claim", map[string]any{"reward_id": reward}, 404},
		}
		// Every route that takes a member, or one of its resources, is here.
		listed := map[string]bool{}
		for _, c := range calls {
			listed[c.method+" "+c.route] = true
		}
		for _, r := range e.app.GetRoutes(true) {
			memberScoped := strings.HasPrefix(r.Path, "/v1/members/:") || strings.HasPrefix(r.Path, "/v1/purchases/:") ||
				strings.HasPrefix(r.Path, "/v1/redemptions/:") || strings.HasPrefix(r.Path, "/v1/coupons/:")
			if memberScoped && r.Method != http.MethodHead && !listed[r.Method+" "+r.Path] {
				t.Errorf("route %s %s is not checked for member isolation", r.Method, r.Path)
			}
		}
		for _, c := range calls {
			t.Run(c.method+" "+c.route, func(t *testing.T) {
				assertProblem(t, e.do(c.method, c.path, tokA, c.body), c.status, "")
			})
		}
		t.Run("RewardsForAnotherMember", func(t *testing.T) {
			// The catalog is public, but filtered for another member it
			// says what b may redeem: another member's resource seen with
			// a member token is 404 (API.md §1), never a 200 of any kind.
			assertProblem(t, e.do("GET", "/v1/rewards?member_id="+b, tokA, nil), http.StatusNotFound, "")
			// The same filter answers for b to a role that may see b, and
			// for a to its own token, so the 404 is isolation, not a route
			// that fails for everyone.
			var l struct {
				Items []struct {
					ID string `json:"id"`
				} `json:"items"`
			}
			e.do("GET", "/v1/rewards?member_id="+b, e.admin(), nil).must(t, 200).Decode(t, &l)
			if len(l.Items) != 1 || l.Items[0].ID != reward {
				t.Errorf("rewards b may redeem, as the admin sees them: %+v, want only %s", l.Items, reward)
			}
			e.do("GET", "/v1/rewards?member_id="+a, tokA, nil).must(t, 200)
		})
		t.Run("NothingChanged", func(t *testing.T) {
			if after := e.balance(b); after.Available != before.Available || after.LifetimeRedeemed != before.LifetimeRedeemed {
				t.Errorf("b's balance moved from %+v to %+v", before, after)
			}
			m := e.do("GET", "/v1/members/"+b, e.admin(), nil).must(t, 200).JSON(t)
			if m["first_name"] != "Bea" || m["status"] != "active" {
				t.Errorf("b changed: %v", m)
			}
			if r := e.do("GET", "/v1/redemptions/"+red["id"].(string), e.admin(), nil).must(t, 200).JSON(t); r["status"] != "issued" {
				t.Errorf("b's redemption is %v, want issued", r["status"])
			}
			e.do("GET", "/v1/members/"+b+"/gifts", e.admin(), nil).must(t, 200).Decode(t, &gifts)
			if gifts.Items[0].Status != "available" {
				t.Errorf("b's gift is %s, want available", gifts.Items[0].Status)
			}
			var offers struct {
				Items []struct {
					ID        string `json:"id"`
					Activated bool   `json:"activated"`
				} `json:"items"`
			}
			e.do("GET", "/v1/members/"+b+"/offers", e.admin(), nil).must(t, 200).Decode(t, &offers)
			for _, o := range offers.Items {
				if o.ID == offer && o.Activated {
					t.Errorf("b's offer was activated by a's token")
				}
			}
		})
	})
}

// TestLogsHoldNoSecrets captures everything the engine logs while it serves
// requests carrying tokens and members' personal data, failing ones
// included, and checks that no token, Authorization header or personal
// datum appears in it.
func TestLogsHoldNoSecrets(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		var buf syncBuffer
		e := newEnvConfig(t, dialect, func(c *Config) {
			c.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})
		e.beautyLadder()
		secrets := []string{}
		tok := func(role loyalty.Role, sub string) string {
			s := e.token(role, sub)
			secrets = append(secrets, s, strings.Split(s, ".")[2])
			return s
		}
		admin, pos := tok(loyalty.RoleAdmin, "op-log"), tok(loyalty.RolePOS, "till-log")
		personal := []string{"leak.check@example.com", "+14155550177", "Zebulon", "Quixote", "1987-06-05", "CUST-LEAK-77"}
		m := e.do("POST", "/v1/members", pos, map[string]any{"email": personal[0], "phone": personal[1], "first_name": personal[2],
			"last_name": personal[3], "birthday": personal[4], "external_id": personal[5]}).must(t, 201).JSON(t)["id"].(string)
		memberTok := tok(loyalty.RoleMember, m)
		e.do("GET", "/v1/members?email="+url.QueryEscape(personal[0]), pos, nil).must(t, 200)
		e.do("GET", "/v1/members?phone="+url.QueryEscape(personal[1]), pos, nil).must(t, 200)
		e.do("GET", "/v1/members?external_id="+personal[5], pos, nil).must(t, 200)
		e.do("GET", "/v1/members/"+m, memberTok, nil).must(t, 200)
		e.do("PATCH", "/v1/members/"+m, memberTok, map[string]any{"first_name": personal[2]}).must(t, 200)
		e.do("POST", "/v1/purchases", pos, map[string]any{"member_id": m, "currency": "USD", "total": 1000, "external_id": "LOG-1"}).must(t, 201)
		// Refused calls: a bad token, a wrong role, a bad field, a duplicate.
		bad := admin[:len(admin)-4] + "AAAA"
		secrets = append(secrets, bad)
		e.do("GET", "/v1/members/"+m, bad, nil).must(t, 401)
		e.do("GET", "/v1/members/"+m, "", nil, "Authorization", "Basic "+personal[0]).must(t, 401)
		e.do("DELETE", "/v1/members/"+m, memberTok, nil).must(t, 403)
		e.do("POST", "/v1/members", pos, map[string]any{"email": "not-an-email " + personal[2]}).must(t, 422)
		e.do("POST", "/v1/members", pos, map[string]any{"email": personal[0]}).must(t, 409)
		e.do("GET", "/v1/members?email="+url.QueryEscape(personal[0])+"&limit=0", admin, nil).must(t, 422)
		e.do("GET", "/v1/no-such-route?email="+url.QueryEscape(personal[0]), admin, nil).must(t, 404)
		// Then the database goes away: the 5xx are logged with their error,
		// which must not carry the request's values either.
		if err := e.store.Close(); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/v1/members?email=" + url.QueryEscape(personal[0]), "/v1/members/" + m} {
			if r := e.do("GET", path, admin, nil); r.Status < 500 {
				t.Fatalf("GET %s with the database closed: %d", path, r.Status)
			}
		}
		e.do("PATCH", "/v1/members/"+m, admin, map[string]any{"email": personal[0], "first_name": personal[2]})

		out := buf.String()
		if n := strings.Count(out, `"msg":"request"`); n < 15 {
			t.Fatalf("captured %d request lines, want one per request: %s", n, out)
		}
		if !strings.Contains(out, `"level":"ERROR"`) {
			t.Errorf("the failed requests were not logged as errors: %s", out)
		}
		for _, s := range append(secrets, personal...) {
			if strings.Contains(out, s) {
				t.Errorf("the log holds %q", s)
			}
		}
		for _, s := range []string{"Bearer", "Authorization", "authorization", "Basic ", "@example.com"} {
			if strings.Contains(out, s) {
				t.Errorf("the log holds %q", s)
			}
		}
	})
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTokenClaimsStrict signs tokens correctly with the engine's secret whose
// claims play on names: RFC 7519 claim names are case-sensitive, so a
// "Role" beside "role", a "ROLE" alone, a "Store_Id" that would lift a
// till's store restriction or a name given twice must not be read as the
// claim. Each is refused with 401, as are exp, nbf and iat given as strings
// and a sub or store_id that is empty, too long or holds control
// characters.
func TestTokenClaimsStrict(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		member := e.enrol()
		now := time.Now()
		exp := now.Add(time.Hour).Unix()
		header := map[string]any{"alg": "HS256", "typ": "JWT"}
		// raw signs a payload given as JSON text, so it may repeat names.
		raw := func(payload string) string { return hmacJWT(header, payload, testSecret) }

		t.Run("Control", func(t *testing.T) {
			e.do("GET", "/v1/audit", raw(fmt.Sprintf(`{"sub":"op-1","role":"admin","exp":%d}`, exp)), nil).must(t, 200)
			e.do("GET", "/v1/members/"+member, raw(fmt.Sprintf(`{"sub":%q,"role":"member","exp":%d}`, member, exp)), nil).must(t, 200)
			// Escapes spell the same name: JSON compares names after unescaping.
			e.do("GET", "/v1/audit", raw(fmt.Sprintf(`{"sub":"op-1","\u0072ole":"admin","exp":%d}`, exp)), nil).must(t, 200)
			long := strings.Repeat("s", 255)
			e.do("GET", "/v1/tiers", raw(fmt.Sprintf(`{"sub":%q,"role":"pos","store_id":%q,"exp":%d}`, long, long, exp)), nil).must(t, 200)
			e.do("GET", "/v1/tiers", raw(fmt.Sprintf(`{"sub":"Jane Doe","role":"marketer","exp":%d,"custom":"x","Custom":"y"}`, exp)), nil).must(t, 200)
		})

		for _, c := range []struct{ name, payload string }{
			{"RoleCaseVariantAfter", fmt.Sprintf(`{"sub":%q,"role":"member","Role":"admin","exp":%d}`, member, exp)},
			{"RoleCaseVariantBefore", fmt.Sprintf(`{"sub":%q,"Role":"admin","role":"member","exp":%d}`, member, exp)},
			{"RoleUpperOnly", fmt.Sprintf(`{"sub":"op-1","ROLE":"admin","exp":%d}`, exp)},
			{"RoleTwice", fmt.Sprintf(`{"sub":"op-1","role":"member","role":"admin","exp":%d}`, exp)},
			{"RoleLongS", fmt.Sprintf(`{"sub":"op-1","role":"admin","exp":%d,"ſub":"op-2"}`, exp)},
			{"SubUpperBeside", fmt.Sprintf(`{"role":"admin","exp":%d,"sub":"op-1","SUB":"op-2"}`, exp)},
			{"SubOnlyFolded", fmt.Sprintf(`{"ſub":"op-1","role":"admin","exp":%d}`, exp)},
			{"SubTwice", fmt.Sprintf(`{"sub":"op-1","sub":%q,"role":"member","exp":%d}`, member, exp)},
			{"StoreIDCaseVariant", fmt.Sprintf(`{"sub":"till-9","role":"pos","store_id":"store-1","Store_Id":"","exp":%d}`, exp)},
			{"StoreIDTwice", fmt.Sprintf(`{"sub":"till-9","role":"pos","store_id":"store-1","store_id":"store-2","exp":%d}`, exp)},
			{"StoreIDEmpty", fmt.Sprintf(`{"sub":"till-9","role":"pos","store_id":"","exp":%d}`, exp)},
			{"StoreIDNul", fmt.Sprintf(`{"sub":"till-9","role":"pos","store_id":"store-1\u0000","exp":%d}`, exp)},
			{"StoreIDSpace", fmt.Sprintf(`{"sub":"till-9","role":"pos","store_id":"store 1","exp":%d}`, exp)},
			{"StoreIDTooLong", fmt.Sprintf(`{"sub":"till-9","role":"pos","store_id":%q,"exp":%d}`, strings.Repeat("s", 256), exp)},
			{"StoreIDNotString", fmt.Sprintf(`{"sub":"till-9","role":"pos","store_id":1,"exp":%d}`, exp)},
			{"ExpCaseVariant", fmt.Sprintf(`{"sub":"op-1","role":"admin","exp":%d,"EXP":%d}`, exp, now.Add(-time.Hour).Unix())},
			{"ExpTwice", fmt.Sprintf(`{"sub":"op-1","role":"admin","exp":%d,"exp":%d}`, now.Add(-time.Hour).Unix(), exp)},
			{"ExpString", fmt.Sprintf(`{"sub":"op-1","role":"admin","exp":"%d"}`, exp)},
			{"ExpNull", `{"sub":"op-1","role":"admin","exp":null}`},
			{"ExpNegative", `{"sub":"op-1","role":"admin","exp":-1}`},
			{"NbfString", fmt.Sprintf(`{"sub":"op-1","role":"admin","exp":%d,"nbf":"0"}`, exp)},
			{"IatString", fmt.Sprintf(`{"sub":"op-1","role":"admin","exp":%d,"iat":"0"}`, exp)},
			{"SubNul", fmt.Sprintf(`{"sub":"op-1\u0000","role":"admin","exp":%d}`, exp)},
			{"SubNewline", fmt.Sprintf(`{"sub":"op-1\nforged log line","role":"admin","exp":%d}`, exp)},
			{"SubEscapeChar", fmt.Sprintf(`{"sub":"op-1\u001b[31m","role":"admin","exp":%d}`, exp)},
			{"SubTooLong", fmt.Sprintf(`{"sub":%q,"role":"admin","exp":%d}`, strings.Repeat("s", 256), exp)},
			{"SubNotString", fmt.Sprintf(`{"sub":1,"role":"admin","exp":%d}`, exp)},
			{"SubInvalidUTF8", fmt.Sprintf(`{"sub":"op-%s","role":"admin","exp":%d}`, "\xff", exp)},
			{"NotAnObject", `["sub","role","exp"]`},
			{"TrailingData", fmt.Sprintf(`{"sub":"op-1","role":"admin","exp":%d} {}`, exp)},
		} {
			t.Run(c.name, func(t *testing.T) {
				assertUnauthorized(t, e.do("GET", "/v1/tiers", raw(c.payload), nil))
				assertUnauthorized(t, e.do("GET", "/v1/audit", raw(c.payload), nil))
			})
		}

		t.Run("HeaderNameTwice", func(t *testing.T) {
			payload := fmt.Sprintf(`{"sub":"op-1","role":"admin","exp":%d}`, exp)
			tok := hmacJWT(`{"alg":"none","alg":"HS256","typ":"JWT"}`, payload, testSecret)
			assertUnauthorized(t, e.do("GET", "/v1/tiers", tok, nil))
			tok = hmacJWT(`{"alg":"HS256","ALG":"none","typ":"JWT"}`, payload, testSecret)
			assertUnauthorized(t, e.do("GET", "/v1/tiers", tok, nil))
		})

		t.Run("StoreBoundTillStaysBound", func(t *testing.T) {
			// The token the issue reported, next to a plain store-bound one:
			// neither may post for another store.
			body := map[string]any{"member_id": member, "external_id": "CV-1", "store_id": "store-2", "currency": "USD", "total": 1000}
			tricky := raw(fmt.Sprintf(`{"sub":"till-9","role":"pos","store_id":"store-1","Store_Id":"","exp":%d}`, exp))
			if r := e.do("POST", "/v1/purchases", tricky, body); r.Status == 201 {
				t.Fatalf("a till bound to store-1 posted for store-2: %s", r.Body)
			}
			assertProblem(t, e.do("POST", "/v1/purchases", e.tokenStore(loyalty.RolePOS, "till-9", "store-1"), body), http.StatusForbidden, "")
		})

		t.Run("SignTokenRefuses", func(t *testing.T) {
			for _, c := range []struct{ sub, store string }{
				{"op\x00", ""}, {"op\n1", ""}, {strings.Repeat("s", 256), ""}, {"till", "store 1"}, {"till", "store\x00"},
				{"till", strings.Repeat("s", 256)},
			} {
				if _, err := SignToken(e.auth, loyalty.RolePOS, c.sub, c.store, time.Hour, now); err == nil {
					t.Errorf("SignToken signed sub %q store %q", c.sub, c.store)
				}
			}
		})
	})
}

// TestWeakSecrets checks the secret rule the server applies at start: a
// blank, short or repetitive secret is refused, and an engine handed one
// anyway neither signs nor accepts tokens with it.
func TestWeakSecrets(t *testing.T) {
	for _, s := range []string{"", strings.Repeat(" ", 64), strings.Repeat("a", 64), strings.Repeat("ab", 32), "short-secret",
		strings.Repeat("\t\n", 20), "0123456789abcdef0123456789abcde", "  abcdefgh  "} {
		if err := CheckSecret([]byte(s)); err == nil {
			t.Errorf("CheckSecret(%q) accepted a weak secret", s)
		}
	}
	for _, s := range []string{string(testSecret), "0123456789abcdef0123456789abcdef", strings.Repeat("9f8e7d6c5b4a3210", 4),
		"correct horse battery staple over the moon"} {
		if err := CheckSecret([]byte(s)); err != nil {
			t.Errorf("CheckSecret(%q): %v", s, err)
		}
	}
	weak := AuthConfig{Secret: []byte(strings.Repeat(" ", 40))}
	if _, err := SignToken(weak, loyalty.RoleAdmin, "op-1", "", time.Hour, time.Now()); err == nil {
		t.Error("SignToken signed with a blank secret")
	}
	tok := hmacJWT(map[string]any{"alg": "HS256", "typ": "JWT"},
		map[string]any{"sub": "op-1", "role": "admin", "exp": time.Now().Add(time.Hour).Unix()}, weak.Secret)
	if _, err := weak.verify(tok); err == nil {
		t.Error("a token signed with a blank secret was accepted")
	}
}
