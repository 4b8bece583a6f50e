package rewards_test

import (
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/rewards"
)

// TestGiftExpiryByIndex: a birthday-gifts run finds the gifts whose claim
// window ended through the partial index of the gifts still available,
// not by reading every gift ever given (a table that grows by a row per
// member a year). PostgreSQL's plan is taken with sequential scans off, so
// only a missing or unusable index leaves it without member_gifts_open.
func TestGiftExpiryByIndex(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		db := loyaltytest.MustOpen(t, dialect).DB()
		q := strings.Replace(rewards.ExpireGiftsSQL, "?", "'2026-03-01 00:00:00+00'", 1)
		var plan []string
		err := db.Transaction(func(tx *gorm.DB) error {
			if dialect == loyalty.Postgres {
				if err := tx.Exec("SET LOCAL enable_seqscan = off").Error; err != nil {
					return err
				}
				return tx.Raw("EXPLAIN " + q).Scan(&plan).Error
			}
			var rows []struct{ Detail string }
			if err := tx.Raw("EXPLAIN QUERY PLAN " + q).Scan(&rows).Error; err != nil {
				return err
			}
			for _, r := range rows {
				plan = append(plan, r.Detail)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if text := strings.Join(plan, "\n"); !strings.Contains(text, "member_gifts_open") {
			t.Fatalf("lapsed gifts are found without member_gifts_open:\n%s", text)
		}
	})
}
