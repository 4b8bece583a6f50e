package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// row is one line of the results table.
type row struct {
	db       string
	workload string
	clients  int
	tput     float64 // successful operations per second
	lat      bool    // false when the percentiles are unknown (pgbench)
	p50, p95 time.Duration
	p99, max time.Duration
	errors   string
	rssKB    int64 // -1 when it does not apply
	flag     string
}

// rowFrom makes a row from a phase's statistics.
func rowFrom(db, workload string, clients int, ks *kindStats, elapsed time.Duration, rssKB int64) row {
	r := row{db: db, workload: workload, clients: clients, lat: ks.hist.n > 0, errors: ks.errors.String(), rssKB: rssKB,
		p50: ks.hist.percentile(50), p95: ks.hist.percentile(95), p99: ks.hist.percentile(99), max: time.Duration(ks.hist.max)}
	if elapsed > 0 {
		r.tput = float64(ks.ok) / elapsed.Seconds()
	}
	return r
}

type machine struct {
	cpu       string
	cores     int
	memKB     int64
	kernel    string
	goVersion string
	pgVersion string // empty when PostgreSQL was not measured
}

func readMachine() machine {
	m := machine{cpu: "unknown", cores: runtime.NumCPU(), memKB: -1, kernel: "unknown", goVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		model, n := parseCPUInfo(string(b))
		if model != "" {
			m.cpu = model
		}
		if n > 0 {
			m.cores = n
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.memKB = statusField(b, "MemTotal")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	return m
}

// parseCPUInfo returns the first "model name" and the number of
// "processor" entries of /proc/cpuinfo.
func parseCPUInfo(text string) (string, int) {
	model, n := "", 0
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			n++
		case "model name":
			if model == "" {
				model = strings.Join(strings.Fields(v), " ")
			}
		}
	}
	return model, n
}

// report is the Markdown section the bench prints and writes.
type report struct {
	date     time.Time
	machine  machine
	command  string
	rows     []row
	targets  []targetRow
	sections []string // Markdown blocks after the table: history, soak windows
	notes    []string
	failures []string
}

// fmtMS renders a duration in milliseconds with three significant figures
// or so: "0.42 ms", "12.3 ms", "250 ms".
func fmtMS(d time.Duration) string {
	us := d.Microseconds()
	switch {
	case us < 10_000:
		v := (us + 5) / 10 // hundredths of a millisecond
		return fmt.Sprintf("%d.%02d ms", v/100, v%100)
	case us < 100_000:
		return fmt.Sprintf("%.1f ms", float64(us)/1000)
	default:
		return fmt.Sprintf("%.0f ms", float64(us)/1000)
	}
}

// fmtRate renders operations per second: "12,345" from 100 up, "45.6" below.
func fmtRate(v float64) string {
	if v < 100 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return groupThousands(int64(v + 0.5))
}

func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtMB(kb int64) string {
	if kb < 0 {
		return "—"
	}
	return strconv.FormatInt((kb+512)/1024, 10)
}

// mdCell escapes a value for a Markdown table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Benchmark — %s\n\n", r.date.UTC().Format("2006-01-02 15:04 MST"))
	m := r.machine
	fmt.Fprintf(&b, "- CPU: %s, %d cores\n", m.cpu, m.cores)
	if m.memKB > 0 {
		fmt.Fprintf(&b, "- RAM: %.1f GiB\n", float64(m.memKB)/(1<<20))
	}
	fmt.Fprintf(&b, "- Kernel: Linux %s\n", m.kernel)
	fmt.Fprintf(&b, "- Go: %s\n", m.goVersion)
	if m.pgVersion != "" {
		fmt.Fprintf(&b, "- PostgreSQL: %s\n", m.pgVersion)
	}
	fmt.Fprintf(&b, "- Date: %s\n\n", r.date.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "```sh\n%s\n```\n\n", r.command)
	if len(r.targets) > 0 {
		b.WriteString("### Targets of issues 13, 14 and 15\n\n| database | target | measured | |\n| --- | --- | --- | --- |\n")
		for _, t := range r.targets {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", mdCell(t.db), mdCell(t.target), mdCell(t.measured), mdCell(t.verdict))
		}
		b.WriteString("\n### Phases\n\n")
	}
	b.WriteString("| database | workload | clients | throughput/s | p50 | p95 | p99 | max | errors | server RSS max (MB) |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n")
	for _, x := range r.rows {
		p50, p95, p99, mx := "—", "—", "—", "—"
		if x.lat {
			p50, p95, p99, mx = fmtMS(x.p50), fmtMS(x.p95), fmtMS(x.p99), fmtMS(x.max)
		}
		rss := fmtMB(x.rssKB)
		if x.flag != "" {
			rss += " " + x.flag
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", mdCell(x.db), mdCell(x.workload), x.clients,
			fmtRate(x.tput), p50, p95, p99, mx, mdCell(x.errors), mdCell(rss))
	}
	b.WriteString("\nThroughput and latency count successful answers (2xx) only; errors lists every other outcome by HTTP " +
		"status, \"transport\" for no answer. Latency under -rate is measured from each request's scheduled send time. " +
		"Rows marked ref are the database alone, measured in the same run at the same concurrency.\n")
	for _, sec := range r.sections {
		b.WriteString("\n" + strings.TrimRight(sec, "\n") + "\n")
	}
	if len(r.notes) > 0 {
		b.WriteString("\n")
		for _, n := range r.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	if len(r.failures) > 0 {
		b.WriteString("\n**FAILED**\n\n")
		for _, f := range r.failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	return b.String()
}

// shellQuote quotes an argument for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, ch := range s {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.ContainsRune("-_./:=,@%+", ch)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// commandLine is how this run was started, as a user would type it.
func commandLine(args []string) string {
	prog := "loyalty-bench"
	if len(args) > 0 && strings.Contains(args[0], string(os.PathSeparator)+"go-build") {
		prog = "go run ./cmd/loyalty-bench"
	}
	parts := []string{prog}
	for _, a := range args[1:] {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// growth compares the last sample of a soak with the baseline taken after
// its first minute and says whether it grew beyond the allowance: both a
// relative and an absolute margin must be passed, so that noise in a small
// number is not flagged.
func growth(baseline, last int64, relPct, abs int64) (bool, string) {
	if baseline < 0 || last < 0 {
		return false, "unknown"
	}
	d := last - baseline
	if d > abs && d*100 > baseline*relPct {
		return true, fmt.Sprintf("grew %+d (%+d%%)", d, pct(d, baseline))
	}
	return false, "steady"
}

func pct(d, base int64) int64 {
	if base == 0 {
		return 0
	}
	return d * 100 / base
}

// The markers between which -out writes the run into an existing file,
// so that docs/BENCH.md keeps its notes around the latest run.
const (
	runBegin = "<!-- loyalty-bench:begin -->"
	runEnd   = "<!-- loyalty-bench:end -->"
)

// spliceRun replaces what lies between the markers in doc with md; false
// when doc has no such pair (then the run replaces the whole file).
func spliceRun(doc, md string) (string, bool) {
	i := strings.Index(doc, runBegin)
	if i < 0 {
		return "", false
	}
	j := strings.Index(doc[i:], runEnd)
	if j < 0 {
		return "", false
	}
	j += i
	return doc[:i+len(runBegin)] + "\n" + strings.TrimRight(md, "\n") + "\n" + doc[j:], true
}
