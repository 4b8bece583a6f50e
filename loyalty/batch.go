package loyalty

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gorm.io/gorm"
)

// insertQueue holds a purchase's inserts on PostgreSQL until the account is
// saved, when they go to the server with the balance update as one
// statement (data-modifying WITH clauses, whose constraints are checked at
// the end of the statement): one round trip instead of one per row. On
// SQLite, where a statement costs no round trip, rows are inserted at once.
type insertQueue struct {
	sqls []string
	vars []any
}

var placeholder = regexp.MustCompile(`\$(\d+)`)

// insert inserts value (a pointer to a row or a slice of rows) now, or
// queues it when the account defers its inserts.
func (a *account) insert(tx *gorm.DB, value any) error {
	if a.queue == nil {
		return tx.Create(value).Error
	}
	st := tx.Session(&gorm.Session{DryRun: true, NewDB: true}).Create(value).Statement
	if st.Error != nil {
		return st.Error
	}
	a.queue.add(st.SQL.String(), st.Vars)
	return nil
}

// add appends one statement whose placeholders are numbered from $1.
func (q *insertQueue) add(sql string, vars []any) {
	offset := len(q.vars)
	if offset > 0 {
		sql = placeholder.ReplaceAllStringFunc(sql, func(p string) string {
			n, _ := strconv.Atoi(p[1:])
			return "$" + strconv.Itoa(n+offset)
		})
	}
	q.sqls = append(q.sqls, sql)
	q.vars = append(q.vars, vars...)
}

// saveQueued writes the queued inserts and the balance in one statement.
func (a *account) saveQueued(tx *gorm.DB) error {
	q := a.queue
	a.queue = nil
	b := &a.balance
	q.add(`UPDATE member_balances SET points = $1, debt = $2, lifetime_earned = $3, lifetime_redeemed = $4,
		last_activity_at = $5, version = $6, updated_at = $7, open_available = $9, open_pending = $10,
		qualifying_spend = $11, expiring_soon = $12, as_of = $13, next_change_at = $14, config_version = $15 WHERE member_id = $8`,
		[]any{b.Points, b.Debt, b.LifetimeEarned, b.LifetimeRedeemed, b.LastActivityAt, b.Version, b.UpdatedAt, b.MemberID,
			b.OpenAvailable, b.OpenPending, b.QualifyingSpend, b.ExpiringSoon, b.AsOf, b.NextChangeAt, b.ConfigVersion})
	var sb strings.Builder
	sb.WriteString("WITH ")
	for i, s := range q.sqls[:len(q.sqls)-1] {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "w%d AS (%s)", i, s)
	}
	sb.WriteString(" ")
	sb.WriteString(q.sqls[len(q.sqls)-1])
	// Straight to the driver: the text is PostgreSQL's, numbered
	// placeholders and all, not GORM's.
	res, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, sb.String(), q.vars...)
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
