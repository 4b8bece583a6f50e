// Package mle finds the maximum of a smooth log-likelihood in unbounded
// coordinates (the logs of positive parameters), for the churn models'
// fits: a short Nelder–Mead from the origin to get near the optimum
// whatever the data, then BFGS on the closed-form gradient to finish,
// which takes a few dozen passes over the data where Nelder–Mead alone
// takes about a thousand. Should BFGS stop short (a gradient still far
// from zero), a full Nelder–Mead from the best point found carries on, as
// the fits did before the gradients were written out.
package mle

import (
	"math"

	"gonum.org/v1/gonum/optimize"
)

// Minimize returns the point that minimises f, whose gradient grad writes
// into its first argument, starting from the origin of dims coordinates.
// f returns +Inf where the model is undefined.
func Minimize(dims int, f func(x []float64) float64, grad func(g, x []float64)) (x []float64, fx float64, err error) {
	short := &optimize.Settings{MajorIterations: 5000, Converger: &optimize.FunctionConverge{Absolute: 1e-12, Iterations: 10}}
	res, err := optimize.Minimize(optimize.Problem{Func: f}, make([]float64, dims), short, &optimize.NelderMead{})
	if err != nil && res == nil {
		return nil, 0, err
	}
	x, fx = res.X, res.F
	better := func(r *optimize.Result) {
		if r != nil && r.F <= fx && !math.IsNaN(r.F) {
			x, fx = r.X, r.F
		}
	}
	// BFGS ends on a failed line search once it is at the precision of
	// the sums; the result stands then, its gradient near zero.
	r, _ := optimize.Minimize(optimize.Problem{Func: f, Grad: grad}, x, nil, &optimize.BFGS{})
	better(r)
	if converged(x, grad) {
		return x, fx, nil
	}
	full := &optimize.Settings{MajorIterations: 5000, Converger: &optimize.FunctionConverge{Absolute: 1e-12, Iterations: 200}}
	r, _ = optimize.Minimize(optimize.Problem{Func: f}, x, full, &optimize.NelderMead{})
	better(r)
	r, _ = optimize.Minimize(optimize.Problem{Func: f, Grad: grad}, x, nil, &optimize.BFGS{})
	better(r)
	return x, fx, nil
}

// converged reports a gradient of at most 1e-5 in every coordinate at x
// (per customer: the fits divide the log-likelihood by their weight).
func converged(x []float64, grad func(g, x []float64)) bool {
	g := make([]float64, len(x))
	grad(g, x)
	for _, v := range g {
		if !(math.Abs(v) <= 1e-5) {
			return false
		}
	}
	return true
}
