package loyalty

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// An import's purchases chunk on PostgreSQL is written with COPY, the
// server's bulk load: the rows go in the binary format, parsed once, in a
// stream rather than as statement parameters. COPY has no ON CONFLICT: a
// chunk's purchases are copied straight into their table when none of them
// is stored yet, and otherwise into a temporary table of the session, from
// which one INSERT … SELECT … ON CONFLICT DO NOTHING keeps what is new
// (copyNew). The new purchases' lines and events, which nothing can have
// written before them, are copied straight into their tables.

// copyFunc copies rows into the columns cols of table, in the transaction
// of the chunk, and returns the rows copied.
type copyFunc func(table string, cols []string, rows [][]any) (int64, error)

// bulkCopy is bulk on PostgreSQL, where fn also gets a copyFunc on its
// transaction's connection: database/sql cannot send COPY, pgx can, on
// the connection the transaction holds (writeWith runs every write on
// one, see withPGX).
func (s *Store) bulkCopy(ctx context.Context, fn func(tx *gorm.DB, cp copyFunc) error) error {
	return s.writeWith(ctx, nil, s.bulkSettings(func(tx *gorm.DB) error {
		return fn(tx, func(table string, cols []string, rows [][]any) (int64, error) {
			var n int64
			ok, err := withPGX(tx, func(ctx context.Context, c *pgx.Conn) error {
				var err error
				n, err = c.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows))
				return err
			})
			if err == nil && !ok {
				err = errors.New("no connection of its own")
			}
			if err != nil {
				return 0, fmt.Errorf("copy into %s: %w", table, err)
			}
			return n, nil
		})
	}))
}

// bulkWALCompression is the wal_compression an import chunk's transaction
// sets, read once: zstd (else lz4, else pglz, as the server was built)
// when the server leaves it off and the engine's role may set it, ""
// otherwise.
//
// A chunk's purchases and events take their index entries on pages all
// over indexes keyed by member, and the first change of a page after a
// checkpoint writes the whole page to the WAL: at PostgreSQL's default
// max_wal_size a large import is a stream of such images, most of its
// WAL, and each one fills the WAL sooner and brings the next checkpoint
// nearer. Compressed, a 5 M-row import wrote 14 GB of WAL where two had
// written 64 GB, and ran 9–22% faster. The setting
// changes how the WAL is written, not what it holds: recovery and
// replicas read both. zstd makes the smallest images of the three at about
// lz4's time: a nightly job's balances touched across a million members
// wrote 14 MB of WAL with it against 18–27 MB with lz4 and 25 MB with pglz
// (and an index build of member_churn 9.1 MB against 13 and 12 MB), in
// about the same time (the index build 6% slower).
func (s *Store) bulkWALCompression(db *gorm.DB) string {
	s.bulkWALOnce.Do(func() {
		var v string
		if err := db.Raw(`SELECT CASE WHEN current_setting('wal_compression') = 'off' AND current_setting('is_superuser') = 'on'
			THEN CASE WHEN 'zstd' = ANY (enumvals) THEN 'zstd' WHEN 'lz4' = ANY (enumvals) THEN 'lz4' ELSE 'pglz' END ELSE '' END
			FROM pg_settings WHERE name = 'wal_compression'`).Row().Scan(&v); err == nil {
			s.bulkWAL = v
		}
	})
	return s.bulkWAL
}

// importDirectSkip is how many chunks of an import go through the stage
// after one found a purchase already stored: a re-import, or the rest of
// an import run before, finds more.
var importDirectSkip int64 = 16

// importCopied, when a test sets it, learns whether each chunk's purchases
// went straight into their table.
var importCopied func(direct bool)

// copyNew writes the chunk's purchase rows (purchaseRows with the
// returned_amount, points_earned, points_reversed and created_at columns)
// and returns the ids of those that were new. A chunk of new purchases,
// the common case, is copied straight into purchases: one stream, its heap
// rows written page by page. A purchase already stored (a re-import, or a
// till that posted it meanwhile) fails that copy on the unique key; the
// chunk is then rolled back to before it and goes through the stage:
// copied into a temporary table, from which one INSERT … ON CONFLICT DO
// NOTHING keeps what is new.
func (im *importer) copyNew(tx *gorm.DB, cp copyFunc, rows [][]any) ([]string, error) {
	if im.shared.directSkip.Load() <= 0 {
		if err := tx.SavePoint("import_direct").Error; err != nil {
			return nil, err
		}
		_, err := cp("purchases", PurchaseCopyColumns, rows)
		if err == nil {
			if importCopied != nil {
				importCopied(true)
			}
			ids := make([]string, len(rows))
			for i, r := range rows {
				ids[i] = r[0].(string)
			}
			return ids, nil
		}
		if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "23505" { // unique_violation
			return nil, err
		}
		if err := tx.RollbackTo("import_direct").Error; err != nil {
			return nil, err
		}
		im.shared.directSkip.Store(importDirectSkip)
	} else {
		im.shared.directSkip.Add(-1)
	}
	if importCopied != nil {
		importCopied(false)
	}
	if err := tx.Exec(ImportStageSQL).Error; err != nil {
		return nil, err
	}
	if _, err := cp("import_purchases", PurchaseCopyColumns, rows); err != nil {
		return nil, err
	}
	rs, err := tx.Raw(ImportUnstageSQL).Rows()
	if err != nil {
		return nil, err
	}
	var ids []string
	err = scanAll(rs, func(r *sql.Rows) error {
		var id string
		if err := r.Scan(&id); err != nil {
			return err
		}
		ids = append(ids, id)
		return nil
	})
	return ids, err
}

