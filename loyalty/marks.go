package loyalty

import (
	"time"

	"gorm.io/gorm"
)

// Nightly runs that bring kept results forward (the members' purchase
// summaries, the personal offers) find the purchases written since their
// last run by a mark taken at that run: on PostgreSQL an instant, compared
// with created_at; on SQLite, whose one writer appends purchases in rowid
// order, the rowid of the last purchase written before that instant. The
// instant is a margin before the earlier of the run's as-of and its
// start, so a purchase committed late, or dated up to ClockSkew past the
// as-of, is still past the mark at the next run.

// MarkMargin is how long before a run's as-of (or its start, if earlier)
// its mark is taken.
const MarkMargin = time.Hour

// MarkCutoff is the instant of the mark of a run as of asOf started at now.
func MarkCutoff(asOf, now time.Time) time.Time {
	if now.Before(asOf) {
		asOf = now
	}
	return asOf.Add(-MarkMargin)
}

// PurchasesMark is the mark of the purchases written before cutoff: cutoff
// itself on PostgreSQL, the rowid of the last purchase written before it
// on SQLite (a walk back from the newest rowid over the purchases written
// since; 0 when there is none).
func PurchasesMark(db *gorm.DB, cutoff time.Time) (any, error) {
	if db.Dialector.Name() == Postgres {
		return cutoff, nil
	}
	var w []int64
	if err := db.Raw(`SELECT rowid FROM purchases WHERE created_at < ? ORDER BY rowid DESC LIMIT 1`, cutoff).Scan(&w).Error; err != nil {
		return nil, err
	}
	if len(w) == 1 {
		return w[0], nil
	}
	return int64(0), nil
}

// PurchasesSinceSQL is the condition on purchases (unqualified columns)
// that keeps those written after a mark, given as the placeholder arg.
func PurchasesSinceSQL(db *gorm.DB, arg string) string {
	if db.Dialector.Name() == Postgres {
		return "created_at > " + arg
	}
	return "rowid > " + arg
}

// UsableMark reports whether results kept at the mark prev can be brought
// forward to next: on SQLite a rowid mark past the newest purchase
// (rowids renumbered) cannot.
func UsableMark(prev, next any) bool {
	p, ok1 := prev.(int64)
	n, ok2 := next.(int64)
	if ok1 && ok2 {
		return p <= n
	}
	return prev != nil
}

// LocalDatesAround are the bounds on local_date, which the purchases'
// index on it takes, of the purchases dated between the instants from and
// to: a day either side, as a store's local day lies within a day of the
// UTC one. The condition on occurred_at itself is the caller's.
func LocalDatesAround(from, to time.Time) (string, string) {
	return from.UTC().AddDate(0, 0, -1).Format(time.DateOnly), to.UTC().AddDate(0, 0, 1).Format(time.DateOnly)
}
