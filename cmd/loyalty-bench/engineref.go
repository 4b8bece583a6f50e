package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// The engine-statements reference bounds what the engine's purchase can
// reach on PostgreSQL: the statements one purchase sends, with the same
// rows, on the engine's own schema (its migrations) and through the same
// two pipelined round trips with the same prepared statements, but with no
// engine (no HTTP, no JSON, no rules, no allocation of the plan). What it
// writes is what a bench purchase writes: the receipt's idempotency record
// and answer, a purchase with two lines, an earn entry, its lot and the
// balance row; the program has no offers, as in the bench, so that, as the
// engine does once it has seen none active, it reads none.

type pgEngineRef struct {
	pool *pgxpool.Pool
	n    int
	seq  atomic.Int64
	run  string
}

func openPGEngineRef(ctx context.Context, dbURL string, members, maxConns int) (*pgEngineRef, error) {
	st, err := loyalty.Open(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	err = st.Migrate(ctx)
	st.Close()
	if err != nil {
		return nil, fmt.Errorf("engine-statements reference: migrate: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	// As the engine's pool: the fixed statements prepared as a connection
	// opens, every other one sent with its parameters.
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	cfg.AfterConnect = loyalty.PGPurchaseSQL.Prepare
	cfg.MaxConns = int32(maxConns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	for _, q := range []string{
		`INSERT INTO program (id, name, currency, points_per_unit, pending_days, expiry_policy, expiry_days, tier_period,
			tier_window_days, timezone, birthday_gift, segments, churn, version, updated_at)
			VALUES (1, 'ref', 'USD', '1', 0, 'lot', 365, 'rolling', 365, 'UTC', '{}', '[]', '{}', 1, now()) ON CONFLICT (id) DO NOTHING`,
		fmt.Sprintf(`INSERT INTO members (id, status, enrolled_at, updated_at)
			SELECT 'ref-' || g, 'active', now(), now() FROM generate_series(1, %d) g`, members),
		`INSERT INTO member_balances (member_id, points, debt, lifetime_earned, lifetime_redeemed, version, updated_at, as_of)
			SELECT id, 0, 0, 0, 0, 1, now(), now() FROM members`,
		`ANALYZE members, member_balances`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			pool.Close()
			return nil, fmt.Errorf("engine-statements reference: %s: %w", firstLine(q), err)
		}
	}
	return &pgEngineRef{pool: pool, n: members, run: strconv.FormatInt(time.Now().UnixNano(), 36)}, nil
}

func (r *pgEngineRef) warm(ctx context.Context, conns int) {
	var held []*pgxpool.Conn
	for i := 0; i < conns; i++ {
		c, err := r.pool.Acquire(ctx)
		if err != nil {
			break
		}
		held = append(held, c)
	}
	for _, c := range held {
		c.Release()
	}
}

// response stands for the stored answer of a purchase: about the size of
// the engine's.
var refResponse = `{"purchase":{"id":"0000000000000000000000000000","member_id":"ref-1","store_id":"store-01","external_id":"x",` +
	`"channel":"pos","occurred_at":"2026-01-01T00:00:00Z","currency":"USD","total":12345,"points_earned":123},` +
	`"points_earned":123,"balance":{"available":1234,"pending":0,"debt":0},"tier":{"code":"insider"},"offers_applied":[]}`

func (r *pgEngineRef) postLoad() ([]string, newOp) {
	s := loyalty.PGPurchaseSQL
	return []string{"engine statements"}, func(i int) opFunc {
		rng := rand.New(rand.NewPCG(uint64(i)+31, 37))
		return func(ctx context.Context) outcome {
			err := r.purchase(ctx, s, rng)
			return outcome{ok: err == nil, err: err}
		}
	}
}

func (r *pgEngineRef) purchase(ctx context.Context, s loyalty.PGPurchaseStatements, rng *rand.Rand) (err error) {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	defer func() {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			if _, rerr := conn.Exec(ctx, "rollback"); rerr != nil {
				_ = conn.Conn().Close(ctx)
			}
		}
	}()
	member := "ref-" + strconv.Itoa(1+rng.IntN(r.n))
	seq := strconv.FormatInt(r.seq.Add(1), 10)
	now := time.Now().UTC().Truncate(time.Microsecond)
	scope, key := "purchase:store-01", "R"+r.run+"-"+seq

	b := &pgx.Batch{}
	b.Queue("begin")
	b.Queue(s.Claimed, scope, key)
	b.Queue(s.Lock, member)
	var points, version int64
	err = func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		var h string
		var st int
		var resp string
		if err := br.QueryRow().Scan(&h, &st, &resp); !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("receipt %s: %v", key, err)
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		found := false
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				rows.Close()
				return err
			}
			found = true
			points, version = vals[14].(int64), vals[19].(int64)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if !found {
			return errors.New("no member " + member)
		}
		return nil
	}()
	if err != nil {
		return err
	}

	id := func() string { return strconv.FormatUint(rng.Uint64(), 36) + strconv.FormatUint(rng.Uint64(), 36) }
	pid, eid, lid := id(), id(), id()
	ext, tier := key, (*string)(nil)
	q1, q2, p1, p2 := int64(1+rng.IntN(3)), int64(1+rng.IntN(3)), int64(500+rng.IntN(5000)), int64(500+rng.IntN(5000))
	total := q1*p1 + q2*p2
	earned := total / 100
	exp := now.AddDate(1, 0, 0)
	day := now.Unix() / 86400
	pts := points + earned
	b = &pgx.Batch{}
	b.Queue(s.Write,
		[]string{pid}, []string{member}, []string{"store-01"}, []*string{&ext}, []string{"pos"}, []time.Time{now},
		[]string{now.Format("2006-01-02")}, []int64{day}, []string{"USD"}, []int64{total}, []int64{0}, []int64{earned},
		[]int64{0}, []*string{tier}, []time.Time{now},
		[]string{pid, pid}, []int64{1, 2}, []string{"SKU-" + seq, "SKU-" + seq + "b"}, []string{"skincare", "makeup"},
		[]int64{q1, q2}, []int64{p1, p2}, []int64{q1 * p1, q2 * p2},
		[]string{eid}, []string{member}, []string{"earn"}, []int64{earned}, []time.Time{now}, []time.Time{now},
		[]*time.Time{&exp}, []*string{&pid}, []*string{nil}, []*string{nil}, []*string{nil}, []string{"purchase " + pid},
		[]time.Time{now},
		[]string{lid}, []string{eid}, []string{member}, []int64{earned}, []int64{earned}, []time.Time{now}, []*time.Time{&exp},
		[]time.Time{now},
		[]string{}, []string{}, []string{}, []int64{}, []time.Time{},
		"", now, member, false,
		pts, int64(0), pts, int64(0), &now, version+1, now, pts, int64(0), total, "[]", now, &exp, int64(0), member)
	b.Queue(s.Record, scope, key, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 1, refResponse, now)
	b.Queue("commit")
	br := conn.SendBatch(ctx, b)
	tag, err := br.Exec()
	if err == nil && tag.RowsAffected() != 1 {
		err = fmt.Errorf("balance of %s: %d rows updated", member, tag.RowsAffected())
	}
	for k := 0; k < 2 && err == nil; k++ {
		_, err = br.Exec()
	}
	return errors.Join(err, br.Close())
}

// check confirms the reference kept its books: every balance equals the
// sum of its ledger entries and of its open lots.
func (r *pgEngineRef) check(ctx context.Context) error {
	var bad int64
	err := r.pool.QueryRow(ctx, `SELECT count(*) FROM member_balances b WHERE b.points <>
		(SELECT coalesce(sum(points), 0) FROM ledger_entries e WHERE e.member_id = b.member_id)
		OR b.points <> (SELECT coalesce(sum(remaining), 0) FROM lots l WHERE l.member_id = b.member_id)`).Scan(&bad)
	return refBooks(bad, err)
}

func (r *pgEngineRef) close() { r.pool.Close() }
