package loyalty

// The nightly jobs' database backends at the lowest CPU priority.
//
// On a machine whose cores the database shares between the tills and a
// nightly job, a job that keeps a core busy leaves the tills' backends one
// core and a wait behind it at every wake-up: on 2 cores at a million
// members the tills' p50 rose from 4–5 ms to 6–8 ms beside the churn
// scoring or the segments, and their p99 to 2.2–3.2× (docs/BENCH.md, 7
// December 2026). Nothing in the backend's own work is to blame: a
// PL/pgSQL loop that only takes a core cost them as much. With that loop's
// backend in the kernel's idle scheduling class, the tills' p50 did not
// move (4.3 → 4.4 ms) and their p99 rose 1.10×. With the segments', churn
// scoring's and offers' backends in the cgroup below, the tills beside
// those jobs read 0.84–1.71× against 2.87–6.07× without, and over whole
// nights 1.43× and 1.82× against 2.49×. With every job's backend in it
// (the balance-locking batches for lockingJobIdle at most), the tills' p50
// beside any job rose 0.2–0.4 ms against 1.8 ms without, and their p99
// over whole nights read 1.66× and 2.01× against 2.09×. What is left of
// their tail is the WAL's flush, which a till's commit waits for whatever
// the job's priority.
//
// A nice value cannot do this. Every PostgreSQL process starts a session
// of its own (setsid), and with autogroups (kernel.sched_autogroup_enabled,
// on by default) each session is a scheduling group of its own, weighted
// alike whatever the nice of its processes; a backend's SCHED_IDLE is
// honoured only against processes of its own group. A cgroup is not: a
// process in a cgroup other than the root leaves its autogroup, and a
// cgroup whose cpu.idle is 1 gives way to every other at once.
//
// So the operator makes such a cgroup (cgroup v2, or v1's cpu hierarchy)
// as a child of the one the server's processes run in, for example
//
//	mkdir /sys/fs/cgroup/cpu/loyalty-jobs && echo 1 > /sys/fs/cgroup/cpu/loyalty-jobs/cpu.idle
//
// and names it in LOYALTY_JOBS_CGROUP. The engine then moves the backend
// of each job's transaction into it for the job's statements, and back
// into the parent before its COMMIT. The segments, the churn scoring and
// the personal offers write only their own tables and hold no lock a till
// waits for: they stay there to the end. The batches that lock members'
// balances (the expiry's, the tier review's and the birthday gifts') and
// the redemption rate stay there for lockingJobIdle at most: a till that
// waits for such a lock must not wait long for a backend that gives way
// to everything else, so a batch the tills keep off the cores longer
// finishes at their priority. It needs the server on the engine's host (a
// local or Unix-socket connection, and /proc showing the backend as a
// postgres process) and the right to write the cgroups' cgroup.procs
// (root, or the server's own user where the cgroups are delegated to it).
// Where any of it is missing, the jobs run as before and the store says
// why (JobsCgroup). The price is the jobs' time while the tills are busy:
// such a backend runs only on a core nothing else wants, and beside 200
// purchases a second the personal offers took up to twice as long.
// So it is off unless set.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"
)

// JobsCgroup asks Open to run the backends of the nightly jobs that write
// only derived tables in the cgroup dir (see above), on PostgreSQL when
// the server runs on this host. "" leaves them alone.
func JobsCgroup(dir string) OpenOption {
	return func(o *openOptions) { o.jobsCgroup = dir }
}

// jobCgroup moves a job's backend into dir and back into its parent.
type jobCgroup struct {
	dir string
	// err is why the backends are not moved (nil while they are); set at
	// Open, or by the first move that failed.
	mu  sync.Mutex
	err error
}

