package loyalty

import (
	"time"

	"github.com/loyalty-engine/loyalty/tiers"
)

// The rules of the books, each defined once. Where a rule must also run in
// SQL (the set-based jobs), its SQL sits beside its Go here and a test
// checks the two against each other on random data (rules_test.go).

// ExpiryFor is when points credited at t expire under the program's lot
// policy; nil when they never expire by lot. Every credit, one account's or
// a bulk one, takes its expires_at from here.
func (p *Program) ExpiryFor(t time.Time) *time.Time {
	if p.ExpiryPolicy != ExpiryLot || p.ExpiryDays == 0 {
		return nil
	}
	e := ts(t.AddDate(0, 0, p.ExpiryDays))
	return &e
}

// Qualifying spend. A purchase counts its cash part (its total less what
// points paid of it, §16) less the cash part of what was returned of
// it (a return counts against the purchase it returns, by the purchase's
// occurred_at) towards the spend measured at at when it occurred in
// [period.Start(at), at]. inPeriod is the rule in Go (the kept balance);
// QualifyingSpendSQL and NetSpendSQL are the same rule in SQL (the tier
// review; the segments job's monetary value).

// inPeriod reports whether a purchase made at occurred counts towards the
// qualifying spend measured at at.
func inPeriod(p tiers.Period, occurred, at time.Time) bool {
	return !occurred.Before(p.Start(at)) && !occurred.After(at)
}

// NetSpendSQL is what the purchase of alias p counts towards spend, in SQL:
// its cash part (§16: what points paid does not count) less the cash part
// of its returns.
func NetSpendSQL(p string) string {
	return p + ".total - " + p + ".returned_amount - (" + p + ".amount_paid_with_points - " + p + ".amount_paid_returned)"
}

// QualifyingSpendSQL is the qualifying spend of the member whose id is the
// SQL expression member, as a scalar subquery taking the two arguments
// QualifyingSpendArgs gives for an instant. The sum is exact: one member's
// purchases may add up past int64.
func (s *Store) QualifyingSpendSQL(member string) string {
	return `COALESCE((SELECT ` + s.SumOrderSQL(NetSpendSQL("p")) + ` FROM purchases p
		WHERE p.member_id = ` + member + ` AND p.occurred_at >= ? AND p.occurred_at <= ?), 0)`
}

// QualifyingSpendArgs are the arguments of QualifyingSpendSQL for the
// spend measured at at: the bounds inPeriod applies.
func QualifyingSpendArgs(p tiers.Period, at time.Time) []any {
	return []any{ts(p.Start(at)), ts(at)}
}

// Lot order: spends take from the available lots that expire first,
// never-expiring last, then the earliest available, then by id (lotBefore);
// pending lots are taken by when they become available, then in that order
// (pendingBefore). drawScans is the same order in SQL, in phases that
// follow the open-lots index lots(member_id, expires_at, id).

// lotBefore is the draw order of available lots.
func lotBefore(x, y lotRow) bool {
	switch {
	case x.ExpiresAt != nil && y.ExpiresAt == nil:
		return true
	case x.ExpiresAt == nil && y.ExpiresAt != nil:
		return false
	case x.ExpiresAt != nil && !x.ExpiresAt.Equal(*y.ExpiresAt):
		return x.ExpiresAt.Before(*y.ExpiresAt)
	case !x.AvailableAt.Equal(y.AvailableAt):
		return x.AvailableAt.Before(y.AvailableAt)
	}
	return x.ID < y.ID
}

// pendingBefore is the draw order of pending lots.
func pendingBefore(x, y lotRow) bool {
	if !x.AvailableAt.Equal(y.AvailableAt) {
		return x.AvailableAt.Before(y.AvailableAt)
	}
	return lotBefore(x, y)
}

// lotScan is one phase of a draw in SQL: the open lots of a member that
// where selects (its arguments are the instant, as often as it has ?), in
// order.
type lotScan struct {
	where, order string
	args         int
}

// Draw orders in SQL: lotBefore over the available lots, pendingBefore over
// the pending ones. A lot past its expires_at is in neither.
var (
	availableScans = []lotScan{
		{where: "expires_at > ? AND available_at <= ?", order: "expires_at, available_at, id", args: 2},
		{where: "expires_at IS NULL AND available_at <= ?", order: "available_at, id", args: 1},
	}
	pendingScans = []lotScan{
		{where: "available_at > ? AND (expires_at IS NULL OR expires_at > ?)",
			order: "available_at, CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, id", args: 2},
	}
)

// allocate draws n points from lots, taken in the order given: all of each
// lot until n is covered. It returns the draws and what the lots could not
// cover. It is the whole of lot allocation; where the lots come from, and
// in which order, is the caller's.
func allocate(lots []lotRow, n int64) (draws []drawRow, left int64) {
	for _, l := range lots {
		if n == 0 {
			break
		}
		t := min(l.Remaining, n)
		if t <= 0 {
			continue
		}
		n -= t
		draws = append(draws, drawRow{LotID: l.ID, Points: t})
	}
	return draws, n
}

