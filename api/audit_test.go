package api

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

type auditItem struct {
	ID         string         `json:"id"`
	At         time.Time      `json:"at"`
	ActorSub   string         `json:"actor_sub"`
	ActorRole  string         `json:"actor_role"`
	Action     string         `json:"action"`
	TargetKind string         `json:"target_kind"`
	TargetID   string         `json:"target_id"`
	Change     map[string]any `json:"change"`
}

type auditPage struct {
	Items      []auditItem `json:"items"`
	NextCursor *string     `json:"next_cursor"`
}

// auditCount counts the rows of the audit trail in the database.
func (e *env) auditCount() int64 {
	e.t.Helper()
	var n int64
	if err := e.store.DB().Raw("SELECT COUNT(*) FROM audit_log").Scan(&n).Error; err != nil {
		e.t.Fatal(err)
	}
	return n
}

// audit reads one page of GET /v1/audit as an admin, checking the answer
// against the OpenAPI document.
func (e *env) audit(t *testing.T, query string) auditPage {
	t.Helper()
	path := "/v1/audit"
	if query != "" {
		path += "?" + query
	}
	r := e.do("GET", path, e.admin(), nil).must(t, 200)
	openapiConforms(t, openapiDoc(t), "GET", path, r)
	var p auditPage
	r.Decode(t, &p)
	return p
}

