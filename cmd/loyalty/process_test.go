package main

// Helpers for the tests that run the built engine as a separate process:
// build it once, start and SIGKILL it, open throwaway databases, drive
// load through the public API with Idempotency-Key and client retries, and
// check the ledger's invariants through the API and in the database.

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/loyalty-engine/loyalty/api"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// testSecret signs the tokens of every engine the tests start.
const testSecret = "crash-test-secret-0123456789abcdef0123456789"

// fullRun says whether to run the long versions (LOYALTY_TEST_FULL=1).
func fullRun() bool { return os.Getenv("LOYALTY_TEST_FULL") == "1" }

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// engineBinary builds cmd/loyalty once per test run, or returns the
// prebuilt binary LOYALTY_TEST_BINARY names.
func engineBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("LOYALTY_TEST_BINARY"); p != "" {
			binPath, binErr = filepath.Abs(p)
			return
		}
		binDir, binErr = os.MkdirTemp("", "loyalty-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "loyalty")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// engine is one `loyalty serve` process, restartable on the same address
// and database.
type engine struct {
	t      *testing.T
	bin    string
	dbURL  string
	addr   string
	logf   *os.File
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
	// env is added to every command's environment (such as the NATS sink's).
	env []string
}

func newEngine(t *testing.T, dbURL string) *engine {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), "engine.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(dbURL, "postgres") && !strings.Contains(dbURL, "pool_min_conns") {
		// A serving engine keeps its whole pool open; two at once beside
		// the other packages' tests would take most of a default server's
		// 100 connections.
		sep := "?"
		if strings.Contains(dbURL, "?") {
			sep = "&"
		}
		dbURL += sep + "pool_min_conns=2"
	}
	e := &engine{t: t, bin: engineBinary(t), dbURL: dbURL, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), logf: logf}
	t.Cleanup(func() {
		e.stop()
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				if len(b) > 8000 {
					b = b[len(b)-8000:]
				}
				t.Logf("engine log (tail):\n%s", b)
			}
		}
	})
	return e
}

func (e *engine) base() string { return "http://" + e.addr }

// command runs a one-shot subcommand of the binary with the engine's
// configuration.
func (e *engine) command(args ...string) *exec.Cmd {
	cmd := exec.Command(e.bin, args...)
	cmd.Env = append(os.Environ(),
		"LOYALTY_DATABASE_URL="+e.dbURL,
		"LOYALTY_ADDR="+e.addr,
		"LOYALTY_JWT_SECRET="+testSecret,
		"LOYALTY_JOBS=off",
		"LOYALTY_LOG_LEVEL=warn",
	)
	cmd.Env = append(cmd.Env, e.env...)
	return cmd
}

// start launches the server and waits until /readyz answers 200.
func (e *engine) start() {
	e.t.Helper()
	cmd := e.command("serve")
	cmd.Stdout = e.logf
	cmd.Stderr = e.logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.starts++
	e.cmd = cmd
	exited := make(chan struct{})
	e.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-exited:
			e.t.Fatalf("loyalty serve exited during start-up: %v", cmd.ProcessState)
		default:
		}
		if st, _, err := e.get("/readyz"); err == nil && st == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatal("loyalty serve did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (e *engine) kill() {
	e.t.Helper()
	if e.cmd == nil {
		return
	}
	if err := e.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		e.t.Fatal(err)
	}
	<-e.exited
	e.cmd = nil
}

// stop ends the server gracefully (SIGTERM), or kills it if it hangs.
func (e *engine) stop() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(30 * time.Second):
		_ = e.cmd.Process.Signal(syscall.SIGKILL)
		<-e.exited
	}
	e.cmd = nil
}