// newJobCgroup checks dir for a store whose server is at host (pgx's
// ConnConfig.Host): nil when dir is "".
func newJobCgroup(dir, host string) *jobCgroup {
	if dir == "" {
		return nil
	}
	j := &jobCgroup{dir: filepath.Clean(dir)}
	switch {
	case !localHost(host):
		j.err = fmt.Errorf("the database at %q is not on this host", host)
	case !isFile(filepath.Join(j.dir, "cgroup.procs")):
		j.err = fmt.Errorf("%s is not a cgroup (no cgroup.procs)", j.dir)
	case !isFile(filepath.Join(filepath.Dir(j.dir), "cgroup.procs")):
		j.err = fmt.Errorf("the parent of %s is not a cgroup (no cgroup.procs)", j.dir)
	}
	return j
}

// sqliteJobCgroup is newJobCgroup for a SQLite store, whose jobs write in
// the engine's own process: nothing to move.
func sqliteJobCgroup(dir string) *jobCgroup {
	if dir == "" {
		return nil
	}
	return &jobCgroup{dir: filepath.Clean(dir), err: errors.New("on SQLite the jobs write in the engine's own process, not in a database backend")}
}

// localHost reports whether a pgx host is this machine: a Unix socket's
// directory, or a loopback name or address.
func localHost(host string) bool {
	return strings.HasPrefix(host, "/") || host == "localhost" || host == "::1" || strings.HasPrefix(host, "127.")
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir()
}

// status is the cgroup and why its backends are not moved (nil: they are).
func (j *jobCgroup) status() (string, error) {
	if j == nil {
		return "", nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.dir, j.err
}

// lower moves the backend of tx into the cgroup and returns what moves it
// back. Where it cannot, tx runs where it is and the reason is kept (a
// failure of one move stops the next, so that a job does not pay for
// failing each time). Where the move back fails, the backend ends its
// session (and tx with it, uncommitted) rather than go back to the pool
// at the lowest priority, where a write that locks balances could take
// it; the returned error says so.
//
// A bound above zero is for a transaction that locks rows a till may wait
// for (a batch of the expiry, a chunk of the tier review or the gifts):
// its backend goes back to the parent once it has been in the cgroup that
// long, and runs the rest of the batch at the tills' own priority. A
// batch that takes its usual few milliseconds gives way to the tills
// throughout; one that the tills keep off the cores for longer (the
// cgroup's backends run only on a core nothing else wants) cannot hold a
// till waiting for one of its locks much longer than the bound.
func (j *jobCgroup) lower(tx *gorm.DB, bound time.Duration) func() error {
	if _, err := j.status(); j == nil || err != nil {
		return func() error { return nil }
	}
	var pid int
	if err := tx.Raw("SELECT pg_backend_pid()").Scan(&pid).Error; err != nil {
		return func() error { return nil }
	}
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil || !strings.HasPrefix(string(comm), "postgres") {
		j.fail(fmt.Errorf("backend %d is not a postgres process of this host", pid))
		return func() error { return nil }
	}
	if err := writePID(j.dir, pid); err != nil {
		j.fail(err)
		return func() error { return nil }
	}
	// The move back runs once, at the bound or before the commit,
	// whichever comes first; the second waits for the first to finish.
	var once sync.Once
	var backErr error
	back := func() { once.Do(func() { backErr = writePID(filepath.Dir(j.dir), pid) }) }
	var timer *time.Timer
	if bound > 0 {
		timer = time.AfterFunc(bound, back)
	}
	return func() error {
		if timer != nil {
			timer.Stop()
		}
		back()
		if backErr == nil {
			return nil
		}
		j.fail(backErr)
		tx.Exec("SELECT pg_terminate_backend(pg_backend_pid())")
		return fmt.Errorf("move the job's backend out of %s: %w (its session was ended)", j.dir, backErr)
	}
}

func (j *jobCgroup) fail(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err == nil {
		j.err = err
	}
}

// writePID moves process pid into the cgroup dir.
func writePID(dir string, pid int) error {
	f, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(strconv.Itoa(pid) + "\n")
	return errors.Join(werr, f.Close())
}

// JobsCgroup reports the cgroup the jobs' backends are moved into (""
// when none was asked for) and why they are not (nil when they are).
func (s *Store) JobsCgroup() (string, error) { return s.jobs.status() }
