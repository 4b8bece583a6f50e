package api

import (
	"fmt"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// buyItems posts a purchase at store of the given categories (100.00 each)
// at instant at, and returns its id.
func (e *env) buyItems(member, store string, at time.Time, cats ...string) string {
	e.t.Helper()
	items := []map[string]any{}
	for i, c := range cats {
		items = append(items, map[string]any{"sku": fmt.Sprintf("SKU-%s-%d", c, i), "category": c, "quantity": 1, "unit_price": 10000, "amount": 10000})
	}
	r := e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": member, "external_id": fmt.Sprintf("P-%d", seq.Add(1)),
		"store_id": store, "total": 10000 * len(cats), "occurred_at": rfc(at), "items": items}).must(e.t, 201)
	return r.JSON(e.t)["id"].(string)
}

func TestFeedback(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m1, m2 := e.enrol(), e.enrol()
		p1 := e.buy(m1, 10000, "F-1")["id"].(string)
		p2 := e.buy(m2, 10000, "F-2")["id"].(string)
		own := e.token(loyalty.RoleMember, m1)
		t.Run("Scales", func(t *testing.T) {
			for _, b := range []map[string]any{
				{"member_id": m1, "kind": "nps", "score": 11}, {"member_id": m1, "kind": "nps", "score": -1},
				{"member_id": m1, "kind": "csat", "score": 0}, {"member_id": m1, "kind": "csat", "score": 6},
				{"member_id": m1, "kind": "ces", "score": 0}, {"member_id": m1, "kind": "ces", "score": 8},
				{"member_id": m1, "kind": "stars", "score": 3}, {"member_id": m1, "kind": "nps"}, {"kind": "nps", "score": 5},
				{"member_id": m1, "kind": "nps", "score": 5, "purchase_id": p2},
				{"member_id": m1, "kind": "nps", "score": 5, "purchase_id": "nope"},
			} {
				r := e.do("POST", "/v1/feedback", e.admin(), b)
				if r.Status != 422 || r.Header.Get("Content-Type") != "application/problem+json" {
					t.Errorf("%v: %d %s", b, r.Status, r.Body)
				}
			}
			e.do("POST", "/v1/feedback", e.admin(), `{"member_id":`).must(t, 400)
			e.do("POST", "/v1/feedback", e.admin(), map[string]any{"member_id": m1, "kind": "nps", "score": "ten"}).must(t, 422)
		})
		t.Run("Roles", func(t *testing.T) {
			e.do("POST", "/v1/feedback", own, map[string]any{"member_id": m2, "kind": "nps", "score": 9}).must(t, 404)
			e.do("POST", "/v1/feedback", e.marketer(), map[string]any{"member_id": m1, "kind": "nps", "score": 9}).must(t, 403)
			e.do("POST", "/v1/feedback", "", map[string]any{"member_id": m1, "kind": "nps", "score": 9}).must(t, 401)
			e.do("POST", "/v1/feedback", e.tokenStore(loyalty.RolePOS, "till-9", "store-9"),
				map[string]any{"member_id": m1, "kind": "csat", "score": 4, "purchase_id": p1}).must(t, 403)
		})
		t.Run("BonusOnceAndDuplicate", func(t *testing.T) {
			e.do("PUT", "/v1/program", e.marketer(), map[string]any{"feedback_bonus_points": 25}).must(t, 200)
			before := e.balance(m1).Available
			body := map[string]any{"member_id": m1, "kind": "nps", "score": 9, "purchase_id": p1, "comment": "quick till"}
			f := e.do("POST", "/v1/feedback", own, body, "Idempotency-Key", "fb-1").must(t, 201)
			got := f.JSON(t)
			if got["bonus_points"].(float64) != 25 || got["store_id"] != "store-1" || got["channel"] == "" || got["kind"] != "nps" {
				t.Errorf("feedback %s", f.Body)
			}
			rep := e.do("POST", "/v1/feedback", own, body, "Idempotency-Key", "fb-1").must(t, 201)
			if rep.Header.Get("Idempotent-Replayed") != "true" || string(rep.Body) != string(f.Body) {
				t.Errorf("replay %v %s", rep.Header, rep.Body)
			}
			dup := e.do("POST", "/v1/feedback", own, body).must(t, 409).JSON(t)
			if dup["type"] == nil || dup["status"].(float64) != 409 {
				t.Errorf("duplicate %v", dup)
			}
			if b := e.balance(m1).Available; b != before+25 {
				t.Errorf("available %d, want %d", b, before+25)
			}
			// Another kind for the same purchase, and one about no purchase,
			// once.
			e.do("POST", "/v1/feedback", own, map[string]any{"member_id": m1, "kind": "csat", "score": 5, "purchase_id": p1}).must(t, 201)
			e.do("POST", "/v1/feedback", e.pos(), map[string]any{"member_id": m1, "kind": "ces", "score": 2}).must(t, 201)
			e.do("POST", "/v1/feedback", e.pos(), map[string]any{"member_id": m1, "kind": "ces", "score": 3}).must(t, 409)
			if b := e.balance(m1).Available; b != before+75 {
				t.Errorf("available %d, want %d", b, before+75)
			}
			var kinds []string
			if err := e.store.DB().Raw("SELECT kind FROM ledger_entries WHERE member_id = ? AND kind = 'feedback'", m1).Scan(&kinds).Error; err != nil || len(kinds) != 3 {
				t.Errorf("feedback entries %v %v", kinds, err)
			}
			e.checkLedger()
		})
	})
}

