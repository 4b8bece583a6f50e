package api

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// anAt parses an RFC 3339 time for fixtures.
func anAt(t testing.TB, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// anBuy posts a purchase of total at the given time, with one basket line
// per category (the amounts spread so they add up to total), and returns
// its id and points earned.
func (e *env) anBuy(member, ext string, at time.Time, total int64, cats ...string) (string, int64) {
	e.t.Helper()
	body := map[string]any{"member_id": member, "external_id": ext, "store_id": "store-1", "currency": "USD",
		"total": total, "occurred_at": at.UTC().Format(time.RFC3339Nano)}
	if len(cats) > 0 {
		items := []map[string]any{}
		per := total / int64(len(cats))
		for i, c := range cats {
			amount := per
			if i == len(cats)-1 {
				amount = total - per*int64(len(cats)-1)
			}
			items = append(items, map[string]any{"sku": "SKU-" + c, "category": c, "amount": amount})
		}
		body["items"] = items
	}
	r := e.do("POST", "/v1/purchases", e.pos(), body).must(e.t, 201).JSON(e.t)
	return r["id"].(string), int64(r["points_earned"].(float64))
}

// anReward creates a reward costing cost points and returns its id.
func (e *env) anReward(code string, cost int64) string {
	e.t.Helper()
	r := e.do("POST", "/v1/rewards", e.marketer(), map[string]any{"code": code, "name": "Reward " + code, "cost_points": cost})
	return r.must(e.t, 201).JSON(e.t)["id"].(string)
}

// anRedeem redeems a reward for member at the counter, now on the clock.
func (e *env) anRedeem(member, reward string) string {
	e.t.Helper()
	r := e.do("POST", "/v1/members/"+member+"/redemptions", e.pos(), map[string]any{"reward_id": reward})
	return r.must(e.t, 201).JSON(e.t)["id"].(string)
}

// anInt reads one integer from the database.
func (e *env) anInt(query string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.store.DB().Raw(query, args...).Scan(&n).Error; err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// anRun runs a job through the API as of asOf and fails unless it succeeded.
func (e *env) anRun(name string, asOf time.Time) map[string]any {
	e.t.Helper()
	r := e.do("POST", "/v1/jobs/"+name+"/run", e.marketer(), map[string]any{"as_of": asOf.UTC().Format(time.RFC3339Nano)}).
		must(e.t, 200).JSON(e.t)
	if r["status"] != "succeeded" {
		e.t.Fatalf("job %s as of %s: %v", name, asOf, r)
	}
	return r
}

// anRate is a redemption rate as the API encodes it, with rate_percent
// kept raw to tell a JSON number from a string or null.
type anRate struct {
	From           string          `json:"from"`
	To             string          `json:"to"`
	PointsIssued   int64           `json:"points_issued"`
	PointsRedeemed int64           `json:"points_redeemed"`
	RatePercent    json.RawMessage `json:"rate_percent"`
}

// anWantRate is a hand-computed rate; rate "null" for a null rate_percent,
// "" not to look at it.
type anWantRate struct {
	from, to         string
	issued, redeemed int64
	rate             string
}

// anCheckPercent asserts that raw is the JSON null (want "null") or a JSON
// number equal to want.
func anCheckPercent(t testing.TB, what string, raw json.RawMessage, want string) {
	t.Helper()
	got := strings.TrimSpace(string(raw))
	switch {
	case want == "":
	case want == "null":
		if got != "null" {
			t.Errorf("%s: rate %s, want null", what, got)
		}
	case got == "" || got == "null" || strings.HasPrefix(got, `"`):
		t.Errorf("%s: rate %s, want the JSON number %s", what, got, want)
	default:
		g, err := decimal.NewFromString(got)
		if err != nil || !g.Equal(decimal.RequireFromString(want)) {
			t.Errorf("%s: rate %s, want %s", what, got, want)
		}
	}
}

func anCheckRate(t testing.TB, what string, got anRate, want anWantRate) {
	t.Helper()
	if got.From != want.from || got.To != want.to || got.PointsIssued != want.issued || got.PointsRedeemed != want.redeemed {
		t.Errorf("%s: got from %s to %s issued %d redeemed %d, want from %s to %s issued %d redeemed %d", what,
			got.From, got.To, got.PointsIssued, got.PointsRedeemed, want.from, want.to, want.issued, want.redeemed)
	}
	anCheckPercent(t, what, got.RatePercent, want.rate)
}

// TestAnalyticsRedemptionRate builds three months of history in a New York
// program and checks the redemption rate by hand over days, months, the
// whole range, months split by interval=month, an empty range, a
// cancellation in the month after its redemption and a return in the month
// after its purchase.
func TestAnalyticsRedemptionRate(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"timezone": "America/New_York", "expiry_days": 0}).must(t, 200)
		at := func(s string) time.Time {
			t.Helper()
			tm := anAt(t, s)
			e.clock.Set(tm)
			return tm
		}
		at("2026-01-01T12:00:00Z")
		a, b := e.enrol(), e.enrol()
		r300, r500 := e.anReward("r300", 300), e.anReward("r500", 500)
		earn := func(member, ext, when string, total, want int64) string {
			t.Helper()
			id, pts := e.anBuy(member, ext, at(when), total)
			if pts != want {
				t.Fatalf("%s earned %d, want %d", ext, pts, want)
			}
			return id
		}
		// January in New York (UTC−5): issued 1000 + 500 + 200, redeemed 300 + 500.
		earn(a, "A1", "2026-01-05T15:00:00Z", 100000, 1000)
		pb1 := earn(b, "B1", "2026-01-10T15:00:00Z", 50000, 500)
		at("2026-01-20T15:00:00Z")
		e.anRedeem(a, r300)
		at("2026-01-25T15:00:00Z")
		x := e.anRedeem(a, r500)
		// 03:00 UTC on 1 February is 22:00 on 31 January in New York.
		earn(b, "B2", "2026-02-01T03:00:00Z", 20000, 200)
		// February: issued 300 − 100 + 150 (the −40 adjustment is not
		// issuing), redeemed −500 (January's redemption cancelled) + 500 + 300.
		at("2026-02-10T15:00:00Z")
		if r := e.do("POST", "/v1/redemptions/"+x+"/cancel", e.pos(), nil); r.Status != 200 && r.Status != 201 {
			t.Fatalf("cancel: %d %s", r.Status, r.Body)
		}
		at("2026-02-12T15:00:00Z")
		e.anRedeem(a, r500)
		pb3 := earn(b, "B3", "2026-02-15T15:00:00Z", 30000, 300)
		at("2026-02-16T15:00:00Z")
		ret := e.do("POST", "/v1/purchases/"+pb3+"/returns", e.pos(), map[string]any{"external_id": "RET-B3", "amount": 10000}).
			must(t, 201).JSON(t)
		if ret["points_reversed"].(float64) != 100 {
			t.Fatalf("return of B3: %v", ret)
		}
		at("2026-02-20T15:00:00Z")
		e.do("POST", "/v1/members/"+a+"/adjustments", e.admin(), map[string]any{"points": 150, "reason": "goodwill"}).must(t, 201)
		e.do("POST", "/v1/members/"+b+"/adjustments", e.admin(), map[string]any{"points": -40, "reason": "correction"}).must(t, 201)
		at("2026-02-22T15:00:00Z")
		e.anRedeem(b, r300)
		// March: half of January's B1 returned (−250), redeemed 300, earned 700.
		at("2026-03-03T15:00:00Z")
		ret = e.do("POST", "/v1/purchases/"+pb1+"/returns", e.pos(), map[string]any{"external_id": "RET-B1", "amount": 25000}).
			must(t, 201).JSON(t)
		if ret["points_reversed"].(float64) != 250 {
			t.Fatalf("return of B1: %v", ret)
		}
		at("2026-03-05T15:00:00Z")
		e.anRedeem(b, r300)
		earn(a, "A2", "2026-03-06T15:00:00Z", 70000, 700)
		at("2026-03-07T12:00:00Z")
		if ba, bb := e.balance(a), e.balance(b); ba.Available != 1050 || bb.Available != 10 {
			t.Fatalf("balances A %d, B %d; want 1050 and 10", ba.Available, bb.Available)
		}
		e.checkLedger()

		tok := e.marketer()
		rate := func(from, to string) anRate {
			t.Helper()
			var r anRate
			e.do("GET", "/v1/analytics/redemption-rate?from="+from+"&to="+to, tok, nil).must(t, 200).Decode(t, &r)
			return r
		}
		for _, c := range []struct {
			name string
			want anWantRate
		}{
			{"OneDay", anWantRate{"2026-01-05", "2026-01-05", 1000, 0, "0.00"}},
			{"LastOfJanuaryInNewYork", anWantRate{"2026-01-31", "2026-01-31", 200, 0, "0.00"}},
			{"FirstOfFebruaryInNewYork", anWantRate{"2026-02-01", "2026-02-01", 0, 0, "null"}},
			{"RedeemedButNothingIssued", anWantRate{"2026-02-12", "2026-02-12", 0, 500, "null"}},
			{"CancellationDay", anWantRate{"2026-02-10", "2026-02-10", 0, -500, "null"}},
			{"January", anWantRate{"2026-01-01", "2026-01-31", 1700, 800, "47.06"}},
			{"February", anWantRate{"2026-02-01", "2026-02-28", 350, 300, "85.71"}},
			{"March", anWantRate{"2026-03-01", "2026-03-31", 450, 300, "66.67"}},
			{"Whole", anWantRate{"2026-01-01", "2026-03-31", 2500, 1400, "56.00"}},
			{"NothingHappened", anWantRate{"2026-02-23", "2026-03-02", 0, 0, "null"}},
			{"BeforeTheProgram", anWantRate{"2025-12-01", "2025-12-31", 0, 0, "null"}},
			// Only the return of January's purchase: the sign of a rate
			// over negative issuance is not the contract's business.
			{"ReturnDay", anWantRate{"2026-03-03", "2026-03-03", -250, 0, ""}},
		} {
			anCheckRate(t, c.name, rate(c.want.from, c.want.to), c.want)
		}

		byMonth := func(from, to string) []anRate {
			t.Helper()
			var l struct {
				Items []anRate `json:"items"`
			}
			e.do("GET", "/v1/analytics/redemption-rate?from="+from+"&to="+to+"&interval=month", tok, nil).must(t, 200).Decode(t, &l)
			return l.Items
		}
		for _, c := range []struct {
			name     string
			from, to string
			want     []anWantRate
		}{
			{"ByMonth", "2026-01-01", "2026-03-31", []anWantRate{
				{"2026-01-01", "2026-01-31", 1700, 800, "47.06"},
				{"2026-02-01", "2026-02-28", 350, 300, "85.71"},
				{"2026-03-01", "2026-03-31", 450, 300, "66.67"}}},
			{"ByMonthClipped", "2026-01-15", "2026-03-06", []anWantRate{
				{"2026-01-15", "2026-01-31", 200, 800, "400.00"},
				{"2026-02-01", "2026-02-28", 350, 300, "85.71"},
				{"2026-03-01", "2026-03-06", 450, 300, "66.67"}}},
			{"ByMonthOneDay", "2026-01-31", "2026-01-31", []anWantRate{{"2026-01-31", "2026-01-31", 200, 0, "0.00"}}},
		} {
			got := byMonth(c.from, c.to)
			if len(got) != len(c.want) {
				t.Errorf("%s: %d items, want %d: %+v", c.name, len(got), len(c.want), got)
				continue
			}
			for i := range got {
				anCheckRate(t, fmt.Sprintf("%s[%d]", c.name, i), got[i], c.want[i])
			}
		}

		for _, q := range []string{
			"from=2026-1-05&to=2026-01-31",
			"from=2026-02-30&to=2026-03-01",
			"from=2026-01-01&to=March",
			"to=2026-01-31",
			"from=2026-01-01",
			"",
			"from=2026-02-02&to=2026-02-01",
			"from=2026-01-01T00:00:00Z&to=2026-01-31",
			"from=2026-01-01&to=2026-01-31&interval=week",
		} {
			r := e.do("GET", "/v1/analytics/redemption-rate?"+q, tok, nil)
			if r.Status != 422 {
				t.Errorf("?%s: status %d, want 422: %s", q, r.Status, r.Body)
			}
			if r.Status == 422 && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
				t.Errorf("?%s: content type %q", q, r.Header.Get("Content-Type"))
			}
		}
		e.do("GET", "/v1/analytics/redemption-rate?from=2026-01-01&to=2026-01-31", e.pos(), nil).must(t, 403)
		e.do("GET", "/v1/analytics/redemption-rate?from=2026-01-01&to=2026-01-31", e.admin(), nil).must(t, 200)

		t.Run("SnapshotJob", func(t *testing.T) {
			type snap struct {
				Month          string
				PointsIssued   int64
				PointsRedeemed int64
				RatePercent    *string
			}
			read := func() []snap {
				t.Helper()
				var rows []snap
				if err := e.store.DB().Raw(`SELECT month, points_issued, points_redeemed, rate_percent
					FROM redemption_rate_snapshots ORDER BY month`).Scan(&rows).Error; err != nil {
					t.Fatal(err)
				}
				return rows
			}
			asOf := anAt(t, "2026-03-06T20:00:00Z")
			first := e.anRun("redemption-rate", asOf)
			rows := read()
			e.anRun("redemption-rate", asOf)
			again := read()
			// February is final; March runs to as_of, after A2's purchase.
			want := []snap{{"2026-02", 350, 300, nil}, {"2026-03", 450, 300, nil}}
			wantRate := []string{"85.71", "66.67"}
			if len(rows) != len(want) {
				t.Fatalf("snapshots %+v, want %+v", rows, want)
			}
			for i := range want {
				r := rows[i]
				if r.Month != want[i].Month || r.PointsIssued != want[i].PointsIssued || r.PointsRedeemed != want[i].PointsRedeemed ||
					r.RatePercent == nil || !decimal.RequireFromString(*r.RatePercent).Equal(decimal.RequireFromString(wantRate[i])) {
					t.Errorf("snapshot %d: %+v (rate %v), want %+v rate %s", i, r, r.RatePercent, want[i], wantRate[i])
				}
			}
			show := func(l []snap) string {
				var b strings.Builder
				for _, s := range l {
					rate := "null"
					if s.RatePercent != nil {
						rate = *s.RatePercent
					}
					fmt.Fprintf(&b, "%s %d %d %s; ", s.Month, s.PointsIssued, s.PointsRedeemed, rate)
				}
				return b.String()
			}
			if show(again) != show(rows) {
				t.Errorf("second run stored %s, first %s", show(again), show(rows))
			}
			months, _ := first["summary"].(map[string]any)["months"].([]any)
			if len(months) != 2 {
				t.Fatalf("run summary %v", first["summary"])
			}
			if m := months[0].(map[string]any); m["from"] != "2026-02-01" || m["to"] != "2026-02-28" || m["points_issued"].(float64) != 350 {
				t.Errorf("summary February %v", m)
			}
			if m := months[1].(map[string]any); m["from"] != "2026-03-01" || m["to"] != "2026-03-06" || m["points_redeemed"].(float64) != 300 {
				t.Errorf("summary March %v", m)
			}
		})
	})
}

