package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// Till batches (§15): POST /v1/purchases/batch.

type batchAnswerT struct {
	Index    int             `json:"index"`
	Status   int             `json:"status"`
	Replayed bool            `json:"replayed"`
	Body     json.RawMessage `json:"body"`
}

// batch posts purchases as one batch and returns the answers, checking
// that there is one per purchase, in order.
func (e *env) batch(token string, purchases []any, headers ...string) []batchAnswerT {
	e.t.Helper()
	var out struct {
		Results []batchAnswerT `json:"results"`
	}
	e.do("POST", "/v1/purchases/batch", token, map[string]any{"purchases": purchases}, headers...).must(e.t, 200).Decode(e.t, &out)
	if len(out.Results) != len(purchases) {
		e.t.Fatalf("%d answers to %d purchases", len(out.Results), len(purchases))
	}
	for i, r := range out.Results {
		if r.Index != i {
			e.t.Fatalf("answer %d has index %d", i, r.Index)
		}
	}
	return out.Results
}

func (a batchAnswerT) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.Body, &m); err != nil {
		t.Fatalf("answer %d: %v: %s", a.Index, err, a.Body)
	}
	return m
}

func receipt(member string, total int64, extID string) map[string]any {
	return map[string]any{"member_id": member, "external_id": extID, "store_id": "store-1", "currency": "USD", "total": total}
}

func TestPurchaseBatchPostsEachInOrder(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		a, b := e.enrol(), e.enrol()
		purchases := []any{
			receipt(a, 10000, "B-1"), // 100 at Insider
			receipt(b, 5000, "B-2"),
			receipt(a, 25000, "B-3"), // reaches VIB, earns 250 at Insider
			map[string]any{"member_id": a, "external_id": "B-4", "total": "ten"}, // does not decode
			receipt(a, 10000, "B-5"), // 125 at VIB: after B-3
			receipt("no-such-member", 1000, "B-6"),
			receipt(b, 5000, "B-2"), // the same receipt again: its replay
			receipt(b, 6000, "B-2"), // the receipt with other content
			map[string]any{"member_id": b, "external_id": "B-7", "store_id": "store-1"},        // no total
			map[string]any{"member_id": b, "external_id": "B-8", "total": 1000, "extra": true}, // ignored, as alone
			receipt(b, 2000, "B-9"),
		}
		res := e.batch(e.pos(), purchases)
		want := []struct {
			status int
			points int64
			tier   string
			code   string
		}{
			{201, 100, "insider", ""}, {201, 50, "insider", ""}, {201, 250, "vib", ""}, {422, 0, "", "validation"},
			{201, 125, "vib", ""}, {422, 0, "", "validation"}, {201, 50, "insider", ""}, {409, 0, "", "duplicate"},
			{422, 0, "", "validation"}, {201, 10, "insider", ""}, {201, 20, "insider", ""},
		}
		for i, w := range want {
			r := res[i]
			if r.Status != w.status {
				t.Fatalf("purchase %d: status %d, want %d: %s", i, r.Status, w.status, r.Body)
			}
			body := r.json(t)
			if w.status != 201 {
				if body["code"] != w.code || num(body["status"]) != int64(w.status) {
					t.Fatalf("purchase %d: problem %s, want code %s", i, r.Body, w.code)
				}
				continue
			}
			if num(body["points_earned"]) != w.points || body["tier_after"] != w.tier {
				t.Fatalf("purchase %d: %s, want %d points and tier %s", i, r.Body, w.points, w.tier)
			}
		}
		if !res[6].Replayed || res[1].Replayed || !bytes.Equal(res[6].Body, res[1].Body) {
			t.Fatalf("the repeated receipt is not the first answer replayed: %+v / %+v", res[1], res[6])
		}
		if ba, bb := e.balance(a), e.balance(b); ba.Available != 475 || ba.Tier.Code != "vib" || bb.Available != 80 {
			t.Fatalf("balances %+v %+v", ba, bb)
		}
		// Each posted purchase is the one GET shows.
		got := e.do("GET", "/v1/purchases/"+res[4].json(t)["id"].(string), e.admin(), nil).must(t, 200).JSON(t)
		if got["external_id"] != "B-5" || num(got["points_earned"]) != 125 {
			t.Fatalf("purchase B-5 reads %v", got)
		}

		// The till sends the batch again: every purchase it posted replays,
		// nothing is paid twice.
		again := e.batch(e.pos(), purchases)
		for _, i := range []int{0, 1, 2, 4, 6, 9, 10} {
			if again[i].Status != 201 || !again[i].Replayed || !bytes.Equal(again[i].Body, res[i].Body) {
				t.Fatalf("resent purchase %d: %+v, first %s", i, again[i], res[i].Body)
			}
		}
		if ba, bb := e.balance(a), e.balance(b); ba.Available != 475 || bb.Available != 80 {
			t.Fatalf("resent batch paid again: %+v %+v", ba, bb)
		}
		e.checkLedger()
	})
}

