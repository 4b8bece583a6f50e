// Package bgnbd is the BG/NBD model of Fader, Hardie and Lee (2005),
// "Counting your customers the easy way": purchases while alive follow a
// Poisson process whose rate is Gamma(r, α) across customers, and after
// each purchase a customer drops out with a probability that is Beta(a, b)
// across customers. Fit estimates (r, α, a, b) by maximum likelihood.
package bgnbd

import (
	"cmp"
	"errors"
	"math"
	"slices"

	"gonum.org/v1/gonum/mathext"

	"github.com/loyalty-engine/loyalty/jobs/mle"
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

// summaries are customers as the likelihood reads them: each distinct
// repeat count and each distinct time (T or TX) once, so that the terms
// that depend on x alone (five log-gammas and a log) or on a time alone (a
// log) are computed once per value and parameter set rather than once per
// customer, and a customer costs a few multiplications, an exp and a
// log1p. Rows are ordered by x and split into parts, summed on their own
// goroutines.
type summaries struct {
	xs, wx []float64 // distinct x and the weight of each
	times  []float64 // distinct T and TX
	rows   []row
	parts  [][]row
}

type row struct {
	x, t, tx int32 // indexes into xs and times
	w        float64
}

func summarise(cs []Customer) *summaries {
	s := &summaries{rows: make([]row, 0, len(cs))}
	xi, ti := map[float64]int32{}, map[float64]int32{}
	time := func(v float64) int32 {
		i, ok := ti[v]
		if !ok {
			i = int32(len(s.times))
			ti[v] = i
			s.times = append(s.times, v)
		}
		return i
	}
	for _, c := range cs {
		if c.Weight == 0 {
			continue
		}
		i, ok := xi[c.X]
		if !ok {
			i = int32(len(s.xs))
			xi[c.X] = i
			s.xs = append(s.xs, c.X)
			s.wx = append(s.wx, 0)
		}
		s.wx[i] += c.Weight
		s.rows = append(s.rows, row{x: i, t: time(c.T), tx: time(c.TX), w: c.Weight})
	}
	slices.SortFunc(s.rows, func(a, b row) int { return cmp.Compare(a.x, b.x) })
	s.parts = mle.Split(s.rows)
	return s
}

// logLikelihood is TotalLogLikelihood over the summaries.
func (s *summaries) logLikelihood(p Params) float64 { return s.gradient(p, nil) }

// gradient returns the log-likelihood over the summaries and, when g is
// not nil, sets g to its gradient in the logs of (r, α, a, b), the
// coordinates the fit moves in. With σ the share of the dropped-out term
// in a customer's likelihood (A₄ / (A₃ + A₄)), a customer adds
// −(1−σ) ln(α+T) − σ ln(α+t_x) to ∂/∂r, −(r+x)((1−σ)/(α+T) + σ/(α+t_x))
// to ∂/∂α, σ/a to ∂/∂a and −σ/(b+x−1) to ∂/∂b; the log-gamma terms add
// digammas once per distinct x.
func (s *summaries) gradient(p Params, g []float64) float64 {
	r, al, a, b := p.R, p.Alpha, p.A, p.B
	lg := func(v float64) float64 { l, _ := math.Lgamma(v); return l }
	grad := g != nil
	nx := len(s.xs)
	rx, la, ib := make([]float64, nx), make([]float64, nx), make([]float64, nx)
	base := -lg(r) + r*math.Log(al) + lg(a+b) - lg(b)
	var ll, dr, dal, da, db float64
	for i, x := range s.xs {
		rx[i] = r + x
		ll += s.wx[i] * (base + lg(r+x) + lg(b+x) - lg(a+b+x))
		la[i] = math.Log(a) - math.Log(b+x-1)
		ib[i] = 1 / (b + x - 1)
		if grad {
			w := s.wx[i]
			dr += w * (mathext.Digamma(r+x) - mathext.Digamma(r) + math.Log(al))
			dal += w * r / al
			da += w * (mathext.Digamma(a+b) - mathext.Digamma(a+b+x))
			db += w * (mathext.Digamma(a+b) + mathext.Digamma(b+x) - mathext.Digamma(b) - mathext.Digamma(a+b+x))
		}
	}
	lt, it := make([]float64, len(s.times)), make([]float64, len(s.times))
	for i, t := range s.times {
		lt[i] = math.Log(al + t)
		it[i] = 1 / (al + t)
	}
	type sums struct{ ll, dr, dal, sa, sb float64 }
	part := func(rows []row) (o sums) {
		for _, c := range rows {
			a3 := -rx[c.x] * lt[c.t]
			if s.xs[c.x] == 0 {
				o.ll += c.w * a3
				if grad {
					o.dr -= c.w * lt[c.t]
					o.dal -= c.w * rx[c.x] * it[c.t]
				}
				continue
			}
			a4 := la[c.x] - rx[c.x]*lt[c.tx]
			hi, lo := a3, a4
			if lo > hi {
				hi, lo = lo, hi
			}
			e := math.Exp(lo - hi)
			o.ll += c.w * (hi + math.Log1p(e))
			if grad {
				// σ = A₄ / (A₃ + A₄), from the exp already taken.
				sg := 1 / (1 + e)
				if a4 < a3 {
					sg = e / (1 + e)
				}
				o.dr -= c.w * ((1-sg)*lt[c.t] + sg*lt[c.tx])
				o.dal -= c.w * rx[c.x] * ((1-sg)*it[c.t] + sg*it[c.tx])
				o.sa += c.w * sg
				o.sb += c.w * sg * ib[c.x]
			}
		}
		return o
	}
	out := mle.Each(s.parts, part)
	for _, o := range out {
		ll += o.ll
		dr += o.dr
		dal += o.dal
		da += o.sa / a
		db -= o.sb
	}
	if grad {
		g[0], g[1], g[2], g[3] = r*dr, al*dal, a*da, b*db
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
	return mle.Objective(4, n, func(g, v []float64) float64 {
		return s.gradient(Params{R: math.Exp(v[0]), Alpha: math.Exp(v[1]), A: math.Exp(v[2]), B: math.Exp(v[3])}, g)
	})
}

// Fit estimates the parameters by maximum likelihood over customers. It
// optimises the log of each parameter (so all stay positive) with
// mle.Minimize on the closed-form gradient. The
// likelihood is read from the customers' summaries (summarise), so its
// cost follows the distinct (x, TX, T) the caller passes, and the parts
// that depend on x or on a time alone are computed once per value.
func Fit(cs []Customer) (Params, float64, error) {
	n := weight(cs)
	if n == 0 {
		return Params{}, 0, ErrNoData
	}
	// Over many distinct summaries the optimum is searched for on a
	// sample of them, and reached on all of them from there (mle.Sample,
	// Polish).
	sample := mle.Sample(cs, func(c Customer) [3]uint64 {
		return [3]uint64{math.Float64bits(c.X), math.Float64bits(c.T), math.Float64bits(c.TX)}
	})
	f, grad := objective(summarise(sample), weight(sample))
	x, _, err := mle.Minimize(4, f, grad)
	if err != nil {
		return Params{}, 0, err
	}
	s := summarise(cs)
	if len(sample) < len(cs) {
		f, grad = objective(s, n)
		x, _ = mle.Polish(x, f, grad)
	}
	p := Params{R: math.Exp(x[0]), Alpha: math.Exp(x[1]), A: math.Exp(x[2]), B: math.Exp(x[3])}
	return p, s.logLikelihood(p), nil
}