// TestAuditEachAction makes every audited change through the API and checks
// that each writes exactly one row naming the caller, the action and the
// target, newest first.
func TestAuditEachAction(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		admin, mk := e.admin(), e.marketer()
		var reward, offer, tpl, member string
		steps := []struct {
			name                 string
			do                   func() string // returns the target id
			actor, role, action  string
			targetKind, targetID string // targetID "" means the id do returns
			check                func(t *testing.T, change map[string]any)
		}{
			{name: "ProgramUpdate", do: func() string {
				e.do("PUT", "/v1/program", mk, map[string]any{"name": "Beauty Insider", "pending_days": 0}).must(t, 200)
				return "1"
			}, actor: "mk-1", role: "marketer", action: "program.update", targetKind: "program",
				check: func(t *testing.T, c map[string]any) {
					old, _ := c["old"].(map[string]any)
					nw, _ := c["new"].(map[string]any)
					if nw["name"] != "Beauty Insider" || old["name"] != "Loyalty Program" {
						t.Errorf("program change %v, want name Loyalty Program → Beauty Insider", c)
					}
					if _, ok := nw["pending_days"]; ok {
						t.Errorf("program change lists pending_days, which did not change: %v", c)
					}
					if _, ok := nw["version"]; ok {
						t.Errorf("program change lists the version: %v", c)
					}
				}},
			{name: "TierCreate", do: func() string {
				e.do("PUT", "/v1/tiers/insider", mk, map[string]any{"name": "Insider", "rank": 0, "earn_multiplier": "1"}).must(t, 201)
				return "insider"
			}, actor: "mk-1", role: "marketer", action: "tier.create", targetKind: "tier",
				check: func(t *testing.T, c map[string]any) {
					if nw, _ := c["new"].(map[string]any); nw["name"] != "Insider" || c["old"] != nil {
						t.Errorf("tier.create change %v", c)
					}
				}},
			{name: "TierUpdate", do: func() string {
				e.do("PUT", "/v1/tiers/insider", admin, map[string]any{"name": "Insider+", "earn_multiplier": "1.5"}).must(t, 200)
				return "insider"
			}, actor: "op-1", role: "admin", action: "tier.update", targetKind: "tier",
				check: func(t *testing.T, c map[string]any) {
					old, _ := c["old"].(map[string]any)
					nw, _ := c["new"].(map[string]any)
					if old["name"] != "Insider" || nw["name"] != "Insider+" || old["earn_multiplier"] != "1" || nw["earn_multiplier"] != "1.5" {
						t.Errorf("tier.update change %v", c)
					}
					if _, ok := nw["rank"]; ok {
						t.Errorf("tier.update lists rank, which did not change: %v", c)
					}
				}},
			{name: "BirthdayGift", do: func() string {
				e.do("PUT", "/v1/program", mk, map[string]any{"birthday_gift": map[string]any{"enabled": true, "reward_ids": []string{},
					"bonus_points": 250, "claim_days": 30, "min_tier": nil}}).must(t, 200)
				return "1"
			}, actor: "mk-1", role: "marketer", action: "program.update", targetKind: "program",
				check: func(t *testing.T, c map[string]any) {
					nw, _ := c["new"].(map[string]any)
					if g, _ := nw["birthday_gift"].(map[string]any); g["bonus_points"] != float64(250) || len(nw) != 1 {
						t.Errorf("birthday gift change %v, want only birthday_gift", c)
					}
				}},
			{name: "RewardCreate", do: func() string {
				reward = e.do("POST", "/v1/rewards", mk, map[string]any{"code": "tote", "name": "Tote bag", "cost_points": 500},
					"Idempotency-Key", "audit-tote").must(t, 201).JSON(t)["id"].(string)
				// A replay changes nothing and records nothing.
				e.do("POST", "/v1/rewards", mk, map[string]any{"code": "tote", "name": "Tote bag", "cost_points": 500},
					"Idempotency-Key", "audit-tote").must(t, 201)
				return reward
			}, actor: "mk-1", role: "marketer", action: "reward.create", targetKind: "reward"},
			{name: "RewardUpdate", do: func() string {
				e.do("PATCH", "/v1/rewards/"+reward, mk, map[string]any{"cost_points": 600}).must(t, 200)
				return reward
			}, actor: "mk-1", role: "marketer", action: "reward.update", targetKind: "reward",
				check: func(t *testing.T, c map[string]any) {
					old, _ := c["old"].(map[string]any)
					nw, _ := c["new"].(map[string]any)
					if old["cost_points"] != float64(500) || nw["cost_points"] != float64(600) || len(nw) != 1 {
						t.Errorf("reward.update change %v", c)
					}
				}},
			{name: "RewardRetire", do: func() string {
				r := e.do("DELETE", "/v1/rewards/"+reward, admin, nil)
				if r.Status != 204 && r.Status != 200 {
					t.Fatalf("retire reward: %d %s", r.Status, r.Body)
				}
				return reward
			}, actor: "op-1", role: "admin", action: "reward.retire", targetKind: "reward",
				check: func(t *testing.T, c map[string]any) {
					if nw, _ := c["new"].(map[string]any); nw["active"] != false {
						t.Errorf("reward.retire change %v", c)
					}
				}},
			{name: "OfferCreate", do: func() string {
				offer = e.do("POST", "/v1/offers", mk, map[string]any{"code": "double", "name": "Double points", "kind": "multiplier",
					"multiplier": "2", "target": map[string]any{"all": true}}).must(t, 201).JSON(t)["id"].(string)
				return offer
			}, actor: "mk-1", role: "marketer", action: "offer.create", targetKind: "offer"},
			{name: "OfferUpdate", do: func() string {
				e.do("PATCH", "/v1/offers/"+offer, mk, map[string]any{"status": "paused"}).must(t, 200)
				return offer
			}, actor: "mk-1", role: "marketer", action: "offer.update", targetKind: "offer",
				check: func(t *testing.T, c map[string]any) {
					old, _ := c["old"].(map[string]any)
					nw, _ := c["new"].(map[string]any)
					if old["status"] != "active" || nw["status"] != "paused" || len(nw) != 1 {
						t.Errorf("offer.update change %v", c)
					}
				}},
			{name: "TemplateCreate", do: func() string {
				tpl = e.do("POST", "/v1/offer-templates", mk, map[string]any{"code": "fav", "name": "Favourite x2", "kind": "multiplier",
					"multiplier": "2"}).must(t, 201).JSON(t)["id"].(string)
				return tpl
			}, actor: "mk-1", role: "marketer", action: "offer_template.create", targetKind: "offer_template"},
			{name: "TemplateUpdate", do: func() string {
				e.do("PATCH", "/v1/offer-templates/"+tpl, admin, map[string]any{"duration_days": 7}).must(t, 200)
				return tpl
			}, actor: "op-1", role: "admin", action: "offer_template.update", targetKind: "offer_template",
				check: func(t *testing.T, c map[string]any) {
					if nw, _ := c["new"].(map[string]any); nw["duration_days"] != float64(7) || len(nw) != 1 {
						t.Errorf("offer_template.update change %v", c)
					}
				}},
			{name: "Adjustment", do: func() string {
				member = e.enrol()
				e.do("POST", "/v1/members/"+member+"/adjustments", admin, map[string]any{"points": 1200, "reason": "goodwill"}).must(t, 201)
				return member
			}, actor: "op-1", role: "admin", action: "points.adjust", targetKind: "member",
				check: func(t *testing.T, c map[string]any) {
					if c["points"] != float64(1200) || c["entry_id"] == nil {
						t.Errorf("points.adjust change %v", c)
					}
				}},
			{name: "JobRun", do: func() string {
				e.do("POST", "/v1/jobs/tier-review/run", mk, nil).must(t, 200)
				return "tier-review"
			}, actor: "mk-1", role: "marketer", action: "job.run", targetKind: "job",
				check: func(t *testing.T, c map[string]any) {
					if c["status"] != "succeeded" || c["run_id"] == nil {
						t.Errorf("job.run change %v", c)
					}
				}},
			{name: "TierDelete", do: func() string {
				e.do("PUT", "/v1/tiers/gold", mk, map[string]any{"name": "Gold", "rank": 1, "earn_multiplier": "2", "qualifying_spend": 100000}).must(t, 201)
				e.clock.Advance(time.Second)
				e.do("DELETE", "/v1/tiers/gold", admin, nil).must(t, 204)
				return "gold"
			}, actor: "op-1", role: "admin", action: "tier.delete", targetKind: "tier",
				check: func(t *testing.T, c map[string]any) {
					if old, _ := c["old"].(map[string]any); old["name"] != "Gold" || c["new"] != nil {
						t.Errorf("tier.delete change %v", c)
					}
				}},
			{name: "MemberErase", do: func() string {
				e.do("DELETE", "/v1/members/"+member, admin, nil).must(t, 204)
				return member
			}, actor: "op-1", role: "admin", action: "member.erase", targetKind: "member"},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				e.clock.Advance(time.Minute)
				before := e.auditCount()
				id := st.do()
				after := e.auditCount()
				if st.name == "TierDelete" {
					before++ // the tier.create of gold before it
				}
				if after != before+1 {
					t.Fatalf("%s wrote %d audit rows, want 1", st.name, after-before)
				}
				top := e.audit(t, "limit=1").Items
				if len(top) != 1 {
					t.Fatalf("audit trail is empty after %s", st.name)
				}
				got := top[0]
				if got.ActorSub != st.actor || got.ActorRole != st.role || got.Action != st.action ||
					got.TargetKind != st.targetKind || got.TargetID != id {
					t.Errorf("audit row %+v, want %s/%s %s on %s %s", got, st.actor, st.role, st.action, st.targetKind, id)
				}
				if !got.At.Equal(e.clock.Now()) {
					t.Errorf("audit row at %v, want the engine's clock %v", got.At, e.clock.Now())
				}
				if st.check != nil {
					st.check(t, got.Change)
				}
			})
		}
	})
}

