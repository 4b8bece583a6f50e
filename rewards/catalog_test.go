package rewards_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/rewards"
)

func TestNormalizeCoupon(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"7KQ2-M9XD-4TRA-WZ3F", "7KQ2-M9XD-4TRA-WZ3F"},
		{"7kq2m9xd4trawz3f", "7KQ2-M9XD-4TRA-WZ3F"},
		{" 7KQ2 M9XD 4TRA WZ3F ", "7KQ2-M9XD-4TRA-WZ3F"},
		// Letters read aloud for digits: O is 0, I and L are 1.
		{"OKQ2-M9XD-4TRA-WZIL", "0KQ2-M9XD-4TRA-WZ11"},
		// Anything not 16 characters is left as typed, to match nothing.
		{"7KQ2-M9XD", "7KQ2M9XD"},
		{"", ""},
	} {
		if got := rewards.NormalizeCoupon(c.in); got != c.want {
			t.Errorf("NormalizeCoupon(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestUpdateReward covers a patch: fields left out stay, null clears what
// may be cleared, the edit is stamped with the service's clock, and the
// errors say which rule broke.
func TestUpdateReward(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		rw := e.addReward(`{"code":"tote","name":"Tote","description":"A bag","cost_points":10,"stock":5,"per_member_limit":2}`)
		e.addReward(`{"code":"mug","name":"Mug","cost_points":5}`)
		later := e.clock.Now().Add(time.Hour)
		e.clock.Set(later)

		got, err := e.rw.Update(e.ctx, rw.ID, input(t, `{"name":"Canvas tote","stock":null,"description":null}`))
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "Canvas tote" || got.Stock != nil || got.Description != "" || got.CostPoints != 10 ||
			got.PerMemberLimit == nil || *got.PerMemberLimit != 2 || !got.Active {
			t.Fatalf("after the patch: %+v", got)
		}
		stored, err := e.rw.Get(e.ctx, rw.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !stored.UpdatedAt.Equal(later) || !stored.CreatedAt.Equal(rw.CreatedAt) {
			t.Fatalf("stored updated_at %s, created_at %s; want %s and %s", stored.UpdatedAt, stored.CreatedAt, later, rw.CreatedAt)
		}
		if stored.Name != got.Name || stored.Stock != nil {
			t.Fatalf("stored %+v, answered %+v", stored, got)
		}

		for _, c := range []struct {
			name, id, body string
			code           loyalty.Code
			reason         string
		}{
			{"NullName", rw.ID, `{"name":null}`, loyalty.Invalid, "validation"},
			{"NegativeStock", rw.ID, `{"stock":-1}`, loyalty.Invalid, "validation"},
			{"UnknownTier", rw.ID, `{"min_tier":"gold"}`, loyalty.Invalid, "validation"},
			{"WindowBackwards", rw.ID, `{"valid_from":"2026-05-01T00:00:00Z","valid_until":"2026-04-01T00:00:00Z"}`, loyalty.Invalid, "validation"},
			{"DuplicateCode", rw.ID, `{"code":"mug"}`, loyalty.Conflict, "duplicate"},
			{"NoSuchReward", "no-such-reward", `{"name":"X"}`, loyalty.NotFound, "not_found"},
		} {
			t.Run(c.name, func(t *testing.T) {
				_, err := e.rw.Update(e.ctx, c.id, input(t, c.body))
				var le *loyalty.Error
				if !errors.As(err, &le) || le.Code != c.code || le.Reason != c.reason {
					t.Fatalf("%s: %v, want %s/%s", c.body, err, c.code, c.reason)
				}
			})
		}
		// A refused patch changes nothing.
		if after, _ := e.rw.Get(e.ctx, rw.ID); !reflect.DeepEqual(after, stored) {
			t.Fatalf("after refused patches: %+v, want %+v", after, stored)
		}
	})
}

// TestRedeemAndCancel follows one reward's stock and one member's points
// through redemptions, a cancel and the refusals in between.
func TestRedeemAndCancel(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		rw := e.addReward(`{"code":"tote","name":"Tote","cost_points":30,"stock":2,"per_member_limit":2}`)
		m := e.member(100)

		first, err := e.redeem(m, rw.ID)
		if err != nil {
			t.Fatal(err)
		}
		if first.Status != rewards.StatusIssued || first.PointsSpent != 30 || first.Balance == nil || first.Balance.Available != 70 {
			t.Fatalf("first redemption: %+v", first)
		}
		if _, err := e.redeem(m, rw.ID); err != nil {
			t.Fatal(err)
		}
		if s := e.stock(rw.ID); s != 0 {
			t.Fatalf("stock %d after two of two", s)
		}
		if got := reason(errOf(e.redeem(e.member(100), rw.ID))); got != "out_of_stock" {
			t.Fatalf("a third redemption: %s, want out_of_stock", got)
		}
		if got := reason(errOf(e.redeem(m, rw.ID))); got != "limit_reached" {
			t.Fatalf("the member's third: %s, want limit_reached", got)
		}

		c, _, err := e.rw.Cancel(e.ctx, till, first.ID, loyalty.IdempotencyKey{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Status != rewards.StatusCancelled || c.Balance.Available != 70 {
			t.Fatalf("cancelled: %+v, balance %+v", c, c.Balance)
		}
		if s := e.stock(rw.ID); s != 1 {
			t.Fatalf("stock %d after a cancel, want 1", s)
		}
		if got := reason(errOf(e.rw.Cancel(e.ctx, till, first.ID, loyalty.IdempotencyKey{}))); got != "not_issued" {
			t.Fatalf("cancelling twice: %s, want not_issued", got)
		}
		if got := reason(errOf(e.rw.Use(e.ctx, till, first.CouponCode, loyalty.IdempotencyKey{}))); got != "not_issued" {
			t.Fatalf("using a cancelled coupon: %s, want not_issued", got)
		}

		poor := e.member(10)
		if got := reason(errOf(e.redeem(poor, rw.ID))); got != "insufficient_points" {
			t.Fatalf("10 points for a 30-point reward: %s, want insufficient_points", got)
		}
		if s := e.stock(rw.ID); s != 1 {
			t.Fatalf("stock %d after a refused redemption, want 1", s)
		}
		if err := e.rw.Retire(e.ctx, rw.ID); err != nil {
			t.Fatal(err)
		}
		if got := reason(errOf(e.redeem(m, rw.ID))); got != "not_available" {
			t.Fatalf("a retired reward: %s, want not_available", got)
		}
		if s := e.stock(rw.ID); s != 1 {
			t.Fatalf("retiring changed the stock to %d", s)
		}
	})
}

// errOf is the error of a call that returns a value and an error, or a
// value, a replay and an error.
func errOf[T any](_ T, rest ...any) error {
	if len(rest) == 0 {
		return nil
	}
	err, _ := rest[len(rest)-1].(error)
	return err
}
