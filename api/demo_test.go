package api

import (
	"context"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/jobs/demo"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestDemoHistoryThroughImport checks that the demo program (serve --demo)
// brings its members and its purchase history in through the CSV import
// with earning (§15), and posts live only the last eight weeks: multi-line
// baskets, payments with points, returns and redemptions.
func TestDemoHistoryThroughImport(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		now := e.clock.Now()
		sum, err := demo.Load(context.Background(), e.store, loyalty.DemoOptions{Members: 40, Seed: 7, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if len(sum.Imports) != 2 {
			t.Fatalf("imports %+v", sum.Imports)
		}
		// Each import, as GET /v1/imports/{id} answers it, succeeded with
		// every row created.
		var imps [2]loyalty.Import
		for i, kind := range []string{loyalty.ImportMembers, loyalty.ImportPurchases} {
			imp := &imps[i]
			e.do("GET", "/v1/imports/"+sum.Imports[i].ID, e.admin(), nil).must(t, 200).Decode(t, imp)
			if imp.Kind != kind || imp.Status != loyalty.ImportSucceeded || imp.DryRun || imp.Earn != (kind == loyalty.ImportPurchases) ||
				imp.RowsTotal == 0 || imp.RowsDone != imp.RowsTotal || imp.RowsCreated != imp.RowsTotal || imp.RowsSkipped != 0 ||
				imp.RowsFailed != 0 || imp.FinishedAt == nil {
				t.Errorf("%s import %+v", kind, imp)
			}
		}
		if imps[0].RowsCreated != 40 || sum.Members != 40 {
			t.Errorf("members imported %d, summary %d, want 40", imps[0].RowsCreated, sum.Members)
		}
		var members int64
		if err := e.store.DB().Raw("SELECT COUNT(*) FROM members").Scan(&members).Error; err != nil {
			t.Fatal(err)
		}
		if members != 40 {
			t.Errorf("%d members stored, want 40", members)
		}

		// The purchases before the live weeks are the imported rows, one
		// line each, and every one of them earned points; the live weeks
		// hold the rest.
		var rows []struct {
			OccurredAt   time.Time
			PointsEarned int64
			PointsPaid   int64
			Lines        int64
		}
		if err := e.store.DB().Raw(`SELECT p.occurred_at, p.points_earned, p.points_paid,
			(SELECT COUNT(*) FROM purchase_items i WHERE i.purchase_id = p.id) AS lines FROM purchases p`).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		cutoff := now.Add(-8 * 7 * 24 * time.Hour)
		var imported, live, basketsLive, paidLive int64
		for _, r := range rows {
			if r.OccurredAt.Before(cutoff) {
				imported++
				if r.Lines != 1 || r.PointsEarned <= 0 || r.PointsPaid != 0 {
					t.Errorf("imported purchase %+v", r)
				}
				continue
			}
			live++
			if r.Lines > 1 {
				basketsLive++
			}
			if r.PointsPaid > 0 {
				paidLive++
			}
		}
		if imported != imps[1].RowsCreated || int(imported+live) != sum.Purchases {
			t.Errorf("%d purchases before the live weeks, %d imported; %d in all, summary %d", imported, imps[1].RowsCreated,
				imported+live, sum.Purchases)
		}
		if live == 0 || basketsLive == 0 || paidLive != int64(sum.Payments) || sum.Payments == 0 || sum.Returns == 0 || sum.Redemptions == 0 {
			t.Errorf("live weeks: %d purchases, %d multi-line, %d paid with points; summary %+v", live, basketsLive, paidLive, sum)
		}
		// The earning import left members in tiers above the entry tier.
		var upper int64
		if err := e.store.DB().Raw("SELECT COUNT(*) FROM members WHERE tier_code <> 'insider'").Scan(&upper).Error; err != nil {
			t.Fatal(err)
		}
		if upper == 0 {
			t.Error("no demo member is above the entry tier")
		}
		e.checkLedger()
	})
}
