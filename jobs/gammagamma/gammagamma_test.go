package gammagamma

import (
	"bufio"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/loyalty-engine/loyalty/jobs/mle"
)

// TestFitCDNOW fits the CDNOW sample's repeat spend as Fader and Hardie
// (2013) do: purchases up to 1997-09-30, same-day purchases merged, the
// first purchase day excluded. Their table: p = 6.25, q = 3.74, γ = 15.44,
// LL = −4,055.92 over 946 customers.
func TestFitCDNOW(t *testing.T) {
	f, err := os.Open("../../../shared/data/cdnow/CDNOW_sample.txt")
	if err != nil {
		t.Skipf("shared data absent: %v", err)
	}
	defer f.Close()
	days := map[string]map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 5 || fs[2] > "19970930" {
			continue
		}
		v, err := strconv.ParseFloat(fs[4], 64)
		if err != nil {
			t.Fatal(err)
		}
		if days[fs[0]] == nil {
			days[fs[0]] = map[string]float64{}
		}
		days[fs[0]][fs[2]] += v
	}
	var cs []Customer
	for _, d := range days {
		keys := make([]string, 0, len(d))
		for k := range d {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var sum float64
		for _, k := range keys[1:] {
			sum += d[k]
		}
		if x := float64(len(keys) - 1); x > 0 {
			cs = append(cs, Customer{X: x, MX: sum / x, Weight: 1})
		}
	}
	m, ll, n, err := Fit(cs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("p=%.4f q=%.4f γ=%.4f LL=%.2f n=%v", m.P, m.Q, m.Gamma, ll, n)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p", m.P, 6.25}, {"q", m.Q, 3.74}, {"gamma", m.Gamma, 15.44}, {"LL", ll, -4055.92}, {"n", n, 946}} {
		if math.Abs(c.got-c.want) > 0.01*math.Abs(c.want) {
			t.Errorf("%s = %.4f, paper %.4f", c.name, c.got, c.want)
		}
	}
}

func TestExpectedSpend(t *testing.T) {
	m := Params{P: 6, Q: 4, Gamma: 15}
	// (15 + 2·30)·6 / (12 + 3) = 30
	if got := m.ExpectedSpend(2, 30); math.Abs(got-30) > 1e-12 {
		t.Errorf("E[M|2,30] = %v, want 30", got)
	}
	// x = 0: the population mean pγ/(q−1) = 30.
	if got := m.ExpectedSpend(0, 0); math.Abs(got-30) > 1e-12 {
		t.Errorf("E[M|0] = %v, want 30", got)
	}
	if _, _, _, err := Fit(nil); err != ErrNoData {
		t.Errorf("Fit(nil) = %v", err)
	}
}

// spenders draws n repeat customers: x repeat transactions, their mean of
// values Gamma(p, ν) around ν ~ Gamma(q, γ) (a mean of x Gamma(p, ν)
// values is Gamma(px, xν)), in cents as the churn job reads them.
func spenders(m Params, n int, seed uint64) []Customer {
	rng := rand.New(rand.NewPCG(seed, 2))
	cs := make([]Customer, n)
	for i := range cs {
		x := float64(1 + rng.IntN(20))
		nu := distuv.Gamma{Alpha: m.Q, Beta: m.Gamma, Src: rng}.Rand()
		mx := math.Round(distuv.Gamma{Alpha: m.P * x, Beta: x * nu, Src: rng}.Rand()*100) / 100
		cs[i] = Customer{X: x, MX: max(mx, 0.01), Weight: float64(1 + rng.IntN(3))}
	}
	return cs
}

// TestSummariesMatchTotal holds the likelihood the fit reads, over
// summaries split across goroutines, to the customer-by-customer sum.
func TestSummariesMatchTotal(t *testing.T) {
	// Three cores: two for the parts, one left to the requests (mle.Split).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	cs := spenders(Params{P: 6, Q: 4, Gamma: 15}, 60000, 1)
	s := summarise(cs)
	if len(s.parts) < 2 {
		t.Fatalf("%d customers in %d part(s)", len(s.rows), len(s.parts))
	}
	for _, m := range []Params{{P: 6, Q: 4, Gamma: 15}, {P: 0.5, Q: 20, Gamma: 1}, {P: 30, Q: 1.1, Gamma: 200}} {
		got, want := s.logLikelihood(m), m.TotalLogLikelihood(cs)
		if math.Abs(got-want) > 1e-9*math.Abs(want) {
			t.Errorf("%+v: summaries %.9f, customers %.9f", m, got, want)
		}
	}
}

