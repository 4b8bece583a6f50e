package loyalty

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gorm.io/gorm"
)

// accountWrites is what a write of an account computed to write, as data:
// rows to insert in order (pointers to rows, or to slices of rows), the
// member's new tier when it moved, and the account's balance row (sealed).
// Each dialect's path sends them its way: flush through GORM (SQLite, and
// PostgreSQL off the hot path), pgWrites through pgx (see pg_purchase.go).
type accountWrites struct {
	rows []any
	tier *string
}

// insert inserts value (a pointer to a row or a slice of rows) now, or
// defers it when the account collects its writes as data.
func (a *account) insert(tx *gorm.DB, value any) error {
	if a.writes != nil {
		a.writes.rows = append(a.writes.rows, value)
		return nil
	}
	return tx.Create(value).Error
}

// flush writes w and a's sealed balance row through GORM. On SQLite, where
// a statement costs no round trip, row by row; on PostgreSQL as one
// statement (data-modifying WITH clauses, whose constraints are checked at
// the end of the statement).
func (w *accountWrites) flush(tx *gorm.DB, a *account) error {
	if tx.Dialector.Name() == Postgres {
		if err := w.flushOne(tx, a); err != nil {
			return err
		}
	} else {
		return w.flushSQLite(tx, a)
	}
	if w.tier != nil {
		return tx.Model(&memberRow{}).Where("id = ?", a.member.ID).
			Updates(map[string]any{"tier_code": *w.tier, "tier_since": a.now}).Error
	}
	return nil
}

var placeholder = regexp.MustCompile(`\$(\d+)`)

func (w *accountWrites) flushOne(tx *gorm.DB, a *account) error {
	var sqls []string
	var vars []any
	add := func(sql string, vs []any) {
		if offset := len(vars); offset > 0 {
			sql = placeholder.ReplaceAllStringFunc(sql, func(p string) string {
				n, _ := strconv.Atoi(p[1:])
				return "$" + strconv.Itoa(n+offset)
			})
		}
		sqls = append(sqls, sql)
		vars = append(vars, vs...)
	}
	for _, r := range w.rows {
		if _, ok := r.(*eventRow); ok {
			afterCommit(tx, hubOf(tx).committed)
		}
		st := tx.Session(&gorm.Session{DryRun: true, NewDB: true}).Create(r).Statement
		if st.Error != nil {
			return st.Error
		}
		add(st.SQL.String(), st.Vars)
	}
	b := &a.balance
	add(balanceUpdateSQL, balanceUpdateArgs(b))
	var sb strings.Builder
	sb.WriteString("WITH ")
	for i, s := range sqls[:len(sqls)-1] {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "w%d AS (%s)", i, s)
	}
	sb.WriteString(" ")
	sb.WriteString(sqls[len(sqls)-1])
	// Straight to the driver: the text is PostgreSQL's, numbered
	// placeholders and all, not GORM's.
	res, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, sb.String(), vars...)
	if err != nil {
		if t, ok := tx.Dialector.(gorm.ErrorTranslator); ok {
			err = t.Translate(err)
		}
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("balance of member %s: %d rows updated (%v)", b.MemberID, n, err)
	}
	return nil
}

// balanceUpdateSQL saves a balance row on PostgreSQL; its arguments are
// balanceUpdateArgs, from $1.
const balanceUpdateSQL = `UPDATE member_balances SET points = $1, debt = $2, lifetime_earned = $3, lifetime_redeemed = $4,
		last_activity_at = $5, version = $6, updated_at = $7, open_available = $9, open_pending = $10,
		qualifying_spend = $11, expiring_soon = $12, as_of = $13, next_change_at = $14, config_version = $15 WHERE member_id = $8`

func balanceUpdateArgs(b *balanceRow) []any {
	return []any{b.Points, b.Debt, b.LifetimeEarned, b.LifetimeRedeemed, b.LastActivityAt, b.Version, b.UpdatedAt, b.MemberID,
		b.OpenAvailable, b.OpenPending, b.QualifyingSpend, b.ExpiringSoon, b.AsOf, b.NextChangeAt, b.ConfigVersion}
}
