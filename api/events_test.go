package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// wireEvent is an event as GET /v1/events answers it.
type wireEvent struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	OccurredAt string          `json:"occurred_at"`
	MemberID   *string         `json:"member_id"`
	Data       json.RawMessage `json:"data"`
}

// eventTail reads the log through the API from where it last stopped.
type eventTail struct {
	e      *env
	cursor string
}

// page reads GET /v1/events with the query q after the position
// sequenced so far (PostgreSQL's rows are positioned first).
func (e *env) events(q string) ([]wireEvent, string) {
	e.t.Helper()
	if _, _, err := e.svc.SequenceEvents(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	var out struct {
		Items      []wireEvent `json:"items"`
		NextCursor string      `json:"next_cursor"`
	}
	e.do("GET", "/v1/events?"+q, e.admin(), nil).must(e.t, 200).Decode(e.t, &out)
	return out.Items, out.NextCursor
}

// allEvents pages the whole log matching q, two at a time.
func (e *env) allEvents(q string) []wireEvent {
	e.t.Helper()
	var all []wireEvent
	cur := ""
	for {
		page, next := e.events(q + "&limit=2&after=" + cur)
		all = append(all, page...)
		if len(page) == 0 {
			if next != cur && cur != "" {
				e.t.Fatalf("an empty page moved the cursor from %q to %q", cur, next)
			}
			return all
		}
		cur = next
	}
}

// next returns the events since the last call.
func (l *eventTail) next() []wireEvent {
	l.e.t.Helper()
	evs, cur := l.e.events("limit=500&after=" + l.cursor)
	l.cursor = cur
	return evs
}

// expect checks that the events since the last call have exactly the types
// want, in order, and returns them.
func (l *eventTail) expect(what string, want ...string) []wireEvent {
	l.e.t.Helper()
	evs := l.next()
	var got []string
	for _, e := range evs {
		got = append(got, e.Type)
	}
	if !slices.Equal(got, want) {
		l.e.t.Fatalf("%s: events %v, want %v", what, got, want)
	}
	return evs
}

// sameJSON fails unless a and b are the same JSON value.
func sameJSON(t testing.TB, what string, a, b []byte) {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v: %s", what, err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v: %s", what, err, b)
	}
	if !reflect.DeepEqual(x, y) {
		t.Fatalf("%s:\n%s\nwant\n%s", what, a, b)
	}
}

// balanceIs checks a balance.changed event against the balance GET
// answers now.
func (e *env) balanceIs(ev wireEvent, member string) {
	e.t.Helper()
	if ev.Type != loyalty.EventBalanceChanged || ev.MemberID == nil || *ev.MemberID != member {
		e.t.Fatalf("not a balance.changed of %s: %+v", member, ev)
	}
	got := e.do("GET", "/v1/members/"+member+"/balance", e.admin(), nil).must(e.t, 200).Body
	sameJSON(e.t, "balance.changed against GET balance", ev.Data, got)
}

