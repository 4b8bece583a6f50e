package webhooks_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
)

// TestFailingReceiver: an endpoint answering 500 to its first requests
// gets every event at least once, validly signed, each member's in log
// order; the failures left rows that retries delivered.
func TestFailingReceiver(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		var calls atomic.Int32
		r := newReceiver(t, func(id string, n int) int {
			if calls.Add(1) <= 25 {
				return http.StatusInternalServerError
			}
			return http.StatusOK
		})
		w := e.create(r.URL(), "*")
		r.setSecret(w.Secret)
		reg := prometheus.NewRegistry()
		cfg := fastConfig()
		cfg.Registry = reg
		e.dispatch(cfg)
		ms := members(6)
		e.emit("purchase.created", append(ms, ""), 8)
		eventually(t, "every event delivered", func() bool { return len(r.delivered()) == 7*8 })
		checkDelivery(t, r, ms, 8)
		eventually(t, "no open deliveries", func() bool {
			return len(e.deliveries(w.ID, webhooks.Pending))+len(e.deliveries(w.ID, webhooks.Held)) == 0
		})
		all := e.deliveries(w.ID, "")
		if len(all) != 7*8 {
			t.Fatalf("%d delivery rows, want one per event (%d)", len(all), 7*8)
		}
		retried := 0
		for _, d := range all {
			if d.Status != webhooks.Delivered || d.StatusCode == nil || *d.StatusCode != 200 || d.LatencyMS == nil || d.DeliveredAt == nil {
				t.Fatalf("delivery %+v", d)
			}
			if d.Attempts > 1 {
				retried++
			}
		}
		if retried == 0 {
			t.Fatal("no delivery needed a retry")
		}
		// The metrics count every attempt: 25 failed, one success per event.
		if got := attempts(t, reg, "failed"); got != 25 {
			t.Errorf("failed attempts counted %v, want 25", got)
		}
		if got := attempts(t, reg, "delivered"); got != 7*8 {
			t.Errorf("delivered attempts counted %v, want %d", got, 7*8)
		}
	})
}

// TestTimeoutReceiver: an endpoint that does not answer within the timeout
// is retried, and every event arrives.
func TestTimeoutReceiver(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		release := make(chan struct{})
		var hung atomic.Int32
		r := newReceiver(t, func(id string, n int) int {
			if n == 1 && hung.Add(1) <= 3 {
				<-release // never answers in time
			}
			return http.StatusOK
		})
		t.Cleanup(func() { close(release) }) // before the receiver closes: cleanups run last first
		w := e.create(r.URL(), "*")
		r.setSecret(w.Secret)
		cfg := fastConfig()
		cfg.Timeout = 300 * time.Millisecond
		e.dispatch(cfg)
		ms := members(3)
		e.emit("balance.changed", ms, 4)
		eventually(t, "every event delivered", func() bool { return len(r.delivered()) == 12 })
		checkDelivery(t, r, ms, 4)
		timedOut := 0
		eventually(t, "rows settled", func() bool { return len(e.deliveries(w.ID, webhooks.Delivered)) == 12 })
		for _, d := range e.deliveries(w.ID, "") {
			if d.Attempts > 1 {
				timedOut++
			}
		}
		if timedOut == 0 {
			t.Fatal("no delivery was retried after a timeout")
		}
	})
}

