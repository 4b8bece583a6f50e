package main

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// outcome is what one operation reports to the runner.
type outcome struct {
	kind   int  // index into the phase's kinds, for a mixed workload
	ok     bool // counted in throughput and latency
	status int  // HTTP status; 0 with err for a transport or driver error
	err    error
}

// opFunc performs one operation. Each client goroutine has its own, made
// by a newOp, so it may keep per-client state (a connection, buffers, a
// random source) without locks.
type opFunc func(ctx context.Context) outcome

type newOp func(client int) opFunc

// kindStats is what a phase measured for one kind of operation.
type kindStats struct {
	name   string
	ok     int64
	hist   *hist
	errors statusCounts
}

// phaseResult is one measured run of a workload.
type phaseResult struct {
	elapsed time.Duration
	kinds   []*kindStats
	total   *kindStats
	target  float64 // requests/s asked for with -rate; 0 when flat out
	unsent  int64   // requests scheduled before the deadline but not sent by it
	lastErr error   // one transport or driver error, for the log
	window  time.Duration
	windows []*kindStats // every kind together, by window of scheduled send time
	// busy is the machine's busy CPU time over the phase, every core
	// (busyOK false: not measured).
	busy   time.Duration
	busyOK bool
}

// busyPerOK is the machine's busy CPU time per request answered.
func (r *phaseResult) busyPerOK() (time.Duration, bool) {
	if !r.busyOK || r.total.ok == 0 {
		return 0, false
	}
	return r.busy / time.Duration(r.total.ok), true
}

func (r *phaseResult) throughput() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.total.ok) / r.elapsed.Seconds()
}

// runPhase drives conc clients for dur. With rate > 0 the clients are
// paced open-loop: client i sends its k-th request at start + (i + k·conc)
// / rate, and its latency is measured from that scheduled time, so a
// stalled server is charged for the requests it held back (no coordinated
// omission). Flat out (rate 0), each client sends its next request as soon
// as the previous one is answered, and latency is the request's own time.
// Either way no request is sent after dur.
func runPhase(ctx context.Context, kinds []string, conc int, dur time.Duration, rate float64, mk newOp) *phaseResult {
	return runPhaseWindows(ctx, kinds, conc, dur, rate, mk, 0)
}

// windowCount is how many windows of length w cover d (0 when w is 0).
func windowCount(d, w time.Duration) int {
	if w <= 0 {
		return 0
	}
	return int((d + w - 1) / w)
}

