package loyalty

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/libtnb/sqlite"
	"github.com/pressly/goose/v3"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/loyalty-engine/loyalty/migrations"
)

// Dialects the store speaks.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Store is the engine's database. Writes go through one transaction per
// service call; reads may use a separate pool.
//
// SQLite is a real deployment, not a stand-in: it runs in WAL mode with a
// busy timeout, and every write goes through a single connection whose
// transactions begin IMMEDIATE, so writers queue in Go instead of failing
// with SQLITE_BUSY, while readers use their own connections concurrently.
// The writes that queue together share one transaction and one COMMIT
// (groupcommit.go).
type Store struct {
	Dialect string
	w       *gorm.DB // writes: one connection on SQLite
	r       *gorm.DB // reads
	sqlDBs  []*sql.DB
	pools   []*stmtPool
	group   *groupCommitter // SQLite's writes; nil on PostgreSQL
	ckpt    *checkpointer   // SQLite's WAL checkpoints; nil on PostgreSQL
	// Path is the SQLite file, empty for PostgreSQL.
	Path string
	// pg is the pgx pool of the hot path on PostgreSQL (see pgpool.go),
	// tracer sees the statements of both pools.
	pg     *pgxpool.Pool
	tracer *pgTracer
	// offersSeen is whether any offer was active when the hot path last
	// read offers_version (nil: not yet read).
	offersSeen atomic.Pointer[offersSeen]
	// bulkWAL is what an import chunk's or a nightly job's transaction
	// sets wal_compression to on PostgreSQL, "" to leave it
	// (bulkWALCompression).
	bulkWAL     string
	bulkWALOnce sync.Once
	// tail is the newest events read from the log (events_tail.go).
	tail eventTail
	// jobs moves the nightly jobs' backends into an idle cgroup
	// (jobcgroup.go); nil when none was asked for.
	jobs *jobCgroup
	// served is when the latest write for a caller began (NoteServing),
	// in Unix nanoseconds (0: none yet); see busyServing.
	served atomic.Int64
}

// NoteServing records that a write for a caller begins: a request that
// changes something (the API calls it for every such /v1 request but a
// job's run), and the hot paths of purchases and till batches, which
// callers of the Service reach without the API. The engine's own
// background writes (event relays, webhook deliveries, jobs) do not.
func (s *Store) NoteServing() { s.served.Store(time.Now().UnixNano()) }

// ServedAt is when the latest write for a caller began in this process
// (NoteServing); zero when none has.
func (s *Store) ServedAt() time.Time {
	if t := s.served.Load(); t != 0 {
		return time.Unix(0, t)
	}
	return time.Time{}
}

// busyServing reports whether a write for a caller began in this process
// within the last quiet: a job that can do its work on fewer cores (the
// expiry's second worker) leaves them to the tills then. Writes sent to
// other engine processes on the same database are not seen here.
func (s *Store) busyServing(quiet time.Duration) bool {
	t := s.ServedAt()
	return !t.IsZero() && time.Since(t) < quiet
}

