package main

import (
	"fmt"
	"strings"
	"time"
)

// The targets of issue 13, checked against one run's figures. The rules
// are pure functions of the figures so that a test can hold them.

// Verdicts of a target.
const (
	verdictMet         = "met"
	verdictNotMet      = "**not met**"
	verdictNotMeasured = "not measured"
)

// Thresholds of issue 13.
const (
	pgPurchaseOfBare    = 0.5
	pgPurchaseP99       = 50 * time.Millisecond
	pgReadOfPgbench     = 0.4
	pgReadP99           = 20 * time.Millisecond
	sqlitePurchaseRate  = 2000.0
	sqlitePurchaseOfC   = 0.15
	sqliteReadRate      = 10000.0
	historyRatioMax     = 1.3
	soakP99Growth       = 1.5
	soakP99Slack        = time.Millisecond
	soakUnsentPerMille  = 1 // requests left unsent, per thousand asked
	defaultTargetClient = 32
)

// flatResult is a flat-out phase as the targets see it.
type flatResult struct {
	tput   float64
	p99    time.Duration
	errors int64
}

// soakResult is a soak as the targets see it.
type soakResult struct {
	rate      float64
	dur       time.Duration
	asked     int64 // requests scheduled over the soak
	answered  int64
	unsent    int64
	errors    int64
	window    time.Duration
	first     *kindStats // the first window, every kind together
	last      *kindStats
	histDelta int64 // purchases the soak added (answered), history growing
}

// keepsUp is the soak's rule: no more than one request in a thousand left
// unsent (a few are always in flight when the clock stops), no errors, and
// the p99 of the last window at most 1.5 times that of the first, or
// within 1 ms of it (a sub-millisecond p99 doubles on one scheduler hiccup).
func (s *soakResult) keepsUp() (bool, string) {
	var why []string
	if s.unsent*1000 > s.asked*soakUnsentPerMille {
		why = append(why, fmt.Sprintf("%s of %s requests left unsent", groupThousands(s.unsent), groupThousands(s.asked)))
	}
	if s.errors > 0 {
		why = append(why, fmt.Sprintf("%s errors", groupThousands(s.errors)))
	}
	if s.first == nil || s.last == nil || s.first.hist.n == 0 || s.last.hist.n == 0 {
		why = append(why, "no answers in the first or last window")
	} else {
		f, l := s.first.hist.percentile(99), s.last.hist.percentile(99)
		if float64(l) > soakP99Growth*float64(f) && l-f > soakP99Slack {
			why = append(why, fmt.Sprintf("p99 grew %s → %s", fmtMS(f), fmtMS(l)))
		}
	}
	return len(why) == 0, strings.Join(why, ", ")
}

// dbOutcome is what one database's run measured, for the targets.
type dbOutcome struct {
	label       string
	clients     int         // the client count the targets read
	purchases   *flatResult // nil when not measured flat out
	reads       *flatResult
	mix         *flatResult
	barePosting float64 // PostgreSQL: the pgx posting; SQLite: C SQLite
	pgbenchS    float64
	history     *historyResult
	soak        *soakResult
	events      *eventsResult // issue 14's phases; nil when skipped
	batch       *batchResult  // issue 15's batch phase; nil when skipped
}

// targetRow is one line of the targets table.
type targetRow struct {
	db, target, measured, verdict string
}

func verdict(ok bool) string {
	if ok {
		return verdictMet
	}
	return verdictNotMet
}

