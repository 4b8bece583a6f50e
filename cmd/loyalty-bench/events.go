package main

// The events phases (issue 14): purchases with one webhook and the NATS
// sink configured, between two plain purchases phases on engines
// restarted just before and just after it, and the latency of the live
// balance stream from a purchase to its balance event.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"
)

// Thresholds of issue 14.
const (
	eventsCostMax = 0.15        // purchases with a webhook and NATS lose at most this share
	sseLatencyMax = time.Second // a balance event within this of its purchase
	// sseSamples is how many purchases the stream latency is measured on.
	sseSamples = 300
	// sseStreams is how many members have a stream open during it.
	sseStreams = 16
)

// eventsResult is what the events phases measured, for the targets.
type eventsResult struct {
	purchases float64 // purchases/s with the webhook and the sink, at the target client count
	plain     float64 // the plain purchases phase at the same count
	sse       *hist   // purchase sent → balance event received
	// bound is the share of plain purchases the delivery work alone
	// leaves room for on this machine (0: not measured).
	bound     float64
	sseAcross bool   // the streams were on another engine process
	refNote   string // what the delivery reference measured
}

// hookReceiver is the bench's loopback webhook endpoint: it answers 204 to
// every delivery and counts them.
type hookReceiver struct {
	ln  net.Listener
	srv *fasthttp.Server
	n   atomic.Int64
	// The last deliveries' bodies, for the delivery reference.
	mu   sync.Mutex
	last [][]byte
	at   int
}

// keptBodies is how many of the last deliveries' bodies the receiver
// keeps.
const keptBodies = 20000

// bodies returns the bodies kept, oldest first.
func (r *hookReceiver) bodies() []json.RawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]json.RawMessage, 0, len(r.last))
	for i := range r.last {
		out = append(out, r.last[(r.at+i)%len(r.last)])
	}
	return out
}

func startHookReceiver() (*hookReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &hookReceiver{ln: ln}
	r.srv = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Method()) == "POST" && len(ctx.Request.Header.Peek("Loyalty-Signature")) > 0 {
			r.n.Add(1)
			body := append([]byte(nil), ctx.PostBody()...)
			r.mu.Lock()
			if len(r.last) < keptBodies {
				r.last = append(r.last, body)
			} else {
				r.last[r.at] = body
				r.at = (r.at + 1) % keptBodies
			}
			r.mu.Unlock()
		}
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	}, NoDefaultServerHeader: true}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *hookReceiver) url() string { return "http://" + r.ln.Addr().String() + "/hook" }
func (r *hookReceiver) close()      { _ = r.srv.Shutdown() }

// natsStream is the bench's own JetStream stream, deleted at the end.
type natsStream struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	name    string
	subject string
}

func openNATSStream(ctx context.Context, url, db string) (*natsStream, error) {
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(c); err != nil {
		nc.Close()
		return nil, fmt.Errorf("JetStream: %w", err)
	}
	id := fmt.Sprintf("%s_%d", strings.ToUpper(db), os.Getpid())
	return &natsStream{nc: nc, js: js, name: "LOYALTY_BENCH_" + id, subject: "bench_" + strings.ToLower(id) + ".loyalty.events"}, nil
}

