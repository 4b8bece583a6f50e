package jobs_test

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/rewards"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkJobsAtScale seeds LOYALTY_BENCH_MEMBERS members (default
// 1,000,000) and LOYALTY_BENCH_PURCHASES purchases (default 10,000,000) with
// their items, earn entries and lots on PostgreSQL, straight in SQL, then
// times each periodic job once. It runs only when LOYALTY_BENCH_SCALE=1:
//
//	LOYALTY_BENCH_SCALE=1 go test ./jobs -run '^$' -bench JobsAtScale -benchtime 1x -timeout 3h
func BenchmarkJobsAtScale(b *testing.B) {
	if os.Getenv("LOYALTY_BENCH_SCALE") != "1" {
		b.Skip("set LOYALTY_BENCH_SCALE=1 to seed and time the jobs at scale")
	}
	ctx := context.Background()
	store := loyaltytest.MustOpen(b, loyalty.Postgres)
	members := envInt("LOYALTY_BENCH_MEMBERS", 1_000_000)
	purchases := envInt("LOYALTY_BENCH_PURCHASES", 10_000_000)
	asOf := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	db := store.DB()
	start := time.Now()
	steps := []struct{ name, sql string }{
		{"tiers", `INSERT INTO tiers VALUES ('insider','Insider',0,'1',0,'[]',now(),now()),
			('vib','VIB',1,'1.25',35000,'[]',now(),now()), ('rouge','Rouge',2,'1.5',100000,'[]',now(),now())`},
		{"members", `INSERT INTO members (id, external_id, status, tier_code, tier_since, birthday, enrolled_at, updated_at)
			SELECT 'm' || g, 'C' || g, 'active', 'insider', '2024-01-01', '19' || (50 + g % 50) || '-' || lpad((1 + g % 12)::text, 2, '0') || '-' || lpad((1 + (g / 12) % 28)::text, 2, '0'),
				'2024-01-01'::timestamptz + (g % 700) * interval '1 day', now()
			FROM generate_series(1::bigint, $M) g`},
		{"balances", `INSERT INTO member_balances (member_id, points, debt, lifetime_earned, lifetime_redeemed, last_activity_at, version, updated_at)
			SELECT 'm' || g, 0, 0, 0, 0, NULL, 1, now() FROM generate_series(1::bigint, $M) g`},
		{"purchases", `INSERT INTO purchases (id, member_id, store_id, external_id, channel, occurred_at, local_date, local_day, currency,
				total, returned_amount, points_earned, points_reversed, tier_code, created_at)
			SELECT 'p' || g, 'm' || (1 + (g * 7919) % $M), 'store-' || (g % 8), 'R' || g, 'pos', t, t::date::text,
				(t::date - '1970-01-01'::date), 'USD', 500 + (g * 104729) % 20000, 0, (500 + (g * 104729) % 20000) / 100, 0, 'insider', t
			FROM (SELECT g, '2025-03-01'::timestamptz + ((g * 2654435761) % 31536000) * interval '1 second' AS t
				FROM generate_series(1::bigint, $P) g) s`},
		{"items", `INSERT INTO purchase_items (purchase_id, line, sku, category, quantity, unit_price, amount)
			SELECT id, 1, 'SKU-' || (local_day % 500), 'cat' || (local_day * 31 % 30), 1, total, total FROM purchases`},
		{"ledger", `INSERT INTO ledger_entries (id, member_id, kind, points, occurred_at, available_at, expires_at, purchase_id, description, created_at)
			SELECT 'e' || id, member_id, 'earn', points_earned, occurred_at, occurred_at, occurred_at + interval '300 days', id, 'purchase', created_at
			FROM purchases WHERE points_earned > 0`},
		{"lots", `INSERT INTO lots (id, entry_id, member_id, points, remaining, available_at, expires_at, created_at)
			SELECT 'l' || id, id, member_id, points, points, available_at, expires_at, created_at FROM ledger_entries`},
		{"balances-sum", `UPDATE member_balances b SET points = s.p, lifetime_earned = s.p, last_activity_at = s.last
			FROM (SELECT member_id, SUM(points) AS p, MAX(occurred_at) AS last FROM ledger_entries GROUP BY member_id) s
			WHERE s.member_id = b.member_id`},
		{"analyze", `ANALYZE`},
	}
	for _, s := range steps {
		t0 := time.Now()
		q := s.sql
		q = replaceAll(q, "$M", strconv.Itoa(members))
		q = replaceAll(q, "$P", strconv.Itoa(purchases))
		if err := db.Exec(q).Error; err != nil {
			b.Fatalf("seed %s: %v", s.name, err)
		}
		b.Logf("seed %-12s %8.1fs", s.name, time.Since(t0).Seconds())
	}
	b.Logf("seeded %d members and %d purchases in %.0fs", members, purchases, time.Since(start).Seconds())

	svc := loyalty.NewService(store, loyalty.WithClock(func() time.Time { return asOf }))
	runner := jobs.NewRunner(svc, rewards.NewService(svc))
	if _, _, err := svc.CreateOfferTemplate(ctx, loyalty.OfferTemplateInput{Code: strp("fav"), Name: strp("x2 favourite"),
		Kind: strp("multiplier"), Multiplier: decimalp("2")}, loyalty.IdempotencyKey{}); err != nil {
		b.Fatal(err)
	}
	on := true
	if _, err := svc.UpdateProgram(ctx, loyalty.ProgramPatch{BirthdayGift: &loyalty.BirthdayGift{Enabled: on, BonusPoints: 50, ClaimDays: 30}}); err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"expire-points", "tier-review", "birthday-gifts", "redemption-rate", "segments", "churn-risk", "personal-offers"} {
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				runtime.GC()
				var m0 runtime.MemStats
				runtime.ReadMemStats(&m0)
				peak := sampleHeap()
				t0 := time.Now()
				rec, err := runner.Run(ctx, name, asOf, "bench")
				if err != nil || rec.Status != jobs.Succeeded {
					b.Fatalf("%s: %v %v", name, err, rec.Error)
				}
				elapsed := time.Since(t0)
				var m1 runtime.MemStats
				runtime.ReadMemStats(&m1)
				b.Logf("%-16s %8.1fs  engine heap peak %6.1f MB, allocated %8.1f MB  %s", name, elapsed.Seconds(),
					float64(peak())/(1<<20), float64(m1.TotalAlloc-m0.TotalAlloc)/(1<<20), rec.Summary)
			}
		})
	}
}

// sampleHeap samples the Go heap in use every 50 ms until the returned
// func is called, which returns the largest sample: the engine's own peak
// memory during a job (the database's is its own, bounded by work_mem).
func sampleHeap() func() uint64 {
	var peak atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	read := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		if m.HeapInuse > peak.Load() {
			peak.Store(m.HeapInuse)
		}
	}
	go func() {
		defer close(stopped)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				read()
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() uint64 { close(done); <-stopped; return peak.Load() }
}
