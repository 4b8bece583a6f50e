package jobs_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// crashEnv is newEnv on PostgreSQL; on SQLite, which writes every table to
// its one file and so empties none in a crash, the test is skipped.
func crashEnv(t *testing.T, dialect string, now time.Time) *env {
	t.Helper()
	if dialect != loyalty.Postgres {
		t.Skip("SQLite writes every table to its one file: no table is emptied by a crash")
	}
	return newEnv(t, dialect, now)
}

// shoppers enrols n members, member i buying every step(i) days over the
// span days before now, amount(i, d) on the day d days before it.
func (e *env) shoppers(n, span int, now time.Time, step func(i int) int, amount func(i, d int) int64) {
	for i := range n {
		m := e.enrol("")
		for d := span; d > 0; d -= step(i) {
			e.buyAt(m, amount(i, d), now.AddDate(0, 0, -d))
		}
	}
}

// lines is the one text column of the rows of query, in its order.
func (e *env) lines(t *testing.T, query string) []string {
	t.Helper()
	var rows []string
	if err := e.store.DB().Raw(query).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestChurnScoresComeBackAfterACrash: member_churn is unlogged on
// PostgreSQL, which empties it, and its mark in unlogged_marks, when it
// recovers from a crash (TRUNCATE does the same here). RecoverDerived then
// scores every member again in a run of its own, recorded as a recovery,
// to the same rows a run as of that minute wrote; called again, it runs
// nothing. A table whose job never ran is only marked, and a job scheduled
// "off" is left to whoever runs it.
func TestChurnScoresComeBackAfterACrash(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		now := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
		e := crashEnv(t, dialect, now.AddDate(0, 0, -1))
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		crash := func() {
			t.Helper()
			if err := e.store.DB().Exec(`TRUNCATE member_churn, unlogged_marks`).Error; err != nil {
				t.Fatal(err)
			}
		}
		recoveries := func() int64 {
			return e.count(`SELECT COUNT(*) FROM job_runs WHERE name = 'churn-risk' AND triggered_by = 'recovery'`)
		}
		marked := func() int64 { return e.count(`SELECT COUNT(*) FROM unlogged_marks WHERE name = 'member_churn'`) }

		// Nothing scored yet: the table is only marked.
		crash()
		if err := e.runner.RecoverDerived(e.ctx, log); err != nil {
			t.Fatal(err)
		}
		if marked() != 1 || recoveries() != 0 {
			t.Fatalf("before any run: marked %d, %d recoveries", marked(), recoveries())
		}

		e.shoppers(8, 300, now, func(i int) int { return 7 * (i + 1) }, func(i, d int) int64 { return int64(1500 + 100*i + d) })
		e.clock.Set(now)
		e.run(t, "churn-risk", now)
		scores := func() []string {
			return e.lines(t, `SELECT concat_ws(' ', member_id, churn_risk, p_alive, expected_purchases_90d, purchase_days,
					purchases, days_since_last_purchase, computed_at, clv, repeat_spend, expected_transactions, simple_clv)
				FROM member_churn ORDER BY member_id`)
		}
		want := scores()
		if len(want) != 8 {
			t.Fatalf("%d members scored, want 8", len(want))
		}

		// Scheduled off: left alone.
		off := jobs.NewRunner(e.svc, e.rw)
		for _, j := range off.Jobs() {
			if j.Name == "churn-risk" {
				j.Schedule = "off"
				off.Register(j)
			}
		}
		crash()
		if err := off.RecoverDerived(e.ctx, log); err != nil {
			t.Fatal(err)
		}
		if n := len(scores()); n != 0 || marked() != 0 || recoveries() != 0 {
			t.Fatalf("scheduled off: %d rows, marked %d, %d recoveries", n, marked(), recoveries())
		}

		if err := e.runner.RecoverDerived(e.ctx, log); err != nil {
			t.Fatal(err)
		}
		if got := scores(); !slices.Equal(got, want) {
			t.Errorf("after the recovery member_churn holds\n%q\nwant\n%q", got, want)
		}
		if marked() != 1 || recoveries() != 1 {
			t.Errorf("after the recovery: marked %d, %d recoveries", marked(), recoveries())
		}
		if err := e.runner.RecoverDerived(e.ctx, log); err != nil {
			t.Fatal(err)
		}
		if n := recoveries(); n != 1 {
			t.Errorf("called again: %d recoveries, want 1", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM pg_class WHERE oid = CAST('member_churn' AS regclass) AND relpersistence = 'u'`); n != 1 {
			t.Error("member_churn is not unlogged")
		}
	})
}

// TestSegmentsComeBackAfterACrash: member_segments is unlogged on
// PostgreSQL too. Emptied with its mark, RecoverDerived runs the segments
// again, as a recovery, to the memberships a run as of that minute gave;
// called again, it runs nothing.
func TestSegmentsComeBackAfterACrash(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		now := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
		e := crashEnv(t, dialect, now.AddDate(0, 0, -1))
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		e.shoppers(12, 200, now, func(i int) int { return 5 * (i + 1) }, func(i, d int) int64 { return int64(1200 + 150*i + d) })
		e.clock.Set(now)
		e.run(t, "segments", now)
		memberships := func() []string {
			return e.lines(t, `SELECT member_id || ' ' || segment_code FROM member_segments ORDER BY 1`)
		}
		recoveries := func() int64 {
			return e.count(`SELECT COUNT(*) FROM job_runs WHERE name = 'segments' AND triggered_by = 'recovery'`)
		}
		want := memberships()
		if len(want) != 12 {
			t.Fatalf("%d memberships, want 12", len(want))
		}
		if err := e.store.DB().Exec(`TRUNCATE member_segments, unlogged_marks`).Error; err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := e.runner.RecoverDerived(e.ctx, log); err != nil {
				t.Fatal(err)
			}
		}
		if got := memberships(); !slices.Equal(got, want) {
			t.Errorf("after the recovery member_segments holds\n%q\nwant\n%q", got, want)
		}
		if n := recoveries(); n != 1 {
			t.Errorf("%d recoveries, want 1", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM pg_class WHERE oid = CAST('member_segments' AS regclass) AND relpersistence = 'u'`); n != 1 {
			t.Error("member_segments is not unlogged")
		}
	})
}

