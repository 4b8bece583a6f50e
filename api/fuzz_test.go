package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/loyalty-engine/loyalty/api/problem"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/rewards"
)

// hostileSeeds are bodies every decoder's corpus starts from: broken
// JSON, the wrong shapes, NUL and bad UTF-8, numbers at and past the int64
// edges, deep nesting, duplicate keys.
var hostileSeeds = []string{
	``, ` `, `{`, `}`, `{}`, `[]`, `null`, ` null `, `"x"`, `42`, `true`,
	`{"a":1}{"a":2}`, `{"a":1} x`, `{"a":1,}`, `{'a':1}`,
	`{"a":"\u0000"}`, "{\"a\":\"\x00\"}", "{\"\x00\":1}", `{"\u0000":1}`,
	"{\"a\":\"\xff\xfe\"}", "\xef\xbb\xbf{}", `{"a":"\ud800"}`,
	`{"a":9223372036854775807}`, `{"a":9223372036854775808}`, `{"a":-9223372036854775809}`, `{"a":1e400}`, `{"a":-0}`,
	`{"a":` + strings.Repeat(`[`, 10_001) + strings.Repeat(`]`, 10_001) + `}`,
	`{"a":` + strings.Repeat(`{"a":`, 200) + `1` + strings.Repeat(`}`, 200) + `}`,
	`{"a":1,"a":"x"}`,
}

// checkDecode decodes body as a request of type T would be and checks the
// outcome: no panic (a panic fails the fuzz run), and either a value from
// valid JSON or a domain error whose status is 4xx.
func checkDecode[T any](t *testing.T, app *fiber.App, body []byte) {
	fctx := new(fasthttp.RequestCtx)
	fctx.Request.Header.SetMethod(http.MethodPost)
	fctx.Request.SetBody(body)
	c := app.AcquireCtx(fctx)
	defer app.ReleaseCtx(c)
	var v T
	err := decode(c, &v)
	if err == nil {
		if !json.Valid(body) {
			t.Fatalf("decoded %q, which is not valid JSON, into %+v", body, v)
		}
		if _, err := json.Marshal(v); err != nil {
			t.Fatalf("decoded %q into %+v, which does not encode: %v", body, v, err)
		}
		return
	}
	var le *loyalty.Error
	if !errors.As(err, &le) {
		t.Fatalf("decode %q: %T %v is not a domain error", body, err, err)
	}
	if s := problem.Status(le.Code); s < 400 || s > 499 {
		t.Fatalf("decode %q: %v maps to %d, want a 4xx", body, err, s)
	}
	if le.Code == loyalty.Invalid && len(le.Fields) == 0 {
		t.Fatalf("decode %q: a 422 that names no field: %v", body, err)
	}
}

// fuzzDecoder runs checkDecode over the hostile seeds, the given seeds and
// whatever the fuzzer derives from them.
func fuzzDecoder[T any](f *testing.F, seeds ...string) {
	for _, s := range append(seeds, hostileSeeds...) {
		f.Add([]byte(s))
	}
	app := fiber.New()
	f.Fuzz(func(t *testing.T, body []byte) { checkDecode[T](t, app, body) })
}

func FuzzDecodeMember(f *testing.F) {
	fuzzDecoder[loyalty.MemberInput](f,
		`{"external_id":"C-1","email":"ann@example.com","phone":"+14155550123","first_name":"Ann","last_name":"Lee","birthday":"1990-05-17","timezone":"Europe/Paris"}`,
		`{"email":null,"phone":null}`, `{"birthday":17}`, `{"first_name":["Ann"]}`, `{"email":{"a":1}}`)
}