// TestDownThenUp: nothing listens at the endpoint's address for a while;
// once a server does, everything sent meanwhile arrives, in order.
func TestDownThenUp(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		addr := freeAddr(t)
		w := e.create("http://"+addr+"/hook", "purchase.*", "balance.changed")
		e.dispatch(fastConfig())
		ms := members(4)
		e.emit("purchase.created", ms, 3)
		eventually(t, "failures recorded", func() bool {
			for _, d := range e.deliveries(w.ID, webhooks.Pending) {
				if d.Attempts >= 2 && d.Error != nil && d.StatusCode == nil {
					return true
				}
			}
			return false
		})
		e.emit("balance.changed", ms, 2)
		// Each member's later events wait behind its failing first one.
		eventually(t, "later events held", func() bool { return len(e.deliveries(w.ID, webhooks.Held)) == 4*4 })

		r := &receiver{t: t, tries: map[string]int{}, answer: ok, secret: w.Secret}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("address taken meanwhile: %v", err)
		}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
		srv.Listener.Close()
		srv.Listener = l
		srv.Start()
		t.Cleanup(srv.Close)
		eventually(t, "every event delivered", func() bool { return len(r.delivered()) == 4*5 })
		got := r.receipts()
		for _, m := range ms {
			var types []string
			for _, g := range got {
				if g.Member == m {
					types = append(types, g.Type)
				}
			}
			for i, typ := range types {
				want := "purchase.created"
				if i >= 3 {
					want = "balance.changed"
				}
				if typ != want {
					t.Fatalf("member %s got %v: out of order", m, types)
				}
			}
		}
	})
}

// TestSlowDoesNotDelayFast: one endpoint that does not answer at all holds
// up none of another endpoint's deliveries: the fast one gets everything
// while the slow one is still stuck.
func TestSlowDoesNotDelayFast(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		release := make(chan struct{})
		var once sync.Once
		free := func() { once.Do(func() { close(release) }) }
		slow := newReceiver(t, func(string, int) int { <-release; return http.StatusOK })
		t.Cleanup(free)
		fast := newReceiver(t, ok)
		ws := e.create(slow.URL(), "*")
		wf := e.create(fast.URL(), "*")
		slow.setSecret(ws.Secret)
		fast.setSecret(wf.Secret)
		cfg := fastConfig()
		cfg.Timeout = 10 * time.Minute // the slow endpoint stays stuck until released
		e.dispatch(cfg)
		ms := members(5)
		e.emit("purchase.created", ms, 6)
		eventually(t, "the fast endpoint got everything", func() bool { return len(fast.delivered()) == 30 })
		if n := len(slow.delivered()); n != 0 {
			t.Fatalf("the slow endpoint answered %d while blocked", n)
		}
		checkDelivery(t, fast, ms, 6)
		free()
		eventually(t, "the slow endpoint got everything", func() bool { return len(slow.delivered()) == 30 })
		checkDelivery(t, slow, ms, 6)
	})
}

// TestDeadLetterAndManualRetry: a delivery failing for the whole retry
// window is failed; it no longer holds its member's later events; retried
// by hand it is delivered.
func TestDeadLetterAndManualRetry(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		var healthy atomic.Bool
		var poison atomic.Value
		poison.Store("")
		r := newReceiver(t, func(id string, n int) int {
			if healthy.Load() {
				return http.StatusOK
			}
			if poison.Load() == "" {
				poison.Store(id)
			}
			if poison.Load() == id {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		})
		w := e.create(r.URL(), "*")
		r.setSecret(w.Secret)
		cfg := fastConfig()
		cfg.RetryWindow = 400 * time.Millisecond
		e.dispatch(cfg)
		e.emit("points.adjusted", []string{"m1"}, 3)
		eventually(t, "a dead letter", func() bool { return len(e.deliveries(w.ID, webhooks.Failed)) == 1 })
		// The member's later events were held, then delivered once the first was given up.
		eventually(t, "the later events delivered", func() bool { return len(r.delivered()) == 2 })
		dead := e.deliveries(w.ID, webhooks.Failed)[0]
		if dead.EventID != poison.Load() || dead.Attempts < 2 || dead.StatusCode == nil || *dead.StatusCode != 503 || dead.NextAttemptAt != nil {
			t.Fatalf("dead letter %+v (poison %v)", dead, poison.Load())
		}
		healthy.Store(true)
		d, err := e.hooks.Retry(context.Background(), w.ID, dead.ID)
		if err != nil || d.Status != webhooks.Pending {
			t.Fatalf("retry: %+v %v", d, err)
		}
		eventually(t, "the dead letter delivered", func() bool { return r.delivered()[dead.EventID] })
		eventually(t, "its row delivered", func() bool { return len(e.deliveries(w.ID, webhooks.Delivered)) == 3 })
		if _, err := e.hooks.Retry(context.Background(), w.ID, dead.ID); loyalty.ErrorOf(err).Code != loyalty.Conflict {
			t.Fatalf("retry of a delivered delivery: %v", err)
		}
		if _, err := e.hooks.Retry(context.Background(), w.ID, "nope"); loyalty.ErrorOf(err).Code != loyalty.NotFound {
			t.Fatalf("retry of no delivery: %v", err)
		}
	})
}