// Every change of §14 writes its events once, in its transaction, with
// the resource as the API answered it; refused, rolled-back and replayed
// requests write none.
func TestEventsEveryChange(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"tier_window_days": 365, "expiry_days": 365,
			"feedback_bonus_points": 25}).must(t, 200)
		e.beautyLadder()
		e.enablePayments()
		log := &eventTail{e: e}
		log.next() // the configuration's own changes are not §14's

		enrolled := e.do("POST", "/v1/members", e.pos(), map[string]any{"external_id": "EV-1", "email": "ev1@example.com"}).must(t, 201)
		m := enrolled.JSON(t)["id"].(string)
		ev := log.expect("enrolment", "member.created")
		sameJSON(t, "member.created", ev[0].Data, enrolled.Body)
		if ev[0].MemberID == nil || *ev[0].MemberID != m || ev[0].ID == "" {
			t.Fatalf("member.created %+v", ev[0])
		}

		patched := e.do("PATCH", "/v1/members/"+m, e.admin(), map[string]any{"first_name": "Ada", "birthday": "1990-03-01"}).must(t, 200)
		sameJSON(t, "member.updated", log.expect("update", "member.updated")[0].Data, patched.Body)

		adj := e.do("POST", "/v1/members/"+m+"/adjustments", e.admin(), map[string]any{"points": 1000, "reason": "welcome"},
			"Idempotency-Key", "adj-1").must(t, 201)
		ev = log.expect("adjustment", "points.adjusted", "balance.changed")
		sameJSON(t, "points.adjusted", ev[0].Data, adj.Body)
		e.balanceIs(ev[1], m)
		e.do("POST", "/v1/members/"+m+"/adjustments", e.admin(), map[string]any{"points": 1000, "reason": "welcome"},
			"Idempotency-Key", "adj-1").must(t, 201)
		log.expect("an adjustment replayed by its Idempotency-Key")

		buy := map[string]any{"member_id": m, "external_id": "P-1", "store_id": "store-1", "currency": "USD", "total": 35000}
		bought := e.do("POST", "/v1/purchases", e.pos(), buy).must(t, 201)
		ev = log.expect("purchase", "purchase.created", "tier.changed", "balance.changed")
		sameJSON(t, "purchase.created", ev[0].Data, bought.Body)
		sameJSON(t, "tier.changed", ev[1].Data, []byte(`{"member_id":"`+m+`","from":"insider","to":"vib"}`))
		e.balanceIs(ev[2], m)
		sameJSON(t, "balance.changed against the purchase's balance", ev[2].Data, mustJSON(t, bought.JSON(t)["balance"]))
		e.do("POST", "/v1/purchases", e.pos(), buy).must(t, 201)
		log.expect("a receipt replayed")
		buy["total"] = 100
		e.do("POST", "/v1/purchases", e.pos(), buy).must(t, 409)
		log.expect("a receipt posted again with another body")
		e.do("POST", "/v1/purchases", e.pos(), payBody(m, 100000, 50000, "P-PAY")).must(t, 409)
		log.expect("a purchase refused for insufficient points")

		pid := bought.JSON(t)["id"].(string)
		ret := e.do("POST", "/v1/purchases/"+pid+"/returns", e.pos(), map[string]any{"external_id": "R-1", "amount": 10000}).must(t, 201)
		ev = log.expect("return", "purchase.returned", "balance.changed")
		sameJSON(t, "purchase.returned", ev[0].Data, ret.Body)
		e.balanceIs(ev[1], m)

		reward := e.do("POST", "/v1/rewards", e.marketer(), map[string]any{"code": "tote", "name": "Tote", "cost_points": 100}).
			must(t, 201).JSON(t)["id"].(string)
		dear := e.do("POST", "/v1/rewards", e.marketer(), map[string]any{"code": "dear", "name": "Dear", "cost_points": 1_000_000}).
			must(t, 201).JSON(t)["id"].(string)
		log.next()
		red := e.do("POST", "/v1/members/"+m+"/redemptions", e.pos(), map[string]any{"reward_id": reward}).must(t, 201)
		ev = log.expect("redemption", "redemption.created", "balance.changed")
		sameJSON(t, "redemption.created", ev[0].Data, red.Body)
		e.balanceIs(ev[1], m)
		code := red.JSON(t)["coupon_code"].(string)
		used := e.do("POST", "/v1/coupons/"+url.PathEscape(code)+"/use", e.pos(), nil).must(t, 200)
		sameJSON(t, "coupon.used", log.expect("coupon use", "coupon.used")[0].Data, used.Body)
		red2 := e.do("POST", "/v1/members/"+m+"/redemptions", e.pos(), map[string]any{"reward_id": reward}).must(t, 201).JSON(t)
		log.expect("second redemption", "redemption.created", "balance.changed")
		cancelled := e.do("POST", "/v1/redemptions/"+red2["id"].(string)+"/cancel", e.pos(), nil).must(t, 200)
		ev = log.expect("cancellation", "redemption.cancelled", "balance.changed")
		sameJSON(t, "redemption.cancelled", ev[0].Data, cancelled.Body)
		e.balanceIs(ev[1], m)
		e.do("POST", "/v1/members/"+m+"/redemptions", e.pos(), map[string]any{"reward_id": dear}).must(t, 409)
		log.expect("a redemption refused for insufficient points")

		fb := e.do("POST", "/v1/feedback", e.admin(), map[string]any{"member_id": m, "kind": "nps", "score": 9,
			"comment": "Ada loved it"}).must(t, 201)
		ev = log.expect("feedback", "feedback.received", "balance.changed")
		sameJSON(t, "feedback.received", ev[0].Data, fb.Body)
		e.balanceIs(ev[1], m)

		e.gfProgram(map[string]any{"reward_ids": []string{reward}, "bonus_points": 10, "claim_days": 30})
		log.next()
		e.gfRun(e.clock.Now())
		ev = log.expect("birthday gifts", "gift.granted", "balance.changed")
		gifts := e.do("GET", "/v1/members/"+m+"/gifts", e.admin(), nil).must(t, 200).JSON(t)["items"].([]any)
		sameJSON(t, "gift.granted", ev[0].Data, mustJSON(t, gifts[0]))
		e.balanceIs(ev[1], m)
		claimed := e.do("POST", "/v1/members/"+m+"/gifts/"+url.PathEscape(gifts[0].(map[string]any)["id"].(string))+"/claim", e.pos(),
			map[string]any{"reward_id": reward}).must(t, 201)
		ev = log.expect("gift claim", "gift.claimed", "balance.changed")
		sameJSON(t, "gift.claimed", ev[0].Data, claimed.Body)

		e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": m, "external_id": "P-2", "store_id": "store-1",
			"currency": "USD", "total": 4000, "items": []any{ofItem("S1", "skincare", 4000)}}).must(t, 201)
		log.expect("purchase with items", "purchase.created", "balance.changed")
		e.do("POST", "/v1/offer-templates", e.marketer(), map[string]any{"code": "fav", "name": "Favourite",
			"kind": "multiplier", "multiplier": "2", "duration_days": 14, "lookback_days": 90, "min_purchases": 1}).must(t, 201)
		log.next()
		e.runJob("personal-offers", e.clock.Now())
		ev = log.expect("personal offers", "offer.assigned")
		var offer struct{ ID string }
		_ = json.Unmarshal(ev[0].Data, &offer)
		got := e.do("GET", "/v1/offers/"+url.PathEscape(offer.ID), e.marketer(), nil).must(t, 200)
		sameJSON(t, "offer.assigned", ev[0].Data, got.Body)

		// A year on: the points of the purchases expire, and the tier
		// review takes the member down.
		e.clock.Advance(400 * 24 * time.Hour)
		e.runJob("expire-points", e.clock.Now())
		ledger := e.do("GET", "/v1/members/"+m+"/ledger?limit=500", e.admin(), nil).must(t, 200).JSON(t)["items"].([]any)
		var want []string
		for _, l := range ledger {
			if l.(map[string]any)["kind"] == "expire" {
				want = append(want, "points.expired")
			}
		}
		if len(want) < 3 {
			t.Fatalf("%d expire entries", len(want))
		}
		ev = log.expect("expiry", append(want, "balance.changed")...)
		for _, x := range ev[:len(want)] {
			var entry map[string]any
			_ = json.Unmarshal(x.Data, &entry)
			found := false
			for _, l := range ledger {
				if l.(map[string]any)["id"] == entry["id"] {
					sameJSON(t, "points.expired", x.Data, mustJSON(t, l))
					found = true
				}
			}
			if !found || entry["kind"] != "expire" {
				t.Fatalf("points.expired %s is no expire entry of the ledger", x.Data)
			}
		}
		e.balanceIs(ev[len(want)], m)
		e.runJob("tier-review", e.clock.Now())
		ev = log.expect("tier review", "tier.changed", "balance.changed")
		sameJSON(t, "tier.changed by the review", ev[0].Data, []byte(`{"member_id":"`+m+`","from":"vib","to":"insider"}`))
		e.balanceIs(ev[1], m)

		e.do("DELETE", "/v1/members/"+m, e.admin(), nil).must(t, 204)
		ev = log.expect("erasure", "member.erased")
		for _, personal := range []string{"ev1@example.com", "Ada", "1990-03-01", "EV-1"} {
			if bytes.Contains(ev[0].Data, []byte(personal)) {
				t.Fatalf("member.erased carries %q: %s", personal, ev[0].Data)
			}
		}
		for _, x := range e.allEvents("member_id=" + url.QueryEscape(m)) {
			for _, personal := range []string{"ev1@example.com", "Ada", "1990-03-01", "EV-1"} {
				if bytes.Contains(x.Data, []byte(personal)) {
					t.Fatalf("%s of the erased member still carries %q: %s", x.Type, personal, x.Data)
				}
			}
		}
		e.do("DELETE", "/v1/members/"+m, e.admin(), nil).must(t, 204)
		log.expect("erasing again")
	})
}

