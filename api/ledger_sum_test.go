package api

import (
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// ledgerPage is one page of GET /v1/members/{id}/ledger.
type ledgerPage struct {
	Items      []loyalty.Entry `json:"items"`
	NextCursor *string         `json:"next_cursor"`
}

// ledgerPages reads a member's ledger page by page, limit entries a page;
// between calls to next the caller may change the engine.
func (e *env) ledgerPages(member string, limit int) (next func() ([]loyalty.Entry, bool)) {
	cursor, done := "", false
	return func() ([]loyalty.Entry, bool) {
		e.t.Helper()
		if done {
			return nil, false
		}
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var p ledgerPage
		e.do("GET", "/v1/members/"+member+"/ledger?"+q.Encode(), e.admin(), nil).must(e.t, 200).Decode(e.t, &p)
		if p.NextCursor == nil {
			done = true
		} else {
			cursor = *p.NextCursor
		}
		return p.Items, true
	}
}

// checkLedgerSum asserts, through the API only, that a member's ledger
// sums to available + pending now, and returns the ledger.
func (e *env) checkLedgerSum(t *testing.T, member, when string) []loyalty.Entry {
	t.Helper()
	entries := e.ledgerEntries(member)
	var sum int64
	for _, en := range entries {
		sum += en.Points
	}
	b := e.balance(member)
	if sum != b.Available+b.Pending {
		t.Fatalf("%s: the ledger sums to %d, the balance is available %d + pending %d; ledger %+v",
			when, sum, b.Available, b.Pending, entries)
	}
	return entries
}

func expireEntries(entries []loyalty.Entry) []loyalty.Entry {
	var out []loyalty.Entry
	for _, en := range entries {
		if en.Kind == "expire" {
			out = append(out, en)
		}
	}
	return out
}

// storedExpires counts the expire entries the database holds for a member.
func (e *env) storedExpires(member string) int64 {
	return e.dbInt("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'expire' AND member_id = ?", member)
}

// TestLedgerSumsToBalanceAcrossExpiry reads the ledger through the API at
// instants before, at and after points expire, and before and after the
// expire-points job stores the expiry, under both expiry policies: it
// always sums to available + pending. From the instant a lot expires the
// listing shows its expire entry, and the job later stores that very entry
// (same id, points, date, everything), so nothing moves or counts twice,
// and a reader paging through the ledger meanwhile sees each entry once.
func TestLedgerSumsToBalanceAcrossExpiry(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		t.Run("LotPolicy", func(t *testing.T) {
			e := newEnv(t, dialect)
			e.clock.Advance(123456 * time.Microsecond)
			t0 := e.clock.Now()
			m := e.enrol()
			e.buy(m, 10000, "R-1") // 100, expires t0+365d
			// Dated back past expiry_days: its 50 points expired 35 days ago.
			e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": m, "external_id": "R-0", "store_id": "store-1",
				"total": 5000, "occurred_at": rfc(t0.AddDate(0, 0, -400))}).must(t, 201)
			if b := e.balance(m); b.Available != 100 || b.Pending != 0 {
				t.Fatalf("after the backdated purchase: %+v", b)
			}
			entries := e.checkLedgerSum(t, m, "right after a purchase dated past its expiry")
			exp := expireEntries(entries)
			if len(exp) != 1 || exp[0].Points != -50 || !exp[0].OccurredAt.Equal(t0.AddDate(0, 0, -35)) ||
				exp[0].ExpiresAt == nil || !exp[0].ExpiresAt.Equal(exp[0].OccurredAt) {
				t.Fatalf("expire entries %+v, want one of -50 at %s", exp, t0.AddDate(0, 0, -35))
			}
			if n := e.storedExpires(m); n != 0 {
				t.Fatalf("reading the ledger stored %d expire entries", n)
			}
			shown := map[string]loyalty.Entry{exp[0].ID: exp[0]}

			exp1 := t0.AddDate(0, 0, 365)
			for _, at := range []time.Time{exp1.Add(-time.Microsecond), exp1, exp1.Add(time.Microsecond)} {
				e.clock.Set(at)
				exp := expireEntries(e.checkLedgerSum(t, m, "at "+rfc(at)))
				want := 1
				if !at.Before(exp1) {
					want = 2
				}
				if len(exp) != want {
					t.Fatalf("at %s: %d expire entries, want %d: %+v", rfc(at), len(exp), want, exp)
				}
				for _, en := range exp {
					if prev, ok := shown[en.ID]; ok && !reflect.DeepEqual(prev, en) {
						t.Fatalf("the expire entry %s changed from %+v to %+v", en.ID, prev, en)
					}
					shown[en.ID] = en
				}
			}
			if b := e.balance(m); b.Available != 0 {
				t.Fatalf("after expiry: %+v", b)
			}

			// A reader pages through, one entry a page, while the job runs.
			pages := e.ledgerPages(m, 1)
			var paged []loyalty.Entry
			first, _ := pages()
			paged = append(paged, first...)
			e.runJob("expire-points", e.clock.Now())
			for items, ok := pages(); ok; items, ok = pages() {
				paged = append(paged, items...)
			}
			if n := e.storedExpires(m); n != 2 {
				t.Fatalf("the job stored %d expire entries, want 2", n)
			}
			after := e.checkLedgerSum(t, m, "after the job")
			if !reflect.DeepEqual(paged, after) {
				t.Fatalf("paging across the job read\n%+v\nthe ledger is\n%+v", paged, after)
			}
			stored := expireEntries(after)
			if len(stored) != len(shown) {
				t.Fatalf("the job stored %+v, the listing showed %+v", stored, shown)
			}
			for _, en := range stored {
				if !reflect.DeepEqual(shown[en.ID], en) {
					t.Fatalf("the job stored\n%+v\nthe listing showed\n%+v", en, shown[en.ID])
				}
			}
			e.checkLedger()
		})

		t.Run("InactivityPolicy", func(t *testing.T) {
			e := newEnv(t, dialect)
			e.do("PUT", "/v1/program", e.marketer(), map[string]any{"expiry_policy": "inactivity", "expiry_days": 30}).must(t, 200)
			e.clock.Advance(123456 * time.Microsecond) // the job dates expiries to the microsecond
			t0 := e.clock.Now()
			m := e.enrol()     // expired by the job
			other := e.enrol() // expired when it buys again
			e.buy(m, 10000, "R-1")
			e.buy(other, 8000, "O-1")
			e.clock.Advance(10 * oneDay)
			e.buy(m, 5000, "R-2")     // deadline t0+40d
			e.buy(other, 2000, "O-2") // deadline t0+40d
			deadline := t0.AddDate(0, 0, 40)
			// A member whose only purchase is dated back past the deadline.
			late := e.enrol()
			e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": late, "external_id": "L-1", "store_id": "store-1",
				"total": 7000, "occurred_at": rfc(t0.AddDate(0, 0, -31))}).must(t, 201)
			if b := e.balance(late); b.Available != 0 || b.Pending != 0 {
				t.Fatalf("a purchase dated past the deadline: %+v", b)
			}
			exp := expireEntries(e.checkLedgerSum(t, late, "right after a purchase dated past the deadline"))
			if len(exp) != 1 || exp[0].Points != -70 || !exp[0].OccurredAt.Equal(t0.AddDate(0, 0, -1)) {
				t.Fatalf("expire entries %+v, want one of -70 at %s", exp, t0.AddDate(0, 0, -1))
			}
			shown := map[string]loyalty.Entry{exp[0].ID: exp[0]}

			for _, at := range []time.Time{deadline.Add(-time.Microsecond), deadline, deadline.Add(time.Microsecond)} {
				e.clock.Set(at)
				for _, member := range []string{m, other} {
					exp := expireEntries(e.checkLedgerSum(t, member, "at "+rfc(at)))
					want := 0
					if !at.Before(deadline) {
						want = 2
					}
					if len(exp) != want {
						t.Fatalf("at %s: %d expire entries, want %d: %+v", rfc(at), len(exp), want, exp)
					}
					for _, en := range exp {
						if !en.OccurredAt.Equal(deadline) {
							t.Fatalf("expire entry %+v, want it dated at the deadline %s", en, rfc(deadline))
						}
						shown[en.ID] = en
					}
				}
			}
			e.clock.Set(deadline.Add(time.Hour))
			// The other member buys again: its account writes the expiry off
			// first, as the same entries.
			e.buy(other, 1000, "O-3")
			if n := e.storedExpires(other); n != 2 {
				t.Fatalf("the purchase after the deadline stored %d expire entries, want 2", n)
			}
			if b := e.balance(other); b.Available != 10 {
				t.Fatalf("after buying again: %+v", b)
			}
			e.runJob("expire-points", e.clock.Now())
			if n := e.storedExpires(m) + e.storedExpires(late); n != 3 {
				t.Fatalf("the job stored %d expire entries, want 3", n)
			}
			var stored int
			for _, member := range []string{m, other, late} {
				for _, en := range expireEntries(e.checkLedgerSum(t, member, "after the job")) {
					stored++
					if !reflect.DeepEqual(shown[en.ID], en) {
						t.Fatalf("stored\n%+v\nthe listing showed\n%+v", en, shown[en.ID])
					}
				}
			}
			if stored != len(shown) {
				t.Fatalf("%d expire entries stored, %d shown", stored, len(shown))
			}
			e.checkLedger()
		})
	})
}

