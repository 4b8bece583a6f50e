package main

// The delivery reference of the events phase (issue 14): the work the
// sinks add to a purchase, done without the engine, to tell what the
// engine costs from what delivery itself costs on this machine. For each
// event of the phase's last purchases (read back from the engine's log,
// so the bodies are the engine's own), it makes the §14 delivery — a POST
// of the event JSON with its three headers, signed with HMAC-SHA256 over
// "<t>.<body>", through a keep-alive fasthttp client, up to 8 at once, to
// the bench's receiver — and the JetStream publish with Nats-Msg-Id,
// asynchronous with a window of acknowledgements, as the NATS sink does.
// Nothing is read from or written to a database, nothing is retried or
// recorded. What the machine spends on it (every core, from /proc/stat:
// the receiver, nats-server and this process) bounds the events phase:
// with the cores busy, purchases with the sinks cannot exceed
// cores / ((plain purchase's machine CPU + this) × plain throughput).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"

	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
)

// machineBusy is the CPU time every core of the machine has spent busy
// since boot (/proc/stat: all but idle and iowait), or false where there
// is no /proc/stat.
func machineBusy() (time.Duration, bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "cpu ") {
		return 0, false
	}
	var busy int64
	for i, field := range strings.Fields(line)[1:] {
		v, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return 0, false
		}
		// user nice system idle iowait irq softirq steal (guest time is
		// already in user)
		if i != 3 && i != 4 && i < 8 {
			busy += v
		}
	}
	return time.Duration(busy) * time.Second / 100, true // USER_HZ
}

// deliveryRef delivers evs as the sinks would (see above) and returns the
// machine's busy CPU time per event.
func deliveryRef(ctx context.Context, evs []json.RawMessage, hookURL, natsURL, subject string) (time.Duration, error) {
	type wire struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	heads := make([]wire, len(evs))
	for i, ev := range evs {
		if err := json.Unmarshal(ev, &heads[i]); err != nil {
			return 0, fmt.Errorf("delivery reference: an event: %w", err)
		}
	}
	nc, err := nats.Connect(natsURL, nats.Timeout(3*time.Second))
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		return 0, err
	}
	fc := &fasthttp.Client{MaxConnsPerHost: 8, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	secret := "whsec_reference"
	var (
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	busy0, ok0 := machineBusy()
	// Webhooks: 8 at once, as the dispatcher's default per endpoint.
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(res)
			for i := range next {
				body := evs[i]
				req.Reset()
				req.SetRequestURI(hookURL)
				req.Header.SetMethod("POST")
				req.Header.SetContentType("application/json")
				req.Header.Set("Loyalty-Event-Id", heads[i].ID)
				req.Header.Set("Loyalty-Event-Type", heads[i].Type)
				req.Header.Set(webhooks.HeaderSignature, webhooks.Sign(secret, time.Now(), body))
				req.SetBodyRaw(body)
				if err := fc.DoTimeout(req, res, 10*time.Second); err != nil {
					fail(err)
				} else if res.StatusCode()/100 != 2 {
					fail(fmt.Errorf("the receiver answered %d", res.StatusCode()))
				}
			}
		})
	}
	// NATS: asynchronous publishes in log order, as the sink.
	wg.Go(func() {
		for i, body := range evs {
			m := &nats.Msg{Subject: subject + ".reference." + heads[i].Type, Data: body, Header: nats.Header{}}
			m.Header.Set(nats.MsgIdHdr, "ref-"+heads[i].ID)
			if _, err := js.PublishMsgAsync(m); err != nil {
				fail(err)
				return
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			fail(ctx.Err())
		case <-time.After(time.Minute):
			fail(errors.New("JetStream did not acknowledge the publishes within a minute"))
		}
	})
	for i := range evs {
		next <- i
	}
	close(next)
	wg.Wait()
	busy1, ok1 := machineBusy()
	if firstErr != nil {
		return 0, fmt.Errorf("delivery reference: %w", firstErr)
	}
	if !ok0 || !ok1 {
		return 0, errors.New("delivery reference: no /proc/stat to measure the machine's CPU with")
	}
	return (busy1 - busy0) / time.Duration(len(evs)), nil
}

// deliveryBound is the highest share of plain purchases the events phase
// can reach when a plain purchase costs plainCPU of the machine's CPU at
// plain purchases/s and its events' delivery costs deliveryCPU more.
func deliveryBound(plainCPU, deliveryCPU time.Duration, plain float64) float64 {
	if plainCPU+deliveryCPU <= 0 || plain <= 0 {
		return 0
	}
	capacity := float64(runtime.NumCPU()) / (plainCPU + deliveryCPU).Seconds() // purchases/s with every core busy
	return min(1, capacity/plain)
}

// deliveryRefResult is what the delivery reference found.
type deliveryRefResult struct {
	note  string
	bound float64
}

// deliveryReference runs deliveryRef on the bodies the receiver kept from
// the events phase r, whose plain purchases phase cost plainCPU of the
// machine per purchase at plain purchases/s.
func (b *bench) deliveryReference(ctx context.Context, r *phaseResult, plainCPU time.Duration, plain float64,
	hooks *hookReceiver, delivered int64, ns *natsStream) (*deliveryRefResult, error) {
	bodies := hooks.bodies()
	if len(bodies) == 0 || r.total.ok == 0 || plainCPU <= 0 {
		return nil, errors.New("delivery reference: nothing to measure it on")
	}
	// Events per purchase as the phase delivered them: purchase.created,
	// balance.changed and now and then tier.changed.
	evPer := float64(delivered) / float64(r.total.ok)
	b.logf("  delivery reference: %d events without the engine", len(bodies))
	perEvent, err := deliveryRef(ctx, bodies, hooks.url(), b.opt.natsURL, ns.subject)
	if err != nil {
		return nil, err
	}
	delivery := time.Duration(float64(perEvent) * evPer)
	sinksCPU, _ := r.busyPerOK()
	bound := deliveryBound(plainCPU, delivery, plain)
	return &deliveryRefResult{bound: bound, note: fmt.Sprintf("machine CPU per purchase (every core, /proc/stat): plain %s, "+
		"with the sinks %s; the delivery work alone, without the engine (delivery.go: %d of the phase's deliveries, each a signed "+
		"POST to the same receiver and a JetStream publish), %s per purchase (%.2f events), which leaves room on %d cores for at most "+
		"%d%% of plain purchases", fmtMicros(plainCPU), fmtMicros(sinksCPU), len(bodies), fmtMicros(delivery), evPer, runtime.NumCPU(),
		int(bound*100))}, nil
}

func fmtMicros(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) + " µs" }
