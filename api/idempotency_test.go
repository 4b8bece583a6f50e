package api

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestIdempotencyKeyEveryRoute runs the contract of Idempotency-Key (API.md
// §1) on every route that takes one: the same key and body replay the first
// status and body with Idempotent-Replayed: true and change nothing; the
// same key with another request is 422 idempotency_key_reused and changes
// nothing, although that request succeeds under a key of its own.
func TestIdempotencyKeyEveryRoute(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		pos, mk, admin := e.pos(), e.marketer(), e.admin()
		m := e.do("POST", "/v1/members", pos, map[string]any{"external_id": "IK-B", "birthday": e.clock.Now().AddDate(-30, 0, 0).Format(time.DateOnly)}).
			must(t, 201).JSON(t)["id"].(string)
		e.do("POST", "/v1/members/"+m+"/adjustments", admin, map[string]any{"points": 1000, "reason": "fixture"}).must(t, 201)
		purchase := e.buy(m, 10000, "IK-P0")["id"].(string)
		reward := func(code string) string {
			return e.do("POST", "/v1/rewards", mk, map[string]any{"code": code, "name": code, "cost_points": 10}).must(t, 201).JSON(t)["id"].(string)
		}
		r1, r2 := reward("ik-fixture-1"), reward("ik-fixture-2")
		issue := func() map[string]any {
			return e.do("POST", "/v1/members/"+m+"/redemptions", pos, map[string]any{"reward_id": r1}).must(t, 201).JSON(t)
		}
		toCancel, toCancel2, toUse, toUse2 := issue(), issue(), issue(), issue()
		e.do("PUT", "/v1/program", mk, map[string]any{"birthday_gift": map[string]any{"enabled": true,
			"reward_ids": []string{r1, r2}, "claim_days": 30}}).must(t, 200)
		e.do("POST", "/v1/jobs/birthday-gifts/run", admin, nil).must(t, 200)
		var gifts struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		e.do("GET", "/v1/members/"+m+"/gifts", admin, nil).must(t, 200).Decode(t, &gifts)
		if len(gifts.Items) != 1 {
			t.Fatalf("%d gifts, want 1", len(gifts.Items))
		}
		gift := gifts.Items[0].ID

		type request struct {
			path string
			body any
		}
		cases := []struct {
			route      string // as api/server.go and openapi.json name it
			token      string
			first      request
			other      request // a different request under the same key
			otherFresh int     // its status under a key of its own
		}{
			{"/v1/members", pos,
				request{"/v1/members", map[string]any{"external_id": "IK-M1"}},
				request{"/v1/members", map[string]any{"external_id": "IK-M2"}}, 201},
			{"/v1/members/:id/adjustments", admin,
				request{"/v1/members/" + m + "/adjustments", map[string]any{"points": 10, "reason": "ik"}},
				request{"/v1/members/" + m + "/adjustments", map[string]any{"points": 20, "reason": "ik"}}, 201},
			{"/v1/purchases", pos,
				request{"/v1/purchases", map[string]any{"member_id": m, "external_id": "IK-P1", "store_id": "s1", "total": 1000}},
				request{"/v1/purchases", map[string]any{"member_id": m, "external_id": "IK-P2", "store_id": "s1", "total": 2000}}, 201},
			{"/v1/purchases/batch", pos,
				request{"/v1/purchases/batch", map[string]any{"purchases": []any{map[string]any{"member_id": m, "external_id": "IK-B1", "store_id": "s1", "total": 1000}}}},
				request{"/v1/purchases/batch", map[string]any{"purchases": []any{map[string]any{"member_id": m, "external_id": "IK-B2", "store_id": "s1", "total": 2000}}}}, 200},
			{"/v1/purchases/:id/returns", pos,
				request{"/v1/purchases/" + purchase + "/returns", map[string]any{"external_id": "IK-R1", "amount": 100}},
				request{"/v1/purchases/" + purchase + "/returns", map[string]any{"external_id": "IK-R2", "amount": 200}}, 201},
			{"/v1/rewards", mk,
				request{"/v1/rewards", map[string]any{"code": "ik-1", "name": "R", "cost_points": 10}},
				request{"/v1/rewards", map[string]any{"code": "ik-2", "name": "R", "cost_points": 10}}, 201},
			{"/v1/members/:id/redemptions", pos,
				request{"/v1/members/" + m + "/redemptions", map[string]any{"reward_id": r1}},
				request{"/v1/members/" + m + "/redemptions", map[string]any{"reward_id": r2}}, 201},
			{"/v1/redemptions/:id/cancel", pos,
				request{"/v1/redemptions/" + toCancel["id"].(string) + "/cancel", nil},
				request{"/v1/redemptions/" + toCancel2["id"].(string) + "/cancel", nil}, 200},
			{"/v1/coupons/:code/use", pos,
				request{"/v1/coupons/" + toUse["coupon_code"].(string) + "/use", nil},
				request{"/v1/coupons/" + toUse2["coupon_code"].(string) + "/use", nil}, 200},
			{"/v1/offers", mk,
				request{"/v1/offers", map[string]any{"code": "ik-o1", "name": "O", "kind": "bonus", "bonus_points": 5, "target": map[string]any{"all": true}}},
				request{"/v1/offers", map[string]any{"code": "ik-o2", "name": "O", "kind": "bonus", "bonus_points": 5, "target": map[string]any{"all": true}}}, 201},
			{"/v1/offer-templates", mk,
				request{"/v1/offer-templates", map[string]any{"code": "ik-t1", "name": "T", "kind": "multiplier", "multiplier": "2", "duration_days": 14}},
				request{"/v1/offer-templates", map[string]any{"code": "ik-t2", "name": "T", "kind": "multiplier", "multiplier": "2", "duration_days": 14}}, 201},
			// One answer per member, purchase and kind: under a key of its
			// own a second answer is 409, not a second bonus.
			{"/v1/feedback", pos,
				request{"/v1/feedback", map[string]any{"member_id": m, "kind": "nps", "score": 9}},
				request{"/v1/feedback", map[string]any{"member_id": m, "kind": "nps", "score": 3}}, 409},
			// A gift is claimed once: under a key of its own the other
			// choice is 409, not a second gift.
			{"/v1/webhooks", admin,
				request{"/v1/webhooks", map[string]any{"url": "https://ik.example/1", "events": []string{"*"}}},
				request{"/v1/webhooks", map[string]any{"url": "https://ik.example/2", "events": []string{"*"}}}, 201},
			{"/v1/members/:id/gifts/:gift_id/claim", pos,
				request{"/v1/members/" + m + "/gifts/" + gift + "/claim", map[string]any{"reward_id": r1}},
				request{"/v1/members/" + m + "/gifts/" + gift + "/claim", map[string]any{"reward_id": r2}}, 409},
		}

		t.Run("EveryRouteListed", func(t *testing.T) {
			listed := map[string]bool{}
			for _, c := range cases {
				listed[c.route] = true
			}
			keyed := map[string]bool{}
			for _, r := range keyedRoutes(t) {
				keyed[r] = true
				if !listed[r] {
					t.Errorf("POST %s takes an Idempotency-Key and is not in this test", r)
				}
			}
			for r := range listed {
				if !keyed[r] {
					t.Errorf("POST %s is in this test, but api/server.go routes it to no handler that reads the key", r)
				}
			}
			var doc struct {
				Paths map[string]struct {
					Post struct {
						Parameters []map[string]any `json:"parameters"`
					} `json:"post"`
				} `json:"paths"`
			}
			e.do("GET", "/openapi.json", "", nil).must(t, 200).Decode(t, &doc)
			documented := 0
			for path, ops := range doc.Paths {
				for _, p := range ops.Post.Parameters {
					if s := fmt.Sprint(p["name"], p["$ref"]); strings.Contains(s, "dempotency") {
						documented++
						route := regexp.MustCompile(`\{(\w+)\}`).ReplaceAllString(path, ":$1")
						if !listed[route] {
							t.Errorf("openapi.json documents Idempotency-Key on POST %s, which is not in this test", path)
						}
					}
				}
			}
			if documented != len(cases) {
				t.Errorf("openapi.json documents Idempotency-Key on %d routes, this test covers %d", documented, len(cases))
			}
		})

		for i, c := range cases {
			t.Run(strings.TrimPrefix(c.route, "/v1/"), func(t *testing.T) {
				key := fmt.Sprintf("ik-%d", i)
				first := e.do("POST", c.first.path, c.token, c.first.body, "Idempotency-Key", key)
				if first.Status != 200 && first.Status != 201 {
					t.Fatalf("first request: %d %s", first.Status, first.Body)
				}
				if first.Header.Get("Idempotent-Replayed") != "" {
					t.Errorf("a first request is marked replayed")
				}
				before := e.fingerprint()
				again := e.do("POST", c.first.path, c.token, c.first.body, "Idempotency-Key", key)
				if again.Status != first.Status || again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.Body, first.Body) {
					t.Errorf("repeat: %d replayed=%q %s; first answer %d %s", again.Status, again.Header.Get("Idempotent-Replayed"),
						again.Body, first.Status, first.Body)
				}
				if after := e.fingerprint(); after != before {
					t.Errorf("the repeat changed the database:\n%s\n%s", before, after)
				}
				wantProblemCode(t, e.do("POST", c.other.path, c.token, c.other.body, "Idempotency-Key", key), 422, "idempotency_key_reused")
				if after := e.fingerprint(); after != before {
					t.Errorf("the reused key changed the database:\n%s\n%s", before, after)
				}
				// The first answer still replays after the refusal.
				if r := e.do("POST", c.first.path, c.token, c.first.body, "Idempotency-Key", key); !bytes.Equal(r.Body, first.Body) {
					t.Errorf("after the refusal the key replays %d %s", r.Status, r.Body)
				}
				if r := e.do("POST", c.other.path, c.token, c.other.body, "Idempotency-Key", key+"-own"); r.Status != c.otherFresh {
					t.Errorf("the other request under its own key: %d %s, want %d", r.Status, r.Body, c.otherFresh)
				}
			})
		}
		e.checkLedger()
	})
}