func FuzzDecodePurchase(f *testing.F) {
	fuzzDecoder[loyalty.PurchaseInput](f,
		`{"member_id":"m","external_id":"R-2026-000123","store_id":"store-17","channel":"pos","occurred_at":"2026-03-01T12:00:00Z","currency":"USD","total":10000,`+
			`"items":[{"sku":"SKU-1","category":"skincare","quantity":2,"unit_price":2000,"amount":4000},{"sku":"SKU-2","category":"makeup","quantity":1,"unit_price":6000,"amount":6000}]}`,
		`{"member_id":"m","total":1e3}`, `{"total":10.5}`, `{"items":{}}`, `{"items":[null]}`, `{"items":[{"amount":"1"}]}`,
		`{"items":[`+strings.Repeat(`{},`, 2000)+`{}]}`, `{"occurred_at":1700000000}`)
}

func FuzzDecodeReturn(f *testing.F) {
	fuzzDecoder[loyalty.ReturnInput](f, `{"external_id":"RET-1","amount":4000}`,
		`{"external_id":"RET-1","amount":4000,"occurred_at":"2026-03-01T12:00:00Z"}`, `{"amount":"4000"}`, `{"amount":-1}`)
}

func FuzzDecodeAdjustment(f *testing.F) {
	fuzzDecoder[loyalty.AdjustmentInput](f, `{"points":-50,"reason":"goodwill"}`, `{"points":0.5}`, `{"points":-9223372036854775808}`)
}

func FuzzDecodeProgram(f *testing.F) {
	fuzzDecoder[loyalty.ProgramPatch](f,
		`{"name":"Beauty Insider","currency":"USD","points_per_unit":"1","pending_days":0,"expiry_policy":"lot","expiry_days":365,`+
			`"tier_period":"rolling","tier_window_days":365,"timezone":"UTC",`+
			`"birthday_gift":{"enabled":true,"reward_ids":[],"bonus_points":0,"claim_days":30,"min_tier":null},`+
			`"segments":{"loyal_window_weeks":8,"loyal_min_active_weeks":8,"loyal_min_categories":20},"churn":{"risk_threshold":"0.5"}}`,
		`{"points_per_unit":1.5}`, `{"points_per_unit":"1e999999999"}`, `{"churn":{"risk_threshold":"x"}}`,
		`{"segments":{"loyal_window_weeks":"8"}}`, `{"birthday_gift":"yes"}`, `{"pending_days":1e30}`)
}

func FuzzDecodeTier(f *testing.F) {
	fuzzDecoder[loyalty.TierInput](f,
		`{"code":"vib","name":"VIB","rank":1,"earn_multiplier":"1.25","qualifying_spend":35000,"benefits":["free_shipping"]}`,
		`{"earn_multiplier":1.25}`, `{"earn_multiplier":"1.5x"}`, `{"earn_multiplier":"-1e-400"}`, `{"rank":"3"}`, `{"benefits":"x"}`)
}

func FuzzDecodeReward(f *testing.F) {
	fuzzDecoder[rewards.RewardInput](f,
		`{"code":"tote","name":"Tote bag","description":"A bag","cost_points":500,"min_tier":"vib","stock":100,"per_member_limit":1,`+
			`"valid_from":"2026-01-01T00:00:00Z","valid_until":"2026-12-31T23:59:59+01:00","active":true}`,
		`{"stock":null,"per_member_limit":null,"min_tier":null}`, `{"valid_from":"2026-01-01"}`, `{"active":"yes"}`)
}

func FuzzDecodeRedeem(f *testing.F) {
	fuzzDecoder[rewards.RedeemInput](f, `{"reward_id":"r-1"}`, `{"reward_id":1}`)
}

func FuzzDecodeGiftClaim(f *testing.F) {
	fuzzDecoder[rewards.ClaimInput](f, `{"reward_id":"r-1"}`, `{"reward_id":null}`)
}