// Open connects to a database URL: sqlite://PATH or postgres://….
func Open(ctx context.Context, rawURL string, opts ...OpenOption) (*Store, error) {
	var o openOptions
	for _, opt := range opts {
		opt(&o)
	}
	cfg := &gorm.Config{TranslateError: true, Logger: logger.Discard, NowFunc: func() time.Time { return ts(time.Now()) },
		Plugins: map[string]gorm.Plugin{settingsPlugin: &settingsCache{}}}
	switch {
	case strings.HasPrefix(rawURL, "sqlite://"), strings.HasPrefix(rawURL, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(rawURL, "sqlite:"), "//")
		if path == "" {
			return nil, errors.New("open store: sqlite URL has no path")
		}
		if dir := filepath.Dir(path); dir != "." {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("open store: %w", err)
			}
		}
		cfg.Plugins[eventsPlugin] = newEventHub(false)
		if err := registerSQLiteFuncs(); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		// Times are stored as text in SQLite's own format, which sorts as it
		// compares: every stored instant is UTC (see ts).
		base := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)" +
			"&_texttotime=1&_inttotime=1&_time_format=sqlite"
		// The writer's temporary storage is memory: group commit gives
		// each write a savepoint, whose journal of the pages it changes
		// would otherwise spill to a temporary file with a write() for
		// every page past 64 KiB (groupcommit.go).
		// It does not checkpoint the WAL: the checkpointer does, on a
		// connection of its own, off the commit path (checkpoint.go).
		// A large transaction (a till's batch) keeps its dirty pages in
		// memory up to 32 MiB (cache_spill) rather than past the 2 MiB
		// cache, where each page spilled to the WAL would be written
		// again, and read back, when changed again before the commit.
		// Its page cache is 16 MiB, not SQLite's 2 MiB, and no larger: a
		// purchase's B-tree splits move a page through the lock-byte page's
		// number (1 GiB / 4 KiB + 1) while they sort new pages, and every
		// commit after one walks the whole page cache's hash table to drop
		// pages past the database's end (pcache1TruncateUnsafe), a cost
		// that grows with the cache, not with the write. With 128 MiB
		// that walk was 12.6% of the engine's CPU in a 60 s purchases
		// phase, on the one writer's path; with 16 MiB it is 2.1%, while
		// the pages read back from the OS grew from 3.4% to 7.5%:
		// 2,183 purchases/s against 1,820, and 84 MB of RSS against 318.
		// Writes alone in their transaction (imports, jobs) keep the same
		// cache: they stream through more pages than any cache holds, and a
		// larger one for them would grow the hash table for good (SQLite
		// never shrinks it), so that every later commit walked more. A
		// 300,000-row import ran at 20,200–20,350 rows/s with 16 MiB
		// against 18,850–19,950 with 32 MiB, RSS 124 against 153 MB.
		wdb, err := sql.Open(sqlite.DriverName, base+"&_txlock=immediate&_pragma=temp_store(MEMORY)&_pragma=wal_autocheckpoint(0)&_pragma=cache_spill("+strconv.Itoa(writerSpill)+")&_pragma=cache_size("+strconv.Itoa(writerCache)+")")
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		wdb.SetMaxOpenConns(1)
		wpool := newStmtPool(wdb)
		w, err := gorm.Open(sqlite.New(sqlite.Config{Conn: wpool}), cfg)
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		rdb, err := sql.Open(sqlite.DriverName, base+"&_pragma=query_only(1)")
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		// Every reader stays open: database/sql keeps two idle by default,
		// and a reader closed and reopened under load pays its pragmas, the
		// schema's parse and every statement's prepare again.
		rdb.SetMaxOpenConns(4)
		rdb.SetMaxIdleConns(4)
		rpool := newStmtPool(rdb)
		r, err := gorm.Open(sqlite.New(sqlite.Config{Conn: rpool}), cfg)
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		cdb, err := sql.Open(sqlite.DriverName, base)
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		cdb.SetMaxOpenConns(1)
		ckpt := newCheckpointer(cdb, checkpointInterval)
		return &Store{Dialect: SQLite, w: w, r: r, sqlDBs: []*sql.DB{wdb, rdb, cdb}, pools: []*stmtPool{wpool, rpool},
			group: newGroupCommitter(w, ckpt, o.writerNice), ckpt: ckpt, Path: path, jobs: sqliteJobCgroup(o.jobsCgroup)}, nil
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		return openPostgres(ctx, rawURL, cfg, o)
	}
	if u, err := url.Parse(rawURL); err == nil && u.Scheme != "" {
		return nil, fmt.Errorf("open store: unsupported database scheme %q (want sqlite:// or postgres://)", u.Scheme)
	}
	return nil, errors.New("open store: database URL must start with sqlite:// or postgres://")
}

// Close releases the connections.
func (s *Store) Close() error {
	if s.group != nil {
		s.group.close()
	}
	if s.ckpt != nil {
		s.ckpt.close()
	}
	var errs []error
	for _, p := range s.pools {
		p.close()
	}
	if s.pg != nil {
		s.pg.Close()
	}
	for _, d := range s.sqlDBs {
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}

// Ping checks that the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.r.WithContext(ctx).Raw("SELECT 1").Scan(&one).Error
}

func (s *Store) provider() (*goose.Provider, error) {
	sub, err := fs.Sub(migrations.FS, s.Dialect)
	if err != nil {
		return nil, err
	}
	db, err := s.w.DB()
	if err != nil {
		return nil, err
	}
	dialect := goose.DialectSQLite3
	if s.Dialect == Postgres {
		dialect = goose.DialectPostgres
	}
	return goose.NewProvider(dialect, db, sub)
}

