package loyalty_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// fullSpend is the qualifying spend at now over the member's whole purchase
// history, worked out in the test: totals less returns of the purchases
// made in the last windowDays.
func (e *oracleEnv) fullSpend(member string, windowDays int, now time.Time) int64 {
	e.t.Helper()
	var ps []struct {
		OccurredAt time.Time
		Net        int64
	}
	if err := e.store.DB().Raw("SELECT occurred_at, total - returned_amount AS net FROM purchases WHERE member_id = ?", member).
		Scan(&ps).Error; err != nil {
		e.t.Fatal(err)
	}
	start := now.AddDate(0, 0, -windowDays)
	var s int64
	for _, p := range ps {
		if !p.OccurredAt.Before(start) && !p.OccurredAt.After(now) {
			s += p.Net
		}
	}
	return s
}

// TestKeptBalanceMatchesRecomputation runs random sequences of purchases
// (some dated back), returns, adjustments, expiry runs and clock moves that
// cross releases, expiries, the expiring-soon window and purchases leaving
// the qualifying window. After each step the balance read (from the kept
// row while it holds) must equal the balance computed afresh from the open
// lots, and both the oracle over every lot and purchase ever stored; the
// version must never go down and must move whenever the answer differs.
func TestKeptBalanceMatchesRecomputation(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		for seed := int64(1); seed <= 3; seed++ {
			pending, days, window, policy, period := 3, 40, 20, loyalty.ExpiryLot, "rolling"
			inactivity := 0
			if seed == 3 {
				policy, days, inactivity = loyalty.ExpiryInactivity, 25, 25
			}
			e := newOracleEnv(t, dialect, loyalty.ProgramPatch{PendingDays: &pending, ExpiryPolicy: &policy, ExpiryDays: &days,
				TierWindowDays: &window, TierPeriod: &period})
			rng := rand.New(rand.NewSource(seed))
			member := e.enrol()
			var purchases []string
			var lastVersion int64
			var lastShown string
			check := func(step string) {
				t.Helper()
				now := e.clock.Now()
				got, err := e.svc.Balance(e.ctx, e.admin, member)
				if err != nil {
					t.Fatal(err)
				}
				full, err := loyalty.BalanceAt(e.store.DB(), member, now)
				if err != nil {
					t.Fatal(err)
				}
				gb, _ := json.Marshal(got)
				fb, _ := json.Marshal(full)
				if string(gb) != string(fb) {
					t.Fatalf("seed %d, %s at %s: the read gives\n%s\ncomputed afresh\n%s", seed, step, now, gb, fb)
				}
				want := e.oracle(member, inactivity, now)
				if got.Available != want.Available || got.Pending != want.Pending || fmt.Sprint(got.ExpiringSoon) != fmt.Sprint(want.Soon) {
					t.Fatalf("seed %d, %s at %s: %+v, the lots say %+v", seed, step, now, got, want)
				}
				if s := e.fullSpend(member, window, now); got.QualifyingSpend != s {
					t.Fatalf("seed %d, %s at %s: qualifying spend %d, the purchases say %d", seed, step, now, got.QualifyingSpend, s)
				}
				got.Version, got.AsOf = 0, time.Time{}
				shown, _ := json.Marshal(got)
				switch {
				case full.Version < lastVersion:
					t.Fatalf("seed %d, %s: version went down from %d to %d", seed, step, lastVersion, full.Version)
				case full.Version == lastVersion && string(shown) != lastShown:
					t.Fatalf("seed %d, %s: version %d kept, but the balance changed from\n%s\nto\n%s", seed, step, full.Version, lastShown, shown)
				}
				lastVersion, lastShown = full.Version, string(shown)
			}
			check("enrolled")
			for i := 0; i < 60; i++ {
				var step string
				switch op := rng.Intn(10); {
				case op < 4:
					back := time.Duration(rng.Intn(50*24)) * time.Hour
					if rng.Intn(3) == 0 {
						back = 0
					}
					purchases = append(purchases, e.buy(member, int64(100+rng.Intn(5000)), back))
					step = fmt.Sprintf("purchase dated %s back", back)
				case op == 4 && len(purchases) > 0:
					id := purchases[rng.Intn(len(purchases))]
					amount := int64(1 + rng.Intn(200))
					e.n++
					_, _, err := e.svc.PostReturn(e.ctx, e.admin, id, loyalty.ReturnInput{ExternalID: fmt.Sprintf("RET-%d", e.n), Amount: &amount},
						loyalty.IdempotencyKey{})
					if err != nil && !strings.Contains(err.Error(), "exceed") {
						t.Fatal(err)
					}
					step = "return"
				case op == 5:
					pts := int64(rng.Intn(300) - 150)
					if pts == 0 {
						pts = 1
					}
					if err := e.adjust(member, pts); err != nil && !strings.Contains(err.Error(), "are available") {
						t.Fatal(err)
					}
					step = fmt.Sprintf("adjust %d", pts)
				case op == 6:
					if _, err := e.svc.ExpirePoints(e.ctx, e.clock.Now()); err != nil {
						t.Fatal(err)
					}
					step = "expiry run"
				case op == 7:
					// Land exactly on a boundary to come, or a microsecond off it.
					if b := e.boundaries(member, inactivity); len(b) > 0 {
						e.clock.Set(b[rng.Intn(min(len(b), 9))])
					}
					step = "to a boundary"
				default:
					e.clock.Advance(time.Duration(rng.Intn(15*24*60)) * time.Minute)
					step = "time passes"
				}
				check(step)
			}
		}
	})
}

