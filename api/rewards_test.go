package api

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// couponFormat is four groups of four Crockford base32 characters.
var couponFormat = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$`)

// addReward creates a reward as a marketer and returns its body. fields
// come in pairs and are added to (or replace) the code, name and cost.
func (e *env) addReward(code string, cost int64, fields ...any) map[string]any {
	e.t.Helper()
	body := map[string]any{"code": code, "name": "Reward " + code, "cost_points": cost}
	for i := 0; i+1 < len(fields); i += 2 {
		body[fields[i].(string)] = fields[i+1]
	}
	return e.do("POST", "/v1/rewards", e.marketer(), body).must(e.t, 201).JSON(e.t)
}

// redeemReward asks for reward on behalf of member with tok.
func (e *env) redeemReward(tok, member, reward string, headers ...string) resp {
	e.t.Helper()
	return e.do("POST", "/v1/members/"+member+"/redemptions", tok, map[string]any{"reward_id": reward}, headers...)
}

// dbInt reads one integer from the database.
func (e *env) dbInt(query string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.store.DB().Raw(query, args...).Scan(&n).Error; err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// rewardStock reads a reward's stock as the API shows it; -1 for unlimited.
func (e *env) rewardStock(id string) int64 {
	e.t.Helper()
	r := e.do("GET", "/v1/rewards/"+id, e.admin(), nil).must(e.t, 200).JSON(e.t)
	if r["stock"] == nil {
		return -1
	}
	return num(r["stock"])
}

// ledgerEntries reads a member's whole ledger, newest first.
func (e *env) ledgerEntries(member string) []loyalty.Entry {
	e.t.Helper()
	var l struct {
		Items      []loyalty.Entry `json:"items"`
		NextCursor *string         `json:"next_cursor"`
	}
	e.do("GET", "/v1/members/"+member+"/ledger?limit=500", e.admin(), nil).must(e.t, 200).Decode(e.t, &l)
	if l.NextCursor != nil {
		e.t.Fatalf("ledger of %s has more than 500 entries", member)
	}
	return l.Items
}

// kindsOf sums a ledger's points by kind and counts its entries by kind.
func kindsOf(entries []loyalty.Entry) (points map[string]int64, count map[string]int) {
	points, count = map[string]int64{}, map[string]int{}
	for _, en := range entries {
		points[en.Kind] += en.Points
		count[en.Kind]++
	}
	return points, count
}

// wantProblemCode checks a problem document's status and its code (and the
// type that repeats it).
func wantProblemCode(t testing.TB, r resp, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d (%s): %s", r.Status, status, code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("Content-Type %q for a %d", ct, r.Status)
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
		Code   string `json:"code"`
		Detail string `json:"detail"`
	}
	r.Decode(t, &p)
	if p.Code != code || p.Status != status || !strings.HasSuffix(p.Type, "/"+code) || p.Detail == "" {
		t.Fatalf("problem %s, want code %q", r.Body, code)
	}
}

// wantFieldError checks a 422 naming field.
func wantFieldError(t testing.TB, r resp, field string) {
	t.Helper()
	if r.Status != 422 {
		t.Fatalf("status %d, want 422 naming %q: %s", r.Status, field, r.Body)
	}
	var p struct {
		Errors []struct {
			Field string `json:"field"`
		} `json:"errors"`
	}
	r.Decode(t, &p)
	for _, fe := range p.Errors {
		if fe.Field == field {
			return
		}
	}
	t.Fatalf("422 does not name %q: %s", field, r.Body)
}

// rfc is t as the API writes it.
func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func TestRewardCatalog(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		mk := e.marketer()

		var id string
		t.Run("Create", func(t *testing.T) {
			r := e.do("POST", "/v1/rewards", mk, map[string]any{"code": "tote", "name": "Tote bag", "description": "Canvas",
				"cost_points": 500, "min_tier": "vib", "stock": 10, "per_member_limit": 1,
				"valid_from": "2026-03-01T00:00:00Z", "valid_until": "2026-04-01T00:00:00+02:00"}).must(t, 201).JSON(t)
			id, _ = r["id"].(string)
			if id == "" || r["code"] != "tote" || num(r["cost_points"]) != 500 || r["min_tier"] != "vib" || num(r["stock"]) != 10 ||
				num(r["per_member_limit"]) != 1 || r["active"] != true || r["valid_until"] != "2026-03-31T22:00:00Z" {
				t.Fatalf("created %v", r)
			}
			got := e.do("GET", "/v1/rewards/"+id, e.token(loyalty.RoleMember, "anyone"), nil).must(t, 200).JSON(t)
			if got["code"] != "tote" || got["description"] != "Canvas" {
				t.Fatalf("get %v", got)
			}
		})
		t.Run("DuplicateCodeIs409", func(t *testing.T) {
			wantProblemCode(t, e.do("POST", "/v1/rewards", mk, map[string]any{"code": "tote", "name": "Other", "cost_points": 1}), 409, "duplicate")
			other := e.addReward("mug", 100)
			wantProblemCode(t, e.do("PATCH", "/v1/rewards/"+other["id"].(string), mk, map[string]any{"code": "tote"}), 409, "duplicate")
		})
		t.Run("PatchNullClears", func(t *testing.T) {
			r := e.do("PATCH", "/v1/rewards/"+id, mk, map[string]any{"stock": nil, "per_member_limit": nil, "min_tier": nil}).must(t, 200).JSON(t)
			if r["stock"] != nil || r["per_member_limit"] != nil || r["min_tier"] != nil {
				t.Fatalf("null did not clear: %v", r)
			}
			// Absent fields are left alone.
			if num(r["cost_points"]) != 500 || r["name"] != "Tote bag" || r["valid_until"] != "2026-03-31T22:00:00Z" {
				t.Fatalf("patch touched other fields: %v", r)
			}
			r = e.do("PATCH", "/v1/rewards/"+id, mk, map[string]any{"stock": 3, "cost_points": 450}).must(t, 200).JSON(t)
			if num(r["stock"]) != 3 || num(r["cost_points"]) != 450 || r["per_member_limit"] != nil {
				t.Fatalf("patched %v", r)
			}
			e.do("PATCH", "/v1/rewards/no-such-id", mk, map[string]any{"stock": 1}).must(t, 404)
		})
		t.Run("Validation", func(t *testing.T) {
			base := func(kv ...any) map[string]any {
				b := map[string]any{"code": "ok-code", "name": "OK", "cost_points": 10}
				for i := 0; i+1 < len(kv); i += 2 {
					if kv[i+1] == "<absent>" {
						delete(b, kv[i].(string))
						continue
					}
					b[kv[i].(string)] = kv[i+1]
				}
				return b
			}
			for _, c := range []struct {
				name  string
				body  map[string]any
				field string
			}{
				{"MissingCode", base("code", "<absent>"), "code"},
				{"MissingName", base("name", "<absent>"), "name"},
				{"MissingCost", base("cost_points", "<absent>"), "cost_points"},
				{"BadCode", base("code", "Not A Code"), "code"},
				{"EmptyName", base("name", ""), "name"},
				{"NegativeCost", base("cost_points", -1), "cost_points"},
				{"CostNotANumber", base("cost_points", "ten"), "cost_points"},
				{"NegativeStock", base("stock", -1), "stock"},
				{"ZeroLimit", base("per_member_limit", 0), "per_member_limit"},
				{"UnknownTier", base("min_tier", "platinum"), "min_tier"},
				{"WindowBackwards", base("valid_from", "2026-05-01T00:00:00Z", "valid_until", "2026-04-01T00:00:00Z"), "valid_until"},
				{"EmptyWindow", base("valid_from", "2026-05-01T00:00:00Z", "valid_until", "2026-05-01T00:00:00Z"), "valid_until"},
				{"NullName", base("name", nil), "name"},
			} {
				t.Run(c.name, func(t *testing.T) {
					wantFieldError(t, e.do("POST", "/v1/rewards", mk, c.body), c.field)
				})
			}
			t.Run("PatchNullCost", func(t *testing.T) {
				wantFieldError(t, e.do("PATCH", "/v1/rewards/"+id, mk, map[string]any{"cost_points": nil}), "cost_points")
			})
			t.Run("PatchUntilBeforeFrom", func(t *testing.T) {
				wantFieldError(t, e.do("PATCH", "/v1/rewards/"+id, mk, map[string]any{"valid_until": "2026-02-01T00:00:00Z"}), "valid_until")
			})
			if n := e.dbInt("SELECT COUNT(*) FROM rewards WHERE code = 'ok-code'"); n != 0 {
				t.Fatalf("an invalid reward was stored")
			}
		})
		t.Run("Roles", func(t *testing.T) {
			body := map[string]any{"code": "by-role", "name": "x", "cost_points": 1}
			e.do("POST", "/v1/rewards", e.pos(), body).must(t, 403)
			e.do("POST", "/v1/rewards", e.token(loyalty.RoleMember, "m"), body).must(t, 403)
			e.do("PATCH", "/v1/rewards/"+id, e.pos(), map[string]any{"stock": 1}).must(t, 403)
			e.do("DELETE", "/v1/rewards/"+id, e.pos(), nil).must(t, 403)
			e.do("POST", "/v1/rewards", e.admin(), body).must(t, 201)
		})
		t.Run("RetireKeepsItGettable", func(t *testing.T) {
			e.do("DELETE", "/v1/rewards/"+id, mk, nil).must(t, 204)
			l := e.do("GET", "/v1/rewards", e.pos(), nil).must(t, 200).JSON(t)
			for _, it := range l["items"].([]any) {
				if it.(map[string]any)["id"] == id {
					t.Fatalf("retired reward still listed: %v", l)
				}
			}
			if len(l["items"].([]any)) != 2 { // mug, by-role
				t.Fatalf("list %v", l)
			}
			got := e.do("GET", "/v1/rewards/"+id, e.pos(), nil).must(t, 200).JSON(t)
			if got["active"] != false || got["code"] != "tote" {
				t.Fatalf("retired reward %v", got)
			}
			e.do("DELETE", "/v1/rewards/no-such-id", mk, nil).must(t, 404)
			e.do("GET", "/v1/rewards/no-such-id", mk, nil).must(t, 404)
		})
	})
}

// listedCodes lists the reward codes GET path answers with tok.
func (e *env) listedCodes(path, tok string) string {
	e.t.Helper()
	l := e.do("GET", path, tok, nil).must(e.t, 200).JSON(e.t)
	var codes []string
	for _, it := range l["items"].([]any) {
		codes = append(codes, it.(map[string]any)["code"].(string))
	}
	return strings.Join(codes, ",")
}

func TestRewardListForMember(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		now := e.clock.Now()
		ins := e.enrol()
		vib := e.enrol()
		e.buy(ins, 10000, "R-1")
		e.buy(vib, 35000, "R-2")

		e.addReward("a-basic", 50)
		e.addReward("b-vib", 50, "min_tier", "vib")
		e.addReward("c-future", 50, "valid_from", rfc(now.Add(time.Microsecond)))
		e.addReward("d-from-now", 50, "valid_from", rfc(now))
		e.addReward("e-until-now", 50, "valid_until", rfc(now))
		e.addReward("f-until-next", 50, "valid_until", rfc(now.Add(time.Microsecond)))
		e.addReward("g-sold-out", 50, "stock", 0)
		once := e.addReward("h-once", 50, "per_member_limit", 1)["id"].(string)
		retired := e.addReward("i-retired", 50)["id"].(string)
		e.addReward("j-dear", 100000)
		e.do("DELETE", "/v1/rewards/"+retired, e.marketer(), nil).must(t, 204)

		all := "a-basic,b-vib,c-future,d-from-now,e-until-now,f-until-next,g-sold-out,h-once,j-dear"
		if got := e.listedCodes("/v1/rewards", e.pos()); got != all {
			t.Fatalf("catalog %s, want %s", got, all)
		}
		if got := e.listedCodes("/v1/rewards?member_id="+ins, e.pos()); got != "a-basic,d-from-now,f-until-next,h-once,j-dear" {
			t.Fatalf("insider may redeem %s", got)
		}
		if got := e.listedCodes("/v1/rewards?member_id="+vib, e.admin()); got != "a-basic,b-vib,d-from-now,f-until-next,h-once,j-dear" {
			t.Fatalf("vib may redeem %s", got)
		}
		// A member token without member_id gets its own view.
		if got := e.listedCodes("/v1/rewards", e.token(loyalty.RoleMember, vib)); got != "a-basic,b-vib,d-from-now,f-until-next,h-once,j-dear" {
			t.Fatalf("vib's own view %s", got)
		}
		wantProblemCode(t, e.do("GET", "/v1/rewards?member_id="+vib, e.token(loyalty.RoleMember, ins), nil), 404, "not_found")
		e.do("GET", "/v1/rewards?member_id=no-such-member", e.pos(), nil).must(t, 404)

		// Affordability and uses left travel with the items.
		l := e.do("GET", "/v1/rewards?member_id="+ins, e.pos(), nil).must(t, 200).JSON(t)
		for _, it := range l["items"].([]any) {
			m := it.(map[string]any)
			switch m["code"] {
			case "j-dear":
				if m["affordable"] != false {
					t.Fatalf("100000 points affordable with 100: %v", m)
				}
			case "h-once":
				if m["affordable"] != true || num(m["uses_left"]) != 1 {
					t.Fatalf("h-once %v", m)
				}
			case "a-basic":
				if m["uses_left"] != nil {
					t.Fatalf("unlimited reward has uses_left %v", m)
				}
			}
		}

		// Redeeming the once-only reward takes it off that member's list only.
		e.redeemReward(e.pos(), ins, once).must(t, 201)
		if got := e.listedCodes("/v1/rewards?member_id="+ins, e.pos()); strings.Contains(got, "h-once") {
			t.Fatalf("limit reached but listed: %s", got)
		}
		if got := e.listedCodes("/v1/rewards?member_id="+vib, e.pos()); !strings.Contains(got, "h-once") {
			t.Fatalf("another member's limit hid the reward: %s", got)
		}

		// The window's end is exclusive: one microsecond on, f-until-next is gone;
		// c-future has started.
		e.clock.Advance(time.Microsecond)
		if got := e.listedCodes("/v1/rewards?member_id="+vib, e.pos()); got != "a-basic,b-vib,c-future,d-from-now,h-once,j-dear" {
			t.Fatalf("a microsecond later vib may redeem %s", got)
		}
	})
}

func TestRedeemRolesAndResponse(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		other := e.enrol()
		e.buy(m, 100000, "R-1") // 1000 points
		e.buy(other, 100000, "R-2")
		rw := e.addReward("candle", 100)["id"].(string)

		var coupons []string
		check := func(t *testing.T, r resp, wantAvail int64, channel string) {
			t.Helper()
			b := r.must(t, 201).JSON(t)
			if num(b["points_spent"]) != 100 || b["status"] != "issued" || b["reward_id"] != rw || b["member_id"] != m ||
				b["id"] == nil || b["channel"] != channel {
				t.Fatalf("redemption %v", b)
			}
			c, _ := b["coupon_code"].(string)
			if !couponFormat.MatchString(c) {
				t.Fatalf("coupon %q is not XXXX-XXXX-XXXX-XXXX in Crockford base32", c)
			}
			coupons = append(coupons, c)
			bal := b["balance"].(map[string]any)
			if num(bal["available"]) != wantAvail {
				t.Fatalf("balance after redemption %v, want %d", bal, wantAvail)
			}
		}
		t.Run("MemberOwn", func(t *testing.T) {
			check(t, e.redeemReward(e.token(loyalty.RoleMember, m), m, rw), 900, "app")
		})
		t.Run("MemberOther404", func(t *testing.T) {
			wantProblemCode(t, e.redeemReward(e.token(loyalty.RoleMember, m), other, rw), 404, "not_found")
		})
		t.Run("POS", func(t *testing.T) { check(t, e.redeemReward(e.pos(), m, rw), 800, "pos") })
		t.Run("Admin", func(t *testing.T) { check(t, e.redeemReward(e.admin(), m, rw), 700, "admin") })
		t.Run("Marketer403", func(t *testing.T) { e.redeemReward(e.marketer(), m, rw).must(t, 403) })
		t.Run("UnknownMember404", func(t *testing.T) { e.redeemReward(e.pos(), "no-such-member", rw).must(t, 404) })
		t.Run("UnknownReward422", func(t *testing.T) { wantFieldError(t, e.redeemReward(e.pos(), m, "no-such-reward"), "reward_id") })
		t.Run("MissingReward422", func(t *testing.T) {
			wantFieldError(t, e.do("POST", "/v1/members/"+m+"/redemptions", e.pos(), map[string]any{}), "reward_id")
		})
		if b := e.balance(m); b.Available != 700 || b.LifetimeRedeemed != 300 {
			t.Fatalf("balance %+v", b)
		}
		if b := e.balance(other); b.Available != 1000 {
			t.Fatalf("the other member paid: %+v", b)
		}
		l := e.do("GET", "/v1/members/"+m+"/redemptions", e.token(loyalty.RoleMember, m), nil).must(t, 200).JSON(t)
		if n := len(l["items"].([]any)); n != 3 {
			t.Fatalf("%d redemptions listed", n)
		}
		e.do("GET", "/v1/members/"+m+"/redemptions", e.token(loyalty.RoleMember, other), nil).must(t, 404)

		t.Run("CouponsUnique", func(t *testing.T) {
			free := e.addReward("sample", 0)["id"].(string)
			tok := e.pos()
			seen := map[string]bool{}
			for _, c := range coupons {
				seen[c] = true
			}
			for i := 0; i < 200; i++ {
				b := e.redeemReward(tok, other, free).must(t, 201).JSON(t)
				c := b["coupon_code"].(string)
				if !couponFormat.MatchString(c) || seen[c] {
					t.Fatalf("coupon %q malformed or repeated", c)
				}
				if num(b["points_spent"]) != 0 {
					t.Fatalf("free reward spent %v", b["points_spent"])
				}
				seen[c] = true
			}
			if b := e.balance(other); b.Available != 1000 || b.LifetimeRedeemed != 0 {
				t.Fatalf("free rewards cost points: %+v", b)
			}
		})
		e.checkLedger()
	})
}

func TestRedeemConflicts(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		now := e.clock.Now()
		m := e.enrol()
		e.buy(m, 30000, "R-1") // 300 points, insider
		tok := e.pos()

		cheap := e.addReward("cheap", 10, "per_member_limit", 1)["id"].(string)
		stocked := e.addReward("stocked", 10, "stock", 1)["id"].(string)
		dear := e.addReward("dear", 301, "stock", 5)["id"].(string)
		vibOnly := e.addReward("vib-only", 10, "min_tier", "vib")["id"].(string)
		retired := e.addReward("retired", 10)["id"].(string)
		e.do("DELETE", "/v1/rewards/"+retired, e.marketer(), nil).must(t, 204)
		future := e.addReward("future", 10, "valid_from", rfc(now.Add(time.Microsecond)))["id"].(string)
		ended := e.addReward("ended", 10, "valid_until", rfc(now))["id"].(string)
		inactive := e.addReward("inactive", 10, "active", false)["id"].(string)

		e.redeemReward(tok, m, cheap).must(t, 201)
		other := e.enrol()
		e.buy(other, 10000, "R-2")
		e.redeemReward(tok, other, stocked).must(t, 201) // the last one

		entries := func() int64 { return e.dbInt("SELECT COUNT(*) FROM ledger_entries") }
		redemptions := func() int64 { return e.dbInt("SELECT COUNT(*) FROM redemptions") }
		version := func() int64 { return e.dbInt("SELECT version FROM member_balances WHERE member_id = ?", m) }
		before := e.balance(m)
		n0, r0, v0 := entries(), redemptions(), version()

		for _, c := range []struct {
			name, reward, code string
		}{
			{"InsufficientPoints", dear, "insufficient_points"},
			{"OutOfStock", stocked, "out_of_stock"},
			{"LimitReached", cheap, "limit_reached"},
			{"TierTooLow", vibOnly, "tier_too_low"},
			{"Retired", retired, "not_available"},
			{"Inactive", inactive, "not_available"},
			{"NotYetValid", future, "not_available"},
			{"ValidUntilIsExclusive", ended, "not_available"},
		} {
			t.Run(c.name, func(t *testing.T) {
				wantProblemCode(t, e.redeemReward(tok, m, c.reward), 409, c.code)
			})
		}
		if n, r, v := entries(), redemptions(), version(); n != n0 || r != r0 || v != v0 {
			t.Fatalf("a 409 wrote: entries %d→%d, redemptions %d→%d, version %d→%d", n0, n, r0, r, v0, v)
		}
		if s := e.rewardStock(dear); s != 5 {
			t.Fatalf("insufficient points took stock: %d left", s)
		}
		if s := e.rewardStock(stocked); s != 0 {
			t.Fatalf("stock %d", s)
		}
		if b := e.balance(m); b.Available != before.Available || b.LifetimeRedeemed != before.LifetimeRedeemed {
			t.Fatalf("a 409 changed the balance: %+v → %+v", before, b)
		}

		// At valid_from exactly the reward is available.
		e.clock.Advance(time.Microsecond)
		e.redeemReward(tok, m, future).must(t, 201)
		// Once the member is VIB the tier-gated reward is available.
		e.buy(m, 5000, "R-3")
		e.redeemReward(tok, m, vibOnly).must(t, 201)
		e.checkLedger()
	})
}

func TestRedeemTakesLotsExpiringFirst(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		t.Run("OlderLotFirst", func(t *testing.T) {
			e := newEnv(t, dialect)
			t0 := e.clock.Now()
			m := e.enrol()
			e.buy(m, 10000, "R-1") // 100, expires t0+365d
			e.clock.Advance(30 * 24 * time.Hour)
			e.buy(m, 20000, "R-2") // 200, expires t0+395d
			rw := e.addReward("r60", 60)["id"].(string)
			e.redeemReward(e.pos(), m, rw).must(t, 201)
			if b := e.balance(m); b.Available != 240 {
				t.Fatalf("available %d", b.Available)
			}
			e.clock.Set(t0.AddDate(0, 0, 365))
			// Only the older lot's 40 left expire: the newer lot is untouched.
			if b := e.balance(m); b.Available != 200 {
				t.Fatalf("after the older lot expired: available %d, want 200", b.Available)
			}
			e.runJob("expire-points", e.clock.Now())
			pts, cnt := kindsOf(e.ledgerEntries(m))
			if pts["expire"] != -40 || cnt["expire"] != 1 {
				t.Fatalf("expired %d in %d entries, want -40 in 1", pts["expire"], cnt["expire"])
			}
			e.checkLedger()
		})
		t.Run("SoonerExpiryBeatsOlderLot", func(t *testing.T) {
			e := newEnv(t, dialect)
			t0 := e.clock.Now()
			m := e.enrol()
			e.buy(m, 10000, "R-1") // 100, expires t0+365d
			e.do("PUT", "/v1/program", e.marketer(), map[string]any{"expiry_days": 30}).must(t, 200)
			e.clock.Advance(24 * time.Hour)
			e.buy(m, 5000, "R-2") // 50, expires t0+31d: sooner, though newer
			rw := e.addReward("r40", 40)["id"].(string)
			e.redeemReward(e.pos(), m, rw).must(t, 201)
			b := e.balance(m)
			if len(b.ExpiringSoon) != 1 || b.ExpiringSoon[0].Points != 10 || !b.ExpiringSoon[0].ExpiresAt.Equal(t0.AddDate(0, 0, 31)) {
				t.Fatalf("the newer lot expiring first was not spent first: %+v", b.ExpiringSoon)
			}
			e.clock.Set(t0.AddDate(0, 0, 31))
			if b := e.balance(m); b.Available != 100 {
				t.Fatalf("available %d, want 100", b.Available)
			}
		})
	})
}

// runJob runs a job as a marketer and returns the run record.
func (e *env) runJob(name string, asOf time.Time) map[string]any {
	e.t.Helper()
	r := e.do("POST", "/v1/jobs/"+name+"/run", e.marketer(), map[string]any{"as_of": rfc(asOf)}).must(e.t, 200).JSON(e.t)
	if r["status"] != "succeeded" {
		e.t.Fatalf("job %s: %v", name, r)
	}
	return r
}

func TestCancelRedemption(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		other := e.enrol()
		e.buy(m, 50000, "R-1") // 500
		rw := e.addReward("spa", 200, "stock", 3, "per_member_limit", 1)["id"].(string)
		own := e.token(loyalty.RoleMember, m)

		red := e.redeemReward(own, m, rw).must(t, 201).JSON(t)
		id := red["id"].(string)
		if s := e.rewardStock(rw); s != 2 {
			t.Fatalf("stock %d after one redemption", s)
		}
		wantProblemCode(t, e.redeemReward(own, m, rw), 409, "limit_reached")

		e.do("POST", "/v1/redemptions/"+id+"/cancel", e.token(loyalty.RoleMember, other), nil).must(t, 404)
		e.do("POST", "/v1/redemptions/"+id+"/cancel", e.marketer(), nil).must(t, 403)
		e.do("POST", "/v1/redemptions/no-such-id/cancel", e.admin(), nil).must(t, 404)
		e.do("GET", "/v1/redemptions/"+id, e.token(loyalty.RoleMember, other), nil).must(t, 404)

		c := e.do("POST", "/v1/redemptions/"+id+"/cancel", own, nil).must(t, 200).JSON(t)
		if c["status"] != "cancelled" || c["cancelled_at"] == nil || num(c["balance"].(map[string]any)["available"]) != 500 {
			t.Fatalf("cancelled %v", c)
		}
		if s := e.rewardStock(rw); s != 3 {
			t.Fatalf("stock %d after the cancel, want 3", s)
		}
		if b := e.balance(m); b.Available != 500 || b.LifetimeRedeemed != 0 {
			t.Fatalf("balance after cancel %+v", b)
		}
		pts, cnt := kindsOf(e.ledgerEntries(m))
		if pts["redeem"] != -200 || pts["redeem_cancel"] != 200 || cnt["redeem_cancel"] != 1 {
			t.Fatalf("ledger %v %v", pts, cnt)
		}
		got := e.do("GET", "/v1/redemptions/"+id, own, nil).must(t, 200).JSON(t)
		if got["status"] != "cancelled" {
			t.Fatalf("redemption %v", got)
		}

		wantProblemCode(t, e.do("POST", "/v1/redemptions/"+id+"/cancel", e.admin(), nil), 409, "not_issued")
		wantProblemCode(t, e.do("POST", "/v1/coupons/"+red["coupon_code"].(string)+"/use", e.pos(), nil), 409, "not_issued")
		if b := e.balance(m); b.Available != 500 {
			t.Fatalf("a second cancel paid again: %+v", b)
		}
		if s := e.rewardStock(rw); s != 3 {
			t.Fatalf("a second cancel gave stock again: %d", s)
		}

		// The cancelled redemption no longer counts toward the limit.
		again := e.redeemReward(e.pos(), m, rw).must(t, 201).JSON(t)
		if again["coupon_code"] == red["coupon_code"] {
			t.Fatal("a new redemption reused the cancelled coupon")
		}
		wantProblemCode(t, e.redeemReward(e.pos(), m, rw), 409, "limit_reached")
		// pos and admin may cancel too.
		e.do("POST", "/v1/redemptions/"+again["id"].(string)+"/cancel", e.pos(), nil).must(t, 200)
		third := e.redeemReward(e.admin(), m, rw).must(t, 201).JSON(t)
		e.do("POST", "/v1/redemptions/"+third["id"].(string)+"/cancel", e.admin(), nil).must(t, 200)

		l := e.do("GET", "/v1/members/"+m+"/redemptions", own, nil).must(t, 200).JSON(t)
		for _, it := range l["items"].([]any) {
			if st := it.(map[string]any)["status"]; st != "cancelled" {
				t.Fatalf("redemption status %v", st)
			}
		}
		if b := e.balance(m); b.Available != 500 || b.LifetimeRedeemed != 0 {
			t.Fatalf("balance %+v", b)
		}
		e.checkLedger()
	})
}

func TestCancelKeepsOriginalExpiry(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		t0 := e.clock.Now()
		exp1 := t0.AddDate(0, 0, 365)
		m := e.enrol()
		e.buy(m, 10000, "R-1") // 100, expires exp1
		e.clock.Advance(100 * 24 * time.Hour)
		e.buy(m, 5000, "R-2") // 50, expires exp1+100d
		rw := e.addReward("r80", 80)["id"].(string)
		red := e.redeemReward(e.pos(), m, rw).must(t, 201).JSON(t)
		e.clock.Advance(10 * 24 * time.Hour)
		e.do("POST", "/v1/redemptions/"+red["id"].(string)+"/cancel", e.pos(), nil).must(t, 200)

		// Cancelled long after the purchase, the points still expire with their lot.
		for _, en := range e.ledgerEntries(m) {
			if en.Kind == "redeem_cancel" && (en.Points != 80 || en.ExpiresAt != nil && !en.ExpiresAt.Equal(exp1)) {
				t.Fatalf("redeem_cancel entry %+v", en)
			}
		}
		e.clock.Set(exp1.Add(-20 * 24 * time.Hour))
		b := e.balance(m)
		if len(b.ExpiringSoon) != 1 || b.ExpiringSoon[0].Points != 100 || !b.ExpiringSoon[0].ExpiresAt.Equal(exp1) {
			t.Fatalf("expiring soon %+v, want 100 at %s", b.ExpiringSoon, exp1)
		}
		e.clock.Set(exp1.Add(-time.Microsecond))
		if b := e.balance(m); b.Available != 150 {
			t.Fatalf("just before the expiry: %d, want 150", b.Available)
		}
		e.clock.Set(exp1)
		if b := e.balance(m); b.Available != 50 {
			t.Fatalf("at the original expiry the refunded points are still available: %d, want 50", b.Available)
		}
		sum := e.runJob("expire-points", exp1)["summary"].(map[string]any)
		if num(sum["points"]) != 100 || num(sum["lots"]) != 2 {
			t.Fatalf("summary %v: want the original lot's 20 and the refunded 80", sum)
		}
		pts, _ := kindsOf(e.ledgerEntries(m))
		if pts["expire"] != -100 {
			t.Fatalf("expired %d", pts["expire"])
		}
		e.checkLedger()
	})
}

func TestCouponUse(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		e.buy(m, 50000, "R-1")
		rw := e.addReward("facial", 100)["id"].(string)
		redeem := func() map[string]any { return e.redeemReward(e.pos(), m, rw).must(t, 201).JSON(t) }

		red := redeem()
		code := red["coupon_code"].(string)
		got := e.do("GET", "/v1/coupons/"+code, e.pos(), nil).must(t, 200).JSON(t)
		if got["id"] != red["id"] || got["status"] != "issued" || got["member_id"] != m {
			t.Fatalf("coupon %v", got)
		}
		e.do("GET", "/v1/coupons/"+code, e.token(loyalty.RoleMember, m), nil).must(t, 403)
		e.do("POST", "/v1/coupons/"+code+"/use", e.token(loyalty.RoleMember, m), nil).must(t, 403)
		e.do("POST", "/v1/coupons/"+code+"/use", e.marketer(), nil).must(t, 403)

		used := e.do("POST", "/v1/coupons/"+code+"/use", e.tokenStore(loyalty.RolePOS, "till-9", "store-9"), nil).must(t, 200).JSON(t)
		if used["status"] != "used" || used["used_at"] == nil || used["used_by"] != "store-9" || used["id"] != red["id"] {
			t.Fatalf("used %v", used)
		}
		wantProblemCode(t, e.do("POST", "/v1/coupons/"+code+"/use", e.pos(), nil), 409, "not_issued")
		wantProblemCode(t, e.do("POST", "/v1/redemptions/"+red["id"].(string)+"/cancel", e.admin(), nil), 409, "not_issued")
		if b := e.balance(m); b.Available != 400 {
			t.Fatalf("cancel after use refunded: %+v", b)
		}
		if got := e.do("GET", "/v1/coupons/"+code, e.admin(), nil).must(t, 200).JSON(t); got["status"] != "used" {
			t.Fatalf("coupon %v", got)
		}

		t.Run("TypedLoosely", func(t *testing.T) {
			c := redeem()["coupon_code"].(string)
			loose := strings.ToLower(strings.ReplaceAll(c, "-", ""))
			if got := e.do("GET", "/v1/coupons/"+loose, e.pos(), nil).must(t, 200).JSON(t); got["coupon_code"] != c {
				t.Fatalf("looked up %v", got)
			}
			if got := e.do("POST", "/v1/coupons/"+loose+"/use", e.pos(), nil).must(t, 200).JSON(t); got["status"] != "used" {
				t.Fatalf("used %v", got)
			}
			c2 := redeem()["coupon_code"].(string)
			if got := e.do("POST", "/v1/coupons/"+strings.ToLower(c2)+"/use", e.admin(), nil).must(t, 200).JSON(t); got["coupon_code"] != c2 {
				t.Fatalf("used %v", got)
			}
		})
		t.Run("Unknown", func(t *testing.T) {
			wantProblemCode(t, e.do("GET", "/v1/coupons/AAAA-BBBB-CCCC-DDDD", e.pos(), nil), 404, "not_found")
			wantProblemCode(t, e.do("POST", "/v1/coupons/AAAA-BBBB-CCCC-DDDD/use", e.pos(), nil), 404, "not_found")
			e.do("POST", "/v1/coupons/x/use", e.pos(), nil).must(t, 404)
		})
		e.checkLedger()
	})
}

func TestRedeemIdempotencyKey(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		e.buy(m, 50000, "R-1")
		rw := e.addReward("gift", 100, "stock", 10)["id"].(string)
		other := e.addReward("other", 100)["id"].(string)
		tok := e.pos()
		first := e.redeemReward(tok, m, rw, "Idempotency-Key", "redeem-1").must(t, 201)
		again := e.redeemReward(tok, m, rw, "Idempotency-Key", "redeem-1").must(t, 201)
		if again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(first.Body, again.Body) {
			t.Fatalf("not replayed: %s vs %s", first.Body, again.Body)
		}
		if first.JSON(t)["coupon_code"] != again.JSON(t)["coupon_code"] {
			t.Fatal("a replay issued another coupon")
		}
		wantProblemCode(t, e.redeemReward(tok, m, other, "Idempotency-Key", "redeem-1"), 422, "idempotency_key_reused")
		if b := e.balance(m); b.Available != 400 || b.LifetimeRedeemed != 100 {
			t.Fatalf("spent more than once: %+v", b)
		}
		if s := e.rewardStock(rw); s != 9 {
			t.Fatalf("stock %d", s)
		}
		if n := e.dbInt("SELECT COUNT(*) FROM redemptions"); n != 1 {
			t.Fatalf("%d redemptions", n)
		}
		// The same key from another caller is another request.
		e.redeemReward(e.token(loyalty.RolePOS, "till-2"), m, rw, "Idempotency-Key", "redeem-1").must(t, 201)
		if b := e.balance(m); b.Available != 300 {
			t.Fatalf("available %d", b.Available)
		}
		e.checkLedger()
	})
}

// redeemAtOnce sends one redemption per (token, member) pair at the same
// time and returns the responses.
func (e *env) redeemAtOnce(reward string, toks, members []string) []resp {
	e.t.Helper()
	out := make([]resp, len(members))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range members {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			out[i] = e.redeemReward(toks[i], members[i], reward)
		}(i)
	}
	close(start)
	wg.Wait()
	return out
}

// tally counts responses by status and by problem code.
func tally(t testing.TB, rs []resp) (created int, conflicts map[string]int) {
	t.Helper()
	conflicts = map[string]int{}
	for _, r := range rs {
		switch r.Status {
		case 201:
			created++
			var b struct {
				Balance struct {
					Available int64 `json:"available"`
				} `json:"balance"`
			}
			r.Decode(t, &b)
			if b.Balance.Available < 0 {
				t.Errorf("a redemption left the balance at %d", b.Balance.Available)
			}
		case 409:
			var p struct {
				Code string `json:"code"`
			}
			r.Decode(t, &p)
			conflicts[p.Code]++
		default:
			t.Errorf("status %d: %s", r.Status, r.Body)
		}
	}
	return created, conflicts
}

func TestRedeemConcurrently(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		const n = 20
		t.Run("OneMemberNeverOverdraws", func(t *testing.T) {
			e := newEnv(t, dialect)
			m := e.enrol()
			e.buy(m, 50000, "R-1") // 500
			rw := e.addReward("r100", 100)["id"].(string)
			toks, members := make([]string, n), make([]string, n)
			for i := range toks {
				toks[i], members[i] = e.token(loyalty.RoleMember, m), m
				if i%2 == 1 {
					toks[i] = e.pos()
				}
			}
			created, conflicts := tally(t, e.redeemAtOnce(rw, toks, members))
			if created != 5 || conflicts["insufficient_points"] != n-5 {
				t.Fatalf("%d created, conflicts %v; want 5 and %d insufficient_points", created, conflicts, n-5)
			}
			if b := e.balance(m); b.Available != 0 || b.LifetimeRedeemed != 500 {
				t.Fatalf("balance %+v", b)
			}
			if got := e.dbInt("SELECT COUNT(*) FROM redemptions"); got != 5 {
				t.Fatalf("%d redemptions stored", got)
			}
			if neg := e.dbInt("SELECT COUNT(*) FROM member_balances WHERE points < 0"); neg != 0 {
				t.Fatal("a cached balance went negative")
			}
			e.checkLedger()
		})
		t.Run("StockNeverOversold", func(t *testing.T) {
			e := newEnv(t, dialect)
			rw := e.addReward("limited", 10, "stock", 5)["id"].(string)
			toks, members := make([]string, n), make([]string, n)
			for i := range members {
				members[i] = e.enrol()
				e.buy(members[i], 10000, fmt.Sprintf("R-%d", i))
				toks[i] = e.token(loyalty.RoleMember, members[i])
			}
			created, conflicts := tally(t, e.redeemAtOnce(rw, toks, members))
			if created != 5 || conflicts["out_of_stock"] != n-5 {
				t.Fatalf("%d created, conflicts %v; want 5 and %d out_of_stock", created, conflicts, n-5)
			}
			if s := e.rewardStock(rw); s != 0 {
				t.Fatalf("stock %d", s)
			}
			var spent int64
			for _, m := range members {
				spent += 100 - e.balance(m).Available
			}
			if spent != 50 {
				t.Fatalf("%d points spent for 5 redemptions of 10", spent)
			}
			e.checkLedger()
		})
		t.Run("StockHeldAgainstEdits", func(t *testing.T) {
			// Marketers rename the reward while members redeem it: an edit
			// must not write back a stock read before a redemption took one.
			const stock, redeems, edits = 60, 60, 30
			e := newEnv(t, dialect)
			rw := e.addReward("edited", 1, "stock", stock)["id"].(string)
			members := make([]string, 20)
			for i := range members {
				members[i] = e.enrol()
				e.buy(members[i], 10000, fmt.Sprintf("R-%d", i))
			}
			out := make([]resp, redeems+edits)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range out {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if i < redeems {
						m := members[i%len(members)]
						out[i] = e.redeemReward(e.token(loyalty.RoleMember, m), m, rw)
					} else {
						out[i] = e.do("PATCH", "/v1/rewards/"+rw, e.marketer(), map[string]any{"name": fmt.Sprintf("race %d", i)})
					}
				}()
			}
			close(start)
			wg.Wait()
			for _, r := range out[redeems:] {
				r.must(t, 200)
			}
			created, conflicts := tally(t, out[:redeems])
			if created != redeems || len(conflicts) != 0 {
				t.Fatalf("%d created, conflicts %v; want all %d", created, conflicts, redeems)
			}
			if s := e.rewardStock(rw); s != stock-int64(created) {
				t.Fatalf("%d coupons issued from a stock of %d, the stock reads %d", created, stock, s)
			}
			// Out of stock now, and it stays so: no unit came back.
			wantProblemCode(t, e.redeemReward(e.pos(), members[0], rw), 409, "out_of_stock")
			if got := e.dbInt("SELECT COUNT(*) FROM redemptions WHERE reward_id = ?", rw); got != stock {
				t.Fatalf("%d redemptions of a stock of %d", got, stock)
			}
			e.checkLedger()
		})
		t.Run("PerMemberLimitHolds", func(t *testing.T) {
			e := newEnv(t, dialect)
			m := e.enrol()
			e.buy(m, 1000000, "R-1") // 10000
			rw := e.addReward("twice", 10, "per_member_limit", 2)["id"].(string)
			const k = 10
			toks, members := make([]string, k), make([]string, k)
			for i := range toks {
				toks[i], members[i] = e.pos(), m
			}
			created, conflicts := tally(t, e.redeemAtOnce(rw, toks, members))
			if created != 2 || conflicts["limit_reached"] != k-2 {
				t.Fatalf("%d created, conflicts %v; want 2 and %d limit_reached", created, conflicts, k-2)
			}
			if b := e.balance(m); b.Available != 10000-20 {
				t.Fatalf("available %d", b.Available)
			}
			e.checkLedger()
		})
	})
}

func TestCancelAndUseRace(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		e.buy(m, 50000, "R-1") // 500
		rw := e.addReward("race", 100, "stock", 10)["id"].(string)
		const n = 10
		race := func(calls []func() resp) []resp {
			out := make([]resp, len(calls))
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i, call := range calls {
				wg.Add(1)
				go func(i int, call func() resp) {
					defer wg.Done()
					<-start
					out[i] = call()
				}(i, call)
			}
			close(start)
			wg.Wait()
			return out
		}
		tok := e.pos()
		t.Run("ManyCancels", func(t *testing.T) {
			id := e.redeemReward(tok, m, rw).must(t, 201).JSON(t)["id"].(string)
			calls := make([]func() resp, n)
			for i := range calls {
				calls[i] = func() resp { return e.do("POST", "/v1/redemptions/"+id+"/cancel", tok, nil) }
			}
			ok := 0
			for _, r := range race(calls) {
				switch r.Status {
				case 200:
					ok++
				case 409:
					wantProblemCode(t, r, 409, "not_issued")
				default:
					t.Fatalf("cancel: %d %s", r.Status, r.Body)
				}
			}
			if ok != 1 {
				t.Fatalf("%d cancels succeeded", ok)
			}
			if b := e.balance(m); b.Available != 500 {
				t.Fatalf("refunded more than once: %d", b.Available)
			}
			if s := e.rewardStock(rw); s != 10 {
				t.Fatalf("stock %d", s)
			}
		})
		t.Run("CancelAgainstUse", func(t *testing.T) {
			for round := 0; round < 5; round++ {
				red := e.redeemReward(tok, m, rw).must(t, 201).JSON(t)
				id, code := red["id"].(string), red["coupon_code"].(string)
				var calls []func() resp
				for i := 0; i < n/2; i++ {
					calls = append(calls,
						func() resp { return e.do("POST", "/v1/redemptions/"+id+"/cancel", tok, nil) },
						func() resp { return e.do("POST", "/v1/coupons/"+code+"/use", tok, nil) })
				}
				ok := 0
				var winner string
				for _, r := range race(calls) {
					switch r.Status {
					case 200:
						ok++
						winner = r.JSON(t)["status"].(string)
					case 409:
						wantProblemCode(t, r, 409, "not_issued")
					default:
						t.Fatalf("%d %s", r.Status, r.Body)
					}
				}
				if ok != 1 {
					t.Fatalf("%d of the racing cancels and uses succeeded", ok)
				}
				got := e.do("GET", "/v1/coupons/"+code, tok, nil).must(t, 200).JSON(t)
				if got["status"] != winner {
					t.Fatalf("coupon is %v, the winner said %s", got["status"], winner)
				}
				if winner == "used" {
					// Keep the balance where the next round expects it.
					e.do("POST", "/v1/members/"+m+"/adjustments", e.admin(), map[string]any{"points": 100, "reason": "round"}).must(t, 201)
				}
				if b := e.balance(m); b.Available != 500 {
					t.Fatalf("round %d (%s): available %d", round, winner, b.Available)
				}
			}
			e.checkLedger()
		})
		t.Run("SameIdempotencyKeyAtOnce", func(t *testing.T) {
			before := e.balance(m).Available
			calls := make([]func() resp, n)
			for i := range calls {
				calls[i] = func() resp { return e.redeemReward(tok, m, rw, "Idempotency-Key", "race-key") }
			}
			rs := race(calls)
			for i, r := range rs {
				if r.Status != 201 || !bytes.Equal(r.Body, rs[0].Body) {
					t.Fatalf("attempt %d: %d %s, first answer %s", i, r.Status, r.Body, rs[0].Body)
				}
			}
			if b := e.balance(m); b.Available != before-100 {
				t.Fatalf("one key spent %d", before-b.Available)
			}
			e.checkLedger()
		})
	})
}
