package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// ofSend is e.do for goroutines: it reports failures instead of failing
// the test.
func (e *env) ofSend(method, path, token string, body any) (resp, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return resp{}, err
		}
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequest(method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := e.app.Test(req, -1)
	if err != nil {
		return resp{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}, err
}

// ofProblem asserts a problem document of status and, unless empty, code.
func ofProblem(t testing.TB, r resp, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("status %d, want %d: %s", r.Status, status, r.Body)
		return
	}
	var p struct {
		Status int    `json:"status"`
		Code   string `json:"code"`
	}
	if err := json.Unmarshal(r.Body, &p); err != nil || p.Status != status || (code != "" && p.Code != code) {
		t.Errorf("problem %s, want status %d code %q", r.Body, status, code)
	}
}

// ofLedger reads all of a member's ledger entries, newest first.
func (e *env) ofLedger(member string) []loyalty.Entry {
	e.t.Helper()
	var l struct {
		Items []loyalty.Entry `json:"items"`
	}
	e.do("GET", "/v1/members/"+member+"/ledger?limit=500", e.admin(), nil).must(e.t, 200).Decode(e.t, &l)
	return l.Items
}

// ofKind keeps the entries of one kind.
func ofKind(entries []loyalty.Entry, kind string) []loyalty.Entry {
	var out []loyalty.Entry
	for _, en := range entries {
		if en.Kind == kind {
			out = append(out, en)
		}
	}
	return out
}

// ofCount runs a COUNT query on the database.
func (e *env) ofCount(query string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.store.DB().Raw(query, args...).Scan(&n).Error; err != nil {
		e.t.Fatal(err)
	}
	return n
}

// ofOffer creates an offer and returns its id; name defaults to the code.
func (e *env) ofOffer(body map[string]any) string {
	e.t.Helper()
	if _, ok := body["name"]; !ok {
		body["name"] = body["code"]
	}
	return e.do("POST", "/v1/offers", e.marketer(), body).must(e.t, 201).JSON(e.t)["id"].(string)
}

// ofOnly targets one member.
func ofOnly(member string) map[string]any { return map[string]any{"member_ids": []string{member}} }

// ofItem is a basket line.
func ofItem(sku, category string, amount int64) map[string]any {
	return map[string]any{"sku": sku, "category": category, "amount": amount}
}

// ofEarned is what a purchase or a quote answers about points.
type ofEarned struct {
	ID           string                  `json:"id"`
	PointsEarned int64                   `json:"points_earned"`
	Breakdown    []loyalty.BreakdownLine `json:"breakdown"`
}

// offers maps offer id to points among the breakdown lines.
func (x ofEarned) offers() map[string]int64 {
	m := map[string]int64{}
	for _, l := range x.Breakdown {
		if l.Source == "offer" {
			m[l.OfferID] += l.Points
		}
	}
	return m
}

// tier is the tier line's points.
func (x ofEarned) tier() int64 {
	for _, l := range x.Breakdown {
		if l.Source == "tier" {
			return l.Points
		}
	}
	return -1
}

// ofBuy posts a purchase for member: a total, or items adding up to it.
// fields are extra body fields in pairs.
func (e *env) ofBuy(member string, total int64, items []map[string]any, fields ...any) ofEarned {
	e.t.Helper()
	body := ofBody(member, total, items, fields...)
	var out ofEarned
	e.do("POST", "/v1/purchases", e.pos(), body).must(e.t, 201).Decode(e.t, &out)
	return out
}

func ofBody(member string, total int64, items []map[string]any, fields ...any) map[string]any {
	body := map[string]any{"member_id": member, "total": total, "store_id": "store-1"}
	if items != nil {
		body["items"] = items
	}
	for i := 0; i+1 < len(fields); i += 2 {
		body[fields[i].(string)] = fields[i+1]
	}
	return body
}

// ofWant asserts a purchase's tier points and its offer lines.
func ofWant(t testing.TB, what string, got ofEarned, tier int64, offers map[string]int64) {
	t.Helper()
	var sum int64
	for _, p := range offers {
		sum += p
	}
	if offers == nil {
		offers = map[string]int64{}
	}
	if got.tier() != tier || fmt.Sprint(got.offers()) != fmt.Sprint(offers) || got.PointsEarned != tier+sum {
		t.Errorf("%s: earned %d breakdown %+v, want tier %d offers %v (total %d)", what, got.PointsEarned, got.Breakdown, tier, offers, tier+sum)
	}
}

// ofOfferEntries maps offer id to the points of a member's offer entries,
// checking that each names its offer and purchase.
func (e *env) ofOfferEntries(member string) (map[string]int64, int) {
	e.t.Helper()
	m := map[string]int64{}
	n := 0
	for _, en := range ofKind(e.ofLedger(member), "offer") {
		if en.OfferID == nil || en.PurchaseID == nil {
			e.t.Errorf("offer entry without offer_id or purchase_id: %+v", en)
			continue
		}
		m[*en.OfferID] += en.Points
		n++
	}
	return m, n
}

// ofMemberOffers lists the offers live for a member now.
func (e *env) ofMemberOffers(member, tok string) map[string]loyalty.MemberOffer {
	e.t.Helper()
	var l struct {
		Items []loyalty.MemberOffer `json:"items"`
	}
	e.do("GET", "/v1/members/"+member+"/offers", tok, nil).must(e.t, 200).Decode(e.t, &l)
	out := map[string]loyalty.MemberOffer{}
	for _, o := range l.Items {
		out[o.ID] = o
	}
	return out
}

