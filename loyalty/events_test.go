package loyalty_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// allEvents pages the whole log by position, n at a time, positioning
// what is committed first.
func allEvents(t *testing.T, svc *loyalty.Service, f loyalty.EventFilter, n int) []loyalty.Event {
	t.Helper()
	ctx := context.Background()
	if _, _, err := svc.SequenceEvents(ctx); err != nil {
		t.Fatal(err)
	}
	var out []loyalty.Event
	var after int64
	for {
		page, err := svc.EventsAfter(ctx, after, f, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return out
		}
		for _, e := range page {
			if e.Position <= after {
				t.Fatalf("position %d after %d: not in position order", e.Position, after)
			}
			after = e.Position
		}
		out = append(out, page...)
	}
}

func eventNotes(evs []loyalty.Event) []string {
	var out []string
	for _, e := range evs {
		var d struct{ Note string }
		_ = json.Unmarshal(e.Data, &d)
		out = append(out, d.Note)
	}
	return out
}

// A transaction that appended an event and is still open while others
// commit: its row is invisible and unpositioned, the others are paged
// past it, and once it commits it is positioned after them, though its
// id is lower. Nothing is skipped, nothing is given twice.
func TestEventsCommitOrder(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		svc := loyalty.NewService(loyaltytest.MustOpen(t, dialect))
		if err := svc.WriteEvent(ctx, loyalty.EventMemberCreated, "m-0", `{"note":"first"}`); err != nil {
			t.Fatal(err)
		}
		if dialect == loyalty.SQLite {
			// One writer: a transaction held open would hold every other
			// write back. Commit order is insert order, position the id.
			for _, n := range []string{"second", "third"} {
				if err := svc.WriteEvent(ctx, loyalty.EventMemberCreated, "m-0", `{"note":"`+n+`"}`); err != nil {
					t.Fatal(err)
				}
			}
			evs := allEvents(t, svc, loyalty.EventFilter{}, 2)
			if got := eventNotes(evs); !slices.Equal(got, []string{"first", "second", "third"}) {
				t.Fatalf("notes %v", got)
			}
			for _, e := range evs {
				if e.ID != loyalty.EventID(e.Position) {
					t.Fatalf("SQLite event %s at position %d", e.ID, e.Position)
				}
			}
			return
		}
		open := svc.Store().DB().Begin()
		defer open.Rollback()
		if err := loyalty.AppendEvent(open, loyalty.EventMemberCreated, "m-1", svc.Now(), `{"note":"late"}`); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"second", "third", "fourth"} {
			if err := svc.WriteEvent(ctx, loyalty.EventMemberCreated, "m-2", `{"note":"`+n+`"}`); err != nil {
				t.Fatal(err)
			}
		}
		before := allEvents(t, svc, loyalty.EventFilter{}, 2)
		if got := eventNotes(before); !slices.Equal(got, []string{"first", "second", "third", "fourth"}) {
			t.Fatalf("with a transaction open the log pages %v", got)
		}
		var unpositioned int64
		if err := svc.Store().DB().Raw("SELECT count(*) FROM events WHERE id NOT IN (SELECT id FROM event_positions)").Scan(&unpositioned).Error; err != nil {
			t.Fatal(err)
		}
		if unpositioned != 0 {
			t.Fatalf("%d committed rows left unpositioned", unpositioned)
		}
		if err := open.Commit().Error; err != nil {
			t.Fatal(err)
		}
		after := allEvents(t, svc, loyalty.EventFilter{}, 3)
		if got := eventNotes(after); !slices.Equal(got, []string{"first", "second", "third", "fourth", "late"}) {
			t.Fatalf("after the commit the log pages %v", got)
		}
		late, fourth := after[4], after[3]
		if late.Position != fourth.Position+1 {
			t.Fatalf("late event at %d, the last before it at %d", late.Position, fourth.Position)
		}
		var lateID, fourthID int64
		fmt.Sscanf(late.ID, "evt_%d", &lateID)
		fmt.Sscanf(fourth.ID, "evt_%d", &fourthID)
		if lateID >= fourthID {
			t.Fatalf("late event's id %d should be below %d: it was taken first", lateID, fourthID)
		}
		// Paging from a position read before the commit finds it.
		page, err := svc.EventsAfter(ctx, before[len(before)-1].Position, loyalty.EventFilter{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != 1 || page[0].ID != late.ID {
			t.Fatalf("paging on from the old end gives %v", eventNotes(page))
		}
	})
}

