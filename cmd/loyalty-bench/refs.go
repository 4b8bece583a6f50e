package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The references are the least a purchase and a balance read must cost on
// the same database server: one posting transaction (lock the balance row,
// append a ledger entry, update the balance) and one single-row read by
// primary key, with no HTTP, no JSON and no business rules.

// pgRef holds the bare tables in a scratch PostgreSQL database.
type pgRef struct {
	pool *pgxpool.Pool
	n    int
}

func openPGRef(ctx context.Context, dbURL string, members, maxConns int) (*pgRef, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(maxConns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS bench_balance (id bigint PRIMARY KEY, points bigint NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS bench_ledger (id bigserial PRIMARY KEY, member_id bigint NOT NULL, points bigint NOT NULL, created_at timestamptz NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS bench_ledger_member ON bench_ledger (member_id)`,
		`TRUNCATE bench_balance, bench_ledger`,
		fmt.Sprintf(`INSERT INTO bench_balance (id, points) SELECT g, 0 FROM generate_series(1, %d) g`, members),
		`ANALYZE bench_balance`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			pool.Close()
			return nil, fmt.Errorf("bare SQL reference: %s: %w", q, err)
		}
	}
	return &pgRef{pool: pool, n: members}, nil
}

// warm opens conns connections before a measurement.
func (r *pgRef) warm(ctx context.Context, conns int) { warmPool(ctx, r.pool, conns) }

// warmPool opens conns connections of pool, or as many as it may hold,
// so that a measurement does not pay for connecting.
func warmPool(ctx context.Context, pool *pgxpool.Pool, conns int) {
	var held []*pgxpool.Conn
	for i := 0; i < min(conns, int(pool.Config().MaxConns)); i++ {
		c, err := pool.Acquire(ctx)
		if err != nil {
			break
		}
		held = append(held, c)
	}
	for _, c := range held {
		c.Release()
	}
}

func (r *pgRef) postLoad() ([]string, newOp) {
	return []string{"bare posting"}, func(i int) opFunc {
		rng := rand.New(rand.NewPCG(uint64(i)+11, 17))
		return func(ctx context.Context) outcome {
			id, pts := int64(1+rng.IntN(r.n)), int64(1+rng.IntN(1000))
			err := func() error {
				tx, err := r.pool.Begin(ctx)
				if err != nil {
					return err
				}
				defer tx.Rollback(context.Background())
				var cur int64
				if err := tx.QueryRow(ctx, `SELECT points FROM bench_balance WHERE id = $1 FOR UPDATE`, id).Scan(&cur); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO bench_ledger (member_id, points, created_at) VALUES ($1, $2, $3)`, id, pts, time.Now()); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `UPDATE bench_balance SET points = points + $2 WHERE id = $1`, id, pts); err != nil {
					return err
				}
				return tx.Commit(ctx)
			}()
			return outcome{ok: err == nil, err: err}
		}
	}
}

func (r *pgRef) readLoad() ([]string, newOp) {
	return []string{"bare read"}, func(i int) opFunc {
		rng := rand.New(rand.NewPCG(uint64(i)+23, 29))
		return func(ctx context.Context) outcome {
			var pts int64
			err := r.pool.QueryRow(ctx, `SELECT points FROM bench_balance WHERE id = $1`, int64(1+rng.IntN(r.n))).Scan(&pts)
			return outcome{ok: err == nil, err: err}
		}
	}
}

// check confirms the reference kept its own books: every balance equals
// the sum of its ledger entries.
func (r *pgRef) check(ctx context.Context) error {
	var bad int64
	err := r.pool.QueryRow(ctx, refBooksSQL).Scan(&bad)
	return refBooks(bad, err)
}

func (r *pgRef) close() { r.pool.Close() }

// sqliteRef holds the bare tables in a temporary SQLite file, opened as
// the engine's store opens its own: WAL, synchronous NORMAL, a busy
// timeout, and one writer connection whose transactions begin IMMEDIATE.
// Reads use a pool as large as the client count. The driver is the one the
// store registers ("sqlite"), so no second SQLite is linked in.
type sqliteRef struct {
	w, r *sql.DB
	n    int
}

func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
}

