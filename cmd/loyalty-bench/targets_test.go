package main

import (
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// histOf is a histogram holding the given latencies.
func histOf(ds ...time.Duration) *hist {
	h := newHist()
	for _, d := range ds {
		h.record(d)
	}
	return h
}

// windowOf is a soak window whose answers all took d.
func windowOf(n int, d time.Duration) *kindStats {
	ks := &kindStats{hist: newHist(), errors: statusCounts{}}
	for i := 0; i < n; i++ {
		ks.ok++
		ks.hist.record(d)
	}
	return ks
}

// verdicts maps each target of o to its verdict, by the target's first
// words.
func verdicts(t *testing.T, o *dbOutcome) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range o.targets() {
		if r.db != o.label {
			t.Fatalf("row of %s in the targets of %s", r.db, o.label)
		}
		key := r.target
		if i := strings.Index(key, " ≥"); i > 0 && !strings.HasPrefix(key, "history") {
			key = key[:i]
		}
		switch {
		case strings.Contains(key, "p50 of a purchase"):
			key = "history purchase"
		case strings.Contains(key, "p50 of a balance read"):
			key = "history read"
		case strings.HasPrefix(key, "soak"):
			key = "soak"
		case strings.HasPrefix(key, "80/20"):
			key = "mix"
		case strings.HasPrefix(key, "purchases with a webhook"):
			key = "events"
		case strings.HasPrefix(key, "balance stream"):
			key = "stream"
		case strings.HasPrefix(key, "a 500-purchase batch"):
			key = "batch"
		}
		out[key] = r.verdict
	}
	return out
}

func historyOf(smallP, smallR, largeP, largeR time.Duration) *historyResult {
	return &historyResult{classes: []*historyClass{
		{size: 1, purchase: histOf(smallP, smallP, smallP), read: histOf(smallR, smallR, smallR), errors: statusCounts{}},
		{size: 1000, purchase: histOf(smallP, largeP, largeP), read: histOf(smallR, largeR, largeR), errors: statusCounts{}},
		{size: 10000, purchase: histOf(largeP, largeP, largeP), read: histOf(largeR, largeR, largeR), errors: statusCounts{}},
	}}
}

func TestTargetsPostgreSQL(t *testing.T) {
	ms := time.Millisecond
	t.Run("AllMet", func(t *testing.T) {
		o := &dbOutcome{label: "PostgreSQL", clients: 32,
			purchases: &flatResult{tput: 2600, p99: 40 * ms}, reads: &flatResult{tput: 10000, p99: 15 * ms},
			mix: &flatResult{tput: 5000}, barePosting: 5000, pgbenchS: 24000,
			history: historyOf(2*ms, ms/2, 2500*time.Microsecond, 600*time.Microsecond),
			soak:    &soakResult{rate: 2500, asked: 1_500_000, unsent: 20, window: time.Minute, first: windowOf(100, 10*ms), last: windowOf(100, 14*ms)},
			events:  &eventsResult{purchases: 2220, plain: 2600, sse: histOf(120*ms, 300*ms, 900*ms), sseAcross: true}, // 85.4%
			batch:   &batchResult{rounds: 5, single: 400, batched: 2000}}
		for k, v := range verdicts(t, o) {
			if v != verdictMet {
				t.Errorf("%s: %s", k, v)
			}
		}
		if n := len(o.targets()); n != 9 {
			t.Errorf("%d targets, want 9", n)
		}
	})
	t.Run("EachMissed", func(t *testing.T) {
		o := &dbOutcome{label: "PostgreSQL", clients: 32,
			purchases:   &flatResult{tput: 2400, p99: 40 * ms},  // 0.48 of bare
			reads:       &flatResult{tput: 10000, p99: 21 * ms}, // p99 over
			mix:         &flatResult{tput: 5000, errors: 1},
			barePosting: 5000, pgbenchS: 24000,
			history: historyOf(2*ms, ms, 2700*time.Microsecond, 1300*time.Microsecond), // 1.35×, 1.3× exactly
			soak:    &soakResult{rate: 2500, asked: 1_500_000, window: time.Minute, first: windowOf(100, 10*ms), last: windowOf(100, 16*ms)},
			events:  &eventsResult{purchases: 2200, plain: 2600, sse: histOf(120*ms, 300*ms, 1100*ms)}, // 84.6%, p99 over
			batch:   &batchResult{rounds: 5, single: 400, batched: 1999}}
		v := verdicts(t, o)
		want := map[string]string{"purchases": verdictNotMet, "balance reads": verdictNotMet, "mix": verdictNotMet,
			"history purchase": verdictNotMet, "history read": verdictMet, "soak": verdictNotMet, "events": verdictNotMet,
			"stream": verdictNotMet, "batch": verdictNotMet}
		for k, w := range want {
			if v[k] != w {
				t.Errorf("%s: %q, want %q", k, v[k], w)
			}
		}
	})
	t.Run("NothingMeasured", func(t *testing.T) {
		o := &dbOutcome{label: "PostgreSQL", clients: 32, purchases: &flatResult{tput: 9000}} // no reference
		for k, v := range verdicts(t, o) {
			if v != verdictNotMeasured {
				t.Errorf("%s: %s, want not measured", k, v)
			}
		}
	})
}

