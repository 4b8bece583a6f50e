package api

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/jobs/bgnbd"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestCDNOWChurnModel imports the CDNOW sample through the import API and fits the
// churn model as of 1997-09-30: the parameters must be within 1% of
// Fader, Hardie and Lee's (2005) table, in weeks, and the Gamma-Gamma
// spend model's within 1% of Fader and Hardie's (2013); a few members'
// CLV equals the hand computation from the fitted parameters.
func TestCDNOWChurnModel(t *testing.T) {
	f, err := os.Open("../../shared/data/cdnow/CDNOW_sample.txt")
	if err != nil {
		t.Skipf("shared data absent: %v", err)
	}
	defer f.Close()
	type row struct {
		customer, date string
		cents          int64
	}
	var rows []row
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 5 {
			continue
		}
		d, err := strconv.ParseFloat(fs[4], 64)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row{customer: fs[0], date: fs[2], cents: int64(math.Round(d * 100))})
	}
	if len(rows) != 6919 {
		t.Fatalf("read %d purchases, want 6919", len(rows))
	}
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		if testing.Short() && dialect != "sqlite" {
			t.Skip("short")
		}
		e := newEnv(t, dialect)
		admin := e.admin()
		// The history goes in through the import of §15. A $0.00 row is a
		// visit without a sale: the engine records only purchases with a
		// positive total, and counts the visit's day as a purchase day with
		// a one-cent total.
		var csvBody strings.Builder
		csvBody.WriteString("member_external_id,external_id,occurred_at,total,currency\n")
		for i, r := range rows {
			at := r.date[0:4] + "-" + r.date[4:6] + "-" + r.date[6:8] + "T12:00:00Z"
			fmt.Fprintf(&csvBody, "CDNOW-%s,CD-%d,%s,%d,USD\n", r.customer, i, at, max(r.cents, 1))
		}
		if _, imp := e.postImport(t, listen(t, e), "kind=purchases", csvBody.String(), false); imp.RowsCreated != int64(len(rows)) {
			t.Fatalf("import %+v", imp)
		}
		members := map[string]string{}
		for _, cust := range []string{"00004", "00018", "00021", "00050", "00060", "00080", "00115"} {
			l := e.do("GET", "/v1/members?external_id=CDNOW-"+cust, admin, nil).must(t, 200).JSON(t)["items"].([]any)
			if len(l) == 1 {
				members[cust] = l[0].(map[string]any)["id"].(string)
			}
		}
		run := e.do("POST", "/v1/jobs/churn-risk/run", e.marketer(), map[string]any{"as_of": "1997-09-30T23:59:59Z"}).must(t, 200).JSON(t)
		if run["status"] != "succeeded" {
			t.Fatalf("run %v", run)
		}
		m := e.do("GET", "/v1/analytics/churn-model", e.marketer(), nil).must(t, 200).JSON(t)
		p := m["params"].(map[string]any)
		t.Logf("%s: %v LL=%v members=%v", dialect, p, m["log_likelihood"], m["members"])
		for _, c := range []struct {
			name string
			got  float64
			want float64
		}{{"r", p["r"].(float64), 0.243}, {"alpha", p["alpha"].(float64), 4.414}, {"a", p["a"].(float64), 0.793},
			{"b", p["b"].(float64), 2.426}, {"log_likelihood", m["log_likelihood"].(float64), -9582.4}} {
			if math.Abs(c.got-c.want) > 0.01*math.Abs(c.want) {
				t.Errorf("%s = %.4f, paper %.4f", c.name, c.got, c.want)
			}
		}
		if m["members"].(float64) != 2357 || m["time_unit"] != "week" {
			t.Errorf("model %v", m)
		}
		risk := e.do("GET", "/v1/analytics/churn-risk?min_risk=0.9&limit=5", e.marketer(), nil).must(t, 200).JSON(t)
		if len(risk["items"].([]any)) == 0 {
			t.Errorf("no member at risk ≥ 0.9: %v", risk)
		}

		// The Gamma-Gamma spend model, Fader and Hardie (2013).
		gm := e.do("GET", "/v1/analytics/clv-model", e.marketer(), nil).must(t, 200).JSON(t)
		gp := gm["params"].(map[string]any)
		t.Logf("%s: spend model %v LL=%v customers=%v", dialect, gp, gm["log_likelihood"], gm["customers"])
		for _, c := range []struct {
			name      string
			got, want float64
		}{{"p", gp["p"].(float64), 6.25}, {"q", gp["q"].(float64), 3.74}, {"gamma", gp["gamma"].(float64), 15.44},
			{"log_likelihood", gm["log_likelihood"].(float64), -4055.92}} {
			if math.Abs(c.got-c.want) > 0.01*math.Abs(c.want) {
				t.Errorf("%s = %.4f, paper %.4f", c.name, c.got, c.want)
			}
		}
		if gm["customers"].(float64) != 946 || gm["spend_model"] != "gamma_gamma" || gm["horizon_weeks"].(float64) != 52 {
			t.Errorf("spend model %v", gm)
		}

		// CLV of a few members by hand from the fitted parameters: expected
		// purchase days over 52 weeks × expected spend per purchase day.
		bg := bgnbd.Params{R: p["r"].(float64), Alpha: p["alpha"].(float64), A: p["a"].(float64), B: p["b"].(float64)}
		pp, qq, gg := gp["p"].(float64), gp["q"].(float64), gp["gamma"].(float64)
		dayNo := func(s string) int64 {
			d, _ := time.Parse("20060102", s)
			return d.Unix() / 86400
		}
		asOfDay := dayNo("19970930")
		checked := 0
		for _, cust := range []string{"00004", "00018", "00021", "00050", "00060", "00080", "00115"} {
			days := map[int64]int64{}
			for _, r := range rows {
				if r.customer == cust && r.date <= "19970930" {
					days[dayNo(r.date)] += max(r.cents, 1)
				}
			}
			if len(days) == 0 {
				continue
			}
			first, last := int64(math.MaxInt64), int64(0)
			var total int64
			for d, v := range days {
				first, last = min(first, d), max(last, d)
				total += v
			}
			x := float64(len(days) - 1)
			spend := float64(total - days[first])
			eh := bg.ExpectedPurchases(bgnbd.Customer{X: x, TX: float64(last-first) / 7, T: float64(asOfDay-first) / 7}, 52)
			want := math.Floor(eh*(gg*100+spend)*pp/(pp*x+qq-1) + 0.5)
			mem := e.do("GET", "/v1/members/"+members[cust], admin, nil).must(t, 200).JSON(t)
			got, ok := mem["clv"].(float64)
			if !ok || math.Abs(got-want) > 1 {
				t.Errorf("customer %s: clv %v, by hand %.0f", cust, mem["clv"], want)
			}
			checked++
		}
		if checked < 5 {
			t.Errorf("checked only %d members", checked)
		}
		top := e.do("GET", "/v1/analytics/clv?limit=3", e.marketer(), nil).must(t, 200).JSON(t)
		items := top["items"].([]any)
		if len(items) != 3 || top["next_cursor"] == nil ||
			items[0].(map[string]any)["clv"].(float64) < items[2].(map[string]any)["clv"].(float64) {
			t.Errorf("clv list %v", top)
		}
	})
}
