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
	"runtime"
	"sync"

	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/optimize"
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
	s := &summaries{}
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
	n := min(runtime.GOMAXPROCS(0), 1+len(s.rows)/20000)
	for i := 0; i < n; i++ {
		s.parts = append(s.parts, s.rows[i*len(s.rows)/n:(i+1)*len(s.rows)/n])
	}
	return s
}

// logLikelihood is TotalLogLikelihood over the summaries.
func (s *summaries) logLikelihood(m Params) float64 {
	p, q, g := m.P, m.Q, m.Gamma
	lg := func(v float64) float64 { l, _ := math.Lgamma(v); return l }
	pxq := make([]float64, len(s.xs))
	var ll float64
	for i, x := range s.xs {
		pxq[i] = p*x + q
		ll += s.wx[i]*(lg(p*x+q)-lg(p*x)-lg(q)+q*math.Log(g)+p*x*math.Log(x)) + (p*x-1)*s.wlmx[i]
	}
	part := func(rows []row) float64 {
		var sum float64
		for _, c := range rows {
			sum -= c.w * pxq[c.x] * math.Log(g+c.xmx)
		}
		return sum
	}
	if len(s.parts) == 1 {
		return ll + part(s.parts[0])
	}
	sums := make([]float64, len(s.parts))
	var wg sync.WaitGroup
	for i, rows := range s.parts {
		wg.Go(func() { sums[i] = part(rows) })
	}
	wg.Wait()
	for _, v := range sums {
		ll += v
	}
	return ll
}

// Fit estimates the parameters by maximum likelihood over customers with
// X > 0 and MX > 0 (others carry no information on spend and are left
// out). It optimises the log of each parameter (so all stay positive) with
// Nelder–Mead, then polishes with BFGS on numerical gradients. The result
// counts the customers fitted. The likelihood is read from the customers'
// summaries (summarise), so the parts that depend on x alone are computed
// once per value.
func Fit(cs []Customer) (Params, float64, float64, error) {
	var use []Customer
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
	s := summarise(use)
	negLL := func(v []float64) float64 {
		m := Params{P: math.Exp(v[0]), Q: math.Exp(v[1]), Gamma: math.Exp(v[2])}
		ll := s.logLikelihood(m)
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
	start := []float64{0, 0, 0}
	res, err := optimize.Minimize(optimize.Problem{Func: negLL}, start,
		&optimize.Settings{MajorIterations: 5000, Converger: &optimize.FunctionConverge{Absolute: 1e-12, Iterations: 200}},
		&optimize.NelderMead{})
	if err != nil && res == nil {
		return Params{}, 0, 0, err
	}
	x := res.X
	if res2, _ := optimize.Minimize(optimize.Problem{Func: negLL, Grad: grad}, x, nil, &optimize.BFGS{}); res2 != nil && res2.F <= res.F {
		x = res2.X
	}
	m := Params{P: math.Exp(x[0]), Q: math.Exp(x[1]), Gamma: math.Exp(x[2])}
	return m, s.logLikelihood(m), n, nil
}
