package console_test

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

var consoleSecret = regexp.MustCompile(`<code id="secret-value">(whsec_[0-9a-f]{64})</code>`)

// TestConsoleWebhooks: admins create an endpoint and see its secret once,
// see its deliveries with status, code and latency, retry a dead one,
// pause and delete it; marketers see none of it.
func TestConsoleWebhooks(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		mk := e.client()
		mk.signIn(e.token(loyalty.RoleMarketer, "mk-1"))
		if p := mk.get("/console/").must(t, 200); strings.Contains(p.Body, `href="/console/webhooks"`) {
			t.Error("a marketer's menu shows Webhooks")
		}
		mk.get("/console/webhooks").must(t, 403)
		mk.get("/console/events").must(t, 403)
		mk.get("/console/events/tail").must(t, 403)

		ad := e.client()
		csrf := ad.signIn(e.token(loyalty.RoleAdmin, "op-1"))
		ad.get("/console/webhooks").must(t, 200).contains(t, `href="/console/webhooks"`, "No webhooks yet.", `id="webhook-new"`)
		// Bad input stays on the page with what was typed.
		ad.post("/console/webhooks", csrf, url.Values{"url": {"ftp://x.example"}, "events": {"purchase.created, nope"}}).
			must(t, 422).contains(t, `id="problem"`, "Url", `value="ftp://x.example"`)
		created := ad.post("/console/webhooks", csrf, url.Values{"url": {"https://crm.example.com/h"}, "events": {"purchase.*, tier.changed"},
			"description": {"CRM"}}).must(t, 200)
		m := consoleSecret.FindStringSubmatch(created.Body)
		if m == nil {
			t.Fatalf("no secret shown after creating: %.3000s", created.Body)
		}
		created.contains(t, "purchase.*, tier.changed", "https://crm.example.com/h")
		ctx := context.Background()
		var id string
		if err := e.store.DB().Raw("SELECT id FROM webhooks").Scan(&id).Error; err != nil || id == "" {
			t.Fatalf("webhook id: %v", err)
		}
		page := ad.get("/console/webhooks/"+id).must(t, 200)
		if strings.Contains(page.Body, m[1]) || strings.Contains(page.Body, "secret-value") {
			t.Fatal("the secret is shown again")
		}
		ad.get("/console/webhooks").must(t, 200).contains(t, "https://crm.example.com/h", `href="/console/webhooks/`+id+`"`)

		// A dead letter and a delivered one, as the dispatcher leaves them.
		now := time.Now().UTC()
		for _, r := range []struct {
			id, status string
			code       int
		}{{"d-dead", "failed", 503}, {"d-ok", "delivered", 200}} {
			if err := e.store.DB().Exec(`INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_position, event_type, member_id, status,
				attempts, status_code, latency_ms, error, created_at, updated_at) VALUES (?, ?, ?, ?, 'purchase.created', 'mem-1', ?, 3, ?, 42, ?, ?, ?)`,
				r.id, id, len(r.id), len(r.id), r.status, r.code, "the endpoint answered 503", now, now).Error; err != nil {
				t.Fatal(err)
			}
		}
		ad.get("/console/webhooks/"+id).must(t, 200).contains(t, `id="delivery-d-dead"`, `id="delivery-d-ok"`, "503", "42 ms",
			"/console/webhooks/"+id+"/deliveries/d-dead/retry")
		ad.get("/console/webhooks/"+id+"?status=failed").must(t, 200).contains(t, `id="delivery-d-dead"`)
		if p := ad.get("/console/webhooks/" + id + "?status=failed"); strings.Contains(p.Body, `id="delivery-d-ok"`) {
			t.Error("the failed tab lists a delivered one")
		}
		r := ad.post("/console/webhooks/"+id+"/deliveries/d-dead/retry", csrf, nil).must(t, 303)
		ad.get(r.Header.Get("Location")).must(t, 200).contains(t, "queued for another attempt")
		var status string
		e.store.DB().Raw("SELECT status FROM webhook_deliveries WHERE id = 'd-dead'").Scan(&status)
		if status != "pending" {
			t.Fatalf("after retry: %s", status)
		}
		ad.post("/console/webhooks/"+id+"/deliveries/d-ok/retry", csrf, nil).must(t, 409)

		// Rotating shows the new secret once.
		rot := ad.post("/console/webhooks/"+id+"/rotate", csrf, nil).must(t, 200)
		if m2 := consoleSecret.FindStringSubmatch(rot.Body); m2 == nil || m2[1] == m[1] {
			t.Fatalf("rotation: %.2000s", rot.Body)
		}
		ad.post("/console/webhooks/"+id+"/active", csrf, url.Values{"active": {"false"}}).must(t, 303)
		ad.get("/console/webhooks/"+id).must(t, 200).contains(t, "paused", "Resume")
		ad.post("/console/webhooks/"+id+"/delete", csrf, nil).must(t, 303)
		ad.get("/console/webhooks/"+id).must(t, 404)
		ad.post("/console/webhooks", "", url.Values{"url": {"https://x.example"}, "events": {"*"}}).must(t, 403)
		_ = ctx
	})
}