func TestPurchaseBatchLargerThanATransaction(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		members := make([]string, 17)
		for i := range members {
			members[i] = e.enrol()
		}
		var purchases []any
		earned := map[string]int64{}
		for i := 0; i < loyalty.MaxBatch; i++ {
			m := members[i%len(members)]
			total := int64(100 * (1 + i%50))
			earned[m] += total / 100
			purchases = append(purchases, receipt(m, total, fmt.Sprintf("L-%d", i)))
		}
		for i, r := range e.batch(e.pos(), purchases) {
			if r.Status != 201 || r.Replayed {
				t.Fatalf("purchase %d: %d %s", i, r.Status, r.Body)
			}
		}
		for _, m := range members {
			if b := e.balance(m); b.Available != earned[m] {
				t.Fatalf("member %s: available %d, want %d", m, b.Available, earned[m])
			}
		}
		// One purchase.created per purchase in the event log.
		n := 0
		for cur := ""; ; {
			page, next := e.events("type=purchase.created&limit=500&after=" + cur)
			if n += len(page); len(page) == 0 {
				break
			}
			cur = next
		}
		if n != loyalty.MaxBatch {
			t.Fatalf("%d purchase.created events for %d purchases", n, loyalty.MaxBatch)
		}
		e.checkLedger()
	})
}

func TestPurchaseBatchWithPointsPayment(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.enablePayments()
		m := e.enrol()
		e.grant(m, 1000)
		res := e.batch(e.pos(), []any{
			receipt(m, 10000, "P-1"),      // +100: 1,100
			payBody(m, 5000, 1000, "P-2"), // pays 1,000 points (20.00), earns 30 on the cash: 130
			payBody(m, 5000, 500, "P-3"),  // 130 points: refused
			receipt(m, 20000, "P-4"),      // +200: 330
			payBody(m, 10000, 500, "P-5"), // 330 points: refused
			receipt(m, 1000, "P-6"),       // +10: 340
		})
		status := []int{201, 201, 409, 201, 409, 201}
		for i, s := range status {
			if res[i].Status != s {
				t.Fatalf("purchase %d: %d %s", i, res[i].Status, res[i].Body)
			}
		}
		if res[2].json(t)["code"] != "insufficient_points" {
			t.Fatalf("%s", res[2].Body)
		}
		if b := e.balance(m); b.Available != 340 {
			t.Fatalf("available %d", b.Available)
		}
		e.checkLedger()
	})
}