func TestCXReport(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		at := e.clock.Now().Add(-time.Hour)
		ms := make([]string, 6)
		ps := make([]string, 6)
		for i := range ms {
			ms[i] = e.enrol()
			store := "s1"
			if i >= 4 {
				store = "s2"
			}
			ps[i] = e.buyItems(ms[i], store, at, "skincare")
		}
		// m0 reaches VIB before answering.
		e.buyItems(ms[0], "s1", at, "a", "b", "c", "d")
		answer := func(i int, kind string, score int, extra ...string) {
			t.Helper()
			b := map[string]any{"member_id": ms[i], "kind": kind, "score": score, "purchase_id": ps[i]}
			for j := 0; j+1 < len(extra); j += 2 {
				b[extra[j]] = extra[j+1]
			}
			e.do("POST", "/v1/feedback", e.pos(), b).must(t, 201)
		}
		cx := func(q string) []map[string]any {
			t.Helper()
			var out struct{ Items []map[string]any }
			e.do("GET", "/v1/analytics/cx"+q, e.marketer(), nil).must(t, 200).Decode(t, &out)
			return out.Items
		}
		t.Run("NoAnswers", func(t *testing.T) {
			items := cx("")
			if len(items) != 1 || items[0]["group"] != nil {
				t.Fatalf("items %v", items)
			}
			n := items[0]["nps"].(map[string]any)
			c := items[0]["csat"].(map[string]any)
			s := items[0]["ces"].(map[string]any)
			if n["score"] != nil || n["responses"].(float64) != 0 || c["average"] != nil || c["satisfied_percent"] != nil || s["average"] != nil {
				t.Errorf("empty report %v", items[0])
			}
		})
		for i, s := range []int{10, 9, 8, 3, 0, 6} {
			if i == 4 {
				answer(i, "nps", s, "channel", "app")
			} else {
				answer(i, "nps", s)
			}
		}
		answer(0, "csat", 5)
		answer(1, "csat", 4)
		answer(2, "csat", 2)
		answer(3, "ces", 2)
		answer(4, "ces", 7)
		answer(5, "ces", 6)
		num := func(v any) string { t.Helper(); return fmt.Sprint(v) }
		t.Run("Overall", func(t *testing.T) {
			it := cx("?from=2026-03-01&to=2026-03-01")[0]
			n, c, s := it["nps"].(map[string]any), it["csat"].(map[string]any), it["ces"].(map[string]any)
			// 2 promoters, 1 passive, 3 detractors of 6: (2 − 3) / 6 × 100.
			if num(n["score"]) != "-16.67" || n["promoters"].(float64) != 2 || n["passives"].(float64) != 1 ||
				n["detractors"].(float64) != 3 || n["responses"].(float64) != 6 {
				t.Errorf("nps %v", n)
			}
			// (5 + 4 + 2) / 3 = 3.67; 2 of 3 satisfied.
			if num(c["average"]) != "3.67" || num(c["satisfied_percent"]) != "66.67" || c["responses"].(float64) != 3 {
				t.Errorf("csat %v", c)
			}
			if num(s["average"]) != "5" || s["responses"].(float64) != 3 {
				t.Errorf("ces %v", s)
			}
		})
		t.Run("ByStore", func(t *testing.T) {
			items := cx("?group_by=store")
			if len(items) != 2 || items[0]["group"] != "s1" || items[1]["group"] != "s2" {
				t.Fatalf("items %v", items)
			}
			s1, s2 := items[0], items[1]
			if num(s1["nps"].(map[string]any)["score"]) != "25" || num(s1["csat"].(map[string]any)["average"]) != "3.67" ||
				num(s1["ces"].(map[string]any)["average"]) != "2" {
				t.Errorf("s1 %v", s1)
			}
			// All detractors: −100; no CSAT answer: null.
			if num(s2["nps"].(map[string]any)["score"]) != "-100" || s2["csat"].(map[string]any)["average"] != nil ||
				s2["csat"].(map[string]any)["responses"].(float64) != 0 || num(s2["ces"].(map[string]any)["average"]) != "6.5" {
				t.Errorf("s2 %v", s2)
			}
		})
		t.Run("ByChannelAndTier", func(t *testing.T) {
			byGroup := func(items []map[string]any) map[string]map[string]any {
				m := map[string]map[string]any{}
				for _, it := range items {
					m[fmt.Sprint(it["group"])] = it
				}
				return m
			}
			ch := byGroup(cx("?group_by=channel"))
			if num(ch["app"]["nps"].(map[string]any)["score"]) != "-100" || ch["app"]["ces"].(map[string]any)["responses"].(float64) != 0 ||
				num(ch["pos"]["nps"].(map[string]any)["score"]) != "0" {
				t.Errorf("channels %v", ch)
			}
			tr := byGroup(cx("?group_by=tier"))
			if num(tr["vib"]["nps"].(map[string]any)["score"]) != "100" || num(tr["vib"]["csat"].(map[string]any)["average"]) != "5" ||
				num(tr["insider"]["nps"].(map[string]any)["score"]) != "-40" {
				t.Errorf("tiers %v", tr)
			}
			sg := cx("?group_by=segment")
			if len(sg) != 1 || sg[0]["group"] != nil || sg[0]["nps"].(map[string]any)["responses"].(float64) != 6 {
				t.Errorf("segments %v", sg)
			}
		})
		t.Run("EmptyRangeAndBadInput", func(t *testing.T) {
			it := cx("?from=2026-03-02&to=2026-03-31")
			if len(it) != 1 || it[0]["nps"].(map[string]any)["score"] != nil {
				t.Errorf("range %v", it)
			}
			e.do("GET", "/v1/analytics/cx?group_by=planet", e.marketer(), nil).must(t, 422)
			e.do("GET", "/v1/analytics/cx?from=2026-13-01&to=2026-03-01", e.marketer(), nil).must(t, 422)
			e.do("GET", "/v1/analytics/cx", e.pos(), nil).must(t, 403)
		})
	})
}