// TestConsoleEvents: the events page and the tail it polls show the
// newest events first, filtered by type and member.
func TestConsoleEvents(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		t.Cleanup(e.svc.StartSequencer(context.Background(), nil))
		m1, m2 := e.enrol(), e.enrol()
		e.buy(m1.ID, "EV-1")
		e.buy(m2.ID, "EV-2")
		ad := e.client()
		ad.signIn(e.token(loyalty.RoleAdmin, "op-1"))
		var head int64
		deadline := time.Now().Add(30 * time.Second)
		for head < 2 {
			if time.Now().After(deadline) {
				t.Fatal("events not positioned")
			}
			time.Sleep(20 * time.Millisecond)
			head, _ = e.svc.EventsHead(context.Background())
		}
		p := ad.get("/console/events").must(t, 200).contains(t, `id="events-tail"`, "purchase.created", m1.ID, m2.ID, `hx-trigger="every 2s"`)
		if strings.Index(p.Body, m2.ID) > strings.Index(p.Body, m1.ID) {
			t.Error("the newest event is not first")
		}
		tail := ad.get("/console/events/tail?member_id="+m1.ID, "HX-Request", "true").must(t, 200)
		if strings.Contains(tail.Body, m2.ID) || !strings.Contains(tail.Body, m1.ID) || strings.Contains(tail.Body, "<html") {
			t.Fatalf("tail for one member: %.2000s", tail.Body)
		}
		ad.get("/console/events/tail?type=purchase.created&member_id="+m2.ID, "HX-Request", "true").must(t, 200).contains(t, "purchase.created", m2.ID)
		ad.get("/console/events/tail?type=gift.*", "HX-Request", "true").must(t, 200).contains(t, "No events yet.")
		ad.get("/console/events?type=nope").must(t, 422)
	})
}

// buy posts a purchase for member through the API.
func (e *env) buy(member, ext string) {
	e.t.Helper()
	if st, body := e.postJSON("/v1/purchases", e.token(loyalty.RolePOS, "till-1"), map[string]any{"member_id": member,
		"external_id": ext, "store_id": "s1", "currency": "USD", "total": 2500}); st != 201 {
		e.t.Fatalf("purchase: %d %v", st, body)
	}
}

// TestBrowserWebhooks creates an endpoint in the browser, sees its secret
// once, then watches the events page pick up a purchase made after it
// opened.
func TestBrowserWebhooks(t *testing.T) {
	needBrowser(t)
	e := newEnv(t, loyalty.SQLite)
	b := newBrowser(t, e.serve())
	b.signIn(e.token(loyalty.RoleAdmin, "op-1"))
	b.run(chromedp.Click(chromedp.CSS(`.nav a[href="/console/webhooks"]`)))
	b.waitTitle("Webhooks")
	b.fill("#webhook-new", map[string]string{"url": "https://crm.example.com/hooks", "events": "purchase.*, tier.changed"})
	b.run(chromedp.Click(chromedp.CSS(`#webhook-new button[type=submit]`)))
	b.waitFor(`document.querySelector("#secret-value")`)
	if s := b.text("#secret-value"); !regexp.MustCompile(`^whsec_[0-9a-f]{64}$`).MatchString(s) {
		t.Errorf("secret shown %q", s)
	}
	b.shoot("webhook-created")
	b.run(chromedp.Click(chromedp.CSS(`.nav a[href="/console/events"]`)))
	b.waitTitle("Events")
	m := e.enrol()
	e.buy(m.ID, "EV-B")
	b.waitFor(`document.querySelector("#events-tail") && document.querySelector("#events-tail").textContent.includes(` + "`" + m.ID + "`" + `)`)
	b.shoot("events-tail")
	b.checkConsole()
}