func TestPurchaseBatchIdempotencyKey(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		// No receipts: the batch's key guards it, and each purchase by its
		// index.
		purchases := []any{map[string]any{"member_id": m, "total": 1000}, map[string]any{"member_id": m, "total": 2000}}
		body := map[string]any{"purchases": purchases}
		first := e.do("POST", "/v1/purchases/batch", e.pos(), body, "Idempotency-Key", "offline-7").must(t, 200)
		again := e.do("POST", "/v1/purchases/batch", e.pos(), body, "Idempotency-Key", "offline-7").must(t, 200)
		if again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(first.Body, again.Body) {
			t.Fatalf("the batch is not its first answer again: %s\n%s", first.Body, again.Body)
		}
		// Another batch under the key is refused whole.
		other := map[string]any{"purchases": []any{purchases[0], map[string]any{"member_id": m, "total": 3000}}}
		wantProblemCode(t, e.do("POST", "/v1/purchases/batch", e.pos(), other, "Idempotency-Key", "offline-7"), 422, "idempotency_key_reused")
		// Sent again before its answer was stored (the engine stopped
		// between the purchases and the answer), each purchase replays
		// under its own key.
		if err := e.store.DB().Exec(`DELETE FROM idempotency_keys WHERE key = ?`, "offline-7").Error; err != nil {
			t.Fatal(err)
		}
		var firstOut struct{ Results []batchAnswerT }
		if err := json.Unmarshal(first.Body, &firstOut); err != nil {
			t.Fatal(err)
		}
		resent := e.batch(e.pos(), purchases, "Idempotency-Key", "offline-7")
		for i := range purchases {
			if resent[i].Status != 201 || !resent[i].Replayed || !bytes.Equal(resent[i].Body, firstOut.Results[i].Body) {
				t.Fatalf("purchase %d: %+v, first %s", i, resent[i], firstOut.Results[i].Body)
			}
		}
		if b := e.balance(m); b.Available != 30 {
			t.Fatalf("available %d", b.Available)
		}
	})
}

func TestPurchaseBatchRefusals(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		e.do("POST", "/v1/purchases/batch", e.pos(), map[string]any{"purchases": []any{}}).must(t, 422)
		e.do("POST", "/v1/purchases/batch", e.pos(), map[string]any{}).must(t, 422)
		e.do("POST", "/v1/purchases/batch", e.pos(), `{"purchases": 3}`).must(t, 422)
		e.do("POST", "/v1/purchases/batch", e.pos(), `{"purchases": [`).must(t, 400)
		many := make([]any, loyalty.MaxBatch+1)
		for i := range many {
			many[i] = map[string]any{"member_id": m, "total": 100}
		}
		e.do("POST", "/v1/purchases/batch", e.pos(), map[string]any{"purchases": many}).must(t, 422)
		e.do("POST", "/v1/purchases/batch", e.marketer(), map[string]any{"purchases": []any{receipt(m, 100, "X")}}).must(t, 403)
		e.do("POST", "/v1/purchases/batch", "", map[string]any{"purchases": []any{receipt(m, 100, "X")}}).must(t, 401)
		// A till bound to a store posts only for it, purchase by purchase.
		till := e.tokenStore(loyalty.RolePOS, "till-9", "store-9")
		res := e.batch(till, []any{map[string]any{"member_id": m, "total": 100, "external_id": "S-1"}, receipt(m, 100, "S-2")})
		if res[0].Status != 201 || res[1].Status != 403 {
			t.Fatalf("%+v", res)
		}
		if b := e.balance(m); b.Available != 1 {
			t.Fatalf("available %d", b.Available)
		}
	})
}

// Batches from several tills touching the same members in opposite orders
// (on PostgreSQL, transactions that may deadlock) post every purchase once.
func TestConcurrentBatchesPostEachPurchaseOnce(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		members := make([]string, 8)
		for i := range members {
			members[i] = e.enrol()
		}
		const tills, perBatch = 4, 120
		var wg sync.WaitGroup
		errs := make(chan error, tills*2)
		for till := 0; till < tills; till++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var purchases []any
				for i := 0; i < perBatch; i++ {
					k := i % len(members)
					if till%2 == 1 {
						k = len(members) - 1 - k
					}
					purchases = append(purchases, receipt(members[k], 100, fmt.Sprintf("T%d-%d", till, i)))
				}
				// Each till sends its batch twice, as after a timeout.
				for range 2 {
					r := e.do("POST", "/v1/purchases/batch", e.pos(), map[string]any{"purchases": purchases})
					if r.Status != 200 {
						errs <- fmt.Errorf("till %d: %d %s", till, r.Status, r.Body)
						return
					}
					var out struct{ Results []batchAnswerT }
					if err := json.Unmarshal(r.Body, &out); err != nil {
						errs <- err
						return
					}
					for _, a := range out.Results {
						if a.Status != 201 {
							errs <- fmt.Errorf("till %d purchase %d: %d %s", till, a.Index, a.Status, a.Body)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var total int64
		for _, m := range members {
			total += e.balance(m).Available
		}
		if total != tills*perBatch {
			t.Fatalf("%d points for %d purchases of 1 point", total, tills*perBatch)
		}
		e.checkLedger()
	})
}

// One receipt twice in a batch, for two members: the second is the
// conflict it would be posted alone, whether or not the first is committed
// yet when the second is planned.
func TestPurchaseBatchReceiptTwice(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		a, b := e.enrol(), e.enrol()
		res := e.batch(e.pos(), []any{receipt(a, 5000, "D-1"), receipt(b, 5000, "D-1"), receipt(b, 7000, "D-2")})
		if res[0].Status != 201 || res[1].Status != 409 || res[1].json(t)["code"] != "duplicate" || res[2].Status != 201 {
			t.Fatalf("%+v", res)
		}
		if ba, bb := e.balance(a), e.balance(b); ba.Available != 50 || bb.Available != 70 {
			t.Fatalf("balances %d %d", ba.Available, bb.Available)
		}
		e.checkLedger()
	})
}

