package loyalty_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

var importNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type importEnv struct {
	t     *testing.T
	store *loyalty.Store
	svc   *loyalty.Service
	now   time.Time
}

func newImportEnv(t *testing.T, dialect string) *importEnv {
	t.Helper()
	return newImportEnvOn(t, loyaltytest.MustOpen(t, dialect))
}

func newImportEnvOn(t *testing.T, store *loyalty.Store) *importEnv {
	e := &importEnv{t: t, store: store, now: importNow}
	e.svc = loyalty.NewService(store, loyalty.WithClock(func() time.Time { return e.now }))
	return e
}

// run imports body as kind and returns the ended import.
func (e *importEnv) run(opts loyalty.ImportOptions, body string) loyalty.Import {
	e.t.Helper()
	ctx := context.Background()
	imp, err := e.svc.BeginImport(ctx, opts)
	if err != nil {
		e.t.Fatalf("begin import: %v", err)
	}
	out, err := e.svc.RunImport(ctx, imp.ID, strings.NewReader(body))
	if err != nil {
		e.t.Fatalf("run import: %v", err)
	}
	return out
}

// errorsOf reads the import's error CSV: line → error.
func (e *importEnv) errorsOf(id string) ([]string, map[string]string) {
	e.t.Helper()
	var b bytes.Buffer
	if err := e.svc.WriteImportErrors(context.Background(), id, &b); err != nil {
		e.t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		e.t.Fatalf("error CSV: %v\n%s", err, b.String())
	}
	out := map[string]string{}
	for _, r := range recs[1:] {
		out[r[0]] = r[1]
	}
	return recs[0], out
}

func (e *importEnv) count(q string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.store.DB().Raw(q, args...).Scan(&n).Error; err != nil {
		e.t.Fatal(err)
	}
	return n
}

func TestImportPurchasesBadInput(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newImportEnv(t, dialect)
		body := "member_external_id,external_id,store_id,occurred_at,total,currency,channel,category\n" +
			"m1,r1,s1,2025-01-02T10:00:00Z,1050,USD,pos,shoes\n" + // 2 ok
			"m1,r2,s1,2025-13-02,1050,USD,pos,\n" + // 3 bad date
			"m2,r3,s1,2025-01-03,10.50,USD,pos,\n" + // 4 bad amount
			"m2,r4,s1,2025-01-03,1000,XYZ,pos,\n" + // 5 unknown currency
			"m2,r1,s1,2025-01-04,1000,USD,pos,\n" + // 6 duplicate key
			"m3,r5,s1,2025-01-04,1000,USD,pos,\xff\xfe\n" + // 7 non-UTF-8
			"m3,r6,,2025-01-05,700,,,\n" + // 8 ok: defaults
			"m4,r7,s1,2025-01-0" // 9 truncated last line
		imp := e.run(loyalty.ImportOptions{Kind: loyalty.ImportPurchases}, body)
		if imp.Status != loyalty.ImportSucceeded || imp.RowsDone != 8 || imp.RowsCreated != 2 || imp.RowsFailed != 6 || imp.RowsSkipped != 0 || imp.RowsTotal != 8 {
			t.Fatalf("import = %+v", imp)
		}
		head, errs := e.errorsOf(imp.ID)
		if strings.Join(head, ",") != "line,error,member_external_id,external_id,store_id,occurred_at,total,currency,channel,category" {
			t.Errorf("error CSV header = %v", head)
		}
		for line, want := range map[string]string{"3": "occurred_at", "4": "total", "5": "program currency", "6": "earlier line",
			"7": "not UTF-8", "9": "cut short"} {
			if !strings.Contains(errs[line], want) {
				t.Errorf("line %s: error %q, want it to mention %q", line, errs[line], want)
			}
		}
		if len(errs) != 6 {
			t.Errorf("errors = %v", errs)
		}
		if n := e.count("SELECT COUNT(*) FROM purchases"); n != 2 {
			t.Errorf("purchases = %d, want 2", n)
		}
		// m1 and m3 were enrolled; m2 and m4 had no valid row.
		if n := e.count("SELECT COUNT(*) FROM members"); n != 2 {
			t.Errorf("members = %d, want 2", n)
		}
		if n := e.count("SELECT COUNT(*) FROM purchase_items WHERE category = 'shoes'"); n != 1 {
			t.Errorf("items = %d, want 1", n)
		}
		if n := e.count("SELECT COUNT(*) FROM events WHERE type = 'member.created'"); n != 2 {
			t.Errorf("member.created events = %d, want 2", n)
		}
		if n := e.count("SELECT COUNT(*) FROM events WHERE type = 'purchase.created'"); n != 2 {
			t.Errorf("purchase.created events = %d, want 2", n)
		}
		if n := e.count("SELECT COUNT(*) FROM ledger_entries"); n != 0 {
			t.Errorf("ledger entries = %d, want 0 (history earns nothing)", n)
		}
	})
}

