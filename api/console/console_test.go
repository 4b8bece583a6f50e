package console_test

import (
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/api"
	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/rewards"
)

// These tests drive the console through app.Test, so they run with or
// without a browser: sign-in, roles, CSRF, and every page and form against
// the real services on SQLite and, when reachable, PostgreSQL.

func TestConsoleSignIn(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		marketer := e.token(loyalty.RoleMarketer, "mk-1")

		t.Run("RedirectsToSignIn", func(t *testing.T) {
			cl := e.client()
			for _, path := range []string{"/console", "/console/", "/console/tiers", "/console/members/x", "/console/nope"} {
				r := cl.get(path)
				if r.Status != 303 || r.Header.Get("Location") != "/console/login" {
					t.Errorf("GET %s: %d %q, want 303 to /console/login", path, r.Status, r.Header.Get("Location"))
				}
			}
			r := cl.get("/console/tiers", "HX-Request", "true")
			if r.Status != 401 || r.Header.Get("HX-Redirect") != "/console/login" {
				t.Errorf("htmx request without a session: %d HX-Redirect %q", r.Status, r.Header.Get("HX-Redirect"))
			}
			if r := cl.post("/console/tiers/insider", "", url.Values{"name": {"x"}}); r.Status != 303 {
				t.Errorf("POST without a session: %d", r.Status)
			}
		})

		t.Run("SignInPage", func(t *testing.T) {
			r := e.client().get("/console/login").must(t, 200).contains(t, `id="login-form"`, `name="token"`)
			ck := r.Header.Get("Set-Cookie")
			for _, want := range []string{"loyalty_console_login=", "HttpOnly", "SameSite=Strict", "path=/console"} {
				if !strings.Contains(ck, want) {
					t.Errorf("sign-in cookie %q lacks %q", ck, want)
				}
			}
			if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			if r.Header.Get("X-Frame-Options") != "DENY" || r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("headers: %v", r.Header)
			}
		})

		t.Run("SignInWithoutCSRF", func(t *testing.T) {
			cl := e.client()
			r := cl.do("POST", "/console/login", url.Values{"token": {marketer}})
			r.must(t, 403).contains(t, "expired")
			if _, ok := cl.cookies["loyalty_console"]; ok {
				t.Error("a session cookie was set without the sign-in form's token")
			}
			cl.get("/console/login")
			cl.post("/console/login", "forged", url.Values{"token": {marketer}}).must(t, 403)
			// The token of another browser's form does not fit this one's cookie.
			other := e.client().get("/console/login").csrf(t)
			cl.post("/console/login", other, url.Values{"token": {marketer}}).must(t, 403)
			if _, ok := cl.cookies["loyalty_console"]; ok {
				t.Error("a session cookie was set with a forged token")
			}
		})

		t.Run("BadTokens", func(t *testing.T) {
			expired, err := api.SignToken(e.auth, loyalty.RoleAdmin, "op", "", time.Minute, time.Now().Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			foreign, err := api.SignToken(api.AuthConfig{Secret: []byte("another-secret-another-secret-another!")}, loyalty.RoleAdmin, "op", "", time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for name, tok := range map[string]string{"Garbage": "not-a-token", "Expired": expired, "OtherSecret": foreign, "Empty": ""} {
				t.Run(name, func(t *testing.T) {
					cl := e.client()
					csrf := cl.get("/console/login").csrf(t)
					cl.post("/console/login", csrf, url.Values{"token": {tok}}).must(t, 401).contains(t, "not valid or has expired")
					if _, ok := cl.cookies["loyalty_console"]; ok {
						t.Error("a session cookie was set")
					}
				})
			}
		})

		t.Run("OtherRolesCannotSignIn", func(t *testing.T) {
			for _, role := range []loyalty.Role{loyalty.RolePOS, loyalty.RoleMember} {
				cl := e.client()
				csrf := cl.get("/console/login").csrf(t)
				cl.post("/console/login", csrf, url.Values{"token": {e.token(role, "someone")}}).must(t, 403).
					contains(t, "A "+string(role)+" token cannot open the console")
				if _, ok := cl.cookies["loyalty_console"]; ok {
					t.Errorf("a %s token got a session", role)
				}
			}
		})

		t.Run("OtherRoleCookieIs403", func(t *testing.T) {
			// A session cookie made by hand with a till's token shows only
			// the 403 page, whatever the page.
			cl := e.client()
			cl.cookies["loyalty_console"] = e.token(loyalty.RolePOS, "till-1")
			for _, path := range []string{"/console/", "/console/tiers", "/console/members"} {
				cl.get(path).must(t, 403).contains(t, "a pos token cannot use it")
			}
			csrf := cl.get("/console/").csrf(t)
			cl.post("/console/tiers/insider", csrf, url.Values{"name": {"Hacked"}}).must(t, 403)
			cl.post("/console/logout", csrf, nil).must(t, 303)
			if _, ok := cl.cookies["loyalty_console"]; ok {
				t.Error("sign out left the cookie")
			}
		})

		t.Run("MarketerSignsIn", func(t *testing.T) {
			cl := e.client()
			login := cl.get("/console/login")
			r := cl.post("/console/login", login.csrf(t), url.Values{"token": {"Bearer " + marketer}}).must(t, 303)
			var session string
			for _, ck := range r.Header.Values("Set-Cookie") {
				if strings.HasPrefix(ck, "loyalty_console=") {
					session = ck
				}
			}
			for _, want := range []string{"HttpOnly", "SameSite=Strict", "path=/console"} {
				if !strings.Contains(session, want) {
					t.Errorf("session cookie %q lacks %q", session, want)
				}
			}
			if _, ok := cl.cookies["loyalty_console_login"]; ok {
				t.Error("the sign-in form's cookie outlived the sign-in")
			}
			cl.get("/console/").must(t, 200).contains(t, "mk-1 · marketer", `id="chart-data"`)
			// Signed in, the sign-in page leads to the dashboard.
			if r := cl.get("/console/login"); r.Status != 303 || r.Header.Get("Location") != "/console/" {
				t.Errorf("sign-in page when signed in: %d %s", r.Status, r.Header.Get("Location"))
			}
		})

		t.Run("SignOut", func(t *testing.T) {
			cl := e.client()
			csrf := cl.signIn(marketer)
			cl.post("/console/logout", "", nil).must(t, 403)
			cl.get("/console/").must(t, 200)
			r := cl.post("/console/logout", csrf, nil).must(t, 303)
			if r.Header.Get("Location") != "/console/login" {
				t.Errorf("sign out leads to %q", r.Header.Get("Location"))
			}
			if !strings.Contains(strings.Join(r.Header.Values("Set-Cookie"), "\n"), "loyalty_console=;") {
				t.Errorf("sign out does not clear the cookie: %v", r.Header.Values("Set-Cookie"))
			}
			if r := cl.get("/console/"); r.Status != 303 {
				t.Errorf("after sign out: %d", r.Status)
			}
		})

		t.Run("StaticFiles", func(t *testing.T) {
			cl := e.client()
			for file, ct := range map[string]string{"htmx.min.js": "text/javascript", "chart.umd.js": "text/javascript",
				"console.js": "text/javascript", "console.css": "text/css"} {
				r := cl.get("/console/static/"+file).must(t, 200)
				if !strings.HasPrefix(r.Header.Get("Content-Type"), ct) || len(r.Body) < 100 {
					t.Errorf("%s: %s, %d bytes", file, r.Header.Get("Content-Type"), len(r.Body))
				}
			}
			cl.get("/console/static/nope.js").must(t, 404)
			cl.get("/console/static/..%2Fconsole.go").must(t, 404)
		})

		t.Run("APIUnchanged", func(t *testing.T) {
			cl := e.client()
			r := cl.get("/v1/tiers").must(t, 401)
			if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
				t.Errorf("the API's 401 is %s", r.Header.Get("Content-Type"))
			}
			if r := cl.get("/consoles"); r.Status != 404 || !strings.Contains(r.Header.Get("Content-Type"), "problem+json") {
				t.Errorf("GET /consoles: %d %s", r.Status, r.Header.Get("Content-Type"))
			}
		})

		t.Run("NoTokenInLogs", func(t *testing.T) {
			logs := e.logs.String()
			if logs == "" {
				t.Fatal("nothing was logged")
			}
			for _, tok := range []string{marketer, strings.Split(marketer, ".")[2]} {
				if strings.Contains(logs, tok) {
					t.Error("a token appears in the logs")
				}
			}
		})
	})
}

