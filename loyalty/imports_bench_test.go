package loyalty_test

import (
	"context"
	"fmt"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// BenchmarkImportPurchases imports a purchases CSV of 50,000 rows over
// 5,000 members (with a category on most) into an empty database.
func BenchmarkImportPurchases(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("member_external_id,external_id,store_id,occurred_at,total,currency,category\n")
	const rows, members = 50000, 5000
	cats := []string{"skincare", "makeup", "fragrance", "hair", ""}
	for i := 0; i < rows; i++ {
		fmt.Fprintf(&sb, "M%d,R%d,store-%d,%s,%d,USD,%s\n", (i*7919)%members, i, i%8,
			importNow.Add(-time.Duration(rows-i)*time.Minute).Format(time.RFC3339), 500+(i*37)%20000, cats[i%len(cats)])
	}
	body := sb.String()
	for _, dialect := range loyaltytest.Dialects(b) {
		b.Run(dialect, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				store := loyaltytest.MustOpen(b, dialect)
				svc := loyalty.NewService(store, loyalty.WithClock(func() time.Time { return importNow }))
				imp, err := svc.BeginImport(context.Background(), loyalty.ImportOptions{Kind: loyalty.ImportPurchases})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				out, err := svc.RunImport(context.Background(), imp.ID, strings.NewReader(body))
				if err != nil || out.RowsCreated != rows {
					b.Fatalf("%+v %v", out, err)
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkImportFloor writes the rows of BenchmarkImportPurchases into
// the same schema (the same tables, indexes and foreign keys) with no
// engine: no CSV, no checks, the rows made in memory beforehand, then per
// chunk of 5,000 rows one transaction of the statements the engine's
// PostgreSQL import sends (staged: COPY into a temporary table, INSERT …
// SELECT … ON CONFLICT DO NOTHING into purchases, COPY of the lines and
// events, the balance rows' UPDATE), or of COPY straight into the three
// tables alone (direct). It is the database's own ceiling for an import on
// the machine it runs on.
func BenchmarkImportFloor(b *testing.B) {
	if !slices.Contains(loyaltytest.Dialects(b), loyalty.Postgres) {
		b.Skip("PostgreSQL only")
	}
	const rows, members = 50000, 5000
	cats := []string{"skincare", "makeup", "fragrance", "hair", ""}
	in := make([]floorRow, rows)
	for i := range in {
		in[i] = floorRow{member: fmt.Sprintf("M%d", (i*7919)%members), store: fmt.Sprintf("store-%d", i%8), ext: fmt.Sprintf("R%d", i),
			cat: cats[i%len(cats)], at: importNow.Add(-time.Duration(rows-i) * time.Minute).UTC(), total: int64(500 + (i*37)%20000)}
	}
	for _, mode := range []string{"staged", "direct"} {
		b.Run(mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				store := loyaltytest.MustOpen(b, loyalty.Postgres)
				sdb, err := store.DB().DB()
				if err != nil {
					b.Fatal(err)
				}
				conn, err := sdb.Conn(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				err = conn.Raw(func(dc any) error { return importFloor(dc.(*stdlib.Conn).Conn(), mode == "staged", in) })
				b.StopTimer()
				conn.Close()
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

type floorRow struct {
	member, store, ext, cat string
	at                      time.Time
	total                   int64
}

// importFloor writes in, chunk by chunk, as BenchmarkImportFloor says.
func importFloor(c *pgx.Conn, staged bool, in []floorRow) error {
	ctx := context.Background()
	now := time.Now().UTC()
	ids := map[string]string{}
	for k, r := range in {
		if _, ok := ids[r.member]; !ok {
			ids[r.member] = fmt.Sprintf("0190%04x-0000-7000-8000-%012x", k%0xffff, k)
		}
	}
	var mrows, brows [][]any
	for ext, id := range ids {
		mrows = append(mrows, []any{id, ext, "active", now, now})
		brows = append(brows, []any{id, int64(0), int64(0), int64(0), int64(0), int64(1), now, now, "[]"})
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"members"}, []string{"id", "external_id", "status", "enrolled_at", "updated_at"},
		pgx.CopyFromRows(mrows)); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"member_balances"}, []string{"member_id", "points", "debt", "lifetime_earned",
		"lifetime_redeemed", "version", "updated_at", "as_of", "expiring_soon"}, pgx.CopyFromRows(brows)); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	seq := 0
	for part := range slices.Chunk(in, 5000) {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		var prows, irows, erows [][]any
		latest := map[string]time.Time{}
		for _, r := range part {
			seq++
			id := fmt.Sprintf("01910000-0000-7000-8000-%012d", seq)
			m := ids[r.member]
			date := r.at.Format(time.DateOnly)
			prows = append(prows, []any{id, m, r.store, r.ext, "import", r.at, date, int32(r.at.Unix() / 86400), "USD", r.total,
				int64(0), int64(0), int64(0), now})
			item := ""
			if r.cat != "" {
				irows = append(irows, []any{id, int32(1), "import", r.cat, int64(1), r.total, r.total})
				item = fmt.Sprintf(`{"sku":"import","category":%q,"quantity":1,"unit_price":%d,"amount":%d}`, r.cat, r.total, r.total)
			}
			data := fmt.Sprintf(`{"id":%q,"member_id":%q,"external_id":%q,"store_id":%q,"channel":"import","occurred_at":%q,`+
				`"local_date":%q,"currency":"USD","total":%d,"returned_amount":0,"points_earned":0,"points_reversed":0,"items":[%s],"returns":[]}`,
				id, m, r.ext, r.store, r.at.Format(time.RFC3339Nano), date, r.total, item)
			erows = append(erows, []any{"purchase.created", m, now, data})
			if t, ok := latest[m]; !ok || r.at.After(t) {
				latest[m] = r.at
			}
		}
		cols := []string{"id", "member_id", "store_id", "external_id", "channel", "occurred_at", "local_date", "local_day", "currency",
			"total", "returned_amount", "points_earned", "points_reversed", "created_at"}
		if staged {
			if _, err := tx.Exec(ctx, `CREATE TEMPORARY TABLE IF NOT EXISTS floor_stage (id text, member_id text, store_id text,
				external_id text, channel text, occurred_at timestamptz, local_date text, local_day integer, currency text, total bigint,
				returned_amount bigint, points_earned bigint, points_reversed bigint, created_at timestamptz) ON COMMIT DELETE ROWS`); err != nil {
				return err
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"floor_stage"}, cols, pgx.CopyFromRows(prows)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO purchases (`+strings.Join(cols, ", ")+`) SELECT `+strings.Join(cols, ", ")+
				` FROM floor_stage ON CONFLICT (store_id, external_id) DO NOTHING`); err != nil {
				return err
			}
		} else if _, err := tx.CopyFrom(ctx, pgx.Identifier{"purchases"}, cols, pgx.CopyFromRows(prows)); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"purchase_items"}, []string{"purchase_id", "line", "sku", "category", "quantity",
			"unit_price", "amount"}, pgx.CopyFromRows(irows)); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"type", "member_id", "occurred_at", "data"},
			pgx.CopyFromRows(erows)); err != nil {
			return err
		}
		if staged {
			var ms []string
			var ats []time.Time
			for m, t := range latest {
				ms, ats = append(ms, m), append(ats, t)
			}
			if _, err := tx.Exec(ctx, `UPDATE member_balances b SET version = b.version + 1, updated_at = $1,
				next_change_at = b.as_of, last_activity_at = greatest(b.last_activity_at, x.at)
				FROM unnest($2::text[], $3::timestamptz[]) AS x(member_id, at) WHERE b.member_id = x.member_id`, now, ms, ats); err != nil {
				return err
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
	}
	return nil
}
