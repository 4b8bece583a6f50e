package api

import (
	"strings"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// erasedPII is what the erasure tests enrol a member with; none of it may
// be found anywhere once the member is erased.
var erasedPII = map[string]any{"external_id": "ERASE-CARD-77", "email": "erin.rased@example.com", "phone": "+14155550177",
	"first_name": "Erinys", "last_name": "Rasedottir", "birthday": "1991-03-01", "timezone": "Europe/Oslo"}

// noPII fails the test for every piece of erasedPII that what holds.
func noPII(t *testing.T, what string, body []byte) {
	t.Helper()
	for _, k := range []string{"external_id", "email", "phone", "first_name", "last_name", "birthday", "timezone"} {
		v := erasedPII[k].(string)
		if i := strings.Index(string(body), v); i >= 0 {
			t.Errorf("%s still holds the erased member's %s %q: …%s…", what, k, v, body[max(0, i-80):min(len(body), i+80)])
		}
	}
}

// TestErasureLeavesNoPersonalData erases a member who enrolled, bought,
// redeemed, was adjusted and claimed a birthday gift, each under an
// Idempotency-Key: every replay afterwards answers as the first time did
// but without personal data, enrols no one, and no stored reply or copy in
// the database still holds it.
func TestErasureLeavesNoPersonalData(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		pos, admin := e.pos(), e.admin()
		enrol := e.do("POST", "/v1/members", pos, erasedPII, "Idempotency-Key", "erase-enrol").must(t, 201).JSON(t)
		m := enrol["id"].(string)
		reward := e.do("POST", "/v1/rewards", admin, map[string]any{"code": "erase-gift", "name": "Gift", "cost_points": 10}).
			must(t, 201).JSON(t)["id"].(string)
		e.do("PUT", "/v1/program", admin, map[string]any{"birthday_gift": map[string]any{"enabled": true,
			"reward_ids": []string{reward}, "claim_days": 30}}).must(t, 200)

		type write struct {
			name, method, path, key string
			token                   string
			body                    map[string]any
		}
		writes := []write{
			{"Adjustment", "POST", "/v1/members/" + m + "/adjustments", "erase-adjust", admin, map[string]any{"points": 500, "reason": "fixture"}},
			{"Purchase", "POST", "/v1/purchases", "erase-buy", pos, map[string]any{"member_id": m, "external_id": "ERASE-R-1",
				"store_id": "store-1", "currency": "USD", "total": 4200}},
			{"Redemption", "POST", "/v1/members/" + m + "/redemptions", "erase-redeem", pos, map[string]any{"reward_id": reward}},
		}
		for _, w := range writes {
			e.do(w.method, w.path, w.token, w.body, "Idempotency-Key", w.key).must(t, 201)
		}
		e.do("POST", "/v1/jobs/birthday-gifts/run", admin, nil).must(t, 200)
		var gifts struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		e.do("GET", "/v1/members/"+m+"/gifts", admin, nil).must(t, 200).Decode(t, &gifts)
		if len(gifts.Items) != 1 {
			t.Fatalf("%d birthday gifts, want 1", len(gifts.Items))
		}
		claim := write{"GiftClaim", "POST", "/v1/members/" + m + "/gifts/" + gifts.Items[0].ID + "/claim", "erase-claim", pos,
			map[string]any{"reward_id": reward}}
		e.do(claim.method, claim.path, claim.token, claim.body, "Idempotency-Key", claim.key).must(t, 201)
		writes = append(writes, claim)
		members := e.anInt("SELECT COUNT(*) FROM members")

		e.do("DELETE", "/v1/members/"+m, admin, nil).must(t, 204)

		t.Run("EnrolmentReplay", func(t *testing.T) {
			r := e.do("POST", "/v1/members", pos, erasedPII, "Idempotency-Key", "erase-enrol")
			if r.Status != 201 || r.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("replay: status %d, Idempotent-Replayed %q, want 201 replayed: %s", r.Status, r.Header.Get("Idempotent-Replayed"), r.Body)
			}
			noPII(t, "the enrolment's replay", r.Body)
			got := r.JSON(t)
			if got["id"] != m || got["status"] != loyalty.StatusErased {
				t.Errorf("replay %v, want the erased member %s", got, m)
			}
			for _, k := range []string{"external_id", "email", "phone", "first_name", "last_name", "birthday", "timezone"} {
				if v, ok := got[k]; !ok || v != nil {
					t.Errorf("replay's %s is %v, want null", k, v)
				}
			}
			if n := e.anInt("SELECT COUNT(*) FROM members"); n != members {
				t.Errorf("%d members after the replay, want %d: the replay enrolled someone", n, members)
			}
			if n := e.anInt("SELECT COUNT(*) FROM members WHERE email = ?", erasedPII["email"]); n != 0 {
				t.Errorf("%d members hold the erased e-mail address", n)
			}
		})
		for _, w := range writes {
			t.Run(w.name+"Replay", func(t *testing.T) {
				r := e.do(w.method, w.path, w.token, w.body, "Idempotency-Key", w.key)
				if r.Header.Get("Idempotent-Replayed") != "true" {
					t.Fatalf("status %d, not a replay: %s", r.Status, r.Body)
				}
				noPII(t, w.name+"'s replay", r.Body)
			})
		}
		t.Run("StoredCopies", func(t *testing.T) {
			for _, q := range []struct{ what, sql string }{
				{"idempotency_keys", "SELECT response FROM idempotency_keys"},
				{"audit_log", "SELECT change FROM audit_log"},
				{"member_gifts", "SELECT birthday FROM member_gifts"},
			} {
				var texts []string
				if err := e.store.DB().Raw(q.sql).Scan(&texts).Error; err != nil {
					t.Fatal(err)
				}
				noPII(t, q.what, []byte(strings.Join(texts, "\n")))
			}
		})
	})
}