func FuzzDecodeOffer(f *testing.F) {
	fuzzDecoder[loyalty.OfferInput](f,
		`{"code":"skincare-x2","name":"Double points on skincare","kind":"multiplier","multiplier":"2","bonus_points":0,`+
			`"conditions":{"categories":["skincare"],"skus":[],"store_ids":[],"channels":[],"min_spend":0},`+
			`"target":{"all":false,"segments":["loyal"],"member_ids":[]},"requires_activation":false,`+
			`"starts_at":"2026-03-01T00:00:00Z","ends_at":"2026-04-01T00:00:00Z","max_uses_per_member":1}`,
		`{"multiplier":2}`, `{"conditions":{"min_spend":"0"}}`, `{"target":{"all":"yes"}}`, `{"starts_at":"soon"}`, `{"status":"paused"}`)
}

func FuzzDecodeOfferTemplate(f *testing.F) {
	fuzzDecoder[loyalty.OfferTemplateInput](f,
		`{"code":"fav-x2","name":"Double on your favourite","kind":"multiplier","multiplier":"2","conditions":{"min_spend":0},`+
			`"duration_days":14,"lookback_days":90,"min_purchases":2,"requires_activation":true,"max_uses_per_member":null,"active":true}`,
		`{"duration_days":"14"}`, `{"multiplier":"two"}`)
}

func FuzzDecodeRunJob(f *testing.F) {
	fuzzDecoder[RunJobInput](f, `{"as_of":"2026-03-01T00:00:00Z"}`, `{"as_of":null}`, `{"as_of":"2026-03-01"}`,
		`{"as_of":"0000-01-01T00:00:00Z"}`, `{"as_of":"9999-12-31T23:59:59+14:00"}`)
}

// fuzzApp is one SQLite-backed engine for a fuzz run with the fixtures
// its routes need, and the tokens to call them.
type fuzzApp struct {
	app                                   *fiber.App
	member, purchase, reward, offer, gift string
	tokens                                map[loyalty.Role]string
}

func newFuzzApp(f *testing.F) *fuzzApp {
	e := newEnv(f, loyalty.SQLite)
	e.beautyLadder()
	member := e.enrol()
	e.do("POST", "/v1/members/"+member+"/adjustments", e.admin(), map[string]any{"points": 100000, "reason": "fuzz"}).must(f, 201)
	purchase := e.buy(member, 100000, "FUZZ-1")["id"].(string)
	reward := e.do("POST", "/v1/rewards", e.admin(), map[string]any{"code": "fuzz-reward", "name": "Fuzz", "cost_points": 1}).
		must(f, 201).JSON(f)["id"].(string)
	offer := e.do("POST", "/v1/offers", e.admin(), map[string]any{"code": "fuzz-offer", "name": "Fuzz", "kind": "bonus",
		"bonus_points": 1, "target": map[string]any{"all": true}, "requires_activation": true}).must(f, 201).JSON(f)["id"].(string)
	return &fuzzApp{app: e.app, member: member, purchase: purchase, reward: reward, offer: offer, gift: "no-such-gift",
		tokens: map[loyalty.Role]string{loyalty.RoleAdmin: e.admin(), loyalty.RoleMarketer: e.marketer(), loyalty.RolePOS: e.pos(),
			loyalty.RoleMember: e.token(loyalty.RoleMember, member)}}
}

// send makes one request through the app; rawTarget is written as the
// request target verbatim.
func (fa *fuzzApp) send(t *testing.T, method, rawTarget string, role loyalty.Role, body []byte) resp {
	req := &http.Request{Method: method, URL: &url.URL{Scheme: "http", Host: "loyalty.test", Opaque: rawTarget},
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Host: "loyalty.test"}
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+fa.tokens[role])
	res, err := fa.app.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %q: %v", method, rawTarget, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// checkAnswer fails unless r is a success or a 4xx problem document.
func checkAnswer(t *testing.T, what string, r resp) {
	if r.Status >= 500 {
		t.Fatalf("%s: status %d: %s", what, r.Status, r.Body)
	}
	if r.Status >= 400 {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
			t.Fatalf("%s: status %d with Content-Type %q: %s", what, r.Status, ct, r.Body)
		}
		var p Problem
		if err := json.Unmarshal(r.Body, &p); err != nil || p.Status != r.Status || p.Type == "" || p.Detail == "" {
			t.Fatalf("%s: status %d, not a problem document (%v): %s", what, r.Status, err, r.Body)
		}
	}
}

