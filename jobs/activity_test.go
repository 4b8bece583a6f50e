package jobs_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// buyAt posts a purchase of total minor units dated at (the clock stays
// where it is: a till sending a receipt of earlier), one line in each of
// categories when any are given.
func (e *env) buyAt(member string, total int64, at time.Time, categories ...string) string {
	e.t.Helper()
	in := loyalty.PurchaseInput{MemberID: member, StoreID: "store-1",
		ExternalID: fmt.Sprintf("R-%d", seq.Add(1)), OccurredAt: at.Format(time.RFC3339), Total: &total}
	for i, c := range categories {
		one, amount := int64(1), total/int64(len(categories))
		if i == 0 {
			amount = total - amount*int64(len(categories)-1)
		}
		in.Items = append(in.Items, loyalty.PurchaseItem{SKU: "SKU-" + c, Category: c, Quantity: &one, UnitPrice: &amount, Amount: &amount})
	}
	r, _, err := e.svc.PostPurchase(e.ctx, till, in, loyalty.IdempotencyKey{})
	if err != nil {
		e.t.Fatal(err)
	}
	return r.ID
}

// activityDiff counts the rows in which member_activity and the one pass
// over every purchase as of asOf differ.
func (e *env) activityDiff(asOf time.Time) int64 {
	e.t.Helper()
	q, args := jobs.ActivitySQL(e.runner, asOf, loyalty.LocalDay(asOf, time.UTC))
	cols := "member_id, first_day, x, last_day, second_day, purchases, repeat_spend, year_spend, rfm_last_at, rfm_n, CAST(rfm_spend AS TEXT)"
	full := "SELECT " + cols + " FROM (" + q + ") f"
	kept := "SELECT " + cols + " FROM member_activity"
	return e.count("SELECT COUNT(*) FROM ("+full+" EXCEPT "+kept+") a", args...) +
		e.count("SELECT COUNT(*) FROM ("+kept+" EXCEPT "+full+") b", args...)
}

// TestChurnSummariesFollowHistory runs churn-risk night after night while
// purchases arrive: on time, backdated into a member's history (before its
// first purchase, between two, on a day it already bought), with returns of
// old purchases, and while the oldest purchases leave the 365 days. After every run the kept
// summaries equal the one pass over every purchase, a run sums again only
// the members whose history changed, and a run for a past day leaves them
// alone.
func TestChurnSummariesFollowHistory(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		start := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, start.AddDate(0, 0, -1))
		var members []string
		for range 12 {
			members = append(members, e.enrol(""))
		}
		// A year and more of history: member i buys every (i+3) days
		// from 400 days back, two on some days.
		var old []string // member 4's purchases, oldest first
		for i, m := range members {
			for d := 400; d > 0; d -= i + 3 {
				id := e.buyAt(m, int64(1000+i*7+d), start.AddDate(0, 0, -d))
				if i == 4 {
					old = append(old, id)
				}
				if d%5 == 0 {
					e.buyAt(m, 333, start.AddDate(0, 0, -d).Add(time.Hour))
				}
			}
		}
		e.clock.Set(start)
		before := tableShape(t, e, "member_churn")
		summary := func(rec jobs.RunRecord) jobs.SummariesRefresh {
			t.Helper()
			var s jobs.ChurnSummary
			if err := json.Unmarshal(rec.Summary, &s); err != nil || s.Summaries == nil {
				t.Fatalf("summary %s: %v", rec.Summary, err)
			}
			return *s.Summaries
		}
		night := start
		got := summary(e.run(t, "churn-risk", night))
		if !got.Rebuilt || got.Members != int64(len(members)) || got.Table != "member_activity" {
			t.Fatalf("first run: %+v", got)
		}
		if n := e.activityDiff(night); n != 0 {
			t.Fatalf("first run: %d rows differ", n)
		}
		for n := 1; n <= 6; n++ {
			// A day: member 0 buys today, member 1 sends yesterday's
			// receipt, member 2 one from before its first purchase,
			// member 3 one on a day it already bought; every third night
			// two nights pass (the 365 days move on by two).
			days := 1 + n%3/2
			e.clock.Set(night.AddDate(0, 0, days).Add(-2 * time.Hour))
			e.buyAt(members[0], 4200, e.clock.Now().Add(-time.Hour))
			e.buyAt(members[1], 4300, e.clock.Now().AddDate(0, 0, -1))
			e.buyAt(members[2], 4400, start.AddDate(0, 0, -450-n))
			e.buyAt(members[3], 4500, start.AddDate(0, 0, -400+6*n).Add(2*time.Hour))
			// Member 4 returns part of a purchase from months ago: its
			// net spend changes.
			amount := int64(100 + n)
			if _, _, err := e.svc.PostReturn(e.ctx, till, old[len(old)-10-n], loyalty.ReturnInput{Amount: &amount}, loyalty.IdempotencyKey{}); err != nil {
				t.Fatal(err)
			}
			night = night.AddDate(0, 0, days)
			e.clock.Set(night.Add(time.Minute))
			got := summary(e.run(t, "churn-risk", night))
			if got.Rebuilt || got.Table != "member_activity" {
				t.Fatalf("night %d: %+v", n, got)
			}
			// The four buyers, the one who returned, and those whose
			// oldest purchase left the 365 days: never everyone.
			if got.Members < 5 || got.Members >= int64(len(members)) {
				t.Errorf("night %d: %d members summed again", n, got.Members)
			}
			if d := e.activityDiff(night); d != 0 {
				t.Fatalf("night %d: %d rows differ from the one pass over every purchase", n, d)
			}
		}
		// A run for a past day reads the one pass as of then and leaves
		// the kept summaries where they are.
		past := summary(e.run(t, "churn-risk", start.AddDate(0, 0, -30)))
		if past.Table != "churn_members" || past.Rebuilt {
			t.Errorf("past run: %+v", past)
		}
		if d := e.activityDiff(night); d != 0 {
			t.Errorf("after a past run: %d rows differ", d)
		}
		// The next night goes on from there.
		night = night.AddDate(0, 0, 1)
		e.clock.Set(night.Add(time.Minute))
		if got := summary(e.run(t, "churn-risk", night)); got.Rebuilt || got.Table != "member_activity" {
			t.Errorf("after a past run, the next night: %+v", got)
		}
		if d := e.activityDiff(night); d != 0 {
			t.Errorf("after a past run, the next night: %d rows differ", d)
		}
		if after := tableShape(t, e, "member_churn"); !slices.Equal(before, after) {
			t.Errorf("member_churn was\n%q\nand is\n%q", before, after)
		}
		if n := e.count(`SELECT COUNT(*) FROM member_churn`); n != int64(len(members)) {
			t.Errorf("member_churn holds %d rows, want %d", n, len(members))
		}
	})
}

