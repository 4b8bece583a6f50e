package api

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// BenchmarkPurchaseBatchHTTP posts batches of loyalty.MaxBatch purchases
// for 2,000 members through the app on SQLite: the engine's cost of a
// batched purchase, request and answer included.
func BenchmarkPurchaseBatchHTTP(b *testing.B) {
	e := newEnv(b, loyalty.SQLite)
	members := make([]string, 2000)
	for i := range members {
		members[i] = e.enrol()
	}
	pos := e.pos()
	n := 0
	b.ResetTimer()
	for range b.N {
		purchases := make([]any, loyalty.MaxBatch)
		for i := range purchases {
			n++
			purchases[i] = map[string]any{"member_id": members[(n*7919)%len(members)], "external_id": fmt.Sprintf("HB-%d", n),
				"store_id": "store-1", "currency": "USD", "total": 2500,
				"items": []any{map[string]any{"sku": "SKU-1", "category": "c1", "quantity": 1, "unit_price": 1000, "amount": 1000},
					map[string]any{"sku": "SKU-2", "category": "c2", "quantity": 1, "unit_price": 1500, "amount": 1500}}}
		}
		body, _ := json.Marshal(map[string]any{"purchases": purchases})
		b.StartTimer()
		r := e.do("POST", "/v1/purchases/batch", pos, body)
		b.StopTimer()
		if r.Status != 200 {
			b.Fatalf("%d %s", r.Status, r.Body)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*loyalty.MaxBatch), "ns/purchase")
}