// targets evaluates issue 13's targets for one database.
func (o *dbOutcome) targets() []targetRow {
	var rows []targetRow
	add := func(target, measured, v string) {
		rows = append(rows, targetRow{o.label, target, measured, v})
	}
	none := func(target string) { add(target, "—", verdictNotMeasured) }
	ratio := func(a, b float64) string {
		if b <= 0 {
			return "no reference"
		}
		return fmt.Sprintf("%.2f × %s/s", a/b, fmtRate(b))
	}
	pc := fmt.Sprintf("%d clients", o.clients)
	switch o.label {
	case "PostgreSQL":
		t := fmt.Sprintf("purchases ≥ %.1f × bare posting, p99 ≤ %s (%s)", pgPurchaseOfBare, fmtMS(pgPurchaseP99), pc)
		if p := o.purchases; p != nil && o.barePosting > 0 {
			add(t, fmt.Sprintf("%s/s = %s, p99 %s", fmtRate(p.tput), ratio(p.tput, o.barePosting), fmtMS(p.p99)),
				verdict(p.tput >= pgPurchaseOfBare*o.barePosting && p.p99 <= pgPurchaseP99))
		} else {
			none(t)
		}
		t = fmt.Sprintf("balance reads ≥ %.1f × pgbench -S, p99 ≤ %s (%s)", pgReadOfPgbench, fmtMS(pgReadP99), pc)
		if r := o.reads; r != nil && o.pgbenchS > 0 {
			add(t, fmt.Sprintf("%s/s = %s, p99 %s", fmtRate(r.tput), ratio(r.tput, o.pgbenchS), fmtMS(r.p99)),
				verdict(r.tput >= pgReadOfPgbench*o.pgbenchS && r.p99 <= pgReadP99))
		} else {
			none(t)
		}
	case "SQLite":
		t := fmt.Sprintf("purchases ≥ %s/s and ≥ %.2f × bare C SQLite posting (%s)", fmtRate(sqlitePurchaseRate), sqlitePurchaseOfC, pc)
		if p := o.purchases; p != nil && o.barePosting > 0 {
			add(t, fmt.Sprintf("%s/s = %s", fmtRate(p.tput), ratio(p.tput, o.barePosting)),
				verdict(p.tput >= sqlitePurchaseRate && p.tput >= sqlitePurchaseOfC*o.barePosting))
		} else {
			none(t)
		}
		t = fmt.Sprintf("balance reads ≥ %s/s (%s)", fmtRate(sqliteReadRate), pc)
		if r := o.reads; r != nil {
			add(t, fmt.Sprintf("%s/s, p99 %s", fmtRate(r.tput), fmtMS(r.p99)), verdict(r.tput >= sqliteReadRate))
		} else {
			none(t)
		}
	}
	t := "80/20 mix without errors"
	if m := o.mix; m != nil {
		add(t, fmt.Sprintf("%s/s, %s errors", fmtRate(m.tput), groupThousands(m.errors)), verdict(m.errors == 0))
	} else {
		none(t)
	}
	for _, kind := range []string{"purchase", "balance read"} {
		t := fmt.Sprintf("history: p50 of a %s at the largest history ≤ %.1f × at the smallest", kind, historyRatioMax)
		h := o.history
		if h == nil || len(h.classes) < 2 {
			none(t)
			continue
		}
		rp, rr := h.ratios()
		r := rp
		if kind != "purchase" {
			r = rr
		}
		lo, hi := h.sizes()
		lc, hc := h.class(lo), h.class(hi)
		a, b := lc.purchase, hc.purchase
		if kind != "purchase" {
			a, b = lc.read, hc.read
		}
		if r <= 0 {
			add(t, "no answers", verdictNotMet)
			continue
		}
		add(t, fmt.Sprintf("%s → %s of history: %s → %s, %.2f×", groupThousands(int64(lo)), fmtCount(hi, "purchase"),
			fmtMS(a.percentile(50)), fmtMS(b.percentile(50)), r), verdict(r <= historyRatioMax))
	}
	t = fmt.Sprintf("purchases with a webhook and the NATS sink ≥ %d%% of plain purchases (%s)", int(100*(1-eventsCostMax)), pc)
	if ev := o.events; ev != nil && ev.plain > 0 && ev.purchases > 0 {
		m := fmt.Sprintf("%s/s of %s/s = %d%%", fmtRate(ev.purchases), fmtRate(ev.plain), pctOf(ev.purchases, ev.plain))
		if ev.bound > 0 {
			m += fmt.Sprintf("; the delivery work alone leaves room for %d%%", int(ev.bound*100))
		}
		add(t, m, verdict(ev.purchases >= (1-eventsCostMax)*ev.plain))
	} else {
		none(t)
	}
	t = fmt.Sprintf("a %d-purchase batch ≥ %g× as fast as %d single posts from one till", batchSize, batchOfSingles, batchSize)
	if bt := o.batch; bt != nil && bt.single > 0 {
		add(t, fmt.Sprintf("%s/s vs %s/s = %.1f×, %d not posted", fmtRate(bt.batched), fmtRate(bt.single), bt.batched/bt.single, bt.errors),
			verdict(bt.batched >= batchOfSingles*bt.single && bt.errors == 0))
	} else {
		none(t)
	}
	t = fmt.Sprintf("balance stream: a purchase's balance event within %s, p99", fmtMS(sseLatencyMax))
	if ev := o.events; ev != nil && ev.sse != nil && ev.sse.n > 0 {
		where := "same process"
		if ev.sseAcross {
			where = "another process"
		}
		add(t, fmt.Sprintf("p50 %s, p99 %s (%s)", fmtMS(ev.sse.percentile(50)), fmtMS(ev.sse.percentile(99)), where),
			verdict(ev.sse.percentile(99) <= sseLatencyMax))
	} else {
		none(t)
	}
	t = "soak at half the mix maximum keeps up, p99 flat"
	if s := o.soak; s != nil {
		ok, why := s.keepsUp()
		m := fmt.Sprintf("%s/s asked, %s left unsent, %s errors; p99 %s first → %s last %s", fmtRate(s.rate),
			groupThousands(s.unsent), groupThousands(s.errors), fmtMS(p99Of(s.first)),
			fmtMS(p99Of(s.last)), fmtWindow(s.window))
		if !ok {
			m += " (" + why + ")"
		}
		add(t, m, verdict(ok))
	} else {
		none(t)
	}
	return rows
}