func ofUsesLeft(o loyalty.MemberOffer) string {
	if o.UsesLeft == nil {
		return "null"
	}
	return fmt.Sprint(*o.UsesLeft)
}

// With no tiers configured, tier points are ⌊total / 100⌋.

func TestOfferConditions(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)

		t.Run("Categories", func(t *testing.T) {
			m := e.enrol()
			o := e.ofOffer(map[string]any{"code": "c-skin", "kind": "multiplier", "multiplier": "2",
				"conditions": map[string]any{"categories": []string{"skincare"}}, "target": ofOnly(m)})
			// E = 40.00 of skincare: ⌊40 · 1 · (2 − 1)⌋ = 40.
			ofWant(t, "skincare in basket", e.ofBuy(m, 10000, []map[string]any{ofItem("A", "skincare", 4000), ofItem("B", "makeup", 6000)}), 100, map[string]int64{o: 40})
			ofWant(t, "no skincare", e.ofBuy(m, 10000, []map[string]any{ofItem("B", "makeup", 10000)}), 100, nil)
			ofWant(t, "no items", e.ofBuy(m, 10000, nil), 100, nil)
		})

		t.Run("SKUs", func(t *testing.T) {
			m := e.enrol()
			o := e.ofOffer(map[string]any{"code": "c-sku", "kind": "multiplier", "multiplier": "3",
				"conditions": map[string]any{"skus": []string{"SKU-9"}}, "target": ofOnly(m)})
			// E = 25.00: ⌊25 · 2⌋ = 50.
			ofWant(t, "SKU-9 in basket", e.ofBuy(m, 10000, []map[string]any{ofItem("SKU-9", "makeup", 2500), ofItem("SKU-1", "makeup", 7500)}), 100, map[string]int64{o: 50})
			ofWant(t, "no SKU-9", e.ofBuy(m, 10000, []map[string]any{ofItem("SKU-1", "makeup", 10000)}), 100, nil)
		})

		t.Run("StoreIDs", func(t *testing.T) {
			m := e.enrol()
			o := e.ofOffer(map[string]any{"code": "c-store", "kind": "bonus", "bonus_points": 30,
				"conditions": map[string]any{"store_ids": []string{"store-7"}}, "target": ofOnly(m)})
			ofWant(t, "store-7", e.ofBuy(m, 2000, nil, "store_id", "store-7"), 20, map[string]int64{o: 30})
			ofWant(t, "store-1", e.ofBuy(m, 2000, nil, "store_id", "store-1"), 20, nil)
		})

		t.Run("Channels", func(t *testing.T) {
			m := e.enrol()
			o := e.ofOffer(map[string]any{"code": "c-web", "kind": "bonus", "bonus_points": 20,
				"conditions": map[string]any{"channels": []string{"web"}}, "target": ofOnly(m)})
			ofWant(t, "web", e.ofBuy(m, 2000, nil, "channel", "web"), 20, map[string]int64{o: 20})
			ofWant(t, "pos", e.ofBuy(m, 2000, nil, "channel", "pos"), 20, nil)
			ofWant(t, "default channel", e.ofBuy(m, 2000, nil), 20, nil)
		})

		t.Run("MinSpend", func(t *testing.T) {
			m := e.enrol()
			o := e.ofOffer(map[string]any{"code": "c-min", "kind": "bonus", "bonus_points": 25,
				"conditions": map[string]any{"min_spend": 5000}, "target": ofOnly(m)})
			ofWant(t, "total == min_spend", e.ofBuy(m, 5000, nil), 50, map[string]int64{o: 25})
			ofWant(t, "total == min_spend - 1", e.ofBuy(m, 4999, nil), 49, nil)
			ofWant(t, "total > min_spend", e.ofBuy(m, 5001, nil), 50, map[string]int64{o: 25})
		})

		t.Run("OtherMembersUntouched", func(t *testing.T) {
			m := e.enrol()
			ofWant(t, "untargeted member", e.ofBuy(m, 10000, []map[string]any{ofItem("SKU-9", "skincare", 10000)},
				"store_id", "store-7", "channel", "web"), 100, nil)
		})
		e.checkLedger()
	})
}

