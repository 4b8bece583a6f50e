package loyalty_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// BenchmarkPurchaseWAL reports the write-ahead log a purchase costs on
// PostgreSQL: its own transaction, and its events' positioning by the
// sequencer afterwards. Unlike a timing, the figure does not depend on
// how busy the machine is, but the WAL is the whole cluster's: measure
// with no other writer on the server.
func BenchmarkPurchaseWAL(b *testing.B) {
	if !hasDialect(b, "postgres") {
		b.Skip("no PostgreSQL")
	}
	ctx := context.Background()
	store := loyaltytest.MustOpen(b, "postgres")
	svc := loyalty.NewService(store)
	members := enrolBenchMembers(b, svc, 200)
	till := loyalty.Principal{Role: loyalty.RolePOS, Subject: "till-1"}
	lsn := func() int64 {
		var v int64
		if err := store.DB().Raw(`SELECT pg_current_wal_lsn() - '0/0'`).Scan(&v).Error; err != nil {
			b.Fatal(err)
		}
		return v
	}
	sequence := func() {
		for {
			n, _, err := svc.SequenceEvents(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				return
			}
		}
	}
	sequence()
	b.ResetTimer()
	var posting, positioning int64
	for n := range b.N {
		start := lsn()
		for i := range 200 {
			total := int64(1000 + (n*200+i)%5000)
			unit := total / 2
			in := loyalty.PurchaseInput{MemberID: members[i], ExternalID: fmt.Sprintf("R-%d-%d", n, i), StoreID: "s1", Total: &total,
				Items: []loyalty.PurchaseItem{
					{SKU: "SKU-1", Category: "skincare", Quantity: ptr(int64(1)), UnitPrice: &unit, Amount: &unit},
					{SKU: "SKU-2", Category: "makeup", Quantity: ptr(int64(1)), UnitPrice: ptr(total - unit), Amount: ptr(total - unit)}}}
			if _, _, err := svc.PostPurchase(ctx, till, in, loyalty.IdempotencyKey{}); err != nil {
				b.Fatal(err)
			}
		}
		mid := lsn()
		sequence()
		posting, positioning = posting+mid-start, positioning+lsn()-mid
	}
	b.ReportMetric(float64(posting)/float64(b.N*200), "WAL-B/purchase")
	b.ReportMetric(float64(positioning)/float64(b.N*200), "WAL-B/positioning")
}

func hasDialect(tb testing.TB, dialect string) bool {
	for _, d := range loyaltytest.Dialects(tb) {
		if d == dialect {
			return true
		}
	}
	return false
}