// class is the class of the given size.
func (r *historyResult) class(size int) *historyClass {
	for _, c := range r.classes {
		if c.size == size {
			return c
		}
	}
	return nil
}

func fmtCount(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return groupThousands(int64(n)) + " " + noun + "s"
}

// fmtWindow names a soak window: "minute" for a minute, else its length.
func fmtWindow(w time.Duration) string {
	if w == time.Minute {
		return "minute"
	}
	return w.String() + " window"
}

// targetClients is the client count the targets read: 32 when it was
// measured, else the first.
func targetClients(conc []int) int {
	for _, c := range conc {
		if c == defaultTargetClient {
			return c
		}
	}
	return conc[0]
}

// soakWindow is the length of the soak's windows: a minute, or a quarter
// of a soak shorter than four minutes.
func soakWindow(soak time.Duration) time.Duration {
	if soak >= 4*time.Minute {
		return time.Minute
	}
	return max(soak/4, time.Second)
}

// p99Of is the p99 of a window; 0 when there is none.
func p99Of(ks *kindStats) time.Duration {
	if ks == nil {
		return 0
	}
	return ks.hist.percentile(99)
}

// soakMarkdown is the soak window by window: answered/s, p50, p99, max
// and errors, by scheduled send time.
func soakMarkdown(label string, s *soakResult, windows []*kindStats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s: soak by %s\n\n", label, fmtWindow(s.window))
	b.WriteString("| from | answered/s | p50 | p99 | max | errors |\n| ---: | ---: | ---: | ---: | ---: | --- |\n")
	for i, w := range windows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", time.Duration(i)*s.window, fmtRate(float64(w.ok)/s.window.Seconds()),
			fmtMS(w.hist.percentile(50)), fmtMS(w.hist.percentile(99)), fmtMS(time.Duration(w.hist.max)), mdCell(w.errors.String()))
	}
	ok, why := s.keepsUp()
	v := "keeps up"
	if !ok {
		v = "does not keep up: " + why
	}
	fmt.Fprintf(&b, "\n%s/s asked for %s: %s answered, %s left unsent, %s errors; the soak's purchases added %s to the members' "+
		"histories. Verdict: %s (the rule: at most one request in a thousand left unsent, no errors, and the last window's p99 "+
		"at most %.1f× the first's or within %s of it).\n", fmtRate(s.rate), s.dur, groupThousands(s.answered),
		groupThousands(s.unsent), groupThousands(s.errors), groupThousands(s.histDelta), v, soakP99Growth, fmtMS(soakP99Slack))
	return b.String()
}
