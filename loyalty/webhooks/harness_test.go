package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
)

// env is one engine's database with the webhooks service on it.
type env struct {
	t       *testing.T
	dialect string
	store   *loyalty.Store
	svc     *loyalty.Service
	hooks   *webhooks.Service
}

func newEnv(t *testing.T, dialect string) *env {
	t.Helper()
	e := &env{t: t, dialect: dialect, store: loyaltytest.MustOpen(t, dialect)}
	e.svc = loyalty.NewService(e.store)
	e.hooks = webhooks.NewService(e.svc)
	e.sequence()
	return e
}

// another is a second engine on e's database, as another serve process.
func (e *env) another() *env {
	e.t.Helper()
	o := &env{t: e.t, dialect: e.dialect, store: loyaltytest.MustOpenAgain(e.t, e.store)}
	o.svc = loyalty.NewService(o.store)
	o.hooks = webhooks.NewService(o.svc)
	o.sequence()
	return o
}

// sequence runs the sequencer every serve process runs (PostgreSQL).
func (e *env) sequence() {
	stop := e.svc.StartSequencer(context.Background(), func(err error) { e.t.Logf("sequencer: %v", err) })
	e.t.Cleanup(stop)
}

// fastConfig is a dispatcher's configuration with short waits, so that
// retries happen in a test's time; conditions are awaited, never timed.
func fastConfig() webhooks.Config {
	return webhooks.Config{Timeout: 2 * time.Second, FirstRetry: 40 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Poll: 50 * time.Millisecond, CursorTTL: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// dispatch runs a dispatcher until the test ends.
func (e *env) dispatch(cfg webhooks.Config) (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := webhooks.NewDispatcher(e.hooks, cfg).Run(ctx); err != nil {
			e.t.Errorf("dispatcher: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return stop
}

// create registers an endpoint.
func (e *env) create(url string, events ...string) webhooks.Webhook {
	e.t.Helper()
	u := url
	w, _, err := e.hooks.Create(context.Background(), webhooks.Input{URL: &u, Events: events}, loyalty.IdempotencyKey{})
	if err != nil {
		e.t.Fatalf("create webhook: %v", err)
	}
	if !strings.HasPrefix(w.Secret, "whsec_") {
		e.t.Fatalf("secret %q", w.Secret)
	}
	return w
}

// receiving registers an endpoint for every type at a receiver that
// answers every request with 204 and checks the endpoint's signatures.
func (e *env) receiving() (*receiver, webhooks.Webhook) {
	e.t.Helper()
	r := newReceiver(e.t, ok)
	w := e.create(r.URL(), "*")
	r.setSecret(w.Secret)
	return r, w
}

// emit appends events to the log as a change's transaction does: per
// member a numbered run ("seq" in data), interleaved across members.
func (e *env) emit(typ string, members []string, perMember int) {
	e.t.Helper()
	now := time.Now().UTC()
	for i := 0; i < perMember; i++ {
		for _, m := range members {
			var member any
			if m != "" {
				member = m
			}
			data := fmt.Sprintf(`{"seq":%d}`, i)
			if err := e.store.DB().Exec("INSERT INTO events (type, member_id, occurred_at, data) VALUES (?, ?, ?, ?)",
				typ, member, now, data).Error; err != nil {
				e.t.Fatalf("emit: %v", err)
			}
		}
	}
}

// eventually waits for cond, failing after a generous deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// receipt is one request a receiver got.
type receipt struct {
	ID, Type string
	Member   string
	Seq      int
	Body     []byte
	Status   int
	ValidSig bool
	At       time.Time
}

// receiver is a webhook endpoint on loopback that checks every signature
// and answers as answer says.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	secret string
	got    []receipt
	tries  map[string]int
	// answer decides the status of the nth attempt (from 1) of an event; it
	// may block.
	answer func(id string, n int) int
}

func newReceiver(t *testing.T, answer func(id string, n int) int) *receiver {
	r := &receiver{t: t, tries: map[string]int{}, answer: answer}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func ok(string, int) int { return http.StatusNoContent }

func (r *receiver) URL() string { return r.srv.URL + "/hook?k=v" }

func (r *receiver) setSecret(s string) {
	r.mu.Lock()
	r.secret = s
	r.mu.Unlock()
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var ev struct {
		ID         string  `json:"id"`
		Type       string  `json:"type"`
		OccurredAt string  `json:"occurred_at"`
		MemberID   *string `json:"member_id"`
		Data       struct {
			Seq int `json:"seq"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		r.t.Errorf("body is not an event: %v: %s", err, body)
	}
	member := ""
	if ev.MemberID != nil {
		member = *ev.MemberID
	}
	r.mu.Lock()
	secret := r.secret
	r.tries[ev.ID]++
	n := r.tries[ev.ID]
	r.mu.Unlock()
	valid := webhooks.Verify(secret, req.Header.Get(webhooks.HeaderSignature), body, time.Now(), 5*time.Minute) == nil
	if req.Header.Get(webhooks.HeaderEventID) != ev.ID || req.Header.Get(webhooks.HeaderEventType) != ev.Type {
		r.t.Errorf("headers %q %q for event %s %s", req.Header.Get(webhooks.HeaderEventID), req.Header.Get(webhooks.HeaderEventType), ev.ID, ev.Type)
	}
	status := r.answer(ev.ID, n)
	r.mu.Lock()
	r.got = append(r.got, receipt{ID: ev.ID, Type: ev.Type, Member: member, Seq: ev.Data.Seq, Body: body, Status: status, ValidSig: valid, At: time.Now()})
	r.mu.Unlock()
	w.WriteHeader(status)
}

func (r *receiver) receipts() []receipt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// delivered is the ids answered with 2xx.
func (r *receiver) delivered() map[string]bool {
	out := map[string]bool{}
	for _, g := range r.receipts() {
		if g.Status >= 200 && g.Status < 300 {
			out[g.ID] = true
		}
	}
	return out
}

// checkDelivery asserts §14's guarantees over what a receiver got for
// members × perMember events (perMember 0: any number): every event delivered (2xx) at least once,
// every request validly signed, the same id always with the same body,
// and per member the events first delivered in log order.
func checkDelivery(t *testing.T, r *receiver, members []string, perMember int) {
	t.Helper()
	got := r.receipts()
	bodies := map[string][]byte{}
	next := map[string]int{} // per member, the seq expected next to be delivered first
	seen := map[string]bool{}
	for _, g := range got {
		if !g.ValidSig {
			t.Errorf("event %s: invalid signature", g.ID)
		}
		if b, ok := bodies[g.ID]; ok && string(b) != string(g.Body) {
			t.Errorf("event %s sent twice with different bodies", g.ID)
		}
		bodies[g.ID] = g.Body
		if g.Status < 200 || g.Status >= 300 || seen[g.ID] {
			continue
		}
		seen[g.ID] = true
		if g.Member != "" {
			if g.Seq != next[g.Member] {
				t.Errorf("member %s: delivered seq %d while %d was expected next (per-member order broken)", g.Member, g.Seq, next[g.Member])
			}
			next[g.Member] = g.Seq + 1
		}
	}
	for _, m := range members {
		if m != "" && perMember > 0 && next[m] != perMember {
			t.Errorf("member %s: %d of %d events delivered", m, next[m], perMember)
		}
	}
}

func members(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "m" + strconv.Itoa(i)
	}
	return out
}

// freeAddr is a loopback address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// deliveries lists an endpoint's deliveries with the status ("" all).
func (e *env) deliveries(id, status string) []webhooks.Delivery {
	e.t.Helper()
	var out []webhooks.Delivery
	p := loyalty.Page{Limit: 500}
	for {
		l, err := e.hooks.Deliveries(context.Background(), id, webhooks.DeliveryQuery{Status: status, Page: p})
		if err != nil {
			e.t.Fatalf("deliveries: %v", err)
		}
		out = append(out, l.Items...)
		if l.NextCursor == nil {
			return out
		}
		p.Cursor = *l.NextCursor
	}
}