func TestOfferMultiplierArithmetic(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		cases := []struct {
			name       string
			multiplier string
			total      int64
			items      []map[string]any
			categories []string
			tier       int64
			offer      int64
		}{
			// ⌊33.33 · 0.5⌋ = ⌊16.665⌋ = 16; tier ⌊33.33⌋ = 33.
			{"x1.5 on 3333", "1.5", 3333, nil, nil, 33, 16},
			// Each floored on its own: 9 + ⌊9.99 · 0.25⌋ = 9 + 2 = 11, not ⌊12.4875⌋ = 12.
			{"x1.25 on 999", "1.25", 999, nil, nil, 9, 2},
			// ⌊19.99 · 1.5⌋ = ⌊29.985⌋ = 29 on the eligible item only.
			{"x2.5 on 19.99 of skincare", "2.5", 5000, []map[string]any{ofItem("A", "skincare", 1999), ofItem("B", "makeup", 3001)}, []string{"skincare"}, 50, 29},
			// ⌊0.99 · 0.1⌋ = 0: no line at all.
			{"x1.1 on 0.99", "1.1", 99, nil, nil, 0, 0},
			// ⌊123.45 · 0.333333⌋ = ⌊41.14995885⌋ = 41.
			{"x1.333333 on 12345", "1.333333", 12345, nil, nil, 123, 41},
		}
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				m := e.enrol()
				cond := map[string]any{}
				if c.categories != nil {
					cond["categories"] = c.categories
				}
				o := e.ofOffer(map[string]any{"code": fmt.Sprintf("mul-%d", i), "kind": "multiplier", "multiplier": c.multiplier,
					"conditions": cond, "target": ofOnly(m)})
				want := map[string]int64{o: c.offer}
				if c.offer == 0 {
					want = nil
				}
				ofWant(t, c.name, e.ofBuy(m, c.total, c.items), c.tier, want)
				if b := e.balance(m); b.Available != c.tier+c.offer {
					t.Errorf("available %d, want %d", b.Available, c.tier+c.offer)
				}
			})
		}

		t.Run("OnTopOfTheTierMultiplier", func(t *testing.T) {
			e.beautyLadder()
			m := e.enrol()
			e.ofBuy(m, 35000, nil) // insider → vib, 350 points
			o := e.ofOffer(map[string]any{"code": "mul-vib", "kind": "multiplier", "multiplier": "1.5", "target": ofOnly(m)})
			// VIB: ⌊10.50 · 1.25⌋ = 13; offer ⌊10.50 · 0.5⌋ = 5 (not scaled by the tier).
			ofWant(t, "vib 1050", e.ofBuy(m, 1050, nil), 13, map[string]int64{o: 5})
		})
		e.checkLedger()
	})
}

func TestOfferBonusAndStacking(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		bonus := e.ofOffer(map[string]any{"code": "st-bonus", "kind": "bonus", "bonus_points": 50, "target": ofOnly(m)})
		skin := e.ofOffer(map[string]any{"code": "st-skin", "kind": "multiplier", "multiplier": "2",
			"conditions": map[string]any{"categories": []string{"skincare"}}, "target": map[string]any{"all": true}})
		all := e.ofOffer(map[string]any{"code": "st-all", "kind": "multiplier", "multiplier": "1.5", "target": ofOnly(m)})
		unmet := e.ofOffer(map[string]any{"code": "st-min", "kind": "bonus", "bonus_points": 7,
			"conditions": map[string]any{"min_spend": 10001}, "target": ofOnly(m)})

		p := e.ofBuy(m, 10000, []map[string]any{ofItem("A", "skincare", 4000), ofItem("B", "makeup", 6000)}, "external_id", "ST-1")
		// tier 100; bonus 50; ×2 on 40.00 skincare → 40; ×1.5 on 100.00 → 50; min_spend 100.01 fails.
		want := map[string]int64{bonus: 50, skin: 40, all: 50}
		ofWant(t, "stacked", p, 100, want)
		if len(p.Breakdown) != 4 {
			t.Errorf("breakdown %+v, want 4 lines", p.Breakdown)
		}
		got, n := e.ofOfferEntries(m)
		if n != 3 || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("offer entries %v (%d), want %v", got, n, want)
		}
		for _, en := range ofKind(e.ofLedger(m), "offer") {
			if *en.PurchaseID != p.ID {
				t.Errorf("offer entry %+v names purchase %s, want %s", en, *en.PurchaseID, p.ID)
			}
		}
		if earn := ofKind(e.ofLedger(m), "earn"); len(earn) != 1 || earn[0].Points != 100 {
			t.Errorf("earn entries %+v", earn)
		}
		// A replay of the receipt applies nothing again.
		rep := e.do("POST", "/v1/purchases", e.pos(), ofBody(m, 10000, []map[string]any{ofItem("A", "skincare", 4000), ofItem("B", "makeup", 6000)},
			"external_id", "ST-1")).must(t, 201)
		if rep.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("repeat of the receipt was not a replay: %v", rep.Header)
		}
		if _, n := e.ofOfferEntries(m); n != 3 {
			t.Errorf("%d offer entries after the replay, want 3", n)
		}
		if n := e.ofCount("SELECT COUNT(*) FROM offer_uses WHERE purchase_id = ?", p.ID); n != 3 {
			t.Errorf("%d offer uses, want 3", n)
		}
		var stored struct {
			PointsEarned int64 `json:"points_earned"`
		}
		e.do("GET", "/v1/purchases/"+p.ID, e.admin(), nil).must(t, 200).Decode(t, &stored)
		if stored.PointsEarned != 240 {
			t.Errorf("stored points_earned %d, want 240", stored.PointsEarned)
		}
		if b := e.balance(m); b.Available != 240 {
			t.Errorf("available %d, want 240", b.Available)
		}
		if _, ok := got[unmet]; ok {
			t.Errorf("the offer whose min_spend is unmet has entries")
		}
		e.checkLedger()
	})
}

