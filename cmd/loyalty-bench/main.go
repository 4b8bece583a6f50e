// Command loyalty-bench is the project's benchmark. It builds the engine,
// starts it on a fresh database (SQLite in a temporary file, PostgreSQL in
// a scratch database it creates and drops), seeds a program and members
// through the API, and measures purchases, balance reads, a read-mostly mix
// and optionally redemptions from concurrent keep-alive clients, flat out
// or at a fixed rate. Before those it gives members histories of 1, 1,000
// and 10,000 purchases and compares single requests against them. In the
// same run it measures what the database alone can do for the same work
// (a bare posting transaction in the engine's driver and in C SQLite, a
// primary-key read, pgbench -S), checks every member's books through the
// API, optionally soaks the engine, and prints Markdown: issue 13's targets
// with their verdicts, then the tables.
//
//	go run ./cmd/loyalty-bench -db sqlite,postgres -duration 20s -soak 10m -out docs/BENCH.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/valyala/fasthttp"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	dbs            []string
	duration       time.Duration
	conc           []int
	rate           float64
	members        int
	redemptions    bool
	soak           time.Duration
	soakRate       float64
	soakEvery      time.Duration
	out            string
	serverBin      string
	pgURL          string
	keep           bool
	refs           bool
	pgbench        string
	pgbenchScale   int
	timeout        time.Duration
	verifySample   int
	serverLogLevel string
	stores         int
	seedConc       int
	profileDir     string
	history        []int
	historyIters   int
	historySpan    time.Duration
	python         string
	natsURL        string
	eventSinks     map[string]bool // of the events phase: webhook, nats
	eventsRounds   int             // phases with the sinks, each between plain ones
	batchRounds    int
	importRows     int // the import phase's rows (0: no import phase)
	importMembers  int
	importRef      []string // on PostgreSQL, the modes of the import without the engine to run after it (importref.go)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loyalty-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbs := fs.String("db", "sqlite", "databases to measure, comma-separated: sqlite, postgres")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "length of each measured phase")
	conc := fs.String("concurrency", "32", "concurrent clients (one keep-alive connection each); a list such as 16,64 runs each")
	fs.Float64Var(&o.rate, "rate", 0, "requests/s per phase, paced open-loop (0: flat out)")
	fs.IntVar(&o.members, "members", 2000, "members to enrol before measuring")
	fs.BoolVar(&o.redemptions, "redemptions", false, "also measure redemptions alone")
	fs.DurationVar(&o.soak, "soak", 0, "after the phases, run the mix this long at a fixed rate and watch memory and goroutines (0: no soak)")
	fs.Float64Var(&o.soakRate, "soak-rate", 0, "requests/s during the soak (default -rate, else half the mix throughput just measured)")
	fs.DurationVar(&o.soakEvery, "soak-every", 10*time.Second, "sampling interval of RSS and goroutines during the soak")
	fs.StringVar(&o.out, "out", "", "also write the Markdown to this file: between its <!-- loyalty-bench:begin/end --> markers when it has them, else the whole file")
	fs.StringVar(&o.serverBin, "server-bin", "", "engine binary to run (default: go build ./cmd/loyalty)")
	fs.StringVar(&o.pgURL, "pg-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"PostgreSQL server for the postgres runs: the bench creates and drops loyalty_bench_* databases on it")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary files and databases")
	fs.BoolVar(&o.refs, "refs", true, "measure the database references (bare SQL, pgbench)")
	fs.StringVar(&o.pgbench, "pgbench", "", "pgbench binary (default: on PATH or /usr/lib/postgresql/*/bin)")
	fs.IntVar(&o.pgbenchScale, "pgbench-scale", 10, "pgbench -i scale factor")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.IntVar(&o.verifySample, "verify", 0, "members whose books are checked at the end (0: all)")
	fs.StringVar(&o.serverLogLevel, "server-log-level", "warn", "LOYALTY_LOG_LEVEL of the engine under test")
	fs.IntVar(&o.stores, "stores", 8, "stores, each with its own store-scoped till token")
	fs.IntVar(&o.seedConc, "seed-concurrency", 16, "concurrent clients while seeding")
	history := fs.String("history", "1,1000,10000", "purchases of history of the members the history phase compares (\"\" or 0: no history phase)")
	fs.IntVar(&o.historyIters, "history-iters", 200, "requests of each kind per history size in the history phase")
	fs.DurationVar(&o.historySpan, "history-span", 2*365*24*time.Hour, "the history's purchases are spread over this much of the past")
	fs.StringVar(&o.python, "python", "python3", "Python with the sqlite3 module, for the C SQLite reference (\"\": skip it)")
	fs.StringVar(&o.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS with JetStream for the events phases: purchases with a webhook and the NATS sink, and the balance stream's latency (\"\": skip them)")
	fs.IntVar(&o.eventsRounds, "events-rounds", 3, "phases with the sinks, each between two plain phases on restarted engines (A/B/A/B…); the median round counts")
	sinks := fs.String("event-sinks", "webhook,nats", "what the events phase configures: webhook, nats or both (to tell their costs apart)")
	fs.IntVar(&o.batchRounds, "batch-rounds", 5, "rounds of the batch phase: 500 purchases one at a time, then 500 as one batch, from one till (0: skip it)")
	fs.StringVar(&o.profileDir, "profile", "", "save a CPU profile of the engine during each phase to this folder (from its admin-only /debug/pprof)")
	fs.IntVar(&o.importRows, "import-rows", 0, "run the import phase alone: POST /v1/imports of a synthetic purchases CSV of this many rows, e.g. 1000000 (0: no import phase)")
	fs.IntVar(&o.importMembers, "import-members", 100000, "members of the import phase's rows")
	fs.Func("import-ref", "with -import-rows on PostgreSQL: then the same rows without the engine, on a database of their own, in these modes: staged (the engine's statements for a chunk that finds purchases stored), direct (COPY alone into the three tables), or staged,direct", func(v string) error {
		for m := range strings.SplitSeq(v, ",") {
			if m != "staged" && m != "direct" {
				return fmt.Errorf("unknown mode %q", m)
			}
			o.importRef = append(o.importRef, m)
		}
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	for _, d := range strings.Split(*dbs, ",") {
		switch d = strings.TrimSpace(strings.ToLower(d)); d {
		case "sqlite", "postgres":
			o.dbs = append(o.dbs, d)
		case "postgresql", "pg":
			o.dbs = append(o.dbs, "postgres")
		case "":
		default:
			return o, fmt.Errorf("-db: unknown database %q (want sqlite, postgres)", d)
		}
	}
	if len(o.dbs) == 0 {
		return o, errors.New("-db names no database")
	}
	o.eventSinks = map[string]bool{}
	for _, k := range strings.Split(*sinks, ",") {
		switch k = strings.TrimSpace(strings.ToLower(k)); k {
		case "webhook", "nats":
			o.eventSinks[k] = true
		case "":
		default:
			return o, fmt.Errorf("-event-sinks: unknown sink %q (want webhook, nats)", k)
		}
	}
	if o.eventsRounds < 1 {
		return o, errors.New("-events-rounds must be at least 1")
	}
	if len(o.eventSinks) == 0 {
		return o, errors.New("-event-sinks names no sink")
	}
	var err error
	if o.history, err = parseSizes(*history); err != nil {
		return o, fmt.Errorf("-history: %w", err)
	}
	cs, err := parseIntList(*conc)
	if err != nil {
		return o, fmt.Errorf("-concurrency: %w", err)
	}
	o.conc = cs
	switch {
	case o.duration <= 0:
		return o, errors.New("-duration must be positive")
	case o.members < 1:
		return o, errors.New("-members must be at least 1")
	case o.importRows < 0 || o.importMembers < 1:
		return o, errors.New("-import-rows must not be negative and -import-members must be at least 1")
	case o.rate < 0 || o.soakRate < 0 || math.IsNaN(o.rate) || math.IsNaN(o.soakRate) || math.IsInf(o.rate, 0) || math.IsInf(o.soakRate, 0):
		return o, errors.New("-rate and -soak-rate must be positive numbers (or 0)")
	case o.soak < 0 || o.soakEvery <= 0:
		return o, errors.New("-soak must not be negative and -soak-every must be positive")
	case o.timeout <= 0:
		return o, errors.New("-timeout must be positive")
	case o.historyIters < 1 || o.historySpan <= 0:
		return o, errors.New("-history-iters and -history-span must be positive")
	case o.stores < 1 || o.seedConc < 1 || o.pgbenchScale < 1 || o.verifySample < 0:
		return o, errors.New("-stores, -seed-concurrency and -pgbench-scale must be at least 1, -verify not negative")
	}
	return o, nil
}

// parseIntList reads "16,64" as positive integers.
func parseIntList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 100000 {
			return nil, fmt.Errorf("%q is not a client count", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no client count")
	}
	return out, nil
}

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	opt, err := parseFlags(args[1:], stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "loyalty-bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{opt: opt, log: stderr, rep: &report{date: time.Now(), machine: readMachine(), command: commandLine(args)}}
	err = b.run(ctx)
	if err != nil {
		b.rep.failures = append(b.rep.failures, err.Error())
	}
	md := b.rep.markdown()
	fmt.Fprint(stdout, md)
	if opt.out != "" {
		if dir := filepath.Dir(opt.out); dir != "." {
			_ = os.MkdirAll(dir, 0o755)
		}
		text := md
		if old, rerr := os.ReadFile(opt.out); rerr == nil {
			if spliced, ok := spliceRun(string(old), md); ok {
				text = spliced
			}
		}
		if werr := os.WriteFile(opt.out, []byte(text), 0o644); werr != nil {
			fmt.Fprintln(stderr, "loyalty-bench:", werr)
			return 1
		}
		fmt.Fprintln(stderr, "loyalty-bench: wrote", opt.out)
	}
	if len(b.rep.failures) > 0 {
		fmt.Fprintln(stderr, "loyalty-bench: FAILED:")
		for _, f := range b.rep.failures {
			fmt.Fprintln(stderr, "  "+f)
		}
		return 1
	}
	return 0
}

type bench struct {
	opt      options
	log      io.Writer
	rep      *report
	dir      string // temporary files
	bin      string
	outcomes []*dbOutcome // for the targets, by database
}

func (b *bench) logf(format string, a ...any) {
	fmt.Fprintf(b.log, "loyalty-bench: "+format+"\n", a...)
}

func (b *bench) run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "loyalty-bench-")
	if err != nil {
		return err
	}
	b.dir = dir
	if b.opt.keep {
		defer b.logf("kept temporary files in %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	b.bin = b.opt.serverBin
	if b.bin == "" {
		b.logf("building ./cmd/loyalty")
		if b.bin, err = buildServer(ctx, dir); err != nil {
			return err
		}
	}
	var failed []string
	defer func() {
		for _, o := range b.outcomes {
			b.rep.targets = append(b.rep.targets, o.targets()...)
		}
	}()
	for _, db := range b.opt.dbs {
		if err := b.benchDB(ctx, db); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%s: interrupted: %w", db, err)
			}
			b.logf("%s: %v", db, err)
			failed = append(failed, fmt.Sprintf("%s: %v", db, err))
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// dbLabel is how a database appears in the table.
func dbLabel(db string) string {
	if db == "postgres" {
		return "PostgreSQL"
	}
	return "SQLite"
}

// engineRun holds what one database's engine phases measured, for the
// ratios with the references.
type engineRun struct {
	purchases, reads, mix map[int]float64 // throughput by client count, flat out only
}

func (b *bench) benchDB(ctx context.Context, db string) error {
	opt := b.opt
	label := dbLabel(db)
	out := &dbOutcome{label: label, clients: targetClients(opt.conc)}
	b.outcomes = append(b.outcomes, out)
	var (
		dbURL string
		pg    *pgAdmin
		names []string // scratch PostgreSQL databases to drop
	)
	cleanupCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 2*time.Minute)
	}
	switch db {
	case "sqlite":
		dbURL = "sqlite://" + filepath.Join(b.dir, "engine.db")
	case "postgres":
		var err error
		if pg, err = newPGAdmin(opt.pgURL); err != nil {
			return err
		}
		b.rep.machine.pgVersion = pg.version(ctx)
		name := fmt.Sprintf("loyalty_bench_%d", os.Getpid())
		if err := pg.create(ctx, name); err != nil {
			return err
		}
		names = append(names, name)
		defer func() {
			for _, n := range names {
				if opt.keep {
					b.logf("kept database %s", n)
					continue
				}
				// Each drop has its own time: dropping a large database
				// on a busy server must not leave the next one behind.
				c, cancel := cleanupCtx()
				if err := pg.drop(c, n); err != nil {
					b.logf("%v", err)
				}
				cancel()
			}
		}()
		dbURL = pg.urlFor(name)
	}

	secret := randomSecret()
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	env := serverEnv(dbURL, addr, secret, opt.serverLogLevel)
	b.logf("%s: migrate up", label)
	if err := migrateUp(ctx, b.bin, env); err != nil {
		return err
	}
	logPath := filepath.Join(b.dir, db+"-server.log")
	srv, err := startServer(ctx, b.bin, env, addr, logPath)
	if err != nil {
		return err
	}
	// The events phases restart the engine: stop whichever runs last.
	defer func() { srv.stop() }()
	b.logf("%s: engine %d serving on %s", label, srv.pid(), addr)

	if opt.importRows > 0 {
		if err := b.importPhase(ctx, srv, label, secret); err != nil || len(opt.importRef) == 0 || pg == nil {
			return err
		}
		// The engine's database is dropped first: the reference's is as
		// large, and the two would share the server's cache.
		srv.stop()
		if !opt.keep {
			c, cancel := cleanupCtx()
			err := pg.drop(c, names[0])
			cancel()
			if err != nil {
				return err
			}
			names = names[:0]
		}
		for _, mode := range opt.importRef {
			if err := b.importRef(ctx, pg, label, mode); err != nil {
				return err
			}
		}
		return nil
	}

	// Tokens outlive the whole run with room to spare.
	ttl := 6*time.Hour + opt.soak + time.Duration(len(opt.conc)*5)*opt.duration
	e, err := newEngine(addr, secret, opt.stores, opt.timeout, ttl)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := e.seed(ctx, opt.members, historyExtra(opt.history), opt.seedConc, secret, ttl); err != nil {
		return fmt.Errorf("%w\nserver log:\n%s", err, tail(logPath, 10))
	}
	e.closeClients()
	b.logf("%s: seeded 3 tiers, a reward and %d members with a first purchase each in %s", label, opt.members,
		time.Since(t0).Round(time.Millisecond))
	if len(opt.history) > 0 {
		// Before the other phases: the load's members hold exactly one
		// purchase until then, which the smallest history needs.
		if out.history, err = b.history(ctx, e, label, logPath); err != nil {
			return err
		}
	}

	type phase struct {
		name string
		load func() ([]string, newOp)
		mix  bool
	}
	phases := []phase{{"purchases", e.purchasesLoad, false}, {"balance reads", e.balanceLoad, false}, {"mix 80/20", e.mixLoad, true}}
	if opt.redemptions {
		phases = append(phases, phase{"redemptions", e.redemptionsLoad, false})
	}
	er := engineRun{purchases: map[int]float64{}, reads: map[int]float64{}, mix: map[int]float64{}}
	var gor []string // goroutines before and after each phase
	firstRow := len(b.rep.rows)
	defer func() {
		// Rows by client count, the references next to the engine's.
		rows := b.rep.rows[firstRow:]
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].clients < rows[j].clients })
	}()
	for _, conc := range opt.conc {
		for _, ph := range phases {
			if err := ctx.Err(); err != nil {
				return err
			}
			name := ph.name
			if opt.rate > 0 {
				name += fmt.Sprintf(" @ %s/s", fmtRate(opt.rate))
			}
			kinds, mk := ph.load()
			stopProfile := b.profile(srv, e, fmt.Sprintf("%s-%s-%d", db, strings.Fields(ph.name)[0], conc), opt.duration)
			res, rssKB, g0, g1, err := b.measure(ctx, srv, e, kinds, conc, opt.duration, opt.rate, mk, logPath)
			stopProfile()
			if err != nil {
				return err
			}
			b.rep.rows = append(b.rep.rows, rowFrom(label, name, conc, res.total, res.elapsed, rssKB))
			if ph.mix {
				for _, k := range res.kinds {
					b.rep.rows = append(b.rep.rows, rowFrom(label, "↳ "+k.name, conc, k, res.elapsed, -1))
				}
			}
			b.phaseNote(label, name, conc, res, g0, g1, &gor)
			if opt.rate == 0 {
				fr := &flatResult{tput: res.throughput(), p99: res.total.hist.percentile(99), errors: res.total.errors.total()}
				switch ph.name {
				case "purchases":
					er.purchases[conc] = res.throughput()
					if conc == out.clients {
						out.purchases = fr
					}
				case "balance reads":
					er.reads[conc] = res.throughput()
					if conc == out.clients {
						out.reads = fr
					}
				case "mix 80/20":
					er.mix[conc] = res.throughput()
					if conc == out.clients {
						out.mix = fr
					}
				}
			}
		}
	}

	if opt.batchRounds > 0 && opt.rate == 0 {
		if out.batch, err = b.batchPhase(ctx, srv, e, label, opt.batchRounds); err != nil {
			return fmt.Errorf("batch phase: %w", err)
		}
	}

	if out.events, err = b.eventsPhases(ctx, db, label, &srv, e, env, er); err != nil {
		return fmt.Errorf("events phases: %w", err)
	}

	if len(gor) > 0 {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("%s engine goroutines (go_goroutines) before → after each phase, "+
			"once the bench's connections are closed: %s.", label, strings.Join(gor, "; ")))
	}
	if opt.soak > 0 {
		if out.soak, err = b.soak(ctx, srv, e, label, er, logPath); err != nil {
			return err
		}
	}

	b.logf("%s: checking the books", label)
	vr, err := e.verify(ctx, opt.verifySample, 8)
	if err != nil {
		return err
	}
	if !vr.ok() {
		for _, p := range vr.problems {
			b.logf("%s: WRONG: %s", label, p)
		}
		examples := vr.problems[:min(3, len(vr.problems))]
		b.rep.failures = append(b.rep.failures, fmt.Sprintf("%s: %d wrong balances (of %d members checked), for example: %s",
			label, vr.problemsCnt, vr.checked, strings.Join(examples, "; ")))
	} else {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("%s books: for all %d members checked, available + pending equals the sum of the "+
			"ledger entries; for the %d whose every write got an answer, it also equals what their purchases earned minus what "+
			"their redemptions spent, as the bench counted from the responses.", label, vr.checked, vr.compared))
	}
	hwm := procStatusKB(srv.pid(), "VmHWM")
	b.rep.notes = append(b.rep.notes, fmt.Sprintf("%s engine peak RSS (VmHWM) over the whole run: %s MB.", label, fmtMB(hwm)))
	srv.stop()
	e.closeClients()

	if !opt.refs {
		return nil
	}
	return b.references(ctx, db, label, pg, &names, er, out)
}