// Migrate applies every pending migration, each in its own transaction.
func (s *Store) Migrate(ctx context.Context) error {
	p, err := s.provider()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// MigrationStatus writes one line per migration: version, state, file.
func (s *Store) MigrationStatus(ctx context.Context, w io.Writer) error {
	p, err := s.provider()
	if err != nil {
		return fmt.Errorf("migration status: %w", err)
	}
	st, err := p.Status(ctx)
	if err != nil {
		return fmt.Errorf("migration status: %w", err)
	}
	for _, m := range st {
		applied := "pending"
		if m.State == goose.StateApplied {
			applied = "applied " + m.AppliedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%05d  %-32s  %s\n", m.Source.Version, filepath.Base(m.Source.Path), applied)
	}
	return nil
}

// write runs fn in a write transaction. On PostgreSQL a serialization
// failure or deadlock is retried; the whole transaction runs again. On
// SQLite fn may share its transaction with other writes, inside a savepoint
// of its own (groupcommit.go); either way write returns once fn's effects
// are committed, or none of them are.
func (s *Store) write(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return s.writeWith(ctx, nil, fn)
}

// writeSerial runs fn in a write transaction that sees one snapshot
// throughout (REPEATABLE READ on PostgreSQL), for set-based jobs whose
// statements must agree on the rows they touch; a concurrent change to
// those rows makes PostgreSQL abort it, and it is retried. On SQLite it
// runs in a transaction of its own, not held up by others' writes nor
// holding up theirs. Its jobs lock rows a till may wait for (balances),
// so its backend is in the jobs' cgroup for lockingJobIdle at most.
func (s *Store) writeSerial(ctx context.Context, fn func(tx *gorm.DB) error) error {
	if s.group != nil {
		return s.group.do(ctx, true, fn)
	}
	return s.writeWith(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead}, s.jobSettings(lockingJobIdle, fn))
}

// writeJob is write for a nightly job's transaction that holds no lock a
// till waits for (it writes derived tables): on PostgreSQL its WAL's
// full-page images are compressed and it runs on one core (bulkSettle),
// and its statements, though not its COMMIT, in the jobs' cgroup where one
// is configured (jobcgroup.go).
func (s *Store) writeJob(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return s.write(ctx, s.jobSettings(0, fn))
}

// writeLockingJob is writeJob for a job's transaction that locks rows a
// till may wait for (a chunk of the tier review locks its members'
// balances): its backend is in the jobs' cgroup for lockingJobIdle at
// most.
func (s *Store) writeLockingJob(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return s.write(ctx, s.jobSettings(lockingJobIdle, fn))
}

// lockingJobIdle is the longest a job's transaction that locks rows a till
// may wait for runs in the jobs' cgroup: an expiry batch, sized to take
// expiryBatchTime, or a tier review's chunk ends within it at the cgroup's
// priority unless the tills keep it off the cores, and a till waiting for
// one of its locks then waits for the rest of it at the tills' priority.
// (A variable for tests.)
var lockingJobIdle = 50 * time.Millisecond

// jobSettings is fn run after bulkSettle in its transaction, its
// statements in the jobs' cgroup (for bound at most, when above zero; see
// jobCgroup.lower).
func (s *Store) jobSettings(bound time.Duration, fn func(tx *gorm.DB) error) func(tx *gorm.DB) error {
	return s.bulkSettings(func(tx *gorm.DB) (err error) {
		restore := s.jobs.lower(tx, bound)
		defer func() { err = errors.Join(err, restore()) }()
		return fn(tx)
	})
}

// bulkSettings is fn run after bulkSettle in its transaction.
func (s *Store) bulkSettings(fn func(tx *gorm.DB) error) func(tx *gorm.DB) error {
	return func(tx *gorm.DB) error {
		if err := s.bulkSettle(tx); err != nil {
			return err
		}
		return fn(tx)
	}
}

// bulkSettle sets up the transaction tx of an import chunk or a nightly
// job on PostgreSQL (nothing on SQLite) so that it costs the tills beside
// it as little as it can:
//   - The full-page images of its WAL are compressed (bulkWALCompression),
//     where the server leaves them uncompressed and the role may set it. A
//     job's writes (a day's expiries, tier moves, gifts, offers, segment
//     changes) land one or two rows a page on the member-keyed indexes and
//     balances, so after a checkpoint nearly every change is a page's
//     first: the whole page goes to the WAL, and at a million members a
//     day's expiries wrote 27 kB of WAL a lot, most of it such images. The
//     tills' commits flush that WAL too.
//   - Its statements run on one core (OneCore), index builds included: a
//     statement in parallel workers takes every core of the database
//     server that answers the tills. At a million members on two cores the
//     jobs were faster for it too: a night took 42.5–43.1 s on one core,
//     47.0–51.0 s with the workers, within the same two hours.
func (s *Store) bulkSettle(tx *gorm.DB) error {
	if s.Dialect != Postgres {
		return nil
	}
	q := "SELECT " + oneCore
	if wal := s.bulkWALCompression(tx); wal != "" {
		q += ", set_config('wal_compression', '" + wal + "', true)"
	}
	return tx.Exec(q).Error
}

// writerCache is the SQLite writer's page cache, in KiB as PRAGMA
// cache_size takes it (negative): see Open.
const writerCache = -16 * 1024

// writerSpill and bulkSpill are the pages the writer's cache may hold,
// dirty pages included, before it spills them to the WAL (PRAGMA
// cache_spill): 32 MiB for the group's transactions, the cache's own 16
// MiB for a write alone (setBulk).
const (
	writerSpill = 8192
	bulkSpill   = 4096
)

// bulk runs fn, a chunk of a set-based bulk write (an import's), in a
// transaction of its own: on SQLite not shared with the queued writes of
// group commit, whose transaction it would hold for the whole chunk; on
// PostgreSQL as write does.
func (s *Store) bulk(ctx context.Context, fn func(tx *gorm.DB) error) error {
	if s.group != nil {
		// Its statement journals go to a file, as every write alone's do
		// (setBulk). They were once kept in memory, which halved their
		// writes, but a chunk's statements touch ever more pages as the
		// tables grow, and the journals' memory rose with the file: a
		// 5 M-row import peaked at 178 MiB of RSS with them in memory,
		// 153 and 158 MiB in a file, at the same speed (11,708 rows/s
		// against 11,393 and 12,625).
		return s.group.do(ctx, true, fn)
	}
	return s.writeWith(ctx, nil, fn)
}

func (s *Store) writeWith(ctx context.Context, opts *sql.TxOptions, fn func(tx *gorm.DB) error) error {
	if s.group != nil {
		return s.group.do(ctx, false, fn)
	}
	// A serial job's snapshot conflicts with every write to the rows it
	// touches, and runs of it with each other: it gets more attempts.
	attempts := 8
	if opts != nil {
		attempts = 24
	}
	return retrying(ctx, attempts, func(hctx context.Context) error {
		// On a connection of its own, for statements through pgx (withPGX).
		return s.onConn(hctx, func(db *gorm.DB) error { return db.Transaction(fn, opts) })
	})
}

// retrying runs the transaction tx (given a context carrying its commit
// hooks) up to attempts times while it fails on a serialization failure
// or a deadlock, and runs its hooks once it committed. Every retry waits
// a jittered time, so that transactions that conflicted do not meet again
// in step.
func retrying(ctx context.Context, attempts int, tx func(hctx context.Context) error) error {
	var err error
	for attempt := 0; attempt < attempts; attempt++ {
		var hooks txHooks
		if err = tx(context.WithValue(ctx, txHooksKey{}, &hooks)); err == nil {
			hooks.run()
		}
		if !retryable(err) {
			return err
		}
		wait := time.Duration(min(attempt+1, 10)) * 10 * time.Millisecond
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait/2 + rand.N(wait)):
		}
	}
	return err
}

