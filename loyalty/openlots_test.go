package loyalty_test

import (
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestOpenLotsFromTheIndex: a till's catch-up reads a member's open lots
// from lots_member_open_cover alone (an index-only scan), not from a heap
// page a lot. With every other way to read the table turned off, the plan
// is an index-only scan of that index only if the read asks for no column
// the index lacks; a column added to the read, or dropped from the index,
// leaves PostgreSQL a disabled plan and fails this.
func TestOpenLotsFromTheIndex(t *testing.T) {
	store := loyaltytest.MustOpen(t, loyalty.Postgres)
	var plan []string
	err := store.DB().Transaction(func(tx *gorm.DB) error {
		for _, off := range []string{"enable_seqscan", "enable_bitmapscan", "enable_indexscan"} {
			if err := tx.Exec("SET LOCAL " + off + " = off").Error; err != nil {
				return err
			}
		}
		q := strings.Replace(loyalty.OpenLotsSQL, "$1", "'m1'", 1)
		return tx.Raw("EXPLAIN " + q).Scan(&plan).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "Index Only Scan using lots_member_open_cover") {
		t.Fatalf("the open lots' read is not an index-only scan of lots_member_open_cover:\n%s", text)
	}
}
