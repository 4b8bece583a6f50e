package loyalty_test

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// oracleEnv is a service on a fresh database with a settable clock.
type oracleEnv struct {
	t     *testing.T
	store *loyalty.Store
	svc   *loyalty.Service
	clock *loyaltytest.Clock
	admin loyalty.Principal
	ctx   context.Context
	n     int
}

func newOracleEnv(t *testing.T, dialect string, patch loyalty.ProgramPatch) *oracleEnv {
	t.Helper()
	e := &oracleEnv{t: t, store: loyaltytest.MustOpen(t, dialect),
		clock: loyaltytest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)),
		admin: loyalty.Principal{Subject: "op", Role: loyalty.RoleAdmin}}
	e.svc = loyalty.NewService(e.store, loyalty.WithClock(e.clock.Now))
	e.ctx = loyalty.WithPrincipal(context.Background(), e.admin)
	if _, err := e.svc.UpdateProgram(e.ctx, patch); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *oracleEnv) enrol() string {
	e.t.Helper()
	e.n++
	ext := fmt.Sprintf("M-%d", e.n)
	m, _, err := e.svc.EnrolMember(e.ctx, loyalty.MemberInput{ExternalID: &ext}, loyalty.IdempotencyKey{})
	if err != nil {
		e.t.Fatal(err)
	}
	return m.ID
}

// buy posts a purchase of total dated back from now.
func (e *oracleEnv) buy(member string, total int64, back time.Duration) string {
	e.t.Helper()
	e.n++
	in := loyalty.PurchaseInput{MemberID: member, ExternalID: fmt.Sprintf("R-%d", e.n), StoreID: "s1", Total: &total}
	if back > 0 {
		in.OccurredAt = e.clock.Now().Add(-back).Format(time.RFC3339Nano)
	}
	r, _, err := e.svc.PostPurchase(e.ctx, e.admin, in, loyalty.IdempotencyKey{})
	if err != nil {
		e.t.Fatal(err)
	}
	return r.ID
}

func (e *oracleEnv) adjust(member string, points int64) error {
	_, _, err := e.svc.Adjust(e.ctx, e.admin, member, loyalty.AdjustmentInput{Points: &points, Reason: "test"}, loyalty.IdempotencyKey{})
	return err
}

// rawLot is a lot row as stored.
type rawLot struct {
	ID          string
	Remaining   int64
	AvailableAt time.Time
	ExpiresAt   *time.Time
}

// oracleBalance is what §4 and §7 say a member's balance is at now,
// worked out in the test from the raw lot and balance rows, sharing no
// code or SQL with the engine: a lot's remainder counts until its
// expires_at (or, under the inactivity policy, the member's deadline,
// last activity + expiry_days), pending before its available_at, available
// from it; debt is owed out of available; points are expiring soon when
// they lapse within the next 30 days.
type oracleBalance struct {
	Available, Pending int64
	Soon               []loyalty.Expiring
}

