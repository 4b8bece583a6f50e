// Package gammagamma is the Gamma-Gamma model of monetary value of Fader
// and Hardie (2013), "The Gamma-Gamma Model of Monetary Value": a customer's
// transaction values are Gamma(p, ν) around its own mean, and ν is
// Gamma(q, γ) across customers. Fit estimates (p, q, γ) by maximum
// likelihood from each repeat customer's number of transactions x and mean
// transaction value m_x.
package gammagamma

import (
	"errors"
	"math"

	"gonum.org/v1/gonum/mathext"

	"github.com/loyalty-engine/loyalty/jobs/mle"
)

// Customer is one customer's summary: X repeat transactions of mean value
// MX. Weight is how many customers share the summary.
type Customer struct {
	X      float64
	MX     float64
	Weight float64
}

// Params are the model's parameters.
type Params struct {
	P, Q, Gamma float64
}

// LogLikelihood is one customer's log-likelihood under the parameters:
// ln Γ(px+q) − ln Γ(px) − ln Γ(q) + q ln γ + (px−1) ln m_x + px ln x − (px+q) ln(γ + x m_x).
func (m Params) LogLikelihood(c Customer) float64 {
	p, q, g, x, mx := m.P, m.Q, m.Gamma, c.X, c.MX
	lg := func(v float64) float64 { l, _ := math.Lgamma(v); return l }
	return lg(p*x+q) - lg(p*x) - lg(q) + q*math.Log(g) + (p*x-1)*math.Log(mx) + p*x*math.Log(x) - (p*x+q)*math.Log(g+x*mx)
}

// TotalLogLikelihood sums the weighted log-likelihood of customers.
func (m Params) TotalLogLikelihood(cs []Customer) float64 {
	var ll float64
	for _, c := range cs {
		ll += c.Weight * m.LogLikelihood(c)
	}
	return ll
}

// ExpectedSpend is the expected value of a transaction of a customer with
// x transactions of mean value mx (x = 0: a customer seen only once, whose
// expectation is the population mean pγ/(q−1)):
// E[M | x, m_x] = (γ + x m_x) p / (px + q − 1).
func (m Params) ExpectedSpend(x, mx float64) float64 {
	return (m.Gamma + x*mx) * m.P / (m.P*x + m.Q - 1)
}

// ErrNoData reports a fit without customers.
var ErrNoData = errors.New("gammagamma: no repeat customers to fit")

// summaries are customers as the likelihood reads them: the terms that
// depend on x alone (three log-gammas and a log) once per distinct x and
// parameter set, ln m_x once per customer for the whole fit, so that a
// customer costs one log per evaluation. Rows are split into parts,
// summed on their own goroutines.
type summaries struct {
	xs, wx []float64 // distinct x and the weight of each
	wlmx   []float64 // per distinct x, the weighted sum of ln m_x
	rows   []row
	parts  [][]row
}

type row struct {
	x      int32 // index into xs
	xmx, w float64
}

func summarise(cs []Customer) *summaries {
	s := &summaries{rows: make([]row, 0, len(cs))}
	xi := map[float64]int32{}
	for _, c := range cs {
		i, ok := xi[c.X]
		if !ok {
			i = int32(len(s.xs))
			xi[c.X] = i
			s.xs = append(s.xs, c.X)
			s.wx = append(s.wx, 0)
			s.wlmx = append(s.wlmx, 0)
		}
		s.wx[i] += c.Weight
		s.wlmx[i] += c.Weight * math.Log(c.MX)
		s.rows = append(s.rows, row{x: i, xmx: c.X * c.MX, w: c.Weight})
	}
	s.parts = mle.Split(s.rows)
	return s
}

// logLikelihood is TotalLogLikelihood over the summaries.
func (s *summaries) logLikelihood(m Params) float64 { return s.gradient(m, nil) }