func TestImportWrongHeader(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newImportEnv(t, dialect)
		for _, c := range []struct{ name, kind, body, want string }{
			{"UnknownColumn", loyalty.ImportPurchases, "member_external_id,external_id,when,total\nm1,r1,2025-01-01,100\n", `unknown column "when"`},
			{"MissingColumn", loyalty.ImportPurchases, "member_external_id,external_id,total\nm1,r1,100\n", `"occurred_at" is missing`},
			{"Empty", loyalty.ImportMembers, "", "empty"},
			{"Twice", loyalty.ImportMembers, "external_id,email,email\n", "twice"},
		} {
			t.Run(c.name, func(t *testing.T) {
				imp := e.run(loyalty.ImportOptions{Kind: c.kind}, c.body)
				if imp.Status != loyalty.ImportFailed || imp.Error == nil || !strings.Contains(*imp.Error, c.want) || imp.RowsCreated != 0 {
					t.Fatalf("import = %+v, want failed mentioning %q", imp, c.want)
				}
			})
		}
		if n := e.count("SELECT COUNT(*) FROM purchases"); n != 0 {
			t.Errorf("purchases = %d", n)
		}
	})
}

func purchasesCSV(n, members int) string {
	var b strings.Builder
	b.WriteString("member_external_id,external_id,store_id,occurred_at,total,currency\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "c%d,p%d,s1,%s,%d,USD\n", i%members, i, importNow.AddDate(0, 0, -1-i%300).Format(time.RFC3339), 100+i)
	}
	return b.String()
}

func TestImportReimportDryRunAndBalances(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newImportEnv(t, dialect)
		body := purchasesCSV(12000, 700) // three chunks
		dry := e.run(loyalty.ImportOptions{Kind: loyalty.ImportPurchases, DryRun: true}, body)
		if dry.Status != loyalty.ImportSucceeded || dry.RowsDone != 12000 || dry.RowsCreated != 12000 || dry.RowsFailed != 0 {
			t.Fatalf("dry run = %+v", dry)
		}
		for _, table := range []string{"purchases", "members", "events", "member_balances"} {
			if n := e.count("SELECT COUNT(*) FROM " + table); n != 0 {
				t.Errorf("dry run wrote %d rows into %s", n, table)
			}
		}
		imp := e.run(loyalty.ImportOptions{Kind: loyalty.ImportPurchases}, body)
		if imp.Status != loyalty.ImportSucceeded || imp.RowsCreated != 12000 || imp.RowsSkipped != 0 {
			t.Fatalf("import = %+v", imp)
		}
		var sum int64
		for i := 0; i < 12000; i++ {
			sum += int64(100 + i)
		}
		if got := e.count("SELECT SUM(total) FROM purchases"); got != sum {
			t.Errorf("money = %d, want %d", got, sum)
		}
		if n := e.count("SELECT COUNT(*) FROM members"); n != 700 {
			t.Errorf("members = %d", n)
		}
		again := e.run(loyalty.ImportOptions{Kind: loyalty.ImportPurchases}, body)
		if again.RowsCreated != 0 || again.RowsSkipped != 12000 {
			t.Fatalf("re-import = %+v", again)
		}
		if n := e.count("SELECT COUNT(*) FROM purchases"); n != 12000 {
			t.Errorf("purchases after re-import = %d", n)
		}
		dry2 := e.run(loyalty.ImportOptions{Kind: loyalty.ImportPurchases, DryRun: true}, body)
		if dry2.RowsCreated != 0 || dry2.RowsSkipped != 12000 {
			t.Fatalf("dry run after import = %+v", dry2)
		}
		// The qualifying spend of a member counts its imported history:
		// the purchases of the last 365 days (all of them here).
		var id string
		e.store.DB().Raw("SELECT id FROM members WHERE external_id = 'c7'").Scan(&id)
		bal, err := e.svc.Balance(context.Background(), loyalty.Principal{Role: loyalty.RoleAdmin, Subject: "t"}, id)
		if err != nil {
			t.Fatal(err)
		}
		want := e.count("SELECT SUM(total) FROM purchases WHERE member_id = ?", id)
		if bal.QualifyingSpend != want || bal.Available != 0 {
			t.Errorf("balance = %+v, want qualifying spend %d", bal, want)
		}
	})
}