// history writes the histories the -history sizes ask for and measures
// single requests against them.
func (b *bench) history(ctx context.Context, e *engine, label, logPath string) (*historyResult, error) {
	opt := b.opt
	classes := e.historyClasses(opt.history)
	n := 0
	for _, c := range classes {
		if c.size > 1 {
			n += c.size
		}
	}
	b.logf("%s: history: posting %d purchases spread over the past %s", label, n, fmtSpan(opt.historySpan))
	hr, err := e.buildHistory(ctx, classes, opt.historySpan, opt.seedConc, func(done, total int) {
		b.logf("  %d of %d posted", done, total)
	})
	if err != nil {
		return nil, fmt.Errorf("%w\nserver log:\n%s", err, tail(logPath, 10))
	}
	b.logf("  posted in %s (%s/s); expire-points took %s: %s", hr.build.Round(100*time.Millisecond),
		fmtRate(float64(hr.written)/max(hr.build.Seconds(), 1e-9)), hr.expire.Round(10*time.Millisecond), hr.expireSum)
	b.logf("  history: %d interleaved purchases and reads per size", opt.historyIters)
	e.measureHistory(ctx, hr, opt.historyIters)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, c := range hr.classes {
		b.logf("  %s: purchase p50 %s, balance read p50 %s, errors %s", fmtCount(c.size, "purchase"),
			fmtMS(c.purchase.percentile(50)), fmtMS(c.read.percentile(50)), c.errors)
	}
	b.rep.sections = append(b.rep.sections, hr.markdown(label))
	return hr, nil
}