func (e *engine) get(path string) (int, []byte, error) {
	c := http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(e.base() + path)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

// sqliteURL is a fresh SQLite file database.
func sqliteURL(t *testing.T) string {
	return "sqlite://" + filepath.Join(t.TempDir(), "loyalty.db")
}

// postgresBase is the shared PostgreSQL server of the test suite; the test
// is skipped when it does not answer, unless PostgreSQL is required.
func postgresBase(t *testing.T) string {
	t.Helper()
	for _, d := range loyaltytest.Dialects(t) {
		if d == loyalty.Postgres {
			if u := os.Getenv("LOYALTY_TEST_POSTGRES_URL"); u != "" {
				return u
			}
			return loyaltytest.DefaultPostgresURL
		}
	}
	t.Skip("PostgreSQL unreachable")
	return ""
}

// withDatabase replaces the database name of a PostgreSQL URL.
func withDatabase(t *testing.T, base, name string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// createDatabase makes a new database on the server of base, dropped when
// the test ends, and returns its URL.
func createDatabase(t *testing.T, base, prefix string) string {
	t.Helper()
	name := prefix + "_" + randomHex(6)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		admin.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
		admin.Close()
	})
	return withDatabase(t, base, name)
}

// ---- load ----

// op is one write request with what the test saw of it.
type op struct {
	kind   string // enrol, purchase, redeem, return
	member int    // index into workload.members; -1 for enrol
	path   string
	key    string
	body   []byte

	status     int
	resp       []byte
	replayed   bool // the first answer was already a replay
	unanswered int  // attempts that got no answer or a 503
	id         string
	points     int64 // change to the member's balance
	returned   bool  // for purchases: a return was posted
	total      int64
	sent       int64 // order in which writes were first sent
	seq        int64 // acknowledgement order
}

// workload drives writes against an engine through its public API.
type workload struct {
	t        *testing.T
	e        *engine
	token    string
	client   *http.Client
	rewardID string
	cost     int64
	members  []string
	expected []int64 // per member: the balance the answers add up to

	mu   sync.Mutex
	ops  []*op
	done []*op // answered 201, in order, with their ids

	sent         atomic.Int64
	acked        atomic.Int64
	noAnswer     atomic.Int64 // attempts without an answer (process down, connection cut)
	unavailable  atomic.Int64 // 503 answers
	badStatus    []string     // 5xx other than 503, or malformed problem bodies
	problems     []string     // 503 bodies seen
	replayFaults int
	deadline     time.Time
}

func newWorkload(t *testing.T, e *engine) *workload {
	t.Helper()
	tok, err := api.SignToken(api.AuthConfig{Secret: []byte(testSecret)}, loyalty.RoleAdmin, "crash-test", "", 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &workload{t: t, e: e, token: tok,
		client:   &http.Client{Timeout: 30 * time.Second},
		deadline: time.Now().Add(5 * time.Minute)}
}

// send posts op until it gets an answer other than 503 (or no answer),
// retrying with the same key and body, as a well-behaved client does.
func (w *workload) send(o *op) {
	o.sent = w.sent.Add(1)
	for {
		if time.Now().After(w.deadline) {
			w.t.Errorf("%s %s (key %s): no answer before the deadline", o.kind, o.path, o.key)
			return
		}
		st, hdr, body, err := w.do(http.MethodPost, o.path, o.key, o.body)
		if err != nil || st == http.StatusServiceUnavailable {
			if err != nil {
				w.noAnswer.Add(1)
			} else {
				w.unavailable.Add(1)
				w.checkUnavailable(hdr, body)
			}
			o.unanswered++
			time.Sleep(time.Duration(20+mrand.Intn(80)) * time.Millisecond)
			continue
		}
		if st >= 500 {
			w.mu.Lock()
			w.badStatus = append(w.badStatus, fmt.Sprintf("%s %s: %d %s", o.kind, o.path, st, body))
			w.mu.Unlock()
		}
		o.status, o.resp, o.replayed = st, body, hdr.Get("Idempotent-Replayed") == "true"
		o.seq = w.acked.Add(1)
		return
	}
}

// checkUnavailable records a 503 that is not a clean problem document.
func (w *workload) checkUnavailable(hdr http.Header, body []byte) {
	if msg := problemFault(hdr, body); msg != "" {
		w.mu.Lock()
		w.badStatus = append(w.badStatus, msg)
		w.mu.Unlock()
	}
	w.mu.Lock()
	if len(w.problems) < 5 {
		w.problems = append(w.problems, string(body))
	}
	w.mu.Unlock()
}

// problemFault says what is wrong with a 503 answer, or "".
func problemFault(hdr http.Header, body []byte) string {
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		return fmt.Sprintf("503 with Content-Type %q: %s", ct, body)
	}
	if hdr.Get("Retry-After") == "" {
		return fmt.Sprintf("503 without Retry-After: %s", body)
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Type == "" || p.Title == "" || p.Status != 503 || p.Detail == "" {
		return fmt.Sprintf("503 body is not an RFC 9457 problem: %s", body)
	}
	low := strings.ToLower(string(body))
	for _, leak := range []string{"postgres://", "sqlstate", "dial tcp", "127.0.0.1", "select ", "insert ", "update ", "pgconn", "pgx", "gorm", "connect:", "econnrefused", "sqlite", ".go:"} {
		if strings.Contains(low, leak) {
			return fmt.Sprintf("503 body shows internals (%q): %s", leak, body)
		}
	}
	return ""
}

func (w *workload) do(method, path, key string, body []byte) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, w.e.base()+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+w.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	res, err := w.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	return res.StatusCode, res.Header, b, nil
}

