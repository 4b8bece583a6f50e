package console

import (
	"net/http"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// ---- Points as payment (§16)

type paymentData struct {
	F       paymentForm
	Example paymentExample
}

// paymentForm is the points_payment block as its inputs show it: the
// decimals as typed, never through a float.
type paymentForm struct {
	Enabled                                        bool
	PointsPerUnit, MinPoints, StepPoints, MaxShare string
}

func paymentFormOf(pp loyalty.PointsPayment) paymentForm {
	return paymentForm{Enabled: pp.Enabled, PointsPerUnit: pp.PointsPerUnit.String(), MinPoints: strconv.FormatInt(pp.MinPoints, 10),
		StepPoints: strconv.FormatInt(pp.StepPoints, 10), MaxShare: pp.MaxShare.String()}
}

func submittedPayment(f *form) paymentForm {
	return paymentForm{Enabled: f.checked("enabled"), PointsPerUnit: f.str("points_per_unit"), MinPoints: f.str("min_points"),
		StepPoints: f.str("step_points"), MaxShare: f.str("max_share")}
}

// readPayment reads the form into the block it replaces whole; a blank
// field is the zero value, which the service's validation names.
func readPayment(f *form) loyalty.PointsPayment {
	pp := loyalty.PointsPayment{Enabled: f.checked("enabled")}
	if d := f.decimal("points_per_unit"); d != nil {
		pp.PointsPerUnit = *d
	}
	if n := f.int("min_points"); n != nil {
		pp.MinPoints = *n
	}
	if n := f.int("step_points"); n != nil {
		pp.StepPoints = *n
	}
	if d := f.decimal("max_share"); d != nil {
		pp.MaxShare = *d
	}
	return pp
}

// paymentExample is what the settings pay at the till, worked out by the
// purchase's own arithmetic (PointsPayment.PaymentAmount): "500 points =
// 10.00 USD" for the minimum and for one step.
type paymentExample struct {
	Lines    []exampleLine
	MaxShare string // "50%", or empty for the whole basket
	Enabled  bool
	Missing  bool // the settings cannot pay anything yet
}

type exampleLine struct {
	Label  string
	Points int64
	Amount string
}

func examplePayment(pp loyalty.PointsPayment, p *loyalty.Program) paymentExample {
	out := paymentExample{Enabled: pp.Enabled}
	if !pp.PointsPerUnit.IsPositive() || pp.StepPoints < 1 || pp.MinPoints < 0 {
		out.Missing = true
		return out
	}
	exp := exponent(p)
	line := func(label string, points int64) exampleLine {
		l := exampleLine{Label: label, Points: points}
		if a := pp.PaymentAmount(points, exp); a <= loyalty.MaxTotal {
			l.Amount = money(a, p)
		} else {
			l.Amount = "more than any basket"
		}
		return l
	}
	switch {
	case pp.MinPoints == pp.StepPoints:
		out.Lines = append(out.Lines, line("The minimum, and each step", pp.StepPoints))
	case pp.MinPoints > 0:
		out.Lines = append(out.Lines, line("The minimum", pp.MinPoints), line("Each step", pp.StepPoints))
	default:
		out.Lines = append(out.Lines, line("Each step (no minimum)", pp.StepPoints))
	}
	if pp.MaxShare.IsPositive() && pp.MaxShare.LessThan(decimal.NewFromInt(1)) {
		out.MaxShare = pp.MaxShare.Shift(2).String() + "%"
	}
	return out
}

func (h *handler) paymentPage(c *fiber.Ctx) error {
	v := h.page(c, "payment", "Points as payment", nil)
	d := &paymentData{}
	if v.Program != nil {
		d.F = paymentFormOf(v.Program.PointsPayment)
		d.Example = examplePayment(v.Program.PointsPayment, v.Program)
	}
	v.Data = d
	return h.render(c, http.StatusOK, "payment", v)
}

// savePayment replaces the points_payment block through the API's service,
// which validates it, writes only the columns that changed and audits it.
func (h *handler) savePayment(c *fiber.Ctx) error {
	v := h.page(c, "payment", "Points as payment", nil)
	f := newForm(c)
	pp := readPayment(f)
	err := f.err()
	if err == nil {
		_, err = h.Loyalty.UpdateProgram(c.UserContext(), loyalty.ProgramPatch{PointsPayment: &pp})
	}
	if err != nil {
		d := &paymentData{F: submittedPayment(f)}
		if f.err() == nil {
			d.Example = examplePayment(pp, v.Program)
		} else {
			d.Example = paymentExample{Enabled: pp.Enabled, Missing: true}
		}
		v.Data = d
		return h.fail(c, "payment", v, err)
	}
	return redirect(c, Prefix+"/payment?msg=payment_saved")
}

// paymentPreview answers the page's htmx request, sent as the operator
// types, with the example of the values in the form; it saves nothing.
func (h *handler) paymentPreview(c *fiber.Ctx) error {
	if !isHTMX(c) || c.Get("HX-Boosted") == "true" {
		return redirect(c, Prefix+"/payment")
	}
	f := newForm(c)
	pp := readPayment(f)
	if f.err() != nil {
		return h.fragment(c, http.StatusOK, "payment", "example", paymentExample{Enabled: pp.Enabled, Missing: true})
	}
	p, err := h.Loyalty.Program(c.UserContext())
	if err != nil {
		return h.fragment(c, http.StatusOK, "payment", "example-error", titleOf(loyalty.ErrorOf(err)))
	}
	return h.fragment(c, http.StatusOK, "payment", "example", examplePayment(pp, p))
}