// measure runs one phase against the engine, sampling its RSS every 500 ms
// and reading its goroutines before and after.
func (b *bench) measure(ctx context.Context, srv *server, e *engine, kinds []string, conc int, dur time.Duration,
	rate float64, mk newOp, logPath string) (*phaseResult, int64, int, int, error) {
	b.logf("  %s: %d clients, %s", strings.Join(kinds, " + "), conc, dur)
	g0 := srv.goroutines()
	rs := sampleRSS(srv.pid(), 500*time.Millisecond)
	busy0, ok0 := machineBusy()
	res := runPhase(ctx, kinds, conc, dur, rate, mk)
	if busy1, ok1 := machineBusy(); ok0 && ok1 {
		res.busy, res.busyOK = busy1-busy0, true
	}
	rssKB := rs.stop(srv.pid())
	e.closeClients()
	if err := ctx.Err(); err != nil {
		return nil, 0, 0, 0, err // a cut-short phase is not a measurement
	}
	time.Sleep(200 * time.Millisecond) // let the server notice the closed connections
	if !srv.alive() {
		return nil, 0, 0, 0, fmt.Errorf("the engine died during the phase (%v):\n%s", srv.waitErr, tail(logPath, 20))
	}
	g1 := srv.goroutines()
	if res.lastErr != nil {
		b.logf("  a transport error, for example: %v", res.lastErr)
	}
	b.logf("  %s/s ok, p99 %s, errors %s", fmtRate(res.throughput()), fmtMS(res.total.hist.percentile(99)), res.total.errors)
	return res, rssKB, g0, g1, nil
}

