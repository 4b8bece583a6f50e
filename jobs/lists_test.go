package jobs_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestRiskAndClvListsPageInOrder: the churn-risk and CLV lists, read three
// members a page across values many members share, give every active
// member once and in the lists' order (an erased member and, in the CLV
// list, a member without a clv are left out). On PostgreSQL a cursor's
// page (with sorts and table scans off) starts both its halves inside the
// list's index, at the cursor: an
// index range on the key, not a scan from the top that filters out the
// rows before the cursor (which a page deep in the list would pay for).
func TestRiskAndClvListsPageInOrder(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		risks := []string{"0.9000", "0.5000", "0.5000", "0.1000", "1.0000", "0.5000"}
		type row struct {
			id, risk string
			clv      *int64
		}
		var rows []row
		for i := range 23 {
			id := e.enrol("")
			r := row{id: id, risk: risks[i%len(risks)]}
			if i%4 != 3 {
				v := int64(1000 * (i % 3))
				r.clv = &v
			}
			if err := e.store.DB().Exec(`INSERT INTO member_churn (member_id, churn_risk, p_alive, expected_purchases_90d,
					purchase_days, purchases, days_since_last_purchase, computed_at, expected_transactions, repeat_spend, clv, simple_clv)
				VALUES (?, ?, '0.5000', '1.0000', 2, 2, 10, ?, 1.5, 100, ?, 0)`, id, r.risk, e.clock.Now(), r.clv).Error; err != nil {
				t.Fatal(err)
			}
			if i == 7 {
				if err := e.store.DB().Exec(`UPDATE members SET status = 'erased' WHERE id = ?`, id).Error; err != nil {
					t.Fatal(err)
				}
				continue
			}
			rows = append(rows, r)
		}

		for _, minRisk := range []string{"0.0000", "0.5000"} {
			var want []string
			byRisk := slices.Clone(rows)
			slices.SortFunc(byRisk, func(a, b row) int {
				if c := strings.Compare(b.risk, a.risk); c != 0 {
					return c
				}
				return strings.Compare(a.id, b.id)
			})
			for _, r := range byRisk {
				if r.risk >= minRisk {
					want = append(want, r.risk+" "+r.id)
				}
			}
			var got []string
			page := loyalty.Page{Limit: 3}
			for n := 0; ; n++ {
				l, err := e.runner.ChurnRiskList(e.ctx, minRisk, page)
				if err != nil {
					t.Fatal(err)
				}
				for _, it := range l.Items {
					got = append(got, it.ChurnRisk+" "+it.MemberID)
				}
				if l.NextCursor == nil || n > len(rows) {
					break
				}
				page.Cursor = *l.NextCursor
			}
			if !slices.Equal(got, want) {
				t.Errorf("churn-risk list from %s, three a page:\n got %v\nwant %v", minRisk, got, want)
			}
		}

		var want []string
		var byClv []row
		for _, r := range rows {
			if r.clv != nil {
				byClv = append(byClv, r)
			}
		}
		slices.SortFunc(byClv, func(a, b row) int {
			if *a.clv != *b.clv {
				return int(*b.clv - *a.clv)
			}
			return strings.Compare(a.id, b.id)
		})
		for _, r := range byClv {
			want = append(want, strconv.FormatInt(*r.clv, 10)+" "+r.id)
		}
		var got []string
		page := loyalty.Page{Limit: 3}
		for n := 0; ; n++ {
			l, err := e.runner.ClvList(e.ctx, page)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range l.Items {
				got = append(got, strconv.FormatInt(it.Clv, 10)+" "+it.MemberID)
			}
			if l.NextCursor == nil || n > len(rows) {
				break
			}
			page.Cursor = *l.NextCursor
		}
		if !slices.Equal(got, want) {
			t.Errorf("CLV list, three a page:\n got %v\nwant %v", got, want)
		}

		if dialect != loyalty.Postgres {
			return
		}
		for _, l := range []struct{ key, collate, index, from string }{
			{"churn_risk", jobs.RiskCollate, "member_churn_risk", "c.churn_risk " + jobs.RiskCollate + " >= '0.0000'"},
			{"clv", "", "member_churn_clv", "c.clv IS NOT NULL"},
		} {
			q := jobs.PageDescSQL("c.member_id, c."+l.key, "member_churn c JOIN members m ON m.id = c.member_id AND m.status = 'active' WHERE "+l.from, l.key, l.collate, true, 3)
			var plan []string
			err := e.store.DB().Transaction(func(tx *gorm.DB) error {
				if err := tx.Exec("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off").Error; err != nil {
					return err
				}
				return tx.Raw("EXPLAIN "+q, map[string]any{"after_key": "5", "after_id": "m"}).Scan(&plan).Error
			})
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "\n")
			if !strings.Contains(text, "using "+l.index) {
				t.Errorf("%s after a cursor: %s unused:\n%s", l.key, l.index, text)
			}
			for _, cond := range []string{"(" + l.key + " = ", "(" + l.key + " < "} {
				if !slices.ContainsFunc(plan, func(line string) bool {
					return strings.Contains(line, "Index Cond: (") && strings.Contains(line, cond)
				}) {
					t.Errorf("%s after a cursor: no index range %s…:\n%s", l.key, cond, text)
				}
			}
		}
	})
}
