// Package bgnbd is the BG/NBD model of Fader, Hardie and Lee (2005),
// "Counting your customers the easy way": purchases while alive follow a
// Poisson process whose rate is Gamma(r, α) across customers, and after
// each purchase a customer drops out with a probability that is Beta(a, b)
// across customers. Fit estimates (r, α, a, b) by maximum likelihood.
package bgnbd

import (
	"errors"
	"math"

	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/optimize"
)

// Customer is one customer's summary: X repeat purchases, the last at TX,
// observed for T since the first purchase (TX and T in the model's time
// unit). Weight is how many customers share the summary.
type Customer struct {
	X      float64
	TX     float64
	T      float64
	Weight float64
}

// Params are the model's parameters.
type Params struct {
	R, Alpha, A, B float64
}

// LogLikelihood is one customer's log-likelihood under p.
func (p Params) LogLikelihood(c Customer) float64 {
	r, al, a, b := p.R, p.Alpha, p.A, p.B
	x := c.X
	lg := func(v float64) float64 { l, _ := math.Lgamma(v); return l }
	a1 := lg(r+x) - lg(r) + r*math.Log(al)
	a2 := lg(a+b) + lg(b+x) - lg(b) - lg(a+b+x)
	a3 := -(r + x) * math.Log(al+c.T)
	if x == 0 {
		return a1 + a2 + a3
	}
	a4 := math.Log(a) - math.Log(b+x-1) - (r+x)*math.Log(al+c.TX)
	hi, lo := math.Max(a3, a4), math.Min(a3, a4)
	return a1 + a2 + hi + math.Log1p(math.Exp(lo-hi))
}

// TotalLogLikelihood sums the weighted log-likelihood of customers.
func (p Params) TotalLogLikelihood(cs []Customer) float64 {
	var ll float64
	for _, c := range cs {
		ll += c.Weight * p.LogLikelihood(c)
	}
	return ll
}

// PAlive is the probability that a customer with summary c is still alive
// at T. A customer without a repeat purchase cannot have dropped out under
// the model (dropout follows a purchase), so it is 1 there.
func (p Params) PAlive(c Customer) float64 {
	if c.X == 0 {
		return 1
	}
	lr := math.Log(p.A) - math.Log(p.B+c.X-1) + (p.R+c.X)*(math.Log(p.Alpha+c.T)-math.Log(p.Alpha+c.TX))
	return 1 / (1 + math.Exp(lr))
}

// ExpectedPurchases is the expected number of purchases of a customer with
// summary c in the next t (eq. 10 of the paper), using the Gauss
// hypergeometric function 2F1.
func (p Params) ExpectedPurchases(c Customer, t float64) float64 {
	r, al, a, b, x := p.R, p.Alpha, p.A, p.B, c.X
	z := t / (al + c.T + t)
	h := hyp2f1(r+x, b+x, a+b+x-1, z)
	num := (a + b + x - 1) / (a - 1) * (1 - math.Pow((al+c.T)/(al+c.T+t), r+x)*h)
	den := 1.0
	if x > 0 {
		den += a / (b + x - 1) * math.Pow((al+c.T)/(al+c.TX), r+x)
	}
	v := num / den
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0
	}
	return v
}

// hyp2f1 sums the Gauss hypergeometric series, which converges for |z| < 1.
func hyp2f1(a, b, c, z float64) float64 {
	sum, term := 1.0, 1.0
	for n := 0.0; n < 10000; n++ {
		term *= (a + n) * (b + n) / ((c + n) * (n + 1)) * z
		sum += term
		if math.Abs(term) < 1e-14*math.Abs(sum) {
			break
		}
	}
	return sum
}

// ErrNoData reports a fit without customers.
var ErrNoData = errors.New("bgnbd: no customers to fit")

// Fit estimates the parameters by maximum likelihood over customers. It
// optimises the log of each parameter (so all stay positive) with
// Nelder–Mead, then polishes with BFGS on numerical gradients.
func Fit(cs []Customer) (Params, float64, error) {
	var n float64
	for _, c := range cs {
		n += c.Weight
	}
	if n == 0 {
		return Params{}, 0, ErrNoData
	}
	negLL := func(v []float64) float64 {
		p := Params{R: math.Exp(v[0]), Alpha: math.Exp(v[1]), A: math.Exp(v[2]), B: math.Exp(v[3])}
		ll := p.TotalLogLikelihood(cs)
		if math.IsNaN(ll) || math.IsInf(ll, 0) {
			return math.Inf(1)
		}
		return -ll / n
	}
	// The gradient by central differences (gonum's fd), for the
	// quasi-Newton polish after Nelder–Mead.
	grad := func(g, v []float64) {
		fd.Gradient(g, negLL, v, &fd.Settings{Formula: fd.Central, Step: 1e-6})
	}
	start := []float64{0, 0, 0, 0}
	res, err := optimize.Minimize(optimize.Problem{Func: negLL}, start,
		&optimize.Settings{MajorIterations: 5000, Converger: &optimize.FunctionConverge{Absolute: 1e-12, Iterations: 200}},
		&optimize.NelderMead{})
	if err != nil && res == nil {
		return Params{}, 0, err
	}
	x := res.X
	if res2, err2 := optimize.Minimize(optimize.Problem{Func: negLL, Grad: grad}, x, nil, &optimize.BFGS{}); err2 == nil || (res2 != nil && res2.F <= res.F) {
		if res2 != nil && res2.F <= res.F {
			x = res2.X
		}
	}
	p := Params{R: math.Exp(x[0]), Alpha: math.Exp(x[1]), A: math.Exp(x[2]), B: math.Exp(x[3])}
	return p, p.TotalLogLikelihood(cs), nil
}