// tableShape lists a table's columns (type, collation, NOT NULL,
// default), indexes, constraints and persistence on PostgreSQL (nil on
// SQLite): what a job that swaps in a new table must make again as the
// migrations made them.
func tableShape(t *testing.T, e *env, table string) []string {
	t.Helper()
	if e.store.Dialect != loyalty.Postgres {
		return nil
	}
	var defs []string
	if err := e.store.DB().Raw(`SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ?
		UNION ALL SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = CAST(? AS regclass)
		UNION ALL SELECT 'column ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
			|| COALESCE(' COLLATE ' || CAST(CAST(NULLIF(a.attcollation, 0) AS regcollation) AS text), '')
			|| CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END || COALESCE(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
			FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
			WHERE a.attrelid = CAST(? AS regclass) AND a.attnum > 0 AND NOT a.attisdropped
		UNION ALL SELECT 'persistence ' || CAST(relpersistence AS text) FROM pg_class WHERE oid = CAST(? AS regclass)
		ORDER BY 1`, table, table, table, table).Scan(&defs).Error; err != nil {
		t.Fatal(err)
	}
	if len(defs) == 0 {
		t.Fatalf("%s has no index", table)
	}
	return defs
}

// TestSegmentsKeepTableShape runs the segments job twice and finds
// member_segments with the indexes and constraints the migrations gave it,
// and its members once each.
func TestSegmentsKeepTableShape(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		now := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, now)
		for range 5 {
			e.buy(e.enrol(""), 5000)
		}
		before := tableShape(t, e, "member_segments")
		for range 2 {
			e.run(t, "segments", now)
		}
		if after := tableShape(t, e, "member_segments"); !slices.Equal(before, after) {
			t.Errorf("member_segments was\n%q\nand is\n%q", before, after)
		}
		if n := e.count(`SELECT COUNT(*) FROM member_segments WHERE segment_code LIKE 'rfm%'`); n != 5 {
			t.Errorf("%d members in RFM segments, want 5", n)
		}
	})
}

