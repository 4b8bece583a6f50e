package mle

import (
	"math"
	"testing"
)

// TestMinimize finds Rosenbrock's minimum at (1, 1), also when the
// gradient it is given points uphill: BFGS then fails, and what
// Nelder–Mead found stands.
func TestMinimize(t *testing.T) {
	rosen := func(x []float64) float64 { return 100*math.Pow(x[1]-x[0]*x[0], 2) + math.Pow(1-x[0], 2) }
	grad := func(g, x []float64) {
		g[0] = -400*x[0]*(x[1]-x[0]*x[0]) - 2*(1-x[0])
		g[1] = 200 * (x[1] - x[0]*x[0])
	}
	for _, c := range []struct {
		name string
		grad func(g, x []float64)
	}{{"gradient", grad}, {"gradient pointing uphill", func(g, x []float64) { grad(g, x); g[0], g[1] = -g[0], -g[1] }}} {
		x, f, err := Minimize(2, rosen, c.grad)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if math.Abs(x[0]-1) > 1e-3 || math.Abs(x[1]-1) > 1e-3 || f > 1e-6 {
			t.Errorf("%s: minimum at %v (%g), want (1, 1)", c.name, x, f)
		}
	}
}