// PurchaseCopyColumns are the columns of an import chunk's purchase rows
// (purchaseRows with the four an imported purchase sets to zero and its
// time of writing), in order; exported for the benchmark's reference of
// an import without the engine.
var PurchaseCopyColumns = []string{"id", "member_id", "store_id", "external_id", "channel", "occurred_at", "local_date",
	"local_day", "currency", "total", "returned_amount", "points_earned", "points_reversed", "created_at"}

// ImportStageSQL makes the session's temporary table of a chunk's purchase
// rows (PurchaseCopyColumns), emptied by every commit; exported for the
// benchmark's reference.
const ImportStageSQL = `CREATE TEMPORARY TABLE IF NOT EXISTS import_purchases (id text, member_id text, store_id text,
	external_id text, channel text, occurred_at timestamptz, local_date text, local_day integer, currency text, total bigint,
	returned_amount bigint, points_earned bigint, points_reversed bigint, created_at timestamptz)
	ON COMMIT DELETE ROWS`

// ImportUnstageSQL inserts the staged purchases that are not stored yet
// and returns their ids; exported for the benchmark's reference.
var ImportUnstageSQL = `INSERT INTO purchases (` + strings.Join(PurchaseCopyColumns, ", ") + `) SELECT ` +
	strings.Join(PurchaseCopyColumns, ", ") + ` FROM import_purchases ON CONFLICT (store_id, external_id) DO NOTHING RETURNING id`

// copyPurchases is writePurchases on PostgreSQL, by COPY.
func (im *importer) copyPurchases(tx *gorm.DB, cp copyFunc, now time.Time) (created, skipped int64, err error) {
	if len(im.purchases) == 0 {
		return 0, 0, nil
	}
	members, err := im.enrolUnknown(tx, now)
	if err != nil {
		return 0, 0, err
	}
	rows, byID := im.purchaseRows(members, int64(0), int64(0), int64(0), now)
	ids, err := im.copyNew(tx, cp, rows)
	if err != nil {
		return 0, 0, err
	}
	items, made, err := im.createdRows(ids, rows, byID, now)
	if err != nil {
		return 0, 0, err
	}
	evs := make([][]any, len(made))
	for i, ev := range made {
		evs[i] = []any{ev.typ, ev.member, ev.at, string(ev.data)}
	}
	if len(items) > 0 {
		if _, err := cp("purchase_items", []string{"purchase_id", "line", "sku", "category", "quantity", "unit_price", "amount"}, items); err != nil {
			return 0, 0, err
		}
	}
	if len(evs) > 0 {
		if _, err := cp("events", []string{"type", "member_id", "occurred_at", "data"}, evs); err != nil {
			return 0, 0, fmt.Errorf("append events: %w", err)
		}
		afterCommit(tx, hubOf(tx).committed)
	}
	// The members' latest purchase of the chunk, from the rows in hand
	// rather than by looking each new purchase up again (historyChanged).
	latest := make(map[string]time.Time, len(ids))
	for _, id := range ids {
		i := byID[id]
		m, at := rows[i][1].(string), im.purchases[i].at
		if t, ok := latest[m]; !ok || at.After(t) {
			latest[m] = at
		}
	}
	touched, ats := make([]string, 0, len(latest)), make([]string, 0, len(latest))
	for m, at := range latest {
		touched, ats = append(touched, m), append(ats, at.UTC().Format(time.RFC3339Nano))
	}
	im.lockTail()
	if err := membersHistoryChanged(tx, touched, ats, now); err != nil {
		return 0, 0, err
	}
	return int64(len(ids)), int64(len(im.purchases) - len(ids)), nil
}

// membersHistoryChanged is historyChanged on PostgreSQL given, for each
// member of members, the latest of its purchases just imported (ats, as
// RFC 3339 text).
func membersHistoryChanged(tx *gorm.DB, members, ats []string, now time.Time) error {
	if len(members) == 0 {
		return nil
	}
	return tx.Exec(historyMoved("unnest(?::text[], ?::text[]::timestamptz[]) AS x (member_id, at)"),
		now, pgTextArray(members), pgTextArray(ats)).Error
}