// TestAuditFailedChangeWritesNone checks that a change refused for
// validation, a conflict or a missing target leaves no audit row.
func TestAuditFailedChangeWritesNone(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		admin, mk := e.admin(), e.marketer()
		member := e.enrol()
		e.buy(member, 5000, "AUD-1")
		reward := e.do("POST", "/v1/rewards", mk, map[string]any{"code": "tote", "name": "Tote", "cost_points": 10}).must(t, 201).JSON(t)["id"].(string)
		e.do("POST", "/v1/offers", mk, map[string]any{"code": "double", "name": "Double", "kind": "bonus", "bonus_points": 5}).must(t, 201)
		before := e.auditCount()
		for _, c := range []struct {
			name   string
			status int
			method string
			path   string
			tok    string
			body   any
		}{
			{"ProgramInvalid", 422, "PUT", "/v1/program", mk, map[string]any{"pending_days": -1}},
			{"ProgramCurrencyLocked", 409, "PUT", "/v1/program", admin, map[string]any{"currency": "EUR"}},
			{"TierInvalid", 422, "PUT", "/v1/tiers/vib", mk, map[string]any{"earn_multiplier": "-1"}},
			{"TierRankTaken", 409, "PUT", "/v1/tiers/new", mk, map[string]any{"name": "New", "rank": 1, "earn_multiplier": "1", "qualifying_spend": 1}},
			{"TierInUse", 409, "DELETE", "/v1/tiers/insider", admin, nil},
			{"TierMissing", 404, "DELETE", "/v1/tiers/none", admin, nil},
			{"RewardDuplicate", 409, "POST", "/v1/rewards", mk, map[string]any{"code": "tote", "name": "Again", "cost_points": 1}},
			{"RewardInvalid", 422, "PATCH", "/v1/rewards/" + reward, mk, map[string]any{"cost_points": -5}},
			{"RewardMissing", 404, "DELETE", "/v1/rewards/none", mk, nil},
			{"OfferDuplicate", 409, "POST", "/v1/offers", mk, map[string]any{"code": "double", "name": "Again", "kind": "bonus", "bonus_points": 1}},
			{"OfferMissing", 404, "PATCH", "/v1/offers/none", mk, map[string]any{"name": "x"}},
			{"TemplateInvalid", 422, "POST", "/v1/offer-templates", mk, map[string]any{"code": "x", "name": "x", "kind": "bonus", "bonus_points": 1, "duration_days": 0}},
			{"AdjustInsufficient", 409, "POST", "/v1/members/" + member + "/adjustments", admin, map[string]any{"points": -1_000_000, "reason": "too much"}},
			{"AdjustMemberMissing", 404, "POST", "/v1/members/none/adjustments", admin, map[string]any{"points": 5, "reason": "x"}},
			{"AdjustByMarketer", 403, "POST", "/v1/members/" + member + "/adjustments", mk, map[string]any{"points": 5, "reason": "x"}},
			{"JobRefused", 422, "POST", "/v1/jobs/expire-points/run", admin, map[string]any{"as_of": e.clock.Now().Add(time.Hour).Format(time.RFC3339)}},
			{"EraseMissing", 404, "DELETE", "/v1/members/none", admin, nil},
		} {
			t.Run(c.name, func(t *testing.T) {
				e.do(c.method, c.path, c.tok, c.body).must(t, c.status)
				if n := e.auditCount(); n != before {
					t.Errorf("a refused change wrote %d audit rows", n-before)
					before = n
				}
			})
		}
	})
}