// TestAnalyticsSummary checks every figure of the summary over February by
// hand: members total, new, active, active before, lost; churn, retention
// and redemption rates; points issued, redeemed, expired and outstanding;
// members per tier and per segment.
func TestAnalyticsSummary(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		at := func(s string) { t.Helper(); e.clock.Set(anAt(t, s)) }
		at("2025-12-01T12:00:00Z")
		e.beautyLadder()
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"expiry_days": 30}).must(t, 200)
		r20, r100 := e.anReward("r20", 20), e.anReward("r100", 100)
		m1, m2, m3, m8 := e.enrol(), e.enrol(), e.enrol(), e.enrol()
		buy := func(m, ext, when string, total, want int64) string {
			t.Helper()
			at(when)
			id, pts := e.anBuy(m, ext, e.clock.Now(), total)
			if pts != want {
				t.Fatalf("%s earned %d, want %d", ext, pts, want)
			}
			return id
		}
		// Points expire 30 days after they are earned.
		buy(m1, "M1-1", "2025-12-20T12:00:00Z", 5000, 50)   // expires 19 Jan
		buy(m8, "M8-1", "2026-01-03T23:59:59Z", 1000, 10)   // before the period before; expires 2 Feb
		buy(m3, "M3-1", "2026-01-05T12:00:00Z", 3000, 30)   // expires 4 Feb
		buy(m1, "M1-2", "2026-01-10T12:00:00Z", 40000, 400) // lifts M1 to VIB; expires 9 Feb
		buy(m2, "M2-1", "2026-01-15T12:00:00Z", 8000, 80)   // M2's last purchase: lost; expires 14 Feb
		at("2026-01-20T12:00:00Z")
		m4 := e.enrol()
		at("2026-02-02T12:00:00Z")
		e.anRedeem(m3, r20) // from the lot expiring 4 Feb: 10 left to expire
		buy(m4, "M4-1", "2026-02-03T12:00:00Z", 2000, 20)
		buy(m1, "M1-3", "2026-02-05T12:00:00Z", 10000, 125) // at VIB, ×1.25
		at("2026-02-06T12:00:00Z")
		e.anRedeem(m1, r100) // from the lot expiring 9 Feb: 300 left to expire
		at("2026-02-10T12:00:00Z")
		m5 := e.enrol()
		buy(m3, "M3-2", "2026-02-10T12:00:00Z", 6000, 60)
		p5 := buy(m5, "M5-1", "2026-02-12T12:00:00Z", 7000, 70)
		at("2026-02-13T12:00:00Z")
		e.do("POST", "/v1/purchases/"+p5+"/returns", e.pos(), map[string]any{"external_id": "RET-M5", "amount": 2000}).must(t, 201)
		at("2026-02-15T12:00:00Z")
		m6 := e.enrol()
		at("2026-02-20T12:00:00Z")
		e.do("POST", "/v1/members/"+m6+"/adjustments", e.admin(), map[string]any{"points": 25, "reason": "welcome"}).must(t, 201)
		// After the range: enrolled and bought on 1 March.
		at("2026-03-01T09:00:00Z")
		m7 := e.enrol()
		buy(m7, "M7-1", "2026-03-01T10:00:00Z", 5000, 50)
		at("2026-03-01T12:00:00Z")
		exp := e.anRun("expire-points", e.clock.Now())
		if p := exp["summary"].(map[string]any)["points"]; p.(float64) != 450 {
			t.Fatalf("expired %v points, want 50 + 300 + 80 + 10 + 10", p)
		}
		e.anRun("segments", e.clock.Now())
		e.checkLedger()

		type summary struct {
			From    string `json:"from"`
			To      string `json:"to"`
			Members struct {
				Total        int64 `json:"total"`
				New          int64 `json:"new"`
				Active       int64 `json:"active"`
				ActiveBefore int64 `json:"active_before"`
				Lost         int64 `json:"lost"`
			} `json:"members"`
			Points struct {
				Issued      int64 `json:"issued"`
				Redeemed    int64 `json:"redeemed"`
				Expired     int64 `json:"expired"`
				Outstanding int64 `json:"outstanding"`
			} `json:"points"`
			Rates struct {
				Redemption json.RawMessage `json:"redemption_rate"`
				Churn      json.RawMessage `json:"churn_rate"`
				Retention  json.RawMessage `json:"retention_rate"`
			} `json:"rates"`
			Tiers    map[string]int64 `json:"members_per_tier"`
			Segments map[string]int64 `json:"members_per_segment"`
		}
		get := func(from, to string) summary {
			t.Helper()
			var s summary
			e.do("GET", "/v1/analytics/summary?from="+from+"&to="+to, e.marketer(), nil).must(t, 200).Decode(t, &s)
			return s
		}

		t.Run("February", func(t *testing.T) {
			s := get("2026-02-01", "2026-02-28")
			if s.From != "2026-02-01" || s.To != "2026-02-28" {
				t.Errorf("range %s..%s", s.From, s.To)
			}
			// Enrolled before 1 March: M1, M2, M3, M8 (December), M4 (January),
			// M5, M6 (February, new). Active in February: M1, M3, M4, M5; in
			// 4–31 January: M1, M2, M3 (M8's 3 January purchase is a second
			// early); lost: M2. New customers (first purchase ever in
			// February): M4, M5.
			m := s.Members
			if m.Total != 7 || m.New != 2 || m.Active != 4 || m.ActiveBefore != 3 || m.Lost != 1 {
				t.Errorf("members %+v, want total 7 new 2 active 4 active_before 3 lost 1", m)
			}
			// Issued: 20 + 125 + 60 + 70 − 20 (return) + 25 (adjustment);
			// redeemed: 20 + 100; expired: 10 (M8) + 10 (M3) + 300 (M1) +
			// 80 (M2); outstanding: M1 125, M3 60, M4 20, M5 50, M6 25.
			p := s.Points
			if p.Issued != 280 || p.Redeemed != 120 || p.Expired != 400 || p.Outstanding != 280 {
				t.Errorf("points %+v, want issued 280 redeemed 120 expired 400 outstanding 280", p)
			}
			anCheckPercent(t, "redemption rate", s.Rates.Redemption, "42.86")
			anCheckPercent(t, "churn rate", s.Rates.Churn, "33.33")         // 1 lost of 3
			anCheckPercent(t, "retention rate", s.Rates.Retention, "66.67") // (4 active − 2 new) of 3
			if len(s.Tiers) != 2 || s.Tiers["insider"] != 7 || s.Tiers["vib"] != 1 {
				t.Errorf("members per tier %v, want insider 7 (M2–M8) and vib 1 (M1)", s.Tiers)
			}
			var segs struct {
				Items []struct {
					Code    string `json:"code"`
					Members int64  `json:"members"`
				} `json:"items"`
			}
			e.do("GET", "/v1/segments", e.marketer(), nil).must(t, 200).Decode(t, &segs)
			var rfm int64
			for _, sg := range segs.Items {
				if s.Segments[sg.Code] != sg.Members {
					t.Errorf("segment %s: summary %d, segments list %d", sg.Code, s.Segments[sg.Code], sg.Members)
				}
				if strings.HasPrefix(sg.Code, "rfm_") {
					rfm += sg.Members
				}
			}
			// Bought in the year to 1 March: every member but M6.
			if rfm != 7 {
				t.Errorf("%d members in RFM segments, want 7: %v", rfm, s.Segments)
			}
		})

		t.Run("December", func(t *testing.T) {
			// Nobody was active in November: churn and retention are null.
			s := get("2025-12-01", "2025-12-31")
			m := s.Members
			if m.Total != 4 || m.New != 4 || m.Active != 1 || m.ActiveBefore != 0 || m.Lost != 0 {
				t.Errorf("members %+v, want total 4 new 4 active 1 active_before 0 lost 0", m)
			}
			if p := s.Points; p.Issued != 50 || p.Redeemed != 0 || p.Expired != 0 || p.Outstanding != 50 {
				t.Errorf("points %+v, want issued 50 outstanding 50", p)
			}
			anCheckPercent(t, "redemption rate", s.Rates.Redemption, "0.00")
			anCheckPercent(t, "churn rate", s.Rates.Churn, "null")
			anCheckPercent(t, "retention rate", s.Rates.Retention, "null")
		})

		t.Run("January", func(t *testing.T) {
			// The period before is 1–31 December: only M1, active again.
			s := get("2026-01-01", "2026-01-31")
			m := s.Members
			if m.Total != 5 || m.New != 1 || m.Active != 4 || m.ActiveBefore != 1 || m.Lost != 0 {
				t.Errorf("members %+v, want total 5 new 1 active 4 active_before 1 lost 0", m)
			}
			// Issued 10 + 30 + 400 + 80; M1's December 50 expired 19 January.
			if p := s.Points; p.Issued != 520 || p.Redeemed != 0 || p.Expired != 50 || p.Outstanding != 520 {
				t.Errorf("points %+v, want issued 520 expired 50 outstanding 520", p)
			}
			anCheckPercent(t, "churn rate", s.Rates.Churn, "0.00")
			// M8, M3, M2 bought for the first time in January.
			anCheckPercent(t, "retention rate", s.Rates.Retention, "100.00")
		})

		for _, q := range []string{"from=2026-02-01", "from=2026-02-28&to=2026-02-01", "from=x&to=2026-02-01"} {
			if r := e.do("GET", "/v1/analytics/summary?"+q, e.marketer(), nil); r.Status != 422 {
				t.Errorf("summary ?%s: %d, want 422: %s", q, r.Status, r.Body)
			}
		}
	})
}

