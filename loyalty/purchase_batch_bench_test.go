package loyalty_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// BenchmarkTillBatch posts batches of loyalty.MaxBatch purchases as the
// bench's batch phase sends them (random members of 2,000, one to five
// lines each, each member with a purchase before), through the service:
// the engine's cost of a batched purchase without HTTP, as wall time and
// as the process's CPU time (user + system) per purchase. With
// TILLBATCH_PROFILE=FILE it writes a CPU profile of the batches alone,
// without the enrolments and first purchases before them.
func BenchmarkTillBatch(b *testing.B) {
	for _, dialect := range loyaltytest.Dialects(b) {
		b.Run(dialect, func(b *testing.B) {
			ctx := context.Background()
			svc := loyalty.NewService(loyaltytest.MustOpen(b, dialect))
			members := enrolBenchMembers(b, svc, 2000)
			till := loyalty.Principal{Role: loyalty.RolePOS, Subject: "till-1"}
			rng := rand.New(rand.NewPCG(1, 2))
			n := 0
			purchase := func(m string) loyalty.PurchaseInput {
				n++
				lines := make([]loyalty.PurchaseItem, 1+rng.IntN(5))
				var total int64
				for i := range lines {
					qty, price := 1+rng.Int64N(3), 100*(5+rng.Int64N(146))
					lines[i] = loyalty.PurchaseItem{SKU: fmt.Sprintf("SKU-%d", rng.IntN(5000)), Category: fmt.Sprintf("c%d", rng.IntN(8)),
						Quantity: ptr(qty), UnitPrice: ptr(price), Amount: ptr(qty * price)}
					total += qty * price
				}
				return loyalty.PurchaseInput{MemberID: m, ExternalID: fmt.Sprintf("R-%d", n), StoreID: "s1", Channel: "pos",
					Currency: "USD", Total: &total, Items: lines}
			}
			for _, m := range members {
				if _, _, err := svc.PostPurchase(ctx, till, purchase(m), loyalty.IdempotencyKey{}); err != nil {
					b.Fatal(err)
				}
			}
			if f := os.Getenv("TILLBATCH_PROFILE"); f != "" {
				out, _ := os.Create(f)
				_ = pprof.StartCPUProfile(out)
				defer pprof.StopCPUProfile()
			}
			b.ResetTimer()
			cpu0 := cpuTime()
			for range b.N {
				b.StopTimer()
				ins := make([]loyalty.PurchaseInput, loyalty.MaxBatch)
				for i := range ins {
					ins[i] = purchase(members[rng.IntN(len(members))])
				}
				b.StartTimer()
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
			purchases := float64(b.N * loyalty.MaxBatch)
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/purchases, "cpu-µs/purchase")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/purchases, "µs/purchase")
		})
	}
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