// TestAuditAdminOnly checks that only an admin reads the trail.
func TestAuditAdminOnly(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		doc := openapiDoc(t)
		for _, tok := range []string{e.marketer(), e.pos(), e.token(loyalty.RoleMember, "m-1")} {
			r := e.do("GET", "/v1/audit", tok, nil).must(t, 403)
			openapiConforms(t, doc, "GET", "/v1/audit", r)
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("403 content type %q", ct)
			}
		}
		e.do("GET", "/v1/audit", "", nil).must(t, 401)
		e.audit(t, "")
	})
}

// TestAuditFiltersAndPages checks every filter and that pages walk the whole
// trail, newest first, once.
func TestAuditFiltersAndPages(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		start := e.clock.Now()
		mk, admin := e.marketer(), e.admin()
		other := e.token(loyalty.RoleAdmin, "op-2")
		// Seven changes a minute apart: tiers by mk-1, rewards by op-2, a program change by op-1.
		e.do("PUT", "/v1/tiers/t0", mk, map[string]any{"name": "T0", "rank": 0, "earn_multiplier": "1"}).must(t, 201)
		for i := 1; i <= 3; i++ {
			e.clock.Advance(time.Minute)
			e.do("PUT", fmt.Sprintf("/v1/tiers/t%d", i), mk, map[string]any{"name": "T", "rank": i, "earn_multiplier": "1",
				"qualifying_spend": i * 1000}).must(t, 201)
		}
		var rewards []string
		for i := 0; i < 2; i++ {
			e.clock.Advance(time.Minute)
			rewards = append(rewards, e.do("POST", "/v1/rewards", other, map[string]any{"code": fmt.Sprintf("r%d", i),
				"name": "R", "cost_points": 10}).must(t, 201).JSON(t)["id"].(string))
		}
		e.clock.Advance(time.Minute)
		e.do("PUT", "/v1/program", admin, map[string]any{"name": "P"}).must(t, 200)

		count := func(q string) []auditItem {
			t.Helper()
			return e.audit(t, q).Items
		}
		if got := count("action=tier."); len(got) != 4 {
			t.Errorf("action=tier.: %d rows, want 4", len(got))
		}
		if got := count("action=tier.create&actor=mk-1"); len(got) != 4 {
			t.Errorf("action=tier.create&actor=mk-1: %d rows, want 4", len(got))
		}
		if got := count("action=tier.update"); len(got) != 0 {
			t.Errorf("action=tier.update: %d rows, want 0", len(got))
		}
		if got := count("action=Tier."); len(got) != 0 {
			t.Errorf("action=Tier. (prefixes are exact): %d rows, want 0", len(got))
		}
		if got := count("action=%25"); len(got) != 0 {
			t.Errorf("action=%%: %d rows, want 0 (a prefix, not a pattern)", len(got))
		}
		if got := count("actor=op-2"); len(got) != 2 || got[0].TargetID != rewards[1] || got[1].TargetID != rewards[0] {
			t.Errorf("actor=op-2: %+v, want both rewards newest first", got)
		}
		if got := count("target_kind=reward&target_id=" + rewards[0]); len(got) != 1 || got[0].Action != "reward.create" {
			t.Errorf("target reward %s: %+v", rewards[0], got)
		}
		if got := count("target_kind=program"); len(got) != 1 || got[0].ActorSub != "op-1" {
			t.Errorf("target_kind=program: %+v", got)
		}
		from := start.Add(time.Minute).Format(time.RFC3339)
		to := start.Add(4 * time.Minute).Format(time.RFC3339)
		// Minutes 1, 2 and 3: tiers t1, t2, t3; to is exclusive.
		if got := count("from=" + url.QueryEscape(from) + "&to=" + url.QueryEscape(to)); len(got) != 3 ||
			got[0].TargetID != "t3" || got[2].TargetID != "t1" {
			t.Errorf("from %s to %s: %+v, want t3, t2, t1", from, to, got)
		}
		e.do("GET", "/v1/audit?from=yesterday", admin, nil).must(t, 422)
		e.do("GET", "/v1/audit?from="+url.QueryEscape(to)+"&to="+url.QueryEscape(from), admin, nil).must(t, 422)
		e.do("GET", "/v1/audit?limit=0", admin, nil).must(t, 422)
		e.do("GET", "/v1/audit?cursor=nonsense", admin, nil).must(t, 422)

		all := count("limit=500")
		if len(all) != 7 {
			t.Fatalf("whole trail: %d rows, want 7", len(all))
		}
		for i := 1; i < len(all); i++ {
			if all[i].At.After(all[i-1].At) {
				t.Errorf("row %d at %v is newer than row %d at %v", i, all[i].At, i-1, all[i-1].At)
			}
		}
		var walked []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("pagination does not end")
			}
			q := "limit=3"
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			p := e.audit(t, q)
			for _, it := range p.Items {
				walked = append(walked, it.ID)
			}
			if p.NextCursor == nil {
				break
			}
			cursor = *p.NextCursor
		}
		if len(walked) != len(all) {
			t.Fatalf("pages walked %d rows, want %d", len(walked), len(all))
		}
		for i := range all {
			if walked[i] != all[i].ID {
				t.Errorf("page row %d is %s, want %s", i, walked[i], all[i].ID)
			}
		}
		// Filters and pages together.
		p := e.audit(t, "action=tier.&limit=3")
		if len(p.Items) != 3 || p.NextCursor == nil {
			t.Fatalf("first page of tiers: %d rows, cursor %v", len(p.Items), p.NextCursor)
		}
		p = e.audit(t, "action=tier.&limit=3&cursor="+url.QueryEscape(*p.NextCursor))
		if len(p.Items) != 1 || p.Items[0].TargetID != "t0" || p.NextCursor != nil {
			t.Errorf("second page of tiers: %+v", p)
		}
	})
}

