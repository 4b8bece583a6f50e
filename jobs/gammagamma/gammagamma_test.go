package gammagamma

import (
	"bufio"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
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