func (e *oracleEnv) oracle(member string, inactivityDays int, now time.Time) oracleBalance {
	e.t.Helper()
	db := e.store.DB()
	var lots []rawLot
	if err := db.Raw("SELECT id, remaining, available_at, expires_at FROM lots WHERE member_id = ?", member).Scan(&lots).Error; err != nil {
		e.t.Fatal(err)
	}
	var bal struct {
		Debt           int64
		LastActivityAt *time.Time
	}
	if err := db.Raw("SELECT debt, last_activity_at FROM member_balances WHERE member_id = ?", member).Scan(&bal).Error; err != nil {
		e.t.Fatal(err)
	}
	var deadline *time.Time
	if inactivityDays > 0 && bal.LastActivityAt != nil {
		d := bal.LastActivityAt.UTC().Add(time.Duration(inactivityDays) * 24 * time.Hour)
		deadline = &d
	}
	window := now.Add(30 * 24 * time.Hour)
	var o oracleBalance
	soon := map[time.Time]int64{}
	var live int64
	for _, l := range lots {
		lapsed := (l.ExpiresAt != nil && !now.Before(*l.ExpiresAt)) || (deadline != nil && !now.Before(*deadline))
		if l.Remaining == 0 || lapsed {
			continue
		}
		live += l.Remaining
		if now.Before(l.AvailableAt) {
			o.Pending += l.Remaining
		} else {
			o.Available += l.Remaining
		}
		if l.ExpiresAt != nil && !l.ExpiresAt.After(window) {
			soon[l.ExpiresAt.UTC()] += l.Remaining
		}
	}
	if deadline != nil && now.Before(*deadline) && !deadline.After(window) && live > 0 {
		soon[deadline.UTC()] += live
	}
	o.Available -= bal.Debt
	o.Soon = []loyalty.Expiring{}
	for at, p := range soon {
		o.Soon = append(o.Soon, loyalty.Expiring{Points: p, ExpiresAt: at})
	}
	sort.Slice(o.Soon, func(i, j int) bool { return o.Soon[i].ExpiresAt.Before(o.Soon[j].ExpiresAt) })
	return o
}

// ledgerSum reads a member's whole ledger through Service.Ledger, a few
// entries a page.
func (e *oracleEnv) ledgerSum(member string) int64 {
	e.t.Helper()
	var sum int64
	page := loyalty.Page{Limit: 3}
	for {
		l, err := e.svc.Ledger(e.ctx, e.admin, member, page)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, en := range l.Items {
			sum += en.Points
		}
		if l.NextCursor == nil {
			return sum
		}
		page.Cursor = *l.NextCursor
	}
}

// boundaries are the instants just before, at and just after each instant
// at which a member's balance changes by itself: a lot's release from
// pending, its expiry and its entry into the expiring-soon window, and the
// inactivity deadline and its entry into that window.
func (e *oracleEnv) boundaries(member string, inactivityDays int) []time.Time {
	e.t.Helper()
	var lots []rawLot
	if err := e.store.DB().Raw("SELECT id, remaining, available_at, expires_at FROM lots WHERE member_id = ?", member).Scan(&lots).Error; err != nil {
		e.t.Fatal(err)
	}
	var last *time.Time
	if err := e.store.DB().Raw("SELECT last_activity_at FROM member_balances WHERE member_id = ?", member).Scan(&last).Error; err != nil {
		e.t.Fatal(err)
	}
	var at []time.Time
	add := func(t time.Time) {
		if t.After(e.clock.Now()) {
			at = append(at, t.Add(-time.Microsecond), t, t.Add(time.Microsecond))
		}
	}
	for _, l := range lots {
		add(l.AvailableAt.UTC())
		if l.ExpiresAt != nil {
			add(l.ExpiresAt.UTC())
			add(l.ExpiresAt.UTC().Add(-loyalty.ExpiringSoonWindow))
		}
	}
	if inactivityDays > 0 && last != nil {
		d := last.UTC().Add(time.Duration(inactivityDays) * 24 * time.Hour)
		add(d)
		add(d.Add(-loyalty.ExpiringSoonWindow))
	}
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	return at
}