// getJSON reads a resource, retrying while the engine does not answer.
func (w *workload) getJSON(path string, v any) int {
	w.t.Helper()
	for {
		st, _, body, err := w.do(http.MethodGet, path, "", nil)
		if err == nil && st != http.StatusServiceUnavailable {
			if st == http.StatusOK && v != nil {
				if err := json.Unmarshal(body, v); err != nil {
					w.t.Fatalf("GET %s: %v: %s", path, err, body)
				}
			}
			return st
		}
		if time.Now().After(w.deadline) {
			w.t.Fatalf("GET %s: no answer before the deadline (%v)", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (w *workload) record(o *op) {
	w.mu.Lock()
	w.ops = append(w.ops, o)
	w.mu.Unlock()
}

// setup enrols n members and creates a reward to redeem.
func (w *workload) setup(n int) {
	w.t.Helper()
	w.cost = 25
	rw := &op{kind: "reward", member: -1, path: "/v1/rewards", key: "reward-" + randomHex(4),
		body: mustJSON(map[string]any{"code": "r-" + randomHex(3), "name": "Sample", "description": "a sample", "cost_points": w.cost, "active": true})}
	w.send(rw)
	if rw.status != http.StatusCreated {
		w.t.Fatalf("create reward: %d %s", rw.status, rw.resp)
	}
	w.rewardID = idOf(w.t, rw.resp)
	var wg sync.WaitGroup
	w.members = make([]string, n)
	w.expected = make([]int64, n)
	for i := 0; i < n; i++ {
		o := &op{kind: "enrol", member: i, path: "/v1/members", key: "enrol-" + randomHex(6),
			body: mustJSON(map[string]any{"external_id": "M-" + randomHex(6), "first_name": "Member", "last_name": strconv.Itoa(i)})}
		w.record(o)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.send(o)
		}()
	}
	wg.Wait()
	for _, o := range w.ops {
		if o.kind == "enrol" {
			if o.status != http.StatusCreated {
				w.t.Fatalf("enrol: %d %s", o.status, o.resp)
			}
			o.id = idOf(w.t, o.resp)
			w.members[o.member] = o.id
		}
	}
}

func idOf(t *testing.T, body []byte) string {
	t.Helper()
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.ID == "" {
		t.Fatalf("no id in %s", body)
	}
	return v.ID
}

// run posts n writes from workers goroutines. Each worker owns the
// members whose index ≡ worker (mod workers), so the writes of one member
// are sequential and the client can follow its balance, while the workers
// load the engine concurrently. stop, when closed, ends the run early.
func (w *workload) run(workers, n int, stop <-chan struct{}) {
	var wg sync.WaitGroup
	var issued atomic.Int64
	for k := 0; k < workers; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			rnd := mrand.New(mrand.NewSource(time.Now().UnixNano() + int64(k)))
			var mine []int
			for i := k; i < len(w.members); i += workers {
				mine = append(mine, i)
			}
			if len(mine) == 0 {
				return
			}
			var purchases = map[int][]*op{}
			for issued.Add(1) <= int64(n) {
				select {
				case <-stop:
					return
				default:
				}
				if w.t.Failed() {
					return
				}
				m := mine[rnd.Intn(len(mine))]
				o := w.next(rnd, m, purchases[m])
				w.record(o)
				w.send(o)
				w.apply(o)
				if o.kind == "purchase" && o.status == http.StatusCreated {
					purchases[m] = append(purchases[m], o)
				}
			}
		}(k)
	}
	wg.Wait()
}

// next chooses a member's next write: a purchase, a redemption when the
// balance covers it, or a partial return of one of its purchases.
func (w *workload) next(rnd *mrand.Rand, m int, bought []*op) *op {
	member := w.members[m]
	roll := rnd.Intn(10)
	switch {
	case roll < 2 && w.expected[m] >= w.cost:
		return &op{kind: "redeem", member: m, path: "/v1/members/" + member + "/redemptions", key: "redeem-" + randomHex(8),
			body: mustJSON(map[string]any{"reward_id": w.rewardID})}
	case roll < 4 && len(bought) > 0:
		for _, p := range bought {
			if !p.returned {
				p.returned = true
				return &op{kind: "return", member: m, path: "/v1/purchases/" + p.id + "/returns", key: "return-" + randomHex(8),
					body: mustJSON(map[string]any{"external_id": "RET-" + randomHex(6), "amount": p.total / 2})}
			}
		}
	}
	total := int64(500 + rnd.Intn(20000))
	ext := "R-" + randomHex(8)
	return &op{kind: "purchase", member: m, path: "/v1/purchases", key: "purchase-" + ext, total: total,
		body: mustJSON(map[string]any{"member_id": member, "external_id": ext, "store_id": "store-1", "channel": "pos",
			"occurred_at": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), "currency": "USD", "total": total,
			"items": []map[string]any{{"sku": "SKU-1", "category": "skincare", "quantity": 1, "unit_price": total, "amount": total}}})}
}

