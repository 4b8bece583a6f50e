package api

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestPOSMemberLookup: a till finds a member by an exact key (external id,
// e-mail or phone) and gets that member only; it cannot list members, so
// it cannot download everyone's personal data. Marketers and admins list.
func TestPOSMemberLookup(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		ids := map[string]string{}
		for _, m := range []struct{ ext, email, phone string }{
			{"CARD-1", "ann@example.com", "+14155550101"}, {"CARD-2", "bob@example.com", "+14155550102"},
			{"CARD-3", "cy@example.com", "+14155550103"},
		} {
			ids[m.ext] = e.do("POST", "/v1/members", e.pos(), map[string]any{"external_id": m.ext, "email": m.email, "phone": m.phone,
				"first_name": "F", "last_name": "L", "birthday": "1990-01-02"}).must(t, 201).JSON(t)["id"].(string)
		}
		tills := map[string]string{"Till": e.pos(), "StoreBoundTill": e.tokenStore(loyalty.RolePOS, "till-s1", "store-1")}
		for name, till := range tills {
			t.Run(name, func(t *testing.T) {
				for _, q := range []string{"", "?limit=500", "?limit=1", "?cursor=" + *loyalty.Cursor(ids["CARD-1"]),
					"?email=", "?external_id=&phone=", "?first_name=F"} {
					r := e.do("GET", "/v1/members"+q, till, nil)
					assertProblem(t, r, http.StatusForbidden, "")
					if got := r.JSON(t)["code"]; got != "lookup_key_required" {
						t.Errorf("GET /v1/members%s: code %v, want lookup_key_required", q, got)
					}
				}
				for q, want := range map[string]string{
					"external_id=CARD-2":                          ids["CARD-2"],
					"email=" + url.QueryEscape("BOB@example.com"): ids["CARD-2"],
					"phone=" + url.QueryEscape("+14155550103"):    ids["CARD-3"],
					"external_id=CARD-1&limit=500":                ids["CARD-1"],
					"external_id=CARD-1&email=ann%40example.com":  ids["CARD-1"],
				} {
					var l loyalty.List[loyalty.Member]
					e.do("GET", "/v1/members?"+q, till, nil).must(t, 200).Decode(t, &l)
					if len(l.Items) != 1 || l.Items[0].ID != want || l.NextCursor != nil {
						t.Errorf("GET /v1/members?%s: %+v, want only %s", q, l, want)
					}
				}
				var l loyalty.List[loyalty.Member]
				e.do("GET", "/v1/members?external_id=CARD-1&email=bob%40example.com", till, nil).must(t, 200).Decode(t, &l)
				if len(l.Items) != 0 {
					t.Errorf("keys of two members matched %d", len(l.Items))
				}
			})
		}
		t.Run("MarketersAndAdminsList", func(t *testing.T) {
			for _, tok := range []string{e.marketer(), e.admin()} {
				var l loyalty.List[loyalty.Member]
				e.do("GET", "/v1/members?limit=500", tok, nil).must(t, 200).Decode(t, &l)
				if len(l.Items) != 3 {
					t.Errorf("listed %d members, want 3", len(l.Items))
				}
			}
		})
	})
}