// GET /v1/events: admin only, filters, paging by next_cursor, problems for
// bad input.
func TestEventsAPI(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		a, b := e.enrol(), e.enrol()
		e.buy(a, 1000, "A-1")
		e.buy(b, 40000, "B-1")
		e.buy(a, 2000, "A-2")
		all := e.allEvents("")
		var types []string
		for _, x := range all {
			types = append(types, x.Type)
		}
		want := []string{"member.created", "member.created", "purchase.created", "balance.changed", "purchase.created",
			"tier.changed", "balance.changed", "purchase.created", "balance.changed"}
		if !slices.Equal(types, want) {
			t.Fatalf("log %v, want %v", types, want)
		}
		seen := map[string]bool{}
		for _, x := range all {
			if seen[x.ID] {
				t.Fatalf("event %s twice", x.ID)
			}
			seen[x.ID] = true
		}
		count := func(q string) int { return len(e.allEvents(q)) }
		for q, n := range map[string]int{"type=purchase.*": 3, "type=tier.*,member.created": 3, "type=*": 9,
			"member_id=" + a: 5, "member_id=" + b + "&type=balance.changed": 1, "member_id=nobody": 0} {
			if got := count(q); got != n {
				t.Errorf("%s: %d events, want %d", q, got, n)
			}
		}
		_, head := e.events("limit=500")
		if rest, next := e.events("after=" + head); len(rest) != 0 || next != head {
			t.Fatalf("after the last: %d events, next %q", len(rest), next)
		}
		for _, q := range []string{"after=abc", "after=-1", "after=1e3", "limit=0", "limit=501", "limit=x", "type=nope",
			"type=purchase", "type=purchase.created,", "after=99999999999999999999"} {
			assertProblem(t, e.do("GET", "/v1/events?"+q, e.admin(), nil), 422, "")
		}
		for _, tok := range []string{e.pos(), e.marketer(), e.token(loyalty.RoleMember, a)} {
			e.do("GET", "/v1/events", tok, nil).must(t, 403)
		}
		e.do("GET", "/v1/events", "", nil).must(t, 401)
	})
}

