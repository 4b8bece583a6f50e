package loyalty_test

import (
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestIDsCompareAsBytes: on PostgreSQL every text column that holds an id
// (id, or a name ending in _id) is collated "C" (migration 00036), so
// that its indexes, sorts and joins compare bytes and not a language's
// order; and two such columns joined never meet two collations, which
// PostgreSQL refuses to compare. A migration that adds one without it
// fails here.
func TestIDsCompareAsBytes(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		if dialect != loyalty.Postgres {
			t.Skip("SQLite compares text as bytes (BINARY) unless told otherwise")
		}
		store := loyaltytest.MustOpen(t, dialect)
		var cols []struct {
			Table, Column string
			Collation     *string
		}
		if err := store.DB().Raw(`SELECT table_name AS "table", column_name AS "column", collation_name AS collation
			FROM information_schema.columns
			WHERE table_schema = current_schema() AND data_type = 'text' AND (column_name = 'id' OR column_name LIKE '%\_id')
			ORDER BY 1, 2`).Scan(&cols).Error; err != nil {
			t.Fatal(err)
		}
		if len(cols) < 60 {
			t.Fatalf("%d id columns found: %+v", len(cols), cols)
		}
		for _, c := range cols {
			if c.Collation == nil || *c.Collation != "C" {
				t.Errorf("%s.%s: collation %v, want \"C\"", c.Table, c.Column, c.Collation)
			}
		}
	})
}