// TestAnalyticsSummaryPeriodBeforeAcrossDST checks that the period before
// a range is as many calendar days of the program timezone as the range,
// even when the range spans a daylight-saving change: March 2026 in New
// York (31 days, 743 hours) has 29 January to 28 February before it.
func TestAnalyticsSummaryPeriodBeforeAcrossDST(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"timezone": "America/New_York"}).must(t, 200)
		e.clock.Set(anAt(t, "2026-01-01T12:00:00Z"))
		in, out := e.enrol(), e.enrol()
		e.clock.Set(anAt(t, "2026-04-02T12:00:00Z"))
		e.anBuy(in, "IN-1", anAt(t, "2026-01-29T05:30:00Z"), 1000)   // 00:30 on 29 January in New York
		e.anBuy(out, "OUT-1", anAt(t, "2026-01-29T04:30:00Z"), 1000) // 23:30 on 28 January
		var s struct {
			Members struct {
				Active       int64 `json:"active"`
				ActiveBefore int64 `json:"active_before"`
				Lost         int64 `json:"lost"`
			} `json:"members"`
			Rates struct {
				Churn json.RawMessage `json:"churn_rate"`
			} `json:"rates"`
		}
		e.do("GET", "/v1/analytics/summary?from=2026-03-01&to=2026-03-31", e.marketer(), nil).must(t, 200).Decode(t, &s)
		if m := s.Members; m.Active != 0 || m.ActiveBefore != 1 || m.Lost != 1 {
			t.Errorf("members %+v, want active_before 1 (29 January) and lost 1", m)
		}
		anCheckPercent(t, "churn rate", s.Rates.Churn, "100.00")
	})
}