// TestSegmentsStampWhenMembersEntered runs segments on two nights with one
// member's big purchase between them: after the second run a membership
// that held keeps the first run's stamp and one that moved has the
// second's, the run ends where a run from an empty table ends, and the
// segment list dates every segment by the latest run.
func TestSegmentsStampWhenMembersEntered(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		first := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, first.Add(-time.Hour))
		var members []string
		for i := range 10 {
			m := e.enrol("")
			members = append(members, m)
			e.buyAt(m, int64(1000*(i+1)), first.AddDate(0, 0, -2*i-1))
		}
		type row struct {
			MemberID, SegmentCode string
			ComputedAt            time.Time
		}
		rows := func() map[string]row {
			t.Helper()
			var rs []row
			if err := e.store.DB().Raw(`SELECT member_id, segment_code, computed_at FROM member_segments`).Scan(&rs).Error; err != nil {
				t.Fatal(err)
			}
			out := map[string]row{}
			for _, r := range rs {
				out[r.MemberID+" "+r.SegmentCode] = r
			}
			return out
		}
		e.clock.Set(first.Add(time.Minute))
		e.run(t, "segments", first)
		before := rows()
		if len(before) != len(members) {
			t.Fatalf("%d memberships after the first night, want %d: %v", len(before), len(members), before)
		}
		// The member with the oldest, smallest purchase buys big today.
		second := first.AddDate(0, 0, 1)
		e.clock.Set(second.Add(-time.Hour))
		e.buyAt(members[len(members)-1], 50000, second.Add(-2*time.Hour))
		e.clock.Set(second.Add(time.Minute))
		e.run(t, "segments", second)
		after := rows()
		kept, moved := 0, 0
		for k, r := range after {
			if b, ok := before[k]; ok {
				kept++
				if !r.ComputedAt.Equal(b.ComputedAt) {
					t.Errorf("%s held its segment but its stamp moved (%s, then %s)", k, b.ComputedAt, r.ComputedAt)
				}
				continue
			}
			moved++
			if !r.ComputedAt.Equal(second.Add(time.Minute)) {
				t.Errorf("%s entered its segment on the second night but is stamped %s", k, r.ComputedAt)
			}
		}
		if kept == 0 || moved == 0 || len(after) != len(members) {
			t.Errorf("second night kept %d and moved %d of %d memberships, want some of each: %v", kept, moved, len(after), after)
		}
		// The same night from an empty table.
		if err := e.store.DB().Exec(`DELETE FROM member_segments`).Error; err != nil {
			t.Fatal(err)
		}
		e.run(t, "segments", second)
		fresh := rows()
		if len(fresh) != len(after) {
			t.Errorf("from empty %d memberships, night after night %d", len(fresh), len(after))
		}
		for k := range after {
			if _, ok := fresh[k]; !ok {
				t.Errorf("%s only night after night; from empty %v", k, fresh)
			}
		}
		list, err := e.runner.SegmentList(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list {
			if s.ComputedAt == nil || !s.ComputedAt.Equal(second.Add(time.Minute)) {
				t.Errorf("segment %s computed at %v, want the latest run's %s", s.Code, s.ComputedAt, second.Add(time.Minute))
			}
		}
	})
}