func TestOfferWindowAndStatus(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect) // now 2026-03-01T12:00:00Z

		t.Run("WindowEdges", func(t *testing.T) {
			m := e.enrol()
			// starts 2026-02-01T00:00:00Z and ends 2026-02-10T00:00:00Z, written with offsets.
			o := e.ofOffer(map[string]any{"code": "win", "kind": "bonus", "bonus_points": 10, "target": ofOnly(m),
				"starts_at": "2026-02-01T09:00:00+09:00", "ends_at": "2026-02-09T19:00:00-05:00"})
			for _, c := range []struct {
				at    string
				apply bool
			}{
				{"2026-01-31T23:59:59.999999Z", false},
				{"2026-02-01T00:00:00Z", true}, // == starts_at
				{"2026-02-01T01:00:00+01:00", true},
				{"2026-02-05T12:00:00Z", true},
				{"2026-02-09T23:59:59.999999Z", true},
				{"2026-02-10T00:00:00Z", false}, // == ends_at
				{"2026-02-10T01:00:00+01:00", false},
				{"2026-02-10T00:00:00.000001Z", false},
			} {
				var want map[string]int64
				if c.apply {
					want = map[string]int64{o: 10}
				}
				ofWant(t, "occurred_at "+c.at, e.ofBuy(m, 1000, nil, "occurred_at", c.at), 10, want)
			}
			if _, n := e.ofOfferEntries(m); n != 4 {
				t.Errorf("%d offer entries, want 4", n)
			}
			// Not live now: not listed for the member.
			if l := e.ofMemberOffers(m, e.token(loyalty.RoleMember, m)); len(l) != 0 {
				t.Errorf("member offers %+v", l)
			}
		})

		t.Run("Paused", func(t *testing.T) {
			m := e.enrol()
			o := e.ofOffer(map[string]any{"code": "pausable", "kind": "bonus", "bonus_points": 15, "target": ofOnly(m)})
			ofWant(t, "active", e.ofBuy(m, 1000, nil), 10, map[string]int64{o: 15})
			r := e.do("PATCH", "/v1/offers/"+o, e.marketer(), map[string]any{"status": "paused"}).must(t, 200).JSON(t)
			if r["status"] != "paused" {
				t.Fatalf("patch %v", r)
			}
			ofWant(t, "paused", e.ofBuy(m, 1000, nil), 10, nil)
			if _, ok := e.ofMemberOffers(m, e.admin())[o]; ok {
				t.Errorf("a paused offer is listed for the member")
			}
			e.do("PATCH", "/v1/offers/"+o, e.marketer(), map[string]any{"status": "active"}).must(t, 200)
			ofWant(t, "active again", e.ofBuy(m, 1000, nil), 10, map[string]int64{o: 15})
		})
		e.checkLedger()
	})
}

func TestOfferActivation(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m, other := e.enrol(), e.enrol()
		mt := e.token(loyalty.RoleMember, m)
		o := e.ofOffer(map[string]any{"code": "opt-in", "kind": "bonus", "bonus_points": 40, "requires_activation": true,
			"max_uses_per_member": 2, "target": map[string]any{"all": true}})
		free := e.ofOffer(map[string]any{"code": "no-opt-in", "kind": "bonus", "bonus_points": 1, "target": ofOnly(m)})

		l := e.ofMemberOffers(m, mt)
		if x := l[o]; x.ID != o || x.Activated || ofUsesLeft(x) != "2" || !x.RequiresActivation {
			t.Errorf("before activation %+v (uses_left %s)", x, ofUsesLeft(x))
		}
		if x := l[free]; x.ID != free || !x.Activated || ofUsesLeft(x) != "null" {
			t.Errorf("offer without opt-in %+v (uses_left %s)", x, ofUsesLeft(x))
		}
		ofWant(t, "not activated", e.ofBuy(m, 1000, nil), 10, map[string]int64{free: 1})

		// Another member may not activate it for m.
		ofProblem(t, e.do("POST", "/v1/members/"+m+"/offers/"+o+"/activate", e.token(loyalty.RoleMember, other), nil), 404, "")
		ofProblem(t, e.do("POST", "/v1/members/"+m+"/offers/no-such-offer/activate", mt, nil), 404, "")
		// An offer not targeting the member cannot be activated by it.
		ofProblem(t, e.do("POST", "/v1/members/"+other+"/offers/"+free+"/activate", e.token(loyalty.RoleMember, other), nil), 404, "")

		a := e.do("POST", "/v1/members/"+m+"/offers/"+o+"/activate", mt, nil).must(t, 200).JSON(t)
		if a["activated"] != true || a["id"] != o {
			t.Errorf("activate %v", a)
		}
		e.do("POST", "/v1/members/"+m+"/offers/"+o+"/activate", mt, nil).must(t, 200) // twice is harmless
		if x := e.ofMemberOffers(m, mt)[o]; !x.Activated || ofUsesLeft(x) != "2" {
			t.Errorf("after activation %+v (uses_left %s)", x, ofUsesLeft(x))
		}
		ofWant(t, "activated 1", e.ofBuy(m, 1000, nil), 10, map[string]int64{o: 40, free: 1})
		if x := e.ofMemberOffers(m, mt)[o]; ofUsesLeft(x) != "1" {
			t.Errorf("uses_left %s, want 1", ofUsesLeft(x))
		}
		ofWant(t, "activated 2", e.ofBuy(m, 1000, nil), 10, map[string]int64{o: 40, free: 1})
		if x := e.ofMemberOffers(m, mt)[o]; ofUsesLeft(x) != "0" {
			t.Errorf("uses_left %s, want 0", ofUsesLeft(x))
		}
		ofWant(t, "uses exhausted", e.ofBuy(m, 1000, nil), 10, map[string]int64{free: 1})

		// Activation is per member.
		if x := e.ofMemberOffers(other, e.token(loyalty.RoleMember, other))[o]; x.Activated || ofUsesLeft(x) != "2" {
			t.Errorf("other member %+v (uses_left %s)", x, ofUsesLeft(x))
		}
		ofWant(t, "other member not activated", e.ofBuy(other, 1000, nil), 10, nil)
		if got, n := e.ofOfferEntries(m); n != 6 || got[o] != 80 || got[free] != 4 {
			t.Errorf("offer entries %v (%d)", got, n)
		}
		e.checkLedger()
	})
}

