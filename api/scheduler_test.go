package api

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/rewards"
)

// scOpenTwice opens two stores, as two engine processes would, on one
// fresh, migrated database of the dialect: the same SQLite file, or the
// same PostgreSQL schema.
func scOpenTwice(t *testing.T, dialect string) (*loyalty.Store, *loyalty.Store) {
	t.Helper()
	ctx := context.Background()
	var dsn string
	switch dialect {
	case loyalty.SQLite:
		dsn = "sqlite://" + filepath.Join(t.TempDir(), "shared.db")
	case loyalty.Postgres:
		base := os.Getenv("LOYALTY_TEST_POSTGRES_URL")
		if base == "" {
			base = loyaltytest.DefaultPostgresURL
		}
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		schema := "t_sched_" + hex.EncodeToString(b)
		admin, err := sql.Open("pgx", base)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
			admin.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			admin.Close()
		})
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		dsn = u.String()
	default:
		t.Fatalf("unknown dialect %q", dialect)
	}
	open := func() *loyalty.Store {
		t.Helper()
		s, err := loyalty.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	first := open()
	if err := first.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return first, open()
}

// scRunner is one engine's job runner over store.
func scRunner(store *loyalty.Store) *jobs.Runner {
	svc := loyalty.NewService(store)
	return jobs.NewRunner(svc, rewards.NewService(svc))
}

// scCount reads one integer from the database.
func scCount(t testing.TB, store *loyalty.Store, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := store.DB().Raw(query, args...).Scan(&n).Error; err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestSchedulerTwoEnginesRunASlotOnce races two engines, on separate
// connections to one database, for the same scheduled slot from many
// goroutines: exactly one run happens and is recorded.
func TestSchedulerTwoEnginesRunASlotOnce(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		s1, s2 := scOpenTwice(t, dialect)
		engines := []*jobs.Runner{scRunner(s1), scRunner(s2)}
		ctx := context.Background()
		race := func(slot time.Time) (ran int64, recs []jobs.RunRecord) {
			t.Helper()
			const perEngine = 8
			var wg sync.WaitGroup
			var mu sync.Mutex
			start := make(chan struct{})
			for i := 0; i < 2*perEngine; i++ {
				r := engines[i%2]
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					rec, ok, err := r.RunScheduled(ctx, "segments", slot)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						t.Errorf("RunScheduled: %v", err)
						return
					}
					if ok {
						ran++
						recs = append(recs, rec)
					}
				}()
			}
			close(start)
			wg.Wait()
			return ran, recs
		}
		slot := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
		ran, recs := race(slot)
		if ran != 1 {
			t.Fatalf("%d goroutines ran the slot, want exactly 1", ran)
		}
		if rec := recs[0]; rec.Status != jobs.Succeeded || !rec.AsOf.Equal(slot) || rec.TriggeredBy != "schedule" {
			t.Errorf("run %+v", rec)
		}
		for _, s := range []*loyalty.Store{s1, s2} {
			if n := scCount(t, s, "SELECT COUNT(*) FROM job_runs WHERE name = 'segments' AND scheduled_for = ?", slot); n != 1 {
				t.Errorf("job_runs holds %d rows for the slot, want 1", n)
			}
		}
		if n := scCount(t, s1, "SELECT COUNT(*) FROM job_runs"); n != 1 {
			t.Errorf("job_runs holds %d rows, want 1", n)
		}
		// The slot is taken for good; the next slot runs once again.
		if _, ok, err := engines[1].RunScheduled(ctx, "segments", slot); err != nil || ok {
			t.Errorf("the same slot later: ran %v, err %v", ok, err)
		}
		next := slot.Add(24 * time.Hour)
		if ran, _ := race(next); ran != 1 {
			t.Errorf("%d goroutines ran the next slot, want exactly 1", ran)
		}
		if n := scCount(t, s2, "SELECT COUNT(*) FROM job_runs WHERE name = 'segments' AND scheduled_for IS NOT NULL"); n != 2 {
			t.Errorf("job_runs holds %d scheduled rows, want 2", n)
		}
		// Manual runs are never claimed away: two for the same as_of both run.
		for i := 0; i < 2; i++ {
			if rec, err := engines[i].Run(ctx, "segments", slot, "test"); err != nil || rec.Status != jobs.Succeeded {
				t.Errorf("manual run %d: %+v, %v", i, rec, err)
			}
		}
		if n := scCount(t, s1, "SELECT COUNT(*) FROM job_runs WHERE scheduled_for IS NULL"); n != 2 {
			t.Errorf("job_runs holds %d manual rows, want 2", n)
		}
	})
}

