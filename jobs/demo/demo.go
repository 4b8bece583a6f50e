// Package demo loads the demo program with everything the console shows:
// the ledger's demo members and purchases (loyalty.SeedDemo: the history
// through the CSV import, the last weeks live), redemptions through the
// live weeks, segments, churn and lifetime-value scores computed as of now,
// and survey answers whose scores follow each member's churn risk.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/feedback"
	"github.com/loyalty-engine/loyalty/rewards"
)

// Summary counts what Load wrote.
type Summary struct {
	loyalty.DemoSummary
	Redemptions, Feedback int
}

// Load seeds an empty database (loyalty.ErrNotEmpty otherwise). The history
// comes in through the import; every later write goes through the services
// with their clock at the event's time.
func Load(ctx context.Context, store *loyalty.Store, opt loyalty.DemoOptions) (Summary, error) {
	var sum Summary
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	clock := opt.Now
	svc := loyalty.NewService(store, loyalty.WithClock(func() time.Time { return clock }))
	rw := rewards.NewService(svc)
	rng := rand.New(rand.NewPCG(uint64(opt.Seed), 0xc1a55))
	var catalog []string
	admin := loyalty.Principal{Subject: "demo", Role: loyalty.RoleAdmin}
	opt.AfterPurchase = func(ctx context.Context, at time.Time, memberID string) error {
		if catalog == nil {
			clock = at
			for _, body := range []string{`{"code":"demo-mini","name":"Travel-size mini","cost_points":100}`,
				`{"code":"demo-tote","name":"Canvas tote","cost_points":250}`} {
				var in rewards.RewardInput
				if err := json.Unmarshal([]byte(body), &in); err != nil {
					return err
				}
				r, _, err := rw.Create(ctx, in, loyalty.IdempotencyKey{})
				if err != nil {
					return err
				}
				catalog = append(catalog, r.ID)
			}
		}
		if rng.IntN(6) != 0 {
			return nil
		}
		clock = at
		_, _, err := rw.Redeem(ctx, admin, memberID, rewards.RedeemInput{RewardID: catalog[rng.IntN(len(catalog))]}, loyalty.IdempotencyKey{})
		var e *loyalty.Error
		if errors.As(err, &e) && e.Code == loyalty.Conflict {
			return nil // not enough points yet
		}
		if err == nil {
			sum.Redemptions++
		}
		return err
	}
	base, err := loyalty.SeedDemo(ctx, store, opt)
	sum.DemoSummary = base
	if err != nil {
		return sum, err
	}
	clock = opt.Now
	runner := jobs.NewRunner(svc, rw)
	for _, job := range []string{"segments", "churn-risk", "redemption-rate"} {
		rec, err := runner.Run(ctx, job, opt.Now, "demo")
		if err != nil {
			return sum, fmt.Errorf("demo %s: %w", job, err)
		}
		if rec.Status != jobs.Succeeded {
			return sum, fmt.Errorf("demo %s: %s", job, rec.Status)
		}
	}
	n, err := answer(ctx, store, feedback.NewService(svc), rng, &clock, opt.Now)
	sum.Feedback = n
	return sum, err
}

// answer records survey answers for about a quarter of the purchases, a
// couple of hours after each: scores fall as the member's churn risk rises
// (a member about to leave recommends less, is less satisfied and found it
// harder), with noise.
func answer(ctx context.Context, store *loyalty.Store, fb *feedback.Service, rng *rand.Rand, clock *time.Time, now time.Time) (int, error) {
	var rows []struct {
		ID, MemberID string
		OccurredAt   time.Time
		ChurnRisk    string
	}
	if err := store.DB().WithContext(ctx).Raw(`SELECT p.id, p.member_id, p.occurred_at, c.churn_risk FROM purchases p
		JOIN member_churn c ON c.member_id = p.member_id ORDER BY p.occurred_at, p.id`).Scan(&rows).Error; err != nil {
		return 0, err
	}
	clamp := func(v float64, lo, hi int) int {
		return max(lo, min(hi, int(math.Round(v))))
	}
	n := 0
	admin := loyalty.Principal{Subject: "demo", Role: loyalty.RoleAdmin}
	for _, r := range rows {
		at := r.OccurredAt.Add(2 * time.Hour)
		if rng.IntN(4) != 0 || at.After(now) {
			continue
		}
		risk, _ := strconv.ParseFloat(r.ChurnRisk, 64)
		*clock = at
		pid := r.ID
		for _, a := range []struct {
			kind  string
			p     int
			score int
		}{
			{feedback.KindNPS, 1, clamp(9.6-7*risk+rng.NormFloat64()*1.4, 0, 10)},
			{feedback.KindCSAT, 2, clamp(4.7-2.4*risk+rng.NormFloat64()*0.6, 1, 5)},
			{feedback.KindCES, 3, clamp(1.8+3.6*risk+rng.NormFloat64()*0.9, 1, 7)},
		} {
			if rng.IntN(a.p) != 0 {
				continue
			}
			score := a.score
			if _, _, err := fb.Record(ctx, admin, feedback.Input{MemberID: r.MemberID, Kind: a.kind, Score: &score, PurchaseID: &pid},
				loyalty.IdempotencyKey{}); err != nil {
				return n, fmt.Errorf("demo feedback: %w", err)
			}
			n++
		}
	}
	return n, nil
}
