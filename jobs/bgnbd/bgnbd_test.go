package bgnbd

import (
	"encoding/csv"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"testing"

	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/loyalty-engine/loyalty/jobs/mle"
)

// The paper's estimates for the CDNOW sample, in weeks.
var paper = Params{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426}

const paperLL = -9582.4

func within(got, want, tol float64) bool { return math.Abs(got-want) <= tol*math.Abs(want) }

// TestFitCDNOWSummary fits the sample as summarised by the lifetimes
// library (frequency, recency, T in weeks at 1997-09-30).
func TestFitCDNOWSummary(t *testing.T) {
	f, err := os.Open("../../../shared/data/cdnow/cdnow_customers_summary.csv")
	if err != nil {
		t.Skipf("shared data absent: %v", err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var cs []Customer
	for _, r := range rows[1:] {
		x, _ := strconv.ParseFloat(r[1], 64)
		tx, _ := strconv.ParseFloat(r[2], 64)
		tt, _ := strconv.ParseFloat(r[3], 64)
		cs = append(cs, Customer{X: x, TX: tx, T: tt, Weight: 1})
	}
	p, ll, err := Fit(cs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("r=%.4f alpha=%.4f a=%.4f b=%.4f LL=%.2f", p.R, p.Alpha, p.A, p.B, ll)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"r", p.R, paper.R}, {"alpha", p.Alpha, paper.Alpha}, {"a", p.A, paper.A}, {"b", p.B, paper.B}, {"LL", ll, paperLL}} {
		if !within(c.got, c.want, 0.01) {
			t.Errorf("%s = %.4f, paper %.4f", c.name, c.got, c.want)
		}
	}
}

func TestPAliveOrdering(t *testing.T) {
	// Same history length; one bought recently, one long ago.
	recent := Customer{X: 10, TX: 38, T: 39}
	lapsed := Customer{X: 10, TX: 10, T: 39}
	if !(paper.PAlive(recent) > 0.9 && paper.PAlive(lapsed) < paper.PAlive(recent)) {
		t.Fatalf("P(alive) recent %.3f lapsed %.3f", paper.PAlive(recent), paper.PAlive(lapsed))
	}
	if paper.PAlive(Customer{X: 0, T: 39}) != 1 {
		t.Fatal("no repeat purchase: alive by the model")
	}
	// The worked example of Fader, Hardie and Lee: x=2, t_x=30.43, T=38.86
	// expects 1.226 purchases in the next 39 weeks.
	if got := paper.ExpectedPurchases(Customer{X: 2, TX: 30.43, T: 38.86}, 39); !within(got, 1.226, 0.005) {
		t.Fatalf("expected purchases %.4f, want 1.226", got)
	}
}

// simulate draws n customers from the model with parameters p, each
// observed for T weeks (whole days, up to a year) since its first
// purchase, purchases falling on whole days as a store's do, and merges
// those with equal (x, TX, T) as the churn job's query does.
func simulate(p Params, n int, seed uint64) []Customer {
	rng := rand.New(rand.NewPCG(seed, 1))
	type key struct{ x, tx, t int }
	count := map[key]float64{}
	for range n {
		lambda := distuv.Gamma{Alpha: p.R, Beta: p.Alpha, Src: rng}.Rand()
		drop := distuv.Beta{Alpha: p.A, Beta: p.B, Src: rng}.Rand()
		tDays := 1 + rng.IntN(365)
		x, last, day := 0, 0, 0.0
		for {
			day += rng.ExpFloat64() / lambda * 7
			if int(day) > tDays {
				break
			}
			if int(day) > last {
				x, last = x+1, int(day)
			}
			if rng.Float64() < drop {
				break
			}
		}
		count[key{x, last, tDays}]++
	}
	var cs []Customer
	for k, w := range count {
		cs = append(cs, Customer{X: float64(k.x), TX: float64(k.tx) / 7, T: float64(k.t) / 7, Weight: w})
	}
	return cs
}

// TestSummariesMatchTotal holds the likelihood the fit reads, over
// summaries split across goroutines, to the customer-by-customer sum.
func TestSummariesMatchTotal(t *testing.T) {
	// Three cores: two for the parts, one left to the requests (mle.Split).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	cs := simulate(Params{R: 0.5, Alpha: 5, A: 0.8, B: 2.5}, 60000, 1)
	s := summarise(cs)
	if len(s.parts) < 2 {
		t.Fatalf("%d customers in %d part(s)", len(s.rows), len(s.parts))
	}
	for _, p := range []Params{{R: 0.5, Alpha: 5, A: 0.8, B: 2.5}, {R: 2, Alpha: 0.3, A: 3, B: 0.6}, {R: 0.01, Alpha: 40, A: 0.05, B: 9}} {
		got, want := s.logLikelihood(p), p.TotalLogLikelihood(cs)
		if math.Abs(got-want) > 1e-9*math.Abs(want) {
			t.Errorf("%+v: summaries %.9f, customers %.9f", p, got, want)
		}
	}
}

// TestFitRecoversSimulated fits customers drawn from known parameters.
func TestFitRecoversSimulated(t *testing.T) {
	want := Params{R: 0.5, Alpha: 5, A: 0.8, B: 2.5}
	p, _, err := Fit(simulate(want, 40000, 2))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("r=%.4f alpha=%.4f a=%.4f b=%.4f", p.R, p.Alpha, p.A, p.B)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"r", p.R, want.R}, {"alpha", p.Alpha, want.Alpha}, {"a", p.A, want.A}, {"b", p.B, want.B}} {
		if !within(c.got, c.want, 0.25) {
			t.Errorf("%s = %.4f, simulated with %.4f", c.name, c.got, c.want)
		}
	}
}

