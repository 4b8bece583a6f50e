package loyalty_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// fakeCgroups is a parent cgroup with a child jobs, as directories with
// their cgroup.procs (regular files here: what a move writes stays to be
// read).
func fakeCgroups(t *testing.T) (parent, jobs string) {
	t.Helper()
	parent = t.TempDir()
	jobs = filepath.Join(parent, "jobs")
	if err := os.Mkdir(jobs, 0o755); err != nil {
		t.Fatal(err)
	}
	emptyProcs(t, parent, jobs)
	return parent, jobs
}

// emptyProcs empties (or makes) the cgroup.procs of each of dirs.
func emptyProcs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func procs(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestJobsCgroup: with JobsCgroup, a derived job's backend is in the jobs'
// cgroup while its statements run and back in the parent before its commit;
// a job that locks balances (WriteSet's) is there for a bound at most; and
// where the cgroup cannot be used, the store says why and the jobs run as
// before.
func TestJobsCgroup(t *testing.T) {
	ctx := context.Background()
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		parent, jobs := fakeCgroups(t)
		store := loyaltytest.MustOpenWith(t, dialect, loyalty.JobsCgroup(jobs))
		svc := loyalty.NewService(store)
		dir, err := store.JobsCgroup()
		if dir != jobs {
			t.Fatalf("JobsCgroup() = %q, want %q", dir, jobs)
		}
		if dialect == loyalty.SQLite {
			if err == nil || !strings.Contains(err.Error(), "SQLite") {
				t.Fatalf("on SQLite: %v, want the reason nothing is moved", err)
			}
			if err := loyalty.WriteDerived(ctx, svc, func(*loyalty.Tx) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if procs(t, jobs) != "" || procs(t, parent) != "" {
				t.Fatal("a SQLite job moved a process")
			}
			return
		}
		if err != nil {
			// The server is not on this host (LOYALTY_TEST_POSTGRES_URL).
			t.Skipf("the jobs' cgroup is not usable here: %v", err)
		}
		var pid int
		var during, parentDuring string
		if err := loyalty.WriteDerived(ctx, svc, func(tx *loyalty.Tx) error {
			during, parentDuring = procs(t, jobs), procs(t, parent)
			return tx.DB.Raw("SELECT pg_backend_pid()").Scan(&pid).Error
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.JobsCgroup(); err != nil {
			t.Skipf("the backend is not a process of this host: %v", err)
		}
		if want := strconv.Itoa(pid); during != want || parentDuring != "" {
			t.Fatalf("during the job: jobs' cgroup %q, parent %q; want the backend %s in the jobs'", during, parentDuring, want)
		}
		if got := procs(t, parent); got != strconv.Itoa(pid) {
			t.Fatalf("after the job the parent holds %q, want the backend %d moved back", got, pid)
		}

		// A job that locks balances (WriteSet's) runs in the jobs' cgroup
		// until the bound, then in the parent; and one that ends sooner
		// is moved back before its commit, as a derived job is.
		emptyProcs(t, parent, jobs)
		restore := loyalty.SetLockingJobIdle(time.Millisecond)
		var first, moved string
		if err := loyalty.WriteSet(ctx, svc, func(tx *loyalty.Tx) error {
			first = procs(t, jobs)
			// Wait for the bound's move (no deadline of ours: the test's
			// own timeout stands for one that never comes).
			for moved == "" {
				if err := tx.DB.Exec("SELECT pg_sleep(0.005)").Error; err != nil {
					return err
				}
				moved = procs(t, parent)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		restore()
		if want := strconv.Itoa(pid); first != want || moved != want {
			t.Fatalf("a locking job: first in the jobs' cgroup %q, then in the parent %q; want the backend %s in both", first, moved, want)
		}
		if got := procs(t, parent); got != strconv.Itoa(pid) {
			t.Fatalf("after a locking job the parent holds %q, want its backend %d written once", got, pid)
		}
		emptyProcs(t, parent, jobs)
		if err := loyalty.WriteSet(ctx, svc, func(tx *loyalty.Tx) error {
			during, parentDuring = procs(t, jobs), procs(t, parent)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if want := strconv.Itoa(pid); during != want || parentDuring != "" || procs(t, parent) != want {
			t.Fatalf("a short locking job: jobs' cgroup %q and parent %q during it, parent %q after; want the backend %s in the jobs', then the parent",
				during, parentDuring, procs(t, parent), want)
		}

		// The move back fails: the job's session ends, uncommitted, and
		// later jobs run where they are.
		if err := loyalty.WriteDerived(ctx, svc, func(tx *loyalty.Tx) error {
			if err := tx.DB.Exec("CREATE TABLE cgroup_probe (id int)").Error; err != nil {
				return err
			}
			return os.Remove(filepath.Join(parent, "cgroup.procs"))
		}); err == nil || !strings.Contains(err.Error(), "session was ended") {
			t.Fatalf("a job whose backend could not move back: %v, want its session ended", err)
		}
		if _, err := store.JobsCgroup(); err == nil {
			t.Fatal("JobsCgroup() reports no error after a failed move back")
		}
		var probes int64
		if err := store.DB().Raw("SELECT COUNT(*) FROM pg_tables WHERE tablename = 'cgroup_probe' AND schemaname = current_schema()").Scan(&probes).Error; err != nil {
			t.Fatal(err)
		}
		if probes != 0 {
			t.Fatal("the job whose backend could not move back committed")
		}
		if err := loyalty.WriteDerived(ctx, svc, func(*loyalty.Tx) error { return nil }); err != nil {
			t.Fatalf("the job after: %v", err)
		}

		// Not a cgroup: the reason, and the job runs where it is.
		other := loyaltytest.MustOpenWith(t, dialect, loyalty.JobsCgroup(filepath.Join(parent, "none")))
		if _, err := other.JobsCgroup(); err == nil || !strings.Contains(err.Error(), "not a cgroup") {
			t.Fatalf("JobsCgroup() error %v, want not a cgroup", err)
		}
		if err := loyalty.WriteDerived(ctx, loyalty.NewService(other), func(*loyalty.Tx) error { return nil }); err != nil {
			t.Fatal(err)
		}
	})
}