// TestSecretRotation: deliveries after a rotation are signed with the new
// secret only.
func TestSecretRotation(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		r, w := e.receiving()
		e.dispatch(fastConfig())
		e.emit("member.created", []string{"m1"}, 1)
		eventually(t, "first event", func() bool { return len(r.delivered()) == 1 })
		rot, err := e.hooks.RotateSecret(context.Background(), w.ID)
		if err != nil || rot.Secret == "" || rot.Secret == w.Secret {
			t.Fatalf("rotate: %+v %v", rot, err)
		}
		if g, _ := e.hooks.Get(context.Background(), w.ID); g.Secret != "" {
			t.Fatal("GET shows the secret")
		}
		r.setSecret(rot.Secret)
		e.emit("member.updated", []string{"m1"}, 1)
		eventually(t, "second event", func() bool { return len(r.delivered()) == 2 })
		got := r.receipts()
		last := got[len(got)-1]
		if !last.ValidSig {
			t.Fatal("delivery after rotation not signed with the new secret")
		}
		if webhooks.Verify(w.Secret, "", nil, time.Now(), 0) == nil {
			t.Fatal("empty header verified")
		}
	})
}

// TestFilters: an endpoint receives the types its filters select, only.
func TestFilters(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		tier := newReceiver(t, ok)
		purchase := newReceiver(t, ok)
		wt := e.create(tier.URL(), "tier.*")
		wp := e.create(purchase.URL(), "purchase.created", "purchase.created")
		if len(wp.Events) != 1 {
			t.Fatalf("filters not deduplicated: %v", wp.Events)
		}
		tier.setSecret(wt.Secret)
		purchase.setSecret(wp.Secret)
		e.dispatch(fastConfig())
		e.emit("tier.changed", []string{"m1"}, 2)
		e.emit("purchase.created", []string{"m1"}, 3)
		e.emit("purchase.returned", []string{"m1"}, 1)
		e.emit("balance.changed", []string{"m1"}, 1)
		eventually(t, "deliveries", func() bool { return len(tier.delivered()) == 2 && len(purchase.delivered()) == 3 })
		// A marker event both select comes after the rest: once it is in,
		// nothing else is on its way.
		e.emit("tier.changed", []string{"m2"}, 1)
		e.emit("purchase.created", []string{"m2"}, 1)
		eventually(t, "markers", func() bool { return len(tier.delivered()) == 3 && len(purchase.delivered()) == 4 })
		for _, g := range tier.receipts() {
			if g.Type != "tier.changed" {
				t.Fatalf("tier.* got %s", g.Type)
			}
		}
		for _, g := range purchase.receipts() {
			if g.Type != "purchase.created" {
				t.Fatalf("purchase.created got %s", g.Type)
			}
		}
	})
}