// Lapse: a lot's points lapse at its own expires_at or, under the
// inactivity policy, at the member's deadline when that comes first. lapse
// is the rule in Go (a locked account's write-off, the ledger listing),
// lapseSQL the same rule over all lots (the expire-points job); the listing
// shows before the job runs exactly the entries the job then stores.

// expirePrefix makes the id of a lot's expire entry from the lot's id: the
// entry is the lot's, one per lot, so whoever writes it (the expire-points
// job, the inactivity write-off of a locked account) writes the same row,
// and the ledger listing shows it under that id before it is stored.
const expirePrefix = "exp:"

func expireEntryID(lotID string) string { return expirePrefix + lotID }

// Descriptions of expire entries, by the rule that expired the lot.
const (
	expiredByLot        = "points expired"
	expiredByInactivity = "points expired after inactivity"
)

// inactivityDeadline is when all points expire under the inactivity policy.
func (a *account) inactivityDeadline() (time.Time, bool) {
	if a.prog.ExpiryPolicy != ExpiryInactivity || a.prog.ExpiryDays == 0 || a.balance.LastActivityAt == nil {
		return time.Time{}, false
	}
	return a.balance.LastActivityAt.UTC().AddDate(0, 0, a.prog.ExpiryDays), true
}

// lapse is when the points of lot l lapse for this account: at the lot's
// own expires_at, or at the inactivity deadline when that comes first. ok
// is false for a lot that never lapses as things stand. The expire-points
// job dates its entries by the same rule, in SQL (lapseSQL).
func (a *account) lapse(l lotRow) (at time.Time, why string, ok bool) {
	deadline, inactive := a.inactivityDeadline()
	switch {
	case l.ExpiresAt != nil && (!inactive || !l.ExpiresAt.After(deadline)):
		return l.ExpiresAt.UTC(), expiredByLot, true
	case inactive:
		return deadline.UTC(), expiredByInactivity, true
	}
	return time.Time{}, "", false
}

// lapsedEntry is the expire entry of lot l if its points have lapsed at
// a.now: all that is left of the lot, dated when it lapsed. It is the same
// row whether it is stored yet or not, CreatedAt aside.
func (a *account) lapsedEntry(l lotRow) (entryRow, bool) {
	at, why, ok := a.lapse(l)
	if !ok || at.After(a.now) || l.Remaining <= 0 {
		return entryRow{}, false
	}
	at = ts(at)
	return entryRow{ID: expireEntryID(l.ID), MemberID: l.MemberID, Kind: KindExpire, Points: -l.Remaining, OccurredAt: at,
		AvailableAt: at, ExpiresAt: tsp(l.ExpiresAt), Description: why}, true
}

// lapseRule is account.lapse over all lots at once, in SQL: from joins a
// lot l to what decides its lapse, due selects the lots lapsed at asOf with
// points left, at is when each lapsed and why the entry's description.
type lapseRule struct {
	from, due, at, why string
	args               map[string]any
}

// lapseSQL writes the lapse rule for the program's policy. A lot lapses at
// its own expires_at; under the inactivity policy, all of a member's lots
// lapse at its deadline, last_activity_at + expiry_days, when that comes
// first. The deadline is computed in SQL, the one place where the two
// dialects differ: a fixed number of hours on PostgreSQL (an interval of
// days would follow the session's daylight saving time), whole days on
// SQLite's text timestamps with their fraction of a second kept (SQLite's
// own formatting keeps only milliseconds). Both add exactly 24 h a day, as
// time.AddDate does on the UTC instants the store keeps.
func lapseSQL(dialect string, prog *Program, asOf time.Time) lapseRule {
	r := lapseRule{from: "lots l", due: "l.remaining > 0 AND l.expires_at <= @as_of", at: "l.expires_at", why: "'" + expiredByLot + "'",
		args: map[string]any{"as_of": asOf}}
	if prog.ExpiryPolicy != ExpiryInactivity || prog.ExpiryDays == 0 {
		return r
	}
	deadline := "datetime(substr(b.last_activity_at, 1, 19), '+' || @days || ' days') || substr(b.last_activity_at, 20)"
	if dialect == Postgres {
		deadline = "(b.last_activity_at + make_interval(hours => CAST(@hours AS integer)))"
	}
	byLot := "l.expires_at IS NOT NULL AND (b.last_activity_at IS NULL OR l.expires_at <= " + deadline + ")"
	r.from = "lots l JOIN member_balances b ON b.member_id = l.member_id"
	r.due = "l.remaining > 0 AND (l.expires_at <= @as_of OR b.last_activity_at <= @idle_since)"
	r.at = "CASE WHEN " + byLot + " THEN l.expires_at ELSE " + deadline + " END"
	r.why = "CASE WHEN " + byLot + " THEN '" + expiredByLot + "' ELSE '" + expiredByInactivity + "' END"
	r.args["idle_since"] = ts(asOf.AddDate(0, 0, -prog.ExpiryDays))
	r.args["days"] = prog.ExpiryDays
	r.args["hours"] = prog.ExpiryDays * 24
	return r
}
