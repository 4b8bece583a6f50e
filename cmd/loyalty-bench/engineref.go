package main

import (
	"context"
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
// engine does once it has seen none active, it reads none. Its clients
// share a pool of the engine's default size (loyalty.PGPoolConns), as the
// engine's requests do.

type pgEngineRef struct {
	pool *pgxpool.Pool
	n    int
	seq  atomic.Int64
	run  string
}

func openPGEngineRef(ctx context.Context, dbURL string, members int) (*pgEngineRef, error) {
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
	cfg.MaxConns = int32(loyalty.PGPoolConns())
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

func (r *pgEngineRef) warm(ctx context.Context, conns int) { warmPool(ctx, r.pool, conns) }

func (r *pgEngineRef) postLoad() ([]string, newOp) {
	return []string{"engine statements"}, func(i int) opFunc {
		rng := rand.New(rand.NewPCG(uint64(i)+31, 37))
		return func(ctx context.Context) outcome {
			err := r.purchase(ctx, rng)
			return outcome{ok: err == nil, err: err}
		}
	}
}

// purchase is a bench purchase of a random member (two lines), posted as
// the minimal server posts one (minimal.go), without HTTP or JSON decoding.
func (r *pgEngineRef) purchase(ctx context.Context, rng *rand.Rand) error {
	in := &minimalPurchase{MemberID: "ref-" + strconv.Itoa(1+rng.IntN(r.n)), StoreID: "store-01", Channel: "pos", Currency: "USD"}
	in.ExternalID = "R" + r.run + "-" + strconv.FormatInt(r.seq.Add(1), 10)
	in.Items = make([]minimalItem, 2)
	for i, cat := range []string{"skincare", "makeup"} {
		q, p := int64(1+rng.IntN(3)), int64(500+rng.IntN(5000))
		in.Items[i] = minimalItem{SKU: in.ExternalID + "-" + strconv.Itoa(i), Category: cat, Quantity: q, UnitPrice: p, Amount: q * p}
		in.Total += q * p
	}
	_, err := r.post(ctx, in, []byte(in.ExternalID))
	return err
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