// checkOracle compares the balance read (its one-statement path), the
// balance computed afresh and the ledger's sum with the oracle now and at
// the instants around every boundary to come, running the expire-points
// job at some of them and comparing again, so that expiries are read both
// before and after the job stores them. It returns how many boundary
// instants it checked.
func (e *oracleEnv) checkOracle(member string, inactivityDays int) int {
	e.t.Helper()
	check := func(at time.Time) {
		e.t.Helper()
		want := e.oracle(member, inactivityDays, at)
		quick, err := e.svc.Balance(e.ctx, e.admin, member)
		if err != nil {
			e.t.Fatal(err)
		}
		full, err := loyalty.BalanceAt(e.store.DB(), member, at)
		if err != nil {
			e.t.Fatal(err)
		}
		for name, b := range map[string]loyalty.Balance{"Service.Balance": quick, "BalanceAt": full} {
			got := oracleBalance{Available: b.Available, Pending: b.Pending, Soon: b.ExpiringSoon}
			if !reflect.DeepEqual(got, want) {
				e.t.Fatalf("at %s %s gives %+v, the lots say %+v", at.Format(time.RFC3339Nano), name, got, want)
			}
		}
		if sum := e.ledgerSum(member); sum != want.Available+want.Pending {
			e.t.Fatalf("at %s the ledger sums to %d, the lots say available %d + pending %d",
				at.Format(time.RFC3339Nano), sum, want.Available, want.Pending)
		}
	}
	check(e.clock.Now())
	instants := e.boundaries(member, inactivityDays)
	for i, at := range instants {
		e.clock.Set(at)
		check(at)
		if i%4 == 3 {
			if _, err := e.svc.ExpirePoints(e.ctx, at); err != nil {
				e.t.Fatal(err)
			}
			check(at)
		}
	}
	return len(instants)
}

// TestBalanceMatchesLotOracle checks the balance and the ledger listing
// against an oracle computed from the raw lot rows, at instants just
// before, at and just after every boundary, under both expiry policies.
// Unlike TestQuickBalanceMatchesSnapshot, whose two paths share their SQL,
// this catches an expiry or release taken a microsecond early or late.
func TestBalanceMatchesLotOracle(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		t.Run("LotPolicy", func(t *testing.T) {
			pending, days, policy := 3, 40, loyalty.ExpiryLot
			e := newOracleEnv(t, dialect, loyalty.ProgramPatch{PendingDays: &pending, ExpiryPolicy: &policy, ExpiryDays: &days})
			m := e.enrol()
			const day = 24 * time.Hour
			e.buy(m, 10000, 0)         // pending 3 days, expires in 40
			e.buy(m, 5000, 38*day)     // released, expires in 2 days: expiring soon
			e.buy(m, 4000, 45*day)     // expired already
			e.buy(m, 3000, 2*day)      // released tomorrow
			p := e.buy(m, 8000, 5*day) // released, expires in 35 days
			e.clock.Advance(time.Hour)
			total := int64(4000)
			if _, _, err := e.svc.PostReturn(e.ctx, e.admin, p, loyalty.ReturnInput{Amount: &total}, loyalty.IdempotencyKey{}); err != nil {
				t.Fatal(err)
			}
			if err := e.adjust(m, -20); err != nil {
				t.Fatal(err)
			}
			if n := e.checkOracle(m, 0); n < 27 {
				t.Fatalf("%d instants checked", n)
			}
		})
		t.Run("InactivityPolicy", func(t *testing.T) {
			pending, days, policy := 2, 30, loyalty.ExpiryInactivity
			e := newOracleEnv(t, dialect, loyalty.ProgramPatch{PendingDays: &pending, ExpiryPolicy: &policy, ExpiryDays: &days})
			m := e.enrol()
			const day = 24 * time.Hour
			e.buy(m, 10000, 10*day)
			e.buy(m, 5000, 0) // the last activity: deadline in 30 days
			e.buy(m, 3000, 1*day)
			if n := e.checkOracle(m, days); n < 9 {
				t.Fatalf("%d instants checked", n)
			}
			// A member whose purchase is dated past the deadline.
			late := e.enrol()
			e.clock.Advance(time.Hour)
			e.buy(late, 7000, 31*day)
			e.checkOracle(late, days)
		})
	})
}