// FuzzAPIBodies posts fuzzed bodies to every route that takes one, through
// the real app over SQLite, with a role allowed to call it: the answer is
// a success or a 4xx problem, never a 5xx, whatever the body.
func FuzzAPIBodies(f *testing.F) {
	fa := newFuzzApp(f)
	type route struct {
		method, path string
		role         loyalty.Role
	}
	routes := []route{
		{"POST", "/v1/members", loyalty.RolePOS},
		{"PATCH", "/v1/members/" + fa.member, loyalty.RoleMember},
		{"PATCH", "/v1/members/" + fa.member, loyalty.RoleAdmin},
		{"POST", "/v1/purchases/quote", loyalty.RolePOS},
		{"POST", "/v1/purchases", loyalty.RolePOS},
		{"POST", "/v1/purchases/" + fa.purchase + "/returns", loyalty.RolePOS},
		{"POST", "/v1/members/" + fa.member + "/adjustments", loyalty.RoleAdmin},
		{"PUT", "/v1/program", loyalty.RoleMarketer},
		{"PUT", "/v1/tiers/fuzz", loyalty.RoleMarketer},
		{"POST", "/v1/rewards", loyalty.RoleMarketer},
		{"PATCH", "/v1/rewards/" + fa.reward, loyalty.RoleMarketer},
		{"POST", "/v1/members/" + fa.member + "/redemptions", loyalty.RoleMember},
		{"POST", "/v1/offers", loyalty.RoleMarketer},
		{"PATCH", "/v1/offers/" + fa.offer, loyalty.RoleMarketer},
		{"POST", "/v1/offer-templates", loyalty.RoleMarketer},
		{"POST", "/v1/members/" + fa.member + "/gifts/" + fa.gift + "/claim", loyalty.RoleMember},
		{"POST", "/v1/jobs/tier-review/run", loyalty.RoleMarketer},
	}
	seeds := []string{`{}`, `{"total":1000,"member_id":"` + fa.member + `","currency":"USD"}`,
		`{"first_name":"Ann","email":"ann@example.com"}`, `{"amount":100,"external_id":"R-1"}`, `{"points":5,"reason":"x"}`,
		`{"name":"X","rank":5,"earn_multiplier":"2","qualifying_spend":5000000}`, `{"code":"c1","name":"C","cost_points":1}`,
		`{"reward_id":"` + fa.reward + `"}`, `{"code":"o1","name":"O","kind":"bonus","bonus_points":1}`,
		`{"as_of":"2026-03-01T00:00:00Z"}`, `{"pending_days":1,"timezone":"Europe/Paris"}`,
		`{"total":1000,"member_id":"` + fa.member + `","items":[{"sku":"A","amount":1000,"quantity":9223372036854775807,"unit_price":2}]}`}
	// Every seed on one route, and two on each: the baseline stays small
	// enough for a short run to get past it and mutate.
	for i, s := range append(seeds, hostileSeeds...) {
		f.Add(uint8(i%len(routes)), []byte(s))
	}
	for i := range routes {
		f.Add(uint8(i), []byte(seeds[0]))
		f.Add(uint8(i), []byte(seeds[i%len(seeds)]))
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		rt := routes[int(which)%len(routes)]
		checkAnswer(t, rt.method+" "+rt.path+" "+string(body), fa.send(t, rt.method, rt.path, rt.role, body))
	})
}

