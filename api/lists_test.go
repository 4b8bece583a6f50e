package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// listRoute is one list of the API (§1: ?limit= from 1 to 500, default 50,
// and ?cursor=; {"items": [...], "next_cursor": ...}).
type listRoute struct {
	name string
	path string // with the query the list needs, without limit and cursor
	// key names the field that tells items apart; "" when items are strings.
	key string
	// fill makes the list hold more than one page of listPage items.
	fill func()
}

// listPage is the page size the paging checks ask for.
const listPage = 3

// listRoutes are every list route of the router (server.go) over e, for
// member m. A route added to the router without a line here fails
// TestListRoutesCovered.
func listRoutes(e *env, m string) []listRoute {
	admin, mk := e.admin(), e.marketer()
	n := listPage*2 + 1
	now := e.clock.Now()
	return []listRoute{
		{"Tiers", "/v1/tiers", "code", func() {
			e.beautyLadder()
			for r := 3; r < 3+n; r++ {
				code := fmt.Sprintf("t%d", r)
				e.do("PUT", "/v1/tiers/"+code, mk, map[string]any{"code": code, "name": code, "rank": r, "earn_multiplier": "1",
					"qualifying_spend": 100000 * r}).must(e.t, 201)
			}
		}},
		{"Members", "/v1/members", "id", func() {
			for range n {
				e.enrol()
			}
		}},
		{"Ledger", "/v1/members/" + m + "/ledger", "id", func() {
			for range n {
				e.do("POST", "/v1/members/"+m+"/adjustments", admin, map[string]any{"points": 10, "reason": "lists"}).must(e.t, 201)
			}
		}},
		{"Rewards", "/v1/rewards", "id", func() {
			for i := range n {
				e.addReward(fmt.Sprintf("list-%d", i), 0)
			}
		}},
		{"Redemptions", "/v1/members/" + m + "/redemptions", "id", func() {
			free := e.addReward("list-free", 0)["id"].(string)
			for range n {
				e.redeemReward(admin, m, free).must(e.t, 201)
			}
		}},
		{"Offers", "/v1/offers", "id", func() {
			for i := range n {
				e.do("POST", "/v1/offers", mk, map[string]any{"code": fmt.Sprintf("list-offer-%d", i), "name": "x", "kind": "bonus",
					"bonus_points": 1, "target": map[string]any{"all": true}}).must(e.t, 201)
			}
		}},
		{"OfferTemplates", "/v1/offer-templates", "id", func() {
			for i := range n {
				e.do("POST", "/v1/offer-templates", mk, map[string]any{"code": fmt.Sprintf("list-tpl-%d", i), "name": "x",
					"kind": "bonus", "bonus_points": 1, "active": false}).must(e.t, 201)
			}
		}},
		{"MemberOffers", "/v1/members/" + m + "/offers", "id", func() {
			for i := range n {
				e.do("POST", "/v1/offers", mk, map[string]any{"code": fmt.Sprintf("list-mo-%d", i), "name": "x", "kind": "bonus",
					"bonus_points": 1, "target": map[string]any{"member_ids": []string{m}}}).must(e.t, 201)
			}
		}},
		{"Gifts", "/v1/members/" + m + "/gifts", "id", func() {
			for i := range n {
				year := now.Year() - 1 - i
				if err := e.store.DB().Exec(`INSERT INTO member_gifts (id, member_id, year, birthday, options, bonus_points, status,
					expires_at, run_id, created_at) VALUES (?, ?, ?, ?, '[]', 0, 'expired', ?, 'lists', ?)`,
					fmt.Sprintf("gift-%s-%d", m, year), m, year, fmt.Sprintf("%d-03-01", year),
					time.Date(year, 4, 1, 0, 0, 0, 0, time.UTC), time.Date(year, 3, 1, 0, 0, 0, 0, time.UTC)).Error; err != nil {
					e.t.Fatal(err)
				}
			}
		}},
		{"RedemptionRateByMonth", "/v1/analytics/redemption-rate?interval=month&from=2025-01-15&to=2026-02-28", "from", nil},
		{"ChurnRisk", "/v1/analytics/churn-risk", "member_id", func() {
			for i := range n {
				id := e.enrol()
				if err := e.store.DB().Exec(`INSERT INTO member_churn (member_id, churn_risk, p_alive, expected_purchases_90d,
					purchase_days, purchases, days_since_last_purchase, computed_at) VALUES (?, ?, '0.5000', '1.0000', 1, 1, 10, ?)`,
					id, fmt.Sprintf("0.%04d", 1000+i%3), now).Error; err != nil {
					e.t.Fatal(err)
				}
			}
		}},
		{"CLV", "/v1/analytics/clv", "member_id", func() {
			for i := range n {
				id := e.enrol()
				if err := e.store.DB().Exec(`INSERT INTO member_churn (member_id, churn_risk, p_alive, expected_purchases_90d,
					purchase_days, purchases, days_since_last_purchase, computed_at, clv) VALUES (?, '0.5000', '0.5000', '1.0000', 2, 2, 10, ?, ?)`,
					id, now, 5000+1000*(i%3)).Error; err != nil {
					e.t.Fatal(err)
				}
			}
		}},
		{"Segments", "/v1/segments", "code", nil},
		{"SegmentMembers", "/v1/segments/loyal/members", "", func() {
			for range n {
				id := e.enrol()
				if err := e.store.DB().Exec(`INSERT INTO member_segments (member_id, segment_code, computed_at) VALUES (?, 'loyal', ?)`,
					id, now).Error; err != nil {
					e.t.Fatal(err)
				}
			}
		}},
		{"Jobs", "/v1/jobs", "name", nil},
		{"Audit", "/v1/audit", "id", func() {
			for i := range n {
				e.addReward(fmt.Sprintf("audit-%d", i), 0)
			}
		}},
		{"Webhooks", "/v1/webhooks", "id", func() {
			for i := range n {
				e.do("POST", "/v1/webhooks", admin, map[string]any{"url": fmt.Sprintf("https://h%d.example/x", i), "events": []string{"*"}}).must(e.t, 201)
			}
		}},
		{"WebhookDeliveries", "/v1/webhooks/wh-lists/deliveries", "id", func() {
			if err := e.store.DB().Exec(`INSERT INTO webhooks (id, url, events, secret, active, created_at, updated_at)
				VALUES ('wh-lists', 'https://lists.example/x', '["*"]', 'whsec_lists', false, ?, ?)`, now, now).Error; err != nil {
				e.t.Fatal(err)
			}
			for i := range n {
				if err := e.store.DB().Exec(`INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_position, event_type, status,
					attempts, created_at, updated_at) VALUES (?, 'wh-lists', ?, ?, 'member.created', 'delivered', 1, ?, ?)`,
					fmt.Sprintf("d-%03d", i), i+1, i+1, now, now).Error; err != nil {
					e.t.Fatal(err)
				}
			}
		}},
	}
}

