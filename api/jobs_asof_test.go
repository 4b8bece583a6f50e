package api

import (
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestJobRunFutureAsOf posts every job of GET /v1/jobs (and the §10 name of
// the birthday job) with an as_of ahead of the engine's clock: each is a
// 422 problem naming as_of (API.md §12), no run is recorded and nothing is
// given or expired. An as_of within the clock skew runs as of now.
func TestJobRunFutureAsOf(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		now := e.clock.Now()
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"birthday_gift": map[string]any{"enabled": true,
			"bonus_points": 50, "claim_days": 30}}).must(t, 200)
		m := e.do("POST", "/v1/members", e.pos(), map[string]any{"external_id": "B-1", "birthday": "1990-03-01"}).
			must(t, 201).JSON(t)["id"].(string)
		e.do("POST", "/v1/jobs/birthday-gifts/run", e.marketer(), nil).must(t, 200)
		gifts := func() []any {
			t.Helper()
			return e.do("GET", "/v1/members/"+m+"/gifts", e.admin(), nil).must(t, 200).JSON(t)["items"].([]any)
		}
		if g := gifts(); len(g) != 1 || g[0].(map[string]any)["status"] != "available" {
			t.Fatalf("gifts %v", g)
		}
		var list struct {
			Items []struct {
				Name    string         `json:"name"`
				LastRun map[string]any `json:"last_run"`
			} `json:"items"`
		}
		e.do("GET", "/v1/jobs", e.admin(), nil).must(t, 200).Decode(t, &list)
		names := []string{"birthday-gift"}
		for _, j := range list.Items {
			names = append(names, j.Name)
		}
		if len(names) < 9 {
			t.Fatalf("jobs %v", names)
		}
		for _, name := range names {
			for _, asOf := range []string{
				rfc(now.Add(6 * time.Minute)),
				rfc(now.Add(time.Hour)),
				rfc(now.AddDate(2, 0, 0)),
				"9999-12-31T23:59:59+14:00",
			} {
				t.Run(name+"@"+asOf, func(t *testing.T) {
					r := e.do("POST", "/v1/jobs/"+name+"/run", e.marketer(), map[string]any{"as_of": asOf})
					assertProblem(t, r, 422, "as_of")
				})
			}
		}
		var after struct {
			Items []struct {
				Name    string         `json:"name"`
				LastRun map[string]any `json:"last_run"`
			} `json:"items"`
		}
		e.do("GET", "/v1/jobs", e.admin(), nil).must(t, 200).Decode(t, &after)
		for _, j := range after.Items {
			if j.Name != "birthday-gifts" && j.LastRun != nil {
				t.Errorf("%s has a recorded run after refused ones: %v", j.Name, j.LastRun)
			}
		}
		if g := gifts(); len(g) != 1 || g[0].(map[string]any)["status"] != "available" {
			t.Errorf("gifts after the refused runs %v, want this year's still available", g)
		}
		if b := e.balance(m); b.Available != 50 {
			t.Errorf("available %d, want the 50 of this year's gift", b.Available)
		}

		// A caller's clock a few minutes ahead is taken as the engine's now.
		for _, j := range list.Items {
			r := e.do("POST", "/v1/jobs/"+j.Name+"/run", e.marketer(), map[string]any{"as_of": rfc(now.Add(4 * time.Minute))}).
				must(t, 200).JSON(t)
			if r["as_of"] != rfc(now) || r["status"] != "succeeded" {
				t.Errorf("%s as of now + 4 min: %v, want a run as of now", j.Name, r)
			}
		}
		e.checkLedger()
	})
}