// apply follows the member's balance from the answer.
func (w *workload) apply(o *op) {
	if o.status != http.StatusCreated {
		return
	}
	var v struct {
		ID             string `json:"id"`
		PointsEarned   int64  `json:"points_earned"`
		PointsSpent    int64  `json:"points_spent"`
		PointsReversed int64  `json:"points_reversed"`
	}
	if err := json.Unmarshal(o.resp, &v); err != nil {
		w.t.Errorf("%s: %v: %s", o.kind, err, o.resp)
		return
	}
	o.id = v.ID
	switch o.kind {
	case "purchase":
		o.points = v.PointsEarned
	case "redeem":
		o.points = -v.PointsSpent
	case "return":
		o.points = -v.PointsReversed
	}
	w.expected[o.member] += o.points
	w.mu.Lock()
	w.done = append(w.done, o)
	w.mu.Unlock()
}

// acknowledged lists the writes answered 201 so far, in order.
func (w *workload) acknowledged() []*op {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*op(nil), w.done...)
}

// stats summarises what the load saw.
func (w *workload) stats() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	kinds := map[string]int{}
	retried, replayedAfterRetry := 0, 0
	for _, o := range w.ops {
		kinds[o.kind]++
		if o.unanswered > 0 {
			retried++
			if o.replayed {
				replayedAfterRetry++
			}
		}
	}
	return fmt.Sprintf("acknowledged %d writes %v; attempts without answer %d, 503 answers %d; %d writes needed a retry, %d of them had committed before the answer was lost (replayed)",
		w.acked.Load(), kinds, w.noAnswer.Load(), w.unavailable.Load(), retried, replayedAfterRetry)
}

// verify checks, through the API, that every write was answered 201, that
// repeating it with its key and body replays the same answer and changes
// nothing, and that every member's ledger sums to its balance and to what
// the answers add up to.
func (w *workload) verify() {
	w.t.Helper()
	w.mu.Lock()
	ops := append([]*op(nil), w.ops...)
	bad := append([]string(nil), w.badStatus...)
	w.mu.Unlock()
	for _, b := range bad {
		w.t.Errorf("bad answer: %s", b)
	}
	for _, o := range ops {
		if o.status != http.StatusCreated {
			w.t.Errorf("%s %s (key %s) answered %d: %s", o.kind, o.path, o.key, o.status, o.resp)
		}
	}
	if w.t.Failed() {
		w.t.FailNow()
	}
	for _, o := range ops {
		if !w.checkReplay(o) {
			w.replayFaults++
		}
		if w.replayFaults > 10 {
			w.t.Fatalf("more than 10 repeats did not replay their first answer")
		}
	}
	w.checkLedgers(w.expected)
}