func TestConsoleCSRF(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.tiers()
		cl := e.client()
		csrf := cl.signIn(e.token(loyalty.RoleMarketer, "mk-1"))
		otherCSRF := e.client().signIn(e.token(loyalty.RoleMarketer, "mk-2"))
		form := func() url.Values {
			return url.Values{"name": {"Insider"}, "rank": {"0"}, "earn_multiplier": {"9"}, "qualifying_spend": {"0"}}
		}
		multiplier := func() string {
			ts, err := e.svc.Tiers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return ts[0].EarnMultiplier.String()
		}
		// A forged token differs from the real one in its first character
		// (a token that begins with "x" is forged with "y").
		forged := "x" + csrf[1:]
		if forged == csrf {
			forged = "y" + csrf[1:]
		}
		for name, token := range map[string]string{"Missing": "", "Forged": forged, "OtherSession": otherCSRF} {
			t.Run(name, func(t *testing.T) {
				cl.post("/console/tiers/insider", token, form()).must(t, 403).contains(t, "security token")
				cl.post("/console/tiers/insider", "", form(), "HX-Request", "true", "X-CSRF-Token", token).must(t, 403)
				if m := multiplier(); m != "1" {
					t.Fatalf("the tier changed to %s without a valid CSRF token", m)
				}
			})
		}
		t.Run("Header", func(t *testing.T) {
			cl.post("/console/tiers/insider", "", form(), "HX-Request", "true", "X-CSRF-Token", csrf).must(t, 303)
			if m := multiplier(); m != "9" {
				t.Errorf("multiplier %s after a request with the header", m)
			}
		})
		t.Run("Field", func(t *testing.T) {
			f := form()
			f.Set("earn_multiplier", "2")
			cl.post("/console/tiers/insider", csrf, f).must(t, 303)
			if m := multiplier(); m != "2" {
				t.Errorf("multiplier %s after a form with the field", m)
			}
		})
		t.Run("QueryStringRefused", func(t *testing.T) {
			// A token in the URL leaks into logs, history and Referer
			// headers, and lets a link carry it: it counts only in the form
			// body or the X-CSRF-Token header.
			f := form()
			f.Set("earn_multiplier", "7")
			cl.post("/console/tiers/insider?_csrf="+url.QueryEscape(csrf), "", f).must(t, 403)
			cl.do("POST", "/console/tiers/insider?"+url.Values{"_csrf": {csrf}, "earn_multiplier": {"7"}, "name": {"Insider"},
				"rank": {"0"}, "qualifying_spend": {"0"}}.Encode(), nil).must(t, 403)
			if m := multiplier(); m == "7" {
				t.Fatalf("the tier changed with the CSRF token in the query string")
			}
			cl.post("/console/logout?_csrf="+url.QueryEscape(csrf), "", nil).must(t, 403)
			cl.get("/console/").must(t, 200)
		})
		t.Run("SignInFromTheQueryStringRefused", func(t *testing.T) {
			other := e.client()
			login := other.get("/console/login").must(t, 200).csrf(t)
			q := url.Values{"_csrf": {login}, "token": {e.token(loyalty.RoleMarketer, "mk-q")}}.Encode()
			if r := other.do("POST", "/console/login?"+q, url.Values{}); r.Status == 303 {
				t.Fatalf("signed in with the CSRF token and the JWT in the query string")
			}
			if r := other.post("/console/login?token="+url.QueryEscape(e.token(loyalty.RoleMarketer, "mk-q")), login, nil); r.Status == 303 {
				t.Fatalf("signed in with the JWT in the query string")
			}
		})
		t.Run("EveryForm", func(t *testing.T) {
			// Every state-changing route refuses a request without the token.
			for _, path := range []string{"/console/tiers", "/console/tiers/insider", "/console/rewards", "/console/rewards/x",
				"/console/rewards/x/retire", "/console/offers", "/console/birthday", "/console/payment", "/console/members/x/adjust",
				"/console/jobs/segments/run"} {
				if r := cl.post(path, "", url.Values{"name": {"x"}}); r.Status != 403 {
					t.Errorf("POST %s without a token: %d", path, r.Status)
				}
			}
			runs, err := e.runner.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range runs {
				if j.LastRun != nil {
					t.Errorf("job %s ran without a CSRF token", j.Name)
				}
			}
		})
	})
}

