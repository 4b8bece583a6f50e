package loyalty_test

import (
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// pgPlan is PostgreSQL's plan of query, whose $1 is 'm1', with the planner
// settings off turned off for it.
func pgPlan(t *testing.T, db *gorm.DB, query string, off ...string) string {
	t.Helper()
	var plan []string
	err := db.Transaction(func(tx *gorm.DB) error {
		for _, s := range off {
			if err := tx.Exec("SET LOCAL " + s + " = off").Error; err != nil {
				return err
			}
		}
		return tx.Raw("EXPLAIN " + strings.ReplaceAll(query, "$1", "'m1'")).Scan(&plan).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

// TestOpenLotsFromTheIndex: a till's catch-up reads a member's open lots
// from lots_member_open_cover alone (an index-only scan), not from a heap
// page a lot. With every other way to read the table turned off, the plan
// is an index-only scan of that index only if the read asks for no column
// the index lacks; a column added to the read, or dropped from the index,
// leaves PostgreSQL a disabled plan and fails this.
func TestOpenLotsFromTheIndex(t *testing.T) {
	store := loyaltytest.MustOpen(t, loyalty.Postgres)
	plan := pgPlan(t, store.DB(), loyalty.OpenLotsSQL, "enable_seqscan", "enable_bitmapscan", "enable_indexscan")
	if !strings.Contains(plan, "Index Only Scan using lots_member_open_cover") {
		t.Fatalf("the open lots' read is not an index-only scan of lots_member_open_cover:\n%s", plan)
	}
}
