package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// env is one engine under test: a fresh database, the real app, a clock.
type env struct {
	t       testing.TB
	dialect string
	store   *loyalty.Store
	svc     *loyalty.Service
	app     *fiber.App
	clock   *loyaltytest.Clock
	auth    AuthConfig
}

var testSecret = []byte("test-secret-for-the-api-suite-0123456789")

// newEnv starts an engine on dialect with its clock at 2026-03-01 12:00 UTC,
// its service built with opts besides the clock and the metrics.
func newEnv(t testing.TB, dialect string, opts ...loyalty.Option) *env {
	t.Helper()
	e := &env{t: t, dialect: dialect, clock: loyaltytest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)),
		auth: AuthConfig{Secret: testSecret}}
	e.store = loyaltytest.MustOpen(t, dialect)
	m := NewMetrics()
	e.svc = loyalty.NewService(e.store, append([]loyalty.Option{loyalty.WithClock(e.clock.Now), loyalty.WithObserver(m)}, opts...)...)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	// Balance streams end at once (after their first event), so that a
	// stream requested through app.Test, which reads whole answers, ends.
	e.app = New(e.svc, Config{Auth: e.auth, Logger: log, StreamMaxAge: time.Millisecond}, m)
	return e
}

// token signs a token valid for an hour of real time (JWT expiry is
// checked against the wall clock, not the engine's).
func (e *env) token(role loyalty.Role, sub string) string {
	return e.tokenStore(role, sub, "")
}

func (e *env) tokenStore(role loyalty.Role, sub, store string) string {
	e.t.Helper()
	tok, err := SignToken(e.auth, role, sub, store, time.Hour, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) admin() string    { return e.token(loyalty.RoleAdmin, "op-1") }
func (e *env) pos() string      { return e.token(loyalty.RolePOS, "till-1") }
func (e *env) marketer() string { return e.token(loyalty.RoleMarketer, "mk-1") }

type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a generic map.
func (r resp) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// Decode decodes the body into v.
func (r resp) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode: %v: %s", err, r.Body)
	}
}

// do sends a request through the real app. body may be nil, a string or
// []byte (sent as is), or any value (sent as JSON). headers come in pairs.
func (e *env) do(method, path, token string, body any, headers ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.app.Test(req, -1)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// must fails the test unless the response has the status.
func (r resp) must(t testing.TB, status int) resp {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	return r
}

// beautyLadder configures the Insider / VIB / Rouge program.
func (e *env) beautyLadder() {
	e.t.Helper()
	tok := e.marketer()
	for _, tr := range []map[string]any{
		{"code": "insider", "name": "Insider", "rank": 0, "earn_multiplier": "1", "qualifying_spend": 0},
		{"code": "vib", "name": "VIB", "rank": 1, "earn_multiplier": "1.25", "qualifying_spend": 35000, "benefits": []string{"free_shipping"}},
		{"code": "rouge", "name": "Rouge", "rank": 2, "earn_multiplier": "1.5", "qualifying_spend": 100000},
	} {
		r := e.do("PUT", "/v1/tiers/"+tr["code"].(string), tok, tr)
		if r.Status != 201 && r.Status != 200 {
			e.t.Fatalf("put tier: %d %s", r.Status, r.Body)
		}
	}
}

var seq atomic.Int64

// enrol creates a member and returns its id.
func (e *env) enrol() string {
	e.t.Helper()
	n := seq.Add(1)
	r := e.do("POST", "/v1/members", e.pos(), map[string]any{"external_id": fmt.Sprintf("C-%d", n),
		"email": fmt.Sprintf("m%d@example.com", n)}).must(e.t, 201)
	return r.JSON(e.t)["id"].(string)
}

// buy posts a purchase of total for member and returns the response body.
func (e *env) buy(member string, total int64, extID string) map[string]any {
	e.t.Helper()
	return e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": member, "external_id": extID,
		"store_id": "store-1", "currency": "USD", "total": total}).must(e.t, 201).JSON(e.t)
}

// balance reads a member's balance.
func (e *env) balance(member string) loyalty.Balance {
	e.t.Helper()
	var b loyalty.Balance
	e.do("GET", "/v1/members/"+member+"/balance", e.admin(), nil).must(e.t, 200).Decode(e.t, &b)
	return b
}

// checkLedger asserts the ledger invariants for every member: the stored
// entries sum to the cached points, to available + pending, and to the
// open lots less debt; the ledger as GET lists it sums to available +
// pending.
func (e *env) checkLedger() {
	e.t.Helper()
	type row struct {
		MemberID string
		Points   int64
		Debt     int64
		Ledger   int64
		Lots     int64
	}
	var rows []row
	err := e.store.DB().Raw(`SELECT b.member_id, b.points, b.debt,
		(SELECT COALESCE(SUM(points), 0) FROM ledger_entries l WHERE l.member_id = b.member_id) AS ledger,
		(SELECT COALESCE(SUM(remaining), 0) FROM lots o WHERE o.member_id = b.member_id) AS lots
		FROM member_balances b`).Scan(&rows).Error
	if err != nil {
		e.t.Fatal(err)
	}
	// Each balance row's copy of its member's tier (migration 00042) is
	// the member's.
	var copies []struct{ MemberID, Member, Balance string }
	if err := e.store.DB().Raw(`SELECT m.id AS member_id, COALESCE(m.tier_code, '-') AS member, COALESCE(b.tier_code, '-') AS balance
		FROM members m JOIN member_balances b ON b.member_id = m.id
		WHERE COALESCE(m.tier_code, '-') <> COALESCE(b.tier_code, '-')`).Scan(&copies).Error; err != nil {
		e.t.Fatal(err)
	}
	for _, c := range copies {
		e.t.Errorf("member %s: tier %s, its balance row's copy %s", c.MemberID, c.Member, c.Balance)
	}
	for _, r := range rows {
		if r.Points != r.Ledger || r.Lots-r.Debt != r.Ledger {
			e.t.Errorf("member %s: cached %d, ledger %d, lots %d - debt %d", r.MemberID, r.Points, r.Ledger, r.Lots, r.Debt)
		}
		b := e.balance(r.MemberID)
		if b.Available+b.Pending != r.Ledger {
			e.t.Errorf("member %s: available %d + pending %d != ledger %d", r.MemberID, b.Available, b.Pending, r.Ledger)
		}
		// The ledger as the API lists it sums to the balance too (§7).
		var listed int64
		pages := e.ledgerPages(r.MemberID, 500)
		for items, ok := pages(); ok; items, ok = pages() {
			for _, en := range items {
				listed += en.Points
			}
		}
		if listed != b.Available+b.Pending {
			e.t.Errorf("member %s: GET ledger sums to %d, available %d + pending %d", r.MemberID, listed, b.Available, b.Pending)
		}
	}
}