// TestJobStateRebuiltAfterACrash: the segments' and churn-risk runs' own
// state (the members' purchase summaries and latest purchase by category,
// each with the row that says as of when) is unlogged on PostgreSQL, which
// empties it when it recovers from a crash (TRUNCATE does the same here).
// The next runs build it from the whole history, as a first run does, and
// give the memberships and scores a run on the kept state gives.
func TestJobStateRebuiltAfterACrash(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		night := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
		e := crashEnv(t, dialect, night.AddDate(0, 0, -1))
		cats := []string{"a", "b", "c", "d", "e", "f"}
		var members []string
		for i := range 10 {
			m := e.enrol("")
			members = append(members, m)
			for d := 200; d > 0; d -= 3 + i {
				e.buyAt(m, int64(900+50*i+d), night.AddDate(0, 0, -d), cats[:1+(d+i)%len(cats)]...)
			}
		}
		e.clock.Set(night)
		e.program(loyalty.ProgramPatch{Segments: &loyalty.SegmentSettings{LoyalWindowWeeks: 4, LoyalMinActiveWeeks: 3,
			LoyalMinCategories: 4}})
		state := func() []string {
			return e.lines(t, `SELECT member_id || ' ' || segment_code FROM member_segments
				UNION ALL SELECT concat_ws(' ', member_id, churn_risk, p_alive, clv, simple_clv) FROM member_churn
				ORDER BY 1`)
		}
		e.run(t, "segments", night)
		e.run(t, "churn-risk", night)
		// The next night, on the state the first one kept.
		next := night.AddDate(0, 0, 1)
		e.clock.Set(next.Add(-2 * time.Hour))
		e.buyAt(members[0], 4000, next.Add(-3*time.Hour), cats...)
		e.buyAt(members[5], 700, next.Add(-3*time.Hour), "a")
		e.clock.Set(next)
		e.run(t, "segments", next)
		e.run(t, "churn-risk", next)
		want := state()
		if !slices.ContainsFunc(want, func(r string) bool { return strings.HasSuffix(r, " loyal") }) || len(want) < 20 {
			t.Fatalf("too little to compare: %q", want)
		}

		if err := e.store.DB().Exec(`TRUNCATE member_activity, activity_state, member_category_marks, category_state`).Error; err != nil {
			t.Fatal(err)
		}
		e.run(t, "segments", next)
		var s jobs.ChurnSummary
		if err := json.Unmarshal(e.run(t, "churn-risk", next).Summary, &s); err != nil {
			t.Fatal(err)
		}
		if s.Summaries == nil || s.Summaries.Rebuilt {
			t.Errorf("churn-risk after segments rebuilt the summaries: %+v (want them brought forward)", s.Summaries)
		}
		if got := state(); !slices.Equal(got, want) {
			t.Errorf("after the crash\n%q\nwant\n%q", got, want)
		}
		if n := e.count(`SELECT COUNT(*) FROM pg_class WHERE relpersistence = 'u' AND oid IN (CAST('member_activity' AS regclass),
				CAST('activity_state' AS regclass), CAST('member_category_marks' AS regclass), CAST('category_state' AS regclass))`); n != 4 {
			t.Errorf("%d of the four tables are unlogged", n)
		}
	})
}

// TestChurnScoresInChunks: the distinct summaries' scores sent a few to a
// statement score every member as they do sent all at once.
func TestChurnScoresInChunks(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		now := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, now.AddDate(0, 0, -1))
		e.shoppers(9, 300, now, func(i int) int { return 5 * (i + 1) }, func(i, d int) int64 { return int64(1500 + 100*i + d) })
		e.clock.Set(now)
		scores := func() []string {
			return e.lines(t, `SELECT concat_ws(' ', member_id, churn_risk, p_alive, expected_purchases_90d, purchase_days,
					purchases, days_since_last_purchase, clv, repeat_spend, expected_transactions, simple_clv)
				FROM member_churn ORDER BY member_id`)
		}
		e.run(t, "churn-risk", now)
		whole := scores()
		if n := e.count(`SELECT COUNT(DISTINCT churn_risk || p_alive || expected_purchases_90d) FROM member_churn`); len(whole) != 9 || n < 4 {
			t.Fatalf("%d members scored, %d distinct scores: want 9 and several", len(whole), n)
		}
		defer jobs.SetScoreChunk(2)()
		e.run(t, "churn-risk", now)
		if chunked := scores(); !slices.Equal(chunked, whole) {
			t.Errorf("scores sent two to a statement:\n%v\nall at once:\n%v", chunked, whole)
		}
	})
}