func TestOfferMaxUsesConcurrent(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		o := e.ofOffer(map[string]any{"code": "three", "kind": "bonus", "bonus_points": 7, "max_uses_per_member": 3,
			"target": map[string]any{"all": true}})
		const n = 15
		rs := make([]resp, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range rs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				rs[i], errs[i] = e.ofSend("POST", "/v1/purchases", e.pos(),
					ofBody(m, 1000, nil, "external_id", fmt.Sprintf("MU-%d", i)))
			}(i)
		}
		close(start)
		wg.Wait()
		applied := 0
		for i, r := range rs {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			var x ofEarned
			r.must(t, 201).Decode(t, &x)
			if x.tier() != 10 {
				t.Errorf("tier points %+v", x)
			}
			if p, ok := x.offers()[o]; ok {
				applied++
				if p != 7 {
					t.Errorf("offer points %d", p)
				}
			}
		}
		if applied != 3 {
			t.Errorf("%d purchases report the offer, want 3", applied)
		}
		got, cnt := e.ofOfferEntries(m)
		if cnt != 3 || got[o] != 21 {
			t.Errorf("offer entries %v (%d), want 3 of 7", got, cnt)
		}
		if k := len(ofKind(e.ofLedger(m), "earn")); k != n {
			t.Errorf("%d earn entries, want %d", k, n)
		}
		if k := e.ofCount("SELECT COUNT(*) FROM offer_uses WHERE offer_id = ? AND member_id = ?", o, m); k != 3 {
			t.Errorf("%d offer uses, want 3", k)
		}
		if b := e.balance(m); b.Available != n*10+21 {
			t.Errorf("available %d, want %d", b.Available, n*10+21)
		}
		if x := e.ofMemberOffers(m, e.admin())[o]; ofUsesLeft(x) != "0" {
			t.Errorf("uses_left %s", ofUsesLeft(x))
		}
		ofWant(t, "after the limit", e.ofBuy(m, 1000, nil), 10, nil)
		e.checkLedger()
	})
}

func TestOfferTargetingAndReach(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		loyal, champ, named, plain := e.enrol(), e.enrol(), e.enrol(), e.enrol()
		now := e.clock.Now()
		for _, row := range [][2]string{{loyal, "loyal"}, {champ, "rfm_champions"}, {named, "rfm_champions"}} {
			if err := e.store.DB().Exec("INSERT INTO member_segments (member_id, segment_code, computed_at) VALUES (?, ?, ?)",
				row[0], row[1], now).Error; err != nil {
				t.Fatal(err)
			}
		}
		seg := e.ofOffer(map[string]any{"code": "t-seg", "kind": "bonus", "bonus_points": 11, "target": map[string]any{"segments": []string{"loyal"}}})
		ids := e.ofOffer(map[string]any{"code": "t-ids", "kind": "bonus", "bonus_points": 13, "target": map[string]any{"member_ids": []string{named}}})
		both := e.ofOffer(map[string]any{"code": "t-both", "kind": "bonus", "bonus_points": 17,
			"target": map[string]any{"segments": []string{"rfm_champions", "loyal"}, "member_ids": []string{plain}}})
		all := e.ofOffer(map[string]any{"code": "t-all", "kind": "bonus", "bonus_points": 19, "target": map[string]any{"all": true}})
		nobody := e.ofOffer(map[string]any{"code": "t-none", "kind": "bonus", "bonus_points": 23, "target": map[string]any{"segments": []string{"lapsed"}}})

		names := map[string]string{seg: "t-seg", ids: "t-ids", both: "t-both", all: "t-all", nobody: "t-none"}
		checkReach := func(when string, want map[string]int64) {
			t.Helper()
			for id, w := range want {
				r := e.do("GET", "/v1/offers/"+id+"/reach", e.marketer(), nil)
				if r.Status != 200 {
					t.Errorf("%s: reach of %s: status %d: %s", when, names[id], r.Status, r.Body)
					continue
				}
				if got := r.JSON(t); num(got["members"]) != w || got["offer_id"] != id {
					t.Errorf("%s: reach of %s: %v, want %d members", when, names[id], got, w)
				}
			}
		}
		checkReach("at first", map[string]int64{seg: 1, ids: 1, both: 4, all: 4, nobody: 0})
		for name, c := range map[string]struct {
			id   string
			want map[string]int64
		}{
			"loyal": {loyal, map[string]int64{seg: 11, both: 17, all: 19}},
			"champ": {champ, map[string]int64{both: 17, all: 19}},
			"named": {named, map[string]int64{ids: 13, both: 17, all: 19}},
			"plain": {plain, map[string]int64{both: 17, all: 19}},
		} {
			ofWant(t, name, e.ofBuy(c.id, 1000, nil), 10, c.want)
			listed := e.ofMemberOffers(c.id, e.token(loyalty.RoleMember, c.id))
			var gotIDs, wantIDs []string
			for id := range listed {
				gotIDs = append(gotIDs, id)
			}
			for id := range c.want {
				wantIDs = append(wantIDs, id)
			}
			sort.Strings(gotIDs)
			sort.Strings(wantIDs)
			if fmt.Sprint(gotIDs) != fmt.Sprint(wantIDs) {
				t.Errorf("%s lists offers %v, want %v", name, gotIDs, wantIDs)
			}
		}

		// Reach counts active members: an erased one drops out; a new one
		// joins "all".
		e.do("DELETE", "/v1/members/"+plain, e.admin(), nil).must(t, 204)
		e.enrol()
		checkReach("after an erasure and an enrolment", map[string]int64{seg: 1, ids: 1, both: 3, all: 4, nobody: 0})
		ofProblem(t, e.do("GET", "/v1/offers/no-such-offer/reach", e.marketer(), nil), 404, "")

		// Retargeting through PATCH takes effect on the next purchase.
		e.do("PATCH", "/v1/offers/"+ids, e.marketer(), map[string]any{"target": map[string]any{"member_ids": []string{champ}}}).must(t, 200)
		ofWant(t, "champ after retargeting", e.ofBuy(champ, 1000, nil), 10, map[string]int64{ids: 13, both: 17, all: 19})
		ofWant(t, "named after retargeting", e.ofBuy(named, 1000, nil), 10, map[string]int64{both: 17, all: 19})
		e.checkLedger()
	})
}

