package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestBodyNamesStrict: encoding/json matches object names case-
// insensitively and lets the last of several win, so {"total":100,
// "TOTAL":5000} posted a purchase of 5000 while its canonical form for the
// Idempotency-Key hash held both. A body naming a field twice, in any
// case, or spelling a field in another case is 422 naming it, on every
// route that reads a body; nothing is written.
func TestBodyNamesStrict(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		purchase := func(tail string) string {
			return fmt.Sprintf(`{"member_id":%q,"external_id":"DUP-1","store_id":"store-1","currency":"USD",%s}`, m, tail)
		}
		mk, admin, pos := e.marketer(), e.admin(), e.pos()
		for _, c := range []struct {
			name, method, path, tok, body, field string
		}{
			{"PurchaseCaseVariantAfter", "POST", "/v1/purchases", pos, purchase(`"total":100,"TOTAL":5000`), "TOTAL"},
			{"PurchaseCaseVariantBefore", "POST", "/v1/purchases", pos, purchase(`"TOTAL":5000,"total":100`), "TOTAL"},
			{"PurchaseCaseVariantAlone", "POST", "/v1/purchases", pos, purchase(`"TOTAL":5000`), "TOTAL"},
			{"PurchaseTwice", "POST", "/v1/purchases", pos, purchase(`"total":100,"total":5000`), "total"},
			{"PurchaseFoldedRune", "POST", "/v1/purchases", pos, purchase(`"total":100,"ſtore_id":"store-2"`), "ſtore_id"},
			{"PurchaseItemTwice", "POST", "/v1/purchases", pos, purchase(`"total":100,"items":[{"sku":"a","amount":100,"Amount":50}]`), "items[0].Amount"},
			{"QuoteCaseVariant", "POST", "/v1/purchases/quote", pos, purchase(`"total":100,"Member_ID":"x"`), "Member_ID"},
			{"MemberTwice", "POST", "/v1/members", pos, `{"email":"a@example.com","Email":"b@example.com"}`, "Email"},
			{"MemberPatchTwice", "PATCH", "/v1/members/" + m, admin, `{"first_name":"A","first_name":"B"}`, "first_name"},
			{"AdjustmentCaseVariant", "POST", "/v1/members/" + m + "/adjustments", admin, `{"points":1,"POINTS":100000,"reason":"x"}`, "POINTS"},
			{"ProgramNested", "PUT", "/v1/program", mk, `{"birthday_gift":{"enabled":true,"Enabled":false}}`, "birthday_gift.Enabled"},
			{"TierCaseVariant", "PUT", "/v1/tiers/vib", mk, `{"earn_multiplier":"1.25","Earn_Multiplier":"9"}`, "Earn_Multiplier"},
			{"RewardTwice", "POST", "/v1/rewards", mk, `{"code":"r","name":"R","cost_points":1,"cost_points":0}`, "cost_points"},
			{"OfferNestedCaseVariant", "POST", "/v1/offers", mk, `{"code":"o","name":"O","kind":"bonus","bonus_points":1,"target":{"all":false,"ALL":true}}`, "target.ALL"},
			{"TemplateCaseVariant", "POST", "/v1/offer-templates", mk, `{"code":"t","name":"T","kind":"bonus","bonus_points":1,"Active":true}`, "Active"},
			{"UnknownNamesTwice", "POST", "/v1/members", pos, `{"email":"c@example.com","note":"x","NOTE":"y"}`, "NOTE"},
			{"JobCaseVariant", "POST", "/v1/jobs/segments/run", mk, `{"AS_OF":"2026-03-01T00:00:00Z"}`, "AS_OF"},
		} {
			t.Run(c.name, func(t *testing.T) {
				assertProblem(t, e.do(c.method, c.path, c.tok, c.body), http.StatusUnprocessableEntity, c.field)
			})
		}
		t.Run("NothingWritten", func(t *testing.T) {
			if b := e.balance(m); b.Available != 0 || b.Pending != 0 {
				t.Errorf("a refused body moved the balance: %+v", b)
			}
			if n := e.dbInt(`SELECT COUNT(*) FROM purchases`); n != 0 {
				t.Errorf("%d purchases written", n)
			}
		})
	})
}

// TestIdempotencyHashesTheDecodedRequest: an Idempotency-Key guards what
// the engine decoded. The two bodies of the issue, {"total":100,
// "TOTAL":5000} and {"TOTAL":5000,"total":100}, are both refused; bodies
// that decode alike (other spacing, order, an unknown field) replay; bodies
// that decode differently are 422 idempotency_key_reused.
func TestIdempotencyHashesTheDecodedRequest(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		pos := e.pos()
		body := func(ext, tail string) string {
			return fmt.Sprintf(`{"member_id":%q,"external_id":%q,"store_id":"store-1","currency":"USD",%s}`, m, ext, tail)
		}
		key := func(k string) []string { return []string{"Idempotency-Key", k} }

		t.Run("CaseVariantsNeverReplay", func(t *testing.T) {
			assertProblem(t, e.do("POST", "/v1/purchases", pos, body("IK-1", `"total":100,"TOTAL":5000`), key("ik-1")...), 422, "TOTAL")
			r := e.do("POST", "/v1/purchases", pos, body("IK-1", `"TOTAL":5000,"total":100`), key("ik-1")...)
			assertProblem(t, r, 422, "TOTAL")
			if r.Header.Get("Idempotent-Replayed") != "" {
				t.Errorf("a refused body was replayed")
			}
		})
		t.Run("SameDecodedRequestReplays", func(t *testing.T) {
			first := e.do("POST", "/v1/purchases", pos, body("IK-2", `"total":100`), key("ik-2")...).must(t, 201)
			for _, b := range []string{
				"  " + body("IK-2", `"total" : 100`) + "\n",
				fmt.Sprintf(`{"total":100,"currency":"USD","store_id":"store-1","external_id":"IK-2","member_id":%q}`, m),
				body("IK-2", `"total":100,"note":"an unknown field decodes to nothing"`),
			} {
				r := e.do("POST", "/v1/purchases", pos, b, key("ik-2")...)
				if r.Status != 201 || r.Header.Get("Idempotent-Replayed") != "true" || string(r.Body) != string(first.Body) {
					t.Errorf("%s: %d replayed=%q %s", b, r.Status, r.Header.Get("Idempotent-Replayed"), r.Body)
				}
			}
		})
		t.Run("OtherDecodedRequestIs422", func(t *testing.T) {
			e.do("POST", "/v1/purchases", pos, body("IK-3", `"total":100`), key("ik-3")...).must(t, 201)
			for _, b := range []string{body("IK-3", `"total":5000`), body("IK-3", `"total":100,"channel":"web"`)} {
				r := e.do("POST", "/v1/purchases", pos, b, key("ik-3")...)
				assertProblem(t, r, 422, "")
				if !strings.Contains(string(r.Body), "idempotency_key_reused") {
					t.Errorf("%s: %s", b, r.Body)
				}
			}
		})
		if b := e.balance(m); b.Available+b.Pending != 2 {
			t.Errorf("balance %+v, want the 2 points of two purchases of 100", b)
		}
	})
}