// TestFitRecoversSimulated fits customers drawn from known parameters.
func TestFitRecoversSimulated(t *testing.T) {
	want := Params{P: 6, Q: 4, Gamma: 15}
	m, _, _, err := Fit(spenders(want, 40000, 2))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("p=%.4f q=%.4f γ=%.4f", m.P, m.Q, m.Gamma)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p", m.P, want.P}, {"q", m.Q, want.Q}, {"gamma", m.Gamma, want.Gamma}} {
		if math.Abs(c.got-c.want) > 0.25*c.want {
			t.Errorf("%s = %.4f, simulated with %.4f", c.name, c.got, c.want)
		}
	}
}

// BenchmarkFit fits 90,000 repeat customers, about the jobs benchmark's
// smaller run.
func BenchmarkFit(b *testing.B) {
	cs := spenders(Params{P: 6, Q: 4, Gamma: 15}, 90000, 3)
	for b.Loop() {
		if _, _, _, err := Fit(cs); err != nil {
			b.Fatal(err)
		}
	}
}

// TestGradientMatchesDifferences holds the closed-form gradient to
// central differences of the log-likelihood, in the fit's coordinates.
func TestGradientMatchesDifferences(t *testing.T) {
	s := summarise(spenders(Params{P: 6, Q: 4, Gamma: 15}, 60000, 4))
	for _, v := range [][]float64{{1.8, 1.4, 2.7}, {-0.7, 3, 0}, {3.4, 0.1, 5.3}} {
		f := func(v []float64) float64 {
			return s.logLikelihood(Params{P: math.Exp(v[0]), Q: math.Exp(v[1]), Gamma: math.Exp(v[2])})
		}
		want := make([]float64, 3)
		fd.Gradient(want, f, v, &fd.Settings{Formula: fd.Central, Step: 1e-5})
		got := make([]float64, 3)
		s.gradient(Params{P: math.Exp(v[0]), Q: math.Exp(v[1]), Gamma: math.Exp(v[2])}, got)
		for i := range got {
			if math.Abs(got[i]-want[i]) > 1e-5*math.Max(1, math.Abs(want[i])) {
				t.Errorf("at %v: ∂%d = %.8g, differences %.8g", v, i, got[i], want[i])
			}
		}
	}
}

// TestSampledFitIsTheFullFit holds a fit over more customers than
// mle.SampleRows, searched on a sample and finished on all of them, to the
// fit made on all of them from the start.
func TestSampledFitIsTheFullFit(t *testing.T) {
	cs := spenders(Params{P: 6, Q: 4, Gamma: 15}, 60000, 4)
	if len(cs) <= mle.SampleRows {
		t.Fatalf("%d customers: not enough for a sampled fit", len(cs))
	}
	got, gotLL, _, err := Fit(cs)
	if err != nil {
		t.Fatal(err)
	}
	f, grad := objective(summarise(cs), weight(cs))
	x, _, err := mle.Minimize(3, f, grad)
	if err != nil {
		t.Fatal(err)
	}
	want := Params{P: math.Exp(x[0]), Q: math.Exp(x[1]), Gamma: math.Exp(x[2])}
	wantLL := summarise(cs).logLikelihood(want)
	t.Logf("sampled %+v (%.6f), full %+v (%.6f)", got, gotLL, want, wantLL)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p", got.P, want.P}, {"q", got.Q, want.Q}, {"gamma", got.Gamma, want.Gamma}} {
		if math.Abs(c.got-c.want) > 1e-3*c.want {
			t.Errorf("%s = %.6f, the full fit's %.6f", c.name, c.got, c.want)
		}
	}
	if gotLL < wantLL-1e-6*math.Abs(wantLL) {
		t.Errorf("log-likelihood %.6f, the full fit's %.6f", gotLL, wantLL)
	}
}
