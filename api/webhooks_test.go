package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
)

var secretPattern = regexp.MustCompile(`^whsec_[0-9a-f]{64}$`)

// TestWebhooksAPI: the endpoints' routes, admin only; the secret appears
// in the answers of create and rotate-secret only; bad input is a problem
// naming the field.
func TestWebhooksAPI(t *testing.T) {
	doc := openapiDoc(t)
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		admin := e.admin()
		call := func(want int, method, path, tok string, body any, headers ...string) resp {
			t.Helper()
			r := e.do(method, path, tok, body, headers...)
			if r.Status != want {
				t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
			}
			openapiConforms(t, doc, method, path, r)
			return r
		}
		body := map[string]any{"url": "https://crm.example.com/hooks?x=1", "events": []string{"purchase.created", "tier.*"}, "description": "CRM"}
		t.Run("AdminOnly", func(t *testing.T) {
			for _, tok := range []string{e.marketer(), e.pos(), e.token(loyalty.RoleMember, "m1")} {
				assertProblem(t, e.do("POST", "/v1/webhooks", tok, body), 403, "")
				assertProblem(t, e.do("GET", "/v1/webhooks", tok, nil), 403, "")
			}
			assertProblem(t, e.do("GET", "/v1/webhooks", "", nil), 401, "")
		})

		created := call(201, "POST", "/v1/webhooks", admin, body, "Idempotency-Key", "wh-1")
		var w webhooks.Webhook
		created.Decode(t, &w)
		if !secretPattern.MatchString(w.Secret) || !w.Active || w.Description != "CRM" || len(w.Events) != 2 {
			t.Fatalf("created %s", created.Body)
		}
		replay := call(201, "POST", "/v1/webhooks", admin, body, "Idempotency-Key", "wh-1")
		if replay.Header.Get("Idempotent-Replayed") != "true" || string(replay.Body) != string(created.Body) {
			t.Fatalf("replay %s", replay.Body)
		}
		for _, r := range []resp{call(200, "GET", "/v1/webhooks/"+w.ID, admin, nil), call(200, "GET", "/v1/webhooks", admin, nil)} {
			if strings.Contains(string(r.Body), w.Secret) || strings.Contains(string(r.Body), `"secret"`) {
				t.Fatalf("a read shows the secret: %s", r.Body)
			}
		}
		var audit map[string]any
		call(200, "GET", "/v1/audit?target_kind=webhook", admin, nil).Decode(t, &audit)
		if b, _ := json.Marshal(audit); strings.Contains(string(b), w.Secret) || len(audit["items"].([]any)) != 1 {
			t.Fatalf("audit of the creation: %s", b)
		}

		patched := call(200, "PATCH", "/v1/webhooks/"+w.ID, admin, map[string]any{"active": false, "events": []string{"*"},
			"url": "http://10.0.0.1:8080/h"}).JSON(t)
		if patched["active"] != false || patched["url"] != "http://10.0.0.1:8080/h" || patched["secret"] != nil {
			t.Fatalf("patched %v", patched)
		}
		rot := call(200, "POST", "/v1/webhooks/"+w.ID+"/rotate-secret", admin, nil).JSON(t)
		if s, _ := rot["secret"].(string); !secretPattern.MatchString(s) || s == w.Secret {
			t.Fatalf("rotated %v", rot)
		}
		list := call(200, "GET", "/v1/webhooks/"+w.ID+"/deliveries", admin, nil).JSON(t)
		if len(list["items"].([]any)) != 0 || list["next_cursor"] != nil {
			t.Fatalf("deliveries %v", list)
		}
		call(200, "GET", "/v1/webhooks/"+w.ID+"/deliveries?status=failed&limit=10", admin, nil)

		t.Run("Invalid", func(t *testing.T) {
			for _, c := range []struct {
				name  string
				body  any
				field string
			}{
				{"NoURL", map[string]any{"events": []string{"*"}}, "url"},
				{"NoEvents", map[string]any{"url": "https://a.example"}, "events"},
				{"EmptyEvents", map[string]any{"url": "https://a.example", "events": []string{}}, "events"},
				{"NullEvents", map[string]any{"url": "https://a.example", "events": nil}, "events"},
				{"UnknownType", map[string]any{"url": "https://a.example", "events": []string{"purchase.deleted"}}, "events"},
				{"BarePrefix", map[string]any{"url": "https://a.example", "events": []string{"purchase"}}, "events"},
				{"UnknownPrefix", map[string]any{"url": "https://a.example", "events": []string{"order.*"}}, "events"},
				{"StarInside", map[string]any{"url": "https://a.example", "events": []string{"pur*"}}, "events"},
				{"FTP", map[string]any{"url": "ftp://a.example/x", "events": []string{"*"}}, "url"},
				{"Relative", map[string]any{"url": "/hooks", "events": []string{"*"}}, "url"},
				{"NoHost", map[string]any{"url": "https:///x", "events": []string{"*"}}, "url"},
				{"UserInfo", map[string]any{"url": "https://user:pw@a.example/x", "events": []string{"*"}}, "url"},
				{"Fragment", map[string]any{"url": "https://a.example/x#frag", "events": []string{"*"}}, "url"},
				{"Space", map[string]any{"url": "https://a.example/a b", "events": []string{"*"}}, "url"},
				{"BadPort", map[string]any{"url": "https://a.example:99999/", "events": []string{"*"}}, "url"},
				{"LongURL", map[string]any{"url": "https://a.example/" + strings.Repeat("a", 2100), "events": []string{"*"}}, "url"},
				{"NotAString", map[string]any{"url": 5, "events": []string{"*"}}, "url"},
				{"LongDescription", map[string]any{"url": "https://a.example", "events": []string{"*"}, "description": strings.Repeat("d", 501)}, "description"},
			} {
				t.Run(c.name, func(t *testing.T) {
					assertProblem(t, e.do("POST", "/v1/webhooks", admin, c.body), 422, c.field)
				})
			}
			assertProblem(t, e.do("POST", "/v1/webhooks", admin, "{"), 400, "")
			assertProblem(t, e.do("PATCH", "/v1/webhooks/"+w.ID, admin, map[string]any{"url": nil}), 422, "url")
			assertProblem(t, e.do("PATCH", "/v1/webhooks/"+w.ID, admin, map[string]any{"active": nil}), 422, "active")
			assertProblem(t, e.do("PATCH", "/v1/webhooks/"+w.ID, admin, map[string]any{"events": []string{"nope"}}), 422, "events")
			assertProblem(t, e.do("GET", "/v1/webhooks/"+w.ID+"/deliveries?status=done", admin, nil), 422, "status")
			assertProblem(t, e.do("GET", "/v1/webhooks/"+w.ID+"/deliveries?cursor=%%%", admin, nil), 422, "cursor")
		})
		t.Run("NotFound", func(t *testing.T) {
			for _, r := range []resp{
				e.do("GET", "/v1/webhooks/nope", admin, nil),
				e.do("PATCH", "/v1/webhooks/nope", admin, map[string]any{"active": true}),
				e.do("DELETE", "/v1/webhooks/nope", admin, nil),
				e.do("POST", "/v1/webhooks/nope/rotate-secret", admin, nil),
				e.do("GET", "/v1/webhooks/nope/deliveries", admin, nil),
				e.do("POST", "/v1/webhooks/nope/deliveries/d1/retry", admin, nil),
				e.do("POST", "/v1/webhooks/"+w.ID+"/deliveries/d1/retry", admin, nil),
			} {
				assertProblem(t, r, 404, "")
			}
		})
		call(204, "DELETE", "/v1/webhooks/"+w.ID, admin, nil)
		call(404, "GET", "/v1/webhooks/"+w.ID, admin, nil)
	})
}