func (b *bench) phaseNote(label, name string, conc int, res *phaseResult, g0, g1 int, gor *[]string) {
	if g0 >= 0 && g1 >= 0 {
		*gor = append(*gor, fmt.Sprintf("%s with %d clients %d → %d", name, conc, g0, g1))
	}
	if res.target > 0 {
		sent := float64(res.total.ok+res.total.errors.total()) / res.elapsed.Seconds()
		// A few requests are always in flight when the clock stops: one
		// in a thousand left unsent is not falling behind.
		if sent < 0.95*res.target || float64(res.unsent)*1000 > res.target*res.elapsed.Seconds()*soakUnsentPerMille {
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("%s %s, %d clients: %s/s answered of %s/s asked, %s requests left "+
				"unsent at the end: the engine could not keep up, and the latencies include the wait.", label, name, conc,
				fmtRate(sent), fmtRate(res.target), groupThousands(res.unsent)))
		}
	}
}

// soak runs the mix at a fixed rate for -soak, sampling the engine's RSS
// and goroutines every -soak-every.
func (b *bench) soak(ctx context.Context, srv *server, e *engine, label string, er engineRun, logPath string) (*soakResult, error) {
	opt := b.opt
	conc := opt.conc[0]
	rate := opt.soakRate
	if rate == 0 {
		rate = opt.rate
	}
	if rate == 0 {
		rate = math.Max(10, math.Round(er.mix[conc]/2))
	}
	b.logf("%s: soak, mix at %s/s for %s with %d clients", label, fmtRate(rate), opt.soak, conc)
	type sample struct {
		at     time.Duration
		rssKB  int64
		gorout int
	}
	var (
		mu      sync.Mutex
		samples []sample
	)
	start := time.Now()
	take := func() {
		s := sample{time.Since(start), procStatusKB(srv.pid(), "VmRSS"), srv.goroutines()}
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
	}
	stopc, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		take()
		t := time.NewTicker(opt.soakEvery)
		defer t.Stop()
		for {
			select {
			case <-stopc:
				return
			case <-t.C:
				// Every sample is taken under load: none in the last
				// half-second, when the clients are stopping.
				if time.Since(start) < opt.soak-500*time.Millisecond {
					take()
				}
			}
		}
	}()
	idleBefore := srv.goroutines()
	kinds, mk := e.mixLoad()
	window := soakWindow(opt.soak)
	res := runPhaseWindows(ctx, kinds, conc, opt.soak, rate, mk, window)
	close(stopc)
	<-done
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !srv.alive() {
		return nil, fmt.Errorf("the engine died during the soak (%v):\n%s", srv.waitErr, tail(logPath, 20))
	}
	sr := &soakResult{rate: rate, dur: opt.soak, asked: int64(rate * opt.soak.Seconds()), answered: res.total.ok,
		unsent: res.unsent, errors: res.total.errors.total(), window: window, histDelta: res.kinds[mixPurchase].ok}
	if len(res.windows) > 0 {
		sr.first, sr.last = res.windows[0], res.windows[len(res.windows)-1]
	}
	b.rep.sections = append(b.rep.sections, soakMarkdown(label, sr, res.windows))
	var none []string
	b.phaseNote(label, "soak", conc, res, -1, -1, &none)
	e.closeClients()
	time.Sleep(200 * time.Millisecond)
	idleAfter := srv.goroutines()

	// The baseline is the first sample after the first minute (or after a
	// fifth of a shorter soak): start-up allocation is not growth.
	warm := time.Minute
	if opt.soak/5 < warm {
		warm = opt.soak / 5
	}
	base := samples[len(samples)-1]
	for _, s := range samples {
		if s.at >= warm {
			base = s
			break
		}
	}
	first, last := samples[0], samples[len(samples)-1]
	var maxRSS int64 = -1
	maxG := -1
	for _, s := range samples {
		maxRSS = max(maxRSS, s.rssKB)
		maxG = max(maxG, s.gorout)
	}
	rssGrew, rssVerdict := growth(base.rssKB, last.rssKB, 20, 10*1024)
	gGrew, gVerdict := growth(int64(base.gorout), int64(last.gorout), 10, 10)
	if last.gorout < 0 {
		gGrew, gVerdict = false, "not exported"
	}
	r := rowFrom(label, fmt.Sprintf("soak: mix @ %s/s for %s", fmtRate(rate), opt.soak), conc, res.total, res.elapsed, maxRSS)
	if rssGrew || gGrew {
		r.flag = "⚠ growth"
	}
	b.rep.rows = append(b.rep.rows, r)
	b.rep.notes = append(b.rep.notes, fmt.Sprintf("%s soak (%d samples every %s): RSS first %s / after %s %s / max %s / last %s MB, %s; "+
		"goroutines first %d / after %s %d / max %d / last %d, %s (idle before → after the soak: %d → %d).",
		label, len(samples), opt.soakEvery,
		fmtMB(first.rssKB), warm, fmtMB(base.rssKB), fmtMB(maxRSS), fmtMB(last.rssKB), mbVerdict(rssGrew, base.rssKB, last.rssKB, rssVerdict),
		first.gorout, warm, base.gorout, maxG, last.gorout, gVerdict, idleBefore, idleAfter))
	ok, why := sr.keepsUp()
	b.logf("  soak: %s/s ok, RSS %s→%s MB, goroutines %d→%d, keeps up: %v %s", fmtRate(res.throughput()), fmtMB(base.rssKB),
		fmtMB(last.rssKB), base.gorout, last.gorout, ok, why)
	return sr, nil
}

