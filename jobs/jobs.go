// Package jobs runs the engine's periodic computations. A job is a plain
// function of its as-of time that returns a summary; the runner records
// every run in the database, and decides nothing about when.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/rewards"
)

// Func is one job: it computes as of asOf and returns a summary.
type Func func(ctx context.Context, asOf time.Time) (any, error)

// Job is a registered job.
type Job struct {
	Name     string
	Schedule string // cron expression, for the scheduler
	Run      Func
}

// Runner runs jobs and records their runs.
type Runner struct {
	svc  *loyalty.Service
	jobs map[string]Job
	// EventRetention is how long the purge-events job keeps events
	// (LOYALTY_EVENTS_RETENTION_DAYS; at least loyalty.MinEventRetention).
	EventRetention time.Duration
}

// NewRunner returns a runner with the engine's jobs.
func NewRunner(svc *loyalty.Service, rw *rewards.Service) *Runner {
	r := &Runner{svc: svc, jobs: map[string]Job{}, EventRetention: loyalty.DefaultEventRetention}
	r.Register(Job{Name: "expire-points", Schedule: "15 0 * * *", Run: func(ctx context.Context, asOf time.Time) (any, error) {
		return svc.ExpirePoints(ctx, asOf)
	}})
	r.Register(Job{Name: "tier-review", Schedule: "30 0 * * *", Run: func(ctx context.Context, asOf time.Time) (any, error) {
		return svc.ReviewTiers(ctx, asOf)
	}})
	r.Register(Job{Name: "birthday-gifts", Schedule: "5 * * * *", Run: func(ctx context.Context, asOf time.Time) (any, error) {
		return rw.BirthdayGifts(ctx, asOf)
	}})
	r.Register(Job{Name: "personal-offers", Schedule: "0 3 * * *", Run: func(ctx context.Context, asOf time.Time) (any, error) {
		return svc.GivePersonalOffers(ctx, asOf)
	}})
	r.Register(Job{Name: "redemption-rate", Schedule: "50 0 * * *", Run: func(ctx context.Context, asOf time.Time) (any, error) {
		return r.SnapshotRedemptionRate(ctx, asOf)
	}})
	r.Register(Job{Name: "segments", Schedule: "0 2 * * *", Run: func(ctx context.Context, asOf time.Time) (any, error) {
		return r.Segments(ctx, asOf)
	}})
	r.Register(Job{Name: "churn-risk", Schedule: "30 2 * * *", Run: func(ctx context.Context, asOf time.Time) (any, error) {
		return r.ChurnRisk(ctx, asOf)
	}})
	r.Register(Job{Name: "purge-idempotency-keys", Schedule: "45 0 * * *", Run: func(ctx context.Context, asOf time.Time) (any, error) {
		n, err := svc.PurgeIdempotencyKeys(ctx, 7*24*time.Hour)
		return map[string]int64{"deleted": n}, err
	}})
	r.Register(Job{Name: "purge-events", Schedule: "55 0 * * *", Run: func(ctx context.Context, asOf time.Time) (any, error) {
		n, err := svc.PurgeEvents(ctx, asOf, r.EventRetention)
		return map[string]int64{"deleted": n}, err
	}})
	return r
}

// Register adds or replaces a job.
func (r *Runner) Register(j Job) { r.jobs[j.Name] = j }

// Jobs lists the registered jobs by name.
func (r *Runner) Jobs() []Job {
	out := make([]Job, 0, len(r.jobs))
	for _, j := range r.jobs {
		out = append(out, j)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out
}

// Run statuses.
const (
	Running   = "running"
	Succeeded = "succeeded"
	Failed    = "failed"
)

type runRow struct {
	ID           string `gorm:"primaryKey"`
	Name         string
	AsOf         time.Time
	Status       string
	StartedAt    time.Time
	FinishedAt   *time.Time
	Summary      string
	Error        string
	TriggeredBy  string
	ScheduledFor *time.Time
}

func (runRow) TableName() string { return "job_runs" }

// RunRecord is one run of a job (§12).
type RunRecord struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	AsOf        time.Time       `json:"as_of"`
	Status      string          `json:"status"`
	StartedAt   time.Time       `json:"started_at"`
	FinishedAt  *time.Time      `json:"finished_at"`
	Summary     json.RawMessage `json:"summary"`
	Error       *string         `json:"error"`
	TriggeredBy string          `json:"triggered_by"`
}

func recordFromRow(r runRow) RunRecord {
	rec := RunRecord{ID: r.ID, Name: r.Name, AsOf: r.AsOf.UTC(), Status: r.Status, StartedAt: r.StartedAt.UTC(),
		Summary: json.RawMessage(r.Summary), TriggeredBy: r.TriggeredBy}
	if r.FinishedAt != nil {
		f := r.FinishedAt.UTC()
		rec.FinishedAt = &f
	}
	if len(rec.Summary) == 0 {
		rec.Summary = json.RawMessage("{}")
	}
	if r.Error != "" {
		e := r.Error
		rec.Error = &e
	}
	return rec
}