// TestLoyalSegmentFollowsHistory runs segments night after night while
// purchases arrive (on time, backdated into the window, a category bought
// again and one leaving the window), and once for a past day after later
// purchases: after every run the loyal segment is what the members' lines
// say as of the run, whether a member's categories were counted from the
// kept latest purchase per category or, past the as-of, from its lines.
func TestLoyalSegmentFollowsHistory(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		start := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, start.AddDate(0, 0, -1))
		const weeks, minWeeks, minCats = 4, 3, 4
		e.program(loyalty.ProgramPatch{Segments: &loyalty.SegmentSettings{LoyalWindowWeeks: weeks, LoyalMinActiveWeeks: minWeeks,
			LoyalMinCategories: minCats}})
		var members []string
		for range 8 {
			members = append(members, e.enrol(""))
		}
		cat := func(i int) string { return fmt.Sprintf("c%d", i) }
		// Member i buys weekly for five weeks, in categories i%5 … i%5+i%4.
		for i, m := range members {
			for w := 0; w < 5; w++ {
				var cats []string
				for c := i % 5; c <= i%5+i%4; c++ {
					cats = append(cats, cat(c+w%2))
				}
				e.buyAt(m, 1000, start.AddDate(0, 0, -7*w-1).Add(-time.Duration(i)*time.Hour), cats...)
			}
		}
		// want is the loyal segment by the definition, from every line.
		want := func(asOf time.Time) []string {
			t.Helper()
			rows, err := e.store.DB().Raw(`SELECT p.member_id, p.occurred_at, i.category FROM purchases p
				JOIN purchase_items i ON i.purchase_id = p.id WHERE i.category <> ''`).Rows()
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			active, cats := map[string]map[int]bool{}, map[string]map[string]bool{}
			from := asOf.AddDate(0, 0, -7*weeks)
			for rows.Next() {
				var m, c string
				var at time.Time
				if err := rows.Scan(&m, &at, &c); err != nil {
					t.Fatal(err)
				}
				if !at.After(from) || at.After(asOf) {
					continue
				}
				if active[m] == nil {
					active[m], cats[m] = map[int]bool{}, map[string]bool{}
				}
				active[m][int(asOf.Sub(at)/(7*24*time.Hour))] = true
				cats[m][c] = true
			}
			var out []string
			for m := range active {
				if len(active[m]) >= minWeeks && len(cats[m]) >= minCats {
					out = append(out, m)
				}
			}
			slices.Sort(out)
			return out
		}
		got := func() []string {
			t.Helper()
			var out []string
			if err := e.store.DB().Raw(`SELECT member_id FROM member_segments WHERE segment_code = 'loyal' ORDER BY member_id`).
				Scan(&out).Error; err != nil {
				t.Fatal(err)
			}
			return out
		}
		night := start
		e.clock.Set(night.Add(time.Minute))
		e.run(t, "segments", night)
		if g, w := got(), want(night); !slices.Equal(g, w) || len(w) == 0 || len(w) == len(members) {
			t.Fatalf("first night: loyal %v, want %v", g, w)
		}
		for n := 1; n <= 6; n++ {
			e.clock.Set(night.AddDate(0, 0, 1).Add(-2 * time.Hour))
			m := members[n]
			switch n % 3 {
			case 0: // today, in a new category
				e.buyAt(m, 500, e.clock.Now().Add(-time.Hour), cat(20+n))
			case 1: // a receipt from three weeks back, in new categories
				e.buyAt(m, 500, night.AddDate(0, 0, -20), cat(30+n), cat(40+n))
			case 2: // a category it has, bought again in the window
				e.buyAt(m, 500, night.AddDate(0, 0, -2), cat(n%5))
			}
			night = night.AddDate(0, 0, 1)
			e.clock.Set(night.Add(time.Minute))
			e.run(t, "segments", night)
			if g, w := got(), want(night); !slices.Equal(g, w) {
				t.Fatalf("night %d: loyal %v, want %v", n, g, w)
			}
		}
		// A run for three days back, after the purchases since: counted
		// from the lines for the members who bought after it.
		past := night.AddDate(0, 0, -3)
		e.run(t, "segments", past)
		if g, w := got(), want(past); !slices.Equal(g, w) {
			t.Fatalf("as of %s: loyal %v, want %v", past, g, w)
		}
	})
}

// TestActivityWritesOnlyChanges: bringing the members' summaries forward
// sums again every member touched since the last run, but writes only the
// summaries that changed. A member who bought before the run's as-of has
// its row rewritten; one whose only new purchase is dated after the as-of
// (a run for yesterday, the receipt written today) is summed again and
// left as it stood, as is a member nobody touched. On PostgreSQL a row
// left alone keeps its xmin (deleting and inserting every touched row gave
// each a new one); on both, the summaries equal the one pass.
func TestActivityWritesOnlyChanges(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		start := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, start.AddDate(0, 0, -1))
		a, b, c := e.enrol(""), e.enrol(""), e.enrol("")
		for d := 90; d > 0; d -= 15 {
			for _, m := range []string{a, b, c} {
				e.buyAt(m, int64(1000+d), start.AddDate(0, 0, -d))
			}
		}
		e.clock.Set(start)
		e.run(t, "churn-risk", start)
		xmin := func(m string) string {
			t.Helper()
			if dialect != loyalty.Postgres {
				return ""
			}
			var x string
			if err := e.store.DB().Raw(`SELECT xmin::text FROM member_activity WHERE member_id = ?`, m).Row().Scan(&x); err != nil {
				t.Fatal(err)
			}
			return x
		}
		before := map[string]string{a: xmin(a), b: xmin(b), c: xmin(c)}

		night := start.AddDate(0, 0, 1)
		e.clock.Set(night.AddDate(0, 0, 1))
		e.buyAt(a, 2500, night.Add(-time.Hour))
		e.buyAt(b, 2600, night.Add(time.Hour))
		var sum jobs.ChurnSummary
		if err := json.Unmarshal(e.run(t, "churn-risk", night).Summary, &sum); err != nil || sum.Summaries == nil {
			t.Fatalf("summary: %v", err)
		}
		if sum.Summaries.Rebuilt || sum.Summaries.Members != 2 {
			t.Errorf("summed again %+v, want the two members who bought", *sum.Summaries)
		}
		if d := e.activityDiff(night); d != 0 {
			t.Fatalf("%d rows differ from the one pass over every purchase", d)
		}
		if dialect != loyalty.Postgres {
			return
		}
		if xmin(a) == before[a] {
			t.Errorf("the member who bought before the as-of: its summary was not written")
		}
		if xmin(b) != before[b] || xmin(c) != before[c] {
			t.Errorf("summaries that did not change were written again: xmin %s → %s, %s → %s", before[b], xmin(b), before[c], xmin(c))
		}
	})
}
