package webhooks_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
)

// TestDeliveryHistory: deliveries made on the first attempt are kept a
// row per batch, the others a row each, and the history reads as one
// list either way: every event's delivery once, newest first, the same
// in pages of any size as in one; each found by its id; only a failed one
// retried by hand.
func TestDeliveryHistory(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		// Every third event fails its first attempt: a retry delivers it,
		// and its member's later events of the batch are held behind it.
		r := newReceiver(t, func(id string, n int) int {
			num, _ := strconv.Atoi(strings.TrimPrefix(id, "evt_"))
			if n == 1 && num%3 == 0 {
				return http.StatusBadGateway
			}
			return http.StatusNoContent
		})
		w := e.create(r.URL(), "*")
		r.setSecret(w.Secret)
		cfg := fastConfig()
		cfg.BatchSize = 7
		e.dispatch(cfg)
		ms := members(5)
		e.emit("purchase.created", ms, 6)
		eventually(t, "every event delivered", func() bool { return len(r.delivered()) == 30 })
		checkDelivery(t, r, ms, 6)
		eventually(t, "no open deliveries", func() bool {
			return len(e.deliveries(w.ID, webhooks.Pending))+len(e.deliveries(w.ID, webhooks.Held)) == 0
		})

		var batches, batched, single int64
		if err := e.store.DB().Raw("SELECT count(*), coalesce(sum(events), 0) FROM webhook_delivered WHERE webhook_id = ?", w.ID).
			Row().Scan(&batches, &batched); err != nil {
			t.Fatal(err)
		}
		if err := e.store.DB().Raw("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = ?", w.ID).Scan(&single).Error; err != nil {
			t.Fatal(err)
		}
		if batches < 2 || single == 0 || batched+single != 30 {
			t.Fatalf("%d batch rows of %d deliveries and %d rows of their own, want several batches and some rows, 30 in all",
				batches, batched, single)
		}

		all := e.deliveries(w.ID, "")
		if len(all) != 30 {
			t.Fatalf("%d deliveries listed, want 30", len(all))
		}
		events := map[string]bool{}
		retried := 0
		for i, d := range all {
			if i > 0 && d.ID >= all[i-1].ID {
				t.Fatalf("deliveries not newest first: %s after %s", d.ID, all[i-1].ID)
			}
			if events[d.EventID] {
				t.Fatalf("event %s listed twice", d.EventID)
			}
			events[d.EventID] = true
			if d.Status != webhooks.Delivered || d.WebhookID != w.ID || d.StatusCode == nil || *d.StatusCode != 204 ||
				d.LatencyMS == nil || d.DeliveredAt == nil || d.MemberID == nil || d.EventType != "purchase.created" ||
				d.CreatedAt.IsZero() || d.DeliveredAt.Before(d.CreatedAt) {
				t.Fatalf("delivery %+v", d)
			}
			if d.Attempts > 1 {
				retried++
			}
			got, err := e.hooks.Delivery(context.Background(), w.ID, d.ID)
			if err != nil || !sameDelivery(got, d) {
				t.Fatalf("delivery %s by id: %+v, %v; listed %+v", d.ID, got, err, d)
			}
			if _, err := e.hooks.Retry(context.Background(), w.ID, d.ID); loyalty.ErrorOf(err).Code != loyalty.Conflict {
				t.Fatalf("retry of delivered %s: %v", d.ID, err)
			}
		}
		if retried == 0 || retried == 30 {
			t.Fatalf("%d of 30 deliveries retried, want some", retried)
		}
		if n := len(e.deliveries(w.ID, webhooks.Delivered)); n != 30 {
			t.Fatalf("%d delivered listed, want 30", n)
		}
		if f := e.deliveries(w.ID, webhooks.Failed); len(f) != 0 {
			t.Fatalf("failed listed: %+v", f)
		}

		// Pages of every size read the same list.
		for _, size := range []int{1, 4, 7, 29} {
			var paged []webhooks.Delivery
			p := loyalty.Page{Limit: size}
			for {
				l, err := e.hooks.Deliveries(context.Background(), w.ID, webhooks.DeliveryQuery{Page: p})
				if err != nil {
					t.Fatal(err)
				}
				if len(l.Items) > size {
					t.Fatalf("a page of %d holds %d", size, len(l.Items))
				}
				paged = append(paged, l.Items...)
				if l.NextCursor == nil {
					break
				}
				p.Cursor = *l.NextCursor
			}
			if len(paged) != len(all) {
				t.Fatalf("pages of %d: %d deliveries, want %d", size, len(paged), len(all))
			}
			for i := range paged {
				if paged[i].ID != all[i].ID {
					t.Fatalf("pages of %d: #%d is %s, want %s", size, i, paged[i].ID, all[i].ID)
				}
			}
		}

		// An id of a batch's shape beyond its events, or of another
		// endpoint, is no delivery.
		last := all[0].ID
		beyond := last[:32] + "ffff"
		other := e.create("http://127.0.0.1:9/none", "*")
		for _, c := range []struct{ hook, id string }{{w.ID, beyond}, {other.ID, last}, {w.ID, "nope"}} {
			if _, err := e.hooks.Delivery(context.Background(), c.hook, c.id); loyalty.ErrorOf(err).Code != loyalty.NotFound {
				t.Fatalf("delivery %s of %s: %v", c.id, c.hook, err)
			}
			if _, err := e.hooks.Retry(context.Background(), c.hook, c.id); loyalty.ErrorOf(err).Code != loyalty.NotFound {
				t.Fatalf("retry of %s of %s: %v", c.id, c.hook, err)
			}
		}
	})
}

// sameDelivery compares two views of a delivery, times to the microsecond
// (the precision a batch row keeps).
func sameDelivery(a, b webhooks.Delivery) bool {
	t := func(x *time.Time) string {
		if x == nil {
			return ""
		}
		return x.Truncate(time.Microsecond).Format(time.RFC3339Nano)
	}
	s := func(d webhooks.Delivery) string {
		return fmt.Sprintf("%s %s %s %s %s %s %d %s %s %s %s %s %s %s", d.ID, d.WebhookID, d.EventID, d.EventType, show(d.MemberID),
			d.Status, d.Attempts, show(d.StatusCode), show(d.LatencyMS), show(d.Error), t(d.NextAttemptAt),
			t(&d.CreatedAt), t(&d.UpdatedAt), t(d.DeliveredAt))
	}
	return s(a) == s(b)
}

// show is *p as text, or <nil>.
func show[T any](p *T) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprint(*p)
}