// anSegmentMembers lists every member id of a segment, following cursors.
func (e *env) anSegmentMembers(code string) []string {
	e.t.Helper()
	out := []string{}
	cursor := ""
	for {
		var l struct {
			Items      []string `json:"items"`
			NextCursor *string  `json:"next_cursor"`
		}
		e.do("GET", "/v1/segments/"+code+"/members?limit=3&cursor="+url.QueryEscape(cursor), e.marketer(), nil).must(e.t, 200).Decode(e.t, &l)
		out = append(out, l.Items...)
		if l.NextCursor == nil {
			return out
		}
		cursor = *l.NextCursor
	}
}

// anMemberSegments reads GET /v1/members/{id} segments and churn_risk.
func (e *env) anMember(id string) (segments []string, churnRisk *string) {
	e.t.Helper()
	var m struct {
		Segments  []string `json:"segments"`
		ChurnRisk *string  `json:"churn_risk"`
	}
	e.do("GET", "/v1/members/"+id, e.marketer(), nil).must(e.t, 200).Decode(e.t, &m)
	return m.Segments, m.ChurnRisk
}

// anSegmentCounts reads GET /v1/segments as code → members.
func (e *env) anSegmentCounts() map[string]int64 {
	e.t.Helper()
	var l struct {
		Items []struct {
			Code       string  `json:"code"`
			Members    int64   `json:"members"`
			ComputedAt *string `json:"computed_at"`
		} `json:"items"`
	}
	e.do("GET", "/v1/segments", e.marketer(), nil).must(e.t, 200).Decode(e.t, &l)
	out := map[string]int64{}
	for _, s := range l.Items {
		out[s.Code] = s.Members
		if s.Members > 0 && s.ComputedAt == nil {
			e.t.Errorf("segment %s has members but no computed_at", s.Code)
		}
	}
	return out
}