// FuzzAPIPaths fuzzes the ids in paths and the query strings of the read
// routes, sent verbatim as the request target: a success or a 4xx
// problem, never a 5xx.
func FuzzAPIPaths(f *testing.F) {
	fa := newFuzzApp(f)
	prefixes := []string{"/v1/members/", "/v1/members?", "/v1/purchases/", "/v1/rewards/", "/v1/rewards?", "/v1/redemptions/",
		"/v1/coupons/", "/v1/offers/", "/v1/segments/", "/v1/analytics/redemption-rate?", "/v1/analytics/summary?",
		"/v1/analytics/churn-risk?", "/v1/members/" + fa.member + "/ledger?", "/v1/jobs/", "/v1/tiers/"}
	seeds := []string{"x", "", "99999999999999999999999", "-1", "%00", "%ff", "..%2f..%2fetc", "../../x", "ü",
		"' OR 1=1--", "email=a%40b&limit=5", "limit=0", "cursor=%21%21", "from=2026-01-01&to=2026-02-30", "min_risk=NaN",
		"interval=week", "external_id=%ff%fe", fa.member + "/balance", fa.member + "/redemptions?limit=500"}
	for i := range prefixes {
		f.Add(uint8(i), seeds[0])
		f.Add(uint8(i), seeds[i%len(seeds)])
		f.Add(uint8(i), seeds[(i+7)%len(seeds)])
	}
	f.Fuzz(func(t *testing.T, which uint8, rest string) {
		// A space, CR, LF or # would end or split the request line or URL;
		// those are the HTTP parser's business, not the routes'.
		if strings.ContainsAny(rest, " \r\n\t#") || strings.ContainsFunc(rest, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return
		}
		target := prefixes[int(which)%len(prefixes)] + rest
		checkAnswer(t, "GET "+target, fa.send(t, "GET", target, loyalty.RoleAdmin, nil))
	})
}

// FuzzDecodeBatch holds decodeBatch, which splits a till batch's body on
// every core, to decode of the whole body: the same purchases, the same
// input digested under an Idempotency-Key, the same refusal.
func FuzzDecodeBatch(f *testing.F) {
	p := `{"member_id":"m","external_id":"R-1","store_id":"s","currency":"USD","total":100,"items":[{"sku":"a{[\"]}","amount":100}]}`
	for _, s := range append([]string{
		`{"purchases":[` + p + `,` + p + `]}`, ` {"purchases" : [ ` + p + ` ] } `, `{"purchases":[]}`, `{"purchases":[1]}`,
		`{"purchases":[{}],"x":1}`, `{"Purchases":[{}]}`, `{"purchases":[{}]}x`, `{"purchases":[{"a":1,"a":2}]}`,
		`{"purchases":[{"a":"<&>\u2028"}]}`, `{"purchases":[{"a":"\u0000"}]}`, `{"purchases":[{"a":"x\"}]}`,
		`{"purchases":[{"a":]}]}`, `{"purchases":[{}}]}`, `{"purchases":[{"a":[1,{"b":2}]} , {}]}`,
		`{"purchases":[` + strings.Repeat(`{},`, 600) + `{}]}`,
	}, hostileSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, input, err := decodeBatch(body)
		var want purchaseBatch
		werr := decodeJSON(body, &want)
		if (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
			t.Fatalf("%q: decodeBatch %v, decode %v", body, err, werr)
		}
		if err != nil {
			return
		}
		if len(got.Purchases) != len(want.Purchases) {
			t.Fatalf("%q: %d purchases, decode finds %d", body, len(got.Purchases), len(want.Purchases))
		}
		for i := range got.Purchases {
			if !bytes.Equal(got.Purchases[i], want.Purchases[i]) {
				t.Fatalf("%q: purchase %d is %q, decode finds %q", body, i, got.Purchases[i], want.Purchases[i])
			}
		}
		in, err := input()
		wantIn, werr := json.Marshal(want)
		if err != nil || werr != nil || !bytes.Equal(in, wantIn) {
			t.Fatalf("%q: the key's input %q (%v), decode's %q (%v)", body, in, err, wantIn, werr)
		}
	})
}