// TestStartsAtCreation: an endpoint gets the events committed after it
// was created, not the log before.
func TestStartsAtCreation(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.emit("member.created", []string{"old"}, 2)
		eventually(t, "old events positioned", func() bool { h, _ := e.svc.EventsHead(context.Background()); return h >= 2 })
		r, _ := e.receiving()
		e.dispatch(fastConfig())
		e.emit("member.created", []string{"new"}, 1)
		eventually(t, "the new event", func() bool { return len(r.delivered()) == 1 })
		if g := r.receipts()[0]; g.Member != "new" {
			t.Fatalf("got %+v", g)
		}
	})
}

// TestTakeOverAfterCrash: an engine that took an endpoint's lease and a
// retry's lease and died (never released them) delays those deliveries
// until the leases expire; then another engine makes them. None is lost.
func TestTakeOverAfterCrash(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		var failFirst atomic.Bool
		failFirst.Store(true)
		r := newReceiver(t, func(id string, n int) int {
			if failFirst.Load() {
				return http.StatusInternalServerError
			}
			return http.StatusOK
		})
		w := e.create(r.URL(), "*")
		r.setSecret(w.Secret)
		// The first engine: leases of a few seconds, stopped without
		// handing them back (as a crash would).
		crashed := e.another()
		cfg := fastConfig()
		cfg.Owner, cfg.CursorTTL, cfg.LeaseTTL = "crashed", 2*time.Second, 2*time.Second
		stop := crashed.dispatch(cfg)
		e.emit("purchase.created", []string{"m1"}, 2)
		eventually(t, "a pending delivery", func() bool { return len(e.deliveries(w.ID, webhooks.Pending)) == 1 })
		stop()
		ctx := context.Background()
		// A crash leaves the leases held: take them again as the dead owner.
		if _, ok, err := e.svc.ClaimCursor(ctx, "webhook:"+w.ID, "crashed", cfg.CursorTTL); err != nil || !ok {
			t.Fatalf("claim as the crashed engine: %v %v", ok, err)
		}
		if err := e.store.DB().Exec("UPDATE webhook_deliveries SET lease_owner = 'crashed', lease_until = ?, next_attempt_at = ? WHERE status = 'pending'",
			time.Now().UTC().Add(cfg.LeaseTTL), time.Now().UTC()).Error; err != nil {
			t.Fatal(err)
		}
		failFirst.Store(false)
		e.emit("purchase.created", []string{"m2"}, 1)
		e.dispatch(fastConfig())
		eventually(t, "everything delivered by the survivor", func() bool { return len(r.delivered()) == 3 })
		checkDelivery(t, r, []string{"m1", "m2"}, 0)
	})
}

// TestTwoEngines: two engines on one database share the work (endpoints'
// places in the log go to whichever takes the lease, retries to whichever
// claims them) and make every attempt once: with each event's first attempt
// failing, every endpoint gets every event exactly twice.
func TestTwoEngines(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		o := e.another()
		var rs []*receiver
		var ws []webhooks.Webhook
		for range 3 {
			r := newReceiver(t, func(id string, n int) int {
				if n == 1 {
					return http.StatusBadGateway
				}
				return http.StatusOK
			})
			w := e.create(r.URL(), "*")
			r.setSecret(w.Secret)
			rs, ws = append(rs, r), append(ws, w)
		}
		cfg := fastConfig()
		cfg.Owner = "engine-a"
		e.dispatch(cfg)
		cfg.Owner = "engine-b"
		o.dispatch(cfg)
		ms := members(8)
		e.emit("purchase.created", ms, 5)
		o.emit("purchase.created", ms, 5)
		for i, r := range rs {
			eventually(t, "every event delivered", func() bool { return len(r.delivered()) == 80 })
			eventually(t, "every row settled", func() bool { return len(e.deliveries(ws[i].ID, webhooks.Delivered)) == 80 })
			r.mu.Lock()
			for id, n := range r.tries {
				if n != 2 {
					t.Errorf("endpoint %d: event %s requested %d times, want 2 (one failure, one retry)", i, id, n)
				}
			}
			r.mu.Unlock()
		}
	})
}