// BenchmarkFit fits a base the size of the jobs benchmark's smaller run:
// 100,000 customers over a year in whole days.
func BenchmarkFit(b *testing.B) {
	cs := simulate(Params{R: 0.5, Alpha: 5, A: 0.8, B: 2.5}, 100000, 3)
	b.Logf("%d distinct (x, TX, T)", len(cs))
	for b.Loop() {
		if _, _, err := Fit(cs); err != nil {
			b.Fatal(err)
		}
	}
}

// TestGradientMatchesDifferences holds the closed-form gradient to
// central differences of the log-likelihood, in the fit's coordinates.
func TestGradientMatchesDifferences(t *testing.T) {
	s := summarise(simulate(Params{R: 0.5, Alpha: 5, A: 0.8, B: 2.5}, 60000, 4))
	for _, v := range [][]float64{{-0.7, 1.6, -0.2, 0.9}, {0.7, -1.2, 1.1, -0.5}, {-4.6, 3.7, -3, 2.2}} {
		f := func(v []float64) float64 {
			return s.logLikelihood(Params{R: math.Exp(v[0]), Alpha: math.Exp(v[1]), A: math.Exp(v[2]), B: math.Exp(v[3])})
		}
		want := make([]float64, 4)
		fd.Gradient(want, f, v, &fd.Settings{Formula: fd.Central, Step: 1e-5})
		got := make([]float64, 4)
		s.gradient(Params{R: math.Exp(v[0]), Alpha: math.Exp(v[1]), A: math.Exp(v[2]), B: math.Exp(v[3])}, got)
		for i := range got {
			if math.Abs(got[i]-want[i]) > 1e-5*math.Max(1, math.Abs(want[i])) {
				t.Errorf("at %v: ∂%d = %.8g, differences %.8g", v, i, got[i], want[i])
			}
		}
	}
}

// TestSampledFitIsTheFullFit holds a fit over more distinct summaries than
// mle.SampleRows, searched on a sample and finished on all of them, to the
// fit made on all of them from the start.
func TestSampledFitIsTheFullFit(t *testing.T) {
	cs := simulate(Params{R: 0.5, Alpha: 5, A: 0.8, B: 2.5}, 100000, 5)
	if len(cs) <= mle.SampleRows {
		t.Fatalf("%d distinct summaries: not enough for a sampled fit", len(cs))
	}
	got, gotLL, err := Fit(cs)
	if err != nil {
		t.Fatal(err)
	}
	f, grad := objective(summarise(cs), weight(cs))
	x, _, err := mle.Minimize(4, f, grad)
	if err != nil {
		t.Fatal(err)
	}
	want := Params{R: math.Exp(x[0]), Alpha: math.Exp(x[1]), A: math.Exp(x[2]), B: math.Exp(x[3])}
	wantLL := summarise(cs).logLikelihood(want)
	t.Logf("sampled %+v (%.6f), full %+v (%.6f)", got, gotLL, want, wantLL)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"r", got.R, want.R}, {"alpha", got.Alpha, want.Alpha}, {"a", got.A, want.A}, {"b", got.B, want.B}} {
		if !within(c.got, c.want, 1e-3) {
			t.Errorf("%s = %.6f, the full fit's %.6f", c.name, c.got, c.want)
		}
	}
	if gotLL < wantLL-1e-6*math.Abs(wantLL) {
		t.Errorf("log-likelihood %.6f, the full fit's %.6f", gotLL, wantLL)
	}
}
