package api

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestCDNOWMasterImport converts the whole CDNOW file (69,659 purchases of
// 23,570 customers, 1997–98) to the purchases CSV of §15 and imports it
// through the API: the rows, members and money stored equal the file's, a
// re-import creates nothing, and the summary, segment and redemption-rate
// figures equal a computation by hand from the file.
func TestCDNOWMasterImport(t *testing.T) {
	f, err := os.Open("../../shared/data/cdnow/CDNOW_master.txt")
	if err != nil {
		t.Skipf("shared data absent: %v", err)
	}
	defer f.Close()
	type row struct {
		customer, date string
		cents          int64
	}
	var rows []row
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 4 || fs[0] == "customer_id" {
			continue
		}
		d, err := strconv.ParseFloat(fs[3], 64)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row{customer: fs[0], date: fs[1], cents: int64(math.Round(d * 100))})
	}
	if len(rows) != 69659 {
		t.Fatalf("read %d purchases, want 69659", len(rows))
	}
	// By hand: customers, money (a $0.00 visit is imported as one cent),
	// and who bought in the summary's range, in the period before it, and
	// in the 365 days before the segments' as_of.
	var csvBody strings.Builder
	csvBody.WriteString("member_external_id,external_id,store_id,occurred_at,total,currency\n")
	customers := map[string]bool{}
	var money int64
	inRange, inBefore, lastYear := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i, r := range rows {
		total := max(r.cents, 1)
		money += total
		customers[r.customer] = true
		switch {
		case r.date >= "19980101" && r.date <= "19980630":
			inRange[r.customer] = true
		case r.date >= "19970704" && r.date <= "19971231":
			inBefore[r.customer] = true
		}
		if r.date >= "19970701" && r.date <= "19980630" {
			lastYear[r.customer] = true
		}
		fmt.Fprintf(&csvBody, "%s,L%d,cdnow,%s-%s-%sT12:00:00Z,%d,USD\n", r.customer, i+2, r.date[0:4], r.date[4:6], r.date[6:8], total)
	}
	var lost int64
	for c := range inBefore {
		if !inRange[c] {
			lost++
		}
	}
	if len(customers) != 23570 {
		t.Fatalf("%d customers, want 23570", len(customers))
	}
	body := csvBody.String()
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		if testing.Short() && dialect != "sqlite" {
			t.Skip("short")
		}
		e := newEnv(t, dialect)
		e.clock.Set(time.Date(1998, 7, 1, 12, 0, 0, 0, time.UTC))
		addr := listen(t, e)
		_, imp := e.postImport(t, addr, "kind=purchases", body, false)
		if imp.Status != loyalty.ImportSucceeded || imp.RowsCreated != 69659 || imp.RowsFailed != 0 || imp.RowsTotal != 69659 {
			t.Fatalf("import %+v", imp)
		}
		var got struct{ N, Members, Money int64 }
		e.store.DB().Raw(`SELECT COUNT(*) AS n, COUNT(DISTINCT member_id) AS members, SUM(total) AS money FROM purchases`).Scan(&got)
		if got.N != 69659 || got.Members != 23570 || got.Money != money {
			t.Errorf("stored %+v, want 69659 purchases of 23570 members totalling %d", got, money)
		}
		var events int64
		e.store.DB().Raw(`SELECT COUNT(*) FROM events`).Scan(&events)
		if events != 69659+23570 {
			t.Errorf("%d events, want a purchase.created per purchase and a member.created per member", events)
		}

		_, again := e.postImport(t, addr, "kind=purchases", body, false)
		if again.Status != loyalty.ImportSucceeded || again.RowsCreated != 0 || again.RowsSkipped != 69659 {
			t.Fatalf("re-import %+v", again)
		}
		var after int64
		e.store.DB().Raw(`SELECT COUNT(*) FROM events`).Scan(&after)
		if after != events {
			t.Errorf("re-import wrote %d events", after-events)
		}

		sum := e.do("GET", "/v1/analytics/summary?from=1998-01-01&to=1998-06-30", e.marketer(), nil).must(t, 200).JSON(t)
		m := sum["members"].(map[string]any)
		for _, c := range []struct {
			name string
			want int64
		}{{"total", 23570}, {"new", 0}, {"active", int64(len(inRange))}, {"active_before", int64(len(inBefore))}, {"lost", lost}} {
			if int64(m[c.name].(float64)) != c.want {
				t.Errorf("summary members.%s = %v, by hand %d", c.name, m[c.name], c.want)
			}
		}
		// History earns nothing: no points issued, the rate undefined.
		rr := e.do("GET", "/v1/analytics/redemption-rate?from=1997-01-01&to=1998-06-30", e.marketer(), nil).must(t, 200).JSON(t)
		if rr["points_issued"].(float64) != 0 || rr["points_redeemed"].(float64) != 0 || rr["rate_percent"] != nil {
			t.Errorf("redemption rate %v", rr)
		}

		run := e.do("POST", "/v1/jobs/segments/run", e.marketer(), map[string]any{"as_of": "1998-06-30T23:59:59Z"}).must(t, 200).JSON(t)
		if run["status"] != "succeeded" {
			t.Fatalf("segments run %v", run)
		}
		segs := e.do("GET", "/v1/segments", e.marketer(), nil).must(t, 200).JSON(t)["items"].([]any)
		var rfm int64
		for _, s := range segs {
			s := s.(map[string]any)
			if strings.HasPrefix(s["code"].(string), "rfm_") {
				rfm += int64(s["members"].(float64))
			}
		}
		if rfm != int64(len(lastYear)) {
			t.Errorf("members in RFM segments: %d, by hand (a purchase in the 365 days to 1998-06-30) %d", rfm, len(lastYear))
		}
	})
}
