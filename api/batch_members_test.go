package api

import (
	"fmt"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// A batch over more members than one of the batch's balance UPDATEs
// saves (SQLite saves them a few hundred to a statement): every member's
// balance is saved, as its last purchase in the batch answered it.
func TestPurchaseBatchManyMembers(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		members := make([]string, 300)
		for i := range members {
			members[i] = e.enrol()
		}
		var purchases []any
		earned := map[string]int64{}
		last := map[string]int{} // a member's last purchase in the batch
		for i := 0; i < loyalty.MaxBatch; i++ {
			m := members[i%len(members)]
			total := int64(100 * (1 + i%40))
			earned[m] += total / 100
			last[m] = i
			purchases = append(purchases, receipt(m, total, fmt.Sprintf("M-%d", i)))
		}
		answers := e.batch(e.pos(), purchases)
		for i, r := range answers {
			if r.Status != 201 || r.Replayed {
				t.Fatalf("purchase %d: %d %s", i, r.Status, r.Body)
			}
		}
		for _, m := range members {
			b := e.balance(m)
			if b.Available != earned[m] {
				t.Fatalf("member %s: available %d, want %d", m, b.Available, earned[m])
			}
			answered := answers[last[m]].json(t)["balance"].(map[string]any)
			if got := int64(answered["available"].(float64)); got != b.Available || int64(answered["version"].(float64)) != b.Version {
				t.Fatalf("member %s: the last answer shows %v, the balance is %+v", m, answered, b)
			}
		}
		e.checkLedger()
	})
}
