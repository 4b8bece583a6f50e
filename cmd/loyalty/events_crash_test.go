package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/natsink/natstest"
)

// TestCrashDeliversEveryEvent SIGKILLs `loyalty serve`, configured with the
// NATS sink, twice during a burst of purchases, redemptions and returns
// (retried with their keys, as in TestCrashLosesNothing) and of purchases
// whose client gives up at the first lost answer. After the last restart
// the stream holds every event of the log exactly once and in the log's
// order, every committed purchase has its purchase.created event there, and
// no event names a purchase that did not commit.
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

	killed := 0
	base := w.acked.Load()
	for k := 1; k <= kills; k++ {
		if !w.waitAcked(base+int64(k*requests/(kills+1)), done) {
			break
		}
		e.kill()
		killed++
		e.start()
	}
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

	// Every committed purchase, and only those, has its event.
	var committed []string
	if err := openDB(t, dbURL).DB().Raw("SELECT id FROM purchases").Scan(&committed).Error; err != nil {
		t.Fatal(err)
	}
	var published []string
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
	}
	sort.Strings(committed)
	sort.Strings(published)
	if fmt.Sprint(committed) != fmt.Sprint(published) {
		t.Fatalf("%d purchases committed, %d purchase.created published; committed without event %v, published without purchase %v",
			len(committed), len(published), diff(committed, published), diff(published, committed))
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
	mu   sync.Mutex
	ids  []string
	sent int
	lost int
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
