package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// dashboard is what the console's dashboard shows: its key figures as the
// page prints them (label → figure and its note) and its chart data.
type dashboard struct {
	kpis   map[string][2]string
	charts struct {
		Months   []string       `json:"months"`
		Issued   []int64        `json:"issued"`
		Redeemed []int64        `json:"redeemed"`
		Rate     []*json.Number `json:"rate"`
		Tiers    chartSeries    `json:"tiers"`
		Segments chartSeries    `json:"segments"`
		Churn    chartSeries    `json:"churn"`
	}
}

type chartSeries struct {
	Labels []string `json:"labels"`
	Values []int64  `json:"values"`
}

var (
	kpiRE       = regexp.MustCompile(`<div class="kpi"><span>([^<]*)</span><strong[^>]*>([^<]*)</strong>(?:<small>([^<]*)</small>)?</div>`)
	chartDataRE = regexp.MustCompile(`(?s)<script type="application/json" id="chart-data">(.*?)</script>`)
)

// readDashboard signs cl's page at query in and reads its figures.
func readDashboard(t *testing.T, cl *client, query string) dashboard {
	t.Helper()
	r := cl.get("/console/"+query).must(t, 200)
	d := dashboard{kpis: map[string][2]string{}}
	for _, m := range kpiRE.FindAllStringSubmatch(r.Body, -1) {
		d.kpis[html.UnescapeString(m[1])] = [2]string{html.UnescapeString(m[2]), html.UnescapeString(m[3])}
	}
	if len(d.kpis) != 9 {
		t.Fatalf("%d key figures on the dashboard, want 9: %v", len(d.kpis), d.kpis)
	}
	data := chartDataRE.FindStringSubmatch(r.Body)
	if data == nil {
		t.Fatal("no chart data on the dashboard")
	}
	if err := json.Unmarshal([]byte(data[1]), &d.charts); err != nil {
		t.Fatalf("chart data: %v: %s", err, data[1])
	}
	return d
}

// apiFigures is what the JSON API's analytics answer over the same range.
type apiFigures struct {
	summary struct {
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
			Redemption *json.Number `json:"redemption_rate"`
			Churn      *json.Number `json:"churn_rate"`
			Retention  *json.Number `json:"retention_rate"`
		} `json:"rates"`
		Tiers           map[string]int64 `json:"members_per_tier"`
		Segments        map[string]int64 `json:"members_per_segment"`
		Liability       *json.Number     `json:"liability"`
		BreakagePercent *json.Number     `json:"breakage_percent"`
	}
	months []struct {
		From           string       `json:"from"`
		PointsIssued   int64        `json:"points_issued"`
		PointsRedeemed int64        `json:"points_redeemed"`
		RatePercent    *json.Number `json:"rate_percent"`
	}
	tiers []struct {
		Code string `json:"code"`
		Name string `json:"name"`
	}
	segments []struct {
		Code    string `json:"code"`
		Name    string `json:"name"`
		Members int64  `json:"members"`
	}
}

// getAPI reads a JSON API resource with token into v.
func (e *env) getAPI(path, token string, v any) {
	e.t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := e.app.Test(req, -1)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(res.Body)
	if res.StatusCode != 200 {
		e.t.Fatalf("GET %s: %d %s", path, res.StatusCode, b.String())
	}
	if err := json.Unmarshal(b.Bytes(), v); err != nil {
		e.t.Fatalf("GET %s: %v: %s", path, err, b.String())
	}
}

func (e *env) analytics(token, from, to string) apiFigures {
	e.t.Helper()
	var f apiFigures
	q := "?from=" + from + "&to=" + to
	e.getAPI("/v1/analytics/summary"+q, token, &f.summary)
	var months struct {
		Items any `json:"items"`
	}
	months.Items = &f.months
	e.getAPI("/v1/analytics/redemption-rate"+q+"&interval=month", token, &months)
	var tiers, segs struct {
		Items any `json:"items"`
	}
	tiers.Items, segs.Items = &f.tiers, &f.segments
	e.getAPI("/v1/tiers", token, &tiers)
	e.getAPI("/v1/segments", token, &segs)
	return f
}

func pctText(n *json.Number) string {
	if n == nil {
		return "—"
	}
	return n.String() + "%"
}