// snapshot runs fn in a read-only transaction that sees one consistent
// state of the database: REPEATABLE READ on PostgreSQL, a WAL read
// transaction on SQLite.
func (s *Store) snapshot(ctx context.Context, fn func(tx *gorm.DB) error) error {
	if s.Dialect == Postgres {
		return s.r.WithContext(ctx).Transaction(fn, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	}
	return s.r.WithContext(ctx).Transaction(fn)
}

// read returns a handle for reads outside a write transaction.
func (s *Store) read(ctx context.Context) *gorm.DB { return s.r.WithContext(ctx) }

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// forUpdate locks the selected rows until the transaction ends. SQLite has
// no row locks; its IMMEDIATE transactions already hold the write lock.
func forUpdate(tx *gorm.DB) *gorm.DB {
	return tx.Clauses(clause.Locking{Strength: "UPDATE"})
}

// ts normalises a time for storage: UTC, microsecond precision, so both
// dialects store and compare the same instant the same way.
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// tsp is ts for an optional time.
func tsp(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := ts(*t)
	return &v
}

// DB exposes the write handle for tests and tools that check invariants.
func (s *Store) DB() *gorm.DB { return s.w }

// SummarizeRanges has PostgreSQL summarize the page ranges of the schema's
// BRIN indexes that are not summarized yet, which a search through such an
// index would otherwise read whole (migration 00019). Autovacuum does it as
// ranges fill; the jobs runner calls this before every job in case
// autovacuum is behind or off. It reads only the unsummarized ranges, in a
// transaction of its own, so its lock (which only VACUUM, ANALYZE and index
// builds conflict with) is not held through the job. A VACUUM holding that
// lock, which on a large table may run for an hour, is not waited for past
// summarizeWait: the ranges are then left to autovacuum, and the job runs
// without them, only slower.
func (s *Store) SummarizeRanges(ctx context.Context) error {
	if s.pg == nil {
		return nil
	}
	err := s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SET LOCAL lock_timeout = '" + summarizeWait + "'").Error; err != nil {
			return err
		}
		return tx.Exec(`SELECT brin_summarize_new_values(c.oid) FROM pg_class c JOIN pg_am am ON am.oid = c.relam
			WHERE am.amname = 'brin' AND c.relkind = 'i' AND c.relnamespace = to_regnamespace(current_schema())`).Error
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55P03" { // lock_not_available
		return nil
	}
	return err
}

// summarizeWait bounds SummarizeRanges' wait for a table's lock.
const summarizeWait = "2s"
