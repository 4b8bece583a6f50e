package loyalty_test

import (
	"strings"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestOfferFactsByMember: a purchase reads the member's offer activations
// and uses by index, not by a scan of every activation and use there is
// (which grows with every offer anyone used). On PostgreSQL the plan of
// pgOfferFactsSQL, with sequential scans off, goes through both
// member-first indexes; on SQLite, reads of the shape loadMemberOffers
// makes (by member_id alone) search them.
func TestOfferFactsByMember(t *testing.T) {
	for _, dialect := range loyaltytest.Dialects(t) {
		t.Run(dialect, func(t *testing.T) {
			store := loyaltytest.MustOpen(t, dialect)
			var text string
			if dialect == loyalty.Postgres {
				text = pgPlan(t, store.DB(), loyalty.OfferFactsSQL, "enable_seqscan")
			} else {
				var plan []string
				for _, q := range []string{
					"SELECT offer_id FROM offer_activations WHERE member_id = 'm1'",
					"SELECT offer_id, COUNT(*) AS n FROM offer_uses WHERE member_id = 'm1' GROUP BY offer_id",
				} {
					var rows []struct{ Detail string }
					if err := store.DB().Raw("EXPLAIN QUERY PLAN " + q).Scan(&rows).Error; err != nil {
						t.Fatal(err)
					}
					for _, r := range rows {
						plan = append(plan, r.Detail)
					}
				}
				text = strings.Join(plan, "\n")
			}
			for _, ix := range []string{"offer_activations_by_member", "offer_uses_by_member"} {
				if !strings.Contains(text, ix) {
					t.Errorf("the member's offer facts are read without %s:\n%s", ix, text)
				}
			}
		})
	}
}