// TestSchedulerFailedJobIsRecorded registers a job that fails and runs it
// directly and through the API: the run is recorded as failed with its
// error, and GET /v1/jobs shows it.
func TestSchedulerFailedJobIsRecorded(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		runner := scRunner(e.store)
		calls := atomic.Int64{}
		runner.Register(jobs.Job{Name: "boom", Schedule: "off", Run: func(ctx context.Context, asOf time.Time) (any, error) {
			calls.Add(1)
			return nil, errors.New("boom")
		}})
		e.app = New(e.svc, Config{Auth: e.auth, Jobs: runner, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}, NewMetrics())
		ctx := context.Background()
		asOf := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
		rec, err := runner.Run(ctx, "boom", asOf, "test")
		if err != nil {
			t.Fatalf("Run returned %v: a failing job is recorded, not an error", err)
		}
		if rec.Status != jobs.Failed || rec.Error == nil || *rec.Error != "boom" || rec.FinishedAt == nil || !rec.AsOf.Equal(asOf) {
			t.Errorf("record %+v", rec)
		}
		var row struct {
			Status, Error string
			FinishedAt    *time.Time
		}
		if err := e.store.DB().Raw("SELECT status, error, finished_at FROM job_runs WHERE id = ?", rec.ID).Scan(&row).Error; err != nil {
			t.Fatal(err)
		}
		if row.Status != "failed" || row.Error != "boom" || row.FinishedAt == nil {
			t.Errorf("job_runs row %+v", row)
		}

		r := e.do("POST", "/v1/jobs/boom/run", e.marketer(), map[string]any{"as_of": "2026-02-02T00:00:00Z"}).must(t, 200).JSON(t)
		if r["status"] != "failed" || r["error"] != "boom" || r["name"] != "boom" || r["as_of"] != "2026-02-02T00:00:00Z" {
			t.Errorf("API run %v", r)
		}
		if calls.Load() != 2 {
			t.Errorf("job ran %d times, want 2", calls.Load())
		}
		e.do("POST", "/v1/jobs/nope/run", e.marketer(), nil).must(t, 404)
		e.do("POST", "/v1/jobs/boom/run", e.pos(), nil).must(t, 403)

		var l struct {
			Items []struct {
				Name     string `json:"name"`
				Schedule string `json:"schedule"`
				LastRun  *struct {
					Status string  `json:"status"`
					Error  *string `json:"error"`
					AsOf   string  `json:"as_of"`
				} `json:"last_run"`
			} `json:"items"`
		}
		e.do("GET", "/v1/jobs", e.marketer(), nil).must(t, 200).Decode(t, &l)
		for _, it := range l.Items {
			if it.Name == "boom" {
				if it.LastRun == nil || it.LastRun.Status != "failed" || it.LastRun.Error == nil || *it.LastRun.Error != "boom" ||
					it.LastRun.AsOf != "2026-02-02T00:00:00Z" {
					t.Errorf("boom in GET /v1/jobs: %+v", it)
				}
				return
			}
		}
		t.Errorf("GET /v1/jobs does not list boom: %+v", l.Items)
	})
}

