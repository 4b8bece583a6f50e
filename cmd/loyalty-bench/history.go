package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// The history phase answers one question: does a purchase or a balance
// read cost more for a member with a long history? It gives members
// histories of the sizes asked for (1, 1,000 and 10,000 purchases by
// default), written through the API as the engine would have written them
// over the years, then sends single requests from one client, interleaved
// across the members, so that every size sees the same machine at the
// same moments. A long history is mostly closed, as a long-standing
// member's is: the nightly expiry writes off what lapsed, and the member
// spends its points on vouchers, keeping about a month of purchases open
// (see spendHistory and docs/BENCH.md). What is open is part of the answer
// (its expiring_soon list); the closed history must cost nothing.

// historyClass is one history size and what its requests measured.
type historyClass struct {
	size     int // purchases of history before the measurement
	readM    int // the member whose balance is read
	buyM     int // the member who buys (-1: a rotating one-purchase member)
	purchase *hist
	read     *hist
	errors   statusCounts
}

// historyResult is what the history phase measured on one database.
type historyResult struct {
	classes   []*historyClass
	iters     int
	span      time.Duration
	written   int           // purchases posted to build the histories
	build     time.Duration // time to post them
	expire    time.Duration // time of the expire-points run that followed
	expireSum string        // its summary, as the engine answered
	redeemed  int           // vouchers the members spent their points on
	spend     time.Duration // time to redeem them
}

// historyClasses lays out the classes: a size of 1 is a load member, who
// has exactly one purchase after seeding, and its purchases go to other
// load members with exactly one (so that its history stays one); a larger
// size is one of the extra members seeded for this phase, who buys and is
// read (its history grows by the iterations, at most a few percent of it).
func (e *engine) historyClasses(sizes []int) []*historyClass {
	var out []*historyClass
	extra := e.loadN
	for _, s := range sizes {
		c := &historyClass{size: s, purchase: newHist(), read: newHist(), errors: statusCounts{}}
		if s == 1 {
			c.readM, c.buyM = 0, -1
		} else {
			c.readM, c.buyM = extra, extra
			extra++
		}
		out = append(out, c)
	}
	return out
}

// historyExtra is how many extra members the sizes need.
func historyExtra(sizes []int) int {
	n := 0
	for _, s := range sizes {
		if s > 1 {
			n++
		}
	}
	return n
}

// historyItem is one purchase of a history: whose, and when.
type historyItem struct {
	m  int
	at time.Time
}

// historyPlan spreads each member's purchases evenly over span before now,
// oldest first, and merges the members' timelines, so that the histories
// are written in the order they happened.
func historyPlan(classes []*historyClass, span time.Duration, now time.Time) []historyItem {
	var items []historyItem
	for _, c := range classes {
		if c.size <= 1 {
			continue
		}
		step := span / time.Duration(c.size)
		for k := 0; k < c.size; k++ {
			items = append(items, historyItem{m: c.buyM, at: now.Add(-span + time.Duration(k)*step + step/2)})
		}
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].at.Before(items[j].at) })
	return items
}

// buildHistory posts the planned purchases with their past occurred_at,
// conc at a time, then runs the expire-points job as the nightly run
// would, so that the lots older than the expiry are closed as they would
// be in a real database.
// progress, when not nil, is told every 30 s how many are posted.
func (e *engine) buildHistory(ctx context.Context, classes []*historyClass, span time.Duration, conc int,
	progress func(done, total int)) (*historyResult, error) {
	res := &historyResult{classes: classes, span: span}
	items := historyPlan(classes, span, time.Now())
	t0 := time.Now()
	var posted atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	if progress != nil {
		go func() {
			t := time.NewTicker(30 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					progress(int(posted.Load()), len(items))
				}
			}
		}()
	}
	earned := make([]int64, len(items)) // the points each purchase earned
	err := parallel(ctx, len(items), conc, func(w int) func(int) error {
		c := e.newClient(uint64(w) + 7000)
		store := w % len(e.stores)
		return func(i int) error {
			it := items[i]
			if o := c.purchaseAt(it.m, store, it.at.UTC().Format(time.RFC3339Nano)); !o.ok {
				return fmt.Errorf("history: purchase of member %d at %s: %d %v %s", it.m, it.at.Format(time.DateOnly), o.status, o.err, c.resp.Body())
			}
			earned[i], _ = intField(c.resp.Body(), "points_earned")
			posted.Add(1)
			return nil
		}
	})
	e.closeClients()
	if err != nil {
		return nil, err
	}
	res.written, res.build = len(items), time.Since(t0)
	for _, c := range classes {
		if c.size > 1 {
			// The job takes the expired points: the member's balance is
			// still checked against its ledger, not against what the
			// bench saw it earn.
			e.uncertain[c.buyM].Store(true)
		}
	}
	t0 = time.Now()
	sum, err := e.runJob("expire-points")
	if err != nil {
		return nil, err
	}
	res.expire, res.expireSum = time.Since(t0), sum
	t0 = time.Now()
	if res.redeemed, err = e.spendHistory(ctx, classes, items, earned, t0); err != nil {
		return nil, err
	}
	res.spend = time.Since(t0)
	return res, nil
}

