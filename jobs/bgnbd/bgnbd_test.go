package bgnbd

import (
	"encoding/csv"
	"math"
	"os"
	"strconv"
	"testing"
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