// Run runs job name as of asOf and records it. A job that fails is recorded
// as failed with its error; the error is returned only when the run could
// not even be recorded. A business error in the request (an as_of the job
// refuses) is returned as is, unrecorded.
//
// Every job refuses an as_of ahead of the engine's clock by more than
// loyalty.ClockSkew, before anything is recorded, and runs as of now for
// one within it (loyalty.Service.AsOf). What a past as_of may still do is
// each job's own rule, enforced by the job and listed in docs/JOBS.md:
//
//   - expire-points expires the lots that had expired by as_of, each dated
//     when it expired; a later run expires the rest, none twice.
//   - tier-review reviews the members unprotected at as_of on their spend up
//     to as_of, but never moves one below the tier its spend justifies when
//     the run happens, nor one whose tier changed after as_of.
//   - birthday-gifts gives the gifts of as_of's day only while their claim
//     window is still open, and only to members enrolled by that day.
//   - personal-offers gives an offer only when it is still live now and no
//     offer of the same template the member holds overlaps it.
//   - redemption-rate recounts as_of's month and the one before, but never
//     replaces a month's snapshot with one counted over less of the month.
//   - segments and churn-risk recompute as of as_of from the history up to
//     it; the result replaces the one in place until the next run.
//   - purge-idempotency-keys does not depend on as_of.
func (r *Runner) Run(ctx context.Context, name string, asOf time.Time, by string) (RunRecord, error) {
	rec, _, err := r.run(ctx, name, asOf, by, nil)
	return rec, err
}

// RunScheduled runs job name for its scheduled slot, as of the slot, unless
// a run for that slot exists: the slot is claimed by inserting its run
// record under a unique key, so with several engines on one database each
// scheduled run happens once. ran is false when another claimed it.
func (r *Runner) RunScheduled(ctx context.Context, name string, slot time.Time) (rec RunRecord, ran bool, err error) {
	slot = loyalty.TS(slot)
	return r.run(ctx, name, slot, "schedule", &slot)
}

// aliases are other names the contract uses for a job: §10 of the API
// contract calls the birthday job "birthday-gift", §12 "birthday-gifts".
var aliases = map[string]string{"birthday-gift": "birthday-gifts"}

func (r *Runner) run(ctx context.Context, name string, asOf time.Time, by string, slot *time.Time) (RunRecord, bool, error) {
	if canonical, ok := aliases[name]; ok {
		name = canonical
	}
	j, ok := r.jobs[name]
	if !ok {
		return RunRecord{}, false, loyalty.Errorf(loyalty.NotFound, "not_found", "no job is named %q", name)
	}
	asOf, err := r.svc.AsOf(asOf)
	if err != nil {
		return RunRecord{}, false, err
	}
	db := r.svc.Store().DB().WithContext(ctx)
	row := runRow{ID: loyalty.NewID(), Name: name, AsOf: asOf, Status: Running, StartedAt: r.svc.Now(),
		Summary: "{}", TriggeredBy: by, ScheduledFor: slot}
	res := db.Clauses(clause.OnConflict{DoNothing: true}).Create(&row)
	if res.Error != nil {
		return RunRecord{}, false, fmt.Errorf("run %s: %w", name, res.Error)
	}
	if res.RowsAffected == 0 {
		return RunRecord{}, false, nil
	}
	// First the page ranges of the BRIN indexes the jobs' searches by
	// time go through, so that none of them reads a table whole.
	var summary any
	err = r.svc.Store().SummarizeRanges(ctx)
	if err == nil {
		summary, err = j.Run(ctx, asOf)
	}
	var le *loyalty.Error
	if errors.As(err, &le) && le.Code == loyalty.Invalid && slot == nil {
		db.Delete(&row)
		return RunRecord{}, false, err
	}
	fin := r.svc.Now()
	row.FinishedAt = &fin
	row.Status = Succeeded
	if err != nil {
		row.Status, row.Error = Failed, err.Error()
	} else if b, merr := json.Marshal(summary); merr == nil {
		row.Summary = string(b)
	}
	// Record the outcome even if the caller has gone away meanwhile; a run
	// asked for by someone, not the schedule, goes in the audit trail with it.
	uerr := r.svc.Store().DB().WithContext(context.WithoutCancel(ctx)).Transaction(func(tx *gorm.DB) error {
		if err := tx.Save(&row).Error; err != nil || slot != nil {
			return err
		}
		return r.svc.Audit(ctx, tx, "job.run", "job", name,
			map[string]any{"run_id": row.ID, "as_of": row.AsOf, "status": row.Status})
	})
	if uerr != nil {
		return recordFromRow(row), true, fmt.Errorf("run %s: %w", name, uerr)
	}
	return recordFromRow(row), true, nil
}

// Status is a job with its latest run.
type Status struct {
	Name     string     `json:"name"`
	Schedule string     `json:"schedule"`
	LastRun  *RunRecord `json:"last_run"`
}

// List returns every job with its latest run.
func (r *Runner) List(ctx context.Context) ([]Status, error) {
	out := []Status{}
	err := loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		for _, j := range r.Jobs() {
			st := Status{Name: j.Name, Schedule: j.Schedule}
			var row runRow
			res := db.Where("name = ?", j.Name).Order("started_at DESC, id DESC").Limit(1).Find(&row)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected == 1 {
				rec := recordFromRow(row)
				st.LastRun = &rec
			}
			out = append(out, st)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}
