package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestBucketsCoverValuesWithinPrecision(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 127, 255, 256, 257, 300, 511, 512, 1000, 4095, 4096, 123456, 999_999_999, 1 << 40, 1<<62 + 12345} {
		i := bucketOf(v)
		if i < prev {
			t.Fatalf("bucketOf(%d) = %d, below the bucket of a smaller value (%d)", v, i, prev)
		}
		prev = i
		hi := bucketHigh(i)
		if hi < v {
			t.Fatalf("bucket %d of %d ends at %d, below the value", i, v, hi)
		}
		if v < histExact && hi != v {
			t.Fatalf("value %d below %d is not exact: bucket ends at %d", v, histExact, hi)
		}
		if hi-v > v/128 {
			t.Fatalf("bucket of %d ends at %d: wider than 1/128 of the value", v, hi)
		}
		if i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, beyond %d buckets", v, i, histBuckets)
		}
	}
}

func TestPercentiles(t *testing.T) {
	h := newHist()
	if h.percentile(50) != 0 {
		t.Fatal("an empty histogram has no percentile")
	}
	for v := 1; v <= 100; v++ { // exact range: 1..100 ns
		h.record(time.Duration(v))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{50, 50}, {95, 95}, {99, 99}, {100, 100}, {1, 1}, {0.5, 1}} {
		if got := h.percentile(c.q); got != c.want {
			t.Errorf("p%v of 1..100 = %d, want %d", c.q, got, c.want)
		}
	}
	if h.n != 100 || h.min != 1 || h.max != 100 {
		t.Fatalf("n, min, max = %d, %d, %d", h.n, h.min, h.max)
	}

	// Milliseconds, merged from two halves: within the 1/128 precision.
	a, b := newHist(), newHist()
	for v := 1; v <= 1000; v++ {
		d := time.Duration(v) * time.Millisecond
		if v%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(b)
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{50, 500 * time.Millisecond}, {95, 950 * time.Millisecond}, {99, 990 * time.Millisecond}, {100, time.Second}} {
		got := a.percentile(c.q)
		if got < c.want || got-c.want > c.want/128 {
			t.Errorf("p%v = %v, want %v (+1/128 at most)", c.q, got, c.want)
		}
	}
	if a.percentile(100) != time.Second {
		t.Errorf("max = %v, want exactly 1s", a.percentile(100))
	}
	if a.mean() != 500500*time.Microsecond {
		t.Errorf("mean = %v", a.mean())
	}

	// One slow outlier among fast values shows in p99 only when it is
	// more than 1% of them.
	o := newHist()
	for i := 0; i < 99; i++ {
		o.record(time.Millisecond)
	}
	o.record(time.Second)
	if p := o.percentile(99); p > 2*time.Millisecond {
		t.Errorf("p99 of 99 fast and 1 slow = %v, want about 1ms", p)
	}
	if p := o.percentile(99.5); p != time.Second {
		t.Errorf("p99.5 = %v, want the outlier", p)
	}
}

func TestStatusCounts(t *testing.T) {
	s := statusCounts{}
	if s.String() != "0" {
		t.Fatalf("empty = %q", s.String())
	}
	s.addStatus(503)
	s.add("transport", 2)
	s.addStatus(409)
	s.addStatus(409)
	o := statusCounts{}
	o.addStatus(409)
	o.addStatus(1000)
	o.add("failed", 0) // zero is not an error
	s.merge(o)
	if got, want := s.String(), "409×3, 503×1, 1000×1, transport×2"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	if s.total() != 7 {
		t.Fatalf("total = %d", s.total())
	}
}

func TestRunPhaseCountsEveryOutcome(t *testing.T) {
	var calls atomic.Int64
	mk := func(client int) opFunc {
		return func(context.Context) outcome {
			n := calls.Add(1)
			time.Sleep(time.Millisecond)
			switch n % 4 {
			case 0:
				return outcome{status: 409, kind: 1}
			case 1:
				return outcome{err: errors.New("reset")}
			default:
				return outcome{ok: true, status: 201, kind: int(n % 2)}
			}
		}
	}
	res := runPhase(context.Background(), []string{"a", "b"}, 3, 30*time.Millisecond, 0, mk)
	got := res.total.ok + res.total.errors.total()
	if got != calls.Load() {
		t.Fatalf("counted %d outcomes, the ops ran %d times", got, calls.Load())
	}
	if res.total.ok != int64(res.total.hist.n) {
		t.Fatalf("ok %d but %d latencies", res.total.ok, res.total.hist.n)
	}
	if res.kinds[0].ok+res.kinds[1].ok != res.total.ok {
		t.Fatal("kinds do not add up to the total")
	}
	if res.kinds[1].errors["409"] != res.total.errors["409"] || res.kinds[0].errors["transport"] != res.total.errors["transport"] {
		t.Fatalf("errors filed under the wrong kind: %v %v", res.kinds[0].errors, res.kinds[1].errors)
	}
	if res.lastErr == nil && res.total.errors["transport"] > 0 {
		t.Fatal("a transport error was not kept for the log")
	}
}