func TestImportMembersOpeningPointsOnce(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newImportEnv(t, dialect)
		body := "external_id,email,phone,first_name,last_name,birthday,timezone,enrolled_at,opening_points\n" +
			"a1,a1@example.com,+14155550101,Ann,Lee,1980-02-03,Europe/Paris,2020-01-01,500\n" +
			"a2,,,Bob,,,,,0\n" +
			"a3,a1@example.com,,,,,,,\n" + // email taken by a1
			"a4,bad-email,,,,,,,\n" +
			"a5,,,,,,,,-3\n" +
			"a1,,,,,,,,\n" // duplicate
		imp := e.run(loyalty.ImportOptions{Kind: loyalty.ImportMembers}, body)
		if imp.RowsCreated != 2 || imp.RowsFailed != 4 {
			t.Fatalf("import = %+v", imp)
		}
		_, errs := e.errorsOf(imp.ID)
		for line, want := range map[string]string{"4": "already used", "5": "email", "6": "opening_points", "7": "earlier line"} {
			if !strings.Contains(errs[line], want) {
				t.Errorf("line %s: %q, want %q", line, errs[line], want)
			}
		}
		again := e.run(loyalty.ImportOptions{Kind: loyalty.ImportMembers}, body)
		if again.RowsCreated != 0 || again.RowsSkipped != 2 {
			t.Fatalf("re-import = %+v", again)
		}
		var id string
		e.store.DB().Raw("SELECT id FROM members WHERE external_id = 'a1'").Scan(&id)
		bal, err := e.svc.Balance(context.Background(), loyalty.Principal{Role: loyalty.RoleAdmin, Subject: "t"}, id)
		if err != nil {
			t.Fatal(err)
		}
		if bal.Available != 500 {
			t.Errorf("available = %d, want 500", bal.Available)
		}
		if n := e.count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'import'"); n != 1 {
			t.Errorf("import entries = %d, want 1", n)
		}
		m, err := e.svc.Member(context.Background(), loyalty.Principal{Role: loyalty.RoleAdmin, Subject: "t"}, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Email == nil || *m.Email != "a1@example.com" || !m.EnrolledAt.Equal(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("member = %+v", m)
		}
	})
}

func TestImportEarn(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newImportEnv(t, dialect)
		// Out of order in the file: posted in occurred_at order.
		body := "member_external_id,external_id,store_id,occurred_at,total,currency\n" +
			"e1,x2,s1,2026-02-10T10:00:00Z,5000,USD\n" +
			"e1,x1,s1,2026-02-01T10:00:00Z,10000,USD\n"
		imp := e.run(loyalty.ImportOptions{Kind: loyalty.ImportPurchases, Earn: true}, body)
		if imp.RowsCreated != 2 || imp.RowsFailed != 0 {
			t.Fatalf("import = %+v", imp)
		}
		var id string
		e.store.DB().Raw("SELECT id FROM members WHERE external_id = 'e1'").Scan(&id)
		bal, err := e.svc.Balance(context.Background(), loyalty.Principal{Role: loyalty.RoleAdmin, Subject: "t"}, id)
		if err != nil {
			t.Fatal(err)
		}
		// Points per unit 1, multiplier 1: 100 + 50.
		if bal.Available+bal.Pending != 150 || bal.QualifyingSpend != 15000 {
			t.Errorf("balance = %+v", bal)
		}
		again := e.run(loyalty.ImportOptions{Kind: loyalty.ImportPurchases, Earn: true}, body)
		if again.RowsCreated != 0 || again.RowsSkipped != 2 {
			t.Fatalf("re-import = %+v", again)
		}
		if n := e.count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'earn'"); n != 2 {
			t.Errorf("earn entries = %d", n)
		}
	})
}

