package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/natsink/natstest"
	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
)

// TestCrashDeliversEveryEvent SIGKILLs `loyalty serve`, configured with the
// NATS sink and a webhook to a loopback receiver, twice during a burst of
// purchases, redemptions and returns (retried with their keys, as in
// TestCrashLosesNothing) and of purchases whose client gives up at the
// first lost answer. After the last restart the stream holds every event
// of the log exactly once and in the log's order; the receiver got, with
// valid signatures, every event since the webhook's creation at least once
// and nothing else; every committed purchase has its purchase.created event
// in both, and no event names a purchase that did not commit.
func TestCrashDeliversEveryEvent(t *testing.T) {
	url := natstest.URL(t)
	t.Run("sqlite", func(t *testing.T) {
		eventsCrashTest(t, url, sqliteURL(t))
	})
	t.Run("postgres", func(t *testing.T) {
		base := postgresBase(t)
		eventsCrashTest(t, url, createDatabase(t, base, "loyalty_evcrash"))
	})
}

func eventsCrashTest(t *testing.T, natsURL, dbURL string) {
	kills, requests, members, workers := 2, 240, 10, 5
	if fullRun() {
		kills, requests, members, workers = 6, 2000, 30, 10
	}
	stream, subject := natstest.Names(t, natsURL)
	e := newEngine(t, dbURL)
	e.env = []string{"LOYALTY_NATS_URL=" + natsURL, "LOYALTY_NATS_STREAM=" + stream, "LOYALTY_NATS_SUBJECT=" + subject}
	e.start()
	w := newWorkload(t, e)
	w.setup(members)
	rcv := newHookReceiver(t)
	hook := &op{kind: "webhook", member: -1, path: "/v1/webhooks", key: "hook-" + randomHex(6),
		body: mustJSON(map[string]any{"url": rcv.url(), "events": []string{"*"}, "description": "crash test"})}
	w.send(hook)
	if hook.status != http.StatusCreated {
		t.Fatalf("create webhook: %d %s", hook.status, hook.resp)
	}
	var created struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(hook.resp, &created); err != nil || created.Secret == "" {
		t.Fatalf("create webhook: %s", hook.resp)
	}
	rcv.setSecret(created.Secret)

	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(workers, requests, nil)
	}()
	// Purchases whose client never retries: those cut by a kill may or may
	// not have committed.
	abandoned := &abandonedPurchases{w: w, members: enrolAside(t, w, 2)}
	stopAbandon := make(chan struct{})
	var aw sync.WaitGroup
	aw.Add(1)
	go func() { defer aw.Done(); abandoned.run(stopAbandon) }()

	killed := killDuring(e, w, kills, requests, done)
	<-done
	close(stopAbandon)
	aw.Wait()
	if killed < kills {
		t.Fatalf("the load ended after %d of %d kills", killed, kills)
	}
	t.Logf("SIGKILLed the engine %d times mid-load; %s; %d purchases without retry, %d of them unanswered",
		killed, w.stats(), abandoned.sent, abandoned.lost)
	w.verify()

	svc := loyalty.NewService(openDB(t, dbURL))
	evs := positionedLog(t, svc)
	deadline := time.Now().Add(2 * time.Minute)
	for natstest.Count(t, natsURL, stream) < uint64(len(evs)) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	msgs := natstest.Messages(t, natsURL, stream)
	if len(msgs) != len(evs) {
		t.Fatalf("the stream holds %d messages, the log %d events", len(msgs), len(evs))
	}
	for i, ev := range evs {
		if msgs[i].MsgID != ev.ID || msgs[i].Subject != subject+"."+ev.Type || !bytes.Equal(msgs[i].Data, ev.JSON()) {
			t.Fatalf("message %d is %s on %s, the log's event is %s (%s)", i, msgs[i].MsgID, msgs[i].Subject, ev.ID, ev.Type)
		}
	}

	// The webhook: every event after its start, at least once, nothing else.
	var start int64
	if err := openDB(t, dbURL).DB().Raw("SELECT start_position FROM webhooks WHERE id = ?", created.ID).Scan(&start).Error; err != nil {
		t.Fatal(err)
	}
	want := map[string]loyalty.Event{}
	for _, ev := range evs {
		if ev.Position > start {
			want[ev.ID] = ev
		}
	}
	deadline = time.Now().Add(2 * time.Minute)
	for rcv.missing(want) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	rcv.check(t, want)
	if len(want) < len(committed(t, dbURL)) {
		t.Fatalf("the webhook was due %d events, fewer than the purchases", len(want))
	}

	// Every committed purchase, and only those, has its event.
	committed := committed(t, dbURL)
	var published, hooked []string
	externals := map[string]bool{}
	for _, m := range msgs {
		if m.Subject != subject+".purchase.created" {
			continue
		}
		var v struct {
			Data struct {
				ID         string `json:"id"`
				ExternalID string `json:"external_id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Data, &v); err != nil || v.Data.ID == "" {
			t.Fatalf("purchase.created without a purchase id: %s", m.Data)
		}
		published = append(published, v.Data.ID)
		externals[v.Data.ExternalID] = true
		if rcv.got(m.MsgID) {
			hooked = append(hooked, v.Data.ID)
		}
	}
	sort.Strings(committed)
	sort.Strings(published)
	sort.Strings(hooked)
	if fmt.Sprint(committed) != fmt.Sprint(published) {
		t.Fatalf("%d purchases committed, %d purchase.created published; committed without event %v, published without purchase %v",
			len(committed), len(published), diff(committed, published), diff(published, committed))
	}
	if fmt.Sprint(committed) != fmt.Sprint(hooked) {
		t.Fatalf("%d purchases committed, %d purchase.created delivered to the webhook; committed without delivery %v",
			len(committed), len(hooked), diff(committed, hooked))
	}
	var kept []string
	if err := openDB(t, dbURL).DB().Raw("SELECT external_id FROM purchases").Scan(&kept).Error; err != nil {
		t.Fatal(err)
	}
	inDB := map[string]bool{}
	for _, x := range kept {
		inDB[x] = true
	}
	for _, x := range abandoned.externalIDs() {
		if externals[x] != inDB[x] {
			t.Errorf("abandoned purchase %s: committed %v, published %v", x, inDB[x], externals[x])
		}
	}
}

// committed lists the ids of the purchases in the database.
func committed(t *testing.T, dbURL string) []string {
	t.Helper()
	var ids []string
	if err := openDB(t, dbURL).DB().Raw("SELECT id FROM purchases").Scan(&ids).Error; err != nil {
		t.Fatal(err)
	}
	return ids
}

// hookReceiver is a webhook endpoint on loopback that checks every
// delivery's signature and records the events it got.
type hookReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	secret string
	bodies map[string][]byte // by event id
	times  map[string]int
	faults []string
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{bodies: map[string][]byte{}, times: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *hookReceiver) url() string { return r.srv.URL + "/hook" }

func (r *hookReceiver) setSecret(s string) {
	r.mu.Lock()
	r.secret = s
	r.mu.Unlock()
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id := req.Header.Get("Loyalty-Event-Id")
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := webhooks.Verify(r.secret, req.Header.Get(webhooks.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		r.faults = append(r.faults, fmt.Sprintf("event %s: %v", id, err))
	}
	if prev, ok := r.bodies[id]; ok && !bytes.Equal(prev, body) {
		r.faults = append(r.faults, fmt.Sprintf("event %s delivered twice with different bodies", id))
	}
	r.bodies[id] = body
	r.times[id]++
	w.WriteHeader(http.StatusNoContent)
}

func (r *hookReceiver) got(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.times[id] > 0
}

// missing counts the events of want not received yet.
func (r *hookReceiver) missing(want map[string]loyalty.Event) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for id := range want {
		if r.times[id] == 0 {
			n++
		}
	}
	return n
}

// check asserts that the receiver got exactly the events of want, each as
// the log has it, with valid signatures.
func (r *hookReceiver) check(t *testing.T, want map[string]loyalty.Event) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.faults[:min(len(r.faults), 5)] {
		t.Errorf("webhook: %s", f)
	}
	missing, repeats := 0, 0
	for id, ev := range want {
		switch n := r.times[id]; {
		case n == 0:
			missing++
		case !bytes.Equal(r.bodies[id], ev.JSON()):
			t.Errorf("webhook: event %s body %s, the log's %s", id, r.bodies[id], ev.JSON())
		case n > 1:
			repeats++
		}
	}
	for id := range r.times {
		if _, ok := want[id]; !ok {
			t.Errorf("webhook: got event %s, which is not in the log after the webhook's start", id)
		}
	}
	if missing > 0 {
		t.Fatalf("webhook: %d of %d events never delivered", missing, len(want))
	}
	t.Logf("webhook: %d events delivered, %d of them more than once", len(want), repeats)
}

// positionedLog reads the whole event log once every committed event has
// its position (the engine's sequencer gives them on PostgreSQL).
func positionedLog(t *testing.T, svc *loyalty.Service) []loyalty.Event {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var out []loyalty.Event
		var after int64
		for {
			evs, err := svc.EventsAfter(context.Background(), after, loyalty.EventFilter{}, 1000)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, evs...)
			if len(evs) < 1000 {
				break
			}
			after = evs[len(evs)-1].Position
		}
		var all int64
		if err := svc.Store().DB().Raw("SELECT count(*) FROM events").Scan(&all).Error; err != nil {
			t.Fatal(err)
		}
		if int64(len(out)) == all {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events positioned", len(out), all)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// abandonedPurchases posts purchases once each, without Idempotency-Key or
// retry, until stopped.
type abandonedPurchases struct {
	w *workload
	// members are their own, so that the workload's ledgers add up.
	members []string
	mu      sync.Mutex
	ids     []string
	sent    int
	lost    int
}

func (a *abandonedPurchases) run(stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		ext := "A-" + randomHex(8)
		member := a.members[i%len(a.members)]
		body := mustJSON(map[string]any{"member_id": member, "external_id": ext, "store_id": "store-1", "channel": "pos",
			"currency": "USD", "total": 1500})
		st, _, _, err := a.w.do(http.MethodPost, "/v1/purchases", "", body)
		a.mu.Lock()
		a.ids = append(a.ids, ext)
		a.sent++
		if err != nil || st >= 500 {
			a.lost++
		}
		a.mu.Unlock()
		if err != nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (a *abandonedPurchases) externalIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.ids...)
}

// enrolAside enrols n members outside the workload's own.
func enrolAside(t *testing.T, w *workload, n int) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		o := &op{kind: "enrol", member: -1, path: "/v1/members", key: "aside-" + randomHex(6),
			body: mustJSON(map[string]any{"external_id": "MA-" + randomHex(6), "first_name": "Aside"})}
		w.send(o)
		if o.status != http.StatusCreated {
			t.Fatalf("enrol: %d %s", o.status, o.resp)
		}
		ids = append(ids, idOf(t, o.resp))
	}
	return ids
}