// keyedRoutes lists the POST routes of api/server.go whose handler reads an
// Idempotency-Key, from the source, so that a new one cannot be missed.
func keyedRoutes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	handler := regexp.MustCompile(`(?s)\nfunc \(s \*server\) (\w+)\(c \*fiber\.Ctx\) error \{(.*?)\n\}`)
	keyed := map[string]bool{}
	var server []byte
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if f == "server.go" {
			server = src
		}
		for _, m := range handler.FindAllSubmatch(src, -1) {
			if bytes.Contains(m[2], []byte("idempotencyKey(c,")) || bytes.Contains(m[2], []byte("idempotencyKeyOf(c,")) {
				keyed[string(m[1])] = true
			}
		}
	}
	var out []string
	for _, m := range regexp.MustCompile(`v1\.Post\("([^"]+)", .*s\.(\w+)\)`).FindAllSubmatch(server, -1) {
		if keyed[string(m[2])] {
			out = append(out, "/v1"+string(m[1]))
		}
	}
	if len(out) < len(keyed) {
		t.Errorf("%d handlers read an Idempotency-Key, %d POST routes lead to them", len(keyed), len(out))
	}
	sort.Strings(out)
	return out
}

// fingerprint sums up what a write could change: the rows of every table a
// request writes, the points held, and the states of redemptions and gifts.
func (e *env) fingerprint() string {
	e.t.Helper()
	var parts []string
	for _, q := range []string{
		"SELECT COUNT(*) FROM members", "SELECT COUNT(*) FROM ledger_entries", "SELECT COUNT(*) FROM lots",
		"SELECT COUNT(*) FROM purchases", "SELECT COUNT(*) FROM returns", "SELECT COUNT(*) FROM redemptions",
		"SELECT COUNT(*) FROM rewards", "SELECT COUNT(*) FROM offers", "SELECT COUNT(*) FROM offer_templates",
		"SELECT COUNT(*) FROM audit_log", "SELECT COUNT(*) FROM idempotency_keys",
		"SELECT COALESCE(SUM(points), 0) FROM member_balances", "SELECT COALESCE(SUM(stock), 0) FROM rewards",
		"SELECT COUNT(*) FROM redemptions WHERE status = 'issued'", "SELECT COUNT(*) FROM member_gifts WHERE status = 'available'",
	} {
		var n int64
		if err := e.store.DB().Raw(q).Scan(&n).Error; err != nil {
			e.t.Fatalf("%s: %v", q, err)
		}
		parts = append(parts, fmt.Sprint(n))
	}
	return strings.Join(parts, " ")
}