func TestOfferQuote(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		skin := e.ofOffer(map[string]any{"code": "q-skin", "kind": "multiplier", "multiplier": "2",
			"conditions": map[string]any{"categories": []string{"skincare"}}, "target": ofOnly(m)})
		once := e.ofOffer(map[string]any{"code": "q-once", "kind": "bonus", "bonus_points": 50, "max_uses_per_member": 1, "target": ofOnly(m)})
		old := e.ofOffer(map[string]any{"code": "q-old", "kind": "bonus", "bonus_points": 9, "target": ofOnly(m),
			"starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-02-01T00:00:00Z"})
		items := []map[string]any{ofItem("A", "skincare", 4000), ofItem("B", "makeup", 6000)}
		counts := func() string {
			var out []int64
			for _, tbl := range []string{"purchases", "purchase_items", "ledger_entries", "lots", "offer_uses", "offer_activations"} {
				out = append(out, e.ofCount("SELECT COUNT(*) FROM "+tbl))
			}
			var v int64
			if err := e.store.DB().Raw("SELECT version FROM member_balances WHERE member_id = ?", m).Scan(&v).Error; err != nil {
				t.Fatal(err)
			}
			return fmt.Sprint(out, v)
		}
		quote := func(fields ...any) ofEarned {
			t.Helper()
			var q ofEarned
			e.do("POST", "/v1/purchases/quote", e.pos(), ofBody(m, 10000, items, fields...)).must(t, 200).Decode(t, &q)
			return q
		}
		before := counts()
		for i := 0; i < 3; i++ {
			ofWant(t, "quote", quote(), 100, map[string]int64{skin: 40, once: 50})
		}
		ofWant(t, "quote in the old window", quote("occurred_at", "2026-01-15T00:00:00Z"), 100, map[string]int64{skin: 40, once: 50, old: 9})
		if after := counts(); after != before {
			t.Errorf("quotes wrote: %s → %s", before, after)
		}
		// The quotes used nothing up: the purchase gets both.
		p := e.ofBuy(m, 10000, items)
		ofWant(t, "purchase", p, 100, map[string]int64{skin: 40, once: 50})
		ofWant(t, "quote after the single use", quote(), 100, map[string]int64{skin: 40})
		e.checkLedger()
	})
}

func TestOfferReturns(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		skin := e.ofOffer(map[string]any{"code": "r-skin", "kind": "multiplier", "multiplier": "2",
			"conditions": map[string]any{"categories": []string{"skincare"}}, "target": ofOnly(m)})
		bonus := e.ofOffer(map[string]any{"code": "r-bonus", "kind": "bonus", "bonus_points": 50, "target": ofOnly(m)})
		items := []map[string]any{ofItem("A", "skincare", 4000), ofItem("B", "makeup", 6000)}
		ret := func(purchase string, ext string, amount int64) int64 {
			t.Helper()
			return num(e.do("POST", "/v1/purchases/"+purchase+"/returns", e.pos(), map[string]any{"external_id": ext, "amount": amount}).
				must(t, 201).JSON(t)["points_reversed"])
		}

		t.Run("Partial", func(t *testing.T) {
			p := e.ofBuy(m, 10000, items, "external_id", "RP-1")
			ofWant(t, "purchase", p, 100, map[string]int64{skin: 40, bonus: 50}) // 190
			// ⌊190 · 3333 / 10000⌋ = ⌊63.327⌋ = 63.
			if r := ret(p.ID, "RET-1", 3333); r != 63 {
				t.Errorf("first return reversed %d, want 63", r)
			}
			// ⌊190 · 1 / 10000⌋ = 0.
			if r := ret(p.ID, "RET-2", 1); r != 0 {
				t.Errorf("one-cent return reversed %d, want 0", r)
			}
			// The return completing the refund takes what is left: 190 − 63 = 127.
			if r := ret(p.ID, "RET-3", 6666); r != 127 {
				t.Errorf("last return reversed %d, want 127", r)
			}
			var stored struct {
				PointsEarned   int64 `json:"points_earned"`
				PointsReversed int64 `json:"points_reversed"`
				ReturnedAmount int64 `json:"returned_amount"`
			}
			e.do("GET", "/v1/purchases/"+p.ID, e.admin(), nil).must(t, 200).Decode(t, &stored)
			if stored.PointsEarned != 190 || stored.PointsReversed != 190 || stored.ReturnedAmount != 10000 {
				t.Errorf("purchase after returns %+v", stored)
			}
			if b := e.balance(m); b.Available != 0 {
				t.Errorf("available %d, want 0", b.Available)
			}
		})

		t.Run("FullAtOnce", func(t *testing.T) {
			p := e.ofBuy(m, 3333, []map[string]any{ofItem("A", "skincare", 3333)}, "external_id", "RP-2")
			// tier 33, ×2 on 33.33 → 33, bonus 50: 116.
			ofWant(t, "purchase", p, 33, map[string]int64{skin: 33, bonus: 50})
			if r := ret(p.ID, "RET-4", 3333); r != 116 {
				t.Errorf("full return reversed %d, want 116", r)
			}
			if b := e.balance(m); b.Available != 0 {
				t.Errorf("available %d, want 0", b.Available)
			}
		})

		t.Run("Ledger", func(t *testing.T) {
			var sum int64
			var rets []int64
			for _, en := range e.ofLedger(m) {
				sum += en.Points
				if en.Kind == "return" {
					rets = append(rets, en.Points)
				}
			}
			sort.Slice(rets, func(i, k int) bool { return rets[i] < rets[k] })
			if sum != 0 || fmt.Sprint(rets) != "[-127 -116 -63]" {
				t.Errorf("ledger sum %d, return entries %v", sum, rets)
			}
		})
		e.checkLedger()
	})
}