// Concurrent writers while the sequencer runs: every committed event is
// positioned once, and a reader paging all along sees each once, in
// position order.
func TestEventsSequencerUnderLoad(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		svc := loyalty.NewService(loyaltytest.MustOpen(t, dialect))
		stop := svc.StartSequencer(ctx, func(err error) { t.Error(err) })
		defer stop()
		const writers, each = 4, 25
		errc := make(chan error, writers)
		for w := 0; w < writers; w++ {
			go func() {
				for i := 0; i < each; i++ {
					if err := svc.WriteEvent(ctx, loyalty.EventBalanceChanged, fmt.Sprintf("m-%d", w),
						fmt.Sprintf(`{"note":"%d-%d"}`, w, i)); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
		}
		seen := map[string]bool{}
		var after int64
		read := func() {
			page, err := svc.EventsAfter(ctx, after, loyalty.EventFilter{}, 7)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				if e.Position <= after || seen[e.ID] {
					t.Fatalf("event %s at %d after %d", e.ID, e.Position, after)
				}
				seen[e.ID], after = true, e.Position
			}
		}
		for done := 0; done < writers; {
			select {
			case err := <-errc:
				if err != nil {
					t.Fatal(err)
				}
				done++
			default:
				read()
			}
		}
		all := allEvents(t, svc, loyalty.EventFilter{}, 1000)
		if len(all) != writers*each {
			t.Fatalf("%d events positioned, want %d", len(all), writers*each)
		}
		for _, e := range all {
			if !seen[e.ID] && e.Position <= after {
				t.Fatalf("event %s at %d was skipped by the reader that read up to %d", e.ID, e.Position, after)
			}
		}
		// Per member, positions follow ids (the order each writer wrote).
		last := map[string]string{}
		for _, e := range eventNotesByMember(all) {
			if prev, ok := last[e[0]]; ok && !lessNote(prev, e[1]) {
				t.Fatalf("member %s: %s after %s", e[0], e[1], prev)
			}
			last[e[0]] = e[1]
		}
	})
}