func TestLiabilityAndBreakage(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"expiry_days": 30}).must(t, 200)
		m := e.enrol()
		if r := e.do("GET", "/v1/analytics/clv-model", e.marketer(), nil).must(t, 404).JSON(t); r["code"] != "no_model" {
			t.Errorf("clv model before the job: %v", r)
		}
		e.buy(m, 10000, "L-1") // 100 points, expire 2026-03-31
		if mem := e.do("GET", "/v1/members/"+m, e.admin(), nil).must(t, 200).JSON(t); mem["clv"] != nil {
			t.Errorf("clv before a model: %v", mem["clv"])
		}
		e.clock.Advance(20 * 24 * time.Hour)
		e.buy(m, 5000, "L-2") // 50 points, expire 2026-04-20
		e.clock.Set(time.Date(2026, 4, 5, 12, 0, 0, 0, time.UTC))
		e.runJob("expire-points", e.clock.Now())
		summary := func(q string) map[string]any {
			return e.do("GET", "/v1/analytics/summary"+q, e.marketer(), nil).must(t, 200).JSON(t)
		}
		s := summary("?from=2026-03-01&to=2026-04-05")
		// Points cannot pay yet: no liability. 100 of 150 issued expired.
		if s["liability"] != nil || fmt.Sprint(s["breakage_percent"]) != "66.67" {
			t.Errorf("summary %v", s)
		}
		if s := summary("?from=2025-01-01&to=2025-01-31"); s["breakage_percent"] != nil || s["liability"] != nil {
			t.Errorf("empty range %v", s)
		}
		bad := e.do("PUT", "/v1/program", e.marketer(), map[string]any{"points_payment": map[string]any{"enabled": true,
			"points_per_unit": "0", "min_points": 500, "step_points": 0, "max_share": "2"}}).must(t, 422).JSON(t)
		if len(bad["errors"].([]any)) != 3 {
			t.Errorf("validation %v", bad)
		}
		p := e.do("PUT", "/v1/program", e.marketer(), map[string]any{"points_payment": map[string]any{"enabled": true,
			"points_per_unit": "50", "min_points": 500, "step_points": 500, "max_share": "1"}}).must(t, 200).JSON(t)
		if p["points_payment"].(map[string]any)["points_per_unit"] != "50" || p["clv_horizon_weeks"].(float64) != 52 {
			t.Errorf("program %v", p)
		}
		// 50 points outstanding at 100 / 50 = 2 cents each.
		if s := summary("?from=2026-03-01&to=2026-04-05"); fmt.Sprint(s["liability"]) != "100" {
			t.Errorf("liability %v", s["liability"])
		}
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"points_payment": map[string]any{"enabled": true,
			"points_per_unit": "3", "min_points": 0, "step_points": 1, "max_share": "0.5"}}).must(t, 200)
		// 50 × 100 / 3 = 1666.67 → 1667.
		if s := summary("?from=2026-03-01&to=2026-04-05"); fmt.Sprint(s["liability"]) != "1667" {
			t.Errorf("liability %v", s["liability"])
		}
	})
}

