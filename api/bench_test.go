package api

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/shopspring/decimal"
	"github.com/valyala/fasthttp"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// These benchmarks measure the HTTP edge's own cost per request (ns/op,
// allocs/op), for comparison with benchstat; they assert nothing about
// time. Run them with
//
//	go test ./api -run '^$' -bench . -benchmem -count 10

// serve sends one request through h on a reused RequestCtx, as fasthttp's
// server would, and fails unless the answer has status want.
type serve struct {
	h    fasthttp.RequestHandler
	ctx  fasthttp.RequestCtx
	want int
}

func newServe(app *fiber.App, method, path, token string, body []byte, want int) *serve {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	req.Header.Set(fiber.HeaderAuthorization, "Bearer "+token)
	if body != nil {
		req.Header.SetContentType(fiber.MIMEApplicationJSON)
		req.SetBody(body)
	}
	s := &serve{h: app.Handler(), want: want}
	s.ctx.Init(&req, nil, nil)
	return s
}

// loop runs f b.N times and reports, besides ns/op, the process's CPU
// time per operation (cpu-ns/op), the steadier figure on shared cores.
func loop(b *testing.B, f func()) {
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		f()
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

func (s *serve) do(b *testing.B) {
	s.ctx.Response.Reset()
	s.h(&s.ctx)
	if st := s.ctx.Response.StatusCode(); st != s.want {
		b.Fatalf("status %d, want %d: %s", st, s.want, s.ctx.Response.Body())
	}
}

// benchBalance is a balance as a member with a tier, a next tier and
// points expiring soon reads it.
var benchBalance = loyalty.Balance{MemberID: "0195f2d4-6c1e-7b43-9a8e-2f5d7c9b1a30", Available: 12840, Pending: 350,
	LifetimeEarned: 20480, LifetimeRedeemed: 7640,
	ExpiringSoon:    []loyalty.Expiring{{Points: 1200, ExpiresAt: time.Date(2026, 3, 20, 0, 0, 0, 0, time.UTC)}},
	Tier:            &loyalty.TierRef{Code: "vib", Name: "VIB", EarnMultiplier: decimal.RequireFromString("1.25")},
	QualifyingSpend: 61250, NextTier: &loyalty.NextTier{Code: "rouge", Name: "Rouge", SpendNeeded: 38750},
	AsOf: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Version: 42}

// BenchmarkEdgeBalanceRead is the edge alone on a balance read: the app's
// middleware (length check, recover, request id, logging and metrics),
// token verification, the role check and the balance's encoding, with the
// service's answer fixed, so no database time is counted.
func BenchmarkEdgeBalanceRead(b *testing.B) {
	cfg := Config{Auth: AuthConfig{Secret: testSecret}, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	s := &server{verifier: newVerifier(cfg.Auth, tokenCacheSize), log: cfg.Logger, metrics: NewMetrics()}
	app := s.newApp(cfg)
	s.v1(app, cfg).Get("/members/:id/balance", allow(loyalty.RoleAdmin, loyalty.RoleMarketer, loyalty.RolePOS, loyalty.RoleMember),
		func(c *fiber.Ctx) error { return sendBalance(c, benchBalance) })
	tok, err := SignToken(cfg.Auth, loyalty.RoleMember, benchBalance.MemberID, "", time.Hour, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	r := newServe(app, "GET", "/v1/members/"+benchBalance.MemberID+"/balance", tok, nil, 200)
	loop(b, func() { r.do(b) })
}

// BenchmarkBalanceRead is a member's balance read through the whole app
// and a real store.
func BenchmarkBalanceRead(b *testing.B) {
	for _, d := range loyaltytest.Dialects(b) {
		b.Run(d, func(b *testing.B) {
			e := newEnv(b, d)
			e.beautyLadder()
			m := e.enrol()
			e.buy(m, 5000, "B-1")
			r := newServe(e.app, "GET", "/v1/members/"+m+"/balance", e.token(loyalty.RoleMember, m), nil, 200)
			loop(b, func() { r.do(b) })
		})
	}
}

// BenchmarkPurchase posts purchases through the whole app and a real
// store, spread over 100 members. Each member's history grows with b.N,
// so compare runs of one -benchtime count (such as 2000x).
func BenchmarkPurchase(b *testing.B) {
	for _, d := range loyaltytest.Dialects(b) {
		b.Run(d, func(b *testing.B) {
			e := newEnv(b, d)
			e.beautyLadder()
			members := make([]string, 100)
			for i := range members {
				members[i] = e.enrol()
			}
			r := newServe(e.app, "POST", "/v1/purchases", e.tokenStore(loyalty.RolePOS, "till-1", "store-1"), nil, 201)
			i := 0
			loop(b, func() {
				r.ctx.Request.SetBody(fmt.Appendf(nil, `{"member_id":%q,"external_id":"BP-%d","store_id":"store-1","currency":"USD","total":2599,"items":[{"sku":"lip-01","category":"makeup","quantity":1,"unit_price":2599,"amount":2599}]}`,
					members[i%len(members)], i))
				r.do(b)
				i++
			})
		})
	}
}

// BenchmarkDecodePurchase is decode alone on a purchase body: the strict
// decoder's pass and the name check's.
func BenchmarkDecodePurchase(b *testing.B) {
	app := fiber.New()
	var ctx fasthttp.RequestCtx
	ctx.Request.SetBody([]byte(`{"member_id":"0195f2d4-6c1e-7b43-9a8e-2f5d7c9b1a30","external_id":"BP-1","store_id":"store-1","currency":"USD","total":2599,"items":[{"sku":"lip-01","category":"makeup","quantity":1,"unit_price":2599,"amount":2599}]}`))
	c := app.AcquireCtx(&ctx)
	defer app.ReleaseCtx(c)
	loop(b, func() {
		var in loyalty.PurchaseInput
		if err := decode(c, &in); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkVerify is token verification alone, as the app does it: in
// full (Uncached, and a cache miss), and a token verified before (Cached).
func BenchmarkVerify(b *testing.B) {
	cfg := AuthConfig{Secret: testSecret}
	tok, err := SignToken(cfg, loyalty.RolePOS, "till-1", "store-1", time.Hour, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		size int
	}{{"Uncached", 0}, {"Cached", tokenCacheSize}} {
		b.Run(c.name, func(b *testing.B) {
			v := newVerifier(cfg, c.size)
			loop(b, func() {
				if _, err := v.verify(tok); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
