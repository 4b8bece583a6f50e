package jobs_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// asOfRefused fails unless err is the 422 of an as_of the runner refuses.
func asOfRefused(t *testing.T, what string, err error) {
	t.Helper()
	var le *loyalty.Error
	if !errors.As(err, &le) || le.Code != loyalty.Invalid || len(le.Fields) != 1 || le.Fields[0].Field != "as_of" {
		t.Errorf("%s: error %v, want a validation error naming as_of", what, err)
	}
}

// TestRunnerRefusesFutureAsOf runs every registered job as of instants
// ahead of the engine's clock: beyond the clock skew each is refused before
// anything is recorded or written; within it the run is as of now.
func TestRunnerRefusesFutureAsOf(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		now := at(t, "2026-03-01T12:00:00Z")
		e := newEnv(t, dialect, now)
		e.program(loyalty.ProgramPatch{BirthdayGift: &loyalty.BirthdayGift{Enabled: true, BonusPoints: 50, ClaimDays: 30}})
		e.enrol("1990-03-01")
		names := []string{"birthday-gift"} // the alias of §10 is a job name too
		for _, j := range e.runner.Jobs() {
			names = append(names, j.Name)
		}
		if len(names) < 9 {
			t.Fatalf("jobs %v", names)
		}
		for _, name := range names {
			for _, ahead := range []time.Duration{loyalty.ClockSkew + time.Second, time.Hour, 2 * 365 * 24 * time.Hour} {
				_, err := e.runner.Run(e.ctx, name, now.Add(ahead), "test")
				asOfRefused(t, name+" "+ahead.String()+" ahead", err)
			}
		}
		if n := e.count("SELECT COUNT(*) FROM job_runs"); n != 0 {
			t.Errorf("%d runs recorded for refused as_of", n)
		}
		if n := e.count("SELECT COUNT(*) FROM member_gifts") + e.count("SELECT COUNT(*) FROM ledger_entries"); n != 0 {
			t.Errorf("refused runs wrote %d gifts and entries", n)
		}
		// A caller's clock a little ahead of the engine's is taken as now.
		for _, j := range e.runner.Jobs() {
			rec := e.run(t, j.Name, now.Add(loyalty.ClockSkew))
			if !rec.AsOf.Equal(now) {
				t.Errorf("%s as of now + skew ran as of %s, want now %s", j.Name, rec.AsOf, now)
			}
		}
	})
}

// TestSchedulerSlotFollowsEngineClock fires the scheduler's tick with the
// engine's clock far behind the wall clock: the slot comes from the
// engine's clock, so a scheduled run is never ahead of it.
func TestSchedulerSlotFollowsEngineClock(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		now := time.Date(2001, 3, 1, 12, 0, 30, 0, time.UTC)
		e := newEnv(t, dialect, now)
		e.program(loyalty.ProgramPatch{BirthdayGift: &loyalty.BirthdayGift{Enabled: true, BonusPoints: 50, ClaimDays: 30}})
		m := e.enrol("1990-03-01")
		log := slog.New(slog.NewJSONHandler(io.Discard, nil))
		rec, ran, err := e.runner.Tick(context.Background(), "birthday-gifts", log)
		if err != nil || !ran {
			t.Fatalf("tick: ran %v, %v", ran, err)
		}
		slot := time.Date(2001, 3, 1, 12, 0, 0, 0, time.UTC)
		if rec.Status != jobs.Succeeded || !rec.AsOf.Equal(slot) || rec.TriggeredBy != "schedule" {
			t.Errorf("scheduled run %+v, want as of the engine's minute %s", rec, slot)
		}
		if n := e.count("SELECT COUNT(*) FROM member_gifts WHERE member_id = ? AND year = 2001", m); n != 1 {
			t.Errorf("%d gifts of 2001, want the one of the engine's day", n)
		}
	})
}

