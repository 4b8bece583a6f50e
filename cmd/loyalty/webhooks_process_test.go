package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
)

// TestWebhooksTwoProcesses: two `loyalty serve` processes on one
// PostgreSQL database (LOYALTY_JOBS=off) deliver a webhook's events with
// every attempt made once — each event's first attempt answered 500, so
// each arrives exactly twice, never two attempts at once — and when one
// process gets SIGTERM it exits cleanly and the other delivers the rest.
func TestWebhooksTwoProcesses(t *testing.T) {
	dbURL := createDatabase(t, postgresBase(t), "wh")
	t.Setenv("LOYALTY_WEBHOOK_FIRST_RETRY", "200ms") // the engines inherit the environment
	a, b := newEngine(t, dbURL), newEngine(t, dbURL)
	a.start()
	b.start()
	wa, wb := newWorkload(t, a), newWorkload(t, b)

	var mu sync.Mutex
	tries, inflight := map[string]int{}, map[string]int{}
	var secret string
	var bad []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get(webhooks.HeaderEventID)
		mu.Lock()
		tries[id]++
		n := tries[id]
		inflight[id]++
		if inflight[id] > 1 {
			bad = append(bad, id+": two attempts at once")
		}
		if webhooks.Verify(secret, r.Header.Get(webhooks.HeaderSignature), body, time.Now(), time.Minute) != nil {
			bad = append(bad, id+": bad signature")
		}
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // an attempt that overlapped another would be seen
		mu.Lock()
		inflight[id]--
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)

	st, _, body, err := wa.do("POST", "/v1/webhooks", "", mustJSON(map[string]any{"url": srv.URL, "events": []string{"purchase.created"}}))
	if err != nil || st != http.StatusCreated {
		t.Fatalf("create webhook: %d %s %v", st, body, err)
	}
	var hook webhooks.Webhook
	if err := json.Unmarshal(body, &hook); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	secret = hook.Secret
	mu.Unlock()

	members := make([]string, 4)
	for i := range members {
		st, _, body, err := wa.do("POST", "/v1/members", "", mustJSON(map[string]any{"external_id": fmt.Sprintf("WH-%d-%s", i, randomHex(3))}))
		if err != nil || st != http.StatusCreated {
			t.Fatalf("enrol: %d %s %v", st, body, err)
		}
		members[i] = idOf(t, body)
	}
	purchases := 0
	buy := func(w *workload, n int) {
		for i := 0; i < n; i++ {
			purchases++
			st, _, body, err := w.do("POST", "/v1/purchases", "", mustJSON(map[string]any{"member_id": members[purchases%len(members)],
				"external_id": fmt.Sprintf("WHP-%d-%s", purchases, randomHex(3)), "store_id": "s1", "currency": "USD", "total": 1000}))
			if err != nil || st != http.StatusCreated {
				t.Fatalf("purchase: %d %s %v", st, body, err)
			}
		}
	}
	delivered := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range tries {
			if c >= 2 {
				n++
			}
		}
		return n
	}
	wait := func(n int) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for delivered() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d events delivered", delivered(), n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	buy(wa, 10)
	buy(wb, 10)
	wait(20)

	// SIGTERM: the process stops at once and cleanly, handing its leases back.
	cmd, begun := a.cmd, time.Now()
	a.stop()
	if !cmd.ProcessState.Success() {
		t.Fatalf("SIGTERM: engine a exited %v", cmd.ProcessState)
	}
	t.Logf("engine a stopped %s after SIGTERM", time.Since(begun).Round(time.Millisecond))
	buy(wb, 10)
	wait(30)
	mu.Lock()
	defer mu.Unlock()
	for _, s := range bad {
		t.Error(s)
	}
	if len(tries) != 30 {
		t.Errorf("%d distinct events requested, want 30", len(tries))
	}
	for id, n := range tries {
		if n != 2 {
			t.Errorf("event %s requested %d times, want 2 (one failure, one retry)", id, n)
		}
	}
}