// TestBalanceReadIsOneRowWhateverTheHistory checks, by the statements run
// and the tables they read, that a balance read of a member with a long
// history is the one statement a new member's read is, reading neither lots
// nor purchases, and that a purchase reads no lots or purchases either.
func TestBalanceReadIsOneRowWhateverTheHistory(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		pending, days, policy := 0, 365, loyalty.ExpiryLot
		e := newOracleEnv(t, dialect, loyalty.ProgramPatch{PendingDays: &pending, ExpiryPolicy: &policy, ExpiryDays: &days})
		var mu sync.Mutex
		var stmts []string
		if err := e.store.TraceStatements(func(sql string) {
			mu.Lock()
			stmts = append(stmts, sql)
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
		record := func(fn func()) []string {
			mu.Lock()
			stmts = nil
			mu.Unlock()
			fn()
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), stmts...)
		}
		young, old := e.enrol(), e.enrol()
		e.buy(young, 1000, 0)
		for i := 0; i < 200; i++ {
			e.buy(old, 1000, time.Duration(200-i)*time.Hour)
		}
		if _, err := e.svc.Balance(e.ctx, e.admin, young); err != nil { // the settings are read once
			t.Fatal(err)
		}
		reads := map[string][]string{}
		for name, m := range map[string]string{"young": young, "old": old} {
			reads[name] = record(func() {
				if _, err := e.svc.Balance(e.ctx, e.admin, m); err != nil {
					t.Fatal(err)
				}
			})
		}
		for name, r := range reads {
			if len(r) != 1 {
				t.Fatalf("the %s member's balance read ran %d statements: %q", name, len(r), r)
			}
			if s := strings.ToLower(r[0]); strings.Contains(s, "lots") || strings.Contains(s, "purchases") {
				t.Fatalf("the %s member's balance read reads history: %s", name, r[0])
			}
		}
		buys := map[string][]string{}
		for name, m := range map[string]string{"young": young, "old": old} {
			buys[name] = record(func() { e.buy(m, 1000, 0) })
		}
		if len(buys["young"]) != len(buys["old"]) {
			t.Fatalf("a purchase runs %d statements for a new member, %d for one with history:\n%q\n%q",
				len(buys["young"]), len(buys["old"]), buys["young"], buys["old"])
		}
		for _, s := range buys["old"] {
			l := strings.ToLower(s)
			if strings.HasPrefix(strings.TrimSpace(l), "select") && (strings.Contains(l, "from lots") || strings.Contains(l, "from purchases")) {
				t.Fatalf("a purchase reads history: %s", s)
			}
		}
	})
}

