package console_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/jobs/demo"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// TestBrowserExperienceAndCLV loads the full demo (feedback, redemptions,
// jobs run at load) and checks that the CX and lifetime-value pages draw
// their charts with data at once and show what the analytics answer, and
// that the dashboard shows the points liability once points can pay.
func TestBrowserExperienceAndCLV(t *testing.T) {
	needBrowser(t)
	e := newEnv(t, loyalty.SQLite)
	ctx := context.Background()
	sum, err := demo.Load(ctx, e.store, loyalty.DemoOptions{Members: 40, Seed: 7, Now: e.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Feedback == 0 || sum.Redemptions == 0 || sum.Payments == 0 {
		t.Fatalf("demo %+v", sum)
	}
	// The demo lets points pay; until they can again, there is no value
	// to put on them.
	off := loyalty.PointsPayment{PointsPerUnit: decimal.NewFromInt(50), MinPoints: 500, StepPoints: 500, MaxShare: decimal.NewFromInt(1)}
	if _, err := e.svc.UpdateProgram(ctx, loyalty.ProgramPatch{PointsPayment: &off}); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, e.serve())
	b.signIn(e.token(loyalty.RoleMarketer, "mk-1"))
	drawn := func(id string) bool {
		return eval[bool](b, fmt.Sprintf(`(() => {
			const c = Chart.getChart(document.getElementById(%q));
			return !!c && c.data.datasets[0].data.some(v => v !== null && v !== 0) && c.width > 0;
		})()`, id))
	}
	// The dashboard's segment and churn charts have data at once, and the
	// redemption-rate line is not flat.
	b.waitFor(`typeof Chart !== "undefined" && document.querySelectorAll("canvas").length === 4`)
	for _, id := range []string{"chart-segments", "chart-churn"} {
		if !drawn(id) {
			t.Errorf("dashboard chart %s has no data", id)
		}
	}
	if !eval[bool](b, `Chart.getChart(document.getElementById("chart-points")).data.datasets[2].data.some(v => v > 0)`) {
		t.Errorf("the redemption-rate line is flat at 0")
	}
	if got := b.text("#kpi-liability"); got != "—" {
		t.Errorf("liability before points can pay: %q", got)
	}

	b.open("/console/cx", "Customer experience")
	b.waitFor(`typeof Chart !== "undefined" && !!Chart.getChart(document.getElementById("chart-cx-stores"))`)
	for _, id := range []string{"chart-cx", "chart-cx-stores"} {
		if !drawn(id) {
			t.Errorf("chart %s is not drawn with data", id)
		}
	}
	loc := time.UTC
	if p, err := e.svc.Program(ctx); err == nil {
		loc = p.Location()
	}
	today := e.clock.Now().In(loc)
	rng := jobs.DayRange{From: time.Date(today.Year(), today.Month()-11, 1, 0, 0, 0, 0, loc),
		To: time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, loc), Loc: loc}
	all, err := e.runner.CX(ctx, jobs.CXQuery{Range: &rng})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.text("#kpi-nps"), all[0].NPS.Score.String(); got != want {
		t.Errorf("NPS shown %s, the API says %s", got, want)
	}
	if got, want := b.text("#kpi-csat"), all[0].CSAT.Average.String(); got != want {
		t.Errorf("CSAT shown %s, the API says %s", got, want)
	}
	if n := eval[int](b, `document.querySelectorAll("#store-categories tbody tr").length`); n < 2 {
		t.Errorf("store-categories table has %d rows", n)
	}
	b.shoot("cx")

	b.open("/console/clv", "Lifetime value")
	b.waitFor(`typeof Chart !== "undefined" && !!Chart.getChart(document.getElementById("chart-clv"))`)
	if !drawn("chart-clv") {
		t.Errorf("the CLV chart is not drawn with data")
	}
	top, err := e.runner.ClvList(ctx, loyalty.Page{Limit: 10})
	if err != nil || len(top.Items) == 0 {
		t.Fatalf("clv list %v %v", top, err)
	}
	if first := b.text("#clv-top tbody tr td a"); first != top.Items[0].MemberID {
		t.Errorf("top member shown %s, the API says %s", first, top.Items[0].MemberID)
	}
	b.shoot("clv")

	// Once points can pay, the dashboard values the outstanding points.
	pay := loyalty.PointsPayment{Enabled: true, PointsPerUnit: decimal.NewFromInt(50), MinPoints: 500, StepPoints: 500, MaxShare: decimal.NewFromInt(1)}
	if _, err := e.svc.UpdateProgram(ctx, loyalty.ProgramPatch{PointsPayment: &pay}); err != nil {
		t.Fatal(err)
	}
	b.open("/console/", "Dashboard")
	s, err := e.runner.Summary(ctx, rng)
	if err != nil || s.Liability == nil {
		t.Fatalf("summary %v %v", s.Liability, err)
	}
	got := b.text("#kpi-liability")
	shown, err := decimal.NewFromString(strings.ReplaceAll(strings.TrimSuffix(got, " USD"), ",", ""))
	if want := s.Liability.String(); err != nil || shown.Shift(2).String() != want {
		t.Errorf("liability shown %q, the API says %s minor units", got, want)
	}
	b.shoot("dashboard-liability")
	b.checkConsole()
}
