// Package loyaltytest opens throwaway databases for tests: SQLite always,
// and PostgreSQL whenever one is reachable, each test in a schema of its own.
package loyaltytest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the driver gorm's postgres dialect uses

	"github.com/loyalty-engine/loyalty/loyalty"
)

// DefaultPostgresURL is where tests look for PostgreSQL unless
// LOYALTY_TEST_POSTGRES_URL says otherwise.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var (
	pgOnce sync.Once
	pgURL  string
	pgErr  error
)

func postgresURL() (string, error) {
	pgOnce.Do(func() {
		pgURL = os.Getenv("LOYALTY_TEST_POSTGRES_URL")
		if pgURL == "" {
			pgURL = DefaultPostgresURL
		}
		db, err := sql.Open("pgx", pgURL)
		if err != nil {
			pgErr = err
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		pgErr = db.PingContext(ctx)
	})
	return pgURL, pgErr
}

// Dialects returns the dialects to run a suite on: sqlite, and postgres when
// reachable. With LOYALTY_TEST_REQUIRE_POSTGRES=1 an unreachable PostgreSQL
// fails the test instead of being skipped.
func Dialects(tb testing.TB) []string {
	tb.Helper()
	out := []string{loyalty.SQLite}
	if _, err := postgresURL(); err != nil {
		if os.Getenv("LOYALTY_TEST_REQUIRE_POSTGRES") == "1" {
			tb.Fatalf("PostgreSQL is required (LOYALTY_TEST_REQUIRE_POSTGRES=1) but unreachable: %v", err)
		}
		tb.Logf("PostgreSQL unreachable, running on SQLite only: %v", err)
		return out
	}
	return append(out, loyalty.Postgres)
}

// Each runs fn as a subtest on every dialect of Dialects.
func Each(t *testing.T, fn func(t *testing.T, dialect string)) {
	t.Helper()
	for _, d := range Dialects(t) {
		t.Run(d, func(t *testing.T) { fn(t, d) })
	}
}

// MustOpen opens a fresh, migrated store of the dialect, removed when the
// test ends: a new SQLite file, or a new PostgreSQL schema.
func MustOpen(tb testing.TB, dialect string) *loyalty.Store {
	tb.Helper()
	return open(tb, dialect, "")
}

// MustOpenWith is MustOpen with Open's options opts.
func MustOpenWith(tb testing.TB, dialect string, opts ...loyalty.OpenOption) *loyalty.Store {
	tb.Helper()
	return open(tb, dialect, "", opts...)
}

// OpenKept opens the PostgreSQL schema name, made and migrated when absent
// and kept when the test ends: for benchmarks whose seeding takes longer
// than what they measure, run again on what an earlier run seeded.
func OpenKept(tb testing.TB, name string) *loyalty.Store {
	tb.Helper()
	return open(tb, loyalty.Postgres, name)
}

func open(tb testing.TB, dialect, kept string, opts ...loyalty.OpenOption) *loyalty.Store {
	tb.Helper()
	ctx := context.Background()
	var dsn string
	switch dialect {
	case loyalty.SQLite:
		dsn = "sqlite://" + filepath.Join(tb.TempDir(), "loyalty.db")
	case loyalty.Postgres:
		base, err := postgresURL()
		if err != nil {
			tb.Fatalf("postgres: %v", err)
		}
		schema := "t_" + randomHex(8)
		admin, err := sql.Open("pgx", base)
		if err != nil {
			tb.Fatal(err)
		}
		if kept != "" {
			schema = kept
			if _, err := admin.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
				tb.Fatal(err)
			}
			admin.Close()
		} else {
			if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() {
				_, _ = admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
				admin.Close()
			})
		}
		u, err := url.Parse(base)
		if err != nil {
			tb.Fatal(err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		dsn = u.String()
	default:
		tb.Fatalf("unknown dialect %q", dialect)
	}
	// LOYALTY_JOBS_CGROUP as serve reads it (loyalty.JobsCgroup), so
	// that a benchmark's jobs run as a configured engine's would.
	store, err := loyalty.Open(ctx, dsn, append([]loyalty.OpenOption{loyalty.JobsCgroup(os.Getenv("LOYALTY_JOBS_CGROUP"))}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	if err := store.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	dsns.Store(store, dsn)
	return store
}

var dsns sync.Map // *loyalty.Store → its database URL

// MustOpenAgain opens a second store on the database of one MustOpen
// made: another engine sharing it.
func MustOpenAgain(tb testing.TB, first *loyalty.Store) *loyalty.Store {
	tb.Helper()
	dsn, ok := dsns.Load(first)
	if !ok {
		tb.Fatal("MustOpenAgain: the store was not opened by MustOpen")
	}
	store, err := loyalty.Open(context.Background(), dsn.(string))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	return store
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Clock is a settable clock for services under test.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Together runs every call at once, released by one signal, and waits for
// them all: for tests of what concurrent writers do to the same rows.
func Together(calls ...func()) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, call := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			call()
		}()
	}
	close(start)
	wg.Wait()
}

// MemberLockers is the xmax of each member row of ids on PostgreSQL: the
// last transaction that locked or changed it. A job that locks no member's
// row leaves them all as they were.
func MemberLockers(tb testing.TB, store *loyalty.Store, ids []string) map[string]string {
	tb.Helper()
	var rows []struct{ ID, Xmax string }
	if err := store.DB().Raw(`SELECT id, CAST(xmax AS text) AS xmax FROM members WHERE id IN ?`, ids).Scan(&rows).Error; err != nil {
		tb.Fatal(err)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r.ID] = r.Xmax
	}
	return out
}