func TestImportOneAtATimeAndAbandoned(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newImportEnv(t, dialect)
		ctx := context.Background()
		first, err := e.svc.BeginImport(ctx, loyalty.ImportOptions{Kind: loyalty.ImportPurchases})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.BeginImport(ctx, loyalty.ImportOptions{Kind: loyalty.ImportPurchases}); loyalty.ErrorOf(err).Code != loyalty.Conflict {
			t.Fatalf("second import: %v, want conflict", err)
		}
		if _, err := e.svc.BeginImport(ctx, loyalty.ImportOptions{Kind: loyalty.ImportMembers}); err != nil {
			t.Fatalf("members import beside a purchases import: %v", err)
		}
		// The process of the first import dies: past the heartbeat's
		// staleness it is failed and another may start.
		e.now = e.now.Add(10 * time.Minute)
		if _, err := e.svc.BeginImport(ctx, loyalty.ImportOptions{Kind: loyalty.ImportPurchases}); err != nil {
			t.Fatalf("import after an abandoned one: %v", err)
		}
		got, err := e.svc.GetImport(ctx, first.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != loyalty.ImportFailed || got.Error == nil || got.FinishedAt == nil {
			t.Errorf("abandoned import = %+v", got)
		}
	})
}

// TestImportChunksShareMembers imports a file whose chunks share members,
// out of time order, with refused rows among them: on PostgreSQL chunks are
// written two at a time, and the result must be one writer's, chunk after
// chunk. Each chunk brings 2,500 new members, whom the next chunk has again
// at earlier times: each member must be enrolled at its first purchase in
// the first chunk that has it (not the earlier one of the next chunk,
// written at the same time), its last activity must be its latest purchase
// of the file, the counters must add up, and no chunk may wait for another
// forever.
func TestImportChunksShareMembers(t *testing.T) {
	const chunks, fresh = 5, 2500
	const rows = chunks * loyalty.ImportChunk
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newImportEnv(t, dialect)
		var b strings.Builder
		b.WriteString("member_external_id,external_id,store_id,occurred_at,total,currency\n")
		firstChunk := map[string]int{}
		first := map[string]time.Time{} // in the first chunk that has the member
		last := map[string]time.Time{}  // in the whole file
		var bad []int
		for i := range rows {
			c, r := i/loyalty.ImportChunk, i%loyalty.ImportChunk
			m := fmt.Sprintf("n%d-%d", c, r%fresh)
			at := importNow.Add(-time.Duration((i*7919)%(100*24)) * time.Hour)
			if r >= fresh && c > 0 {
				m = fmt.Sprintf("n%d-%d", c-1, r-fresh)
				at = at.AddDate(0, 0, -200)
			}
			if i%997 == 5 {
				bad = append(bad, i+2)
				fmt.Fprintf(&b, "%s,p%d,s1,%s,12.x,USD\n", m, i, at.Format(time.RFC3339))
				continue
			}
			fmt.Fprintf(&b, "%s,p%d,s1,%s,%d,USD\n", m, i, at.Format(time.RFC3339), 100+i)
			if fc, ok := firstChunk[m]; !ok {
				firstChunk[m], first[m] = c, at
			} else if fc == c && at.Before(first[m]) {
				first[m] = at
			}
			if l, ok := last[m]; !ok || at.After(l) {
				last[m] = at
			}
		}
		members := len(first)
		// The first chunk comes to enrol its members late: on PostgreSQL
		// the second, written at the same time, is there first.
		loyalty.SetImportBeforeEnrol(func(seq int64) {
			if seq == 1 {
				time.Sleep(300 * time.Millisecond)
			}
		})
		defer loyalty.SetImportBeforeEnrol(nil)
		imp := e.run(loyalty.ImportOptions{Kind: loyalty.ImportPurchases}, b.String())
		valid := int64(rows - len(bad))
		if imp.Status != loyalty.ImportSucceeded || imp.RowsDone != rows || imp.RowsTotal != rows || imp.RowsCreated != valid ||
			imp.RowsFailed != int64(len(bad)) || imp.RowsSkipped != 0 {
			t.Fatalf("import %+v, want %d rows in %d chunks: %d created, %d failed", imp, rows, chunks, valid, len(bad))
		}
		if n := e.count("SELECT count(*) FROM purchases"); n != valid {
			t.Fatalf("%d purchases stored, want %d", n, valid)
		}
		if n := e.count("SELECT count(*) FROM members"); n != int64(members) {
			t.Fatalf("%d members, want %d", n, members)
		}
		_, errs := e.errorsOf(imp.ID)
		for _, line := range bad {
			if errs[fmt.Sprint(line)] == "" {
				t.Fatalf("line %d is not in the error CSV (%d there)", line, len(errs))
			}
		}
		type got struct {
			ExternalID     string
			EnrolledAt     time.Time
			LastActivityAt time.Time
		}
		var all []got
		if err := e.store.DB().Raw(`SELECT m.external_id, m.enrolled_at, b.last_activity_at FROM members m
			JOIN member_balances b ON b.member_id = m.id`).Scan(&all).Error; err != nil {
			t.Fatal(err)
		}
		if len(all) != members {
			t.Fatalf("%d members with a balance row, want %d", len(all), members)
		}
		wrong := 0
		for _, g := range all {
			if !g.EnrolledAt.Equal(first[g.ExternalID]) {
				if wrong++; wrong <= 5 {
					t.Errorf("%s enrolled at %s, want its first purchase in chunk %d, %s", g.ExternalID, g.EnrolledAt,
						firstChunk[g.ExternalID]+1, first[g.ExternalID])
				}
			}
			if !g.LastActivityAt.Equal(last[g.ExternalID]) {
				t.Errorf("%s last active at %s, want its latest purchase, %s", g.ExternalID, g.LastActivityAt, last[g.ExternalID])
			}
		}
		if wrong > 0 {
			t.Errorf("%d of %d members enrolled at the wrong time", wrong, members)
		}
	})
}