func mbVerdict(grew bool, base, last int64, v string) string {
	if !grew {
		return v
	}
	return fmt.Sprintf("GREW by %s MB (%+d%%)", fmtMB(last-base), pct(last-base, base))
}

// references measures the database alone at each client count and adds
// the ratios of the engine to it.
func (b *bench) references(ctx context.Context, db, label string, pg *pgAdmin, names *[]string, er engineRun, out *dbOutcome) error {
	opt := b.opt
	type ref interface {
		postLoad() ([]string, newOp)
		readLoad() ([]string, newOp)
		check(context.Context) error
		close()
	}
	maxConc := 0
	for _, c := range opt.conc {
		maxConc = max(maxConc, c)
	}
	var r ref
	var engRef *pgEngineRef
	var lite *liteMinimal
	var mstore minimalStore
	var pgURL string
	switch db {
	case "sqlite":
		sr, err := openSQLiteRef(ctx, filepath.Join(b.dir, "bare.db"), opt.members, maxConc)
		if err != nil {
			return err
		}
		if lite, err = openLiteMinimal(ctx, filepath.Join(b.dir, "minimal.db"), opt.members, 4); err != nil {
			return err
		}
		defer lite.close()
		mstore = lite
		r = sr
	case "postgres":
		name := fmt.Sprintf("loyalty_bench_%d_bare", os.Getpid())
		if err := pg.create(ctx, name); err != nil {
			return err
		}
		*names = append(*names, name)
		pr, err := openPGRef(ctx, pg.urlFor(name), opt.members, maxConc)
		if err != nil {
			return err
		}
		r = pr
		ename := fmt.Sprintf("loyalty_bench_%d_engref", os.Getpid())
		if err := pg.create(ctx, ename); err != nil {
			return err
		}
		*names = append(*names, ename)
		eref, err := openPGEngineRef(ctx, pg.urlFor(ename), opt.members)
		if err != nil {
			return err
		}
		defer eref.close()
		engRef, mstore = eref, eref
	}
	defer r.close()
	if db == "sqlite" {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("SQLite references: a separate file opened as the store opens its own "+
			"(WAL, synchronous NORMAL, busy timeout; one writer connection, BEGIN IMMEDIATE), in process, %d rows; reads through a pool "+
			"of as many connections as clients. Posting is SELECT the balance, INSERT a ledger row, UPDATE the balance, COMMIT.", opt.members))
	} else {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("PostgreSQL references: pgx pool (as many connections as clients) on a scratch "+
			"database of the same server, %d rows; posting is BEGIN, SELECT … FOR UPDATE, INSERT a ledger row, UPDATE the balance, "+
			"COMMIT; pgbench -S at scale %d with -j 2 (it reports no percentiles, only the average latency).", opt.members, opt.pgbenchScale))
	}

	python := ""
	if db == "sqlite" && opt.python != "" {
		if p, err := exec.LookPath(opt.python); err == nil {
			python = p
			b.rep.notes = append(b.rep.notes, "C SQLite reference: Python's sqlite3 module (the C library) on a new file, WAL, "+
				"synchronous NORMAL; as many threads as clients share one writer connection, as the engine's requests share "+
				"its one writer, and each transaction is BEGIN IMMEDIATE, UPDATE the balance, INSERT a ledger row, COMMIT. "+
				"Latency includes the wait for the connection; Python's own cost per statement is included.")
		} else {
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("%s not found: the C SQLite reference was skipped (give -python PATH).", opt.python))
		}
	}
	pgbenchBin := ""
	if db == "postgres" {
		if pgbenchBin = findPgbench(opt.pgbench); pgbenchBin == "" {
			b.rep.notes = append(b.rep.notes, "pgbench not found: its reference was skipped (give -pgbench PATH).")
		} else {
			name := fmt.Sprintf("loyalty_bench_%d_pgbench", os.Getpid())
			if err := pg.create(ctx, name); err != nil {
				return err
			}
			*names = append(*names, name)
			pgURL = pg.urlFor(name)
			b.logf("%s: pgbench -i -s %d", label, opt.pgbenchScale)
			if _, err := runPgbench(ctx, pgbenchBin, pgURL, "-i", "-q", "-s", strconv.Itoa(opt.pgbenchScale)); err != nil {
				b.rep.notes = append(b.rep.notes, "pgbench -i failed, its reference was skipped: "+firstLine(err.Error()))
				pgbenchBin = ""
			}
		}
	}

	for _, conc := range opt.conc {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch x := r.(type) {
		case *pgRef:
			x.warm(ctx, conc)
		case *sqliteRef:
			x.setReadConns(conc)
		}
		b.logf("  ref bare posting: %d clients, %s", conc, opt.duration)
		kinds, mk := r.postLoad()
		post := runPhase(ctx, kinds, conc, opt.duration, 0, mk)
		b.rep.rows = append(b.rep.rows, rowFrom(label, "ref: bare SQL posting", conc, post.total, post.elapsed, -1))
		if db == "postgres" && conc == out.clients {
			out.barePosting = post.throughput()
		}
		if engRef != nil {
			engRef.warm(ctx, conc)
			b.logf("  ref engine statements: %d clients, %s", conc, opt.duration)
			kinds, mk := engRef.postLoad()
			ep := runPhase(ctx, kinds, conc, opt.duration, 0, mk)
			b.rep.rows = append(b.rep.rows, rowFrom(label, "ref: engine's statements without the engine", conc, ep.total, ep.elapsed, -1))
			if ep.lastErr != nil {
				b.logf("  reference error, for example: %v", ep.lastErr)
			}
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("%s, %d clients: engine purchases / engine's statements without the engine "+
				"%s / %s; engine's statements without the engine / bare posting %s / %s.", label, conc, fmtRate(er.purchases[conc]),
				fmtRate(ep.throughput()), fmtRate(ep.throughput()), fmtRate(post.throughput())))
		}
		if mstore != nil {
			mp, mr, err := b.minimalRef(ctx, mstore, conc)
			if err != nil {
				return err
			}
			b.rep.rows = append(b.rep.rows,
				rowFrom(label, "ref: the same work over HTTP without the engine: purchases", conc, mp.total, mp.elapsed, -1),
				rowFrom(label, "ref: the same work over HTTP without the engine: balance reads", conc, mr.total, mr.elapsed, -1))
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("%s, %d clients: engine / the same work over HTTP without the engine: "+
				"purchases %s / %s = %d%%, balance reads %s / %s = %d%%.", label, conc,
				fmtRate(er.purchases[conc]), fmtRate(mp.throughput()), pctOf(er.purchases[conc], mp.throughput()),
				fmtRate(er.reads[conc]), fmtRate(mr.throughput()), pctOf(er.reads[conc], mr.throughput())))
		}
		b.logf("  ref bare read: %d clients, %s", conc, opt.duration)
		kinds, mk = r.readLoad()
		read := runPhase(ctx, kinds, conc, opt.duration, 0, mk)
		b.rep.rows = append(b.rep.rows, rowFrom(label, "ref: bare SQL read by key", conc, read.total, read.elapsed, -1))
		for _, x := range []*phaseResult{post, read} {
			if x.lastErr != nil {
				b.logf("  reference error, for example: %v", x.lastErr)
			}
		}
		if pgbenchBin != "" {
			secs := int(math.Ceil(opt.duration.Seconds()))
			jobs := min(2, conc)
			b.logf("  ref pgbench -S: %d clients, %ds", conc, secs)
			pgOut, err := runPgbench(ctx, pgbenchBin, pgURL, "-S", "-n", "-c", strconv.Itoa(conc), "-j", strconv.Itoa(jobs),
				"-T", strconv.Itoa(secs))
			var pr pgbenchResult
			if err == nil {
				pr, err = parsePgbench(pgOut)
			}
			if err != nil {
				b.rep.notes = append(b.rep.notes, fmt.Sprintf("pgbench -S with %d clients failed: %s", conc, firstLine(err.Error())))
			} else {
				errs := statusCounts{}
				errs.add("failed", pr.failed)
				b.rep.rows = append(b.rep.rows, row{db: label, workload: fmt.Sprintf("ref: pgbench -S (avg %s)", fmtMS(pr.latency)),
					clients: conc, tput: pr.tps, errors: errs.String(), rssKB: -1})
				if conc == out.clients {
					out.pgbenchS = pr.tps
				}
			}
		}
		var cPost float64
		if python != "" {
			b.logf("  ref bare C SQLite posting: %d clients, %s", conc, opt.duration)
			cr, err := runCSQLite(ctx, python, filepath.Join(b.dir, fmt.Sprintf("bare-c-%d.db", conc)), opt.members, conc, opt.duration)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				b.rep.notes = append(b.rep.notes, fmt.Sprintf("The C SQLite reference with %d clients failed: %s", conc, firstLine(err.Error())))
			} else {
				b.rep.rows = append(b.rep.rows, cr.row(label, conc))
				cPost = cr.throughput()
				if conc == out.clients {
					out.barePosting = cPost
				}
			}
		}
		if opt.rate > 0 {
			continue
		}
		ratio := func(what string, eng, bare float64) string {
			if bare <= 0 {
				return what + " n/a"
			}
			return fmt.Sprintf("%s %s / %s = %d%%", what, fmtRate(eng), fmtRate(bare), int64(math.Round(eng*100/bare)))
		}
		cRatio := ""
		if cPost > 0 {
			cRatio = "; " + ratio("engine purchases / bare C SQLite posting", er.purchases[conc], cPost)
		}
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("%s, %d clients: %s; %s%s.", label, conc,
			ratio("engine purchases / bare posting", er.purchases[conc], post.throughput()),
			ratio("engine balance reads / bare reads", er.reads[conc], read.throughput()), cRatio))
	}
	if err := r.check(ctx); err != nil {
		return err
	}
	if lite != nil {
		if err := lite.check(ctx); err != nil {
			return fmt.Errorf("the minimal server's books: %w", err)
		}
	}
	if engRef != nil {
		return engRef.check(ctx)
	}
	return nil
}

