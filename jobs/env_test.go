package jobs_test

import (
	"context"
	"fmt"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/rewards"
)

// env is one engine under test without HTTP: a fresh database, the
// services, the job runner and a clock the test moves.
type env struct {
	t      *testing.T
	store  *loyalty.Store
	svc    *loyalty.Service
	rw     *rewards.Service
	runner *jobs.Runner
	clock  *loyaltytest.Clock
	ctx    context.Context
}

var (
	admin = loyalty.Principal{Subject: "op-1", Role: loyalty.RoleAdmin}
	till  = loyalty.Principal{Subject: "till-1", Role: loyalty.RolePOS}
)

// newEnv opens a database of dialect with the engine's clock at now.
func newEnv(t *testing.T, dialect string, now time.Time) *env {
	t.Helper()
	e := &env{t: t, clock: loyaltytest.NewClock(now), ctx: context.Background()}
	e.store = loyaltytest.MustOpen(t, dialect)
	e.svc = loyalty.NewService(e.store, loyalty.WithClock(e.clock.Now))
	e.rw = rewards.NewService(e.svc)
	e.runner = jobs.NewRunner(e.svc, e.rw)
	return e
}

// program changes the program settings.
func (e *env) program(patch loyalty.ProgramPatch) {
	e.t.Helper()
	if _, err := e.svc.UpdateProgram(e.ctx, patch); err != nil {
		e.t.Fatal(err)
	}
}

// ladder configures Insider (0), VIB (35,000) and Rouge (100,000).
func (e *env) ladder() {
	e.t.Helper()
	for _, tr := range []struct {
		code, name string
		rank       int
		mult       string
		spend      int64
	}{{"insider", "Insider", 0, "1", 0}, {"vib", "VIB", 1, "1.25", 35000}, {"rouge", "Rouge", 2, "1.5", 100000}} {
		m := decimal.RequireFromString(tr.mult)
		in := loyalty.TierInput{Name: &tr.name, Rank: &tr.rank, QualifyingSpend: &tr.spend, EarnMultiplier: &m}
		if _, _, err := e.svc.PutTier(e.ctx, tr.code, in); err != nil {
			e.t.Fatal(err)
		}
	}
}

var seq atomic.Int64

// enrol creates a member, with a birthday (YYYY-MM-DD) when one is given.
func (e *env) enrol(birthday string) string {
	e.t.Helper()
	ext := fmt.Sprintf("J-%d", seq.Add(1))
	in := loyalty.MemberInput{ExternalID: &ext}
	if birthday != "" {
		in.Birthday = &birthday
	}
	m, _, err := e.svc.EnrolMember(e.ctx, in, loyalty.IdempotencyKey{})
	if err != nil {
		e.t.Fatal(err)
	}
	return m.ID
}

// buy posts a purchase of total minor units at the clock's time.
func (e *env) buy(member string, total int64) loyalty.PurchaseResult {
	e.t.Helper()
	r, _, err := e.svc.PostPurchase(e.ctx, till, loyalty.PurchaseInput{MemberID: member, StoreID: "store-1",
		ExternalID: fmt.Sprintf("R-%d", seq.Add(1)), Total: &total}, loyalty.IdempotencyKey{})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// adjust credits or debits points by hand; the error is the service's.
func (e *env) adjust(member string, points int64) error {
	_, _, err := e.svc.Adjust(e.ctx, admin, member, loyalty.AdjustmentInput{Points: &points, Reason: "test"}, loyalty.IdempotencyKey{})
	return err
}

// run runs a job through the runner as of asOf and fails t unless it
// succeeded.
func (e *env) run(t *testing.T, name string, asOf time.Time) jobs.RunRecord {
	t.Helper()
	rec, err := e.runner.Run(e.ctx, name, asOf, "test")
	if err != nil {
		t.Fatalf("%s as of %s: %v", name, asOf, err)
	}
	if rec.Status != jobs.Succeeded {
		t.Fatalf("%s as of %s: %s %v", name, asOf, rec.Status, deref(rec.Error))
	}
	return rec
}

// count reads one integer from the database.
func (e *env) count(query string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.store.DB().Raw(query, args...).Scan(&n).Error; err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// tierOf reads a member's tier code.
func (e *env) tierOf(member string) string {
	e.t.Helper()
	m, err := e.svc.Member(e.ctx, admin, member)
	if err != nil {
		e.t.Fatal(err)
	}
	return deref(m.Tier)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// times multiplies exactly: n copies of points.
func times(n, points int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), big.NewInt(points)) }

func at(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