// withQuery adds name=value to path.
func withQuery(path, name, value string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + name + "=" + url.QueryEscape(value)
}

// listPageOf reads one page of a list: the keys of its items and its cursor.
func listPageOf(t *testing.T, e *env, r listRoute, path string) ([]string, *string) {
	t.Helper()
	res := e.do("GET", path, e.admin(), nil).must(t, 200)
	var body struct {
		Items      []json.RawMessage `json:"items"`
		NextCursor *string           `json:"next_cursor"`
	}
	var raw map[string]json.RawMessage
	res.Decode(t, &raw)
	if _, ok := raw["next_cursor"]; !ok {
		t.Errorf("GET %s: no next_cursor: %s", path, res.Body)
	}
	if string(raw["items"]) == "null" || raw["items"] == nil {
		t.Fatalf("GET %s: items is not an array: %s", path, res.Body)
	}
	res.Decode(t, &body)
	keys := make([]string, 0, len(body.Items))
	for _, it := range body.Items {
		if r.key == "" {
			var s string
			if err := json.Unmarshal(it, &s); err != nil {
				t.Fatalf("GET %s: item %s is not a string", path, it)
			}
			keys = append(keys, s)
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(it, &m); err != nil {
			t.Fatalf("GET %s: item %s is not an object", path, it)
		}
		keys = append(keys, fmt.Sprint(m[r.key]))
	}
	return keys, body.NextCursor
}

// TestListsAtTheirLimits checks every list route against §1: limit 0, -1,
// 501, 1e9, a fraction or a word is 422 naming limit; a cursor the list did
// not make is 422 naming cursor; limit=500 is fine; pages of limit items
// follow one another through next_cursor to null, each item once, in the
// order of one big page; and an empty list is "items": [], never null.
func TestListsAtTheirLimits(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		t.Run("Empty", func(t *testing.T) {
			e := newEnv(t, dialect)
			// The global lists first, while nothing exists; then the
			// lists of a member who has done nothing.
			for _, path := range []string{"/v1/tiers", "/v1/members", "/v1/rewards", "/v1/offers", "/v1/offer-templates",
				"/v1/analytics/churn-risk", "/v1/segments/loyal/members"} {
				r := e.do("GET", path, e.admin(), nil).must(t, 200)
				if !strings.Contains(string(r.Body), `"items":[]`) {
					t.Errorf("GET %s on a new program: %s, want \"items\": []", path, r.Body)
				}
			}
			m := e.enrol()
			for _, path := range []string{"/v1/members/" + m + "/ledger", "/v1/members/" + m + "/redemptions",
				"/v1/members/" + m + "/offers", "/v1/members/" + m + "/gifts"} {
				r := e.do("GET", path, e.admin(), nil).must(t, 200)
				if !strings.Contains(string(r.Body), `"items":[]`) {
					t.Errorf("GET %s of a new member: %s, want \"items\": []", path, r.Body)
				}
			}
		})

		e := newEnv(t, dialect)
		m := e.enrol()
		routes := listRoutes(e, m)
		for _, r := range routes {
			if r.fill != nil {
				r.fill()
			}
		}
		for _, r := range routes {
			t.Run(r.name, func(t *testing.T) {
				for _, l := range []string{"0", "-1", "501", "1000000000", "1e9", "2.5", "ten", "99999999999999999999"} {
					assertProblem(t, e.do("GET", withQuery(r.path, "limit", l), e.admin(), nil), http.StatusUnprocessableEntity, "limit")
				}
				for _, c := range []string{"!!!", "%%%", base64.RawURLEncoding.EncodeToString([]byte("a\x1fb\x1fc"))} {
					assertProblem(t, e.do("GET", withQuery(r.path, "cursor", c), e.admin(), nil), http.StatusUnprocessableEntity, "cursor")
				}
				all, next := listPageOf(t, e, r, withQuery(r.path, "limit", "500"))
				if next != nil {
					t.Fatalf("limit=500 over %d items has a next page", len(all))
				}
				if len(all) <= listPage {
					t.Fatalf("the fixture made %d items, want more than %d", len(all), listPage)
				}
				def, _ := listPageOf(t, e, r, r.path)
				if len(def) != min(len(all), 50) {
					t.Errorf("default page: %d items of %d, want %d", len(def), len(all), min(len(all), 50))
				}
				var paged []string
				path := withQuery(r.path, "limit", fmt.Sprint(listPage))
				for pages := 0; ; pages++ {
					if pages > len(all) {
						t.Fatalf("paging does not end")
					}
					keys, next := listPageOf(t, e, r, path)
					if len(keys) > listPage {
						t.Fatalf("page of %d items with limit=%d", len(keys), listPage)
					}
					paged = append(paged, keys...)
					if next == nil {
						break
					}
					if len(keys) == 0 {
						t.Fatalf("an empty page with a next cursor")
					}
					path = withQuery(withQuery(r.path, "limit", fmt.Sprint(listPage)), "cursor", *next)
				}
				if strings.Join(paged, ",") != strings.Join(all, ",") {
					t.Errorf("pages of %d give\n%v\nwant\n%v", listPage, paged, all)
				}
			})
		}
	})
}