const pgbench15 = `pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 38742
number of failed transactions: 0 (0.000%)
latency average = 0.619 ms
initial connection time = 12.345 ms
tps = 12914.367062 (without initial connection time)
`

const pgbench12 = `transaction type: <builtin: select only>
number of transactions actually processed: 1000/1000
latency average = 1.250 ms
tps = 790.5 (including connections establishing)
tps = 800.25 (excluding connections establishing)
`

func TestParsePgbench(t *testing.T) {
	r, err := parsePgbench(pgbench15)
	if err != nil {
		t.Fatal(err)
	}
	if r.tps != 12914.367062 || r.processed != 38742 || r.failed != 0 || r.latency != 619*time.Microsecond {
		t.Fatalf("parsed %+v", r)
	}
	r, err = parsePgbench(pgbench12)
	if err != nil {
		t.Fatal(err)
	}
	if r.tps != 800.25 || r.processed != 1000 || r.latency != 1250*time.Microsecond {
		t.Fatalf("parsed %+v, want the tps excluding connections", r)
	}
	if _, err := parsePgbench("pgbench: error: connection to server failed\n"); err == nil {
		t.Fatal("output without tps parsed")
	}
}

func TestMarkdown(t *testing.T) {
	h := newHist()
	for _, d := range []time.Duration{1200 * time.Microsecond, 3 * time.Millisecond, 45 * time.Millisecond, 250 * time.Millisecond} {
		h.record(d)
	}
	errs := statusCounts{}
	errs.addStatus(409)
	ks := &kindStats{name: "purchases", ok: 4, hist: h, errors: errs}
	rep := &report{
		date:    time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		machine: machine{cpu: "Test CPU", cores: 2, memKB: 24 << 20, kernel: "6.1", goVersion: "go1.x", pgVersion: "15.2"},
		command: "go run ./cmd/loyalty-bench -db sqlite",
		rows: []row{
			rowFrom("SQLite", "purchases | odd", 16, ks, 2*time.Second, 40*1024+700),
			{db: "PostgreSQL", workload: "ref: pgbench -S", clients: 16, tput: 12345.6, errors: "0", rssKB: -1, flag: ""},
		},
		notes:    []string{"a note"},
		failures: []string{"SQLite: 1 wrong balance"},
	}
	md := rep.markdown()
	for _, want := range []string{
		"## Benchmark — 2026-03-01 12:00 UTC\n",
		"- CPU: Test CPU, 2 cores\n", "- RAM: 24.0 GiB\n", "- PostgreSQL: 15.2\n",
		"```sh\ngo run ./cmd/loyalty-bench -db sqlite\n```\n",
		"| database | workload | clients | throughput/s | p50 | p95 | p99 | max | errors | server RSS max (MB) |\n",
		// p50 is the top of 3 ms's bucket (within 1/128); no percentile exceeds the maximum.
		"| SQLite | purchases \\| odd | 16 | 2.0 | 3.01 ms | 250 ms | 250 ms | 250 ms | 409×1 | 41 |\n",
		"| PostgreSQL | ref: pgbench -S | 16 | 12,346 | — | — | — | — | 0 | — |\n",
		"- a note\n", "**FAILED**", "- SQLite: 1 wrong balance\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	lines := strings.Split(md, "\n")
	cols := -1
	for _, l := range lines {
		if strings.HasPrefix(l, "| ") {
			n := strings.Count(strings.ReplaceAll(l, `\|`, ""), "|")
			if cols >= 0 && n != cols {
				t.Errorf("table line with %d separators, others have %d: %q", n, cols, l)
			}
			cols = n
		}
	}
}

func TestFormatting(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{{0, "0.00 ms"}, {420 * time.Microsecond, "0.42 ms"}, {1234567 * time.Nanosecond, "1.23 ms"},
		{9999 * time.Microsecond, "10.00 ms"}, {12345 * time.Microsecond, "12.3 ms"}, {250 * time.Millisecond, "250 ms"}} {
		if got := fmtMS(c.d); got != c.want {
			t.Errorf("fmtMS(%v) = %q, want %q", c.d, got, c.want)
		}
	}
	for _, c := range []struct {
		v    float64
		want string
	}{{45.64, "45.6"}, {100, "100"}, {1234.5, "1,235"}, {1234567, "1,234,567"}} {
		if got := fmtRate(c.v); got != c.want {
			t.Errorf("fmtRate(%v) = %q, want %q", c.v, got, c.want)
		}
	}
	if fmtMB(-1) != "—" || fmtMB(1536) != "2" {
		t.Errorf("fmtMB: %q %q", fmtMB(-1), fmtMB(1536))
	}
}

func TestIntField(t *testing.T) {
	body := []byte(`{"id":"p","note":"points_earned","points_earned" : -42,"breakdown":[{"points":7}]}`)
	if v, ok := intField(body, "points_earned"); !ok || v != -42 {
		t.Fatalf("points_earned = %d %v", v, ok)
	}
	if _, ok := intField(body, "points_spent"); ok {
		t.Fatal("found a field that is not there")
	}
	if _, ok := intField([]byte(`{"points_spent":null}`), "points_spent"); ok {
		t.Fatal("null read as a number")
	}
}

func TestParsers(t *testing.T) {
	prom := "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines_extra 3\ngo_goroutines 29\n"
	if g := parseGoroutines([]byte(prom)); g != 29 {
		t.Errorf("go_goroutines = %d", g)
	}
	if g := parseGoroutines([]byte("go_threads 8\n")); g != -1 {
		t.Errorf("missing go_goroutines = %d", g)
	}
	status := "Name:\tloyalty\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n"
	if v := statusField([]byte(status), "VmRSS"); v != 40960 {
		t.Errorf("VmRSS = %d", v)
	}
	if v := statusField([]byte(status), "VmSwap"); v != -1 {
		t.Errorf("VmSwap = %d", v)
	}
	model, n := parseCPUInfo("processor\t: 0\nmodel name\t: AMD  EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n")
	if model != "AMD EPYC 7B13" || n != 2 {
		t.Errorf("cpuinfo: %q %d", model, n)
	}
}

func TestGrowth(t *testing.T) {
	if grew, _ := growth(40_000, 41_000, 20, 10_240); grew {
		t.Error("1 MB on 40 MB flagged")
	}
	if grew, _ := growth(40_000, 80_000, 20, 10_240); !grew {
		t.Error("a doubling not flagged")
	}
	if grew, _ := growth(200_000, 215_000, 20, 10_240); grew {
		t.Error("7.5% flagged")
	}
	if grew, _ := growth(30, 45, 10, 10); !grew {
		t.Error("15 more goroutines on 30 not flagged")
	}
	if grew, v := growth(-1, 45, 10, 10); grew || v != "unknown" {
		t.Error("an unknown baseline flagged")
	}
}

func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"-db", "sqlite, PostgreSQL", "-concurrency", "16,64", "-duration", "3s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.dbs, ",") != "sqlite,postgres" || len(o.conc) != 2 || o.conc[0] != 16 || o.conc[1] != 64 || o.duration != 3*time.Second {
		t.Fatalf("parsed %+v", o)
	}
	for _, bad := range [][]string{{"-db", "mysql"}, {"-concurrency", "0"}, {"-concurrency", "a,b"}, {"-rate", "-5"},
		{"-duration", "0s"}, {"-members", "0"}, {"stray"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if got := commandLine([]string{"/usr/local/bin/loyalty-bench", "-db", "sqlite", "-out", "my file.md"}); got !=
		"loyalty-bench -db sqlite -out 'my file.md'" {
		t.Errorf("commandLine = %q", got)
	}
	if got := commandLine([]string{"/tmp/go-build1234/b001/exe/loyalty-bench", "-db", "sqlite"}); got !=
		"go run ./cmd/loyalty-bench -db sqlite" {
		t.Errorf("commandLine under go run = %q", got)
	}
}
