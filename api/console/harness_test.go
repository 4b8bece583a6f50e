package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/api"
	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/rewards"
)

// env is one engine under test, built as cmd/loyalty builds it: a fresh
// database, the real app with the console mounted, and a clock.
type env struct {
	t      testing.TB
	store  *loyalty.Store
	svc    *loyalty.Service
	rw     *rewards.Service
	runner *jobs.Runner
	clock  *loyaltytest.Clock
	auth   api.AuthConfig
	app    *fiber.App
	logs   *syncBuffer
}

var testSecret = []byte("console-test-secret-console-test-secret!")

// newEnv starts an engine on dialect with its clock at 2026-03-01 12:00 UTC;
// configure changes the app's configuration first.
func newEnv(t testing.TB, dialect string, configure ...func(*api.Config)) *env {
	t.Helper()
	e := &env{t: t, clock: loyaltytest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)),
		auth: api.AuthConfig{Secret: testSecret}, logs: &syncBuffer{}}
	e.store = loyaltytest.MustOpen(t, dialect)
	m := api.NewMetrics()
	e.svc = loyalty.NewService(e.store, loyalty.WithClock(e.clock.Now), loyalty.WithObserver(m))
	e.rw = rewards.NewService(e.svc)
	e.runner = jobs.NewRunner(e.svc, e.rw)
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := api.Config{Auth: e.auth, Logger: log, Rewards: e.rw, Jobs: e.runner}
	for _, f := range configure {
		f(&cfg)
	}
	e.app = api.New(e.svc, cfg, m)
	return e
}