// TestImportOverlapping imports a file a third of which is stored already:
// on PostgreSQL a chunk of new purchases is copied straight into its table
// and one with a stored purchase goes through the stage instead, and either
// way only the new purchases are written, each with its event.
func TestImportOverlapping(t *testing.T) {
	const rows, members = 3 * loyalty.ImportChunk, 700
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newImportEnv(t, dialect)
		var direct, staged atomic.Int64
		defer loyalty.SetImportCopied(0, func(d bool) {
			if d {
				direct.Add(1)
			} else {
				staged.Add(1)
			}
		})()
		all := strings.SplitAfter(purchasesCSV(rows, members), "\n")
		var part strings.Builder
		part.WriteString(all[0])
		for i, line := range all[1:] {
			if i%3 == 0 {
				part.WriteString(line)
			}
		}
		first := e.run(loyalty.ImportOptions{Kind: loyalty.ImportPurchases}, part.String())
		if first.Status != loyalty.ImportSucceeded || first.RowsCreated != rows/3 {
			t.Fatalf("first import = %+v", first)
		}
		whole := e.run(loyalty.ImportOptions{Kind: loyalty.ImportPurchases}, strings.Join(all, ""))
		if whole.Status != loyalty.ImportSucceeded || whole.RowsCreated != rows-rows/3 || whole.RowsSkipped != rows/3 {
			t.Fatalf("whole import = %+v, want %d created and %d skipped", whole, rows-rows/3, rows/3)
		}
		var sum int64
		for i := 0; i < rows; i++ {
			sum += int64(100 + i)
		}
		if n := e.count("SELECT COUNT(*) FROM purchases"); n != rows {
			t.Errorf("%d purchases, want %d", n, rows)
		}
		if got := e.count("SELECT SUM(total) FROM purchases"); got != sum {
			t.Errorf("money = %d, want %d", got, sum)
		}
		if n := e.count("SELECT COUNT(*) FROM events WHERE type = 'purchase.created'"); n != rows {
			t.Errorf("%d purchase.created events, want one a purchase: %d", n, rows)
		}
		if n := e.count("SELECT COUNT(*) FROM members"); n != members {
			t.Errorf("%d members, want %d", n, members)
		}
		if dialect == loyalty.Postgres {
			// The first import's chunk was new; each of the whole file's
			// found stored purchases and went through the stage.
			if direct.Load() != 1 || staged.Load() != 3 {
				t.Errorf("chunks copied straight %d, through the stage %d; want 1 and 3", direct.Load(), staged.Load())
			}
		}
	})
}