// runPhaseWindows is runPhase that also keeps the outcomes of every
// window of length window (by scheduled send time), so that a soak can
// compare its first minute with its last.
func runPhaseWindows(ctx context.Context, kinds []string, conc int, dur time.Duration, rate float64, mk newOp,
	window time.Duration) *phaseResult {
	type local struct {
		hists  []*hist
		ok     []int64
		errs   []statusCounts
		wins   []*kindStats
		lastEr error
		unsent int64
	}
	nw := windowCount(dur, window)
	locals := make([]*local, conc)
	ops := make([]opFunc, conc)
	for i := range locals {
		l := &local{hists: make([]*hist, len(kinds)), ok: make([]int64, len(kinds)), errs: make([]statusCounts, len(kinds)),
			wins: make([]*kindStats, nw)}
		for k := range kinds {
			l.hists[k], l.errs[k] = newHist(), statusCounts{}
		}
		for w := range l.wins {
			l.wins[w] = &kindStats{hist: newHist(), errors: statusCounts{}}
		}
		locals[i] = l
		ops[i] = mk(i)
	}
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(conc) * float64(time.Second) / rate)
		if interval <= 0 {
			interval = 1
		}
	}
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l, op := locals[i], ops[i]
			next := start
			if rate > 0 {
				next = start.Add(time.Duration(int64(i) * int64(interval) / int64(conc)))
			}
			for ctx.Err() == nil {
				var sched time.Time
				if rate > 0 {
					// Stop at the deadline even when behind schedule: the
					// requests not sent by then are counted as unsent.
					if !next.Before(deadline) {
						return
					}
					if now := time.Now(); !now.Before(deadline) {
						l.unsent += int64((deadline.Sub(next) + interval - 1) / interval)
						return
					}
					if wait := time.Until(next); wait > 0 {
						t := time.NewTimer(wait)
						select {
						case <-ctx.Done():
							t.Stop()
							return
						case <-t.C:
						}
					}
					sched = next
					next = next.Add(interval)
				} else {
					sched = time.Now()
					if !sched.Before(deadline) {
						return
					}
				}
				o := op(ctx)
				took := time.Since(sched)
				if ctx.Err() != nil && !o.ok {
					return // interrupted, not a failure of the engine
				}
				var win *kindStats
				if nw > 0 {
					win = l.wins[min(nw-1, max(0, int(sched.Sub(start)/window)))]
				}
				switch {
				case o.ok:
					l.ok[o.kind]++
					l.hists[o.kind].record(took)
					if win != nil {
						win.ok++
						win.hist.record(took)
					}
				case o.err != nil:
					l.errs[o.kind].add("transport", 1)
					l.lastEr = o.err
					if win != nil {
						win.errors.add("transport", 1)
					}
				default:
					l.errs[o.kind].addStatus(o.status)
					if win != nil {
						win.errors.addStatus(o.status)
					}
				}
			}
		}(i)
	}
	wg.Wait()
	res := &phaseResult{elapsed: time.Since(start), target: rate, window: window,
		total: &kindStats{name: "all", hist: newHist(), errors: statusCounts{}}}
	for w := 0; w < nw; w++ {
		ws := &kindStats{name: "window", hist: newHist(), errors: statusCounts{}}
		for _, l := range locals {
			ws.ok += l.wins[w].ok
			ws.hist.merge(l.wins[w].hist)
			ws.errors.merge(l.wins[w].errors)
		}
		res.windows = append(res.windows, ws)
	}
	for _, l := range locals {
		res.unsent += l.unsent
	}
	for k, name := range kinds {
		ks := &kindStats{name: name, hist: newHist(), errors: statusCounts{}}
		for _, l := range locals {
			ks.ok += l.ok[k]
			ks.hist.merge(l.hists[k])
			ks.errors.merge(l.errs[k])
			if l.lastEr != nil {
				res.lastErr = l.lastEr
			}
		}
		res.kinds = append(res.kinds, ks)
		res.total.ok += ks.ok
		res.total.hist.merge(ks.hist)
		res.total.errors.merge(ks.errors)
	}
	return res
}

// engine is the running server as the load sees it: its address, the
// seeded program and everyone's tokens.
type engine struct {
	addr        string
	timeout     time.Duration
	adminAuth   []byte
	posAuth     [][]byte // one per store
	stores      []string
	memberIDs   []string // the load's members, then the history phase's
	loadN       int      // members the load picks from: the first loadN
	memberAuth  [][]byte // "Bearer <member token>", by member index
	rewardID    string
	voucherID   string // the reward the history phase's members redeem
	runID       string
	seq         atomic.Int64 // receipt numbers
	expected    []atomic.Int64
	uncertain   []atomic.Bool
	categories  []string
	redeemEvery int // in the mix, one write in redeemEvery is a redemption

	mu      sync.Mutex
	clients []*client // open connections, closed after each phase
}

// client is one keep-alive connection to the engine, used by one goroutine.
type client struct {
	e    *engine
	hc   *fasthttp.HostClient
	req  *fasthttp.Request
	resp *fasthttp.Response
	body []byte
	path []byte
	uri  []byte
	rng  *rand.Rand
}

