package loyalty_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// BenchmarkPurchaseBatch posts batches of loyalty.MaxBatch purchases for
// 200 members, and as many purchases one at a time, through the service:
// the engine's own cost of a purchase either way, without HTTP.
func BenchmarkPurchaseBatch(b *testing.B) {
	for _, dialect := range loyaltytest.Dialects(b) {
		b.Run(dialect, func(b *testing.B) {
			ctx := context.Background()
			svc := loyalty.NewService(loyaltytest.MustOpen(b, dialect))
			members := enrolBenchMembers(b, svc, 200)
			till := loyalty.Principal{Role: loyalty.RolePOS, Subject: "till-1"}
			n := 0
			next := func() loyalty.PurchaseInput {
				n++
				total := int64(1000 + n%5000)
				return loyalty.PurchaseInput{MemberID: members[n%len(members)], ExternalID: fmt.Sprintf("R-%d", n), StoreID: "s1",
					Total: &total, Items: []loyalty.PurchaseItem{{SKU: "SKU-1", Category: "c1", Quantity: ptr(int64(1)), UnitPrice: &total, Amount: &total}}}
			}
			b.Run("batch", func(b *testing.B) {
				for range b.N {
					ins := make([]loyalty.PurchaseInput, loyalty.MaxBatch)
					for i := range ins {
						ins[i] = next()
					}
					res, err := svc.PostPurchases(ctx, till, ins, nil)
					if err != nil {
						b.Fatal(err)
					}
					for _, r := range res {
						if r.Err != nil {
							b.Fatal(r.Err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*loyalty.MaxBatch), "ns/purchase")
			})
			b.Run("single", func(b *testing.B) {
				for range b.N {
					for range loyalty.MaxBatch {
						if _, _, err := svc.PostPurchase(ctx, till, next(), loyalty.IdempotencyKey{}); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*loyalty.MaxBatch), "ns/purchase")
			})
		})
	}
}

func ptr[T any](v T) *T { return &v }

// enrolBenchMembers enrols n members C-0, C-1, … and returns their ids.
func enrolBenchMembers(b *testing.B, svc *loyalty.Service, n int) []string {
	members := make([]string, n)
	for i := range members {
		m, _, err := svc.EnrolMember(context.Background(), loyalty.MemberInput{ExternalID: ptr(fmt.Sprintf("C-%d", i))}, loyalty.IdempotencyKey{})
		if err != nil {
			b.Fatal(err)
		}
		members[i] = m.ID
	}
	return members
}
