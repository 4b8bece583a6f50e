package loyalty_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// BenchmarkImportPurchases imports a purchases CSV of 50,000 rows over
// 5,000 members (with a category on most) into an empty database.
func BenchmarkImportPurchases(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("member_external_id,external_id,store_id,occurred_at,total,currency,category\n")
	const rows, members = 50000, 5000
	cats := []string{"skincare", "makeup", "fragrance", "hair", ""}
	for i := 0; i < rows; i++ {
		fmt.Fprintf(&sb, "M%d,R%d,store-%d,%s,%d,USD,%s\n", (i*7919)%members, i, i%8,
			importNow.Add(-time.Duration(rows-i)*time.Minute).Format(time.RFC3339), 500+(i*37)%20000, cats[i%len(cats)])
	}
	body := sb.String()
	for _, dialect := range loyaltytest.Dialects(b) {
		b.Run(dialect, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				store := loyaltytest.MustOpen(b, dialect)
				svc := loyalty.NewService(store, loyalty.WithClock(func() time.Time { return importNow }))
				imp, err := svc.BeginImport(context.Background(), loyalty.ImportOptions{Kind: loyalty.ImportPurchases})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				out, err := svc.RunImport(context.Background(), imp.ID, strings.NewReader(body))
				if err != nil || out.RowsCreated != rows {
					b.Fatalf("%+v %v", out, err)
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
