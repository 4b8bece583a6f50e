package console_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestConsolePointsPayment checks the points-as-payment settings page
// (§16): it shows the block with an example worked out by the purchase's
// arithmetic, saves it through the program service (validated, audited,
// only that block written) and shows a refused value as the API's message.
func TestConsolePointsPayment(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		ctx := context.Background()
		admin := loyalty.Principal{Subject: "op", Role: loyalty.RoleAdmin}
		mk := e.client()
		csrf := mk.signIn(e.token(loyalty.RoleMarketer, "mk-pay"))
		form := func(ppu, min, step, share string) url.Values {
			return url.Values{"enabled": {"1"}, "points_per_unit": {ppu}, "min_points": {min}, "step_points": {step},
				"max_share": {share}}
		}

		t.Run("Page", func(t *testing.T) {
			mk.get("/console/").must(t, 200).contains(t, `href="/console/payment"`)
			// The default block: 50 points pay 1.00 USD, minimum and step 500.
			mk.get("/console/payment").must(t, 200).contains(t, `name="points_per_unit" inputmode="decimal" value="50"`,
				`name="min_points"`, `name="step_points"`, `name="max_share"`, "The minimum, and each step",
				"500 points = 10.00 USD", "Paying with points is off")
		})

		t.Run("Save", func(t *testing.T) {
			mk.get("/console/payment").must(t, 200)
			// Another operator renames the program while the form is open:
			// saving the form must not undo it.
			name := "Renamed meanwhile"
			if _, err := e.svc.UpdateProgram(ctx, loyalty.ProgramPatch{Name: &name}); err != nil {
				t.Fatal(err)
			}
			before, _ := e.svc.Program(ctx)
			r := mk.post("/console/payment", csrf, form("12.5", "250", "125", "0.5")).must(t, 303)
			if loc := r.Header.Get("Location"); loc != "/console/payment?msg=payment_saved" {
				t.Errorf("saved, then sent to %q", loc)
			}
			p, err := e.svc.Program(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pp := p.PointsPayment
			if !pp.Enabled || pp.PointsPerUnit.String() != "12.5" || pp.MinPoints != 250 || pp.StepPoints != 125 ||
				pp.MaxShare.String() != "0.5" {
				t.Errorf("points_payment after the form: %+v", pp)
			}
			if p.Name != name || p.Version != before.Version+1 {
				t.Errorf("program after the form: name %q version %d (before %d)", p.Name, p.Version, before.Version)
			}
			mk.get("/console/payment?msg=payment_saved").must(t, 200).contains(t, "Points-as-payment settings saved.",
				`value="12.5"`, "The minimum: <strong class=\"example-line\">250 points = 20.00 USD",
				"Each step: <strong class=\"example-line\">125 points = 10.00 USD", "at most 50% of a basket")

			l, err := e.svc.AuditLog(ctx, admin, loyalty.AuditQuery{ActorSub: "mk-pay"})
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Items) != 1 {
				t.Fatalf("audit rows by mk-pay: %+v, want 1", l.Items)
			}
			a := l.Items[0]
			var change struct{ Old, New map[string]json.RawMessage }
			_ = json.Unmarshal(a.Change, &change)
			if a.Action != "program.update" || a.TargetKind != "program" || a.ActorRole != "marketer" ||
				len(change.New) != 1 || !strings.Contains(string(change.New["points_payment"]), `"points_per_unit":"12.5"`) {
				t.Errorf("audit row %+v change %s", a, a.Change)
			}
		})

		t.Run("ExactDecimal", func(t *testing.T) {
			// 0.333333 points per unit: 1 point pays ⌊100 ÷ 0.333333⌋ = 300
			// cents, and 3 points ⌊300 ÷ 0.333333⌋ = 900 cents; the rate is
			// stored as typed.
			mk.post("/console/payment", csrf, form("0.333333", "0", "1", "1")).must(t, 303)
			p, _ := e.svc.Program(ctx)
			if s := p.PointsPayment.PointsPerUnit.String(); s != "0.333333" {
				t.Errorf("points per unit stored as %s", s)
			}
			mk.get("/console/payment").must(t, 200).contains(t, "Each step (no minimum)",
				"1 points = 3.00 USD")
		})

		t.Run("Invalid", func(t *testing.T) {
			before, _ := e.svc.Program(ctx)
			mk.post("/console/payment", csrf, form("0", "-5", "0", "1.5")).must(t, 422).contains(t, "Please correct the following",
				"<b>Points per unit</b>: must be a decimal above 0 and at most 1000000000 with at most 6 decimals",
				"<b>Step points</b>: must be at least 1", "<b>Min points</b>: must not be negative",
				"<b>Max share</b>: must be a decimal above 0 and at most 1", `value="1.5"`)
			mk.post("/console/payment", csrf, form("0.0000001", "0", "1", "1")).must(t, 422).contains(t,
				"with at most 6 decimals", `value="0.0000001"`)
			mk.post("/console/payment", csrf, form("fifty", "0", "1", "1")).must(t, 422).contains(t,
				"<b>Points per unit</b>: must be a decimal number such as 1.25", `value="fifty"`)
			after, _ := e.svc.Program(ctx)
			if after.Version != before.Version || !after.PointsPayment.PointsPerUnit.Equal(before.PointsPayment.PointsPerUnit) {
				t.Errorf("a refused form changed the program: %+v, was %+v", after.PointsPayment, before.PointsPayment)
			}
			if strings.Contains(e.logs.String(), "console request failed") {
				t.Errorf("a refused form was logged as an internal error: %s", e.logs.String())
			}
		})

		t.Run("Preview", func(t *testing.T) {
			q := url.Values{"enabled": {"1"}, "points_per_unit": {"40"}, "min_points": {"400"}, "step_points": {"200"},
				"max_share": {"1"}}.Encode()
			mk.get("/console/payment/example?"+q, "HX-Request", "true").must(t, 200).contains(t,
				"400 points = 10.00 USD", "200 points = 5.00 USD")
			mk.get("/console/payment/example?points_per_unit=x&step_points=1", "HX-Request", "true").must(t, 200).
				contains(t, `id="example-missing"`)
			if r := mk.get("/console/payment/example?" + q); r.Status != 303 || r.Header.Get("Location") != "/console/payment" {
				t.Errorf("a plain request for the example: %d %q", r.Status, r.Header.Get("Location"))
			}
			p, _ := e.svc.Program(ctx)
			if p.PointsPayment.PointsPerUnit.String() == "40" {
				t.Error("the preview saved the settings")
			}
		})

		t.Run("OtherRolesRefused", func(t *testing.T) {
			before, _ := e.svc.Program(ctx)
			for _, role := range []loyalty.Role{loyalty.RolePOS, loyalty.RoleMember} {
				cl := e.client()
				cl.cookies["loyalty_console"] = e.token(role, "someone")
				cl.get("/console/payment").must(t, 403).contains(t, "a "+string(role)+" token cannot use it")
				token := cl.get("/console/").csrf(t)
				cl.post("/console/payment", token, form("1", "1", "1", "1")).must(t, 403)
				cl.get("/console/payment/example?points_per_unit=1&step_points=1", "HX-Request", "true").must(t, 403)
			}
			after, _ := e.svc.Program(ctx)
			if after.Version != before.Version {
				t.Errorf("another role changed the program: %+v", after.PointsPayment)
			}
		})

		t.Run("CSRF", func(t *testing.T) {
			mk.post("/console/payment", "", form("1", "1", "1", "1")).must(t, 403)
		})
	})
}