// TestBirthdayGiftsAsOf: a future as_of is refused and changes nothing; a
// past one grants the gift of that day only while its claim window is
// still open, and never for a member who was not yet enrolled.
func TestBirthdayGiftsAsOf(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		now := at(t, "2026-06-20T12:00:00Z")
		e := newEnv(t, dialect, at(t, "2020-01-01T00:00:00Z"))
		e.program(loyalty.ProgramPatch{BirthdayGift: &loyalty.BirthdayGift{Enabled: true, BonusPoints: 50, ClaimDays: 30}})
		june10 := e.enrol("1990-06-10")
		may10 := e.enrol("1990-05-10")
		june15 := e.enrol("1990-06-15")
		e.clock.Set(now)
		late := e.enrol("1990-06-01") // enrolled after the birthday of this year

		// This year's gift, granted on the day.
		e.run(t, "birthday-gifts", at(t, "2026-06-10T08:00:00Z"))
		gifts := func(member string) map[int]string {
			t.Helper()
			var rows []struct {
				Year   int
				Status string
			}
			if err := e.store.DB().Raw("SELECT year, status FROM member_gifts WHERE member_id = ?", member).Scan(&rows).Error; err != nil {
				t.Fatal(err)
			}
			out := map[int]string{}
			for _, r := range rows {
				out[r.Year] = r.Status
			}
			return out
		}
		if g := gifts(june10); len(g) != 1 || g[2026] != "available" {
			t.Fatalf("gifts %v, want 2026 available", g)
		}
		balance := func(m string) int64 {
			t.Helper()
			b, err := e.svc.Balance(e.ctx, admin, m)
			if err != nil {
				t.Fatal(err)
			}
			return b.Available + b.Pending
		}

		t.Run("TwoYearsAhead", func(t *testing.T) {
			_, err := e.runner.Run(e.ctx, "birthday-gifts", at(t, "2028-07-10T08:00:00Z"), "test")
			asOfRefused(t, "two years ahead", err)
			if g := gifts(june10); len(g) != 1 || g[2026] != "available" {
				t.Errorf("gifts after a refused future run %v, want 2026 still available", g)
			}
			if _, err := e.rw.BirthdayGifts(e.ctx, at(t, "2028-06-10T08:00:00Z")); err == nil {
				t.Errorf("BirthdayGifts itself accepted an as_of two years ahead")
			}
			if g := gifts(june10); len(g) != 1 || g[2026] != "available" {
				t.Errorf("gifts %v, want 2026 still available", g)
			}
		})

		t.Run("PastWithinClaimWindow", func(t *testing.T) {
			// 10 May + 30 days runs to 9 June: closed by 20 June.
			sum := e.run(t, "birthday-gifts", at(t, "2026-05-10T08:00:00Z"))
			if g := gifts(may10); len(g) != 0 {
				t.Errorf("a gift whose claim window closed was granted: %v (%s)", g, sum.Summary)
			}
			if b := balance(may10); b != 0 {
				t.Errorf("balance %d, want 0: no points for a gift that cannot be claimed", b)
			}
			// 1 June + 30 days is still open, but the member joined on 20 June.
			e.run(t, "birthday-gifts", at(t, "2026-06-01T08:00:00Z"))
			if g := gifts(late); len(g) != 0 {
				t.Errorf("a member enrolled after its birthday got that birthday's gift: %v", g)
			}
		})

		t.Run("ThreeYearsBack", func(t *testing.T) {
			e.run(t, "birthday-gifts", at(t, "2023-06-10T08:00:00Z"))
			if g := gifts(june10); len(g) != 1 || g[2026] != "available" {
				t.Errorf("gifts %v, want only 2026", g)
			}
			if b := balance(june10); b != 50 {
				t.Errorf("balance %d, want the 50 of 2026's gift only", b)
			}
		})

		t.Run("CatchUpWithinWindow", func(t *testing.T) {
			// The engine was down on the birthday: a run as of that day a few
			// days later still gives the gift, expiring 30 days after the day.
			m := june15
			e.clock.Set(at(t, "2026-06-21T12:00:00Z"))
			e.run(t, "birthday-gifts", at(t, "2026-06-15T08:00:00Z"))
			if g := gifts(m); len(g) != 1 || g[2026] != "available" {
				t.Errorf("gifts %v, want 2026 available", g)
			}
			if b := balance(m); b != 50 {
				t.Errorf("balance %d, want 50", b)
			}
		})
	})
}
