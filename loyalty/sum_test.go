package loyalty_test

import (
	"encoding/json"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestSumSQLIsExact sums columns of integers whose total, or whose running
// total, passes int64 either way, with the dialect's SumSQL: the result is
// the exact sum, grouped or not, and compares with integers in SQL.
func TestSumSQLIsExact(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		store := loyaltytest.MustOpen(t, dialect)
		db := store.DB()
		if err := db.Exec(`CREATE TABLE sum_test (g text NOT NULL, v bigint)`).Error; err != nil {
			t.Fatal(err)
		}
		const top, bottom = int64(math.MaxInt64), int64(math.MinInt64)
		groups := map[string][]any{
			"up":        {top, top, top, int64(5)},
			"down":      {bottom, bottom, int64(-1)},
			"back":      {top, int64(10), -top, int64(-10)}, // passes int64, then returns
			"swing":     {top, top, bottom, bottom, int64(3)},
			"nulls":     {nil, int64(7), nil},
			"all-nulls": {nil, nil},
		}
		want := map[string]string{}
		for g, vs := range groups {
			sum, any := new(big.Int), false
			for _, v := range vs {
				if err := db.Exec(`INSERT INTO sum_test (g, v) VALUES (?, ?)`, g, v).Error; err != nil {
					t.Fatal(err)
				}
				if v != nil {
					sum.Add(sum, big.NewInt(v.(int64)))
					any = true
				}
			}
			if any {
				want[g] = sum.String()
			} else {
				want[g] = "0" // NULL, read as 0
			}
		}
		var rows []struct {
			G string
			S loyalty.Sum
		}
		if err := db.Raw(`SELECT g, ` + store.SumSQL("v") + ` AS s FROM sum_test GROUP BY g`).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(groups) {
			t.Fatalf("%d groups, want %d", len(rows), len(groups))
		}
		for _, r := range rows {
			if r.S.String() != want[r.G] {
				t.Errorf("group %s: sum %s, want %s", r.G, r.S, want[r.G])
			}
		}
		var none loyalty.Sum
		if err := db.Raw(`SELECT ` + store.SumSQL("v") + ` FROM sum_test WHERE g = 'no such group'`).Scan(&none).Error; err != nil || none.Sign() != 0 {
			t.Errorf("over no rows: %s, %v; want 0", none, err)
		}
		// Past int64 a sum still compares and orders as a number.
		var above []string
		if err := db.Raw(`SELECT g FROM sum_test GROUP BY g HAVING `+store.SumOrderSQL("v")+` > ? ORDER BY g`, int64(1)<<62).
			Scan(&above).Error; err != nil {
			t.Fatal(err)
		}
		if strings.Join(above, ",") != "up" {
			t.Errorf("groups whose sum is above 2^62: %v, want [up]", above)
		}
		var order []string
		if err := db.Raw(`SELECT g FROM sum_test GROUP BY g ORDER BY COALESCE(` + store.SumOrderSQL("v") + `, 0), g`).
			Scan(&order).Error; err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(order, ","); got != "down,all-nulls,back,swing,nulls,up" {
			t.Errorf("groups by sum: %s", got)
		}
		if dialect == loyalty.SQLite {
			// exact_sum adds integers only: no float near points or money.
			if err := db.Raw(`SELECT exact_sum(1.5)`).Scan(&none).Error; err == nil {
				t.Errorf("exact_sum of a float answered %s", none)
			}
		}
	})
}

// TestSumJSON: a Sum is a JSON integer of any size, both ways.
func TestSumJSON(t *testing.T) {
	for _, s := range []string{"0", "-1", "9223372036854775807", "9223372036854775808", "-99999999999999999999999999"} {
		var v loyalty.Sum
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		b, err := json.Marshal(struct{ N loyalty.Sum }{v})
		if err != nil || string(b) != `{"N":`+s+`}` {
			t.Errorf("%s: %s, %v", s, b, err)
		}
	}
	for _, s := range []string{`"1"`, "1.5", "1e3", "null", ""} {
		var v loyalty.Sum
		if err := json.Unmarshal([]byte(s), &v); err == nil {
			t.Errorf("%s read as %s", s, v)
		}
	}
}
