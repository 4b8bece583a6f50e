package rewards_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/rewards"
)

// env is the rewards service on a fresh database of one dialect, with a
// clock that stands still unless a test moves it.
type env struct {
	t      testing.TB
	ctx    context.Context
	store  *loyalty.Store
	ledger *loyalty.Service
	rw     *rewards.Service
	clock  *loyaltytest.Clock
}

var (
	admin    = loyalty.Principal{Subject: "op-1", Role: loyalty.RoleAdmin}
	marketer = loyalty.Principal{Subject: "mk-1", Role: loyalty.RoleMarketer}
	till     = loyalty.Principal{Subject: "till-1", Role: loyalty.RolePOS, StoreID: "s1"}
)

func newEnv(t testing.TB, dialect string) *env {
	t.Helper()
	store := loyaltytest.MustOpen(t, dialect)
	clock := loyaltytest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	ledger := loyalty.NewService(store, loyalty.WithClock(clock.Now))
	return &env{t: t, ctx: loyalty.WithPrincipal(context.Background(), marketer), store: store, ledger: ledger,
		rw: rewards.NewService(ledger), clock: clock}
}

// input reads a reward body as the API would, so that the fields it names
// are the fields a patch changes.
func input(t testing.TB, body string) rewards.RewardInput {
	t.Helper()
	var in rewards.RewardInput
	if err := json.Unmarshal([]byte(body), &in); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return in
}

// addReward creates a reward from a JSON body.
func (e *env) addReward(body string) rewards.Reward {
	e.t.Helper()
	r, _, err := e.rw.Create(e.ctx, input(e.t, body), loyalty.IdempotencyKey{})
	if err != nil {
		e.t.Fatalf("create reward %s: %v", body, err)
	}
	return r
}

// member enrols a member holding points available now.
func (e *env) member(points int64) string {
	e.t.Helper()
	m, _, err := e.ledger.EnrolMember(e.ctx, loyalty.MemberInput{}, loyalty.IdempotencyKey{})
	if err != nil {
		e.t.Fatal(err)
	}
	if points > 0 {
		if _, _, err := e.ledger.Adjust(e.ctx, admin, m.ID, loyalty.AdjustmentInput{Points: &points, Reason: "test"}, loyalty.IdempotencyKey{}); err != nil {
			e.t.Fatal(err)
		}
	}
	return m.ID
}

// redeem asks for reward on behalf of member, as a till.
func (e *env) redeem(member, reward string) (rewards.Redemption, error) {
	r, _, err := e.rw.Redeem(e.ctx, till, member, rewards.RedeemInput{RewardID: reward}, loyalty.IdempotencyKey{})
	return r, err
}

// stock reads a reward's stock; -1 for unlimited.
func (e *env) stock(id string) int64 {
	e.t.Helper()
	r, err := e.rw.Get(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	if r.Stock == nil {
		return -1
	}
	return *r.Stock
}

// dbInt reads one integer from the database.
func (e *env) dbInt(query string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.store.DB().Raw(query, args...).Scan(&n).Error; err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// reason is the machine-readable reason of a domain error, "" for nil and
// the whole message for any other error.
func reason(err error) string {
	if err == nil {
		return ""
	}
	var le *loyalty.Error
	if errors.As(err, &le) {
		return le.Reason
	}
	return fmt.Sprintf("unexpected error: %v", err)
}
