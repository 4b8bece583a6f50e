package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// postgresBinDir finds the PostgreSQL server binaries (initdb, pg_ctl,
// pg_dump). Without them the test is skipped, unless PostgreSQL is
// required (LOYALTY_TEST_REQUIRE_POSTGRES=1).
func postgresBinDir(t *testing.T, tools ...string) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	if d := os.Getenv("LOYALTY_TEST_POSTGRES_BIN"); d != "" {
		dirs = append([]string{d}, dirs...)
	}
next:
	for _, d := range dirs {
		for _, tool := range tools {
			if _, err := os.Stat(filepath.Join(d, tool)); err != nil {
				continue next
			}
		}
		return d
	}
	msg := fmt.Sprintf("PostgreSQL binaries %v not found under /usr/lib/postgresql/*/bin (or LOYALTY_TEST_POSTGRES_BIN)", tools)
	if os.Getenv("LOYALTY_TEST_REQUIRE_POSTGRES") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func pgMajor(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// pgCluster is a throwaway PostgreSQL cluster of the test's own, on a free
// port, which the test may stop and start at will.
type pgCluster struct {
	t    *testing.T
	bin  string
	dir  string
	port int
}

// asPostgres runs a PostgreSQL tool as the postgres user when the test runs
// as root (initdb and postgres refuse root).
func asPostgres(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

func startThrowawayCluster(t *testing.T) *pgCluster {
	t.Helper()
	bin := postgresBinDir(t, "initdb", "pg_ctl", "postgres")
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			t.Fatalf("running as root needs a postgres user to run the cluster: %v", err)
		}
		if _, err := exec.LookPath("runuser"); err != nil {
			t.Fatalf("running as root needs runuser: %v", err)
		}
	}
	dir, err := os.MkdirTemp("", "loyalty-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres:", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	c := &pgCluster{t: t, bin: bin, dir: dir, port: freePort(t)}
	t.Cleanup(func() {
		_ = asPostgres(filepath.Join(bin, "pg_ctl"), "-D", filepath.Join(dir, "data"), "-m", "immediate", "-w", "stop").Run()
		os.RemoveAll(dir)
	})
	if out, err := asPostgres(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.start()
	return c
}

func (c *pgCluster) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

func (c *pgCluster) start() {
	c.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", c.port, c.dir)
	out, err := asPostgres(filepath.Join(c.bin, "pg_ctl"), "-D", filepath.Join(c.dir, "data"), "-l", filepath.Join(c.dir, "log"),
		"-w", "-t", "60", "-o", opts, "start").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		c.t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
}

// stop shuts the cluster down: mode fast ends the sessions cleanly,
// immediate kills them as a crash of the server would.
func (c *pgCluster) stop(mode string) {
	c.t.Helper()
	out, err := asPostgres(filepath.Join(c.bin, "pg_ctl"), "-D", filepath.Join(c.dir, "data"), "-m", mode, "-w", "-t", "60", "stop").CombinedOutput()
	if err != nil {
		c.t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// TestOutagePostgresAnswers503AndRecovers stops the engine's PostgreSQL
// under load and starts it again. While it is down, writes and /readyz
// answer 503 with a problem document and Retry-After, never a 500 or a
// body showing internals; once it is back the same engine process
// recovers by itself; afterwards nothing acknowledged is lost, every
// repeat replays its first answer and every ledger sums to its balance.
func TestOutagePostgresAnswers503AndRecovers(t *testing.T) {
	c := startThrowawayCluster(t)
	outages, requests, members, workers := 1, 300, 10, 6
	modes := []string{"immediate", "fast"}
	if fullRun() {
		outages, requests, members, workers = 4, 2000, 30, 12
	}
	e := newEngine(t, c.url())
	e.start()
	w := newWorkload(t, e)
	w.setup(members)

	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(workers, requests, nil)
	}()
	base := w.acked.Load()
	for k := 1; k <= outages; k++ {
		if !w.waitAcked(base+int64(k*requests/(outages+1)), done) {
			t.Fatalf("the load ended before outage %d", k)
		}
		before := w.unavailable.Load()
		mode := modes[(k-1)%len(modes)]
		c.stop(mode)
		t.Logf("outage %d: PostgreSQL stopped (-m %s) after %d acknowledged writes", k, mode, w.acked.Load())

		// /readyz says the engine is not ready.
		waitFor(t, "/readyz to answer 503", func() bool {
			st, _, _ := e.get("/readyz")
			return st == http.StatusServiceUnavailable
		})
		st, hdr, body, err := w.do(http.MethodGet, "/readyz", "", nil)
		if err != nil || st != http.StatusServiceUnavailable {
			t.Fatalf("/readyz during the outage: %d %v", st, err)
		}
		if msg := problemFault(hdr, body); msg != "" {
			t.Errorf("/readyz: %s", msg)
		}
		// A write and a read answer 503 problems too.
		st, hdr, body, err = w.do(http.MethodPost, "/v1/purchases", "outage-probe-"+randomHex(4), mustJSON(map[string]any{
			"member_id": w.members[0], "external_id": "PROBE-" + randomHex(4), "store_id": "store-1", "channel": "pos",
			"occurred_at": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), "currency": "USD", "total": 1000}))
		if err != nil || st != http.StatusServiceUnavailable {
			t.Errorf("POST /v1/purchases during the outage: %d %v %s", st, err, body)
		} else if msg := problemFault(hdr, body); msg != "" {
			t.Errorf("POST /v1/purchases: %s", msg)
		}
		st, hdr, body, err = w.do(http.MethodGet, "/v1/members/"+w.members[0]+"/balance", "", nil)
		if err != nil || st != http.StatusServiceUnavailable {
			t.Errorf("GET balance during the outage: %d %v %s", st, err, body)
		} else if msg := problemFault(hdr, body); msg != "" {
			t.Errorf("GET balance: %s", msg)
		}
		// Let the workers run into the outage before it ends.
		waitFor(t, "the workers to see 503s", func() bool { return w.unavailable.Load() >= before+int64(2*workers) })

		c.start()
		waitFor(t, "/readyz to answer 200 again without a restart", func() bool {
			st, _, _ := e.get("/readyz")
			return st == http.StatusOK
		})
		t.Logf("outage %d: PostgreSQL back; the engine is ready again (503 answers so far %d)", k, w.unavailable.Load())
	}
	<-done
	if e.starts != 1 {
		t.Fatalf("the engine was started %d times; it must recover without a restart", e.starts)
	}
	select {
	case <-e.exited:
		t.Fatal("the engine exited during the outage")
	default:
	}
	t.Logf("%d outage(s); %s; sample 503 body: %s", outages, w.stats(), firstOr(w.problems, "none"))
	if w.unavailable.Load() == 0 {
		t.Error("no write answered 503 during the outage")
	}

	w.verify()
	w.checkExactlyOnce(c.url())
	checkDB(t, c.url())
	logText, _ := os.ReadFile(e.logf.Name())
	if strings.Contains(string(logText), "panic") {
		t.Error("the engine log mentions a panic")
	}
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}

// waitFor polls cond until it holds; the deadline only keeps a broken run
// from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