// TestListRoutesCovered fails when the router has a list route that
// TestListsAtTheirLimits does not cover: every GET whose answer is a list
// must be in listRoutes.
func TestListRoutesCovered(t *testing.T) {
	e := newEnv(t, loyalty.SQLite)
	covered := map[string]bool{}
	for _, r := range listRoutes(e, ":id") {
		p, _, _ := strings.Cut(r.path, "?")
		covered[strings.Replace(strings.Replace(p, "/loyal/", "/:code/", 1), "/wh-lists/", "/:id/", 1)] = true
	}
	// GETs that answer one resource, not a list.
	single := map[string]bool{"/v1/program": true, "/v1/members/:id": true, "/v1/members/:id/balance": true,
		"/v1/members/:id/balance/stream": true,
		"/v1/purchases/:id":              true, "/v1/rewards/:id": true, "/v1/redemptions/:id": true, "/v1/coupons/:code": true,
		"/v1/offers/:id": true, "/v1/offers/:id/reach": true, "/v1/analytics/summary": true, "/v1/analytics/churn-model": true,
		// Reports: one answer of fixed groups, not a list of resources.
		"/v1/analytics/cx": true, "/v1/analytics/clv-model": true, "/v1/analytics/store-categories": true,
		"/v1/analytics/category-lapse": true,
		// Streamed CSV exports (§15), whole tables rather than pages:
		// TestMembersExport, TestLedgerExport and TestExportsPage cover them.
		"/v1/members/export": true, "/v1/ledger/export": true,
		// The event log, read by ?after= with a next_cursor that is never
		// null (a consumer polls with it): TestEventsAPI covers it.
		"/v1/events": true, "/v1/webhooks/:id": true,
		// An import's record, and its failed rows as one CSV (§15).
		"/v1/imports/:id": true, "/v1/imports/:id/errors": true}
	for _, r := range e.app.GetRoutes(true) {
		if r.Method != http.MethodGet || !strings.HasPrefix(r.Path, "/v1/") {
			continue
		}
		if !covered[r.Path] && !single[r.Path] {
			t.Errorf("GET %s is neither a list TestListsAtTheirLimits covers nor a known single resource", r.Path)
		}
	}
}
