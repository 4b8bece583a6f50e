// Command loyalty runs the loyalty engine: the HTTP server, migrations,
// token issuance and the demo program.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	// Timezones of programs and members must resolve on any host, even a
	// minimal container image without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/loyalty-engine/loyalty/api"
	"github.com/loyalty-engine/loyalty/jobs"
	demoprog "github.com/loyalty-engine/loyalty/jobs/demo"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/natsink"
	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
	"github.com/loyalty-engine/loyalty/rewards"
)

const usage = `loyalty — a loyalty-program engine

usage:
  loyalty serve [--demo]             run the HTTP API (applies migrations first;
                                     --demo loads the demo program into an empty database)
  loyalty migrate up|status          apply or list database migrations
  loyalty token --role R --sub S [--ttl 24h] [--store-id S]
                                     print a signed API token
  loyalty console-link [--ttl 15m] [--sub S] [--role admin|marketer] [--base URL]
                                     print a sign-in link to the web console
  loyalty seed demo [--members 300]  load a demo program with members and history
  loyalty jobs list                  list the jobs and their last runs
  loyalty jobs run NAME [--as-of T]  run a job now (T: RFC 3339, default now)
  loyalty import members|purchases FILE [--dry-run] [--earn]
                                     import a CSV file (API.md §15) with a progress bar
  loyalty healthcheck                exit 0 when the local server is ready (for containers)
  loyalty backup FILE                write a consistent copy of the database while it serves
                                     (SQLite: VACUUM INTO; PostgreSQL: runs pg_dump -Fc)

environment:
  LOYALTY_DATABASE_URL  sqlite://PATH (default sqlite://loyalty.db) or postgres://…
  LOYALTY_ADDR          listen address (default :8080)
  LOYALTY_JWT_SECRET    HS256 secret: at least 32 characters, not blank or repetitive
                        (e.g. openssl rand -hex 32); required with PostgreSQL
  LOYALTY_JWT_ISSUER, LOYALTY_JWT_AUDIENCE   enforced on tokens when set
  LOYALTY_LOG_LEVEL     debug, info, warn or error (default info)
  LOYALTY_RATE_LIMIT    requests a minute per caller on /v1 (default 0: unlimited)
  LOYALTY_METRICS_TOKEN bearer token a Prometheus scraper sends to GET /metrics (at least
                        32 characters); without it /metrics takes an admin token
  LOYALTY_METRICS_ADDR  serve /metrics on this address instead (e.g. 127.0.0.1:9090):
                        open there, or with LOYALTY_METRICS_TOKEN when it is set
  LOYALTY_NATS_URL      publish every event to NATS JetStream (e.g. nats://127.0.0.1:4222)
  LOYALTY_NATS_STREAM   the stream, created when absent (default LOYALTY_EVENTS)
  LOYALTY_NATS_SUBJECT  the subjects' prefix: <prefix>.<event type> (default loyalty.events)
  LOYALTY_STREAMS_PER_CALLER  open balance streams one caller may hold (default 8)
  LOYALTY_WEBHOOK_TIMEOUT      time a webhook endpoint has to answer (default 10s)
  LOYALTY_WEBHOOK_FIRST_RETRY  longest wait before a failed delivery's first retry
                               (default 4s; later waits double, up to an hour)
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loyalty:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		demo := fs.Bool("demo", false, "load the demo program first when the database has no members")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return serve(ctx, cfg, log, stdout, *demo)
	case "migrate":
		return migrate(ctx, cfg, args[1:], stdout)
	case "token":
		return token(cfg, args[1:], stdout)
	case "console-link":
		return consoleLink(cfg, args[1:], stdout)
	case "seed":
		return seed(ctx, cfg, args[1:], stdout)
	case "healthcheck":
		return healthcheck(ctx, cfg)
	case "backup":
		return backup(ctx, cfg, args[1:], stdout)
	case "jobs":
		return jobsCmd(ctx, cfg, args[1:], stdout)
	case "import":
		return importCmd(ctx, cfg, args[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown command %q\n\n%s", args[0], usage)
}

func openStore(ctx context.Context, cfg config, opts ...loyalty.OpenOption) (*loyalty.Store, error) {
	store, err := loyalty.Open(ctx, cfg.DatabaseURL, append([]loyalty.OpenOption{loyalty.JobsCgroup(cfg.JobsCgroup)}, opts...)...)
	if err != nil {
		return nil, err
	}
	if err := store.Migrate(ctx); err != nil {
		store.Close()
		return nil, err
	}
	return store, nil
}

func serve(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, demo bool) error {
	tuneGC()
	// The engine serving requests keeps its pool's connections open.
	store, err := openStore(ctx, cfg, loyalty.WarmPool(), loyalty.WriterNice(cfg.WriterNice))
	if err != nil {
		return err
	}
	if store.Dialect == loyalty.SQLite && cfg.WriterNice < 0 {
		if nice, err := store.WriterPriority(); err != nil {
			log.Info("the SQLite writer keeps the process's priority; grant CAP_SYS_NICE to let till writes run ahead of deliveries",
				"reason", err.Error())
		} else {
			log.Info("the SQLite writer commits till writes at a raised priority", "nice", nice)
		}
	}
	if dir, err := store.JobsCgroup(); err != nil {
		log.Info("the nightly jobs' database backends keep their priority", "cgroup", dir, "reason", err.Error())
	} else if dir != "" {
		log.Info("the nightly jobs run their database backends in an idle cgroup (the batches that lock balances for 50 ms at most)", "cgroup", dir)
	}
	store.Warm(ctx)
	defer store.Close()
	if demo {
		sum, err := demoprog.Load(ctx, store, loyalty.DemoOptions{Members: 300, Seed: 1, Now: time.Now()})
		switch {
		case errors.Is(err, loyalty.ErrNotEmpty):
			log.Info("demo skipped: the database already has members")
		case err != nil:
			return err
		default:
			log.Info("demo program loaded", "members", sum.Members, "purchases", sum.Purchases,
				"purchases_imported", sum.Imports[1].RowsCreated, "redemptions", sum.Redemptions, "feedback", sum.Feedback)
		}
	}
	metrics := api.NewMetrics()
	svc := loyalty.NewService(store, loyalty.WithObserver(metrics))
	// Imports left running by a process that stopped are failed, so that
	// the file can be imported again (what they committed is skipped).
	if n, err := svc.FailAbandonedImports(ctx); err != nil {
		return err
	} else if n > 0 {
		log.Warn("imports left running by a stopped process were failed", "imports", n)
	}
	// The event log's sequencer (PostgreSQL) runs in every serve process,
	// also with LOYALTY_JOBS=off; it stops after the HTTP server has
	// drained (defers run last first).
	stopSequencer := svc.StartSequencer(ctx, func(err error) { log.Warn("event sequencer", "err", err) })
	defer stopSequencer()
	rw := rewards.NewService(svc)
	runner := jobs.NewRunner(svc, rw)
	runner.ScheduleFromEnv()
	hooks := webhooks.NewService(svc)
	httpCfg := cfg.HTTP
	httpCfg.Auth, httpCfg.Logger, httpCfg.Rewards, httpCfg.Jobs, httpCfg.RateLimit = cfg.Auth, log, rw, runner, cfg.RateLimit
	httpCfg.Webhooks = hooks
	app := api.New(svc, httpCfg, metrics)
	// Webhook deliveries run in every serve process, LOYALTY_JOBS or not
	// (§14); they stop with the signal, after the HTTP server.
	whCfg := cfg.Webhooks
	whCfg.Logger, whCfg.Registry = log, metrics.Registry()
	dispatchCtx, stopDispatch := context.WithCancel(context.WithoutCancel(ctx))
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		_ = webhooks.NewDispatcher(hooks, whCfg).Run(dispatchCtx)
	}()
	defer func() { stopDispatch(); <-dispatched }()
	if cfg.Jobs {
		sched, err := runner.StartScheduler(ctx, log)
		if err != nil {
			return err
		}
		defer sched.Stop()
	}

	if cfg.NATS.URL != "" {
		// The sink runs in every serve process, jobs or not: the processes
		// take turns through the cursor's lease. It stops after the HTTP
		// server, so that events of the last requests are published now
		// rather than by the next process.
		nc := cfg.NATS
		nc.Logger = log
		sink := natsink.New(svc, nc)
		sinkCtx, stopSink := context.WithCancel(context.Background())
		sinkDone := make(chan struct{})
		go func() {
			defer close(sinkDone)
			if err := sink.Run(sinkCtx); err != nil {
				log.Error("nats sink stopped", "err", err)
			}
		}()
		defer func() { stopSink(); <-sinkDone }()
		log.Info("publishing events to NATS JetStream", "stream", nc.Stream, "subjects", nc.Subject+".>")
	}

	errc := make(chan error, 2)
	go func() { errc <- app.Listen(cfg.Addr) }()
	log.Info("serving", "addr", cfg.Addr, "database", store.Dialect)
	if cfg.MetricsAddr != "" {
		mapp := api.MetricsApp(metrics, cfg.HTTP.MetricsToken)
		go func() { errc <- mapp.Listen(cfg.MetricsAddr) }()
		defer func() { _ = mapp.ShutdownWithTimeout(5 * time.Second) }()
		log.Info("serving metrics", "addr", cfg.MetricsAddr)
	}
	if cfg.SecretFile != "" {
		welcome(cfg, stdout)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	if err := app.ShutdownWithTimeout(20 * time.Second); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// welcome shows a newcomer on the embedded database how to call the API
// at once: an admin token and a request to try.
func welcome(cfg config, w io.Writer) {
	tok, err := api.SignToken(cfg.Auth, loyalty.RoleAdmin, "admin", "", 24*time.Hour, time.Now())
	if err != nil {
		return
	}
	host := cfg.Addr
	if strings.HasPrefix(host, ":") {
		host = "localhost" + host
	}
	fmt.Fprintf(w, `