// TestSchedulerJobList checks GET /v1/jobs: every job of §12 with its
// schedule, last_run null until it runs, then that run.
func TestSchedulerJobList(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		type item struct {
			Name     string `json:"name"`
			Schedule string `json:"schedule"`
			LastRun  *struct {
				Name        string         `json:"name"`
				AsOf        string         `json:"as_of"`
				Status      string         `json:"status"`
				StartedAt   string         `json:"started_at"`
				FinishedAt  *string        `json:"finished_at"`
				Summary     map[string]any `json:"summary"`
				TriggeredBy string         `json:"triggered_by"`
			} `json:"last_run"`
		}
		list := func() map[string]item {
			t.Helper()
			var l struct {
				Items []item `json:"items"`
			}
			e.do("GET", "/v1/jobs", e.marketer(), nil).must(t, 200).Decode(t, &l)
			out := map[string]item{}
			for _, it := range l.Items {
				out[it.Name] = it
			}
			return out
		}
		contract := []string{"expire-points", "tier-review", "birthday-gifts", "redemption-rate", "segments", "churn-risk", "personal-offers"}
		before := list()
		for _, name := range contract {
			it, ok := before[name]
			if !ok {
				t.Errorf("GET /v1/jobs does not list %s", name)
				continue
			}
			if it.Schedule == "" {
				t.Errorf("%s has no schedule", name)
			}
			if it.LastRun != nil {
				t.Errorf("%s has a last run before any: %+v", name, it.LastRun)
			}
		}
		e.do("POST", "/v1/jobs/redemption-rate/run", e.marketer(), map[string]any{"as_of": "2026-02-01T00:00:00Z"}).must(t, 200)
		e.clock.Advance(time.Minute)
		e.do("POST", "/v1/jobs/redemption-rate/run", e.admin(), nil).must(t, 200)
		after := list()
		lr := after["redemption-rate"].LastRun
		if lr == nil || lr.Name != "redemption-rate" || lr.Status != "succeeded" || lr.AsOf != "2026-03-01T12:01:00Z" ||
			lr.FinishedAt == nil || lr.TriggeredBy != "admin:op-1" || lr.Summary == nil {
			t.Errorf("redemption-rate last_run %+v, want the admin's run as of now", lr)
		}
		for _, name := range contract {
			if name != "redemption-rate" && after[name].LastRun != nil {
				t.Errorf("%s has a last run: %+v", name, after[name].LastRun)
			}
		}
		e.do("GET", "/v1/jobs", e.pos(), nil).must(t, 403)
	})
}

// TestSchedulerRunsOnSchedule wires a job on an every-second schedule into
// the real scheduler and waits (bounded) for its first recorded run. It
// checks the wiring, not timing.
func TestSchedulerRunsOnSchedule(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		store := loyaltytest.MustOpen(t, dialect)
		runner := scRunner(store)
		for _, j := range runner.Jobs() {
			j.Schedule = "off"
			runner.Register(j)
		}
		var calls atomic.Int64
		runner.Register(jobs.Job{Name: "tick", Schedule: "@every 1s", Run: func(ctx context.Context, asOf time.Time) (any, error) {
			calls.Add(1)
			return map[string]int64{"n": 1}, nil
		}})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		sched, err := runner.StartScheduler(ctx, slog.New(slog.NewJSONHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for scCount(t, store, "SELECT COUNT(*) FROM job_runs WHERE name = 'tick' AND status = 'succeeded'") == 0 {
			if time.Now().After(deadline) {
				sched.Stop()
				t.Fatalf("no recorded run of an every-second job within 5 s (ran %d times)", calls.Load())
			}
			time.Sleep(50 * time.Millisecond)
		}
		sched.Stop()
		var rows []struct {
			AsOf         time.Time
			ScheduledFor *time.Time
			TriggeredBy  string
		}
		if err := store.DB().Raw("SELECT as_of, scheduled_for, triggered_by FROM job_runs WHERE name = 'tick'").Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		if int64(len(rows)) != calls.Load() {
			t.Errorf("%d runs recorded, job ran %d times", len(rows), calls.Load())
		}
		for _, r := range rows {
			if r.TriggeredBy != "schedule" || r.ScheduledFor == nil || !r.ScheduledFor.Equal(r.AsOf) ||
				!r.AsOf.Equal(r.AsOf.Truncate(time.Minute)) {
				t.Errorf("scheduled run %+v", r)
			}
		}
		if n := scCount(t, store, "SELECT COUNT(*) FROM job_runs WHERE name <> 'tick'"); n != 0 {
			t.Errorf("%d runs of jobs whose schedule is off", n)
		}
	})
}