func anCats(from, to int) []string {
	out := []string{}
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("cat%02d", i))
	}
	return out
}

// TestSegmentLoyalEdges checks the loyal segment (8 weeks, 8 active, 20
// categories) at each of its edges, and how the API shows it.
func TestSegmentLoyalEdges(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"segments": map[string]any{
			"loyal_window_weeks": 8, "loyal_min_active_weeks": 8, "loyal_min_categories": 20}}).must(t, 200)
		e.clock.Set(anAt(t, "2025-10-01T12:00:00Z"))
		names := []string{"all8", "weeks7", "cats19", "oldEndOut", "oldEndIn", "afterD", "erased"}
		ids := map[string]string{}
		for _, n := range names {
			ids[n] = e.enrol()
		}
		// D is the job's as_of; the clock is a day on, so a purchase after D
		// can be posted.
		d := anAt(t, "2026-03-01T12:00:00Z")
		e.clock.Set(d.AddDate(0, 0, 1))
		wk := 7 * 24 * time.Hour
		// Categories spread over the eight weeks: 3,3,3,3,2,2,2,2.
		split := [][]string{anCats(0, 3), anCats(3, 6), anCats(6, 9), anCats(9, 12), anCats(12, 14), anCats(14, 16), anCats(16, 18), anCats(18, 20)}
		n := 0
		buy := func(member string, at time.Time, cats []string) {
			t.Helper()
			n++
			e.anBuy(ids[member], fmt.Sprintf("P-%d", n), at, int64(1000*len(cats)), cats...)
		}
		// all8: one purchase at the newest instant of each week k, D − 7k
		// days; week 0's is at D itself.
		for k := 0; k < 8; k++ {
			buy("all8", d.Add(-time.Duration(k)*wk), split[k])
		}
		// weeks7: nothing in week 5, its categories bought in week 4.
		for k := 0; k < 8; k++ {
			switch k {
			case 4:
				buy("weeks7", d.Add(-time.Duration(k)*wk-time.Hour), append(append([]string{}, split[4]...), split[5]...))
			case 5:
			default:
				buy("weeks7", d.Add(-time.Duration(k)*wk-time.Hour), split[k])
			}
		}
		// cats19: every week, but cat19 never bought.
		for k := 0; k < 8; k++ {
			cats := split[k]
			if k == 7 {
				cats = []string{"cat18", "cat00"}
			}
			buy("cats19", d.Add(-time.Duration(k)*wk-time.Hour), cats)
		}
		// oldEndOut: purchases at D − 7k days for k = 1..8 fall in weeks
		// 1..7, and D − 56 days is outside the window (the old end of week 7
		// is exclusive): seven weeks. oldEndIn: a second later each, weeks
		// 0..7. The categories are all bought in the first seven.
		catsFor := func(k int) []string {
			switch k {
			case 1:
				return append(append([]string{}, split[0]...), split[1]...)
			case 8:
				return []string{"cat00"}
			}
			return split[k]
		}
		for k := 1; k <= 8; k++ {
			buy("oldEndOut", d.Add(-time.Duration(k)*wk), catsFor(k))
			buy("oldEndIn", d.Add(-time.Duration(k)*wk+time.Second), catsFor(k))
		}
		// afterD: weeks 1..7 inside with every category, the eighth
		// purchase a second after D.
		for k := 1; k < 8; k++ {
			buy("afterD", d.Add(-time.Duration(k)*wk), catsFor(k))
		}
		buy("afterD", d.Add(time.Second), []string{"cat00"})
		// erased: loyal by its purchases, but erased.
		for k := 0; k < 8; k++ {
			buy("erased", d.Add(-time.Duration(k)*wk), split[k])
		}
		e.do("DELETE", "/v1/members/"+ids["erased"], e.admin(), nil).must(t, 204)

		if r := e.do("GET", "/v1/segments/loyal/members", e.marketer(), nil).must(t, 200).JSON(t); len(r["items"].([]any)) != 0 {
			t.Fatalf("loyal before any run: %v", r)
		}
		e.anRun("segments", d)
		want := []string{ids["all8"], ids["oldEndIn"]}
		sort.Strings(want)
		check := func(when string) {
			t.Helper()
			got := e.anSegmentMembers("loyal")
			if strings.Join(got, ",") != strings.Join(want, ",") {
				inv := map[string]string{}
				for k, v := range ids {
					inv[v] = k
				}
				var gotNames []string
				for _, g := range got {
					gotNames = append(gotNames, inv[g])
				}
				t.Fatalf("%s: loyal members %v, want all8 and oldEndIn", when, gotNames)
			}
			for _, n := range names[:len(names)-1] { // the erased member is checked in the database
				segs, _ := e.anMember(ids[n])
				in := false
				for _, s := range segs {
					in = in || s == "loyal"
				}
				if wantIn := n == "all8" || n == "oldEndIn"; in != wantIn {
					t.Errorf("%s: member %s segments %v, loyal should be %v", when, n, segs, wantIn)
				}
			}
			if n := e.anInt("SELECT COUNT(*) FROM member_segments WHERE member_id = ?", ids["erased"]); n != 0 {
				t.Errorf("%s: the erased member is in %d segments", when, n)
			}
			if c := e.anSegmentCounts(); c["loyal"] != 2 {
				t.Errorf("%s: GET /v1/segments loyal %d, want 2", when, c["loyal"])
			}
		}
		check("first run")
		e.anRun("segments", d)
		check("second run")

		t.Run("CSV", func(t *testing.T) {
			r := e.do("GET", "/v1/segments/loyal/members", e.marketer(), nil, "Accept", "text/csv").must(t, 200)
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
				t.Errorf("content type %q", ct)
			}
			rows, err := csv.NewReader(strings.NewReader(string(r.Body))).ReadAll()
			if err != nil {
				t.Fatalf("csv: %v: %s", err, r.Body)
			}
			if len(rows) != 3 {
				t.Fatalf("%d CSV lines, want a header and 2: %q", len(rows), r.Body)
			}
			if strings.Join(rows[0], ",") != "member_id,external_id,email,phone,first_name,last_name,tier" {
				t.Errorf("header %v", rows[0])
			}
			for i, row := range rows[1:] {
				if row[0] != want[i] || !strings.HasPrefix(row[1], "C-") || !strings.Contains(row[2], "@example.com") {
					t.Errorf("row %d: %v, want member %s with its contact fields", i+1, row, want[i])
				}
			}
		})

		t.Run("Unknown", func(t *testing.T) {
			e.do("GET", "/v1/segments/nope/members", e.marketer(), nil).must(t, 404)
			e.do("GET", "/v1/segments/nope/members", e.marketer(), nil, "Accept", "text/csv").must(t, 404)
			e.do("GET", "/v1/segments", e.pos(), nil).must(t, 403)
		})

		t.Run("FewerCategoriesNeeded", func(t *testing.T) {
			// Lowering the thresholds lets the near misses in: 19
			// categories against 19, seven weeks against seven.
			e.do("PUT", "/v1/program", e.marketer(), map[string]any{"segments": map[string]any{
				"loyal_window_weeks": 8, "loyal_min_active_weeks": 7, "loyal_min_categories": 19}}).must(t, 200)
			e.anRun("segments", d)
			got := map[string]bool{}
			for _, id := range e.anSegmentMembers("loyal") {
				got[id] = true
			}
			for _, n := range names {
				if want := n != "erased"; got[ids[n]] != want {
					t.Errorf("member %s loyal %v, want %v", n, got[ids[n]], want)
				}
			}
		})
	})
}