// token signs a token valid for an hour of real time (expiry is checked
// against the wall clock, not the engine's).
func (e *env) token(role loyalty.Role, sub string) string {
	e.t.Helper()
	tok, err := api.SignToken(e.auth, role, sub, "", time.Hour, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// serve runs the app on a loopback port until the test ends and returns
// its base URL.
func (e *env) serve() string {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.app.Listener(ln)
	}()
	e.t.Cleanup(func() {
		_ = e.app.ShutdownWithTimeout(5 * time.Second)
		<-done
	})
	return "http://" + ln.Addr().String()
}

// tiers sets up the Insider / VIB / Rouge ladder.
func (e *env) tiers() {
	e.t.Helper()
	for _, tr := range []struct {
		code, name string
		rank       int
		mult       string
		spend      int64
	}{{"insider", "Insider", 0, "1", 0}, {"vib", "VIB", 1, "1.25", 35000}, {"rouge", "Rouge", 2, "1.5", 100000}} {
		in := loyalty.TierInput{Name: &tr.name, Rank: &tr.rank, QualifyingSpend: &tr.spend}
		m := decimal.RequireFromString(tr.mult)
		in.EarnMultiplier = &m
		if _, _, err := e.svc.PutTier(context.Background(), tr.code, in); err != nil {
			e.t.Fatal(err)
		}
	}
}

var seq atomic.Int64

// enrol creates a member with an email, a phone and an external id.
func (e *env) enrol() loyalty.Member {
	e.t.Helper()
	n := seq.Add(1)
	ext, email, phone := fmt.Sprintf("C-%d", n), fmt.Sprintf("m%d@example.com", n), fmt.Sprintf("+1555000%04d", n)
	first, last := "Ada", fmt.Sprintf("Test%d", n)
	m, _, err := e.svc.EnrolMember(context.Background(), loyalty.MemberInput{ExternalID: &ext, Email: &email, Phone: &phone,
		FirstName: &first, LastName: &last}, loyalty.IdempotencyKey{})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// demo loads a small demo program and runs the segments and churn-risk
// jobs over it, then redeems a little so the dashboard has both sides.
func (e *env) demo(members int) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := loyalty.SeedDemo(ctx, e.store, loyalty.DemoOptions{Members: members, Seed: 7, Now: e.clock.Now()}); err != nil {
		e.t.Fatal(err)
	}
	for _, job := range []string{"segments", "churn-risk"} {
		rec, err := e.runner.Run(ctx, job, e.clock.Now(), "test")
		if err != nil || rec.Status != jobs.Succeeded {
			e.t.Fatalf("job %s: %v %+v", job, err, rec)
		}
	}
	in := rewards.RewardInput{}
	if err := json.Unmarshal([]byte(`{"code":"mini","name":"Travel-size mini","cost_points":50}`), &in); err != nil {
		e.t.Fatal(err)
	}
	rw, _, err := e.rw.Create(ctx, in, loyalty.IdempotencyKey{})
	if err != nil {
		e.t.Fatal(err)
	}
	admin := loyalty.Principal{Subject: "op", Role: loyalty.RoleAdmin}
	l, err := e.svc.FindMembers(ctx, admin, loyalty.MemberQuery{Page: loyalty.Page{Limit: 10}})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range l.Items {
		if b, err := e.svc.Balance(ctx, admin, m.ID); err == nil && b.Available >= 50 {
			if _, _, err := e.rw.Redeem(ctx, admin, m.ID, rewards.RedeemInput{RewardID: rw.ID}, loyalty.IdempotencyKey{}); err != nil {
				e.t.Fatal(err)
			}
		}
	}
}

// postJSON calls the JSON API through the app.
func (e *env) postJSON(path, token string, body any) (int, map[string]any) {
	e.t.Helper()
	b, _ := json.Marshal(body)
	req := httptest.NewRequest("POST", path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := e.app.Test(req, -1)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// client is a browser stand-in for app.Test: it keeps the cookies the
// console sets and sends them back.
type client struct {
	e       *env
	cookies map[string]string
}

func (e *env) client() *client { return &client{e: e, cookies: map[string]string{}} }

type page struct {
	Status int
	Header http.Header
	Body   string
}

func (p page) must(t testing.TB, status int) page {
	t.Helper()
	if p.Status != status {
		t.Fatalf("status %d, want %d: %.2000s", p.Status, status, p.Body)
	}
	return p
}

func (p page) contains(t testing.TB, parts ...string) page {
	t.Helper()
	for _, s := range parts {
		if !strings.Contains(p.Body, s) {
			t.Errorf("page does not contain %q: %.3000s", s, p.Body)
		}
	}
	return p
}

var csrfInput = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

// csrf is the CSRF token of the page's forms.
func (p page) csrf(t testing.TB) string {
	t.Helper()
	m := csrfInput.FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("no CSRF field on the page: %.2000s", p.Body)
	}
	return m[1]
}

// do sends a request; form (may be nil) is sent urlencoded. headers come
// in pairs.
func (cl *client) do(method, path string, form url.Values, headers ...string) page {
	cl.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for name, v := range cl.cookies {
		req.AddCookie(&http.Cookie{Name: name, Value: v})
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := cl.e.app.Test(req, -1)
	if err != nil {
		cl.e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, ck := range res.Cookies() {
		if ck.MaxAge < 0 || (!ck.Expires.IsZero() && ck.Expires.Before(time.Now())) || ck.Value == "" {
			delete(cl.cookies, ck.Name)
		} else {
			cl.cookies[ck.Name] = ck.Value
		}
	}
	return page{Status: res.StatusCode, Header: res.Header, Body: string(b)}
}

func (cl *client) get(path string, headers ...string) page {
	return cl.do("GET", path, nil, headers...)
}

// post sends a form with the CSRF token of the page given.
func (cl *client) post(path, csrf string, form url.Values, headers ...string) page {
	if form == nil {
		form = url.Values{}
	}
	if csrf != "" {
		form.Set("_csrf", csrf)
	}
	return cl.do("POST", path, form, headers...)
}

// signIn signs in with token through the sign-in form and returns the CSRF
// token of the session.
func (cl *client) signIn(token string) string {
	cl.e.t.Helper()
	login := cl.get("/console/login").must(cl.e.t, 200)
	r := cl.post("/console/login", login.csrf(cl.e.t), url.Values{"token": {token}})
	if r.Status != 303 || r.Header.Get("Location") != "/console/" {
		cl.e.t.Fatalf("sign in: %d %s: %.1000s", r.Status, r.Header.Get("Location"), r.Body)
	}
	return cl.get("/console/").must(cl.e.t, 200).csrf(cl.e.t)
}

// syncBuffer is a log sink that tests read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
