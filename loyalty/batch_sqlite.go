package loyalty

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"
)

// flushSQLite writes w and a's sealed balance row on SQLite with fixed SQL
// texts and positional arguments, straight on the transaction's
// connection (through the statement cache of stmtcache.go): no GORM
// statement building, reflection or callbacks on the purchase path, which
// cost more than running the statements in the SQLite VM. The rows of one
// table go as one multi-row INSERT, in the order they were planned; the
// balance row is saved by one UPDATE of its columns, which must find it.
// The values are those GORM would have bound (the same Go values, the same
// driver conversions), so what is stored is unchanged.
func (w *accountWrites) flushSQLite(tx *gorm.DB, a *account) error {
	if err := insertRowsSQLite(tx, w.rows); err != nil {
		return err
	}
	return saveSQLite(tx, a, w.tier)
}

// insertRowsSQLite inserts rows (as accountWrites holds them) in order,
// those of one table that follow each other in one statement.
func insertRowsSQLite(tx *gorm.DB, rows []any) error {
	exec := func(q string, args []any) (int64, error) { return execSQLite(tx, q, args...) }
	// Rows of one table that follow each other go together; tables keep
	// the order of w.rows (a lot after its entry, an item after its
	// purchase), which the foreign keys need.
	var (
		table  string
		n      int
		args   []any
		events bool
	)
	send := func() error {
		if n == 0 {
			return nil
		}
		_, err := exec(insertSQL(table, n), args)
		table, n, args = "", 0, args[:0]
		return err
	}
	add := func(t string, vs ...any) error {
		if t != table || n == maxRowsPerInsert {
			if err := send(); err != nil {
				return err
			}
			table = t
		}
		n++
		args = append(args, vs...)
		return nil
	}
	for _, r := range rows {
		var err error
		switch r := r.(type) {
		case *purchaseRow:
			if r.PointsPaid > 0 {
				// Paid with points (§16): columns the fixed text leaves
				// to their defaults, so through GORM.
				if err = send(); err == nil {
					err = tx.Create(r).Error
				}
				break
			}
			err = add("purchases", r.ID, r.MemberID, r.StoreID, r.ExternalID, r.Channel, r.OccurredAt, r.LocalDate, r.LocalDay,
				r.Currency, r.Total, r.ReturnedAmount, r.PointsEarned, r.PointsReversed, r.TierCode, r.CreatedAt)
		case *[]itemRow:
			for _, it := range *r {
				if err = add("purchase_items", it.PurchaseID, it.Line, it.SKU, it.Category, it.Quantity, it.UnitPrice, it.Amount); err != nil {
					break
				}
			}
		case *entryRow:
			err = add("ledger_entries", r.ID, r.MemberID, r.Kind, r.Points, r.OccurredAt, r.AvailableAt, r.ExpiresAt,
				r.PurchaseID, r.ReturnID, r.RedemptionID, r.OfferID, r.Description, r.CreatedAt)
		case *lotRow:
			err = add("lots", r.ID, r.EntryID, r.MemberID, r.Points, r.Remaining, r.AvailableAt, r.ExpiresAt, r.CreatedAt)
		case *offerUseRow:
			err = add("offer_uses", r.OfferID, r.PurchaseID, r.MemberID, r.Points, r.CreatedAt)
		case *eventRow:
			err = add("events", r.Type, r.MemberID, r.OccurredAt, r.Data)
			events = true
		case *answerRow:
			err = add("idempotency_keys", r.g.scope, r.g.key, r.g.hash, answered, r.body, r.at, nil)
		default:
			// A row this path does not know goes through GORM, in order.
			if err = send(); err == nil {
				err = tx.Create(r).Error
			}
		}
		if err != nil {
			return err
		}
	}
	if err := send(); err != nil {
		return err
	}
	if events {
		afterCommit(tx, hubOf(tx).committed)
	}
	return nil
}

