package jobs_test

import (
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestChurnScoresComeBackAfterACrash: member_churn is unlogged on
// PostgreSQL, which empties it, and its mark in unlogged_marks, when it
// recovers from a crash (TRUNCATE does the same here). RecoverDerived then
// scores every member again in a run of its own, recorded as a recovery,
// to the same rows a run as of that minute wrote; called again, it runs
// nothing. A table whose job never ran is only marked, and a job scheduled
// "off" is left to whoever runs it.
func TestChurnScoresComeBackAfterACrash(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		if dialect != loyalty.Postgres {
			t.Skip("SQLite writes every table to its one file: no table is emptied by a crash")
		}
		now := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, now.AddDate(0, 0, -1))
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

		for i := range 8 {
			m := e.enrol("")
			for d := 300; d > 0; d -= 7 * (i + 1) {
				e.buyAt(m, int64(1500+100*i+d), now.AddDate(0, 0, -d))
			}
		}
		e.clock.Set(now)
		e.run(t, "churn-risk", now)
		scores := func() []string {
			t.Helper()
			var rows []string
			if err := e.store.DB().Raw(`SELECT concat_ws(' ', member_id, churn_risk, p_alive, expected_purchases_90d, purchase_days,
					purchases, days_since_last_purchase, computed_at, clv, repeat_spend, expected_transactions, simple_clv)
				FROM member_churn ORDER BY member_id`).Scan(&rows).Error; err != nil {
				t.Fatal(err)
			}
			return rows
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
