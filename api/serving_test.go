package api

import (
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestWritesMarkServing checks that the API tells the store when a caller's
// write begins (so that the expiry leaves the tills a core), and that reads,
// a job's run and a refused caller do not.
func TestWritesMarkServing(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		marked := func() bool { return !e.store.ServedAt().IsZero() }
		if r := e.do("GET", "/v1/tiers", e.admin(), nil); r.Status != 200 {
			t.Fatalf("GET /v1/tiers: %d %s", r.Status, r.Body)
		}
		if r := e.do("POST", "/v1/jobs/redemption-rate/run", e.admin(), nil); r.Status != 200 {
			t.Fatalf("a job's run: %d %s", r.Status, r.Body)
		}
		if r := e.do("POST", "/v1/members", "", map[string]any{"email": "a@example.com"}); r.Status != 401 {
			t.Fatalf("a write without a token: %d %s", r.Status, r.Body)
		}
		if marked() {
			t.Fatal("a read, a job's run or a refused caller marked the store as serving")
		}
		if r := e.do("POST", "/v1/members", e.token(loyalty.RolePOS, "till-1"), map[string]any{"email": "a@example.com"}); r.Status != 201 {
			t.Fatalf("enrol: %d %s", r.Status, r.Body)
		}
		if !marked() {
			t.Fatal("a till's enrolment did not mark the store as serving")
		}
	})
}