// A member's offer with one use per member, in a batch with three of its
// purchases: the first uses it, the others earn without it, as one at a
// time.
func TestPurchaseBatchOfferUsedOnce(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m, other := e.enrol(), e.enrol()
		e.ofOffer(map[string]any{"code": "once", "kind": "bonus", "bonus_points": 50, "max_uses_per_member": 1, "target": ofOnly(m)})
		res := e.batch(e.pos(), []any{receipt(m, 1000, "O-1"), receipt(other, 1000, "O-2"), receipt(m, 1000, "O-3"),
			receipt(other, 1000, "O-4"), receipt(m, 1000, "O-5")})
		want := []int64{60, 10, 10, 10, 10}
		for i, w := range want {
			if res[i].Status != 201 || num(res[i].json(t)["points_earned"]) != w {
				t.Fatalf("purchase %d: %d %s, want %d points", i, res[i].Status, res[i].Body, w)
			}
		}
		if bm, bo := e.balance(m), e.balance(other); bm.Available != 80 || bo.Available != 20 {
			t.Fatalf("balances %d %d", bm.Available, bo.Available)
		}
		e.checkLedger()
	})
}

// A batch large enough to go on several connections at once (PostgreSQL)
// answers as one posted in order: a member's purchases follow each other
// (each answer's balance one version on from the member's last), and of
// two purchases under one receipt, of different members far apart in the
// batch, the earlier is posted and the later refused as a duplicate.
func TestPurchaseBatchAnswersInOrder(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		members := make([]string, 40)
		for i := range members {
			members[i] = e.enrol()
		}
		var purchases []any
		earned := map[string]int64{}
		dup := map[int]bool{}
		for i := 0; i < loyalty.MaxBatch; i++ {
			m := members[i%len(members)]
			ext := fmt.Sprintf("O-%d", i)
			if i >= 200 && i%25 == 3 {
				ext, dup[i] = fmt.Sprintf("O-%d", i-145), true // purchase i-145's receipt, of another member
			} else {
				earned[m] += int64(1 + i%30)
			}
			purchases = append(purchases, receipt(m, int64(100*(1+i%30)), ext))
		}
		version := map[string]int64{}
		for m := range earned {
			version[m] = e.balance(m).Version
		}
		for i, r := range e.batch(e.pos(), purchases) {
			if dup[i] {
				if r.Status != 409 || r.json(t)["code"] != "duplicate" {
					t.Fatalf("purchase %d, a receipt posted earlier in the batch: %d %s", i, r.Status, r.Body)
				}
				continue
			}
			if r.Status != 201 || r.Replayed {
				t.Fatalf("purchase %d: %d %s", i, r.Status, r.Body)
			}
			m := members[i%len(members)]
			v := int64(r.json(t)["balance"].(map[string]any)["version"].(float64))
			if v <= version[m] {
				t.Fatalf("purchase %d of member %s answers version %d after %d", i, m, v, version[m])
			}
			version[m] = v
		}
		for _, m := range members {
			if b := e.balance(m); b.Available != earned[m] || b.Version != version[m] {
				t.Fatalf("member %s: available %d version %d, want %d and %d", m, b.Available, b.Version, earned[m], version[m])
			}
		}
		e.checkLedger()
	})
}