func TestConsolePages(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.tiers()
		ctx := context.Background()
		mk := e.client()
		csrf := mk.signIn(e.token(loyalty.RoleMarketer, "mk-1"))

		t.Run("Tiers", func(t *testing.T) {
			mk.get("/console/tiers").must(t, 200).contains(t, `id="tier-insider"`, `value="1.25"`, `value="350.00"`)
			r := mk.post("/console/tiers/vib", csrf, url.Values{"name": {"VIB"}, "rank": {"1"}, "earn_multiplier": {"1.75"},
				"qualifying_spend": {"400"}, "benefits": {"free_shipping, gift_wrap"}}).must(t, 303)
			if loc := r.Header.Get("Location"); loc != "/console/tiers?msg=tier_saved&x=vib" {
				t.Errorf("after saving: %s", loc)
			}
			mk.get("/console/tiers?msg=tier_saved&x=vib").must(t, 200).contains(t, `id="flash"`, "Tier “vib” saved.")
			ts, _ := e.svc.Tiers(ctx)
			if vib := ts[1]; vib.EarnMultiplier.String() != "1.75" || vib.QualifyingSpend != 40000 || strings.Join(vib.Benefits, ",") != "free_shipping,gift_wrap" {
				t.Errorf("VIB after the form: %+v", vib)
			}
			// Bad input is shown on the page with what was typed, never a 500.
			mk.post("/console/tiers/vib", csrf, url.Values{"name": {"VIB"}, "rank": {"1"}, "earn_multiplier": {"lots"},
				"qualifying_spend": {"1.234"}}).must(t, 422).
				contains(t, `id="problem"`, "Earn multiplier", "Qualifying spend", `value="lots"`)
			mk.post("/console/tiers/vib", csrf, url.Values{"name": {"VIB"}, "rank": {"1"}, "earn_multiplier": {"2000"},
				"qualifying_spend": {"400"}}).must(t, 422).contains(t, "must be a decimal from 0 to 1000")
			mk.post("/console/tiers/vib", csrf, url.Values{"name": {"VIB"}, "rank": {"2"}, "earn_multiplier": {"1.5"},
				"qualifying_spend": {"400"}}).must(t, 409).contains(t, "rank 2 is held by tier")
			mk.post("/console/tiers/rouge", csrf, url.Values{"name": {"Rouge"}, "rank": {"2"}, "earn_multiplier": {"1.5"},
				"qualifying_spend": {"100"}}).must(t, 422).contains(t, `id="problem"`)
			// A new tier.
			mk.post("/console/tiers", csrf, url.Values{"code": {"noir"}, "name": {"Noir"}, "rank": {"3"}, "earn_multiplier": {"2"},
				"qualifying_spend": {"5000"}}).must(t, 303)
			mk.post("/console/tiers", csrf, url.Values{"code": {"Bad Code"}, "name": {"X"}, "rank": {"4"}, "earn_multiplier": {"2"}}).
				must(t, 422).contains(t, `value="Bad Code"`)
			if ts, _ := e.svc.Tiers(ctx); len(ts) != 4 || ts[3].Code != "noir" || ts[3].QualifyingSpend != 500000 {
				t.Errorf("tiers after adding one: %+v", ts)
			}
		})

		var rewardID string
		t.Run("Rewards", func(t *testing.T) {
			page := mk.get("/console/rewards").must(t, 200)
			idem := regexp.MustCompile(`name="idem" value="([^"]+)"`).FindStringSubmatch(page.Body)[1]
			form := url.Values{"idem": {idem}, "code": {"tote"}, "name": {"Canvas tote"}, "cost_points": {"500"},
				"min_tier": {"vib"}, "stock": {"20"}, "per_member_limit": {""}, "valid_from": {"2026-03-01T09:00"}, "valid_until": {""}}
			mk.post("/console/rewards", csrf, form).must(t, 303)
			// The same form sent twice creates one reward.
			mk.post("/console/rewards", csrf, form).must(t, 303)
			l, err := e.rw.List(ctx, loyalty.Principal{Subject: "t", Role: loyalty.RoleAdmin}, rewards.ListQuery{All: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Items) != 1 {
				t.Fatalf("rewards after the form sent twice: %+v", l.Items)
			}
			r := l.Items[0]
			rewardID = r.ID
			if r.Code != "tote" || r.CostPoints != 500 || *r.MinTier != "vib" || *r.Stock != 20 || r.PerMemberLimit != nil ||
				r.ValidFrom == nil || !r.ValidFrom.Equal(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)) || !r.Active {
				t.Errorf("created reward: %+v", r)
			}
			mk.get("/console/rewards").must(t, 200).contains(t, `id="reward-tote"`, "Canvas tote")
			// A duplicate code is a message on the page.
			form.Set("idem", "another-key")
			mk.post("/console/rewards", csrf, form).must(t, 409).contains(t, `id="problem"`, `value="Canvas tote"`)
			mk.post("/console/rewards", csrf, url.Values{"code": {"x"}, "name": {""}, "cost_points": {"-1"}}).must(t, 422).
				contains(t, "Name", "Cost points")
			mk.post("/console/rewards", csrf, url.Values{"code": {"y"}, "name": {"Y"}, "cost_points": {"ten"}}).must(t, 422).
				contains(t, "must be a whole number")
			// Edit, then retire.
			mk.get("/console/rewards/"+rewardID).must(t, 200).contains(t, `value="tote"`, `value="20"`)
			mk.post("/console/rewards/"+rewardID, csrf, url.Values{"code": {"tote"}, "name": {"Canvas tote"}, "cost_points": {"450"},
				"min_tier": {""}, "stock": {""}, "per_member_limit": {"2"}, "active": {"1"}}).must(t, 303)
			got, _ := e.rw.Get(ctx, rewardID)
			if got.CostPoints != 450 || got.MinTier != nil || got.Stock != nil || got.PerMemberLimit == nil || *got.PerMemberLimit != 2 {
				t.Errorf("edited reward: %+v", got)
			}
			mk.post("/console/rewards/"+rewardID, csrf, url.Values{"code": {"tote"}, "name": {"Canvas tote"}, "cost_points": {"450"},
				"valid_from": {"2026-05-01T00:00"}, "valid_until": {"2026-04-01T00:00"}, "active": {"1"}}).must(t, 422).
				contains(t, "Valid until")
			mk.post("/console/rewards/"+rewardID+"/retire", csrf, nil).must(t, 303)
			if got, _ := e.rw.Get(ctx, rewardID); got.Active {
				t.Error("the reward is still active after retiring it")
			}
			mk.get("/console/rewards").must(t, 200).contains(t, `class="retired"`)
			mk.get("/console/rewards/no-such-reward").must(t, 404).contains(t, `id="problem"`)
			mk.post("/console/rewards/no-such-reward/retire", csrf, nil).must(t, 404)
		})

		t.Run("Offers", func(t *testing.T) {
			// Two members, one of them in the loyal segment's place: the
			// segments job puts buyers of the last year in RFM segments.
			m1, m2 := e.enrol(), e.enrol()
			pos := e.token(loyalty.RolePOS, "till-1")
			for i, m := range []loyalty.Member{m1, m2} {
				if st, b := e.postJSON("/v1/purchases", pos, map[string]any{"member_id": m.ID, "external_id": "O-" + m.ID,
					"store_id": "s1", "currency": "USD", "total": 1000 * (i + 1)}); st != 201 {
					t.Fatalf("purchase: %d %v", st, b)
				}
			}
			if _, err := e.runner.Run(ctx, "segments", e.clock.Now(), "test"); err != nil {
				t.Fatal(err)
			}
			segs, _ := e.runner.SegmentList(ctx)
			var seg jobs.Segment
			for _, s := range segs {
				if s.Members > 0 {
					seg = s
					break
				}
			}
			page := mk.get("/console/offers").must(t, 200).contains(t, `value="`+seg.Code+`"`)
			idem := regexp.MustCompile(`name="idem" value="([^"]+)"`).FindStringSubmatch(page.Body)[1]
			r := mk.post("/console/offers", csrf, url.Values{"idem": {idem}, "code": {"spring"}, "name": {"Spring double"},
				"kind": {"multiplier"}, "multiplier": {"2"}, "target": {"segments"}, "segments": {seg.Code},
				"min_spend": {"20.00"}, "categories": {"skincare, makeup"}, "starts_at": {"2026-03-01T00:00"}}).must(t, 303)
			loc := r.Header.Get("Location")
			if !strings.HasPrefix(loc, "/console/offers?reach=") {
				t.Fatalf("after creating an offer: %s", loc)
			}
			offers, _ := e.svc.ListOffers(ctx, loyalty.OfferQuery{})
			if len(offers.Items) != 1 {
				t.Fatalf("offers: %+v", offers.Items)
			}
			o := offers.Items[0]
			if o.Kind != "multiplier" || o.Multiplier.String() != "2" || strings.Join(o.Target.Segments, ",") != seg.Code ||
				o.Conditions.MinSpend != 2000 || strings.Join(o.Conditions.Categories, ",") != "skincare,makeup" {
				t.Errorf("created offer: %+v", o)
			}
			reach, _ := e.svc.OfferReach(ctx, o.ID)
			if reach != seg.Members || reach == 0 {
				t.Errorf("reach %d, segment %s has %d", reach, seg.Code, seg.Members)
			}
			mk.get(loc).must(t, 200).contains(t, `id="reach-banner"`, `<strong id="reach-count">`+groupDigits(reach)+`</strong>`,
				"Offer “spring” created.")
			// The reach button answers htmx with the count alone.
			f := mk.get("/console/offers/"+o.ID+"/reach", "HX-Request", "true").must(t, 200)
			if strings.Contains(f.Body, "<html") || !strings.Contains(f.Body, `data-members="`) {
				t.Errorf("reach fragment: %s", f.Body)
			}
			if r := mk.get("/console/offers/" + o.ID + "/reach"); r.Status != 303 {
				t.Errorf("reach without htmx: %d", r.Status)
			}
			mk.get("/console/offers/no-such-offer/reach", "HX-Request", "true").must(t, 200).contains(t, "Not found")
			// Errors stay on the page with what was typed.
			mk.post("/console/offers", csrf, url.Values{"code": {"bad"}, "name": {"Bad"}, "kind": {"multiplier"}, "multiplier": {"1"},
				"target": {"all"}}).must(t, 422).contains(t, "Multiplier", `value="Bad"`)
			mk.post("/console/offers", csrf, url.Values{"code": {"spring"}, "name": {"Again"}, "kind": {"bonus"}, "bonus_points": {"10"},
				"target": {"all"}}).must(t, 409).contains(t, `id="problem"`)
			mk.post("/console/offers", csrf, url.Values{"code": {"late"}, "name": {"Late"}, "kind": {"bonus"}, "bonus_points": {"10"},
				"target": {"all"}, "starts_at": {"yesterday"}}).must(t, 422).contains(t, "Starts at")
			mk.post("/console/offers", csrf, url.Values{"code": {"all-bonus"}, "name": {"Everyone"}, "kind": {"bonus"},
				"bonus_points": {"10"}, "target": {"all"}}).must(t, 303)
		})

		t.Run("BirthdayGift", func(t *testing.T) {
			mk.get("/console/birthday").must(t, 200).contains(t, `name="enabled"`)
			in := rewards.RewardInput{}
			_ = json.Unmarshal([]byte(`{"code":"cake","name":"Birthday cake","cost_points":0}`), &in)
			cake, _, err := e.rw.Create(ctx, in, loyalty.IdempotencyKey{})
			if err != nil {
				t.Fatal(err)
			}
			mk.post("/console/birthday", csrf, url.Values{"enabled": {"1"}, "bonus_points": {"250"}, "claim_days": {"14"},
				"min_tier": {"vib"}, "reward_ids": {cake.ID}}).must(t, 303)
			p, _ := e.svc.Program(ctx)
			g := p.BirthdayGift
			if !g.Enabled || g.BonusPoints != 250 || g.ClaimDays != 14 || g.MinTier == nil || *g.MinTier != "vib" ||
				strings.Join(g.RewardIDs, ",") != cake.ID {
				t.Errorf("birthday gift after the form: %+v", g)
			}
			mk.get("/console/birthday?msg=gift_saved").must(t, 200).contains(t, "Birthday gift settings saved.", "checked")
			mk.post("/console/birthday", csrf, url.Values{"enabled": {"1"}, "bonus_points": {"10"}, "claim_days": {"0"}}).
				must(t, 422).contains(t, "Claim days", "must be from 1 to 366")
			mk.post("/console/birthday", csrf, url.Values{"bonus_points": {"10"}, "claim_days": {"14"}, "min_tier": {"nope"}}).
				must(t, 422).contains(t, "Min tier")
		})

		t.Run("MemberPayments", func(t *testing.T) {
			// A payment with points at the till and its refund on a return
			// are in the member page's ledger (§16).
			m := e.enrol()
			admin := loyalty.Principal{Subject: "op", Role: loyalty.RoleAdmin}
			pay := loyalty.PointsPayment{Enabled: true, PointsPerUnit: decimal.NewFromInt(50), MinPoints: 500, StepPoints: 500,
				MaxShare: decimal.NewFromInt(1)}
			if _, err := e.svc.UpdateProgram(ctx, loyalty.ProgramPatch{PointsPayment: &pay}); err != nil {
				t.Fatal(err)
			}
			points, total, paid, back := int64(1000), int64(4000), int64(500), int64(2000)
			if _, _, err := e.svc.Adjust(ctx, admin, m.ID, loyalty.AdjustmentInput{Points: &points, Reason: "opening"}, loyalty.IdempotencyKey{}); err != nil {
				t.Fatal(err)
			}
			res, _, err := e.svc.PostPurchase(ctx, admin, loyalty.PurchaseInput{MemberID: m.ID, ExternalID: "PAY-1", Total: &total,
				PointsPayment: &paid}, loyalty.IdempotencyKey{})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := e.svc.PostReturn(ctx, admin, res.ID, loyalty.ReturnInput{ExternalID: "RET-1", Amount: &back}, loyalty.IdempotencyKey{}); err != nil {
				t.Fatal(err)
			}
			mk.get("/console/members/"+m.ID).must(t, 200).contains(t, "<td>payment</td>", "<td>payment_refund</td>", "&#43;250", "-500")
		})

		t.Run("Members", func(t *testing.T) {
			m := e.enrol()
			for _, q := range []string{"q=" + url.QueryEscape(*m.Email), "q=" + url.QueryEscape(*m.Phone), "q=" + *m.ExternalID,
				"q=" + *m.ExternalID + "&by=external_id", "q=" + url.QueryEscape(*m.Email) + "&by=email"} {
				mk.get("/console/members?"+q).must(t, 200).contains(t, `href="/console/members/`+m.ID+`"`)
			}
			mk.get("/console/members?q=nobody@example.com").must(t, 200).contains(t, "No member has exactly")
			mk.get("/console/members?q="+*m.ExternalID+"&by=email").must(t, 200).contains(t, "No member has exactly")
			mk.get("/console/members/"+m.ID).must(t, 200).
				contains(t, *m.Email, `id="balance-available">0<`, "Only an admin may adjust points.", `id="ledger"`, "Insider")
			mk.get("/console/members/no-such-member").must(t, 404).contains(t, `id="problem"`)
			// Adjusting is for admins, as in the API.
			mk.post("/console/members/"+m.ID+"/adjust", csrf, url.Values{"points": {"100"}, "reason": {"test"}}).must(t, 403)

			admin := e.client()
			acsrf := admin.signIn(e.token(loyalty.RoleAdmin, "op-1"))
			page := admin.get("/console/members/"+m.ID).must(t, 200).contains(t, `id="adjust-form"`)
			idem := regexp.MustCompile(`name="idem" value="([^"]+)"`).FindStringSubmatch(page.Body)[1]
			form := url.Values{"idem": {idem}, "points": {"250"}, "reason": {"Goodwill"}}
			r := admin.post("/console/members/"+m.ID+"/adjust", acsrf, form).must(t, 303)
			admin.post("/console/members/"+m.ID+"/adjust", acsrf, form).must(t, 303) // sent twice, recorded once
			admin.get(r.Header.Get("Location")).must(t, 200).
				contains(t, "Adjustment of &#43;250 points recorded.", `id="balance-available">250<`, "Goodwill")
			b, _ := e.svc.Balance(ctx, loyalty.Principal{Subject: "t", Role: loyalty.RoleAdmin}, m.ID)
			if b.Available != 250 {
				t.Errorf("balance after the adjustment: %+v", b)
			}
			admin.post("/console/members/"+m.ID+"/adjust", acsrf, url.Values{"points": {"-1000"}, "reason": {"Too much"}}).
				must(t, 409).contains(t, `id="problem"`, `value="-1000"`, `value="Too much"`)
			admin.post("/console/members/"+m.ID+"/adjust", acsrf, url.Values{"points": {"0"}, "reason": {""}}).
				must(t, 422).contains(t, "Points", "Reason")
			admin.post("/console/members/"+m.ID+"/adjust", acsrf, url.Values{"points": {"1.5"}, "reason": {"x"}}).
				must(t, 422).contains(t, "must be a whole number")
			admin.post("/console/members/no-such-member/adjust", acsrf, url.Values{"points": {"1"}, "reason": {"x"}}).must(t, 404)
			if b, _ := e.svc.Balance(ctx, loyalty.Principal{Subject: "t", Role: loyalty.RoleAdmin}, m.ID); b.Available != 250 {
				t.Errorf("balance after refused adjustments: %d", b.Available)
			}
		})

		t.Run("Jobs", func(t *testing.T) {
			mk.get("/console/jobs").must(t, 200).contains(t, `id="job-churn-risk"`, "never run")
			f := mk.post("/console/jobs/expire-points/run", csrf, nil, "HX-Request", "true").must(t, 200)
			if !strings.HasPrefix(strings.TrimSpace(f.Body), `<tr id="job-expire-points">`) || !strings.Contains(f.Body, "succeeded") ||
				!strings.Contains(f.Body, "marketer:mk-1") {
				t.Errorf("job row fragment: %s", f.Body)
			}
			r := mk.post("/console/jobs/tier-review/run", csrf, nil).must(t, 303)
			mk.get(r.Header.Get("Location")).must(t, 200).contains(t, "Job “tier-review” ran.")
			mk.post("/console/jobs/no-such-job/run", csrf, nil).must(t, 404).contains(t, `id="problem"`, "no job is named")
		})

		t.Run("Dashboard", func(t *testing.T) {
			r := mk.get("/console/?from=2026-01-01&to=2026-03-01").must(t, 200).contains(t, `id="chart-points"`, `id="chart-tiers"`,
				`id="chart-segments"`)
			var ch struct {
				Months []string `json:"months"`
				Tiers  struct {
					Labels []string `json:"labels"`
				} `json:"tiers"`
			}
			data := regexp.MustCompile(`(?s)<script type="application/json" id="chart-data">(.*?)</script>`).FindStringSubmatch(r.Body)
			if data == nil {
				t.Fatal("no chart data on the dashboard")
			}
			if err := json.Unmarshal([]byte(data[1]), &ch); err != nil {
				t.Fatalf("chart data: %v: %s", err, data[1])
			}
			if strings.Join(ch.Months, ",") != "2026-01,2026-02,2026-03" || len(ch.Tiers.Labels) < 3 {
				t.Errorf("chart data: %+v", ch)
			}
			mk.get("/console/?from=2026-03-01&to=2026-01-01").must(t, 422).contains(t, "must not be before from")
			mk.get("/console/?from=yesterday").must(t, 422).contains(t, "From")
		})

		t.Run("NotFound", func(t *testing.T) {
			mk.get("/console/nope").must(t, 404).contains(t, "There is no console page at this address.")
		})
	})
}