// keepOpen is how much of its recent history a long-standing member keeps
// unspent: the points of its purchases of the last keepOpen.
const keepOpen = 30 * 24 * time.Hour

// spendHistory has every member with a history spend its points, as a
// long-standing member does over the years: it redeems the voucher through
// the API while the member's available points exceed what its purchases of
// the last keepOpen earned, so that what stays open is about a month of
// purchases, whatever the length of the history. Redemptions cannot be
// dated in the past, so they are made now, after the history; they draw the
// lots that expire first, as redemptions made along the way would have. It
// returns how many vouchers were redeemed.
func (e *engine) spendHistory(ctx context.Context, classes []*historyClass, items []historyItem, earned []int64, now time.Time) (int, error) {
	recent := map[int]int64{}
	for i, it := range items {
		if now.Sub(it.at) < keepOpen {
			recent[it.m] += earned[i]
		}
	}
	var ms []int
	for _, c := range classes {
		if c.size > 1 {
			ms = append(ms, c.buyM)
		}
	}
	var n atomic.Int64
	err := parallel(ctx, len(ms), len(ms), func(w int) func(int) error {
		c := e.newClient(uint64(w) + 7500)
		return func(i int) error {
			m := ms[i]
			if o := c.balance(m); !o.ok {
				return fmt.Errorf("history: balance of member %d: %d %v", m, o.status, o.err)
			}
			avail, ok := intField(c.resp.Body(), "available")
			if !ok {
				return fmt.Errorf("history: balance of member %d: %s", m, c.resp.Body())
			}
			k := max(0, (avail-recent[m])/voucherCost)
			for j := int64(0); j < k; j++ {
				if o := c.redeemReward(m, e.voucherID); !o.ok {
					return fmt.Errorf("history: redemption %d of member %d: %d %v %s", j, m, o.status, o.err, c.resp.Body())
				}
			}
			n.Add(k)
			return nil
		}
	})
	e.closeClients()
	return int(n.Load()), err
}

// runJob runs one job now through the API and returns its summary.
func (e *engine) runJob(name string) (string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + e.addr + "/v1/jobs/" + name + "/run")
	req.Header.SetMethod("POST")
	req.Header.SetBytesV("Authorization", e.adminAuth)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Minute); err != nil {
		return "", fmt.Errorf("run job %s: %w", name, err)
	}
	if resp.StatusCode() != 200 {
		return "", fmt.Errorf("run job %s: %d %s", name, resp.StatusCode(), resp.Body())
	}
	var rec struct {
		Summary json.RawMessage `json:"summary"`
	}
	if err := json.Unmarshal(resp.Body(), &rec); err != nil {
		return "", fmt.Errorf("run job %s: %w", name, err)
	}
	return string(rec.Summary), nil
}

// measureHistory sends, iters times, a purchase and a balance read for
// every class, one request at a time, in an order that rotates each
// iteration. The first tenth (at most 10) warms up and is not recorded.
func (e *engine) measureHistory(ctx context.Context, res *historyResult, iters int) {
	c := e.newClient(4242)
	defer e.closeClients()
	warm := min(10, iters/10)
	res.iters = iters
	next := 1 // the next one-purchase load member to buy
	for it := -warm; it < iters && ctx.Err() == nil; it++ {
		for k := range res.classes {
			cl := res.classes[(max(it, 0)+k)%len(res.classes)]
			m := cl.buyM
			if m < 0 {
				m = 0
				if e.loadN > 1 {
					m, next = next, next%(e.loadN-1)+1
				}
			}
			t0 := time.Now()
			o := c.purchase(m, 0)
			took := time.Since(t0)
			cl.note(o, took, cl.purchase, it >= 0)
			t0 = time.Now()
			o = c.balance(cl.readM)
			took = time.Since(t0)
			cl.note(o, took, cl.read, it >= 0)
		}
	}
}