// TestHistoryPruned: delivered rows and batch rows older than HistoryKept
// leave the history, several transactions' worth of them; dead letters stay
// until retried, and so do rows delivered since the cutoff, also one made
// before it and delivered by a late retry.
func TestHistoryPruned(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		w := e.create("http://127.0.0.1:9/none", "*")
		now := time.Now().UTC()
		old := now.Add(-40 * 24 * time.Hour)
		add := func(n int, status string, made, updated time.Time) {
			t.Helper()
			if err := e.store.DB().Exec(`INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_position, event_type, status,
				attempts, created_at, updated_at) VALUES (?, ?, ?, ?, 'member.created', ?, 1, ?, ?)`,
				loyalty.IDFloor(made)+fmt.Sprintf("-7000-8000-%012d", n), w.ID, n, n, status, made, updated).Error; err != nil {
				t.Fatal(err)
			}
		}
		webhooks.SetPruneChunk(t, 4)
		many := 10
		for i := range many {
			add(i+1, webhooks.Delivered, old.Add(time.Duration(i)*time.Millisecond), old)
		}
		add(many+1, webhooks.Failed, old, old)
		add(many+2, webhooks.Delivered, old, now) // a late retry's delivery
		add(many+3, webhooks.Delivered, now, now) // today's
		// Batch rows: three old ones (a transaction each, at this chunk)
		// and today's, of two deliveries each.
		batch := func(n int, made time.Time) {
			t.Helper()
			at := made.UnixMicro()
			items := fmt.Sprintf(`[{"e":%d,"t":"member.created","n":1,"at":%d,"ok":%d},{"e":%d,"t":"member.created","n":1,"at":%d,"ok":%d}]`,
				n, at, at, n+1, at, at)
			if err := e.store.DB().Exec(`INSERT INTO webhook_delivered (webhook_id, id, first_event_id, last_event_id, events, created_at, items)
				VALUES (?, ?, ?, ?, 2, ?, ?)`, w.ID, loyalty.IDFloor(made)+fmt.Sprintf("-7000-8000-%08d0000", n), n, n+1, made, items).Error; err != nil {
				t.Fatal(err)
			}
		}
		for i := range 3 {
			batch(100+2*i, old.Add(time.Duration(i)*time.Millisecond))
		}
		batch(200, now)
		e.dispatch(fastConfig())
		eventually(t, "old history pruned", func() bool { return len(e.deliveries(w.ID, webhooks.Delivered)) == 2+2 })
		if f := e.deliveries(w.ID, webhooks.Failed); len(f) != 1 {
			t.Fatalf("dead letters %+v", f)
		}
	})
}