// checkReplay repeats o and expects its first answer back, marked replayed.
func (w *workload) checkReplay(o *op) bool {
	w.t.Helper()
	for {
		st, hdr, body, err := w.do(http.MethodPost, o.path, o.key, o.body)
		if err != nil || st == http.StatusServiceUnavailable {
			if time.Now().After(w.deadline) {
				w.t.Fatalf("replay %s: no answer", o.key)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if st != o.status || hdr.Get("Idempotent-Replayed") != "true" || !sameJSON(body, o.resp) {
			w.t.Errorf("%s (key %s) repeated: %d replayed=%q %s; first answer %d %s",
				o.kind, o.key, st, hdr.Get("Idempotent-Replayed"), body, o.status, o.resp)
			return false
		}
		return true
	}
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

type balanceDoc struct {
	Available int64 `json:"available"`
	Pending   int64 `json:"pending"`
	Version   int64 `json:"version"`
}

// ledgerSum adds up a member's ledger through the API, page by page.
func (w *workload) ledgerSum(member string) (sum int64, n int) {
	w.t.Helper()
	cursor := ""
	for {
		var page struct {
			Items []struct {
				Points int64 `json:"points"`
			} `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		path := "/v1/members/" + member + "/ledger?limit=500"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		if st := w.getJSON(path, &page); st != http.StatusOK {
			w.t.Fatalf("GET %s: %d", path, st)
		}
		for _, it := range page.Items {
			sum += it.Points
			n++
		}
		if page.NextCursor == nil || *page.NextCursor == "" {
			return sum, n
		}
		cursor = *page.NextCursor
	}
}

// checkLedgers asserts, per member, ledger sum = available + pending, and,
// when expected is given, = the sum of the changes the answers reported.
func (w *workload) checkLedgers(expected []int64) {
	w.t.Helper()
	for i, m := range w.members {
		var b balanceDoc
		if st := w.getJSON("/v1/members/"+m+"/balance", &b); st != http.StatusOK {
			w.t.Fatalf("balance of %s: %d", m, st)
		}
		sum, _ := w.ledgerSum(m)
		if sum != b.Available+b.Pending {
			w.t.Errorf("member %s: ledger sums to %d, balance says available %d + pending %d", m, sum, b.Available, b.Pending)
		}
		if expected != nil && sum != expected[i] {
			w.t.Errorf("member %s: ledger sums to %d, the acknowledged writes add up to %d", m, sum, expected[i])
		}
	}
}

// ---- database invariants ----

// dbInvariants are queries that count rows breaking a rule of the ledger;
// each must answer 0. They run unchanged on SQLite and PostgreSQL.
var dbInvariants = []struct{ name, query string }{
	{"purchase whose earn entries do not add up to its points_earned",
		`SELECT COUNT(*) FROM purchases p WHERE p.points_earned <> COALESCE((SELECT SUM(l.points) FROM ledger_entries l WHERE l.purchase_id = p.id AND l.return_id IS NULL AND l.kind IN ('earn', 'offer')), 0)`},
	{"earn entry without its purchase",
		`SELECT COUNT(*) FROM ledger_entries l WHERE l.kind = 'earn' AND (l.purchase_id IS NULL OR NOT EXISTS (SELECT 1 FROM purchases p WHERE p.id = l.purchase_id))`},
	{"purchase without its items",
		`SELECT COUNT(*) FROM purchases p WHERE NOT EXISTS (SELECT 1 FROM purchase_items i WHERE i.purchase_id = p.id)`},
	{"return whose entries do not add up to its points_reversed",
		`SELECT COUNT(*) FROM returns r WHERE -r.points_reversed <> COALESCE((SELECT SUM(l.points) FROM ledger_entries l WHERE l.return_id = r.id), 0)`},
	{"return entry without its return",
		`SELECT COUNT(*) FROM ledger_entries l WHERE l.kind = 'return' AND (l.return_id IS NULL OR NOT EXISTS (SELECT 1 FROM returns r WHERE r.id = l.return_id))`},
	{"purchase whose returned amount or reversed points disagree with its returns",
		`SELECT COUNT(*) FROM purchases p WHERE p.returned_amount <> COALESCE((SELECT SUM(r.amount) FROM returns r WHERE r.purchase_id = p.id), 0) OR p.points_reversed <> COALESCE((SELECT SUM(r.points_reversed) FROM returns r WHERE r.purchase_id = p.id), 0)`},
	{"redemption without its redeem entry",
		`SELECT COUNT(*) FROM redemptions r WHERE r.points_spent > 0 AND (r.entry_id IS NULL OR NOT EXISTS (SELECT 1 FROM ledger_entries l WHERE l.id = r.entry_id AND l.kind = 'redeem' AND l.points = -r.points_spent))`},
	{"redeem entry without its redemption",
		`SELECT COUNT(*) FROM ledger_entries l WHERE l.kind = 'redeem' AND (l.redemption_id IS NULL OR NOT EXISTS (SELECT 1 FROM redemptions r WHERE r.id = l.redemption_id))`},
	{"balance that is not the sum of the member's ledger",
		`SELECT COUNT(*) FROM member_balances b WHERE b.points <> COALESCE((SELECT SUM(l.points) FROM ledger_entries l WHERE l.member_id = b.member_id), 0)`},
	{"balance that is not its lots' remainder less debt",
		`SELECT COUNT(*) FROM member_balances b WHERE b.points <> COALESCE((SELECT SUM(t.remaining) FROM lots t WHERE t.member_id = b.member_id), 0) - b.debt`},
	{"member without a balance",
		`SELECT COUNT(*) FROM members m WHERE NOT EXISTS (SELECT 1 FROM member_balances b WHERE b.member_id = m.id)`},
	{"idempotency claim whose transaction never completed",
		`SELECT COUNT(*) FROM idempotency_keys WHERE status = 0`},
}

func openDB(t *testing.T, dbURL string) *loyalty.Store {
	t.Helper()
	st, err := loyalty.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// checkDB asserts the invariants in the database itself.
func checkDB(t *testing.T, dbURL string) {
	t.Helper()
	db := openDB(t, dbURL).DB()
	for _, inv := range dbInvariants {
		var n int64
		if err := db.Raw(inv.query).Scan(&n).Error; err != nil {
			t.Fatalf("%s: %v", inv.name, err)
		}
		if n != 0 {
			t.Errorf("%d × %s", n, inv.name)
		}
	}
}

// checkExactlyOnce asserts that the database holds exactly the
// acknowledged purchases, returns, redemptions and members: each once,
// under the id its answer gave, and nothing else.
func (w *workload) checkExactlyOnce(dbURL string) {
	w.t.Helper()
	db := openDB(w.t, dbURL).DB()
	want := map[string][]string{}
	w.mu.Lock()
	for _, o := range w.ops {
		want[o.kind] = append(want[o.kind], o.id)
	}
	w.mu.Unlock()
	for kind, q := range map[string]string{
		"purchase": "SELECT id FROM purchases",
		"return":   "SELECT id FROM returns",
		"redeem":   "SELECT id FROM redemptions",
		"enrol":    "SELECT id FROM members",
	} {
		var got []string
		if err := db.Raw(q).Scan(&got).Error; err != nil {
			w.t.Fatal(err)
		}
		exp := append([]string(nil), want[kind]...)
		sort.Strings(got)
		sort.Strings(exp)
		if !reflect.DeepEqual(got, exp) {
			w.t.Errorf("%s: the database holds %d rows, %d were acknowledged; missing %v, extra %v",
				kind, len(got), len(exp), diff(exp, got), diff(got, exp))
		}
	}
}

// diff lists the elements of a not in b (a few of them).
func diff(a, b []string) []string {
	in := map[string]int{}
	for _, s := range b {
		in[s]++
	}
	var out []string
	for _, s := range a {
		if in[s] > 0 {
			in[s]--
			continue
		}
		out = append(out, s)
		if len(out) == 5 {
			break
		}
	}
	return out
}

// waitAcked blocks until the load has acknowledged n writes, or done closes.
func (w *workload) waitAcked(n int64, done <-chan struct{}) bool {
	for w.acked.Load() < n {
		select {
		case <-done:
			return false
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(w.deadline) {
			return false
		}
	}
	return true
}