func TestStoreCategoriesAndLapse(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"segments": map[string]any{"loyal_window_weeks": 1,
			"loyal_min_active_weeks": 1, "loyal_min_categories": 2}}).must(t, 200)
		day := func(m, d int) time.Time { return time.Date(2026, time.Month(m), d, 12, 0, 0, 0, time.UTC) }
		now := e.clock.Now()
		l1, l2, n1, n2, n3 := e.enrol(), e.enrol(), e.enrol(), e.enrol(), e.enrol()
		// Store categories at s1, this week.
		e.buyItems(l1, "s1", now, "bread", "milk")
		e.buyItems(l2, "s1", now, "bread", "cheese")
		e.buyItems(n1, "s1", now, "milk")
		e.buyItems(n2, "s1", now, "milk")
		e.buyItems(n3, "s1", now, "water")
		// Lapse history at s2: two weeks before the last two.
		e.buyItems(l1, "s2", day(2, 3), "cheddar", "eggs")
		e.buyItems(l1, "s2", day(2, 10), "cheddar")
		e.buyItems(l1, "s2", day(2, 25), "eggs")
		e.buyItems(l2, "s2", day(2, 5), "cheddar")
		e.buyItems(n1, "s2", day(2, 3), "cheddar")
		e.runJob("segments", now)
		var loyal struct{ Items []string }
		e.do("GET", "/v1/segments/loyal/members", e.marketer(), nil).must(t, 200).Decode(t, &loyal)
		if len(loyal.Items) != 2 {
			t.Fatalf("loyal members %v", loyal.Items)
		}
		t.Run("StoreCategories", func(t *testing.T) {
			var out struct{ Items []map[string]any }
			e.do("GET", "/v1/analytics/store-categories?store_id=s1&segment=loyal", e.marketer(), nil).must(t, 200).Decode(t, &out)
			want := []string{"bread 2 2 250", "cheese 1 1 250", "milk 1 3 83.33", "water 0 1 0"}
			if len(out.Items) != len(want) {
				t.Fatalf("items %v", out.Items)
			}
			for i, it := range out.Items {
				if got := fmt.Sprint(it["category"], " ", it["segment_buyers"], " ", it["all_buyers"], " ", it["index"]); got != want[i] {
					t.Errorf("item %d: %s, want %s", i, got, want[i])
				}
			}
			e.do("GET", "/v1/analytics/store-categories?store_id=nowhere", e.marketer(), nil).must(t, 200).Decode(t, &out)
			if len(out.Items) != 0 {
				t.Errorf("empty store %v", out.Items)
			}
			e.do("GET", "/v1/analytics/store-categories", e.marketer(), nil).must(t, 422)
			e.do("GET", "/v1/analytics/store-categories?store_id=s1&segment=martians", e.marketer(), nil).must(t, 404)
		})
		t.Run("CategoryLapse", func(t *testing.T) {
			// Weeks 2026-02-02..15 before, 2026-02-16..03-01 after: l1 bought
			// cheddar in both earlier weeks, l2 in one (half of 2), neither
			// since; l1 bought eggs again; n1 is not loyal.
			r := e.do("GET", "/v1/analytics/category-lapse?segment=loyal&weeks=2&as_of=2026-03-01", e.marketer(), nil).must(t, 200).JSON(t)
			items := r["items"].([]any)
			if len(items) != 1 || fmt.Sprint(items[0]) != "map[category:cheddar members:2]" || r["members_total"].(float64) != 2 ||
				r["from"] != "2026-02-02" || r["split"] != "2026-02-16" || r["to"] != "2026-03-01" {
				t.Errorf("lapse %v", r)
			}
			var list struct {
				Items      []map[string]any
				NextCursor *string `json:"next_cursor"`
			}
			e.do("GET", "/v1/analytics/category-lapse?segment=loyal&weeks=2&as_of=2026-03-01&category=cheddar&limit=1", e.marketer(), nil).
				must(t, 200).Decode(t, &list)
			if len(list.Items) != 1 || list.NextCursor == nil {
				t.Fatalf("page 1 %v", list)
			}
			first := list.Items[0]
			cursor := *list.NextCursor
			list.Items, list.NextCursor = nil, nil
			e.do("GET", "/v1/analytics/category-lapse?segment=loyal&weeks=2&as_of=2026-03-01&category=cheddar&limit=1&cursor="+cursor,
				e.marketer(), nil).must(t, 200).Decode(t, &list)
			weeks := map[any]any{first["member_id"]: first["weeks_bought"], list.Items[0]["member_id"]: list.Items[0]["weeks_bought"]}
			if len(list.Items) != 1 || list.NextCursor != nil || weeks[l1] != 2.0 || weeks[l2] != 1.0 {
				t.Errorf("members %v %v", first, list)
			}
			// With one week, l1's cheddar is bought in the earlier week only
			// if it falls in 02-16..22: nothing lapses.
			r = e.do("GET", "/v1/analytics/category-lapse?weeks=1&as_of=2026-03-01", e.marketer(), nil).must(t, 200).JSON(t)
			if len(r["items"].([]any)) != 0 || r["members_total"].(float64) != 0 {
				t.Errorf("one week %v", r)
			}
			e.do("GET", "/v1/analytics/category-lapse?weeks=0", e.marketer(), nil).must(t, 422)
			e.do("GET", "/v1/analytics/category-lapse?as_of=yesterday", e.marketer(), nil).must(t, 422)
		})
	})
}