// TestAuditKeepsPersonalDataOut checks that the change JSON names members
// by id only: no e-mail, name or birthday, and not an adjustment's reason.
func TestAuditKeepsPersonalDataOut(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		admin := e.admin()
		m := e.do("POST", "/v1/members", e.pos(), map[string]any{"external_id": "PD-1", "email": "jane.doe@example.com",
			"first_name": "Jane", "last_name": "Doe", "birthday": "1990-04-01"}).must(t, 201).JSON(t)["id"].(string)
		e.do("POST", "/v1/members/"+m+"/adjustments", admin, map[string]any{"points": 50, "reason": "Jane Doe called about her parcel"}).must(t, 201)
		e.do("POST", "/v1/offers", e.marketer(), map[string]any{"code": "solo", "name": "Just for one", "kind": "bonus", "bonus_points": 5,
			"target": map[string]any{"member_ids": []string{m}}}).must(t, 201)
		e.do("DELETE", "/v1/members/"+m, admin, nil).must(t, 204)
		var changes []string
		if err := e.store.DB().Raw("SELECT change FROM audit_log").Scan(&changes).Error; err != nil {
			t.Fatal(err)
		}
		joined := strings.Join(changes, "\n")
		if !strings.Contains(joined, m) {
			t.Errorf("the audit trail does not name member %s by id: %s", m, joined)
		}
		for _, pd := range []string{"jane", "Jane", "Doe", "1990-04-01", "parcel"} {
			if strings.Contains(joined, pd) {
				t.Errorf("the audit trail holds personal data %q: %s", pd, joined)
			}
		}
	})
}
