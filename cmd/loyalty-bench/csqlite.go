package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The C SQLite reference is the bare posting transaction in the SQLite
// library most programs link (the C one, through Python's sqlite3 module):
// WAL, synchronous NORMAL, and the engine's shape, that is clients threads
// sharing one writer connection, each transaction BEGIN IMMEDIATE, UPDATE
// the balance, INSERT a ledger row, COMMIT. Python's own cost per statement
// is counted in it, so the reference is, if anything, low.
const cSQLiteScript = `
import json, random, sqlite3, sys, threading, time
path, members, threads, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
for q in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=10000",
          "CREATE TABLE bench_balance (id INTEGER PRIMARY KEY, points INTEGER NOT NULL)",
          "CREATE TABLE bench_ledger (id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL, points INTEGER NOT NULL, created_at TEXT NOT NULL)",
          "CREATE INDEX bench_ledger_member ON bench_ledger (member_id)"):
    con.execute(q)
con.execute("BEGIN IMMEDIATE")
con.executemany("INSERT INTO bench_balance (id, points) VALUES (?, 0)", ((i,) for i in range(1, members + 1)))
con.execute("COMMIT")
lock = threading.Lock()
lat = [[] for _ in range(threads)]
errs = [0] * threads
start = time.perf_counter()
deadline = start + secs
def work(i):
    rng, out = random.Random(i), lat[i]
    while True:
        t0 = time.perf_counter()
        if t0 >= deadline:
            return
        mid, pts = rng.randint(1, members), rng.randint(1, 1000)
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with lock:
            try:
                con.execute("BEGIN IMMEDIATE")
                con.execute("UPDATE bench_balance SET points = points + ? WHERE id = ?", (pts, mid))
                con.execute("INSERT INTO bench_ledger (member_id, points, created_at) VALUES (?, ?, ?)", (mid, pts, at))
                con.execute("COMMIT")
            except sqlite3.Error:
                errs[i] += 1
                if con.in_transaction:
                    con.execute("ROLLBACK")
                continue
        out.append(time.perf_counter() - t0)
ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
elapsed = time.perf_counter() - start
xs = sorted(x for l in lat for x in l)
def pct(q):
    if not xs:
        return 0
    r = max(1, -(-len(xs) * q // 100))
    return xs[min(len(xs), r) - 1]
bad = con.execute(sys.argv[5]).fetchone()[0]
print(json.dumps({"ok": len(xs), "elapsed": elapsed, "errors": sum(errs), "bad": bad, "version": sqlite3.sqlite_version,
                  "p50": pct(50), "p95": pct(95), "p99": pct(99), "max": xs[-1] if xs else 0}))
`

// cSQLiteResult is what the script printed.
type cSQLiteResult struct {
	OK      int64   `json:"ok"`
	Elapsed float64 `json:"elapsed"` // seconds
	Errors  int64   `json:"errors"`
	Bad     int64   `json:"bad"` // balances that differ from their ledger
	Version string  `json:"version"`
	P50     float64 `json:"p50"` // seconds
	P95     float64 `json:"p95"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
}

func (r cSQLiteResult) throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed
}

func secs(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }

// row is the reference as a line of the table.
func (r cSQLiteResult) row(label string, clients int) row {
	errs := statusCounts{}
	errs.add("failed", r.Errors)
	return row{db: label, workload: "ref: bare C SQLite posting (" + r.Version + ")", clients: clients, tput: r.throughput(),
		lat: r.OK > 0, p50: secs(r.P50), p95: secs(r.P95), p99: secs(r.P99), max: secs(r.Max), errors: errs.String(), rssKB: -1}
}

// parseCSQLite reads the script's output: the last line that is JSON.
func parseCSQLite(out string) (cSQLiteResult, error) {
	var r cSQLiteResult
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); strings.HasPrefix(l, "{") {
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				return r, fmt.Errorf("the C SQLite reference: %w", err)
			}
			if r.Bad != 0 {
				return r, fmt.Errorf("the C SQLite reference: %d balances differ from their ledger", r.Bad)
			}
			return r, nil
		}
	}
	return r, errors.New("the C SQLite reference printed no result")
}

// runCSQLite runs the reference on a new file at path with python3.
func runCSQLite(ctx context.Context, python, path string, members, clients int, dur time.Duration) (cSQLiteResult, error) {
	cmd := exec.CommandContext(ctx, python, "-c", cSQLiteScript, path, strconv.Itoa(members), strconv.Itoa(clients),
		strconv.FormatFloat(dur.Seconds(), 'f', 3, 64), refBooksSQL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return cSQLiteResult{}, fmt.Errorf("the C SQLite reference (%s): %w: %s", python, err, firstLine(string(out)))
	}
	return parseCSQLite(string(out))
}
