package jobs_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

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

// benchSeed is the synthetic history of BenchmarkJobsAtScale, straight in
// SQL: $M members and about $P purchases over the year before 2026-03-01,
// in shapes a retailer sees rather than one uniform spread.
//   - Weekly shoppers (every tenth member) buy once a week, three lines
//     across 24 categories, half of all purchases: the loyal segment.
//   - The other half falls on all members with a skew (a few buy often,
//     most a handful of times); every member whose number ends in 1, 2 or 3
//     lapses, buying only in the first 60 to 260 days of the year.
//   - Tiers follow an earlier, bigger year's spend (×1.3), reached on
//     varied days, so the tier review finds members to move down.
//   - Purchases are appended in time order, as a store's table is.
//   - Members, purchases, their earn entries and lots have ids as the
//     engine makes them (UUIDv7, seedID): ordered by when they were
//     written, so the lots of a day, which expire together a year later,
//     sit together in their keys' indexes as they do in production. Member
//     g's id is memberID(g), its external id C<g>.
var benchSeed = []struct{ name, sql string }{
	{"tiers", `INSERT INTO tiers VALUES ('insider','Insider',0,'1',0,'[]',now(),now()),
		('vib','VIB',1,'1.25',35000,'[]',now(),now()), ('rouge','Rouge',2,'1.5',100000,'[]',now(),now())`},
	{"members", `INSERT INTO members (id, external_id, status, tier_code, tier_since, birthday, enrolled_at, updated_at)
		SELECT ` + memberID("g") + `, 'C' || g, 'active', 'insider', '2024-01-01', '19' || (50 + g % 50) || '-' || lpad((1 + g % 12)::text, 2, '0') || '-' || lpad((1 + (g / 12) % 28)::text, 2, '0'),
			'2024-01-01'::timestamptz + (g % 700) * interval '1 day', now()
		FROM generate_series(1::bigint, $M) g`},
	{"balances", `INSERT INTO member_balances (member_id, points, debt, lifetime_earned, lifetime_redeemed, last_activity_at, version, updated_at, as_of, tier_code)
		SELECT id, 0, 0, 0, 0, NULL, 1, now(), '2024-01-01', tier_code FROM members`},
	{"purchases", `INSERT INTO purchases (id, member_id, store_id, external_id, channel, occurred_at, local_date, local_day, currency,
			total, returned_amount, points_earned, points_reversed, tier_code, created_at)
		SELECT ` + seedID("t", "id") + `, ` + memberID("m") + `, 'store-' || (h % 8), 'R' || id, 'pos', t, t::date::text,
			(t::date - '1970-01-01'::date), 'USD', 500 + h % 20000, 0, (500 + h % 20000) / 100, 0, 'insider', t
		FROM (
			-- weekly shoppers: member 10w, week j back from 2026-03-01
			SELECT 'w' || w || '-' || j AS id, 10 * w AS m, (w * 104729 + j * 7919) % 1000003 AS h,
				'2026-03-01'::timestamptz - (7 * j + 1 + w % 6) * interval '1 day' + ((w * 3 + j * 7) % 43200) * interval '1 second' AS t
			FROM generate_series(1::bigint, $M / 10) w, generate_series(0, GREATEST(1, $P / 2 / GREATEST(1, $M / 10)) - 1) j
			UNION ALL
			-- everyone else, skewed; ids ending in 1-3 lapse after 60-260 days;
			-- each purchase's member and total drawn by hashes of its number,
			-- alike at every size (drawn by products modulo primes before
			-- 6 December, 18:20 UTC, they left the 1 M seed no VIB member under
			-- VIB's threshold and the 100 k seed 10%: docs/bench/seed-shares.sql)
			SELECT 'p' || g, m, hashint8(-g) & 2147483647,
				'2025-03-01'::timestamptz + (CASE WHEN m % 10 BETWEEN 1 AND 3 THEN 60 + (m * 37) % 200 ELSE 364 END)
					* (((g * 2654435761) % 1000003) / 1000003.0) * interval '1 day'
			FROM (SELECT g, 1 + LEAST($M - 1, floor($M * power((hashint8(g) & 2147483647) / 2147483648.0, 1.5))::bigint) AS m
				FROM generate_series(1::bigint, $P - $P / 2) g) s
		) s ORDER BY s.t`},
	{"items", `INSERT INTO purchase_items (purchase_id, line, sku, category, quantity, unit_price, amount)
		SELECT id, 1, 'SKU-' || (local_day % 500), 'cat' || (local_day * 31 % 30), 1, total, total FROM purchases WHERE external_id LIKE 'Rp%'
		UNION ALL
		SELECT p.id, l, 'SKU-' || (p.local_day % 500 + l), 'cat' || ((split_part(substr(p.external_id, 3), '-', 1)::bigint + 3 * (p.local_day / 7) + l) % 24),
			1, p.total / 3, CASE WHEN l = 1 THEN p.total - 2 * (p.total / 3) ELSE p.total / 3 END
		FROM purchases p, generate_series(1, 3) l WHERE p.external_id LIKE 'Rw%'`},
	{"ledger", `INSERT INTO ledger_entries (id, member_id, kind, points, occurred_at, available_at, expires_at, purchase_id, description, created_at)
		SELECT ` + seedID("created_at", "'e' || external_id") + `, member_id, 'earn', points_earned, occurred_at, occurred_at, occurred_at + interval '365 days', id, 'purchase', created_at
		FROM purchases WHERE points_earned > 0`},
	{"lots", `INSERT INTO lots (id, entry_id, member_id, points, remaining, available_at, expires_at, created_at)
		SELECT ` + seedID("created_at", "'l' || id") + `, id, member_id, points, points, available_at, expires_at, created_at FROM ledger_entries`},
	{"member-tiers", `UPDATE members m SET tier_code = CASE WHEN s.spend * 13 / 10 >= 100000 THEN 'rouge' ELSE 'vib' END,
			tier_since = '2024-06-01'::timestamptz + (substr(m.external_id, 2)::bigint % 600) * interval '1 day'
		FROM (SELECT member_id, SUM(total) AS spend FROM purchases GROUP BY member_id) s
		WHERE s.member_id = m.id AND s.spend * 13 / 10 >= 35000`},
	// With the balance rows' copy of the tier, as the engine's triggers
	// (off while the seed loads, see seedBench) keep it.
	{"balances-sum", `UPDATE member_balances b SET points = s.p, lifetime_earned = s.p, last_activity_at = s.last, tier_code = m.tier_code
		FROM (SELECT member_id, SUM(points) AS p, MAX(occurred_at) AS last FROM ledger_entries GROUP BY member_id) s, members m
		WHERE s.member_id = b.member_id AND m.id = b.member_id`},
	{"vacuum", `VACUUM (ANALYZE)`}, // what autovacuum has done over the years the seed stands for
}

