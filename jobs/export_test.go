package jobs

import "time"

// ActivitySQL is the one pass over every member's purchases that
// member_activity keeps up to date, with its arguments as of asOf (local
// day day): the reference its tests compare with.
func ActivitySQL(r *Runner, asOf time.Time, day int64) (string, []any) {
	return r.activitySQL(""), []any{activityArgs(asOf, day)}
}

// PageDescSQL is the query of a page of the churn-risk and CLV lists.
var PageDescSQL = pageDescSQL

// RiskCollate is the collation the churn-risk list compares and orders in
// on PostgreSQL, its index's.
const RiskCollate = riskCollate

// SetScoreChunk has the churn scores sent n to a statement until the
// returned func restores the size.
func SetScoreChunk(n int) func() {
	was := scoreChunk
	scoreChunk = n
	return func() { scoreChunk = was }
}