// The sequencer keeps event_queue short by vacuuming it: every id it takes
// off leaves a dead entry at the front of the queue's key, which each pass
// reads again until a vacuum removes it. Without its own vacuum the dead
// entries would pile up wherever autovacuum lags or is off.
func TestSequencerVacuumsQueue(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		if dialect == loyalty.SQLite {
			t.Skip("SQLite positions events as they are inserted: no queue")
		}
		defer loyalty.SetQueueVacuum(40, 0)()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		svc := loyalty.NewService(loyaltytest.MustOpen(t, dialect))
		db := svc.Store().DB()
		vacuums := func() (n int64) {
			if err := db.Raw(`SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'event_queue' AND schemaname = current_schema()`).
				Scan(&n).Error; err != nil {
				t.Fatal(err)
			}
			return n
		}
		before := vacuums()
		stop := svc.StartSequencer(ctx, func(err error) { t.Error(err) })
		defer stop()
		for i := range 120 {
			if err := svc.WriteEvent(ctx, loyalty.EventBalanceChanged, "m-1", fmt.Sprintf(`{"note":"%d"}`, i)); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for len(allEvents(t, svc, loyalty.EventFilter{}, 1000)) < 120 || vacuums() == before {
			if time.Now().After(deadline) {
				t.Fatalf("after 30 s: %d events positioned, queue vacuumed %d times (%d before)",
					len(allEvents(t, svc, loyalty.EventFilter{}, 1000)), vacuums(), before)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// What a vacuum removed stays gone: the queue holds no more dead
		// rows than the sequencer took off since its last vacuum. The
		// count is PostgreSQL's statistics, in which a backend's deletes
		// are reported up to a second after them: a report landing after
		// the vacuum's would count again rows it removed. A second on,
		// ANALYZE counts the queue's dead rows afresh (it reads the whole
		// of so small a table).
		//
		// A vacuum removes only the rows deleted before every transaction
		// still open on the server began: another package's test holding a
		// transaction meanwhile keeps them all. So, while the queue holds
		// as many dead rows as it ever took, 40 more events are written
		// (the sequencer vacuums again after them) and it is counted again:
		// once those transactions end, a vacuum removes every row before
		// it; without one, the count only grows.
		deadRows := func() (dead int64) {
			time.Sleep(1500 * time.Millisecond)
			if err := db.Exec(`ANALYZE event_queue`).Error; err != nil {
				t.Fatal(err)
			}
			if err := db.Raw(`SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'event_queue' AND schemaname = current_schema()`).
				Scan(&dead).Error; err != nil {
				t.Fatal(err)
			}
			return dead
		}
		written := 120
		for dead := deadRows(); dead >= 120; dead = deadRows() {
			if written >= 600 {
				t.Fatalf("event_queue holds %d dead rows after %d events, with a vacuum every 40", dead, written)
			}
			for i := range 40 {
				if err := svc.WriteEvent(ctx, loyalty.EventBalanceChanged, "m-1", fmt.Sprintf(`{"note":"%d"}`, written+i)); err != nil {
					t.Fatal(err)
				}
			}
			written += 40
			for len(allEvents(t, svc, loyalty.EventFilter{}, 1000)) < written {
				if time.Now().After(deadline.Add(30 * time.Second)) {
					t.Fatalf("%d of %d events positioned", len(allEvents(t, svc, loyalty.EventFilter{}, 1000)), written)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		// A vacuum of the drained queue records it as empty, and while
		// events are inserted it cannot give the empty pages back (here:
		// TRUNCATE false), so PostgreSQL expects one row in all of them. A
		// pass over a queue that has filled since must still read each
		// queued id once, not once per queued row.
		stop()
		for _, q := range []string{
			`INSERT INTO events (type, member_id, occurred_at, data) SELECT 'balance.changed', 'm-2', now(), '{}' FROM generate_series(1, 3000)`,
			`DELETE FROM event_queue WHERE id IN (SELECT id FROM events WHERE member_id = 'm-2')`,
			`VACUUM (TRUNCATE false) event_queue`,
		} {
			if err := db.Exec(q).Error; err != nil {
				t.Fatal(err)
			}
		}
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec(`INSERT INTO events (type, member_id, occurred_at, data)
				SELECT 'balance.changed', 'm-2', now(), '{}' FROM generate_series(1, 3000)`).Error; err != nil {
				return err
			}
			var plan []string
			if err := tx.Raw("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + loyalty.PGSequenceSQL).Scan(&plan).Error; err != nil {
				return err
			}
			for _, l := range plan {
				if strings.Contains(l, "on event_queue") && !strings.Contains(l, "loops=1)") {
					t.Errorf("a pass reads the queue more than once:\n%s", strings.Join(plan, "\n"))
					break
				}
			}
			return errors.New("rolled back")
		})
		if err == nil || err.Error() != "rolled back" {
			t.Fatal(err)
		}
	})
}

func eventNotesByMember(evs []loyalty.Event) [][2]string {
	var out [][2]string
	for i, n := range eventNotes(evs) {
		out = append(out, [2]string{*evs[i].MemberID, n})
	}
	return out
}

func lessNote(a, b string) bool {
	var aw, ai, bw, bi int
	fmt.Sscanf(a, "%d-%d", &aw, &ai)
	fmt.Sscanf(b, "%d-%d", &bw, &bi)
	return ai < bi
}

func TestEventFilters(t *testing.T) {
	for _, c := range []struct {
		filters []string
		typ     string
		want    bool
	}{
		{nil, "purchase.created", true},
		{[]string{"*"}, "tier.changed", true},
		{[]string{"tier.*"}, "tier.changed", true},
		{[]string{"tier.*"}, "tiers.changed", false},
		{[]string{"purchase.created"}, "purchase.created", true},
		{[]string{"purchase.created"}, "purchase.returned", false},
		{[]string{"purchase"}, "purchase.created", false},
		{[]string{"purchase*"}, "purchase.created", false},
		{[]string{"balance.changed", "member.*"}, "member.erased", true},
	} {
		if got := loyalty.MatchEventType(c.filters, c.typ); got != c.want {
			t.Errorf("MatchEventType(%q, %q) = %v", c.filters, c.typ, got)
		}
	}
	for f, want := range map[string]bool{"*": true, "tier.*": true, "tier.changed": true, "tier.nope": false, "nope.*": false,
		"": false, "tier": false, "points.*": true} {
		if loyalty.ValidEventFilter(f) != want {
			t.Errorf("ValidEventFilter(%q) != %v", f, want)
		}
	}
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		svc := loyalty.NewService(loyaltytest.MustOpen(t, dialect))
		for i, ev := range [][2]string{{loyalty.EventTierChanged, "a"}, {loyalty.EventPurchaseCreated, "a"},
			{loyalty.EventTierChanged, "b"}, {loyalty.EventPurchaseReturned, "b"}, {loyalty.EventMemberErased, ""},
			{loyalty.EventPurchaseCreated, "b"}} {
			if err := svc.WriteEvent(ctx, ev[0], ev[1], fmt.Sprintf(`{"note":"%d"}`, i)); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct {
			f    loyalty.EventFilter
			want []string
		}{
			{loyalty.EventFilter{}, []string{"0", "1", "2", "3", "4", "5"}},
			{loyalty.EventFilter{Types: []string{"*"}}, []string{"0", "1", "2", "3", "4", "5"}},
			{loyalty.EventFilter{Types: []string{"tier.*"}}, []string{"0", "2"}},
			{loyalty.EventFilter{Types: []string{"purchase.*", "member.erased"}}, []string{"1", "3", "4", "5"}},
			{loyalty.EventFilter{Types: []string{"purchase.created"}, MemberID: "b"}, []string{"5"}},
			{loyalty.EventFilter{MemberID: "b"}, []string{"2", "3", "5"}},
			{loyalty.EventFilter{Follow: true}, []string{"0", "1", "2", "3", "4", "5"}},
			{loyalty.EventFilter{Follow: true, Types: []string{"tier.*"}}, []string{"0", "2"}},
		} {
			for _, n := range []int{1, 4, 10} {
				if got := eventNotes(allEvents(t, svc, c.f, n)); !slices.Equal(got, c.want) {
					t.Errorf("%+v, %d a page: %v, want %v", c.f, n, got, c.want)
				}
			}
		}
		evs := allEvents(t, svc, loyalty.EventFilter{Types: []string{"member.erased"}}, 10)
		var wire map[string]any
		if err := json.Unmarshal(evs[0].JSON(), &wire); err != nil {
			t.Fatal(err)
		}
		if len(wire) != 5 || wire["member_id"] != nil || wire["id"] != evs[0].ID || wire["type"] != "member.erased" {
			t.Fatalf("wire form %s", evs[0].JSON())
		}
		if _, err := time.Parse(time.RFC3339Nano, wire["occurred_at"].(string)); err != nil {
			t.Fatal(err)
		}
		if head, err := svc.EventsHead(ctx); err != nil || head != evs[0].Position+1 {
			t.Fatalf("head %d (%v), want %d", head, err, evs[0].Position+1)
		}
	})
}

// TestFollowAfterErasure: a sink's read that the tail of the log would
// answer (EventFilter.Follow) shows an erased member's earlier events
// scrubbed, as a read of the database does, right after the erasure.
func TestFollowAfterErasure(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		svc := loyalty.NewService(loyaltytest.MustOpen(t, dialect))
		email := "follow@example.com"
		m, _, err := svc.EnrolMember(ctx, loyalty.MemberInput{Email: &email}, loyalty.IdempotencyKey{})
		if err != nil {
			t.Fatal(err)
		}
		follow := loyalty.EventFilter{Follow: true}
		shows := func() bool {
			for _, e := range allEvents(t, svc, follow, 100) {
				if strings.Contains(string(e.Data), email) {
					return true
				}
			}
			return false
		}
		if !shows() {
			t.Fatal("the enrolment's event does not carry the e-mail")
		}
		if err := svc.EraseMember(ctx, m.ID); err != nil {
			t.Fatal(err)
		}
		if shows() {
			t.Fatal("a follower's read shows the erased member's e-mail")
		}
	})
}