// seedID is the SQL of an id shaped as the engine's (UUIDv7 text): the
// milliseconds of the time at, then the version and variant, over the md5
// of key (unique among the rows seeded), so that ids sort by at as the
// engine's sort by when they were made. Each of the two is computed once
// a row; the cast to uuid and back writes the hyphens.
func seedID(at, key string) string {
	ms := `lpad(to_hex(floor(extract(epoch FROM ` + at + `) * 1000)::bigint), 12, '0')`
	return `overlay(overlay(overlay(md5(` + key + `) PLACING ` + ms + ` FROM 1 FOR 12) PLACING '7' FROM 13 FOR 1) PLACING '8' FROM 17 FOR 1)::uuid::text`
}

// memberID is the SQL of member g's id: seedID as of the day it enrolled.
func memberID(g string) string {
	return seedID(`'2024-01-01'::timestamptz + (`+g+` % 700) * interval '1 day'`, `'m' || `+g)
}

// seededTables are the tables benchSeed fills.
var seededTables = []string{"members", "member_balances", "purchases", "purchase_items", "ledger_entries", "lots"}

// seedBench runs benchSeed on one connection as a bulk load: the seeded
// tables' keys, foreign keys and indexes (and the foreign keys into them)
// are dropped first and made again from their definitions afterwards,
// each built once from sorted rows instead of kept up row by row (at 1 M
// members, 52 minutes with them in place).
func seedBench(b *testing.B, db *gorm.DB, members, purchases int) error {
	return db.Connection(func(c *gorm.DB) error {
		type def struct{ Tbl, Name, Def string }
		var cons, idx []def
		if err := c.Raw(`SELECT conrelid::regclass::text AS tbl, conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint
			WHERE contype IN ('p', 'u', 'f') AND connamespace = current_schema()::regnamespace
				AND (conrelid::regclass::text IN ? OR (contype = 'f' AND confrelid::regclass::text IN ?))
			ORDER BY contype = 'f' DESC`, seededTables, seededTables).Scan(&cons).Error; err != nil {
			return fmt.Errorf("seed: read constraints: %w", err)
		}
		if err := c.Raw(`SELECT tablename AS tbl, indexname AS name, indexdef AS def FROM pg_indexes i
			WHERE schemaname = current_schema() AND tablename IN ?
				AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)`,
			seededTables).Scan(&idx).Error; err != nil {
			return fmt.Errorf("seed: read indexes: %w", err)
		}
		exec := func(what, q string) error {
			t0 := time.Now()
			if err := c.Exec(q).Error; err != nil {
				return fmt.Errorf("seed %s: %w", what, err)
			}
			if d := time.Since(t0); d > time.Second {
				b.Logf("seed %-24s %8.1fs", what, d.Seconds())
			}
			return nil
		}
		// Foreign keys go first (they hang on the keys), then keys, indexes.
		for _, k := range cons {
			if err := exec("drop "+k.Name, fmt.Sprintf(`ALTER TABLE %s DROP CONSTRAINT %s`, k.Tbl, k.Name)); err != nil {
				return err
			}
		}
		for _, i := range idx {
			if err := exec("drop "+i.Name, `DROP INDEX `+i.Name); err != nil {
				return err
			}
		}
		if err := exec("memory", `SET maintenance_work_mem = '1GB'`); err != nil {
			return err
		}
		// Without the triggers, which would look up each row they copy a
		// tier to by a key not yet built; the seed copies the tiers itself.
		if err := exec("triggers", `SET session_replication_role = replica`); err != nil {
			return err
		}
		defer c.Exec(`RESET session_replication_role`)
		for _, s := range benchSeed {
			if s.name == "vacuum" {
				// Keys, then foreign keys and indexes, before the statistics.
				for i := len(cons) - 1; i >= 0; i-- {
					k := cons[i]
					if err := exec("add "+k.Name, fmt.Sprintf(`ALTER TABLE %s ADD CONSTRAINT %s %s`, k.Tbl, k.Name, k.Def)); err != nil {
						return err
					}
				}
				for _, i := range idx {
					if err := exec("index "+i.Name, i.Def); err != nil {
						return err
					}
				}
			}
			q := replaceAll(replaceAll(s.sql, "$M", strconv.Itoa(members)), "$P", strconv.Itoa(purchases))
			if err := exec(s.name, q); err != nil {
				return err
			}
		}
		return exec("memory", `RESET maintenance_work_mem`)
	})
}