// checkDashboardMatchesAPI asserts that every figure and chart of the
// dashboard over from..to is the figure the JSON API answers.
func checkDashboardMatchesAPI(t *testing.T, d dashboard, f apiFigures) {
	t.Helper()
	s := f.summary
	want := map[string][2]string{
		"Members":         {groupDigits(s.Members.Total), groupDigits(s.Members.New) + " new in the range"},
		"Active":          {groupDigits(s.Members.Active), groupDigits(s.Members.ActiveBefore) + " in the period before"},
		"Lost":            {groupDigits(s.Members.Lost), "churn rate " + pctText(s.Rates.Churn)},
		"Retention":       {pctText(s.Rates.Retention), "of those active before"},
		"Points issued":   {groupDigits(s.Points.Issued), groupDigits(s.Points.Expired) + " expired"},
		"Points redeemed": {groupDigits(s.Points.Redeemed), "redemption rate " + pctText(s.Rates.Redemption)},
	}
	for label, w := range want {
		if got := d.kpis[label]; got != w {
			t.Errorf("dashboard %q shows %q / %q; the API answers %q / %q", label, got[0], got[1], w[0], w[1])
		}
	}
	if got := d.kpis["Breakage"][0]; got != pctText(s.BreakagePercent) {
		t.Errorf("dashboard shows breakage %s; the API answers %s", got, pctText(s.BreakagePercent))
	}
	if got := d.kpis["Liability"][0]; (s.Liability == nil) != (got == "—") {
		t.Errorf("dashboard shows liability %s; the API answers %v", got, s.Liability)
	}
	if got := d.kpis["Outstanding"][0]; got != groupDigits(s.Points.Outstanding) {
		t.Errorf("dashboard shows %s points outstanding; the API answers %d", got, s.Points.Outstanding)
	}
	var months, rates []string
	var issued, redeemed []int64
	for _, m := range f.months {
		months = append(months, m.From[:7])
		issued = append(issued, m.PointsIssued)
		redeemed = append(redeemed, m.PointsRedeemed)
		rates = append(rates, pctText(m.RatePercent))
	}
	var shownRates []string
	for _, r := range d.charts.Rate {
		shownRates = append(shownRates, pctText(r))
	}
	if !reflect.DeepEqual(d.charts.Months, months) || !reflect.DeepEqual(d.charts.Issued, issued) ||
		!reflect.DeepEqual(d.charts.Redeemed, redeemed) || !reflect.DeepEqual(shownRates, rates) {
		t.Errorf("points chart: months %v issued %v redeemed %v rates %v; the API answers %v %v %v %v",
			d.charts.Months, d.charts.Issued, d.charts.Redeemed, shownRates, months, issued, redeemed, rates)
	}
	var tierLabels []string
	var tierValues []int64
	for _, tr := range f.tiers {
		tierLabels = append(tierLabels, tr.Name)
		tierValues = append(tierValues, s.Tiers[tr.Code])
	}
	if n := s.Tiers[""]; n > 0 {
		tierLabels, tierValues = append(tierLabels, "No tier"), append(tierValues, n)
	}
	if !reflect.DeepEqual(d.charts.Tiers, chartSeries{Labels: tierLabels, Values: tierValues}) {
		t.Errorf("tiers chart %+v; the API answers %v %v", d.charts.Tiers, tierLabels, tierValues)
	}
	segs := chartSeries{Labels: []string{}, Values: []int64{}}
	for _, sg := range f.segments {
		segs.Labels, segs.Values = append(segs.Labels, sg.Name), append(segs.Values, sg.Members)
		if sg.Members != s.Segments[sg.Code] {
			t.Errorf("segment %s: /v1/segments counts %d members, the summary %d", sg.Code, sg.Members, s.Segments[sg.Code])
		}
	}
	if !reflect.DeepEqual(d.charts.Segments, segs) {
		t.Errorf("segments chart %+v; the API answers %+v", d.charts.Segments, segs)
	}
}