// count is how many messages the stream holds (0 before the engine made it).
func (s *natsStream) count(ctx context.Context) (uint64, error) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(c, s.name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	info, err := st.Info(c)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// settle waits until the stream stops growing (two samples a second apart
// agree and it holds something), at most limit; it returns the count.
func (s *natsStream) settle(ctx context.Context, limit time.Duration) (uint64, time.Duration, error) {
	start := time.Now()
	var last uint64
	for {
		n, err := s.count(ctx)
		if err != nil {
			return 0, time.Since(start), err
		}
		if n > 0 && n == last {
			return n, time.Since(start), nil
		}
		last = n
		if time.Since(start) > limit {
			return n, time.Since(start), fmt.Errorf("the NATS stream still grew after %s (%d messages)", limit, n)
		}
		select {
		case <-ctx.Done():
			return n, time.Since(start), ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (s *natsStream) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.js.DeleteStream(ctx, s.name)
	s.nc.Close()
}

// eventsPhases restarts the engine (on the same address and database)
// with the NATS sink, adds a webhook to a loopback receiver, measures
// purchases at each client count, then the balance stream's latency, and
// restarts the engine as it was. *srv is the engine running afterwards.
func (b *bench) eventsPhases(ctx context.Context, db, label string, srv **server, e *engine, env []string, er engineRun) (*eventsResult, error) {
	opt := b.opt
	if opt.natsURL == "" {
		b.rep.notes = append(b.rep.notes, label+": the events phases were skipped (-nats-url \"\").")
		return nil, nil
	}
	ns, err := openNATSStream(ctx, opt.natsURL, db)
	if err != nil {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("%s: the events phases were skipped: no NATS with JetStream at %s (%s).",
			label, opt.natsURL, firstLine(err.Error())))
		return nil, nil
	}
	defer ns.close()
	hooks, err := startHookReceiver()
	if err != nil {
		return nil, err
	}
	defer hooks.close()

	addr := (*srv).addr
	logPath := filepath.Join(b.dir, db+"-events-server.log")
	restart := func(env []string, log string) error {
		(*srv).stop()
		s, err := startServer(ctx, b.bin, env, addr, log)
		if err != nil {
			return err
		}
		*srv = s
		return nil
	}
	evEnv := env
	var what []string
	if opt.eventSinks["webhook"] {
		what = append(what, "a webhook")
	}
	if opt.eventSinks["nats"] {
		what = append(what, "the NATS sink")
		evEnv = append(append([]string(nil), env...), "LOYALTY_NATS_URL="+opt.natsURL, "LOYALTY_NATS_STREAM="+ns.name,
			"LOYALTY_NATS_SUBJECT="+ns.subject)
	}
	with := strings.Join(what, " and ")

	// The sinks' cost is measured against plain purchases under the same
	// conditions: a freshly started engine on a database as large, just
	// before and just after the phase with the sinks (A/B/A). The plain
	// phase measured earlier ran on an engine warm since the seed and a
	// smaller database; a restart alone, with a webhook configured but
	// never read, measured 17% below it (3 December 2026).
	plainRun := func(when string, round int) (map[int]*phaseResult, error) {
		row := "purchases, plain, restarted " + when + " the sinks"
		if round > 0 {
			row += fmt.Sprintf(" (round %d)", round+1)
		}
		when = roundName(when, round)
		b.logf("%s: events: restarting the engine without the sinks (%s)", label, when)
		if err := restart(env, filepath.Join(b.dir, db+"-plain-"+when+"-events.log")); err != nil {
			return nil, err
		}
		out := map[int]*phaseResult{}
		for _, conc := range opt.conc {
			kinds, mk := e.purchasesLoad()
			stopProfile := b.profile(*srv, e, fmt.Sprintf("%s-plain-%s-events-%d", db, when, conc), opt.duration)
			r, rssKB, _, _, err := b.measure(ctx, *srv, e, kinds, conc, opt.duration, opt.rate, mk, logPath)
			stopProfile()
			if err != nil {
				return nil, err
			}
			b.rep.rows = append(b.rep.rows, rowFrom(label, row, conc, r.total, r.elapsed, rssKB))
			out[conc] = r
		}
		return out, nil
	}
	before, err := plainRun("before", 0)
	if err != nil {
		return nil, err
	}
	// The host's speed drifts over minutes on a shared machine (a plain
	// phase of one run read 1,618/s, the next one 2,033/s), more than the
	// sinks' cost: the phase with the sinks and the plain one after it run
	// -events-rounds times (A/B/A/B/A…), each round compared with the
	// plain phases on either side of it, and the median round counts.
	res := &eventsResult{}
	out := targetClients(opt.conc)
	type round struct {
		sinks map[int]sinksRun
		plain map[int]float64 // the mean of the plain phases around it
	}
	var rounds []round
	for i := range opt.eventsRounds {
		runs, err := b.sinksRound(ctx, db, label, i, srv, e, restart, evEnv, env, logPath, with, ns, hooks, res)
		if err != nil {
			return nil, err
		}
		after, err := plainRun("after", i)
		if err != nil {
			return nil, err
		}
		rd := round{sinks: runs, plain: map[int]float64{}}
		for _, conc := range opt.conc {
			rd.plain[conc] = (before[conc].throughput() + after[conc].throughput()) / 2
			ratio := runs[conc].r.throughput() / rd.plain[conc]
			b.logf("%s: events: round %d, %d clients: %s / %s = %d%%", label, i+1, conc, fmtRate(runs[conc].r.throughput()),
				fmtRate(rd.plain[conc]), int(ratio*100+0.5))
		}
		rounds = append(rounds, rd)
		if i == 0 {
			// The delivery reference (delivery.go), once, at the targets'
			// client count: what the delivery work alone costs the machine.
			if sr, ok := runs[out]; ok && opt.rate == 0 && len(opt.eventSinks) == 2 {
				cpu, _ := before[out].busyPerOK()
				if ref, err := b.deliveryReference(ctx, sr.r, cpu, rd.plain[out], hooks, sr.delivered, ns); err != nil {
					b.logf("%s: events: %v", label, err)
				} else {
					res.refNote, res.bound = ref.note, ref.bound
				}
			}
		}
		before = after
	}
	for _, conc := range opt.conc {
		idx := make([]int, len(rounds))
		for i := range idx {
			idx[i] = i
		}
		ratio := func(i int) float64 { return rounds[i].sinks[conc].r.throughput() / rounds[i].plain[conc] }
		sort.Slice(idx, func(a, b int) bool { return ratio(idx[a]) < ratio(idx[b]) })
		med := rounds[idx[len(idx)/2]]
		sr := med.sinks[conc]
		var each []string
		for i := range rounds {
			sri := rounds[i].sinks[conc]
			each = append(each, fmt.Sprintf("%s / %s = %d%%", fmtRate(sri.r.throughput()), fmtRate(rounds[i].plain[conc]), pctOf(sri.r.throughput(), rounds[i].plain[conc])))
		}
		note := fmt.Sprintf("%s, %d clients: purchases with %s / plain purchases on an engine restarted just before and just after, "+
			"in %d rounds (A/B/A…): %s; the median round %s / %s = %d%% (against the first plain phase, %s: %d%%)", label, conc, with,
			len(rounds), strings.Join(each, ", "), fmtRate(sr.r.throughput()), fmtRate(med.plain[conc]),
			pctOf(sr.r.throughput(), med.plain[conc]), fmtRate(er.purchases[conc]), pctOf(sr.r.throughput(), er.purchases[conc])) + sr.note
		if conc == out {
			if res.refNote != "" {
				note += "; " + res.refNote
			}
			// The target is issue 14's: both sinks.
			if len(opt.eventSinks) == 2 {
				res.purchases, res.plain = sr.r.throughput(), med.plain[conc]
			}
		}
		b.rep.notes = append(b.rep.notes, note+".")
	}
	return res, nil
}

// sinksRun is one phase of purchases with the sinks.
type sinksRun struct {
	r         *phaseResult
	note      string
	delivered int64
}

func roundName(when string, i int) string {
	if i == 0 {
		return when
	}
	return fmt.Sprintf("%s-%d", when, i+1)
}

// sinksRound restarts the engine with the sinks, adds the webhook, waits
// for the NATS sink to publish what the log holds, measures purchases at
// each client count (and, in the first round, the balance stream's
// latency), then takes the webhook away and restarts the engine without
// the sinks.
func (b *bench) sinksRound(ctx context.Context, db, label string, i int, srv **server, e *engine, restart func([]string, string) error,
	evEnv, env []string, logPath, with string, ns *natsStream, hooks *hookReceiver, res *eventsResult) (map[int]sinksRun, error) {
	opt := b.opt
	b.logf("%s: events: round %d: restarting the engine with %s", label, i+1, with)
	if err := restart(evEnv, logPath); err != nil {
		return nil, err
	}
	addr := (*srv).addr
	restored := false
	defer func() {
		if restored {
			return
		}
		b.logf("%s: events: restarting the engine without them", label)
		if err := restart(env, filepath.Join(b.dir, db+"-server-after-events.log")); err != nil {
			b.rep.failures = append(b.rep.failures, fmt.Sprintf("%s: restart after the events phases: %v", label, err))
		}
	}()
	hookID := ""
	var err error
	if opt.eventSinks["webhook"] {
		if hookID, err = e.createWebhook(hooks.url()); err != nil {
			return nil, fmt.Errorf("%w\nserver log:\n%s", err, tail(logPath, 10))
		}
		defer func() {
			if hookID == "" {
				return
			}
			if err := e.deleteWebhook(hookID); err != nil {
				b.logf("%s: %v", label, err)
			}
		}()
	}
	// The sink starts from where it stopped (the log's beginning the first
	// time): let it publish the seeding and the earlier phases before
	// measuring.
	var n uint64
	if opt.eventSinks["nats"] {
		var took time.Duration
		if n, took, err = ns.settle(ctx, 10*time.Minute); err != nil {
			return nil, err
		}
		b.logf("%s: events: the sink published the earlier events (%d in the stream) in %s", label, n, took.Round(time.Second))
	}

	runs := map[int]sinksRun{}
	for _, conc := range opt.conc {
		kinds, mk := e.purchasesLoad()
		name := "purchases, with " + with
		if i > 0 {
			name += fmt.Sprintf(" (round %d)", i+1)
		}
		delivered0 := hooks.n.Load()
		stopProfile := b.profile(*srv, e, fmt.Sprintf("%s-%s-%d", db, roundName("events", i), conc), opt.duration)
		r, rssKB, _, _, err := b.measure(ctx, *srv, e, kinds, conc, opt.duration, opt.rate, mk, logPath)
		stopProfile()
		if err != nil {
			return nil, err
		}
		b.rep.rows = append(b.rep.rows, rowFrom(label, name, conc, r.total, r.elapsed, rssKB))
		var note string
		if opt.eventSinks["nats"] {
			n0 := n
			var took time.Duration
			if n, took, err = ns.settle(ctx, 5*time.Minute); err != nil {
				return nil, err
			}
			note += fmt.Sprintf("; the NATS stream took %s events of the phase and settled %s after it", groupThousands(int64(n-n0)),
				took.Round(time.Second))
		}
		if opt.eventSinks["webhook"] {
			note += fmt.Sprintf("; the webhook receiver got %s deliveries by the end of the phase", groupThousands(hooks.n.Load()-delivered0))
		}
		runs[conc] = sinksRun{r: r, note: note, delivered: hooks.n.Load() - delivered0}
	}
	if i == 0 {
		// The stream's latency, in the first round only: on PostgreSQL
		// the streams are opened on a second engine process, so each event
		// crosses processes through the database; SQLite's streams are
		// served in process.
		streamAddr := addr
		if db == "postgres" {
			a2, err := freeAddr()
			if err != nil {
				return nil, err
			}
			other, err := startServer(ctx, b.bin, replaceEnv(env, "LOYALTY_ADDR", a2), a2, filepath.Join(b.dir, db+"-streams-server.log"))
			if err != nil {
				return nil, err
			}
			defer other.stop()
			streamAddr, res.sseAcross = a2, true
		}
		b.logf("%s: events: balance stream latency over %d purchases, %d streams on %s", label, sseSamples, sseStreams,
			map[bool]string{true: "another engine process", false: "the same engine process"}[res.sseAcross])
		h, errs, err := e.sseLatency(ctx, streamAddr)
		if err != nil {
			return nil, err
		}
		res.sse = h
		where := "the same engine process"
		if res.sseAcross {
			where = "another engine process"
		}
		b.rep.sections = append(b.rep.sections, fmt.Sprintf("### %s: live balance stream\n\n"+
			"From sending a purchase to receiving its balance event on a stream opened on %s; %d purchases one at a time "+
			"for %d members with a stream each.\n\n| p50 | p95 | p99 | max | errors |\n| ---: | ---: | ---: | ---: | --- |\n| %s | %s | %s | %s | %s |\n",
			label, where, sseSamples, min(sseStreams, e.loadN), fmtMS(h.percentile(50)), fmtMS(h.percentile(95)), fmtMS(h.percentile(99)),
			fmtMS(time.Duration(h.max)), errs))
	}
	if hookID != "" {
		if err := e.deleteWebhook(hookID); err != nil {
			b.logf("%s: %v", label, err)
		}
		hookID = ""
	}
	restored = true
	return runs, nil
}

// replaceEnv sets name=value in env.
func replaceEnv(env []string, name, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return append(out, name+"="+value)
}

// createWebhook subscribes url to every event (§14) and returns its id.
func (e *engine) createWebhook(url string) (string, error) {
	c := e.newClient(7)
	defer c.close()
	body := []byte(`{"url":` + string(appendJSONString(nil, url)) + `,"events":["*"],"description":"loyalty-bench receiver"}`)
	st, err := c.do("POST", []byte("/v1/webhooks"), e.adminAuth, body)
	if err != nil {
		return "", fmt.Errorf("create webhook: %w", err)
	}
	if st != 201 {
		return "", fmt.Errorf("create webhook: %d %s", st, c.resp.Body())
	}
	var hook struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(c.resp.Body(), &hook) != nil || hook.ID == "" {
		return "", fmt.Errorf("create webhook: no id in %s", c.resp.Body())
	}
	return hook.ID, nil
}

func (e *engine) deleteWebhook(id string) error {
	c := e.newClient(8)
	defer c.close()
	st, err := c.do("DELETE", []byte("/v1/webhooks/"+id), e.adminAuth, nil)
	if err != nil {
		return fmt.Errorf("delete webhook: %w", err)
	}
	if st/100 != 2 {
		return fmt.Errorf("delete webhook: %d %s", st, c.resp.Body())
	}
	return nil
}

// sseLatency opens balance streams of the first members on addr, then
// posts purchases for them one at a time through the engine and times each
// from its send to the arrival of the balance event it caused.
func (e *engine) sseLatency(ctx context.Context, addr string) (*hist, statusCounts, error) {
	errs := statusCounts{}
	k := min(sseStreams, e.loadN)
	type arrival struct{ at time.Time }
	streams := make([]chan arrival, k)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hc := &http.Client{}
	for i := 0; i < k; i++ {
		req, err := http.NewRequestWithContext(sctx, "GET", "http://"+addr+"/v1/members/"+e.memberIDs[i]+"/balance/stream", nil)
		if err != nil {
			return nil, errs, err
		}
		req.Header.Set("Authorization", string(e.memberAuth[i]))
		res, err := hc.Do(req)
		if err != nil {
			return nil, errs, fmt.Errorf("open balance stream: %w", err)
		}
		if res.StatusCode != 200 {
			res.Body.Close()
			return nil, errs, fmt.Errorf("open balance stream: %s", res.Status)
		}
		ch := make(chan arrival, 64)
		streams[i] = ch
		go func() {
			defer res.Body.Close()
			br := bufio.NewReader(res.Body)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if strings.HasPrefix(line, "event: balance") {
					select {
					case ch <- arrival{time.Now()}:
					default:
					}
				}
			}
		}()
		select {
		case <-ch: // the balance at once
		case <-time.After(10 * time.Second):
			return nil, errs, errors.New("a balance stream sent nothing within 10 s")
		}
	}
	c := e.newClient(9)
	defer c.close()
	h := newHist()
	for n := 0; n < sseSamples && ctx.Err() == nil; n++ {
		i := n % k
		for len(streams[i]) > 0 {
			<-streams[i]
		}
		sent := time.Now()
		o := c.purchase(i, n%len(e.stores))
		if !o.ok {
			errs.addStatus(o.status)
			continue
		}
		select {
		case a := <-streams[i]:
			h.record(a.at.Sub(sent))
		case <-time.After(10 * time.Second):
			errs.add("no event within 10 s", 1)
		}
		// A light load: the latency of one change, not of a queue.
		time.Sleep(20 * time.Millisecond)
	}
	return h, errs, ctx.Err()
}