// TestNeverExpiringPointsAreSpentLast spends from a member holding points
// that never expire (credited while expiry_days was 0) and points that do:
// the expiring ones go first, so that fewer points are lost to expiry,
// whatever order the lots were opened in.
func TestNeverExpiringPointsAreSpentLast(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		zero, days := 0, 365
		e := newOracleEnv(t, dialect, loyalty.ProgramPatch{ExpiryDays: &zero})
		m := e.enrol()
		if err := e.adjust(m, 100); err != nil { // never expires, the older lot
			t.Fatal(err)
		}
		if _, err := e.svc.UpdateProgram(e.ctx, loyalty.ProgramPatch{ExpiryDays: &days}); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Hour)
		expires := e.clock.Now().AddDate(0, 0, days)
		if err := e.adjust(m, 100); err != nil { // expires in a year
			t.Fatal(err)
		}
		if err := e.adjust(m, -60); err != nil {
			t.Fatal(err)
		}
		b, err := e.svc.Balance(e.ctx, e.admin, m)
		if err != nil {
			t.Fatal(err)
		}
		if b.Available != 140 || len(b.ExpiringSoon) != 0 {
			t.Fatalf("after spending 60: %+v", b)
		}
		var left []struct {
			Remaining int64
			ExpiresAt *time.Time
		}
		if err := e.store.DB().Raw("SELECT remaining, expires_at FROM lots WHERE member_id = ? ORDER BY id", m).Scan(&left).Error; err != nil {
			t.Fatal(err)
		}
		if len(left) != 2 || left[0].ExpiresAt != nil || left[0].Remaining != 100 || left[1].Remaining != 40 {
			t.Fatalf("lots after spending 60: %+v, want the never-expiring 100 untouched and 40 of the expiring lot left", left)
		}
		e.clock.Set(expires)
		if b, err = e.svc.Balance(e.ctx, e.admin, m); err != nil {
			t.Fatal(err)
		}
		if b.Available != 100 {
			t.Fatalf("after the expiring lot's 40 expired: available %d, want the never-expiring 100", b.Available)
		}
		if sum := e.ledgerSum(m); sum != 100 {
			t.Fatalf("the ledger sums to %d, want 100", sum)
		}
	})
}

// TestCalendarYearReviewAtTheYearBoundary runs the tier-review job around
// midnight of 31 December in a program in New York: a tier reached in
// March 2026 is kept to the end of 2027 there, so the job leaves it alone
// at 23:59 on 31 December 2027 and at 04:59 UTC on 1 January 2028 (still
// 2027 in New York), and moves it down at 00:00 on 1 January 2028.
func TestCalendarYearReviewAtTheYearBoundary(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		period, zone := "calendar_year", "America/New_York"
		e := newOracleEnv(t, dialect, loyalty.ProgramPatch{TierPeriod: &period, Timezone: &zone})
		one := decimal.NewFromInt(1)
		for _, tr := range []struct {
			code  string
			rank  int
			spend int64
		}{{"base", 0, 0}, {"gold", 1, 50000}} {
			name, rank, spend := tr.code, tr.rank, tr.spend
			if _, _, err := e.svc.PutTier(e.ctx, tr.code, loyalty.TierInput{Name: &name, Rank: &rank, EarnMultiplier: &one, QualifyingSpend: &spend}); err != nil {
				t.Fatal(err)
			}
		}
		m := e.enrol()
		e.buy(m, 50000, 0) // gold from 1 March 2026
		ny, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		tier := func() string {
			t.Helper()
			b, err := e.svc.Balance(e.ctx, e.admin, m)
			if err != nil {
				t.Fatal(err)
			}
			return b.Tier.Code
		}
		for _, c := range []struct {
			at   time.Time
			want string
		}{
			{time.Date(2027, 12, 31, 23, 59, 0, 0, ny), "gold"},
			{time.Date(2028, 1, 1, 4, 59, 0, 0, time.UTC), "gold"},
			{time.Date(2028, 1, 1, 0, 0, 0, 0, ny), "base"},
		} {
			e.clock.Set(c.at)
			if _, err := e.svc.ReviewTiers(e.ctx, c.at); err != nil {
				t.Fatal(err)
			}
			if got := tier(); got != c.want {
				t.Fatalf("after the review at %s (%s): tier %s, want %s", c.at.In(ny), c.at.UTC(), got, c.want)
			}
		}
	})
}
