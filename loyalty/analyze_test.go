package loyalty_test

import (
	"testing"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestAnalyzeIfGrown: a transaction that grew a table by more than a tenth
// of what its statistics counted gathers them again, and they count its
// rows once it commits; one that added a few rows leaves them.
func TestAnalyzeIfGrown(t *testing.T) {
	store := loyaltytest.MustOpen(t, loyalty.Postgres)
	db := store.DB()
	if err := db.Exec(`CREATE TABLE grown (n integer PRIMARY KEY)`).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`ANALYZE grown`).Error; err != nil {
		t.Fatal(err)
	}
	counted := func() float64 {
		var n float64
		if err := db.Raw(`SELECT reltuples FROM pg_class WHERE oid = CAST('grown' AS regclass)`).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		return n
	}
	add := func(from, to int) {
		t.Helper()
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec(`INSERT INTO grown SELECT generate_series(?::int, ?::int)`, from, to).Error; err != nil {
				return err
			}
			return loyalty.AnalyzeIfGrown(tx, "grown", int64(to-from+1))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	add(1, 500)
	if n := counted(); n > 0 {
		t.Fatalf("500 rows into an empty table: statistics count %v rows, want them left (under a thousand)", n)
	}
	add(501, 5000)
	if n := counted(); n != 5000 {
		t.Fatalf("4,500 rows more: statistics count %v rows, want 5000", n)
	}
	add(5001, 5400)
	if n := counted(); n != 5000 {
		t.Fatalf("400 rows more (under a tenth): statistics count %v rows, want them left at 5000", n)
	}
}