func (e *engine) newClient(seed uint64) *client {
	c := &client{
		e: e,
		hc: &fasthttp.HostClient{Addr: e.addr, MaxConns: 1, ReadTimeout: e.timeout, WriteTimeout: e.timeout,
			MaxIdleConnDuration: 5 * time.Minute, MaxIdemponentCallAttempts: 1, NoDefaultUserAgentHeader: true,
			DisablePathNormalizing: true},
		req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse(),
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	e.mu.Lock()
	e.clients = append(e.clients, c)
	e.mu.Unlock()
	return c
}

// closeClients closes every connection the load opened, so that idle
// keep-alive connections do not linger in the server between phases.
func (e *engine) closeClients() {
	e.mu.Lock()
	cs := e.clients
	e.clients = nil
	e.mu.Unlock()
	for _, c := range cs {
		c.close()
	}
}

// do sends one request; body nil for a GET. It returns the status, or an
// error when no response came back.
func (c *client) do(method string, path []byte, auth []byte, body []byte) (int, error) {
	c.req.Reset()
	c.resp.Reset()
	c.uri = append(append(c.uri[:0], "http://"...), c.e.addr...)
	c.uri = append(c.uri, path...)
	c.req.SetRequestURIBytes(c.uri)
	c.req.Header.SetMethod(method)
	if auth != nil {
		c.req.Header.SetBytesV("Authorization", auth)
	}
	if body != nil {
		c.req.Header.SetContentType("application/json")
		c.req.SetBodyRaw(body)
	}
	if err := c.hc.Do(c.req, c.resp); err != nil {
		return 0, err
	}
	return c.resp.StatusCode(), nil
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// purchase posts one receipt for a random member (or member m when m >= 0)
// from this client's store: 1 to 5 lines whose amounts add up to the total.
func (c *client) purchase(m int, store int) outcome { return c.purchaseAt(m, store, "") }

// purchaseAt is purchase with an occurred_at (RFC 3339; "" for now).
func (c *client) purchaseAt(m int, store int, at string) outcome {
	e := c.e
	if m < 0 {
		m = c.rng.IntN(e.loadN)
	}
	var lines [5]saleLine
	n, total := c.randomLines(&lines)
	return c.postPurchase(m, store, lines[:n], total, at)
}

// randomLines fills 1 to 5 lines of a receipt and returns how many, and
// their total.
func (c *client) randomLines(lines *[5]saleLine) (n int, total int64) {
	n = 1 + c.rng.IntN(5)
	for i := 0; i < n; i++ {
		lines[i] = saleLine{qty: 1 + c.rng.Int64N(3), price: 100 * (5 + c.rng.Int64N(146))} // $5..$150
		total += lines[i].qty * lines[i].price
	}
	return n, total
}

var purchasesPath = []byte("/v1/purchases")

// saleLine is one line of a receipt: quantity and unit price in cents.
type saleLine struct{ qty, price int64 }

// postPurchase posts a receipt; at, when not empty, is its occurred_at
// (RFC 3339), for a purchase made in the past.
func (c *client) postPurchase(m, store int, lines []saleLine, total int64, at string) outcome {
	e := c.e
	c.body = c.appendPurchase(c.body[:0], m, store, lines, total, at)
	st, err := c.do("POST", purchasesPath, e.posAuth[store], c.body)
	return c.account(m, st, err, 201, "points_earned", 1)
}

// appendPurchase appends the JSON of a new receipt to b.
func (c *client) appendPurchase(b []byte, m, store int, lines []saleLine, total int64, at string) []byte {
	e := c.e
	b = append(b, `{"member_id":`...)
	b = appendJSONString(b, e.memberIDs[m])
	b = append(b, `,"external_id":"B`...)
	b = append(b, e.runID...)
	b = append(b, '-')
	b = strconv.AppendInt(b, e.seq.Add(1), 10)
	b = append(b, `","store_id":`...)
	b = appendJSONString(b, e.stores[store])
	if at != "" {
		b = append(b, `,"occurred_at":`...)
		b = appendJSONString(b, at)
	}
	b = append(b, `,"channel":"pos","currency":"USD","total":`...)
	b = strconv.AppendInt(b, total, 10)
	b = append(b, `,"items":[`...)
	for i, l := range lines {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"sku":"SKU-`...)
		b = strconv.AppendInt(b, int64(c.rng.IntN(5000)), 10)
		b = append(b, `","category":`...)
		b = appendJSONString(b, e.categories[c.rng.IntN(len(e.categories))])
		b = append(b, `,"quantity":`...)
		b = strconv.AppendInt(b, l.qty, 10)
		b = append(b, `,"unit_price":`...)
		b = strconv.AppendInt(b, l.price, 10)
		b = append(b, `,"amount":`...)
		b = strconv.AppendInt(b, l.qty*l.price, 10)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// account updates the client-side books of member m after a write: the
// points a created purchase earned or a redemption spent. A write whose
// outcome is unknown (no response, or a 5xx) makes the member's expected
// balance uncertain, and the final check then skips that comparison.
func (c *client) account(m, st int, err error, want int, field string, sign int64) outcome {
	e := c.e
	if err != nil || st >= 500 {
		e.uncertain[m].Store(true)
		return outcome{status: st, err: err}
	}
	if st != want {
		return outcome{status: st}
	}
	if v, ok := intField(c.resp.Body(), field); ok {
		e.expected[m].Add(sign * v)
	} else {
		e.uncertain[m].Store(true)
	}
	return outcome{ok: true, status: st}
}

// balance reads member m's balance with the member's own token, as an app.
func (c *client) balance(m int) outcome {
	e := c.e
	p := append(c.path[:0], "/v1/members/"...)
	p = append(p, e.memberIDs[m]...)
	p = append(p, "/balance"...)
	c.path = p
	st, err := c.do("GET", p, e.memberAuth[m], nil)
	if err != nil {
		return outcome{err: err}
	}
	return outcome{ok: st == 200, status: st}
}

// redeem redeems the cheap reward for member m with the member's token.
func (c *client) redeem(m int) outcome { return c.redeemReward(m, c.e.rewardID) }

// redeemReward redeems reward id for member m with the member's token.
func (c *client) redeemReward(m int, id string) outcome {
	e := c.e
	p := append(c.path[:0], "/v1/members/"...)
	p = append(p, e.memberIDs[m]...)
	p = append(p, "/redemptions"...)
	c.path = p
	b := append(c.body[:0], `{"reward_id":`...)
	b = appendJSONString(b, id)
	b = append(b, '}')
	c.body = b
	st, err := c.do("POST", p, e.memberAuth[m], b)
	return c.account(m, st, err, 201, "points_spent", -1)
}

// Workloads. Each returns the kinds it reports and its newOp.

func (e *engine) purchasesLoad() ([]string, newOp) {
	return []string{"purchases"}, func(i int) opFunc {
		c := e.newClient(uint64(i)*7919 + 1)
		store := i % len(e.stores)
		return func(context.Context) outcome { return c.purchase(-1, store) }
	}
}

func (e *engine) balanceLoad() ([]string, newOp) {
	return []string{"balance reads"}, func(i int) opFunc {
		c := e.newClient(uint64(i)*104729 + 2)
		return func(context.Context) outcome { return c.balance(c.rng.IntN(e.loadN)) }
	}
}

func (e *engine) redemptionsLoad() ([]string, newOp) {
	return []string{"redemptions"}, func(i int) opFunc {
		c := e.newClient(uint64(i)*15485863 + 3)
		return func(context.Context) outcome { return c.redeem(c.rng.IntN(e.loadN)) }
	}
}

// Kinds of the mix, in the order mixLoad reports them.
const (
	mixRead = iota
	mixPurchase
	mixRedeem
)

// mixLoad is 80% balance reads by members and 20% writes, of which one in
// e.redeemEvery is a member's redemption and the rest purchases from tills.
func (e *engine) mixLoad() ([]string, newOp) {
	return []string{"balance reads", "purchases", "redemptions"}, func(i int) opFunc {
		c := e.newClient(uint64(i)*32452843 + 4)
		store := i % len(e.stores)
		return func(context.Context) outcome {
			m := c.rng.IntN(e.loadN)
			r := c.rng.IntN(100 * e.redeemEvery)
			var o outcome
			switch {
			case r < 80*e.redeemEvery:
				o = c.balance(m)
				o.kind = mixRead
			case r < 80*e.redeemEvery+20:
				o = c.redeem(m)
				o.kind = mixRedeem
			default:
				o = c.purchase(m, store)
				o.kind = mixPurchase
			}
			return o
		}
	}
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '"' || ch == '\\':
			b = append(b, '\\', ch)
		case ch < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[ch>>4], hex[ch&15])
		default:
			b = append(b, ch)
		}
	}
	return append(b, '"')
}

// intField finds the first `"field":<integer>` in a JSON body and returns
// the integer. It is enough for the engine's flat answers, where the field
// names the bench reads occur once.
func intField(body []byte, field string) (int64, bool) {
	key := `"` + field + `"`
	for i := 0; i+len(key) <= len(body); i++ {
		if string(body[i:i+len(key)]) != key {
			continue
		}
		j := i + len(key)
		for j < len(body) && (body[j] == ' ' || body[j] == '\t' || body[j] == '\n' || body[j] == '\r') {
			j++
		}
		if j >= len(body) || body[j] != ':' {
			continue
		}
		j++
		for j < len(body) && (body[j] == ' ' || body[j] == '\t' || body[j] == '\n' || body[j] == '\r') {
			j++
		}
		k := j
		if k < len(body) && body[k] == '-' {
			k++
		}
		for k < len(body) && body[k] >= '0' && body[k] <= '9' {
			k++
		}
		v, err := strconv.ParseInt(string(body[j:k]), 10, 64)
		if err != nil {
			return 0, false
		}
		return v, true
	}
	return 0, false
}