// TestConsoleDashboardDemo checks the dashboard's figures and chart data
// over the demo program, with the churn-risk distribution the new read
// method computes.
func TestConsoleDashboardDemo(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.demo(30)
		cl := e.client()
		cl.signIn(e.token(loyalty.RoleMarketer, "mk-1"))
		r := cl.get("/console/").must(t, 200).contains(t, `id="chart-churn"`, `id="kpi-members"`)
		data := regexp.MustCompile(`(?s)id="chart-data">(.*?)</script>`).FindStringSubmatch(r.Body)
		var ch struct {
			Issued   []int64 `json:"issued"`
			Redeemed []int64 `json:"redeemed"`
			Segments struct {
				Values []int64 `json:"values"`
			} `json:"segments"`
			Churn struct {
				Labels []string `json:"labels"`
				Values []int64  `json:"values"`
			} `json:"churn"`
		}
		if err := json.Unmarshal([]byte(data[1]), &ch); err != nil {
			t.Fatal(err)
		}
		// Over the default range (the twelve months to today), every figure
		// is the JSON API's.
		today := e.clock.Now().UTC()
		from := time.Date(today.Year(), today.Month()-11, 1, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
		checkDashboardMatchesAPI(t, readDashboard(t, cl, ""), e.analytics(e.token(loyalty.RoleAdmin, "op-1"), from, today.Format(time.DateOnly)))
		sum := func(l []int64) (n int64) {
			for _, v := range l {
				n += v
			}
			return n
		}
		if len(ch.Issued) != 12 || sum(ch.Issued) == 0 || sum(ch.Redeemed) == 0 {
			t.Errorf("points by month: issued %v, redeemed %v", ch.Issued, ch.Redeemed)
		}
		if sum(ch.Segments.Values) == 0 {
			t.Errorf("segment sizes: %v", ch.Segments.Values)
		}
		scored, err := e.runner.ChurnRiskList(context.Background(), "0.0000", loyalty.Page{Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		if len(ch.Churn.Labels) != 10 || sum(ch.Churn.Values) != int64(len(scored.Items)) || len(scored.Items) == 0 {
			t.Errorf("churn histogram %v over %d scored members", ch.Churn.Values, len(scored.Items))
		}
		// Each member is in the bucket of its tenth.
		want := make([]int64, 10)
		for _, s := range scored.Items {
			i := int(s.ChurnRisk[2] - '0')
			if s.ChurnRisk[0] == '1' {
				i = 9
			}
			want[i]++
		}
		for i := range want {
			if want[i] != ch.Churn.Values[i] {
				t.Errorf("bucket %s: %d members, want %d", ch.Churn.Labels[i], ch.Churn.Values[i], want[i])
			}
		}
	})
}

func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