// TestReturnAfterExpiryTakesNoExpiredPoints returns a purchase whose
// points expired, before and after the expire-points job has run, under
// both policies: the return takes back only what did not expire (§8), so
// the member never loses the same points twice.
func TestReturnAfterExpiryTakesNoExpiredPoints(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		for _, c := range []struct {
			name     string
			policy   string
			days     int
			spend    int64 // redeemed from the purchase's points before they expire
			runJob   bool
			reversed int64
			after    int64 // available after the return
		}{
			{"LotBeforeJob", "lot", 365, 0, false, 0, 100},
			{"LotAfterJob", "lot", 365, 0, true, 0, 100},
			{"LotPartSpentBeforeJob", "lot", 365, 60, false, 60, 40},
			{"LotPartSpentAfterJob", "lot", 365, 60, true, 60, 40},
			{"InactivityBeforeJob", "inactivity", 30, 0, false, 0, 0},
			{"InactivityAfterJob", "inactivity", 30, 0, true, 0, 0},
		} {
			t.Run(c.name, func(t *testing.T) {
				e := newEnv(t, dialect)
				e.do("PUT", "/v1/program", e.marketer(), map[string]any{"expiry_policy": c.policy, "expiry_days": c.days}).must(t, 200)
				t0 := e.clock.Now()
				m := e.enrol()
				p1 := e.buy(m, 10000, "R-1")["id"].(string) // 100
				if c.spend > 0 {
					rw := e.addReward("r", c.spend)["id"].(string)
					e.redeemReward(e.pos(), m, rw).must(t, 201)
				}
				var expiry time.Time
				if c.policy == "lot" {
					e.clock.Advance(100 * oneDay)
					e.buy(m, 10000, "R-2") // 100 that outlive R-1's
					expiry = t0.AddDate(0, 0, c.days)
				} else {
					expiry = t0.AddDate(0, 0, c.days)
				}
				e.clock.Set(expiry.Add(time.Hour))
				if c.runJob {
					e.runJob("expire-points", e.clock.Now())
				}
				before := e.balance(m)
				e.checkLedgerSum(t, m, "before the return")
				ret := e.do("POST", "/v1/purchases/"+p1+"/returns", e.pos(), map[string]any{"external_id": "X", "amount": 10000}).must(t, 201).JSON(t)
				if got := num(ret["points_reversed"]); got != c.reversed {
					t.Fatalf("the return reversed %d points, want %d (available before it: %d)", got, c.reversed, before.Available)
				}
				b := e.balance(m)
				if b.Available != c.after || num(ret["balance"].(map[string]any)["available"]) != c.after {
					t.Fatalf("available %d after the return (its answer: %v), want %d", b.Available, ret["balance"], c.after)
				}
				e.checkLedgerSum(t, m, "after the return")
				e.runJob("expire-points", e.clock.Now())
				if got := e.balance(m); got.Available != c.after {
					t.Fatalf("available %d after the job, want %d", got.Available, c.after)
				}
				pts, _ := kindsOf(e.checkLedgerSum(t, m, "after the return and the job"))
				if pts["expire"] != -(100-c.spend) || pts["return"] != -c.reversed {
					t.Fatalf("expired %d and returned %d, want %d and %d", pts["expire"], pts["return"], -(100 - c.spend), -c.reversed)
				}
				e.checkLedger()
			})
		}
	})
}