// saveSQLite saves a's sealed balance row, which must be there, and the
// member's new tier when it moved.
func saveSQLite(tx *gorm.DB, a *account, tier *string) error {
	exec := func(q string, args []any) (int64, error) { return execSQLite(tx, q, args...) }
	b := &a.balance
	n64, err := exec(balanceUpdateSQLite, balanceUpdateArgs(b))
	if err != nil {
		return err
	}
	if n64 != 1 {
		return fmt.Errorf("balance of member %s: %d rows updated", b.MemberID, n64)
	}
	if tier != nil {
		if _, err := exec(`UPDATE members SET tier_code = ?, tier_since = ?, updated_at = ? WHERE id = ?`,
			[]any{*tier, a.now, a.now, a.member.ID}); err != nil {
			return err
		}
	}
	return nil
}

// maxRowsPerInsert bounds the rows of one INSERT (SQLite allows 32,766
// bound values; a text per row count is cached, so they stay few).
const maxRowsPerInsert = 64

// insertColumns are the columns of the tables flushSQLite inserts into, in
// the order of its arguments.
var insertColumns = map[string][]string{
	"purchases": {"id", "member_id", "store_id", "external_id", "channel", "occurred_at", "local_date", "local_day",
		"currency", "total", "returned_amount", "points_earned", "points_reversed", "tier_code", "created_at"},
	"purchase_items": {"purchase_id", "line", "sku", "category", "quantity", "unit_price", "amount"},
	"ledger_entries": {"id", "member_id", "kind", "points", "occurred_at", "available_at", "expires_at",
		"purchase_id", "return_id", "redemption_id", "offer_id", "description", "created_at"},
	"lots":             {"id", "entry_id", "member_id", "points", "remaining", "available_at", "expires_at", "created_at"},
	"offer_uses":       {"offer_id", "purchase_id", "member_id", "points", "created_at"},
	"events":           {"type", "member_id", "occurred_at", "data"},
	"idempotency_keys": {"scope", `"key"`, "request_hash", "status", "response", "created_at", "personal_member_id"},
}

// answerRow is the record of guard g answered with body at at, for a
// result that shows no personal data (answerSQLite's row).
type answerRow struct {
	g    guard
	body string
	at   time.Time
}

type insertKey struct {
	table string
	n     int
}

var insertTexts sync.Map // insertKey → SQL text

// insertSQL is the text inserting n rows into table.
func insertSQL(table string, n int) string {
	key := insertKey{table, n}
	if q, ok := insertTexts.Load(key); ok {
		return q.(string)
	}
	cols := insertColumns[table]
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") + ")"
	var sb strings.Builder
	sb.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ",") + ") VALUES ")
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(row)
	}
	q, _ := insertTexts.LoadOrStore(key, sb.String())
	return q.(string)
}

// balanceUpdateSQLite is balanceUpdateSQL with SQLite's numbered
// placeholders (?NNN), bound from balanceUpdateArgs.
var balanceUpdateSQLite = placeholder.ReplaceAllString(balanceUpdateSQL, "?$1")

// execSQLite runs q with positional args on tx's connection (the statement
// cache's, on SQLite), errors translated as GORM translates them, and
// returns the rows it changed.
func execSQLite(tx *gorm.DB, q string, args ...any) (int64, error) {
	res, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, q, args...)
	if err != nil {
		if t, ok := tx.Dialector.(gorm.ErrorTranslator); ok {
			err = t.Translate(err)
		}
		return 0, err
	}
	return res.RowsAffected()
}

// SQLitePurchaseStatements are the fixed texts of a purchase on SQLite, for
// the benchmark's reference that sends them without the engine: the read
// and the record of a guard, the account's read, offers_version, the
// multi-row insert of n rows of a table, the balance row's update (its
// arguments in balanceUpdateArgs' order) and the balance read.
type SQLitePurchaseStatements struct {
	Recorded, Lock, OffersVersion, BalanceUpdate, Record, Balance string
	Insert                                                        func(table string, n int) string
}

// SQLitePurchaseSQL is what SQLitePurchaseStatements says of this engine.
var SQLitePurchaseSQL = SQLitePurchaseStatements{Recorded: recordedSQLite, Lock: lockSQLite, OffersVersion: offersVersionSQL,
	BalanceUpdate: balanceUpdateSQLite, Record: recordSQLite, Balance: balanceSQL, Insert: insertSQL}