// minimalRef runs the bench's purchases, then its balance reads, with conc
// clients against the minimal server over store (minimal.go).
func (b *bench) minimalRef(ctx context.Context, store minimalStore, conc int) (post, read *phaseResult, err error) {
	srv, err := startMinimal(store)
	if err != nil {
		return nil, nil, err
	}
	defer srv.close()
	e := minimalEngine(srv.addr(), refMembers(b.opt.members), b.opt.stores, b.opt.timeout)
	defer e.closeClients()
	b.logf("  ref the same work over HTTP without the engine: purchases, %d clients, %s", conc, b.opt.duration)
	kinds, mk := e.purchasesLoad()
	post = runPhase(ctx, kinds, conc, b.opt.duration, 0, mk)
	e.closeClients()
	b.logf("  ref the same work over HTTP without the engine: balance reads, %d clients, %s", conc, b.opt.duration)
	kinds, mk = e.balanceLoad()
	read = runPhase(ctx, kinds, conc, b.opt.duration, 0, mk)
	for _, x := range []*phaseResult{post, read} {
		if x.lastErr != nil {
			b.logf("  reference error, for example: %v", x.lastErr)
		}
	}
	return post, read, nil
}

func pctOf(a, b float64) int64 {
	if b <= 0 {
		return 0
	}
	return int64(math.Round(a * 100 / b))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// profile asks the engine for a CPU profile covering most of a phase and
// saves it as <dir>/<name>.pprof; the returned func waits for it. It does
// nothing without -profile.
func (b *bench) profile(srv *server, e *engine, name string, dur time.Duration) func() {
	if b.opt.profileDir == "" {
		return func() {}
	}
	secs := max(1, int((dur-time.Second)/time.Second))
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(res)
		req.SetRequestURI(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", srv.addr, secs))
		req.Header.SetBytesV("Authorization", e.adminAuth)
		if err := fasthttp.DoTimeout(req, res, dur+30*time.Second); err != nil || res.StatusCode() != 200 {
			b.logf("  profile %s: %v (status %d)", name, err, res.StatusCode())
			return
		}
		path := filepath.Join(b.opt.profileDir, name+".pprof")
		if err := os.MkdirAll(b.opt.profileDir, 0o755); err != nil {
			b.logf("  profile %s: %v", name, err)
			return
		}
		if err := os.WriteFile(path, res.Body(), 0o644); err != nil {
			b.logf("  profile %s: %v", name, err)
			return
		}
		b.logf("  CPU profile: %s", path)
	}()
	return func() { <-done }
}