func TestTargetsSQLite(t *testing.T) {
	o := &dbOutcome{label: "SQLite", clients: 32, purchases: &flatResult{tput: 2100}, reads: &flatResult{tput: 9999},
		mix: &flatResult{tput: 4000}, barePosting: 15000}
	v := verdicts(t, o)
	if v["purchases"] != verdictNotMet { // 2,100/s is 0.14 of 15,000/s
		t.Errorf("purchases: %s", v["purchases"])
	}
	if v["balance reads"] != verdictNotMet {
		t.Errorf("reads: %s", v["balance reads"])
	}
	o.barePosting, o.reads.tput = 14000, 10000
	v = verdicts(t, o)
	if v["purchases"] != verdictMet || v["balance reads"] != verdictMet || v["mix"] != verdictMet {
		t.Errorf("verdicts %v", v)
	}
	o.purchases.tput, o.barePosting = 1990, 5000 // 0.4 of the reference, under 2,000/s
	if v = verdicts(t, o); v["purchases"] != verdictNotMet {
		t.Errorf("1,990/s purchases: %s", v["purchases"])
	}
}

func TestSoakKeepsUp(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name        string
		s           soakResult
		ok          bool
		whyContains string
	}{
		{"Flat", soakResult{asked: 600_000, unsent: 600, first: windowOf(10, 20*ms), last: windowOf(10, 30*ms)}, true, ""},
		{"TooManyUnsent", soakResult{asked: 600_000, unsent: 601, first: windowOf(10, 20*ms), last: windowOf(10, 20*ms)}, false, "unsent"},
		{"P99Grew", soakResult{asked: 600_000, first: windowOf(10, 20*ms), last: windowOf(10, 31*ms)}, false, "p99 grew"},
		{"SubMillisecondNoise", soakResult{asked: 600_000, first: windowOf(10, 400*time.Microsecond), last: windowOf(10, 1300*time.Microsecond)}, true, ""},
		{"Errors", soakResult{asked: 600_000, errors: 1, first: windowOf(10, ms), last: windowOf(10, ms)}, false, "errors"},
		{"NoAnswers", soakResult{asked: 600_000, first: windowOf(10, ms), last: windowOf(0, 0)}, false, "no answers"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ok, why := c.s.keepsUp()
			if ok != c.ok || !strings.Contains(why, c.whyContains) {
				t.Fatalf("keepsUp = %v, %q; want %v with %q", ok, why, c.ok, c.whyContains)
			}
		})
	}
}

func TestHistoryRatios(t *testing.T) {
	ms := time.Millisecond
	h := historyOf(2*ms, ms, 3*ms, 18*ms)
	p, r := h.ratios()
	if p < 1.49 || p > 1.51 || r < 17.9 || r > 18.1 {
		t.Fatalf("ratios %.3f, %.3f; want 1.5 and 18", p, r)
	}
	if lo, hi := h.sizes(); lo != 1 || hi != 10000 {
		t.Fatalf("sizes %d, %d", lo, hi)
	}
	// Unsorted classes: the ratio is still largest over smallest.
	h.classes[0], h.classes[2] = h.classes[2], h.classes[0]
	if p2, _ := h.ratios(); p2 != p {
		t.Fatalf("ratio of unsorted classes %.3f, want %.3f", p2, p)
	}
	h.classes[2].read = newHist()
	if _, r := h.ratios(); r != 0 {
		t.Fatalf("a class without answers gave ratio %v", r)
	}
	var none *historyResult
	if p, r := none.ratios(); p != 0 || r != 0 {
		t.Fatal("no history phase gave ratios")
	}
}

func TestHistoryPlan(t *testing.T) {
	e := &engine{loadN: 50}
	classes := e.historyClasses([]int{1, 4, 10})
	if classes[0].readM != 0 || classes[0].buyM != -1 || classes[1].buyM != 50 || classes[2].buyM != 51 || classes[2].readM != 51 {
		t.Fatalf("members %+v %+v %+v", *classes[0], *classes[1], *classes[2])
	}
	if historyExtra([]int{1, 4, 10}) != 2 {
		t.Fatal("extra members")
	}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	span := 400 * 24 * time.Hour
	items := historyPlan(classes, span, now)
	per := map[int]int{}
	for i, it := range items {
		per[it.m]++
		if i > 0 && it.at.Before(items[i-1].at) {
			t.Fatalf("item %d at %s before the one before it", i, it.at)
		}
		if !it.at.After(now.Add(-span)) || !it.at.Before(now) {
			t.Fatalf("item at %s outside the span", it.at)
		}
	}
	if per[50] != 4 || per[51] != 10 || len(per) != 2 {
		t.Fatalf("purchases by member %v; the one-purchase member gets none", per)
	}
}