// gradient returns the log-likelihood over the summaries and, when g is
// not nil, sets g to its gradient in the logs of (p, q, γ), the
// coordinates the fit moves in. A customer's only term that is not a
// function of x alone is −(px+q) ln(γ + x m_x); its sums per distinct x,
// with those of 1/(γ + x m_x), give the rest:
//
//	∂/∂p = Σ x (ψ(px+q) − ψ(px) + ln x + ln m_x − ln(γ + x m_x))
//	∂/∂q = Σ ψ(px+q) − ψ(q) + ln γ − ln(γ + x m_x)
//	∂/∂γ = Σ q/γ − (px+q)/(γ + x m_x)
func (s *summaries) gradient(m Params, g []float64) float64 {
	p, q, gm := m.P, m.Q, m.Gamma
	lg := func(v float64) float64 { l, _ := math.Lgamma(v); return l }
	nx := len(s.xs)
	type sums struct{ ln, inv []float64 }
	part := func(rows []row) sums {
		o := sums{make([]float64, nx), make([]float64, nx)}
		for _, c := range rows {
			d := gm + c.xmx
			o.ln[c.x] += c.w * math.Log(d)
			o.inv[c.x] += c.w / d
		}
		return o
	}
	out := mle.Each(s.parts, part)
	var ll, dp, dq, dg float64
	for i, x := range s.xs {
		var ln, inv float64
		for _, o := range out {
			ln += o.ln[i]
			inv += o.inv[i]
		}
		w, px := s.wx[i], p*x
		ll += w*(lg(px+q)-lg(px)-lg(q)+q*math.Log(gm)+px*math.Log(x)) + (px-1)*s.wlmx[i] - (px+q)*ln
		if g != nil {
			dp += x*(w*(mathext.Digamma(px+q)-mathext.Digamma(px)+math.Log(x))+s.wlmx[i]) - x*ln
			dq += w*(mathext.Digamma(px+q)-mathext.Digamma(q)+math.Log(gm)) - ln
			dg += w*q/gm - (px+q)*inv
		}
	}
	if g != nil {
		g[0], g[1], g[2] = p*dp, q*dq, gm*dg
	}
	return ll
}

// weight is the customers' total weight.
func weight(cs []Customer) float64 {
	return mle.Weight(cs, func(c Customer) float64 { return c.Weight })
}

// objective is the negative log-likelihood per customer over the
// summaries s of customers of total weight n, in the logs of the
// parameters, and its gradient, for mle.
func objective(s *summaries, n float64) (func(v []float64) float64, func(g, v []float64)) {
	return mle.Objective(3, n, func(g, v []float64) float64 {
		return s.gradient(Params{P: math.Exp(v[0]), Q: math.Exp(v[1]), Gamma: math.Exp(v[2])}, g)
	})
}

// Fit estimates the parameters by maximum likelihood over customers with
// X > 0 and MX > 0 (others carry no information on spend and are left
// out). It optimises the log of each parameter (so all stay positive) with
// mle.Minimize on the closed-form gradient. The result
// counts the customers fitted. The likelihood is read from the customers'
// summaries (summarise), so the parts that depend on x alone are computed
// once per value.
func Fit(cs []Customer) (Params, float64, float64, error) {
	use := make([]Customer, 0, len(cs))
	var n float64
	for _, c := range cs {
		if c.X > 0 && c.MX > 0 && c.Weight > 0 {
			use = append(use, c)
			n += c.Weight
		}
	}
	if n == 0 {
		return Params{}, 0, 0, ErrNoData
	}
	// Over many customers the optimum is searched for on a sample of
	// them, and reached on all of them from there (mle.Sample, Polish).
	sample := mle.Sample(use, func(c Customer) [3]uint64 { return [3]uint64{math.Float64bits(c.X), math.Float64bits(c.MX)} })
	f, grad := objective(summarise(sample), weight(sample))
	x, _, err := mle.Minimize(3, f, grad)
	if err != nil {
		return Params{}, 0, 0, err
	}
	s := summarise(use)
	if len(sample) < len(use) {
		f, grad = objective(s, n)
		x, _ = mle.Polish(x, f, grad)
	}
	m := Params{P: math.Exp(x[0]), Q: math.Exp(x[1]), Gamma: math.Exp(x[2])}
	return m, s.logLikelihood(m), n, nil
}