Loyalty engine on http://%s (embedded database; signing secret in %s)
An admin token, valid for 24 hours:

  export TOKEN=%s

Try:
  curl -s -H "Authorization: Bearer $TOKEN" http://%s/v1/program

The web console is at http://%s/console (sign in with the token above).

`, host, cfg.SecretFile, tok, host, host)
}

func migrate(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) != 1 || (args[0] != "up" && args[0] != "status") {
		return errors.New("usage: loyalty migrate up|status")
	}
	store, err := loyalty.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer store.Close()
	if args[0] == "up" {
		if err := store.Migrate(ctx); err != nil {
			return err
		}
	}
	return store.MigrationStatus(ctx, stdout)
}

func token(cfg config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	role := fs.String("role", "", "admin, marketer, pos or member")
	sub := fs.String("sub", "", "subject: an operator, a till, or a member id")
	ttl := fs.Duration("ttl", 24*time.Hour, "validity")
	store := fs.String("store-id", "", "restrict a pos token to this store")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ttl <= 0 {
		return errors.New("--ttl must be positive")
	}
	tok, err := api.SignToken(cfg.Auth, loyalty.Role(*role), *sub, *store, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// consoleLink prints a link that signs its opener in to the web console.
// The token rides in the URL fragment, which the browser keeps to itself:
// it reaches the server only as the sign-in form's body, never in a URL.
func consoleLink(cfg config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("console-link", flag.ContinueOnError)
	ttl := fs.Duration("ttl", 15*time.Minute, "how long the link (and the session it opens) is valid")
	sub := fs.String("sub", "console", "subject: who signs in")
	role := fs.String("role", string(loyalty.RoleAdmin), "admin or marketer")
	base := fs.String("base", "", "the engine's public origin, such as https://loyalty.example.com (default http://LOYALTY_ADDR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if r := loyalty.Role(*role); r != loyalty.RoleAdmin && r != loyalty.RoleMarketer {
		return errors.New("--role must be admin or marketer")
	}
	if *ttl <= 0 {
		return errors.New("--ttl must be positive")
	}
	tok, err := api.SignToken(cfg.Auth, loyalty.Role(*role), *sub, "", *ttl, time.Now())
	if err != nil {
		return err
	}
	origin := strings.TrimSuffix(*base, "/")
	if origin == "" {
		origin = "http://" + cfg.Addr
		if strings.HasPrefix(cfg.Addr, ":") {
			origin = "http://localhost" + cfg.Addr
		}
	}
	fmt.Fprintf(stdout, "%s/console/login#token=%s\n", origin, tok)
	return nil
}

// healthcheck asks the server on LOYALTY_ADDR whether it is ready, so a
// container image needs no curl.
func healthcheck(ctx context.Context, cfg config) error {
	host := cfg.Addr
	if strings.HasPrefix(host, ":") {
		host = "127.0.0.1" + host
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/readyz", nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /readyz answered %d", res.StatusCode)
	}
	return nil
}

func jobsCmd(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "run") {
		return errors.New("usage: loyalty jobs list | loyalty jobs run NAME [--as-of RFC3339]")
	}
	store, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	svc := loyalty.NewService(store)
	runner := jobs.NewRunner(svc, rewards.NewService(svc))
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if args[0] == "list" {
		l, err := runner.List(ctx)
		if err != nil {
			return err
		}
		return enc.Encode(l)
	}
	if len(args) < 2 {
		return errors.New("usage: loyalty jobs run NAME [--as-of RFC3339]")
	}
	fs := flag.NewFlagSet("jobs run", flag.ContinueOnError)
	asOf := fs.String("as-of", "", "the instant the job computes as of (RFC 3339; default now)")
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	at := time.Now()
	if *asOf != "" {
		if at, err = time.Parse(time.RFC3339Nano, *asOf); err != nil {
			return fmt.Errorf("--as-of: %w", err)
		}
	}
	rec, err := runner.Run(ctx, args[1], at, "cli")
	if err != nil {
		return err
	}
	if err := enc.Encode(rec); err != nil {
		return err
	}
	if rec.Status != jobs.Succeeded {
		return fmt.Errorf("job %s failed", args[1])
	}
	return nil
}

func seed(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) < 1 || args[0] != "demo" {
		return errors.New("usage: loyalty seed demo [--members N] [--seed N]")
	}
	fs := flag.NewFlagSet("seed demo", flag.ContinueOnError)
	members := fs.Int("members", 300, "how many members")
	rnd := fs.Int64("seed", 1, "random seed")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	store, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	sum, err := demoprog.Load(ctx, store, loyalty.DemoOptions{Members: *members, Seed: *rnd, Now: time.Now()})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo program loaded: %d members, %d purchases (%d imported), %d returns, %d paid with points, %d points issued, %d redemptions, %d feedback answers\n",
		sum.Members, sum.Purchases, sum.Imports[1].RowsCreated, sum.Returns, sum.Payments, sum.PointsIssued, sum.Redemptions, sum.Feedback)
	return nil
}