// TestWebhookEndToEnd: an endpoint registered through the API receives a
// purchase's events, signed with its secret, and its deliveries show them;
// the purchase's answer never waits for a delivery.
func TestWebhookEndToEnd(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		t.Cleanup(e.svc.StartSequencer(context.Background(), nil))
		var mu sync.Mutex
		var secret string
		type got struct {
			id, typ string
			valid   bool
			body    map[string]any
		}
		var gots []got
		block := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-block // the first answers wait until the purchase has been answered
			b, _ := io.ReadAll(r.Body)
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			mu.Lock()
			valid := webhooks.Verify(secret, r.Header.Get(webhooks.HeaderSignature), b, time.Now(), time.Minute) == nil
			gots = append(gots, got{r.Header.Get(webhooks.HeaderEventID), r.Header.Get(webhooks.HeaderEventType), valid, m})
			mu.Unlock()
		}))
		t.Cleanup(srv.Close)
		var once sync.Once
		unblock := func() { once.Do(func() { close(block) }) }
		t.Cleanup(unblock)

		w := e.do("POST", "/v1/webhooks", e.admin(), map[string]any{"url": srv.URL, "events": []string{"purchase.*", "balance.changed"}}).must(t, 201)
		var hook webhooks.Webhook
		w.Decode(t, &hook)
		mu.Lock()
		secret = hook.Secret
		mu.Unlock()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = webhooks.NewDispatcher(webhooks.NewService(e.svc), webhooks.Config{Poll: 50 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}).Run(ctx)
		}()
		t.Cleanup(func() { cancel(); <-done })

		m := e.enrol()
		p := e.buy(m, 5000, "WH-1")
		unblock()
		deadline := time.Now().Add(60 * time.Second)
		for {
			mu.Lock()
			n := len(gots)
			mu.Unlock()
			if n >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d deliveries arrived", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		types := map[string]bool{}
		for _, g := range gots {
			types[g.typ] = true
			if !g.valid || g.body["id"] != g.id || g.body["type"] != g.typ || g.body["member_id"] != m {
				t.Fatalf("delivery %+v", g)
			}
			if g.typ == "purchase.created" {
				if data, _ := g.body["data"].(map[string]any); data["id"] != p["id"] && data["purchase_id"] != p["id"] {
					t.Errorf("purchase.created data %v, purchase %v", data, p["id"])
				}
			}
		}
		if !types["purchase.created"] || !types["balance.changed"] {
			t.Fatalf("types %v", types)
		}
		var l struct{ Items []webhooks.Delivery }
		deadline = time.Now().Add(60 * time.Second)
		for len(l.Items) < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("delivery rows: %+v", l.Items)
			}
			time.Sleep(20 * time.Millisecond)
			e.do("GET", "/v1/webhooks/"+hook.ID+"/deliveries?status=delivered", e.admin(), nil).must(t, 200).Decode(t, &l)
		}
		for _, d := range l.Items {
			if d.StatusCode == nil || *d.StatusCode != 200 || d.Attempts != 1 || d.LatencyMS == nil {
				t.Fatalf("delivery %+v", d)
			}
		}
	})
}