// TestBalanceReadIsOneRowAfterTheExpiryRun checks that the expire-points
// job leaves the rows it changes kept: a read of a member whose lots it
// expired is still the one statement, with the answer and version a read
// computed from the open lots would give.
func TestBalanceReadIsOneRowAfterTheExpiryRun(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		pending, days, policy := 0, 365, loyalty.ExpiryLot
		e := newOracleEnv(t, dialect, loyalty.ProgramPatch{PendingDays: &pending, ExpiryPolicy: &policy, ExpiryDays: &days})
		m := e.enrol()
		for i := 0; i < 40; i++ {
			e.buy(m, 1000, time.Duration(400*24-i*24*20)*time.Hour) // the first ones lapsed
		}
		before, err := e.svc.Balance(e.ctx, e.admin, m)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := e.svc.ExpirePoints(e.ctx, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if sum.Lots == 0 || sum.Members != 1 {
			t.Fatalf("the run expired %+v, want lots of the one member", sum)
		}
		var stmts []string
		var mu sync.Mutex
		if err := e.store.TraceStatements(func(sql string) {
			mu.Lock()
			stmts = append(stmts, sql)
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
		after, err := e.svc.Balance(e.ctx, e.admin, m)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got := append([]string(nil), stmts...)
		mu.Unlock()
		if len(got) != 1 || strings.Contains(strings.ToLower(got[0]), "lots") {
			t.Fatalf("a read after the expiry run ran %d statements: %q", len(got), got)
		}
		full, err := loyalty.BalanceAt(e.store.DB(), m, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		ab, _ := json.Marshal(after)
		fb, _ := json.Marshal(full)
		bb, _ := json.Marshal(before)
		if string(ab) != string(fb) {
			t.Fatalf("after the expiry run the read gives\n%s\ncomputed afresh\n%s", ab, fb)
		}
		if after.Available != before.Available || after.Version < before.Version {
			t.Fatalf("the expiry run changed the balance from\n%s\nto\n%s", bb, ab)
		}
	})
}

// newLapsingEnv is an oracleEnv under the lot policy (points available at
// once, expiring 365 days after their purchase) with n members, the j-th
// with lots purchases of 1000+j, one every step days from 400 days back:
// those older than 365 days have lapsed.
func newLapsingEnv(t *testing.T, dialect string, n, lots, step int) (*oracleEnv, []string) {
	t.Helper()
	pending, days, policy := 0, 365, loyalty.ExpiryLot
	e := newOracleEnv(t, dialect, loyalty.ProgramPatch{PendingDays: &pending, ExpiryPolicy: &policy, ExpiryDays: &days})
	members := make([]string, 0, n)
	for j := range n {
		m := e.enrol()
		members = append(members, m)
		for i := range lots {
			e.buy(m, 1000+int64(j), time.Duration(400-i*step)*24*time.Hour)
		}
	}
	return e, members
}

// freshBalance reads member's balance through Service.Balance and fails
// the test unless it is the balance computed afresh from the ledger's rows
// now (BalanceAt).
func (e *oracleEnv) freshBalance(member string) loyalty.Balance {
	e.t.Helper()
	got, err := e.svc.Balance(e.ctx, e.admin, member)
	if err != nil {
		e.t.Fatal(err)
	}
	full, err := loyalty.BalanceAt(e.store.DB(), member, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	gb, _ := json.Marshal(got)
	fb, _ := json.Marshal(full)
	if string(gb) != string(fb) {
		e.t.Fatalf("member %s's balance read gives\n%s\ncomputed afresh\n%s", member, gb, fb)
	}
	return got
}

// TestExpiryRunInBatches checks that an expiry run over more lots than one
// batch closes every lapsed lot once, counts each member once, leaves every
// balance as a read computed afresh gives it, and that a second run for the
// same as_of expires nothing.
func TestExpiryRunInBatches(t *testing.T) {
	defer loyalty.SetExpiryBatch(3)()
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e, members := newLapsingEnv(t, dialect, 3, 8, 10) // four of eight lapsed
		sum, err := e.svc.ExpirePoints(e.ctx, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if sum.Lots != 12 || sum.Members != 3 {
			t.Fatalf("the run expired %+v, want 12 lots of 3 members", sum)
		}
		for _, m := range members {
			e.freshBalance(m)
		}
		again, err := e.svc.ExpirePoints(e.ctx, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if again.Lots != 0 || again.Members != 0 {
			t.Fatalf("a second run for the same as_of expired %+v", again)
		}
		var entries int64
		if err := e.store.DB().Raw(`SELECT COUNT(*) FROM ledger_entries WHERE kind = 'expire'`).Scan(&entries).Error; err != nil {
			t.Fatal(err)
		}
		if entries != 12 {
			t.Fatalf("%d expire entries, want 12", entries)
		}
	})
}

// TestExpiryWorkersSideBySide checks an expiry run whose batches run side
// by side (four workers of two members a batch on PostgreSQL; SQLite's one
// writer takes them in turn), raced by a second run for the same as_of
// while tills post purchases for the same members: every lapsed lot is
// expired once, each member's ledger sums to its balance, and the balance
// read is the one computed afresh.
func TestExpiryWorkersSideBySide(t *testing.T) {
	defer loyalty.SetExpiryWorkers(4, 2)()
	defer loyalty.SetExpiryServingQuiet(0, nil)() // every worker, tills or not
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e, members := newLapsingEnv(t, dialect, 12, 4, 15) // three of four lapsed
		now := e.clock.Now()
		var wg sync.WaitGroup
		sums := make([]loyalty.ExpirySummary, 2)
		errs := make([]error, 2+len(members))
		for r := range sums {
			wg.Go(func() { sums[r], errs[r] = e.svc.ExpirePoints(e.ctx, now) })
		}
		for i, m := range members {
			wg.Go(func() {
				total := int64(500)
				_, _, errs[2+i] = e.svc.PostPurchase(e.ctx, e.admin, loyalty.PurchaseInput{MemberID: m,
					ExternalID: fmt.Sprintf("till-%d", i), StoreID: "s1", Total: &total}, loyalty.IdempotencyKey{})
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if lots := sums[0].Lots + sums[1].Lots; lots != 36 {
			t.Fatalf("the two runs expired %+v and %+v, want 36 lots between them", sums[0], sums[1])
		}
		var entries int64
		if err := e.store.DB().Raw(`SELECT COUNT(*) FROM ledger_entries WHERE kind = 'expire'`).Scan(&entries).Error; err != nil {
			t.Fatal(err)
		}
		if entries != 36 {
			t.Fatalf("%d expire entries, want 36", entries)
		}
		for _, m := range members {
			got := e.freshBalance(m)
			if sum := e.ledgerSum(m); sum != got.Available+got.Pending {
				t.Fatalf("member %s's ledger sums to %d, its balance is %d available and %d pending", m, sum, got.Available, got.Pending)
			}
		}
		again, err := e.svc.ExpirePoints(e.ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		if again.Lots != 0 {
			t.Fatalf("a third run for the same as_of expired %+v", again)
		}
	})
}

// TestExpiryLeavesTheTillsACore checks, on PostgreSQL (SQLite runs one
// batch at a time anyway), that an expiry run's second worker takes
// batches only while no till has written for a while: with a purchase just
// posted its batches run one at a time, with the tills quiet two at once,
// and either way every lapsed lot expires once.
func TestExpiryLeavesTheTillsACore(t *testing.T) {
	defer loyalty.SetExpiryWorkers(2, 1)()
	for _, busy := range []bool{true, false} {
		t.Run(fmt.Sprintf("busy=%v", busy), func(t *testing.T) {
			// Each batch counts the batches under way as it begins. Beside
			// the tills it pauses, which a second worker taking batches
			// would fill; with them quiet the run's first batch waits (at
			// most 30 s) for the second worker's, so that the two meet.
			var mu sync.Mutex
			var under, most int
			var waited bool
			met := make(chan struct{})
			begins := func() func() {
				mu.Lock()
				under++
				if under > most {
					most = under
					if most == 2 {
						close(met)
					}
				}
				wait := !busy && !waited
				waited = true
				mu.Unlock()
				if busy {
					time.Sleep(5 * time.Millisecond)
				} else if wait {
					select {
					case <-met:
					case <-time.After(30 * time.Second):
					}
				}
				return func() {
					mu.Lock()
					under--
					mu.Unlock()
				}
			}
			quiet := time.Hour // the setup's own purchases were just posted
			if !busy {
				quiet = 0
			}
			defer loyalty.SetExpiryServingQuiet(quiet, begins)()
			e, _ := newLapsingEnv(t, loyalty.Postgres, 8, 2, 60) // one of two lapsed
			sum, err := e.svc.ExpirePoints(e.ctx, e.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			if sum.Lots != 8 || sum.Members != 8 {
				t.Fatalf("the run expired %+v, want 8 lots of 8 members", sum)
			}
			want := 2
			if busy {
				want = 1
			}
			if most != want {
				t.Fatalf("at most %d batches under way at once, want %d", most, want)
			}
		})
	}
}

// TestExpiryWritesEachBalanceOnce checks, on PostgreSQL, that an expiry
// run writes each balance it moves once a transaction and locks no
// member's row. PostgreSQL checks a row's foreign key again when the
// transaction updates a row it wrote itself, which locks the member, and
// every lock on a row writes its page to the WAL: at a million members, a
// page of members for every lot a run closed. A row's xmax names the last
// transaction that locked or changed it.
func TestExpiryWritesEachBalanceOnce(t *testing.T) {
	defer loyalty.SetExpiryBatch(2)()
	pending, days, policy := 0, 365, loyalty.ExpiryLot
	e := newOracleEnv(t, loyalty.Postgres, loyalty.ProgramPatch{PendingDays: &pending, ExpiryPolicy: &policy, ExpiryDays: &days})
	db := e.store.DB()
	var members []string
	for j := 0; j < 3; j++ {
		m := e.enrol()
		members = append(members, m)
		for i := 0; i < 4; i++ {
			e.buy(m, 1000, time.Duration(400*24-i*24*20)*time.Hour) // two of four lapsed
		}
	}
	for _, q := range []string{
		`CREATE TABLE balance_writes (member_id text, tx bigint)`,
		`CREATE FUNCTION note_balance_write() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN INSERT INTO balance_writes VALUES (NEW.member_id, txid_current()); RETURN NEW; END $$`,
		`CREATE TRIGGER note_balance_write AFTER UPDATE ON member_balances FOR EACH ROW EXECUTE FUNCTION note_balance_write()`,
	} {
		if err := db.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	before := loyaltytest.MemberLockers(t, e.store, members)
	sum, err := e.svc.ExpirePoints(e.ctx, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Lots != 6 || sum.Members != 3 {
		t.Fatalf("the run expired %+v, want 6 lots of 3 members", sum)
	}
	if after := loyaltytest.MemberLockers(t, e.store, members); !maps.Equal(after, before) {
		t.Fatalf("the run locked member rows: xmax %v before, %v after", before, after)
	}
	var writes []struct {
		MemberID string
		N        int
	}
	if err := db.Raw(`SELECT member_id, COUNT(*) AS n FROM balance_writes GROUP BY member_id, tx ORDER BY member_id`).Scan(&writes).Error; err != nil {
		t.Fatal(err)
	}
	if len(writes) != len(members) {
		t.Fatalf("balance writes by member and transaction: %+v, want one for each of the 3 members", writes)
	}
	for _, w := range writes {
		if w.N != 1 {
			t.Fatalf("member %s's balance was written %d times in one transaction", w.MemberID, w.N)
		}
	}
}
