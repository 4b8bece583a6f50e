package console_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// TestBrowserPointsPayment opens the points-as-payment page from the
// navigation, types a new rate and sees the example follow it before
// saving, sees a refused share as a message on the page, then saves, and
// checks the program took the block as typed.
func TestBrowserPointsPayment(t *testing.T) {
	needBrowser(t)
	e := newEnv(t, loyalty.SQLite)
	b := newBrowser(t, e.serve())
	b.signIn(e.token(loyalty.RoleMarketer, "mk-1"))
	b.run(chromedp.Click(chromedp.CSS(`.nav a[href="/console/payment"]`)))
	b.waitTitle("Points as payment")
	if got := b.text("#payment-example .example-line"); got != "500 points = 10.00 USD" {
		t.Errorf("example shown %q", got)
	}

	// Typing a rate asks the server for the example again (htmx), without
	// saving anything.
	rate := `#payment-form [name=points_per_unit]`
	b.run(chromedp.Clear(chromedp.CSS(rate)), chromedp.SendKeys(chromedp.CSS(rate), "12.5"))
	b.waitFor(`document.querySelector("#payment-example .example-line") &&
		document.querySelector("#payment-example .example-line").textContent.includes("500 points = 40.00 USD")`)
	if p, _ := e.svc.Program(context.Background()); p.PointsPayment.PointsPerUnit.String() != "50" {
		t.Errorf("typing changed the program: %+v", p.PointsPayment)
	}
	b.run(chromedp.Click(chromedp.CSS(`#payment-form [name=enabled]`)))
	b.fill("#payment-form", map[string]string{"max_share": "2"})
	b.run(chromedp.Click(chromedp.ID("save-payment")))
	b.waitFor(`document.querySelector("#problem")`)
	if p := b.text("#problem"); !strings.Contains(p, "Max share") || !strings.Contains(p, "at most 1") {
		t.Errorf("problem shown: %q", p)
	}
	if v := eval[string](b, `document.querySelector("#payment-form [name=points_per_unit]").value`); v != "12.5" {
		t.Errorf("the refused form shows rate %q, want what was typed", v)
	}
	b.shoot("payment-error")

	// The example gains a line for the share, which moves the button down:
	// click it only once the example has followed the field.
	b.fill("#payment-form", map[string]string{"max_share": "0.5"})
	b.waitFor(`document.querySelector("#payment-example") &&
		document.querySelector("#payment-example").textContent.includes("at most 50%")`)
	b.run(chromedp.Click(chromedp.ID("save-payment")))
	b.waitFor(`document.querySelector("#flash") && document.querySelector("#flash").textContent.includes("Points-as-payment")`)
	if loc := eval[string](b, `location.pathname`); loc != "/console/payment" {
		t.Errorf("after saving the address is %s", loc)
	}
	if got := b.text("#payment-example"); !strings.Contains(got, "500 points = 40.00 USD") || !strings.Contains(got, "at most 50%") {
		t.Errorf("example after saving %q", got)
	}
	p, err := e.svc.Program(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if pp := p.PointsPayment; !pp.Enabled || pp.PointsPerUnit.String() != "12.5" || pp.MaxShare.String() != "0.5" ||
		pp.MinPoints != 500 || pp.StepPoints != 500 {
		t.Errorf("points_payment after saving: %+v", pp)
	}
	b.shoot("payment")
	b.checkConsole()
}