func openSQLiteRef(ctx context.Context, path string, members, readConns int) (*sqliteRef, error) {
	w, err := sql.Open("sqlite", sqliteDSN(path)+"&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	ref := &sqliteRef{w: w, n: members}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS bench_balance (id INTEGER PRIMARY KEY, points INTEGER NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS bench_ledger (id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL, points INTEGER NOT NULL, created_at TEXT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS bench_ledger_member ON bench_ledger (member_id)`,
		`DELETE FROM bench_ledger`,
		`DELETE FROM bench_balance`,
		fmt.Sprintf(`WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < %d)
			INSERT INTO bench_balance (id, points) SELECT i, 0 FROM g`, members),
	} {
		if _, err := w.ExecContext(ctx, q); err != nil {
			w.Close()
			return nil, fmt.Errorf("bare SQL reference: %s: %w", q, err)
		}
	}
	r, err := sql.Open("sqlite", sqliteDSN(path)+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	ref.r = r
	return ref, nil
}

func (r *sqliteRef) setReadConns(n int) {
	r.r.SetMaxOpenConns(n)
	r.r.SetMaxIdleConns(n)
}

func (r *sqliteRef) postLoad() ([]string, newOp) {
	return []string{"bare posting"}, func(i int) opFunc {
		rng := rand.New(rand.NewPCG(uint64(i)+11, 17))
		return func(ctx context.Context) outcome {
			id, pts := int64(1+rng.IntN(r.n)), int64(1+rng.IntN(1000))
			err := func() error {
				tx, err := r.w.BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				defer tx.Rollback()
				var cur int64
				if err := tx.QueryRowContext(ctx, `SELECT points FROM bench_balance WHERE id = ?`, id).Scan(&cur); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO bench_ledger (member_id, points, created_at) VALUES (?, ?, ?)`,
					id, pts, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `UPDATE bench_balance SET points = points + ? WHERE id = ?`, pts, id); err != nil {
					return err
				}
				return tx.Commit()
			}()
			return outcome{ok: err == nil, err: err}
		}
	}
}

func (r *sqliteRef) readLoad() ([]string, newOp) {
	return []string{"bare read"}, func(i int) opFunc {
		rng := rand.New(rand.NewPCG(uint64(i)+23, 29))
		return func(ctx context.Context) outcome {
			var pts int64
			err := r.r.QueryRowContext(ctx, `SELECT points FROM bench_balance WHERE id = ?`, int64(1+rng.IntN(r.n))).Scan(&pts)
			return outcome{ok: err == nil, err: err}
		}
	}
}

func (r *sqliteRef) check(ctx context.Context) error {
	var bad int64
	err := r.w.QueryRowContext(ctx, refBooksSQL).Scan(&bad)
	return refBooks(bad, err)
}

func (r *sqliteRef) close() { r.w.Close(); r.r.Close() }

// findPgbench returns the pgbench to use: the flag's, else one on PATH,
// else the newest under /usr/lib/postgresql/*/bin; "" when there is none.
func findPgbench(flagPath string) string {
	if flagPath != "" {
		if _, err := os.Stat(flagPath); err == nil {
			return flagPath
		}
		return ""
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	sort.Slice(m, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m[i]))))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m[j]))))
		return a > b
	})
	if len(m) > 0 {
		return m[0]
	}
	return ""
}

// pgbenchResult is what a pgbench run printed.
type pgbenchResult struct {
	tps       float64
	latency   time.Duration // latency average
	processed int64
	failed    int64
}

// parsePgbench reads pgbench's summary. It takes the tps without the
// initial connection time (PostgreSQL 14 and later print only that one;
// older versions print "excluding connections establishing" after the
// "including" line).
func parsePgbench(out string) (pgbenchResult, error) {
	var r pgbenchResult
	found, best := false, false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "tps = "):
			f := strings.Fields(strings.TrimPrefix(line, "tps = "))
			if len(f) == 0 {
				continue
			}
			v, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				continue
			}
			preferred := strings.Contains(line, "without initial connection") || strings.Contains(line, "excluding")
			if !found || (preferred && !best) {
				r.tps, found, best = v, true, preferred
			}
		case strings.HasPrefix(line, "latency average = "):
			f := strings.Fields(strings.TrimPrefix(line, "latency average = "))
			if len(f) >= 2 && f[1] == "ms" {
				if v, err := strconv.ParseFloat(f[0], 64); err == nil {
					r.latency = time.Duration(v * float64(time.Millisecond))
				}
			}
		case strings.HasPrefix(line, "number of transactions actually processed:"):
			f := strings.Fields(strings.TrimPrefix(line, "number of transactions actually processed:"))
			if len(f) > 0 {
				r.processed, _ = strconv.ParseInt(strings.SplitN(f[0], "/", 2)[0], 10, 64)
			}
		case strings.HasPrefix(line, "number of failed transactions:"):
			f := strings.Fields(strings.TrimPrefix(line, "number of failed transactions:"))
			if len(f) > 0 {
				r.failed, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	if !found {
		return r, errors.New("pgbench printed no tps line")
	}
	return r, nil
}

// runPgbench runs pgbench with args against dbURL and returns its output.
func runPgbench(ctx context.Context, bin, dbURL string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, append(args, dbURL)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// refBooksSQL counts the reference's balances that differ from the sum of
// their ledger entries; it reads the same on both databases.
const refBooksSQL = `SELECT count(*) FROM bench_balance b LEFT JOIN
	(SELECT member_id, sum(points) AS s FROM bench_ledger GROUP BY member_id) l ON l.member_id = b.id
	WHERE b.points <> coalesce(l.s, 0)`

func refBooks(bad int64, err error) error {
	if err != nil {
		return err
	}
	if bad != 0 {
		return fmt.Errorf("bare SQL reference: %d balances differ from their ledger", bad)
	}
	return nil
}
