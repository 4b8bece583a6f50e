package mle

import (
	"math"
	"runtime"
	"slices"
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

// TestSample takes about SampleRows rows whatever their order, the same
// ones, and every row when there are few.
func TestSample(t *testing.T) {
	key := func(r int) [3]uint64 { return [3]uint64{uint64(r)} }
	few := []int{3, 1, 2}
	if got := Sample(few, key); len(got) != len(few) {
		t.Errorf("%d rows: sampled %d", len(few), len(got))
	}
	rows := make([]int, 10*SampleRows)
	for i := range rows {
		rows[i] = i
	}
	a := Sample(rows, key)
	if n := len(a); n < SampleRows*9/10 || n > SampleRows*11/10 {
		t.Errorf("%d rows: sampled %d, want about %d", len(rows), n, SampleRows)
	}
	reversed := slices.Clone(rows)
	slices.Reverse(reversed)
	b := Sample(reversed, key)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		t.Error("the sample depends on the rows' order")
	}
	// Spread over the rows: as many from the first half as the second.
	var low int
	for _, r := range a {
		if r < len(rows)/2 {
			low++
		}
	}
	if d := low - (len(a) - low); d < -len(a)/20 || d > len(a)/20 {
		t.Errorf("%d of %d sampled rows from the first half", low, len(a))
	}
}

// TestCached computes each point once, value and gradient together.
func TestCached(t *testing.T) {
	calls := 0
	f, grad := Cached(1, func(g, x []float64) float64 {
		calls++
		g[0] = 2 * x[0]
		return x[0] * x[0]
	})
	g := make([]float64, 1)
	x := []float64{3}
	if v := f(x); v != 9 {
		t.Errorf("f(3) = %g", v)
	}
	grad(g, x)
	if g[0] != 6 || calls != 1 {
		t.Errorf("gradient %g after %d passes, want 6 after 1", g[0], calls)
	}
	x[0] = 4 // the optimiser's slice, changed in place
	if v := f(x); v != 16 || calls != 2 {
		t.Errorf("f(4) = %g after %d passes, want 16 after 2", v, calls)
	}
}

// TestSplitLeavesACore: a likelihood's parts take every core but one, the
// requests', and cover the rows once, in order.
func TestSplitLeavesACore(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	rows := make([]int, 100000)
	for i := range rows {
		rows[i] = i
	}
	for _, c := range []struct{ cores, rows, parts int }{{1, 100000, 1}, {2, 100000, 1}, {4, 100000, 3}, {8, 100000, 6}, {8, 30000, 2}, {8, 100, 1}} {
		runtime.GOMAXPROCS(c.cores)
		parts := Split(rows[:c.rows])
		if len(parts) != c.parts {
			t.Errorf("%d rows on %d cores: %d parts, want %d", c.rows, c.cores, len(parts), c.parts)
		}
		next := 0
		for _, p := range parts {
			for _, r := range p {
				if r != next {
					t.Fatalf("%d rows on %d cores: row %d where %d was due", c.rows, c.cores, r, next)
				}
				next++
			}
		}
		if next != c.rows {
			t.Errorf("%d rows on %d cores: the parts hold %d", c.rows, c.cores, next)
		}
	}
}