// TestSegmentRFMPartition checks that the RFM segments partition the
// members who bought in the last 365 days, with the obvious champion and
// hibernating member where they belong.
func TestSegmentRFMPartition(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		d := anAt(t, "2026-03-01T12:00:00Z")
		e.clock.Set(d.AddDate(-2, 0, 0))
		dayD := 24 * time.Hour
		ago := func(days int) time.Time { return d.Add(-time.Duration(days) * dayD) }
		buyers := map[string]bool{}
		all := []string{}
		enrol := func(buyer bool) string {
			t.Helper()
			id := e.enrol()
			all = append(all, id)
			buyers[id] = buyer
			return id
		}
		type purchase struct {
			member string
			at     time.Time
			total  int64
		}
		var ps []purchase
		// 35 members: the last purchase 10 to 316 days ago, 1 to 5
		// purchases three days apart, varied baskets.
		for i := 0; i < 35; i++ {
			m := enrol(true)
			n := 1 + i%5
			for k := 0; k < n; k++ {
				ps = append(ps, purchase{m, ago(10 + 9*i + 3*k), int64(1000 + 500*(i%7))})
			}
		}
		champ := enrol(true)
		for k := 0; k < 12; k++ {
			ps = append(ps, purchase{champ, ago(1 + 2*k), 50000})
		}
		hib := enrol(true)
		ps = append(ps, purchase{hib, ago(360), 100})
		edgeIn := enrol(true)
		ps = append(ps, purchase{edgeIn, ago(365).Add(time.Hour), 5000})
		// Not in the last 365 days, or no purchase at all.
		old1 := enrol(false)
		ps = append(ps, purchase{old1, ago(400), 90000}, purchase{old1, ago(500), 90000})
		old2 := enrol(false)
		ps = append(ps, purchase{old2, ago(365).Add(-time.Hour), 3000})
		enrol(false)
		enrol(false)
		// Bought only after as_of.
		future := enrol(false)
		ps = append(ps, purchase{future, d.Add(time.Hour), 20000})
		// Bought recently but erased.
		erased := enrol(false)
		ps = append(ps, purchase{erased, ago(3), 40000}, purchase{erased, ago(5), 40000})

		e.clock.Set(d.AddDate(0, 0, 1))
		for i, p := range ps {
			e.anBuy(p.member, fmt.Sprintf("R-%d", i), p.at, p.total)
		}
		e.do("DELETE", "/v1/members/"+erased, e.admin(), nil).must(t, 204)
		if len(all) != 44 {
			t.Fatalf("%d members", len(all))
		}

		membership := func() map[string]string {
			t.Helper()
			var rows []struct{ MemberID, SegmentCode string }
			if err := e.store.DB().Raw(`SELECT member_id, segment_code FROM member_segments WHERE segment_code LIKE 'rfm%'`).
				Scan(&rows).Error; err != nil {
				t.Fatal(err)
			}
			out := map[string]string{}
			for _, r := range rows {
				if prev, dup := out[r.MemberID]; dup {
					t.Errorf("member %s in both %s and %s", r.MemberID, prev, r.SegmentCode)
				}
				out[r.MemberID] = r.SegmentCode
			}
			return out
		}
		e.anRun("segments", d)
		first := membership()
		var nBuyers int64
		for _, id := range all {
			if id == erased {
				if n := e.anInt("SELECT COUNT(*) FROM member_segments WHERE member_id = ?", id); n != 0 {
					t.Errorf("the erased member is in %d segments", n)
				}
				continue
			}
			segs, _ := e.anMember(id)
			var rfm []string
			for _, s := range segs {
				if strings.HasPrefix(s, "rfm_") {
					rfm = append(rfm, s)
				}
			}
			if buyers[id] {
				nBuyers++
				if len(rfm) != 1 {
					t.Errorf("buyer %s in RFM segments %v, want exactly one", id, rfm)
				}
			} else if len(rfm) != 0 {
				t.Errorf("member %s without a purchase in the year to as_of is in %v", id, rfm)
			}
		}
		if nBuyers != 38 || int64(len(first)) != nBuyers {
			t.Errorf("%d members in RFM segments, want the %d buyers", len(first), nBuyers)
		}
		if first[champ] != "rfm_champions" {
			t.Errorf("the recent, frequent, big spender is in %q, want rfm_champions", first[champ])
		}
		if first[hib] != "rfm_hibernating" {
			t.Errorf("the old one-time small buyer is in %q, want rfm_hibernating", first[hib])
		}
		var sum int64
		for code, n := range e.anSegmentCounts() {
			if strings.HasPrefix(code, "rfm_") {
				sum += n
			}
		}
		if sum != nBuyers {
			t.Errorf("GET /v1/segments: RFM segments hold %d members, want %d", sum, nBuyers)
		}
		// Each segment's member list, paged, is its part of the partition.
		bySegment := map[string][]string{}
		for id, code := range first {
			bySegment[code] = append(bySegment[code], id)
		}
		for _, code := range []string{"rfm_champions", "rfm_loyal", "rfm_new", "rfm_promising", "rfm_at_risk", "rfm_hibernating"} {
			want := bySegment[code]
			sort.Strings(want)
			if got := e.anSegmentMembers(code); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("GET /v1/segments/%s/members lists %v, want %v", code, got, want)
			}
		}

		e.anRun("segments", d)
		again := membership()
		if fmt.Sprint(again) != fmt.Sprint(first) {
			t.Errorf("a re-run changed membership:\nfirst %v\nagain %v", first, again)
		}
	})
}

