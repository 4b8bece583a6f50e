package loyalty

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// On PostgreSQL the store holds two pools on one DSN, both pgx underneath:
// GORM's, over database/sql, for configuration and the writes that are not
// on the hot path, and a pgxpool for purchases and balance reads, which
// batch their statements so that each costs a fixed, small number of round
// trips (see pg_purchase.go). The connections of both count towards one
// total.
//
// A purchase holds its pgx connection from its first round trip to its
// commit, including the engine's work between them, so the pool needs more
// connections than the engine has cores to keep the database busy; but
// every connection is a backend process, and on a machine whose cores the
// database shares with the engine, more runnable backends than cores only
// queue in the kernel's scheduler, where no order holds: the requests'
// tails grow. The pgx pool has PGPoolConns connections, unless the URL's
// pool_max_conns (pgxpool's own parameter) names another number. Measured
// on 2 cores with PostgreSQL on the same machine, 32 clients, alternated
// runs: a pool of 32 against one of 4 gave the same throughput, but p99
// 22 ms against 10–12 ms for balance reads, 123 ms against 63 ms for
// purchases, and 110–120 ms against 38 ms for the 80/20 mix.
const pgGormConns = 10

// PGPoolConns is the default size of the pgx pool of purchases and balance
// reads: twice the cores the engine may use, at least 4.
func PGPoolConns() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// pgTracer sees every statement and round trip of both pools, at the pgx
// level: tests count them (a structural measure, not a timing).
type pgTracer struct {
	stmt atomic.Pointer[func(sql string)]
	trip atomic.Pointer[func()]
}

func (t *pgTracer) onStmt(sql string) {
	if f := t.stmt.Load(); f != nil {
		(*f)(sql)
	}
}

func (t *pgTracer) onTrip() {
	if f := t.trip.Load(); f != nil {
		(*f)()
	}
}

// A statement outside a batch is one round trip; a batch is one round trip
// for all its statements; preparing a statement is one more.
func (t *pgTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	t.onTrip()
	t.onStmt(d.SQL)
	return ctx
}
func (t *pgTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (t *pgTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	t.onTrip()
	return ctx
}
func (t *pgTracer) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	t.onStmt(d.SQL)
}
func (t *pgTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}
func (t *pgTracer) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	t.onTrip()
	return ctx
}
func (t *pgTracer) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// TraceRoundTrips calls fn on every round trip the store makes to
// PostgreSQL from now on, through either pool; a no-op on SQLite, where a
// statement costs no round trip.
func (s *Store) TraceRoundTrips(fn func()) {
	if s.tracer != nil {
		s.tracer.trip.Store(&fn)
	}
}

// OpenOption tunes Open.
type OpenOption func(*openOptions)

type openOptions struct {
	warm       bool
	writerNice int    // WriterNice
	jobsCgroup string // JobsCgroup
}

// WarmPool has Open keep every connection of the PostgreSQL pool open from
// the start, as a serving engine wants: its pool_min_conns is its
// pool_max_conns unless the URL names pool_min_conns. A connection opened
// during a burst costs a backend's start, its catalog caches and the
// preparing of the hot path's statements: sixteen opened at once held the
// first purchases of a burst for over a second on a 2-core machine. It
// does nothing on SQLite.
func WarmPool() OpenOption { return func(o *openOptions) { o.warm = true } }

// Warm opens the PostgreSQL pool's connections that WarmPool keeps, all
// at once, and returns once they are open (at most warmWait): a serving
// engine calls it after Migrate, so that its first requests do not wait
// for them. The pool opened them in the background as it was created,
// but on a new database the hot path's statements cannot be prepared
// before the migrations have run. It does nothing on SQLite or without
// WarmPool.
func (s *Store) Warm(ctx context.Context) {
	if s.pg == nil || s.pg.Config().MinConns == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, warmWait)
	defer cancel()
	n := int(s.pg.Config().MinConns)
	conns := make(chan *pgxpool.Conn, n)
	for range n {
		go func() {
			c, err := s.pg.Acquire(ctx)
			if err != nil {
				c = nil
			}
			conns <- c
		}()
	}
	for range n {
		if c := <-conns; c != nil {
			c.Release()
		}
	}
}

// warmWait bounds Warm.
const warmWait = 10 * time.Second

// openPostgres opens GORM and the pgx pool on one traced configuration.
func openPostgres(ctx context.Context, rawURL string, cfg *gorm.Config, o openOptions) (*Store, error) {
	pcfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	cfg.Plugins[eventsPlugin] = newEventHub(true)
	tracer := &pgTracer{}
	pcfg.ConnConfig.Tracer = tracer
	sdb := stdlib.OpenDB(*pcfg.ConnConfig.Copy())
	sdb.SetMaxOpenConns(pgGormConns)
	sdb.SetMaxIdleConns(pgGormConns)
	sdb.SetConnMaxIdleTime(5 * time.Minute)
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sdb}), cfg)
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	// The hot path's fixed statements are prepared once per connection, as
	// it opens; every other statement is sent with its parameters in the
	// round trip that runs it (no separate prepare).
	pcfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	if !strings.Contains(rawURL, "pool_max_conns") {
		pcfg.MaxConns = int32(PGPoolConns())
	}
	pcfg.MaxConnIdleTime = 5 * time.Minute
	if o.warm && !strings.Contains(rawURL, "pool_min_conns") {
		pcfg.MinConns = pcfg.MaxConns
	}
	pcfg.AfterConnect = preparePG
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return &Store{Dialect: Postgres, w: db, r: db, sqlDBs: []*sql.DB{sdb}, pg: pool, tracer: tracer,
		jobs: newJobCgroup(o.jobsCgroup, pcfg.ConnConfig.Host)}, nil
}
