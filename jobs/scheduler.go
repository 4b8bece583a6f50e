package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
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
	c.Start()
	return &Scheduler{cron: c}, nil
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