// anRisk is one entry of the churn-risk list.
type anRisk struct {
	MemberID              string `json:"member_id"`
	ChurnRisk             string `json:"churn_risk"`
	DaysSinceLastPurchase int64  `json:"days_since_last_purchase"`
	Purchases             int64  `json:"purchases"`
}

// anRiskList reads the churn-risk list from path, following cursors.
func (e *env) anRiskList(path string) []anRisk {
	e.t.Helper()
	out := []anRisk{}
	cursor := ""
	for {
		var l struct {
			Items      []anRisk `json:"items"`
			NextCursor *string  `json:"next_cursor"`
		}
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		e.do("GET", path+sep+"cursor="+url.QueryEscape(cursor), e.marketer(), nil).must(e.t, 200).Decode(e.t, &l)
		out = append(out, l.Items...)
		if l.NextCursor == nil {
			return out
		}
		cursor = *l.NextCursor
	}
}

// TestChurnRiskOrdering scores synthetic members: a weekly buyer who
// stopped months ago against one who bought yesterday, and one-time buyers
// by the documented recency rule.
func TestChurnRiskOrdering(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		d := anAt(t, "2026-03-01T12:00:00Z")
		e.clock.Set(d.AddDate(-1, 0, 0))
		ago := func(days int) time.Time { return d.AddDate(0, 0, -days) }
		type purchase struct {
			member string
			at     time.Time
		}
		var ps []purchase
		// Twenty repeat buyers: first purchase 100 + 5j days ago, then
		// every 3 + 4j days, 2 to 5 purchases, none after yesterday.
		for j := 0; j < 20; j++ {
			m := e.enrol()
			first, gap := 100+5*j, 3+4*j
			for k := 0; k < 2+j%4 && first-k*gap >= 1; k++ {
				ps = append(ps, purchase{m, ago(first - k*gap)})
			}
		}
		// Five one-time buyers 20, 60, …, 180 days ago.
		oneTime := map[int]string{}
		for _, days := range []int{20, 60, 100, 140, 180} {
			oneTime[days] = e.enrol()
			ps = append(ps, purchase{oneTime[days], ago(days)})
		}
		once := e.enrol()
		ps = append(ps, purchase{once, ago(30)})
		// Ten weekly purchases each: lapsed 200 to 137 days ago, recent 64
		// days ago to yesterday.
		lapsed, recent := e.enrol(), e.enrol()
		for k := 0; k < 10; k++ {
			ps = append(ps, purchase{lapsed, ago(200 - 7*k)}, purchase{recent, ago(64 - 7*k)})
		}
		future := e.enrol()
		never := e.enrol()

		e.clock.Set(d.AddDate(0, 0, 1))
		for i, p := range ps {
			e.anBuy(p.member, fmt.Sprintf("R-%d", i), p.at, 2500)
		}
		e.anBuy(future, "F-1", d.Add(2*time.Hour), 2500)

		e.do("GET", "/v1/analytics/churn-model", e.marketer(), nil).must(t, 404)
		if _, risk := e.anMember(lapsed); risk != nil {
			t.Fatalf("churn_risk %q before any run, want null", *risk)
		}

		e.anRun("churn-risk", d)
		model := e.do("GET", "/v1/analytics/churn-model", e.marketer(), nil).must(t, 200).JSON(t)
		// 20 repeat buyers, 5 + 1 one-time buyers, lapsed and recent.
		if model["model"] != "bgnbd" || model["members"].(float64) != 28 || model["time_unit"] != "week" {
			t.Errorf("model %v", model)
		}
		if asOf, _ := time.Parse(time.RFC3339, fmt.Sprint(model["as_of"])); !asOf.Equal(d) {
			t.Errorf("model as_of %v, want %s", model["as_of"], d)
		}
		for _, p := range []string{"r", "alpha", "a", "b"} {
			if v, ok := model["params"].(map[string]any)[p].(float64); !ok || v <= 0 {
				t.Errorf("param %s = %v", p, model["params"])
			}
		}

		all := e.anRiskList("/v1/analytics/churn-risk?min_risk=0&limit=500")
		byID := map[string]anRisk{}
		for i, r := range all {
			byID[r.MemberID] = r
			if i > 0 && decimal.RequireFromString(all[i-1].ChurnRisk).LessThan(decimal.RequireFromString(r.ChurnRisk)) {
				t.Errorf("list not highest first at %d: %s then %s", i, all[i-1].ChurnRisk, r.ChurnRisk)
			}
		}
		if len(all) != 28 {
			t.Errorf("%d members listed, want the 28 with a purchase up to as_of", len(all))
		}
		if _, ok := byID[future]; ok {
			t.Errorf("a member whose only purchase is after as_of was scored")
		}
		l, r := byID[lapsed], byID[recent]
		if l.Purchases != 10 || r.Purchases != 10 || l.DaysSinceLastPurchase != 137 || r.DaysSinceLastPurchase != 1 {
			t.Errorf("lapsed %+v, recent %+v", l, r)
		}
		lr, rr := decimal.RequireFromString(l.ChurnRisk), decimal.RequireFromString(r.ChurnRisk)
		if !lr.GreaterThan(rr) {
			t.Errorf("lapsed weekly buyer's risk %s is not above the recent one's %s", l.ChurnRisk, r.ChurnRisk)
		}
		if !lr.GreaterThan(decimal.RequireFromString("0.5")) || !rr.LessThan(decimal.RequireFromString("0.5")) {
			t.Errorf("lapsed %s, recent %s: expected one far gone and one alive", l.ChurnRisk, r.ChurnRisk)
		}

		// The recency rule: the share of the 22 repeat buyers (gaps 3, 7,
		// …, 79 days and two of 7) whose second purchase day came within
		// as many days as the one-time buyer has waited.
		for _, c := range []struct {
			member string
			want   string
		}{
			{oneTime[20], "0.3182"},  // gaps ≤ 20: 3, 7, 11, 15, 19, 7, 7 → 7/22
			{once, "0.4091"},         // ≤ 30: and 23, 27 → 9/22
			{oneTime[60], "0.7727"},  // ≤ 60: 3 … 59 (15) and 7, 7 → 17/22
			{oneTime[100], "1.0000"}, // all
		} {
			got, ok := byID[c.member]
			if !ok || !decimal.RequireFromString(got.ChurnRisk).Equal(decimal.RequireFromString(c.want)) {
				t.Errorf("one-time buyer %d days ago: risk %q, want %s", got.DaysSinceLastPurchase, got.ChurnRisk, c.want)
			}
			if got.Purchases != 1 {
				t.Errorf("one-time buyer %+v", got)
			}
		}

		// min_risk keeps exactly the members at or above it, highest first.
		minRisk := l.ChurnRisk
		above := e.anRiskList("/v1/analytics/churn-risk?limit=3&min_risk=" + minRisk)
		var want []anRisk
		for _, x := range all {
			if !decimal.RequireFromString(x.ChurnRisk).LessThan(lr) {
				want = append(want, x)
			}
		}
		if fmt.Sprint(above) != fmt.Sprint(want) {
			t.Errorf("min_risk=%s, paged by 3:\n got %v\nwant %v", minRisk, above, want)
		}
		for _, x := range above {
			if x.MemberID == recent {
				t.Errorf("min_risk=%s lists the recent buyer at %s", minRisk, x.ChurnRisk)
			}
		}
		if paged := e.anRiskList("/v1/analytics/churn-risk?limit=5"); fmt.Sprint(paged) != fmt.Sprint(all) {
			t.Errorf("walking pages of 5 gives\n%v\nnot\n%v", paged, all)
		}
		for _, q := range []string{"min_risk=1.5", "min_risk=-0.1", "min_risk=high", "limit=0", "cursor=YWJj", "cursor=%21%21"} {
			if r := e.do("GET", "/v1/analytics/churn-risk?"+q, e.marketer(), nil); r.Status != 422 && r.Status != 400 {
				t.Errorf("churn-risk ?%s: %d, want 422: %s", q, r.Status, r.Body)
			}
		}

		if _, risk := e.anMember(lapsed); risk == nil || *risk != l.ChurnRisk {
			t.Errorf("GET member lapsed churn_risk %v, want %s", risk, l.ChurnRisk)
		}
		for _, m := range []string{future, never} {
			if _, risk := e.anMember(m); risk != nil {
				t.Errorf("GET member %s churn_risk %q, want null: no purchase up to as_of", m, *risk)
			}
		}

		type score struct {
			MemberID, ChurnRisk, PAlive string
			Purchases                   int64
			DaysSinceLastPurchase       int64
		}
		scores := func() []score {
			t.Helper()
			var out []score
			if err := e.store.DB().Raw(`SELECT member_id, churn_risk, p_alive, purchases, days_since_last_purchase
				FROM member_churn ORDER BY member_id`).Scan(&out).Error; err != nil {
				t.Fatal(err)
			}
			return out
		}
		s1 := scores()
		e.clock.Advance(time.Hour)
		e.anRun("churn-risk", d)
		if s2 := scores(); fmt.Sprint(s1) != fmt.Sprint(s2) {
			t.Errorf("a second run for the same as_of changed the scores:\n%v\n%v", s1, s2)
		}
	})
}
