package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// ScheduleFromEnv overrides each job's default schedule with
// LOYALTY_SCHEDULE_<NAME> (upper case, dashes as underscores), a cron
// expression of five fields or a descriptor such as "@hourly"; "off"
// leaves the job unscheduled.
func (r *Runner) ScheduleFromEnv() {
	if v := strings.TrimSpace(os.Getenv("LOYALTY_EVENTS_RETENTION_DAYS")); v != "" {
		if days, err := strconv.Atoi(v); err == nil && days > 0 {
			r.EventRetention = max(time.Duration(days)*24*time.Hour, loyalty.MinEventRetention)
		}
	}
	for name, j := range r.jobs {
		env := "LOYALTY_SCHEDULE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if v := strings.TrimSpace(os.Getenv(env)); v != "" {
			j.Schedule = v
			r.jobs[name] = j
		}
	}
}

// Scheduler runs the jobs on their schedules inside `loyalty serve`.
type Scheduler struct {
	cron *cron.Cron
}

// StartScheduler schedules every job whose schedule is not "off". Each
// tick claims its slot (the minute it fired for) in the database, so with
// several engines on one database the run happens once; in one process a
// run still going when the next tick comes is skipped, and a panic is
// recovered and logged.
func (r *Runner) StartScheduler(ctx context.Context, log *slog.Logger) (*Scheduler, error) {
	logger := cron.PrintfLogger(slogPrintf{log})
	c := cron.New(cron.WithLocation(time.UTC), cron.WithChain(cron.Recover(logger), cron.SkipIfStillRunning(logger)))
	for _, j := range r.Jobs() {
		if j.Schedule == "off" {
			continue
		}
		name := j.Name
		if _, err := c.AddFunc(j.Schedule, func() { _, _, _ = r.Tick(ctx, name, log) }); err != nil {
			return nil, fmt.Errorf("schedule %s %q: %w", name, j.Schedule, err)
		}
	}
	// The derived tables PostgreSQL empties when it recovers from a
	// crash, filled again as soon as the scheduler starts and within a
	// minute of a crash of the database alone (their jobs' own schedules
	// are daily).
	if r.svc.Store().Dialect == loyalty.Postgres {
		var busy atomic.Bool
		refill := func() {
			if !busy.CompareAndSwap(false, true) {
				return
			}
			defer busy.Store(false)
			if err := r.RecoverDerived(ctx, log); err != nil {
				log.Error("derived tables' recovery", "error", err.Error())
			}
		}
		if _, err := c.AddFunc("@every 1m", refill); err != nil {
			return nil, err
		}
		go refill()
	}
	c.Start()
	return &Scheduler{cron: c}, nil
}

// RecoverDerived runs again, as of now, the job of every derived table
// (derivedTables) that PostgreSQL emptied when it recovered from a crash:
// an unlogged table (replaceDerived) loses its rows so, and its row of
// unlogged_marks (unlogged too, one a table, written when the table was
// made) with them. A table whose job has never filled it is only marked.
// The run claims its minute as a scheduled run does, so with several
// engines on one database it happens once, and the mark is written once
// it succeeded: a run that failed is tried again on the next call. Only
// the jobs the scheduler runs are recovered so (a job scheduled "off" is
// run from outside the engine).
func (r *Runner) RecoverDerived(ctx context.Context, log *slog.Logger) error {
	if r.svc.Store().Dialect != loyalty.Postgres {
		return nil
	}
	db := r.svc.Store().DB().WithContext(ctx)
	for _, t := range derivedTables {
		if j, ok := r.jobs[t.job]; !ok || j.Schedule == "off" {
			continue
		}
		var state struct{ Marked, Filled bool }
		if err := db.Raw(`SELECT EXISTS (SELECT 1 FROM unlogged_marks WHERE name = ?) AS marked, EXISTS (`+t.filled+`) AS filled`,
			t.name).Scan(&state).Error; err != nil {
			return err
		}
		if state.Marked {
			continue
		}
		if state.Filled {
			slot := r.svc.Now().Truncate(time.Minute)
			rec, ran, err := r.run(ctx, t.job, slot, "recovery", &slot)
			switch {
			case err != nil:
				return err
			case !ran:
				// Its minute claimed by another run (another engine's
				// recovery, which marks the table): the next call finds
				// the mark or tries again.
				continue
			case rec.Status != Succeeded:
				log.Error("derived table emptied by a crash: its job failed", "table", t.name, "job", t.job, "run", rec.ID)
				continue
			}
			log.Info("derived table emptied by a crash filled again", "table", t.name, "job", t.job, "run", rec.ID)
		}
		if err := db.Exec(`INSERT INTO unlogged_marks (name) VALUES (?) ON CONFLICT (name) DO NOTHING`, t.name).Error; err != nil {
			return err
		}
	}
	return nil
}

// Tick runs job name for the current minute, as the scheduler does when
// the job's schedule fires, and logs the outcome. The minute is read from
// the engine's clock, the one every as_of is checked against, so a
// scheduled run is never as of the future.
func (r *Runner) Tick(ctx context.Context, name string, log *slog.Logger) (RunRecord, bool, error) {
	slot := r.svc.Now().Truncate(time.Minute)
	rec, ran, err := r.RunScheduled(ctx, name, slot)
	switch {
	case err != nil:
		log.Error("scheduled job", "job", name, "slot", slot, "error", err.Error())
	case !ran:
		log.Info("scheduled job claimed by another engine", "job", name, "slot", slot)
	default:
		log.Info("scheduled job", "job", name, "slot", slot, "status", rec.Status)
	}
	return rec, ran, err
}

// Stop stops scheduling and waits for running jobs to finish.
func (s *Scheduler) Stop() { <-s.cron.Stop().Done() }

type slogPrintf struct{ log *slog.Logger }

func (l slogPrintf) Printf(format string, args ...any) { l.log.Info(fmt.Sprintf(format, args...)) }