// TestEraseTwice repeats DELETE on an erased member, as a client retrying
// after a lost answer would: the same 204, and no second audit row.
func TestEraseTwice(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		e.do("DELETE", "/v1/members/"+m, e.admin(), nil).must(t, 204)
		rows := e.anInt("SELECT COUNT(*) FROM audit_log WHERE action = 'member.erase' AND target_id = ?", m)
		if rows != 1 {
			t.Fatalf("%d member.erase rows after one erasure, want 1", rows)
		}
		r := e.do("DELETE", "/v1/members/"+m, e.admin(), nil)
		if r.Status != 204 {
			t.Errorf("second DELETE: status %d, want 204: %s", r.Status, r.Body)
		}
		if n := e.anInt("SELECT COUNT(*) FROM audit_log WHERE target_id = ?", m); n != rows {
			t.Errorf("%d audit rows for the member after a second DELETE, want %d", n, rows)
		}
		got := e.do("GET", "/v1/members/"+m, e.admin(), nil).must(t, 200).JSON(t)
		if got["status"] != loyalty.StatusErased {
			t.Errorf("member after a second DELETE: %v", got)
		}
	})
}

// TestMemberConflictNamesNoOne tries another member's contact details on a
// member's own profile and in an enrolment: the 409 names neither the other
// member nor the value, and a member cannot tell from it which of its
// details is taken.
func TestMemberConflictNamesNoOne(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		a := e.enrol()
		b := e.do("POST", "/v1/members", e.pos(), map[string]any{"external_id": "CONF-B", "email": "other.one@example.com",
			"phone": "+14155550199"}).must(t, 201).JSON(t)["id"].(string)
		secret := []string{b, "other.one@example.com", "4155550199", "CONF-B"}
		leaks := func(t *testing.T, r resp) {
			t.Helper()
			for _, s := range secret {
				if strings.Contains(string(r.Body), s) {
					t.Errorf("the 409 shows %q: %s", s, r.Body)
				}
			}
		}
		tok := e.token(loyalty.RoleMember, a)
		byEmail := e.do("PATCH", "/v1/members/"+a, tok, map[string]any{"email": "Other.One@example.com"})
		wantProblemCode(t, byEmail, 409, "duplicate")
		leaks(t, byEmail)
		byPhone := e.do("PATCH", "/v1/members/"+a, tok, map[string]any{"phone": "+14155550199"})
		wantProblemCode(t, byPhone, 409, "duplicate")
		leaks(t, byPhone)
		if string(byEmail.Body) != string(byPhone.Body) {
			t.Errorf("a member tells which detail is taken from the answers:\n%s\n%s", byEmail.Body, byPhone.Body)
		}
		for _, role := range []loyalty.Role{loyalty.RolePOS, loyalty.RoleMarketer, loyalty.RoleAdmin} {
			tok := e.token(role, "staff-1")
			r := e.do("PATCH", "/v1/members/"+a, tok, map[string]any{"email": "other.one@example.com"})
			wantProblemCode(t, r, 409, "duplicate")
			leaks(t, r)
			r = e.do("POST", "/v1/members", tok, map[string]any{"external_id": "CONF-B", "email": "other.one@example.com"})
			wantProblemCode(t, r, 409, "duplicate")
			leaks(t, r)
		}
		if got := e.do("GET", "/v1/members/"+a, e.admin(), nil).must(t, 200).JSON(t); got["email"] == "other.one@example.com" {
			t.Errorf("the conflicting change was kept: %v", got)
		}
	})
}