func TestPersonalOffers(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		t0 := e.clock.Now() // 2026-03-01T12:00:00Z
		ago := func(days int) string { return t0.AddDate(0, 0, -days).Format(time.RFC3339) }
		n := 0
		buyAt := func(m string, days int, items ...map[string]any) {
			t.Helper()
			var total int64
			for _, it := range items {
				total += it["amount"].(int64)
			}
			if len(items) == 0 {
				total = 1500
				items = nil
			}
			n++
			e.ofBuy(m, total, items, "occurred_at", ago(days), "external_id", fmt.Sprintf("PO-%d", n))
		}
		alice, bob, carol, dave, erin := e.enrol(), e.enrol(), e.enrol(), e.enrol(), e.enrol()
		// alice: skincare 90.00, makeup 50.00, fragrance 20.00 in 4 purchases.
		buyAt(alice, 80, ofItem("S1", "skincare", 3000), ofItem("M1", "makeup", 2000))
		buyAt(alice, 60, ofItem("M2", "makeup", 3000))
		buyAt(alice, 30, ofItem("S2", "skincare", 6000))
		buyAt(alice, 10, ofItem("F1", "fragrance", 2000))
		// bob: haircare 40.00 and makeup 40.00 tie; haircare comes first by name.
		buyAt(bob, 45, ofItem("M3", "makeup", 4000), ofItem("B1", "body", 1000))
		buyAt(bob, 20, ofItem("H1", "haircare", 2500))
		buyAt(bob, 5, ofItem("H2", "haircare", 1500))
		// carol: big spender, but only 2 purchases in the last 90 days.
		buyAt(carol, 100, ofItem("S3", "skincare", 9000))
		buyAt(carol, 40, ofItem("S4", "skincare", 5000))
		buyAt(carol, 15, ofItem("M4", "makeup", 2000))
		// erin: 3 purchases, two without items; her one category is body.
		buyAt(erin, 70)
		buyAt(erin, 50)
		buyAt(erin, 25, ofItem("B2", "body", 1500))
		_ = dave // no purchases

		tpl := e.do("POST", "/v1/offer-templates", e.marketer(), map[string]any{"code": "fav-x2", "name": "Double on your favourite",
			"kind": "multiplier", "multiplier": "2", "duration_days": 14, "lookback_days": 90, "min_purchases": 3}).must(t, 201).JSON(t)
		tplID := tpl["id"].(string)

		run := func() int64 {
			t.Helper()
			r := e.do("POST", "/v1/jobs/personal-offers/run", e.marketer(), nil).must(t, 200).JSON(t)
			if r["status"] != "succeeded" {
				t.Fatalf("run %v", r)
			}
			return num(r["summary"].(map[string]any)["offers"])
		}
		// personal is the member's live offers from the template.
		personal := func(m string) []loyalty.MemberOffer {
			t.Helper()
			var out []loyalty.MemberOffer
			for _, o := range e.ofMemberOffers(m, e.token(loyalty.RoleMember, m)) {
				if o.TemplateID != nil && *o.TemplateID == tplID {
					out = append(out, o)
				}
			}
			return out
		}
		// want maps a member to its favourite category and the start of its offer.
		type fav struct {
			category string
			start    time.Time
		}
		check := func(when string, want map[string]fav) map[string]string {
			t.Helper()
			ids := map[string]string{}
			for name, m := range map[string]string{"alice": alice, "bob": bob, "carol": carol, "dave": dave, "erin": erin} {
				ps := personal(m)
				w, ok := want[name]
				if !ok {
					if len(ps) != 0 {
						t.Errorf("%s: %s has personal offers %+v, want none", when, name, ps)
					}
					continue
				}
				if len(ps) != 1 {
					t.Errorf("%s: %s has %d personal offers, want 1", when, name, len(ps))
					continue
				}
				o := ps[0]
				if fmt.Sprint(o.Conditions.Categories) != "["+w.category+"]" || o.Kind != "multiplier" || o.Multiplier.String() != "2" ||
					o.StartsAt == nil || !o.StartsAt.Equal(w.start) || o.EndsAt == nil || !o.EndsAt.Equal(w.start.AddDate(0, 0, 14)) {
					t.Errorf("%s: %s's offer %+v, want ×2 on %s from %s for 14 days", when, name, o, w.category, w.start)
				}
				got := e.do("GET", "/v1/offers/"+o.ID, e.marketer(), nil).must(t, 200).JSON(t)
				if fmt.Sprint(got["target"].(map[string]any)["member_ids"]) != "["+m+"]" {
					t.Errorf("%s: %s's offer targets %v", when, name, got["target"])
				}
				if r := num(e.do("GET", "/v1/offers/"+o.ID+"/reach", e.marketer(), nil).must(t, 200).JSON(t)["members"]); r != 1 {
					t.Errorf("%s: reach of %s's offer %d", when, name, r)
				}
				ids[name] = o.ID
			}
			return ids
		}

		if got := run(); got != 3 {
			t.Errorf("first run gave %d offers, want 3", got)
		}
		want := map[string]fav{"alice": {"skincare", t0}, "bob": {"haircare", t0}, "erin": {"body", t0}}
		first := check("first run", want)
		var listed struct {
			Items []map[string]any `json:"items"`
		}
		e.do("GET", "/v1/offers?personal=true", e.marketer(), nil).must(t, 200).Decode(t, &listed)
		if len(listed.Items) != 3 {
			t.Errorf("%d offers listed with personal=true, want 3", len(listed.Items))
		}

		e.clock.Advance(time.Hour)
		if got := run(); got != 0 {
			t.Errorf("re-run the same day gave %d offers", got)
		}
		check("re-run", want)

		// The offer doubles points on the favourite category only.
		ofWant(t, "alice skincare", e.ofBuy(alice, 4000, []map[string]any{ofItem("S5", "skincare", 2500), ofItem("M5", "makeup", 1500)}),
			40, map[string]int64{first["alice"]: 25})
		ofWant(t, "bob skincare", e.ofBuy(bob, 2500, []map[string]any{ofItem("S6", "skincare", 2500)}), 25, nil)
		ofWant(t, "bob haircare", e.ofBuy(bob, 3000, []map[string]any{ofItem("H3", "haircare", 3000)}), 30, map[string]int64{first["bob"]: 30})
		ofWant(t, "carol skincare", e.ofBuy(carol, 2000, []map[string]any{ofItem("S7", "skincare", 2000)}), 20, nil)

		// Day 13: the first offers are live, so nothing for alice, bob and
		// erin; carol's purchase above is her third in the 90 days to now
		// (40 and 15 days before t0, and t0 + 1h), so she gets one, on
		// skincare (70.00 against makeup 20.00).
		e.clock.Advance(13 * 24 * time.Hour)
		t13 := e.clock.Now()
		if got := run(); got != 1 {
			t.Errorf("run on day 13 gave %d offers, want 1 (carol)", got)
		}
		want["carol"] = fav{"skincare", t13}
		check("day 13", want)
		if got := run(); got != 0 {
			t.Errorf("re-run on day 13 gave %d offers", got)
		}

		// Day 14 + 1h: the first offers ended at t0 + 14 days. In the 90 days
		// to t1 (from 2025-12-15T13:00Z): alice 4 purchases, skincare 85.00
		// first; bob 5, haircare 70.00; erin 3, body. Carol's is still live.
		e.clock.Advance(24 * time.Hour)
		t1 := e.clock.Now()
		if got := run(); got != 3 {
			t.Errorf("run after 14 days gave %d offers, want 3", got)
		}
		for _, name := range []string{"alice", "bob", "erin"} {
			want[name] = fav{want[name].category, t1}
		}
		second := check("after 14 days", want)
		for _, name := range []string{"alice", "bob", "erin"} {
			if second[name] == first[name] {
				t.Errorf("%s kept its first offer %s", name, first[name])
			}
		}
		ofWant(t, "alice's new offer", e.ofBuy(alice, 1000, []map[string]any{ofItem("S8", "skincare", 1000)}), 10,
			map[string]int64{second["alice"]: 10})
		e.checkLedger()
	})
}

// TestOfferAfterNoneWasActive: once a purchase has seen no active offer,
// the next skips reading offers while none changes; an offer created,
// paused or resumed in between applies (or stops applying) to the very
// next purchase.
func TestOfferAfterNoneWasActive(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		ofWant(t, "no offer", e.ofBuy(m, 1000, nil), 10, nil)
		ofWant(t, "still none", e.ofBuy(m, 1000, nil), 10, nil)
		o := e.ofOffer(map[string]any{"code": "fresh", "kind": "bonus", "bonus_points": 7, "target": ofOnly(m)})
		ofWant(t, "created", e.ofBuy(m, 1000, nil), 10, map[string]int64{o: 7})
		e.do("PATCH", "/v1/offers/"+o, e.marketer(), map[string]any{"status": "paused"}).must(t, 200)
		ofWant(t, "paused", e.ofBuy(m, 1000, nil), 10, nil)
		ofWant(t, "paused, again", e.ofBuy(m, 1000, nil), 10, nil)
		e.do("PATCH", "/v1/offers/"+o, e.marketer(), map[string]any{"status": "active"}).must(t, 200)
		ofWant(t, "resumed", e.ofBuy(m, 1000, nil), 10, map[string]int64{o: 7})
		e.checkLedger()
	})
}