// BenchmarkJobsAtScale seeds LOYALTY_BENCH_MEMBERS members (default
// 1,000,000) and about LOYALTY_BENCH_PURCHASES purchases (default
// 10,000,000) with their items, earn entries and lots on PostgreSQL,
// straight in SQL (benchSeed), then times each periodic job once, and
// expire-points again a day later (a day's expiries). While each job runs,
// four goroutines post purchases through the Service; their p99 is
// reported beside the p99 of the same load with no job running, measured
// for 6 s just before the job and for 10 s before the night. It runs
// only when LOYALTY_BENCH_SCALE=1:
//
//	LOYALTY_BENCH_SCALE=1 go test ./jobs -run '^$' -bench JobsAtScale -benchtime 1x -timeout 3h
func BenchmarkJobsAtScale(b *testing.B) {
	if os.Getenv("LOYALTY_BENCH_SCALE") != "1" {
		b.Skip("set LOYALTY_BENCH_SCALE=1 to seed and time the jobs at scale")
	}
	ctx := context.Background()
	members := envInt("LOYALTY_BENCH_MEMBERS", 1_000_000)
	purchases := envInt("LOYALTY_BENCH_PURCHASES", 10_000_000)
	// LOYALTY_BENCH_DAY=n moves both nights n days later: on a kept
	// schema whose nights have run, n=1 makes the first night a night with
	// no new purchases and the next night one more day's, so the nightly
	// cost of new code is measured without seeding again.
	asOf := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, envInt("LOYALTY_BENCH_DAY", 0))
	// LOYALTY_BENCH_SCHEMA keeps the seeded schema of that name and seeds
	// it only when it is empty, so one job can be run again on the same
	// data (the jobs that write, expire-points and tier-review, leave
	// their mark for the next run); LOYALTY_BENCH_JOBS picks jobs by name.
	var store *loyalty.Store
	if kept := os.Getenv("LOYALTY_BENCH_SCHEMA"); kept != "" {
		store = loyaltytest.OpenKept(b, kept)
	} else {
		store = loyaltytest.MustOpen(b, loyalty.Postgres)
	}
	db := store.DB()
	// LOYALTY_JOBS_CGROUP, as serve takes it (loyalty/jobcgroup.go).
	if dir, err := store.JobsCgroup(); err != nil {
		b.Logf("the jobs' backends stay where they are, not in %s: %v", dir, err)
	} else if dir != "" {
		b.Logf("the jobs' backends run in the cgroup %s (the batches that lock balances for 50 ms at most)", dir)
	}
	start := time.Now()
	// A schema is seeded once its last step (VACUUM after the balances
	// and tiers) has run: a seed that failed part way leaves no member
	// tiered above Insider, and is refused rather than measured.
	var already, tiered int64
	db.Raw(`SELECT COUNT(*) FROM members`).Scan(&already)
	db.Raw(`SELECT COUNT(*) FROM members WHERE tier_code <> 'insider'`).Scan(&tiered)
	if already > 0 && tiered == 0 {
		b.Fatalf("schema %s is half seeded: drop it and run again", os.Getenv("LOYALTY_BENCH_SCHEMA"))
	}
	if already > 0 {
		b.Logf("schema %s already seeded with %d members", os.Getenv("LOYALTY_BENCH_SCHEMA"), already)
	} else if err := seedBench(b, db, members, purchases); err != nil {
		b.Fatal(err)
	}
	var seeded int64
	db.Raw(`SELECT COUNT(*) FROM purchases`).Scan(&seeded)
	b.Logf("seeded %d members and %d purchases in %.0fs", members, seeded, time.Since(start).Seconds())

	var clock atomic.Pointer[time.Time]
	clock.Store(&asOf)
	svc := loyalty.NewService(store, loyalty.WithClock(func() time.Time { return *clock.Load() }))
	runner := jobs.NewRunner(svc, rewards.NewService(svc))
	if _, _, err := svc.CreateOfferTemplate(ctx, loyalty.OfferTemplateInput{Code: strp("fav"), Name: strp("x2 favourite"),
		Kind: strp("multiplier"), Multiplier: decimalp("2")}, loyalty.IdempotencyKey{}); err != nil && already == 0 {
		b.Fatal(err)
	}
	// The birthday gift is set once, with the seed: a kept schema already
	// has it, and setting it again would move the settings' version, which
	// makes the next tier review a whole one rather than the night's.
	if already == 0 {
		on := true
		if _, err := svc.UpdateProgram(ctx, loyalty.ProgramPatch{BirthdayGift: &loyalty.BirthdayGift{Enabled: on, BonusPoints: 50, ClaimDays: 30}}); err != nil {
			b.Fatal(err)
		}
	}
	// Member g's id, at g-1: the tills pick members by number.
	var ids []string
	if err := db.Raw(`SELECT id FROM members ORDER BY substr(external_id, 2)::bigint`).Scan(&ids).Error; err != nil {
		b.Fatal(err)
	}
	tills := &tillLoad{svc: svc, ids: ids, run: time.Now().UnixNano()}
	// LOYALTY_BENCH_TILLS_LOG=file: every purchase of the tills, when it
	// was sent and how long it took, to be read beside the server's
	// statement log (log_min_duration_statement): which of a job's
	// statements the slow purchases met.
	if path := os.Getenv("LOYALTY_BENCH_TILLS_LOG"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriter(f)
		defer func() {
			if err := errors.Join(w.Flush(), f.Close()); err != nil {
				b.Error(err)
			}
		}()
		tills.log = w
	}
	// The tills' latencies with no job running, the yardstick of those
	// during each job: 10 s after 2 s that warm the caches and the pool
	// (the first purchases after the seed or a day's load are slow).
	quiet := func(when string) latencies {
		tills.during(ctx, func() { time.Sleep(2 * time.Second) })
		before := readCPU()
		l := tills.during(ctx, func() { time.Sleep(10 * time.Second) })
		cpu := readCPU().since(before, l.n)
		b.Logf("purchases with no job running (%s): %s", when, l)
		if cpu != "" {
			b.Logf("the CPU a purchase took with no job running (%s): %s", when, cpu)
		}
		b.Logf("the machine's pace (%s): %s", when, machinePace(b, db))
		return l
	}
	idle := quiet("before the first night")
	// LOYALTY_BENCH_BURN=n: the tills beside a statement that only takes
	// a core for n seconds (a PL/pgSQL loop: no engine, no rows, no
	// locks, no I/O), beside a goroutine of the engine's that does the
	// same, and beside two statements at once: what any job that keeps a
	// core busy costs them on this machine; then beside one that keeps it
	// busy a part of the time.
	if secs := envInt("LOYALTY_BENCH_BURN", 0); secs > 0 {
		burn := fmt.Sprintf(`DO $$ DECLARE t timestamptz := clock_timestamp(); BEGIN
			WHILE clock_timestamp() < t + interval '%d seconds' LOOP PERFORM 1; END LOOP; END $$`, secs)
		// paced is such a statement paced as a job could be: busy for 20
		// ms, then asleep for rest ms. How far the tills' p99 falls with
		// the part of the time it holds the core is how much a paced job
		// could spare them, and that part is what its night would be
		// stretched by.
		paced := func(rest int) string {
			return fmt.Sprintf(`DO $$ DECLARE t timestamptz := clock_timestamp(); b timestamptz; BEGIN
				WHILE clock_timestamp() < t + interval '%d seconds' LOOP
					b := clock_timestamp();
					WHILE clock_timestamp() < b + interval '20 ms' LOOP END LOOP;
					PERFORM pg_sleep(%d / 1000.0);
				END LOOP; END $$`, secs, rest)
		}
		// spin is such a load in the engine's own process: a goroutine
		// that only takes a core, as the churn scoring's fits do, where
		// the Go scheduler, not the kernel's, shares the cores with the
		// tills' goroutines.
		spin := func() {
			var x uint64
			for t := time.Now(); time.Since(t) < time.Duration(secs)*time.Second; {
				for i := 0; i < 1<<16; i++ {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			sink.Store(x)
		}
		loads := []struct {
			label string
			stmts []string
			fn    func()
		}{
			{"one statement that only takes a core", []string{burn}, nil},
			{"a goroutine of the engine's that only takes a core", nil, spin},
			{"two such statements", []string{burn, burn}, nil},
			{"one taking a core 20 ms in every 40 ms", []string{paced(20)}, nil},
			{"one taking a core 20 ms in every 80 ms", []string{paced(60)}, nil},
			{"one taking a core 20 ms in every 200 ms", []string{paced(180)}, nil},
			{"one taking a core 20 ms in every 400 ms", []string{paced(380)}, nil},
		}
		for _, load := range loads {
			// Against the same load with nothing running just before
			// it, over as many purchases, as for a job.
			before := tills.justBefore(ctx, b, db)
			busy := tills.during(ctx, func() {
				var wg sync.WaitGroup
				if load.fn != nil {
					wg.Go(load.fn)
				}
				for _, stmt := range load.stmts {
					wg.Go(func() {
						if err := db.Exec(stmt).Error; err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			})
			_, ratio := busy.against(before)
			b.Logf("purchases beside %s for %d s: %s (just before: %s; p99 %.2f×)", load.label, secs, busy, before, ratio)
		}
	}
	type run struct {
		name  string
		night int // 0: the first night; n: n days later, after n days' purchases
		asOf  time.Time
	}
	// The first night, then the next: a day's purchases (a 365th of the
	// year's), then every job again: what a nightly run costs once the
	// first has run. LOYALTY_BENCH_NIGHTS=n runs n nights in all, a day's
	// purchases before each after the first, for the tills' figures over
	// more purchases than two nights have.
	var runs []run
	for night := range envInt("LOYALTY_BENCH_NIGHTS", 2) {
		for _, name := range []string{"expire-points", "tier-review", "birthday-gifts", "redemption-rate", "segments", "churn-risk", "personal-offers"} {
			runs = append(runs, run{name, night, asOf.AddDate(0, 0, night)})
		}
	}
	if only := os.Getenv("LOYALTY_BENCH_JOBS"); only != "" {
		runs = slices.DeleteFunc(runs, func(r run) bool { return !slices.Contains(strings.Split(only, ","), r.name) })
	}
	// Every night's tills, pooled over its jobs: the purchases while one of
	// them ran and those in the quiet spells just before each. A job of a
	// fraction of a second has a few dozen purchases beside it, whose p99 is
	// their maximum, one slow purchase; pooled over the night, the p99 of
	// thousands of purchases beside jobs meets the p99 of as many without.
	type pooled struct{ busy, before []time.Duration }
	nights, jobTills := map[string]*pooled{}, map[string]*pooled{}
	var nightOrder, jobOrder []string
	pool := func(m map[string]*pooled, order *[]string, key string, busy, before latencies) {
		if m[key] == nil {
			m[key] = &pooled{}
			*order = append(*order, key)
		}
		m[key].busy = append(m[key].busy, busy.inOrder...)
		m[key].before = append(m[key].before, before.inOrder...)
	}
	dayPassed := 0
	for _, r := range runs {
		label, night := r.name, "the night"
		switch {
		case r.night == 1:
			label, night = r.name+"-next-day", "the next night"
		case r.night > 1:
			label, night = fmt.Sprintf("%s-night-%d", r.name, r.night+1), fmt.Sprintf("night %d", r.night+1)
		}
		if r.night > dayPassed {
			dayPassed = r.night
			// A day passes: its purchases, then autovacuum clears the lots
			// the catch-up run closed from the open-lots index, as it
			// would overnight.
			day := r.asOf.Add(-time.Hour)
			clock.Store(&day)
			t0 := time.Now()
			n, err := tills.day(ctx, r.asOf.AddDate(0, 0, -1), max(1, purchases/365))
			if err != nil {
				b.Fatalf("a day's purchases: %d posted, then %v", n, err)
			}
			b.Logf("a day's purchases: %d posted through the Service in %.1fs", n, time.Since(t0).Seconds())
			if err := db.Exec(`VACUUM (ANALYZE) lots`).Error; err != nil {
				b.Fatal(err)
			}
			idle = quiet("before " + night)
		}
		b.Run(label, func(b *testing.B) {
			clock.Store(&r.asOf)
			for i := 0; i < b.N; i++ {
				runtime.GC()
				var m0 runtime.MemStats
				runtime.ReadMemStats(&m0)
				peak := sampleHeap()
				var rec jobs.RunRecord
				var err error
				var elapsed time.Duration
				before := tills.justBefore(ctx, b, db)
				io0 := tableIO(db)
				busy := tills.during(ctx, func() {
					t0 := time.Now()
					rec, err = runner.Run(ctx, r.name, r.asOf, "bench")
					elapsed = time.Since(t0)
				})
				if err != nil {
					b.Fatalf("%s: %v", r.name, err)
				}
				if rec.Status != jobs.Succeeded {
					b.Fatalf("%s: %s", r.name, *rec.Error)
				}
				io := tableIO(db).minus(io0)
				var m1 runtime.MemStats
				runtime.ReadMemStats(&m1)
				b.ReportMetric(elapsed.Seconds(), "s")
				b.ReportMetric(float64(elapsed.Nanoseconds())/float64(members), "ns/member")
				// The expiry's cost per lot it closed, and the machine's load
				// beside the run (the figures of a shared machine are read
				// against it).
				var expired struct {
					Lots int64 `json:"lots"`
				}
				perLot := ""
				if json.Unmarshal(rec.Summary, &expired) == nil && expired.Lots > 0 {
					perLot = fmt.Sprintf(" %6.0f µs/lot (%.0f buffers, %.0f rows read, %.1f kB WAL /lot)", float64(elapsed.Microseconds())/float64(expired.Lots),
						float64(io.buffers)/float64(expired.Lots), float64(io.rows)/float64(expired.Lots), float64(io.wal)/1024/float64(expired.Lots))
					b.ReportMetric(float64(elapsed.Nanoseconds())/float64(expired.Lots), "ns/lot")
				}
				// The tills' p99 beside the job against their p99 with no
				// job running: just before the job, and over the quiet
				// spell before the night.
				pool(nights, &nightOrder, night, busy, before)
				if r.night > 0 {
					pool(jobTills, &jobOrder, r.name, busy, before)
				}
				likeNow, ratioNow := busy.against(before)
				likeNight, ratioNight := busy.against(idle)
				b.Logf("%-16s %8.1fs %7.0f µs/member%s  load %s  tables: %s  engine heap peak %6.1f MB, allocated %8.1f MB  purchases meanwhile: %s (just before: %s; idle p99 over %d purchases %.1f ms: %.2f×; before the night: %.1f ms: %.2f×)  %s",
					label, elapsed.Seconds(), float64(elapsed.Microseconds())/float64(members), perLot, loadAverage(), io,
					float64(peak())/(1<<20), float64(m1.TotalAlloc-m0.TotalAlloc)/(1<<20), busy, before, busy.n,
					float64(likeNow.Microseconds())/1000, ratioNow, float64(likeNight.Microseconds())/1000, ratioNight, rec.Summary)
			}
		})
	}
	report := func(p *pooled, what string) {
		busy, before := latenciesOf(p.busy), latenciesOf(p.before)
		if busy.n == 0 || before.n == 0 {
			return
		}
		b.Logf("the tills %s: while a job ran %s; just before each job %s; p99 %.2f×", what, busy, before,
			float64(busy.p99)/float64(before.p99))
	}
	every := &pooled{}
	for _, night := range nightOrder {
		report(nights[night], "over "+night+", pooled")
		if night != "the night" {
			every.busy, every.before = append(every.busy, nights[night].busy...), append(every.before, nights[night].before...)
		}
	}
	// Over every night after the first (the nights a base lives through):
	// each job's tills pooled over its runs, and all of them.
	if len(nightOrder) > 2 {
		for _, job := range jobOrder {
			report(jobTills[job], "beside "+job+" over every night after the first")
		}
		report(every, "over every night after the first, pooled")
	}
}

// latenciesOf summarises ds, in the order they completed.
func latenciesOf(ds []time.Duration) latencies {
	if len(ds) == 0 {
		return latencies{}
	}
	all := slices.Clone(ds)
	slices.Sort(all)
	return latencies{n: len(all), p50: all[len(all)/2], p99: p99(all), max: all[len(all)-1], inOrder: ds}
}

// machinePace times, three times between the tills' quiet spell and a
// night, a statement that takes one core of the server and nothing else:
// 300,000 short strings made and sorted in memory, under the database's
// collation, as the jobs' sorts of member ids are. Nothing is read from a
// table or written. The same code's night has taken twice as long in one
// hour as in another on the same machine; the pace beside each night tells
// such an hour from a change in the code.
func machinePace(b *testing.B, db *gorm.DB) string {
	var took []time.Duration
	for range 3 {
		err := db.Transaction(func(tx *gorm.DB) error {
			// Under the settings of every job's transaction.
			if err := loyalty.JobSettings(tx); err != nil {
				return err
			}
			if err := loyalty.OneCore(tx); err != nil {
				return err
			}
			t0 := time.Now()
			if err := tx.Exec(`SELECT COUNT(*) FROM (SELECT md5(CAST(g AS text)) AS k FROM generate_series(1, 300000) AS g ORDER BY 1) s`).Error; err != nil {
				return err
			}
			took = append(took, time.Since(t0).Round(time.Millisecond))
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(took)
	return fmt.Sprintf("300,000 strings sorted on the server in %v, %v and %v (median %v)", took[0], took[1], took[2], took[1])
}

// loadAverage is the one-minute load average of the machine, where
// /proc/loadavg has it.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// ioCounts are PostgreSQL's counters over the tables of the bench's
// schema: buffers hit or read (heap, index, TOAST) and rows read (by
// sequential and index scans). Measured around a job they count its work
// and the tills' beside it, whatever the load of the machine. A server
// process publishes them at most once a second, and an idle one within
// ten seconds, hence the pause before each read.
// The WAL's bytes are the whole server's (the tills' too): what the
// job's writes cost the log, full-page images after a checkpoint included.
type ioCounts struct{ buffers, rows, wal int64 }

func (c ioCounts) minus(o ioCounts) ioCounts {
	return ioCounts{c.buffers - o.buffers, c.rows - o.rows, c.wal - o.wal}
}

func (c ioCounts) String() string {
	return fmt.Sprintf("%d buffers, %d rows read, WAL %.0f MB", c.buffers, c.rows, float64(c.wal)/(1<<20))
}

func tableIO(db *gorm.DB) ioCounts {
	time.Sleep(11 * time.Second)
	var c ioCounts
	var out struct{ Buffers, Rows, WAL int64 }
	db.Raw(`SELECT (SELECT COALESCE(SUM(heap_blks_hit + heap_blks_read + COALESCE(idx_blks_hit, 0) + COALESCE(idx_blks_read, 0)
				+ COALESCE(toast_blks_hit, 0) + COALESCE(toast_blks_read, 0) + COALESCE(tidx_blks_hit, 0) + COALESCE(tidx_blks_read, 0)), 0)
			FROM pg_statio_user_tables WHERE schemaname = current_schema()) AS buffers,
		(SELECT COALESCE(SUM(COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0)), 0)
			FROM pg_stat_user_tables WHERE schemaname = current_schema()) AS rows,
		CAST(pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS bigint) AS wal`).Scan(&out)
	c.buffers, c.rows, c.wal = out.Buffers, out.Rows, out.WAL
	return c
}

// tillLoad posts purchases through the Service from four goroutines, as
// tills do, while something else runs, and reports their latencies.
type tillLoad struct {
	svc *loyalty.Service
	ids []string // the members' ids, by number
	seq atomic.Int64
	run int64 // in the receipts' numbers, unique across runs on a kept schema
	log io.Writer
}

// member is the id of the member the kth purchase is for: spread over
// the base by a prime stride.
func (t *tillLoad) member(k int64) string { return t.ids[k*104729%int64(len(t.ids))] }

type latencies struct {
	n             int
	p50, p99, max time.Duration
	inOrder       []time.Duration // as they completed
	maxAt         time.Time       // when the slowest completed (during), to be found in the server's log
}

// cpuTimes is the CPU time so far, user and kernel, of the engine's
// process and of the database server's processes, when the server runs on
// this machine (serverHere); see readCPU. Four tills keep a share of a
// two-core machine busy themselves, which is what a job's core takes from
// them.
type cpuTimes struct {
	engine, server [2]time.Duration
	serverHere     bool
}

// since is the CPU a purchase took between before and c, n purchases
// posted meanwhile, or "" when nothing was read.
func (c cpuTimes) since(before cpuTimes, n int) string {
	if n == 0 || c.engine[0] == 0 {
		return ""
	}
	each := func(t [2]time.Duration, was [2]time.Duration) string {
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(n) }
		return fmt.Sprintf("%.2f ms (%.2f ms in the kernel)", ms(t[0]-was[0]+t[1]-was[1]), ms(t[1]-was[1]))
	}
	out := "the engine " + each(c.engine, before.engine)
	if c.serverHere && before.serverHere {
		out = "the server " + each(c.server, before.server) + ", " + out
	}
	return out
}

// p99 is the 99th percentile of ds, sorted, as latencies reports it.
func p99(ds []time.Duration) time.Duration { return ds[min(len(ds)-1, int(0.99*float64(len(ds))))] }

// justBefore is the yardstick of the tills beside a load: the same
// purchases with nothing else running, for 6 s after a second's warm-up,
// just before the load, so that both sides meet the same phase of a
// machine whose speed drifts over minutes. The tills grow
// idempotency_keys from nothing on a fresh seed, and each of their
// connections keeps the plan of its lookup made when the table was small
// (a sequential scan); autovacuum, off on this machine, would have
// analyzed it as it grew and had those plans made again: so it is
// analyzed first.
func (t *tillLoad) justBefore(ctx context.Context, b *testing.B, db *gorm.DB) latencies {
	if err := db.Exec(`ANALYZE idempotency_keys`).Error; err != nil {
		b.Fatal(err)
	}
	t.during(ctx, func() { time.Sleep(time.Second) })
	return t.during(ctx, func() { time.Sleep(6 * time.Second) })
}

// against is the p99 of the no-load latencies l over as many purchases as
// busy had (p99Of), and busy's p99 as a multiple of it (0 when there is
// none).
func (busy latencies) against(l latencies) (time.Duration, float64) {
	like := l.p99Of(busy.n)
	if like <= 0 {
		return like, 0
	}
	return like, float64(busy.p99) / float64(like)
}

// p99Of is the p99 of no-job latencies l measured as over n purchases: the
// median of the p99s of l's runs of n consecutive purchases. A job of a
// second has a hundred purchases or so beside it, whose p99 is their
// maximum; the p99 of the thousands of a quiet spell is not its like, and
// the ratio of the two would grow as the job shrinks, whatever the job
// costs the tills.
func (l latencies) p99Of(n int) time.Duration {
	if n <= 0 || 2*n > len(l.inOrder) {
		return l.p99
	}
	var p99s []time.Duration
	for i := 0; i+n <= len(l.inOrder); i += n {
		w := slices.Clone(l.inOrder[i : i+n])
		slices.Sort(w)
		p99s = append(p99s, p99(w))
	}
	slices.Sort(p99s)
	return p99s[len(p99s)/2]
}

func (l latencies) String() string {
	at := ""
	if !l.maxAt.IsZero() {
		at = l.maxAt.UTC().Format(" at 15:04:05.000")
	}
	return fmt.Sprintf("%d posted, p50 %.1f ms, p99 %.1f ms, max %.0f ms%s", l.n,
		float64(l.p50.Microseconds())/1000, float64(l.p99.Microseconds())/1000, float64(l.max.Microseconds())/1000, at)
}

// during runs fn with the tills posting, each at most one purchase every
// 20 ms (a busy store, not a load test), and returns their latencies.
func (t *tillLoad) during(ctx context.Context, fn func()) latencies {
	stop := make(chan struct{})
	var mu sync.Mutex
	var all []time.Duration
	var slowest time.Duration
	var slowestAt time.Time
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				n := t.seq.Add(1)
				total := 500 + n*7919%20000
				member := t.member(n)
				t0 := time.Now()
				_, _, err := t.svc.PostPurchase(ctx, loyalty.Principal{Subject: "till-bench", Role: loyalty.RolePOS}, loyalty.PurchaseInput{
					MemberID: member, StoreID: "store-1", ExternalID: fmt.Sprintf("T-%d-%d", t.run, n), Total: &total}, loyalty.IdempotencyKey{})
				d := time.Since(t0)
				if err != nil {
					continue
				}
				mu.Lock()
				if t.log != nil {
					fmt.Fprintf(t.log, "%s %.3f\n", t0.UTC().Format("15:04:05.000"), float64(d.Microseconds())/1000)
				}
				all = append(all, d)
				if d > slowest {
					slowest, slowestAt = d, t0.Add(d)
				}
				mu.Unlock()
			}
		}()
	}
	fn()
	close(stop)
	wg.Wait()
	l := latenciesOf(all)
	l.maxAt = slowestAt
	return l
}

// day posts n purchases through the Service from eight goroutines, dated
// across the day that begins at from, each of one to three lines in 24
// categories, for members picked as the tills pick them; it returns how
// many were posted.
func (t *tillLoad) day(ctx context.Context, from time.Time, n int) (int64, error) {
	var posted, next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				k := t.seq.Add(1)
				total := 500 + k*7919%20000
				var items []loyalty.PurchaseItem
				for l := int64(0); l <= k%3; l++ {
					share := total / (k%3 + 1)
					if l == k%3 {
						share = total - share*l
					}
					one := int64(1)
					items = append(items, loyalty.PurchaseItem{SKU: fmt.Sprintf("SKU-%d", (k+l)%500), Category: fmt.Sprintf("cat%d", (k+l)%24),
						Quantity: &one, UnitPrice: &share, Amount: &share})
				}
				at := from.Add(time.Duration(i) * 23 * time.Hour / time.Duration(n))
				_, _, err := t.svc.PostPurchase(ctx, loyalty.Principal{Subject: "till-bench", Role: loyalty.RolePOS}, loyalty.PurchaseInput{
					MemberID: t.member(k), StoreID: "store-2", ExternalID: fmt.Sprintf("D-%d-%d", t.run, k),
					OccurredAt: at.Format(time.RFC3339), Total: &total, Items: items}, loyalty.IdempotencyKey{})
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					continue
				}
				posted.Add(1)
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return posted.Load(), *err
	}
	return posted.Load(), nil
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

// sink keeps the spinning goroutine's result, so that its loop is not
// optimised away.
var sink atomic.Uint64