// Two owners of one cursor: one holds the lease at a time; the other takes
// it only once it expired or was released, and continues from the
// position stored.
func TestEventCursors(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		clock := loyaltytest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		svc := loyalty.NewService(loyaltytest.MustOpen(t, dialect), loyalty.WithClock(clock.Now))
		const ttl = 30 * time.Second
		pos, ok, err := svc.ClaimCursor(ctx, "hooks", "a", ttl)
		if err != nil || !ok || pos != 0 {
			t.Fatalf("first claim: %d %v %v", pos, ok, err)
		}
		if _, ok, err := svc.ClaimCursor(ctx, "hooks", "b", ttl); err != nil || ok {
			t.Fatalf("b claimed a held lease: %v %v", ok, err)
		}
		if err := svc.AdvanceCursor(ctx, "hooks", "a", 17, ttl); err != nil {
			t.Fatal(err)
		}
		if err := svc.AdvanceCursor(ctx, "hooks", "b", 99, ttl); !errors.Is(err, loyalty.ErrLeaseLost) {
			t.Fatalf("b advanced a lease it does not hold: %v", err)
		}
		// Another cursor is independent.
		if _, ok, err := svc.ClaimCursor(ctx, "nats", "b", ttl); err != nil || !ok {
			t.Fatalf("b's claim of another cursor: %v %v", ok, err)
		}
		clock.Advance(ttl - time.Second)
		if pos, ok, err := svc.ClaimCursor(ctx, "hooks", "a", ttl); err != nil || !ok || pos != 17 {
			t.Fatalf("a renews: %d %v %v", pos, ok, err)
		}
		clock.Advance(ttl - time.Second)
		if _, ok, _ := svc.ClaimCursor(ctx, "hooks", "b", ttl); ok {
			t.Fatal("b took a renewed lease")
		}
		clock.Advance(2 * time.Second)
		pos, ok, err = svc.ClaimCursor(ctx, "hooks", "b", ttl)
		if err != nil || !ok || pos != 17 {
			t.Fatalf("b after a's lease expired: %d %v %v", pos, ok, err)
		}
		if err := svc.AdvanceCursor(ctx, "hooks", "a", 18, ttl); !errors.Is(err, loyalty.ErrLeaseLost) {
			t.Fatalf("a advanced after losing the lease: %v", err)
		}
		if err := svc.ReleaseCursor(ctx, "hooks", "a"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := svc.ClaimCursor(ctx, "hooks", "a", ttl); ok {
			t.Fatal("a's release of b's lease freed it")
		}
		if err := svc.AdvanceCursor(ctx, "hooks", "b", 20, ttl); err != nil {
			t.Fatal(err)
		}
		if err := svc.ReleaseCursor(ctx, "hooks", "b"); err != nil {
			t.Fatal(err)
		}
		if pos, ok, err := svc.ClaimCursor(ctx, "hooks", "a", ttl); err != nil || !ok || pos != 20 {
			t.Fatalf("a after b released: %d %v %v", pos, ok, err)
		}
	})
}

// EventsWake tells a subscriber of events this process committed.
func TestEventsWake(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		svc := loyalty.NewService(loyaltytest.MustOpen(t, dialect))
		stop := svc.StartSequencer(ctx, func(err error) { t.Error(err) })
		defer stop()
		wake := svc.EventsWake()
		if err := svc.WriteEvent(ctx, loyalty.EventMemberCreated, "m", `{}`); err != nil {
			t.Fatal(err)
		}
		select {
		case <-wake:
		case <-time.After(30 * time.Second):
			t.Fatal("no wake-up after an event was committed")
		}
	})
}