// TestConsoleDashboardFigures builds a small history whose figures are
// known by hand, in a program west of UTC (so that days and months are
// local), and checks that the dashboard shows exactly those figures and
// exactly what the JSON API's analytics answer for the same range.
func TestConsoleDashboardFigures(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		admin := e.token(loyalty.RoleAdmin, "op-1")
		at := func(s string) {
			tm, err := time.Parse(time.RFC3339, s)
			if err != nil {
				t.Fatal(err)
			}
			e.clock.Set(tm)
		}
		post := func(path string, body any) map[string]any {
			t.Helper()
			st, out := e.postJSON(path, admin, body)
			if st != 201 && st != 200 {
				t.Fatalf("POST %s: %d %v", path, st, out)
			}
			return out
		}
		enrol := func(ext string) string { return post("/v1/members", map[string]any{"external_id": ext})["id"].(string) }
		buy := func(m, ext string, total int64) map[string]any {
			return post("/v1/purchases", map[string]any{"member_id": m, "external_id": ext, "store_id": "s1", "total": total})
		}

		at("2025-11-01T12:00:00Z")
		req := httptest.NewRequest("PUT", "/v1/program", strings.NewReader(`{"timezone": "America/New_York"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+admin)
		if res, err := e.app.Test(req, -1); err != nil || res.StatusCode != 200 {
			t.Fatalf("set the timezone: %v %v", err, res)
		}
		e.tiers()
		a, b, c := enrol("A"), enrol("B"), enrol("C")
		reward := post("/v1/rewards", map[string]any{"code": "gift", "name": "Gift", "cost_points": 150})["id"].(string)
		redeem := func(m string) string {
			return post("/v1/members/"+m+"/redemptions", map[string]any{"reward_id": reward})["id"].(string)
		}

		// The period before the range (59 days: 2025-11-03 to 2025-12-31).
		at("2025-11-10T12:00:00Z")
		buy(b, "B-1", 5000) // 50
		at("2025-12-05T12:00:00Z")
		buy(a, "A-1", 10000) // 100
		// The range, 2026-01-01 to 2026-02-28 in New York.
		at("2026-01-10T12:00:00Z")
		if p := buy(a, "A-2", 40000); p["points_earned"] != 400.0 || p["tier_after"] != "vib" {
			t.Fatalf("A-2: %v", p) // earns at Insider, lifts A to VIB
		}
		at("2026-01-20T12:00:00Z")
		d := enrol("D")
		dp := buy(d, "D-1", 3000)["id"].(string) // 30
		at("2026-02-01T03:00:00Z")               // 31 January, 22:00 in New York
		buy(c, "C-1", 20000)                     // 200
		at("2026-02-10T12:00:00Z")
		post("/v1/purchases/"+dp+"/returns", map[string]any{"external_id": "D-1-R", "amount": 1000}) // -10
		at("2026-02-14T12:00:00Z")
		buy(a, "A-3", 8000) // 100 at VIB
		at("2026-02-20T12:00:00Z")
		redeem(a)
		at("2026-02-21T12:00:00Z")
		second := redeem(a)
		at("2026-02-22T12:00:00Z")
		post("/v1/redemptions/"+second+"/cancel", nil)
		at("2026-02-25T12:00:00Z")
		post("/v1/members/"+b+"/adjustments", map[string]any{"points": 25, "reason": "goodwill"})
		post("/v1/members/"+c+"/adjustments", map[string]any{"points": -10, "reason": "correction"})
		at("2026-03-01T04:00:00Z") // 28 February, 23:00 in New York
		redeem(c)
		at("2026-03-01T06:00:00Z") // 1 March in New York: after the range
		buy(b, "B-2", 2000)
		at("2026-03-02T12:00:00Z")
		rec, err := e.runner.Run(context.Background(), "segments", e.clock.Now(), "test")
		if err != nil || rec.Status != jobs.Succeeded {
			t.Fatalf("segments job: %v %+v", err, rec)
		}

		cl := e.client()
		cl.signIn(e.token(loyalty.RoleMarketer, "mk-1"))
		dash := readDashboard(t, cl, "?from=2026-01-01&to=2026-02-28")
		f := e.analytics(admin, "2026-01-01", "2026-02-28")
		checkDashboardMatchesAPI(t, dash, f)

		// The figures, by hand. Members: A, B, C and D enrolled before the
		// range's end, D in it. Active in the range: A, C, D (C's first
		// purchase is on 31 January local time); before it: A and B; lost:
		// B. New customers in the range: C and D, so retention is
		// (3 − 2) ÷ 2. Issued: January 400 + 30 + 200, February 100 + 25
		// − 10 (the return); redeemed: February 150 + 150 − 150 (the
		// cancelled one) + 150 (C, on 28 February local time).
		// Outstanding at the end: A 450, B 75, C 40, D 20.
		wantKPIs := map[string][2]string{
			"Members":         {"4", "1 new in the range"},
			"Active":          {"3", "2 in the period before"},
			"Lost":            {"1", "churn rate 50.00%"},
			"Retention":       {"50.00%", "of those active before"},
			"Points issued":   {"745", "0 expired"},
			"Points redeemed": {"300", "redemption rate 40.27%"},
		}
		for label, w := range wantKPIs {
			if got := dash.kpis[label]; got != w {
				t.Errorf("dashboard %q shows %q / %q, want %q / %q", label, got[0], got[1], w[0], w[1])
			}
		}
		if got := dash.kpis["Outstanding"][0]; got != "585" {
			t.Errorf("dashboard shows %s points outstanding, want 585", got)
		}
		ch := dash.charts
		var rates []string
		for _, r := range ch.Rate {
			rates = append(rates, pctText(r))
		}
		if strings.Join(ch.Months, ",") != "2026-01,2026-02" || !reflect.DeepEqual(ch.Issued, []int64{630, 115}) ||
			!reflect.DeepEqual(ch.Redeemed, []int64{0, 300}) || strings.Join(rates, ",") != "0.00%,260.87%" {
			t.Errorf("points chart: months %v issued %v redeemed %v rates %v, want [2026-01 2026-02] [630 115] [0 300] [0.00%% 260.87%%]",
				ch.Months, ch.Issued, ch.Redeemed, rates)
		}
		if want := (chartSeries{Labels: []string{"Insider", "VIB", "Rouge"}, Values: []int64{3, 1, 0}}); !reflect.DeepEqual(ch.Tiers, want) {
			t.Errorf("tiers chart %+v, want %+v", ch.Tiers, want)
		}
		if len(ch.Segments.Labels) == 0 {
			t.Errorf("segments chart %+v lists no segment", ch.Segments)
		}
	})
}