// Concurrent purchases of one member: its events' positions follow the
// balance versions (ids are taken under the member's lock, and positions
// follow commit order).
func TestEventsConcurrentPurchasesKeepOrder(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stop := e.svc.StartSequencer(ctx, func(err error) { t.Error(err) })
		defer stop()
		m := e.enrol()
		const n = 24
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": m, "external_id": fmt.Sprintf("C-%d", i),
					"store_id": "store-1", "currency": "USD", "total": 1000 + i})
				if r.Status != 201 {
					t.Errorf("purchase %d: %d %s", i, r.Status, r.Body)
				}
			}()
		}
		wg.Wait()
		var versions []int64
		created := 0
		for _, x := range e.allEvents("member_id=" + m) {
			switch x.Type {
			case loyalty.EventBalanceChanged:
				var b loyalty.Balance
				if err := json.Unmarshal(x.Data, &b); err != nil {
					t.Fatal(err)
				}
				versions = append(versions, b.Version)
			case loyalty.EventPurchaseCreated:
				created++
			}
		}
		if created != n || len(versions) != n {
			t.Fatalf("%d purchase.created and %d balance.changed for %d purchases", created, len(versions), n)
		}
		for i := 1; i < len(versions); i++ {
			if versions[i] <= versions[i-1] {
				t.Fatalf("balance versions in position order: %v", versions)
			}
		}
	})
}

// The purge job removes what is older than the retention, never the last
// event, and a cursor from before it continues at the oldest kept.
func TestEventsPurge(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		old := e.enrol()
		e.buy(old, 1000, "OLD-1")
		before := e.allEvents("")
		e.clock.Advance(36 * 24 * time.Hour)
		recent := e.enrol()
		e.events("") // positioned, as the sequencer of a serve process does
		rec := e.runJob("purge-events", e.clock.Now())
		if got := num(rec["summary"].(map[string]any)["deleted"]); got != int64(len(before)) {
			t.Fatalf("deleted %d, want %d", got, len(before))
		}
		left := e.allEvents("")
		if len(left) != 1 || left[0].Type != "member.created" || *left[0].MemberID != recent {
			t.Fatalf("left %+v", left)
		}
		// Everything old: the newest still stays, so positions go on.
		e.clock.Advance(100 * 24 * time.Hour)
		e.runJob("purge-events", e.clock.Now())
		if got := e.allEvents(""); len(got) != 1 || got[0].ID != left[0].ID {
			t.Fatalf("the last event was purged: %+v", got)
		}
		third := e.enrol()
		after := e.allEvents("")
		if len(after) != 2 || *after[1].MemberID != third {
			t.Fatalf("after the purge: %+v", after)
		}
		var lastBefore, firstAfter int64
		fmt.Sscanf(before[len(before)-1].ID, "evt_%d", &lastBefore)
		fmt.Sscanf(after[1].ID, "evt_%d", &firstAfter)
		if firstAfter <= lastBefore {
			t.Fatalf("event id %d given again after the purge (had %d)", firstAfter, lastBefore)
		}
	})
}