// TestReturnReplayNeedsTheStore posts a return from one store's till and
// then the same request from a till bound to another store: that till is
// refused as for any return of another store's purchase, and is never
// replayed the first till's answer (the member's balance) under the
// return's external_id or an Idempotency-Key.
func TestReturnReplayNeedsTheStore(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		s1 := e.tokenStore(loyalty.RolePOS, "till-s1", "store-1")
		s2 := e.tokenStore(loyalty.RolePOS, "till-s2", "store-2")
		// The same till moved to store 2: the same caller for its keys.
		s1moved := e.tokenStore(loyalty.RolePOS, "till-s1", "store-2")
		p := e.do("POST", "/v1/purchases", s1, map[string]any{"member_id": m, "external_id": "R-1", "total": 10000}).must(t, 201).JSON(t)["id"].(string)
		body := map[string]any{"external_id": "RET-1", "amount": 4000}
		first := e.do("POST", "/v1/purchases/"+p+"/returns", s1, body, "Idempotency-Key", "k-1").must(t, 201)
		if e.do("POST", "/v1/purchases/"+p+"/returns", s1, body, "Idempotency-Key", "k-1").must(t, 201).Header.Get("Idempotent-Replayed") != "true" {
			t.Fatal("the till's own repeat was not replayed")
		}
		for name, r := range map[string]resp{
			"OtherStore":               e.do("POST", "/v1/purchases/"+p+"/returns", s2, body),
			"OtherStoreSameKey":        e.do("POST", "/v1/purchases/"+p+"/returns", s2, body, "Idempotency-Key", "k-1"),
			"SameTillOtherStore":       e.do("POST", "/v1/purchases/"+p+"/returns", s1moved, body),
			"SameTillOtherStoreAndKey": e.do("POST", "/v1/purchases/"+p+"/returns", s1moved, body, "Idempotency-Key", "k-1"),
		} {
			t.Run(name, func(t *testing.T) {
				if r.Header.Get("Idempotent-Replayed") != "" || string(r.Body) == string(first.Body) {
					t.Fatalf("another store's till got the return replayed: %d %s", r.Status, r.Body)
				}
				wantProblemCode(t, r, http.StatusForbidden, "wrong_store")
			})
		}
		if n := e.dbInt("SELECT COUNT(*) FROM returns"); n != 1 {
			t.Fatalf("%d returns stored, want 1", n)
		}
		// A purchase's receipt is its store's: another store's till posting
		// it for store 1 is refused, never replayed.
		r := e.do("POST", "/v1/purchases", s2, map[string]any{"member_id": m, "external_id": "R-1", "store_id": "store-1", "total": 10000})
		if r.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("another store's till got the purchase replayed: %s", r.Body)
		}
		wantProblemCode(t, r, http.StatusForbidden, "wrong_store")
		e.checkLedger()
	})
}