func (c *historyClass) note(o outcome, took time.Duration, h *hist, record bool) {
	switch {
	case !record:
	case o.ok:
		h.record(took)
	case o.err != nil:
		c.errors.add("transport", 1)
	default:
		c.errors.addStatus(o.status)
	}
}

// ratios are the p50 of the largest history over the p50 of the smallest,
// for purchases and for reads; 0 when either is missing.
func (r *historyResult) ratios() (purchase, read float64) {
	if r == nil || len(r.classes) < 2 {
		return 0, 0
	}
	lo, hi := r.classes[0], r.classes[0]
	for _, c := range r.classes {
		if c.size < lo.size {
			lo = c
		}
		if c.size > hi.size {
			hi = c
		}
	}
	return p50Ratio(hi.purchase, lo.purchase), p50Ratio(hi.read, lo.read)
}

func p50Ratio(a, b *hist) float64 {
	if a.n == 0 || b.n == 0 || b.percentile(50) <= 0 {
		return 0
	}
	return float64(a.percentile(50)) / float64(b.percentile(50))
}

// sizes returns the smallest and largest history sizes.
func (r *historyResult) sizes() (lo, hi int) {
	for i, c := range r.classes {
		if i == 0 || c.size < lo {
			lo = c.size
		}
		if i == 0 || c.size > hi {
			hi = c.size
		}
	}
	return lo, hi
}

// markdown is the phase's table: p50 and p99 of each kind by history
// size, and the ratio of the largest to the smallest.
func (r *historyResult) markdown(label string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s: cost against history\n\n", label)
	b.WriteString("| history | purchase p50 | purchase p99 | balance read p50 | balance read p99 | errors |\n")
	b.WriteString("| ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, c := range r.classes {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", fmtCount(c.size, "purchase"),
			fmtMS(c.purchase.percentile(50)), fmtMS(c.purchase.percentile(99)),
			fmtMS(c.read.percentile(50)), fmtMS(c.read.percentile(99)), mdCell(c.errors.String()))
	}
	if rp, rr := r.ratios(); rp > 0 || rr > 0 {
		lo, hi := r.sizes()
		fmt.Fprintf(&b, "| p50 %s / %s | %.2f× | | %.2f× | | |\n", groupThousands(int64(hi)), groupThousands(int64(lo)), rp, rr)
	}
	fmt.Fprintf(&b, "\nOne client, %d iterations after %d of warm-up, each a purchase and a balance read (the member's own token) "+
		"for every size in turn. The histories were posted through the API, %s purchases with occurred_at spread evenly over "+
		"the past %s, in %s (%s/s); then expire-points ran once as of now, as the nightly run would (%s): %s; "+
		"then each member with a history spent its points on %s vouchers of %d points (%s), keeping open what its purchases "+
		"of the last %s earned, so most of a long history is closed (expired or spent) and what is open is about a month of it. "+
		"The member with 1 purchase is read; its purchases go to other members holding exactly 1; the larger histories "+
		"buy themselves, growing by the iterations.\n",
		r.iters, min(10, r.iters/10), groupThousands(int64(r.written)), fmtSpan(r.span), r.build.Round(100*time.Millisecond),
		fmtRate(float64(r.written)/max(r.build.Seconds(), 1e-9)), r.expire.Round(10*time.Millisecond), mdCell(r.expireSum),
		groupThousands(int64(r.redeemed)), voucherCost, r.spend.Round(10*time.Millisecond), fmtSpan(keepOpen))
	return b.String()
}

// fmtSpan renders a span in days, or years when it is whole years.
func fmtSpan(d time.Duration) string {
	days := int64(d / (24 * time.Hour))
	switch {
	case d%(24*time.Hour) != 0:
		return d.String()
	case days%365 == 0 && days >= 365:
		if days == 365 {
			return "year"
		}
		return fmt.Sprintf("%d years", days/365)
	}
	return fmt.Sprintf("%d days", days)
}

// parseSizes reads the -history list: positive, distinct, ascending
// sizes; "" or "0" turns the phase off.
func parseSizes(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" || s == "off" {
		return nil, nil
	}
	xs, err := parseIntList(s)
	if err != nil {
		return nil, err
	}
	sort.Ints(xs)
	for i := 1; i < len(xs); i++ {
		if xs[i] == xs[i-1] {
			return nil, fmt.Errorf("%d appears twice", xs[i])
		}
	}
	if len(xs) < 2 {
		return nil, fmt.Errorf("needs at least two sizes to compare")
	}
	return xs, nil
}
