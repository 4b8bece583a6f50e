package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/tiers"
)

// TestAggregateOverflowAttempt is the hostile admin of issue 12: 1,100
// adjustments of 2^53 − 1 points push the program's sums past 2^63.
// Summary, redemption rate, the redemption-rate job and the console
// dashboard still answer 200 with every digit; one member filled to the
// largest balance an int64 holds gets 409s, never a 500.
func TestAggregateOverflowAttempt(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		const p = int64(tiers.MaxPoints)
		adm := e.admin()
		adjust := func(m string, points int64) resp {
			return e.do("POST", "/v1/members/"+m+"/adjustments", adm, map[string]any{"points": points, "reason": "overflow attempt"})
		}
		full := e.enrol()
		for i := 0; i < 1024; i++ {
			adjust(full, p).must(t, 201)
		}
		others := []string{e.enrol(), e.enrol(), e.enrol()}
		for i := 0; i < 76; i++ {
			adjust(others[i%3], p).must(t, 201)
		}
		reward := e.do("POST", "/v1/rewards", e.marketer(), map[string]any{"code": "max", "name": "Max", "cost_points": p}).
			must(t, 201).JSON(t)["id"].(string)
		for _, m := range others {
			e.do("POST", "/v1/members/"+m+"/redemptions", e.pos(), map[string]any{"reward_id": reward}).must(t, 201)
		}
		t.Run("MemberMaximum", func(t *testing.T) {
			// The full member: its balance, then its lifetime earned points,
			// cannot pass int64.
			adjust(full, p).must(t, 409)
			adjust(full, -p).must(t, 201)
			adjust(full, p).must(t, 409)
			if b := e.balance(full); b.Available != 1023*p || b.LifetimeEarned != 1024*p {
				t.Errorf("full member: available %d, lifetime earned %d", b.Available, b.LifetimeEarned)
			}
		})

		n := func(k int64) string { return new(big.Int).Mul(big.NewInt(k), big.NewInt(p)).String() }
		issued, redeemed, outstanding := n(1100), n(3), n(1096)
		// exact decodes a JSON body keeping its numbers' digits.
		exact := func(t *testing.T, r resp) map[string]any {
			t.Helper()
			d := json.NewDecoder(bytes.NewReader(r.Body))
			d.UseNumber()
			var m map[string]any
			if err := d.Decode(&m); err != nil {
				t.Fatalf("%v: %s", err, r.Body)
			}
			return m
		}
		same := func(t *testing.T, what string, got any, want string) {
			t.Helper()
			if fmt.Sprint(got) != want {
				t.Errorf("%s = %v, want %s", what, got, want)
			}
		}
		mk := e.marketer()

		t.Run("Summary", func(t *testing.T) {
			s := exact(t, e.do("GET", "/v1/analytics/summary?from=2026-03-01&to=2026-03-01", mk, nil).must(t, 200))
			pts := s["points"].(map[string]any)
			same(t, "summary issued", pts["issued"], issued)
			same(t, "summary redeemed", pts["redeemed"], redeemed)
			same(t, "summary expired", pts["expired"], "0")
			same(t, "summary outstanding", pts["outstanding"], outstanding)
			same(t, "summary redemption rate", s["rates"].(map[string]any)["redemption_rate"], "0.27")
		})
		t.Run("RedemptionRate", func(t *testing.T) {

			r := exact(t, e.do("GET", "/v1/analytics/redemption-rate?from=2026-03-01&to=2026-03-31", mk, nil).must(t, 200))
			same(t, "rate issued", r["points_issued"], issued)
			same(t, "rate redeemed", r["points_redeemed"], redeemed)
			same(t, "rate percent", r["rate_percent"], "0.27")
			byMonth := exact(t, e.do("GET", "/v1/analytics/redemption-rate?from=2026-02-01&to=2026-03-31&interval=month", mk, nil).must(t, 200))
			items := byMonth["items"].([]any)
			if len(items) != 2 {
				t.Fatalf("by month %v", items)
			}
			same(t, "March issued", items[1].(map[string]any)["points_issued"], issued)
			same(t, "February rate", items[0].(map[string]any)["rate_percent"], "<nil>")
		})
		t.Run("RedemptionRateJob", func(t *testing.T) {

			e.clock.Advance(time.Minute) // the month to date ends at as_of, exclusive
			run := exact(t, e.do("POST", "/v1/jobs/redemption-rate/run", mk, nil).must(t, 200))
			if run["status"] != "succeeded" {
				t.Fatalf("redemption-rate run %v", run)
			}
			months := run["summary"].(map[string]any)["months"].([]any)
			same(t, "run March issued", months[1].(map[string]any)["points_issued"], issued)
			same(t, "run March redeemed", months[1].(map[string]any)["points_redeemed"], redeemed)
		})
		t.Run("Dashboard", func(t *testing.T) {

			// The console's dashboard shows the same figures.
			req := httptest.NewRequest("GET", "/console/?from=2026-03-01&to=2026-03-01", nil)
			req.Header.Set("Cookie", "loyalty_console="+adm)
			res, err := e.app.Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("dashboard: status %d: %.300s", res.StatusCode, body)
			}
			grouped := func(digits string) string {
				var b strings.Builder
				for i, c := range digits {
					if i > 0 && (len(digits)-i)%3 == 0 {
						b.WriteByte(',')
					}
					b.WriteRune(c)
				}
				return b.String()
			}
			for _, want := range []string{grouped(issued), grouped(outstanding), `"issued":[` + issued + `]`} {
				if !strings.Contains(string(body), want) {
					t.Errorf("dashboard does not show %s", want)
				}
			}
		})
		e.checkLedger()
	})
}