// attempts is loyalty_webhook_attempts_total{outcome} in reg.
func attempts(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "loyalty_webhook_attempts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestRecordedBeyondCursor: an engine that recorded a batch's deliveries
// and stopped before its cursor moved past them (as an engine did before a
// batch's rows and its cursor were one write) left delivery rows, or a
// batch row, beyond the cursor: the next holder does not send those events
// again, and sends the rest.
func TestRecordedBeyondCursor(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		for _, kind := range []string{"a delivery row", "a batch row"} {
			t.Run(kind, func(t *testing.T) {
				e := newEnv(t, dialect)
				r, w := e.receiving()
				e.emit("purchase.created", []string{"m1"}, 3)
				ctx := context.Background()
				var evs []loyalty.Event
				eventually(t, "the events positioned", func() bool {
					var err error
					evs, err = e.svc.EventsAfter(ctx, 0, loyalty.EventFilter{MemberID: "m1"}, 10)
					return err == nil && len(evs) == 3
				})
				first := evs[0]
				n, _ := strconv.ParseInt(strings.TrimPrefix(first.ID, "evt_"), 10, 64)
				now := time.Now().UTC()
				record := `INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_position, event_type, member_id,
					status, attempts, created_at, updated_at, delivered_at) VALUES (?, ?, ?, ?, ?, ?, 'delivered', 1, ?, ?, ?)`
				args := []any{loyalty.NewID(), w.ID, n, first.Position, first.Type, "m1", now, now, now}
				if kind == "a batch row" {
					at := now.UnixMicro()
					record = `INSERT INTO webhook_delivered (webhook_id, id, first_event_id, last_event_id, events, created_at, items)
						VALUES (?, ?, ?, ?, 1, ?, ?)`
					args = []any{w.ID, loyalty.IDFloor(now) + "-7000-8000-000000000000", n, n, now,
						fmt.Sprintf(`[{"e":%d,"t":%q,"m":"m1","n":1,"at":%d,"ok":%d}]`, n, first.Type, at, at)}
				}
				if err := e.store.DB().Exec(record, args...).Error; err != nil {
					t.Fatal(err)
				}
				e.dispatch(fastConfig())
				eventually(t, "the other two delivered", func() bool { return len(r.delivered()) == 2 })
				e.emit("purchase.created", []string{"m1"}, 1)
				eventually(t, "the next one delivered", func() bool { return len(r.delivered()) == 3 })
				for _, g := range r.receipts() {
					if g.ID == first.ID {
						t.Fatalf("event %s, recorded before the cursor moved past it, was sent again", first.ID)
					}
				}
				// Deliveries are recorded once a batch's requests are answered.
				eventually(t, "four deliveries", func() bool { return len(e.deliveries(w.ID, webhooks.Delivered)) == 4 })
			})
		}
	})
}

// TestLargeBatch: a batch of more events than one insert writes records a
// delivery for each, and each member's events arrive in order.
func TestLargeBatch(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		r, w := e.receiving()
		ms := members(31)
		e.emit("purchase.created", ms, 5)
		e.dispatch(fastConfig())
		eventually(t, "every event delivered", func() bool { return len(r.delivered()) == 155 })
		eventually(t, "a row for every event", func() bool { return len(e.deliveries(w.ID, webhooks.Delivered)) == 155 })
		checkDelivery(t, r, ms, 5)
	})
}

// TestDeleteDuringDelivery: an endpoint deleted while its stream records
// batches leaves no delivery rows and no cursor behind (the rows have no
// foreign key to cascade from; the delete removes them after the cursor,
// whose lock a batch being recorded holds).
func TestDeleteDuringDelivery(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		_, w := e.receiving()
		stop := e.dispatch(fastConfig())
		done := make(chan struct{})
		emitted := make(chan struct{})
		go func() {
			defer close(emitted)
			for {
				select {
				case <-done:
					return
				default:
				}
				now := time.Now().UTC()
				if err := e.store.DB().Exec("INSERT INTO events (type, member_id, occurred_at, data) VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
					"purchase.created", "m1", now, `{}`, "purchase.created", "m2", now, `{}`).Error; err != nil {
					t.Errorf("emit: %v", err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		eventually(t, "deliveries recorded", func() bool { return len(e.deliveries(w.ID, webhooks.Delivered)) >= 50 })
		if err := e.hooks.Delete(context.Background(), w.ID); err != nil {
			t.Fatal(err)
		}
		close(done)
		<-emitted
		stop()
		var rows, cursors int64
		if err := e.store.DB().Raw(`SELECT (SELECT count(*) FROM webhook_deliveries WHERE webhook_id = ?)
			+ (SELECT count(*) FROM webhook_delivered WHERE webhook_id = ?)`, w.ID, w.ID).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		if err := e.store.DB().Raw("SELECT count(*) FROM event_cursors WHERE name LIKE ?", "%"+w.ID).Scan(&cursors).Error; err != nil {
			t.Fatal(err)
		}
		if rows != 0 || cursors != 0 {
			t.Fatalf("after the delete: %d delivery rows and %d cursors of the endpoint", rows, cursors)
		}
	})
}