// TestImportWALCompression: an import chunk compresses its WAL where the
// server leaves it uncompressed and the role may set it, and leaves the
// server's choice alone otherwise.
func TestImportWALCompression(t *testing.T) {
	store := loyaltytest.MustOpen(t, loyalty.Postgres)
	var setting, super string
	if err := store.DB().Raw("SELECT current_setting('wal_compression'), current_setting('is_superuser')").Row().Scan(&setting, &super); err != nil {
		t.Fatal(err)
	}
	got := store.BulkWALCompression()
	switch {
	case setting == "off" && super == "on":
		// The smallest images the server was built for: zstd, else lz4.
		var offered string
		if err := store.DB().Raw("SELECT array_to_string(enumvals, ',') FROM pg_settings WHERE name = 'wal_compression'").Row().Scan(&offered); err != nil {
			t.Fatal(err)
		}
		want := "pglz"
		for _, c := range []string{"lz4", "zstd"} {
			if slices.Contains(strings.Split(offered, ","), c) {
				want = c
			}
		}
		if got != want {
			t.Fatalf("wal_compression off (the server offers %s), role superuser: chunks set %q, want %q", offered, got, want)
		}
		// And the chunks' transactions can set it.
		imp := newImportEnvOn(t, store).run(loyalty.ImportOptions{Kind: loyalty.ImportPurchases}, purchasesCSV(100, 10))
		if imp.Status != loyalty.ImportSucceeded || imp.RowsCreated != 100 {
			t.Fatalf("import = %+v", imp)
		}
	default:
		if got != "" {
			t.Fatalf("wal_compression %s, superuser %s: chunks set %q, want nothing", setting, super, got)
		}
	}
}

// TestJobWALCompression: a nightly job's transactions (WriteSet's
// snapshot and WriteDerived's statements) compress their WAL as an import
// chunk does, where the server leaves it uncompressed and the role may
// set it, and run on one core (no parallel workers for queries or index
// builds), and only for themselves: the next transaction sees the server's
// settings again.
func TestJobWALCompression(t *testing.T) {
	store := loyaltytest.MustOpen(t, loyalty.Postgres)
	svc := loyalty.NewService(store)
	ctx := context.Background()
	names := []string{"wal_compression", "max_parallel_workers_per_gather", "max_parallel_maintenance_workers"}
	settings := func(db *gorm.DB) []string {
		v := make([]string, len(names))
		if err := db.Raw("SELECT current_setting(?), current_setting(?), current_setting(?)", names[0], names[1], names[2]).
			Row().Scan(&v[0], &v[1], &v[2]); err != nil {
			t.Fatal(err)
		}
		return v
	}
	server := settings(store.DB())
	want := []string{store.BulkWALCompression(), "0", "0"}
	if want[0] == "" {
		want[0] = server[0]
	}
	for name, write := range map[string]func(context.Context, *loyalty.Service, func(*loyalty.Tx) error) error{
		"WriteSet": loyalty.WriteSet, "WriteDerived": loyalty.WriteDerived,
	} {
		var inside []string
		if err := write(ctx, svc, func(tx *loyalty.Tx) error { inside = settings(tx.DB); return nil }); err != nil {
			t.Fatal(err)
		}
		after := settings(store.DB())
		for i, n := range names {
			if inside[i] != want[i] {
				t.Errorf("%s: %s %q inside the job's transaction, want %q (server %q)", name, n, inside[i], want[i], server[i])
			}
			if after[i] != server[i] {
				t.Errorf("%s: %s %q after the job's transaction, want the server's %q", name, n, after[i], server[i])
			}
		}
	}
}