func TestParseSizes(t *testing.T) {
	if xs, err := parseSizes("10000, 1,1000"); err != nil || len(xs) != 3 || xs[0] != 1 || xs[2] != 10000 {
		t.Fatalf("%v %v", xs, err)
	}
	for _, off := range []string{"", "0", "off"} {
		if xs, err := parseSizes(off); err != nil || xs != nil {
			t.Fatalf("%q: %v %v", off, xs, err)
		}
	}
	for _, bad := range []string{"1", "1,1", "1,-5", "a,b"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := parseFlags([]string{"-history", "5"}, io.Discard); err == nil {
		t.Error("-history with one size accepted")
	}
	if _, err := parseFlags([]string{"-history-iters", "0"}, io.Discard); err == nil {
		t.Error("-history-iters 0 accepted")
	}
}

func TestSoakWindowsAndClients(t *testing.T) {
	if w := soakWindow(10 * time.Minute); w != time.Minute {
		t.Errorf("window of 10m: %s", w)
	}
	if w := soakWindow(20 * time.Second); w != 5*time.Second {
		t.Errorf("window of 20s: %s", w)
	}
	if n := windowCount(10*time.Minute, time.Minute); n != 10 {
		t.Errorf("windows: %d", n)
	}
	if n := windowCount(61*time.Second, time.Minute); n != 2 {
		t.Errorf("windows of 61s: %d", n)
	}
	if targetClients([]int{16, 32, 64}) != 32 || targetClients([]int{16, 64}) != 16 {
		t.Error("target clients")
	}
}

func TestRunPhaseWindowsAddUp(t *testing.T) {
	var calls atomic.Int64
	mk := func(int) opFunc {
		return func(context.Context) outcome {
			if calls.Add(1)%5 == 0 {
				return outcome{status: 503}
			}
			return outcome{ok: true}
		}
	}
	res := runPhaseWindows(context.Background(), []string{"a"}, 2, 40*time.Millisecond, 2000, mk, 10*time.Millisecond)
	if len(res.windows) != 4 {
		t.Fatalf("%d windows, want 4", len(res.windows))
	}
	var ok, errs int64
	for _, w := range res.windows {
		ok += w.ok
		errs += w.errors.total()
		if w.ok != int64(w.hist.n) {
			t.Fatalf("window ok %d but %d latencies", w.ok, w.hist.n)
		}
	}
	if ok != res.total.ok || errs != res.total.errors.total() {
		t.Fatalf("windows %d ok, %d errors; phase %d, %d", ok, errs, res.total.ok, res.total.errors.total())
	}
}

func TestParseCSQLite(t *testing.T) {
	r, err := parseCSQLite("noise\n" + `{"ok": 30000, "elapsed": 2.0, "errors": 0, "bad": 0, "version": "3.40.1", "p50": 0.001, "p95": 0.002, "p99": 0.004, "max": 0.1}` + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if r.throughput() != 15000 || r.Version != "3.40.1" {
		t.Fatalf("parsed %+v", r)
	}
	row := r.row("SQLite", 32)
	if row.p99 != 4*time.Millisecond || row.tput != 15000 || row.errors != "0" || !strings.Contains(row.workload, "C SQLite") {
		t.Fatalf("row %+v", row)
	}
	if _, err := parseCSQLite(`{"ok": 1, "elapsed": 1, "bad": 3}`); err == nil {
		t.Error("a reference whose books are wrong passed")
	}
	if _, err := parseCSQLite("Traceback (most recent call last):\n"); err == nil {
		t.Error("no result passed")
	}
}

func TestTargetsInMarkdown(t *testing.T) {
	r := &report{date: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), command: "loyalty-bench",
		targets:  []targetRow{{"SQLite", "balance reads ≥ 10,000/s (32 clients)", "7,057/s", verdictNotMet}},
		sections: []string{"### SQLite: cost against history\n\n| history |\n"}}
	md := r.markdown()
	for _, want := range []string{"### Targets of issues 13, 14 and 15", "| SQLite | balance reads ≥ 10,000/s (32 clients) | 7,057/s | **not met** |",
		"### Phases", "### SQLite: cost against history"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Index(md, "Targets of issues 13, 14 and 15") > strings.Index(md, "### Phases") {
		t.Error("the targets come after the phases")
	}
}

func TestSpliceRun(t *testing.T) {
	doc := "# Notes\n\n" + runBegin + "\nold run\n" + runEnd + "\n\n## History\n"
	got, ok := spliceRun(doc, "## Benchmark\nnew run\n")
	if !ok || got != "# Notes\n\n"+runBegin+"\n## Benchmark\nnew run\n"+runEnd+"\n\n## History\n" {
		t.Fatalf("spliced %v:\n%s", ok, got)
	}
	if _, ok := spliceRun("# Notes\n"+runEnd+runBegin, "x"); ok {
		t.Error("markers in the wrong order spliced")
	}
	if _, ok := spliceRun("# no markers", "x"); ok {
		t.Error("a file without markers spliced")
	}
}
