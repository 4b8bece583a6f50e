package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// The tests here attack the HTTP edge: what arrives before a handler runs
// (sizes, slow or stalled clients, raw bytes on the request line) through
// a real TCP listener, and hostile content that gets through to handlers.
// Each attack is followed by a normal request, which must still succeed.
// Deadlines on the client side are generous and only keep a broken server
// from hanging the suite; nothing asserts how fast anything happens.

// generous bounds every client-side wait of these tests.
const generous = 30 * time.Second

// newEnvConfig is newEnv with the app built from a Config that configure
// adjusts.
func newEnvConfig(t testing.TB, dialect string, configure func(*Config)) *env {
	t.Helper()
	e := newEnv(t, dialect)
	cfg := Config{Auth: e.auth, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	configure(&cfg)
	e.app = New(e.svc, cfg, NewMetrics())
	return e
}

// rawExchange writes raw to a new connection to addr and reads one
// response, or returns the error that ended the connection first.
func rawExchange(t testing.TB, addr, raw string) (resp, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, generous)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(generous))
	if _, err := io.WriteString(conn, raw); err != nil {
		return resp{}, err
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}, nil
}

// assertAlive checks that the app still answers a normal request: through
// the listener at addr when there is one (a fresh connection), and
// through the app itself.
func (e *env) assertAlive(t testing.TB, addr string) {
	t.Helper()
	if addr != "" {
		r, err := rawExchange(t, addr, "GET /v1/tiers HTTP/1.1\r\nHost: loyalty.test\r\nAuthorization: Bearer "+e.pos()+
			"\r\nConnection: close\r\n\r\n")
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("after the attack, a normal request over a new connection: %d, %v: %s", r.Status, err, r.Body)
		}
	}
	e.do("GET", "/v1/tiers", e.pos(), nil).must(t, http.StatusOK)
}

// closedByServer reports whether err ended a connection because the server
// closed it (EOF, reset, broken pipe), rather than because the client's
// own deadline passed.
func closedByServer(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestEdgeOversizedHeaders(t *testing.T) { loyaltytest.Each(t, testEdgeOversizedHeaders) }

func testEdgeOversizedHeaders(t *testing.T, dialect string) {
	e := newEnvConfig(t, dialect, func(c *Config) { c.MaxHeaderBytes = 4096 })
	addr := listen(t, e)
	tok := e.pos()
	for _, c := range []struct {
		name, raw string
	}{
		{"OneHugeHeader", "GET /v1/tiers HTTP/1.1\r\nHost: loyalty.test\r\nAuthorization: Bearer " + tok + "\r\nX-Big: " +
			strings.Repeat("a", 64<<10) + "\r\n\r\n"},
		{"ManyHeaders", "GET /v1/tiers HTTP/1.1\r\nHost: loyalty.test\r\nAuthorization: Bearer " + tok + "\r\n" +
			strings.Repeat("X-Many: b\r\n", 2000) + "\r\n"},
		{"HugeBearerToken", "GET /v1/tiers HTTP/1.1\r\nHost: loyalty.test\r\nAuthorization: Bearer " + strings.Repeat("A", 1<<20) + "\r\n\r\n"},
		{"HugeRequestLine", "GET /v1/members/" + strings.Repeat("9", 100<<10) + " HTTP/1.1\r\nHost: loyalty.test\r\n\r\n"},
		{"HugeCookie", "GET /console/ HTTP/1.1\r\nHost: loyalty.test\r\nCookie: loyalty_console=" + strings.Repeat("c", 32<<10) + "\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := rawExchange(t, addr, c.raw)
			// A server may also close the connection while the client is
			// still sending; then there is no answer to check, only that
			// the server survived.
			if err == nil {
				assertProblem(t, r, http.StatusRequestHeaderFieldsTooLarge, "")
			} else if !closedByServer(err) {
				t.Fatalf("the server neither answered nor closed the connection: %v", err)
			}
			e.assertAlive(t, addr)
		})
	}
	t.Run("LimitIsConfigurable", func(t *testing.T) {
		// 6 KiB of headers: over the 4 KiB limit, under a 16 KiB one.
		raw := "GET /v1/tiers HTTP/1.1\r\nHost: loyalty.test\r\nAuthorization: Bearer " + tok + "\r\nX-Big: " +
			strings.Repeat("a", 6<<10) + "\r\nConnection: close\r\n\r\n"
		if r, err := rawExchange(t, addr, raw); err != nil || r.Status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("6 KiB of headers at a 4 KiB limit: %d, %v", r.Status, err)
		}
		big := newEnvConfig(t, dialect, func(c *Config) { c.MaxHeaderBytes = 16 << 10 })
		bigAddr := listen(t, big)
		raw = strings.Replace(raw, tok, big.pos(), 1)
		if r, err := rawExchange(t, bigAddr, raw); err != nil || r.Status != http.StatusOK {
			t.Fatalf("6 KiB of headers at a 16 KiB limit: %d, %v: %s", r.Status, err, r.Body)
		}
	})
}

// TestEdgeSlowClients holds connections open the ways a slow-loris client
// does; the server's read timeout (write timeout for the client that never
// reads) must end each connection.
func TestEdgeSlowClients(t *testing.T) { loyaltytest.Each(t, testEdgeSlowClients) }

func testEdgeSlowClients(t *testing.T, dialect string) {
	e := newEnvConfig(t, dialect, func(c *Config) {
		c.ReadTimeout = 300 * time.Millisecond
		c.WriteTimeout = 300 * time.Millisecond
		c.IdleTimeout = time.Minute // longer than any wait here: only the read and write timeouts may close
	})
	addr := listen(t, e)
	tok := e.pos()

	// trickle sends head at once, then one byte of tail at a time, forever,
	// until the connection fails; it returns how the connection ended.
	trickle := func(t *testing.T, head, tail string) error {
		conn, err := net.DialTimeout("tcp", addr, generous)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(generous))
		if _, err := io.WriteString(conn, head); err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() {
			// The server may answer 408 before it closes; read to the end.
			_, err := io.Copy(io.Discard, conn)
			if err == nil {
				err = io.EOF
			}
			done <- err
		}()
		for i := 0; ; i++ {
			select {
			case err := <-done:
				return err
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := conn.Write([]byte{tail[i%len(tail)]}); err != nil {
				return err
			}
		}
	}

	t.Run("HeadersByteByByte", func(t *testing.T) {
		err := trickle(t, "GET /v1/tiers HTTP/1.1\r\nHost: loyalty.test\r\n", "X-Slow: abcdefghij\r\n")
		if !closedByServer(err) {
			t.Fatalf("the connection was not closed by the server: %v", err)
		}
		e.assertAlive(t, addr)
	})
	t.Run("BodyByteByByte", func(t *testing.T) {
		err := trickle(t, "POST /v1/members HTTP/1.1\r\nHost: loyalty.test\r\nAuthorization: Bearer "+tok+
			"\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n", `{"first_name":"aaaaaaaa`)
		if !closedByServer(err) {
			t.Fatalf("the connection was not closed by the server: %v", err)
		}
		e.assertAlive(t, addr)
	})
	t.Run("NeverReadsTheResponse", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", addr, generous)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		_ = conn.SetDeadline(time.Now().Add(generous))
		// Ask again and again for the 200 KiB OpenAPI document and read
		// none of it. Once the buffers between the two ends are full the
		// server cannot write; when its write timeout closes the
		// connection, the next write here fails. A server without one
		// would leave this write blocked until the client's deadline.
		req := []byte("GET /openapi.json HTTP/1.1\r\nHost: loyalty.test\r\n\r\n")
		for {
			if _, err = conn.Write(req); err != nil {
				break
			}
		}
		if !closedByServer(err) {
			t.Fatalf("the server kept the connection of a client that never reads: %v", err)
		}
		e.assertAlive(t, addr)
	})
	t.Run("IdleKeptAliveIsNotCutByReadTimeout", func(t *testing.T) {
		// The control: a client that sends whole requests promptly keeps
		// its connection across requests, so the timeouts above are not
		// simply closing every connection.
		conn, err := net.DialTimeout("tcp", addr, generous)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(generous))
		br := bufio.NewReader(conn)
		for i := 0; i < 3; i++ {
			if _, err := io.WriteString(conn, "GET /v1/tiers HTTP/1.1\r\nHost: loyalty.test\r\nAuthorization: Bearer "+tok+"\r\n\r\n"); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("request %d: status %d", i, res.StatusCode)
			}
		}
	})
}

// TestEdgeRawBytesOnTheRequestLine sends bytes no client library would put
// on a request line: they reach the routes as ids and lookups, and must
// be refused (4xx) or find nothing, on PostgreSQL too, which cannot hold
// invalid UTF-8.
func TestEdgeRawBytesOnTheRequestLine(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		addr := listen(t, e)
		admin := e.admin()
		for _, target := range []string{
			"/v1/members/\xff\xfe",
			"/v1/members/\xc3\x28/balance",
			"/v1/members/" + m + "/ledger?cursor=\xff",
			"/v1/members?email=\xff%40example.com",
			"/v1/members?external_id=%ff%fe",
			"/v1/members?phone=%2B1%c3%28",
			"/v1/purchases/\xed\xa0\x80",
			"/v1/rewards/%ff",
			"/v1/rewards?member_id=%ff",
			"/v1/coupons/\xff",
			"/v1/segments/\xff/members",
			"/v1/analytics/summary?from=%ff&to=2026-01-01",
		} {
			t.Run(fmt.Sprintf("%q", target), func(t *testing.T) {
				r, err := rawExchange(t, addr, "GET "+target+" HTTP/1.1\r\nHost: loyalty.test\r\nAuthorization: Bearer "+admin+
					"\r\nConnection: close\r\n\r\n")
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				// A look-up by a value no member can hold may also find
				// nothing, as for a NUL (TestHostileNulBytes).
				lookup := strings.HasPrefix(target, "/v1/members?")
				switch {
				case lookup && r.Status == http.StatusOK:
					if items := r.JSON(t)["items"].([]any); len(items) != 0 {
						t.Fatalf("a look-up by bytes no member holds found %v", items)
					}
				case r.Status < 400 || r.Status > 499:
					t.Fatalf("status %d, want a 4xx: %s", r.Status, r.Body)
				default:
					assertProblem(t, r, r.Status, "")
				}
				e.assertAlive(t, addr)
			})
		}
	})
}

// TestEdgeInvalidUTF8InBodies sends JSON strings that are not UTF-8: the
// engine stores the replacement character (as encoding/json decodes them)
// or refuses the field, and whatever it stores reads back as valid UTF-8.
func TestEdgeInvalidUTF8InBodies(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		for _, c := range []struct {
			name, method, path, body string
		}{
			// Answers that echo the field back carry U+FFFD when accepted.
			{"EnrolNames", "POST", "/v1/members", "{\"first_name\":\"\xff\xfe\",\"last_name\":\"a\xc3\x28b\"}"},
			{"EnrolLoneSurrogate", "POST", "/v1/members", `{"first_name":"\ud800x"}`},
			{"EnrolExternalID", "POST", "/v1/members", "{\"external_id\":\"C-\xff\"}"},
			{"EnrolEmail", "POST", "/v1/members", "{\"email\":\"\xff@example.com\"}"},
			{"PatchName", "PATCH", "/v1/members/" + m, "{\"last_name\":\"\xed\xa0\x80\"}"},
			{"PurchaseSKU", "POST", "/v1/purchases", "{\"member_id\":\"" + m + "\",\"currency\":\"USD\",\"total\":1000,\"external_id\":\"U8-1\"," +
				"\"items\":[{\"sku\":\"\xff\",\"category\":\"\xfe\",\"amount\":1000}]}"},
			{"PurchaseMemberID", "POST", "/v1/purchases", "{\"member_id\":\"\xff\",\"currency\":\"USD\",\"total\":1000}"},
			{"AdjustmentReason", "POST", "/v1/members/" + m + "/adjustments", "{\"points\":5,\"reason\":\"\xff\"}"},
			{"TierName", "PUT", "/v1/tiers/utf", "{\"name\":\"\xff\",\"rank\":5,\"earn_multiplier\":\"2\",\"qualifying_spend\":9000000}"},
			{"RewardName", "POST", "/v1/rewards", "{\"code\":\"utf\",\"name\":\"\xff\",\"description\":\"\xc0\xaf\",\"cost_points\":1}"},
			{"OfferName", "POST", "/v1/offers", "{\"code\":\"utf\",\"name\":\"\xff\",\"kind\":\"bonus\",\"bonus_points\":1,\"conditions\":{\"categories\":[\"\xff\"]}}"},
			{"ProgramName", "PUT", "/v1/program", "{\"name\":\"\xff\"}"},
			{"RedeemRewardID", "POST", "/v1/members/" + m + "/redemptions", "{\"reward_id\":\"\xff\"}"},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := e.do(c.method, c.path, e.admin(), c.body)
				if r.Status >= 400 {
					assertProblem(t, r, r.Status, "")
					if r.Status >= 500 {
						return
					}
				}
				if !utf8.Valid(r.Body) {
					t.Errorf("the answer is not valid UTF-8: %q", r.Body)
				}
				echoes := c.method != "POST" || c.path == "/v1/members" || c.path == "/v1/rewards" || c.path == "/v1/offers"
				if r.Status < 300 && echoes && strings.Contains(c.body, "\xff") && !strings.Contains(string(r.Body), "\ufffd") &&
					!strings.Contains(string(r.Body), `\ufffd`) {
					t.Errorf("accepted, but the answer does not carry the replacement character: %s", r.Body)
				}
				e.assertAlive(t, "")
			})
		}
		// Whatever was stored reads back as valid UTF-8.
		for _, path := range []string{"/v1/members?limit=500", "/v1/members/" + m, "/v1/members/" + m + "/ledger", "/v1/tiers",
			"/v1/rewards", "/v1/offers", "/v1/program"} {
			r := e.do("GET", path, e.admin(), nil).must(t, http.StatusOK)
			if !utf8.Valid(r.Body) {
				t.Errorf("GET %s is not valid UTF-8: %q", path, r.Body)
			}
		}
		e.checkLedger()
	})
}

// TestEdgeDeepAndHugeBodies sends bodies built to exhaust the decoder:
// nesting past encoding/json's depth limit and baskets far over the
// per-purchase cap. Each is a 4xx with a clear problem.
func TestEdgeDeepAndHugeBodies(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		addr := listen(t, e)
		deepArray := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
		deepObject := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
		buy := `"member_id":"` + m + `","currency":"USD","total":1000,"external_id":"DEEP-1"`
		for _, c := range []struct {
			name, path, body string
			status           int
			field            string
		}{
			{"Arrays10k", "/v1/purchases", `{` + buy + `,"items":` + deepArray(10_000) + `}`, http.StatusBadRequest, ""},
			{"Objects10k", "/v1/purchases", `{` + buy + `,"pad":` + deepObject(10_000) + `}`, http.StatusBadRequest, ""},
			{"Arrays100k", "/v1/members", `{"first_name":` + deepArray(100_000) + `}`, http.StatusBadRequest, ""},
			{"ObjectsInMember", "/v1/members", `{"email":` + deepObject(10_000) + `}`, http.StatusBadRequest, ""},
			{"ObjectsInProgram", "/v1/program", `{"segments":` + deepObject(10_000) + `}`, http.StatusBadRequest, ""},
			// Deep, but within the limit, in a field the engine ignores:
			// the rest of the body decides.
			{"Arrays5kIgnored", "/v1/purchases/quote", `{` + buy + `,"pad":` + deepArray(5_000) + `}`, http.StatusOK, ""},
			// 100,000 empty lines fit in 1 MiB and decode; the cap of
			// loyalty.MaxItems refuses them, naming the field.
			{"Items100k", "/v1/purchases", `{` + buy + `,"items":[` + strings.TrimSuffix(strings.Repeat(`{},`, 100_000), ",") + `]}`,
				http.StatusUnprocessableEntity, "items"},
			{"Items1001", "/v1/purchases/quote", `{` + buy + `,"items":[` + strings.TrimSuffix(strings.Repeat(`{"amount":1},`, 1001), ",") + `]}`,
				http.StatusUnprocessableEntity, "items"},
		} {
			t.Run(c.name, func(t *testing.T) {
				method := "POST"
				if strings.HasPrefix(c.path, "/v1/program") {
					method = "PUT"
				}
				r := e.do(method, c.path, e.admin(), c.body)
				if c.status == http.StatusOK {
					r.must(t, http.StatusOK)
				} else {
					assertProblem(t, r, c.status, c.field)
				}
				if c.field == "items" && !strings.Contains(string(r.Body), strconv.Itoa(loyalty.MaxItems)) {
					t.Errorf("the problem does not state the cap of %d lines: %s", loyalty.MaxItems, r.Body)
				}
				e.assertAlive(t, addr)
			})
		}
		t.Run("Items100kOverTheBodyLimit", func(t *testing.T) {
			// 100,000 real lines are over 1 MiB: refused from the
			// announced length, before anything is decoded.
			body := []byte(`{` + buy + `,"items":[` + strings.TrimSuffix(strings.Repeat(`{"sku":"SKU-1","amount":1},`, 100_000), ",") + `]}`)
			assertProblem(t, overSocket(t, addr, "POST", "/v1/purchases", e.admin(), body), http.StatusRequestEntityTooLarge, "")
			e.assertAlive(t, addr)
		})
		if b := e.balance(m); b.Available != 0 || b.Pending != 0 {
			t.Errorf("refused bodies moved the balance: %+v", b)
		}
	})
}

// sqlInjections are strings that would change a statement built by string
// concatenation. The ones without spaces fit the fields that allow none.
var sqlInjections = []string{
	`'; DROP TABLE members; --`,
	`' OR '1'='1`,
	`1' OR 1=1 --`,
	`'); DELETE FROM ledger_entries; --`,
	`" OR ""="`,
	`\'; UPDATE member_balances SET points = 999999; --`,
	`%' OR 1=1 --`,
	`$1 ? :id @p1`,
	`'OR'1'='1'--`,
	`';DROP/**/TABLE/**/purchases;--`,
}

// TestEdgeSQLInjection puts injection strings in every text field and
// query parameter: each is stored verbatim or refused as invalid, lookups
// find only what matches literally, and every table keeps its rows.
func TestEdgeSQLInjection(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		e.buy(m, 10000, "INJ-BASE")
		admin := e.admin()
		count := func(table string) int64 {
			t.Helper()
			var n int64
			if err := e.store.DB().Raw("SELECT COUNT(*) FROM " + table).Scan(&n).Error; err != nil {
				t.Fatalf("count %s: %v", table, err)
			}
			return n
		}
		tables := []string{"members", "purchases", "ledger_entries", "member_balances", "lots", "rewards", "offers", "tiers"}
		before := map[string]int64{}
		for _, tb := range tables {
			before[tb] = count(tb)
		}
		// stored checks that a write answered with ok either stored s at
		// key (read back with GET readPath) or was refused with a 422.
		stored := func(t *testing.T, r resp, ok int, readPath, key, s string) {
			t.Helper()
			if r.Status == http.StatusUnprocessableEntity {
				assertProblem(t, r, http.StatusUnprocessableEntity, "")
				return
			}
			r.must(t, ok)
			if readPath == "" {
				readPath = "self"
			}
			got := r.JSON(t)
			if readPath != "self" {
				got = e.do("GET", readPath, admin, nil).must(t, http.StatusOK).JSON(t)
			}
			if got[key] != s {
				t.Errorf("%s: stored %q, want %q verbatim", key, got[key], s)
			}
		}
		added := map[string]int64{}
		for i, s := range sqlInjections {
			t.Run(fmt.Sprintf("Value%d", i), func(t *testing.T) {
				r := e.do("POST", "/v1/members", e.pos(), map[string]any{"first_name": s, "last_name": s, "external_id": strings.ReplaceAll(s, " ", "")})
				stored(t, r, http.StatusCreated, "", "first_name", s)
				if r.Status == http.StatusCreated {
					added["members"]++
					id := r.JSON(t)["id"].(string)
					got := e.do("GET", "/v1/members/"+id, admin, nil).must(t, 200).JSON(t)
					if got["last_name"] != s || got["external_id"] != strings.ReplaceAll(s, " ", "") {
						t.Errorf("read back %v", got)
					}
					// The member is found by its literal external id, and
					// the string finds no one else.
					var l struct {
						Items []struct {
							ID string `json:"id"`
						} `json:"items"`
					}
					e.do("GET", "/v1/members?external_id="+url.QueryEscape(strings.ReplaceAll(s, " ", "")), admin, nil).must(t, 200).Decode(t, &l)
					if len(l.Items) != 1 || l.Items[0].ID != id {
						t.Errorf("lookup by the literal external id found %v", l.Items)
					}
				}
				r = e.do("PATCH", "/v1/members/"+m, admin, map[string]any{"first_name": s})
				stored(t, r, http.StatusOK, "/v1/members/"+m, "first_name", s)
				r = e.do("POST", "/v1/members", e.pos(), map[string]any{"email": "x" + strconv.Itoa(i) + s + "@example.com"})
				if r.Status == http.StatusCreated {
					added["members"]++
				}
				assertNot5xx(t, r)

				ext := fmt.Sprintf("INJ-%d-", i) + strings.ReplaceAll(s, " ", "")
				if len(ext) > 255 {
					ext = ext[:255]
				}
				r = e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": m, "external_id": ext, "store_id": strings.ReplaceAll(s, " ", ""),
					"currency": "USD", "total": 1000, "items": []map[string]any{{"sku": s, "category": s, "amount": 1000}}})
				if r.Status == http.StatusCreated {
					added["purchases"]++
					added["ledger_entries"]++
					added["lots"]++
					p := e.do("GET", "/v1/purchases/"+r.JSON(t)["id"].(string), admin, nil).must(t, 200).JSON(t)
					items := p["items"].([]any)
					if p["external_id"] != ext || items[0].(map[string]any)["sku"] != s || items[0].(map[string]any)["category"] != s {
						t.Errorf("purchase read back as %v", p)
					}
				} else {
					assertProblem(t, r, http.StatusUnprocessableEntity, "")
				}
				r = e.do("POST", "/v1/members/"+m+"/adjustments", admin, map[string]any{"points": 1, "reason": s})
				if r.Status == http.StatusCreated {
					added["ledger_entries"]++
					added["lots"]++
				}
				stored(t, r, http.StatusCreated, "", "description", s)
				r = e.do("PUT", fmt.Sprintf("/v1/tiers/inj-%d", i), admin, map[string]any{"name": s, "rank": 10 + i, "earn_multiplier": "2",
					"qualifying_spend": 10_000_000 + i, "benefits": []string{s}})
				if r.Status == http.StatusCreated {
					added["tiers"]++
				}
				stored(t, r, http.StatusCreated, "", "name", s)
				r = e.do("POST", "/v1/rewards", admin, map[string]any{"code": fmt.Sprintf("inj-%d", i), "name": s, "description": s, "cost_points": 1})
				if r.Status == http.StatusCreated {
					added["rewards"]++
				}
				stored(t, r, http.StatusCreated, "", "description", s)
				r = e.do("POST", "/v1/offers", admin, map[string]any{"code": fmt.Sprintf("inj-%d", i), "name": s, "kind": "bonus", "bonus_points": 1,
					"conditions": map[string]any{"categories": []string{s}, "skus": []string{s}}})
				if r.Status == http.StatusCreated {
					added["offers"]++
				}
				stored(t, r, http.StatusCreated, "", "name", s)
				r = e.do("PUT", "/v1/program", admin, map[string]any{"name": s})
				stored(t, r, http.StatusOK, "/v1/program", "name", s)

				// Query parameters and path segments.
				q := url.QueryEscape(s)
				for _, path := range []string{
					"/v1/members?email=" + q, "/v1/members?phone=" + q, "/v1/members?external_id=" + q, "/v1/members?cursor=" + q,
					"/v1/members?limit=" + q, "/v1/rewards?member_id=" + q, "/v1/members/" + m + "/ledger?cursor=" + q,
					"/v1/analytics/redemption-rate?from=" + q + "&to=2026-03-01", "/v1/analytics/summary?from=2026-01-01&to=" + q,
					"/v1/analytics/churn-risk?min_risk=" + q, "/v1/analytics/redemption-rate?from=2026-01-01&to=2026-03-01&interval=" + q,
					"/v1/members/" + url.PathEscape(s), "/v1/members/" + url.PathEscape(s) + "/balance", "/v1/purchases/" + url.PathEscape(s),
					"/v1/rewards/" + url.PathEscape(s), "/v1/coupons/" + url.PathEscape(s), "/v1/segments/" + url.PathEscape(s) + "/members",
					"/v1/offers/" + url.PathEscape(s),
				} {
					r := e.do("GET", path, admin, nil)
					assertNot5xx(t, r)
					if r.Status == http.StatusOK && strings.Contains(path, "/v1/members?") && !strings.Contains(path, "limit=") {
						var l struct {
							Items []map[string]any `json:"items"`
						}
						r.Decode(t, &l)
						for _, it := range l.Items {
							if it["external_id"] != strings.ReplaceAll(s, " ", "") {
								t.Errorf("GET %s found %v, which does not match literally", path, it)
							}
						}
					}
				}
			})
		}
		t.Run("TablesIntact", func(t *testing.T) {
			for _, tb := range tables {
				want := before[tb] + added[tb]
				if tb == "member_balances" {
					want = before[tb] + added["members"]
				}
				if got := count(tb); got != want {
					t.Errorf("%s has %d rows, want %d", tb, got, want)
				}
			}
			e.checkLedger()
		})
	})
}

// assertNot5xx checks that r is a success or a 4xx problem.
func assertNot5xx(t testing.TB, r resp) {
	t.Helper()
	if r.Status >= 400 {
		assertProblem(t, r, r.Status, "")
	}
}

// TestEdgeOddIDsInPaths puts ids no engine issues in every route that takes
// one: each is a 4xx problem, never a 5xx.
func TestEdgeOddIDsInPaths(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		admin := e.admin()
		ids := []string{"99999999999999999999999999999999", "-1", "0", "-9223372036854775809", "1e308", "NaN", "ü", "%C3%BC",
			"%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "..%2F..%2F", "%2e%2e", "%00", "a%00b", "%ff", "%ED%A0%80", "%25", "%", "%%", "%zz",
			"null", "undefined", "%20", "%09", "a%0D%0AX-Injected:%201", "%22%3E%3Cscript%3E", strings.Repeat("9", 1000),
			"'%20OR%20'1'%3D'1", "*", "%2A", ";", "%3B", "$1", "\u2028", "%E2%80%A8", "%F0%9F%92%A9"}
		routes := []struct{ method, path string }{
			{"GET", "/v1/members/:id"}, {"PATCH", "/v1/members/:id"}, {"DELETE", "/v1/members/:id"},
			{"GET", "/v1/members/:id/balance"}, {"GET", "/v1/members/:id/ledger"}, {"POST", "/v1/members/:id/adjustments"},
			{"GET", "/v1/purchases/:id"}, {"POST", "/v1/purchases/:id/returns"},
			{"GET", "/v1/rewards/:id"}, {"PATCH", "/v1/rewards/:id"}, {"DELETE", "/v1/rewards/:id"},
			{"POST", "/v1/members/:id/redemptions"}, {"GET", "/v1/members/:id/redemptions"},
			{"GET", "/v1/redemptions/:id"}, {"POST", "/v1/redemptions/:id/cancel"},
			{"GET", "/v1/coupons/:id"}, {"POST", "/v1/coupons/:id/use"},
			{"GET", "/v1/offers/:id"}, {"PATCH", "/v1/offers/:id"}, {"GET", "/v1/offers/:id/reach"},
			{"PATCH", "/v1/offer-templates/:id"},
			{"GET", "/v1/members/:id/offers"}, {"POST", "/v1/members/:id/offers/:id/activate"},
			{"GET", "/v1/members/:id/gifts"}, {"POST", "/v1/members/:id/gifts/:id/claim"},
			{"GET", "/v1/segments/:id/members"}, {"POST", "/v1/jobs/:id/run"},
			{"PUT", "/v1/tiers/:id"}, {"DELETE", "/v1/tiers/:id"},
		}
		bodies := map[string]any{
			"PATCH /v1/members/:id": map[string]any{"first_name": "X"}, "POST /v1/members/:id/adjustments": map[string]any{"points": 1, "reason": "x"},
			"POST /v1/purchases/:id/returns": map[string]any{"amount": 1}, "PATCH /v1/rewards/:id": map[string]any{"name": "X"},
			"POST /v1/members/:id/redemptions": map[string]any{"reward_id": "x"}, "PATCH /v1/offers/:id": map[string]any{"name": "X"},
			"PATCH /v1/offer-templates/:id": map[string]any{"name": "X"}, "POST /v1/members/:id/gifts/:id/claim": map[string]any{"reward_id": "x"},
			"PUT /v1/tiers/:id": map[string]any{"name": "X", "rank": 9, "earn_multiplier": "2", "qualifying_spend": 90_000_000},
		}
		fa := &fuzzApp{app: e.app, tokens: map[loyalty.Role]string{loyalty.RoleAdmin: admin}}
		for _, rt := range routes {
			for _, id := range ids {
				if strings.HasPrefix(rt.path, "/v1/tiers/") && tierCode.MatchString(id) {
					continue // a valid tier code: PUT creates it
				}
				target := strings.ReplaceAll(rt.path, ":id", id)
				t.Run(rt.method+" "+target, func(t *testing.T) {
					var body []byte
					if b, ok := bodies[rt.method+" "+rt.path]; ok {
						body = mustJSON(t, b)
					}
					r := fa.send(t, rt.method, target, loyalty.RoleAdmin, body)
					if r.Status < 400 || r.Status > 499 {
						t.Fatalf("status %d, want a 4xx: %s", r.Status, r.Body)
					}
					assertProblem(t, r, r.Status, "")
				})
			}
		}
		// Dot segments are resolved before routing: whatever route they
		// land on answers without a 5xx.
		for _, target := range []string{"/v1/members/../members/" + m, "/v1/members/./" + m, "/v1/members/" + m + "/../../tiers",
			"/v1/../healthz", "/v1/members//" + m, "/v1/members/" + m + "/balance/"} {
			r := fa.send(t, "GET", target, loyalty.RoleAdmin, nil)
			assertNot5xx(t, r)
		}
		e.assertAlive(t, "")
		if v := e.do("GET", "/v1/members/"+m, admin, nil).must(t, 200).JSON(t); v["status"] != "active" {
			t.Errorf("the member was changed by calls with odd ids: %v", v)
		}
	})
}

// tierCode is the form of a tier code, which PUT /v1/tiers/{code} takes as
// a new tier rather than an odd id.
var tierCode = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func TestEdgeRateLimit(t *testing.T) { loyaltytest.Each(t, testEdgeRateLimit) }

func testEdgeRateLimit(t *testing.T, dialect string) {
	e := newEnvConfig(t, dialect, func(c *Config) { c.RateLimit = 2; c.RateLimitWindow = time.Hour })
	tok := e.pos()
	for i := 0; i < 2; i++ {
		e.do("GET", "/v1/tiers", tok, nil).must(t, 200)
	}
	r := e.do("GET", "/v1/tiers", tok, nil)
	assertProblem(t, r, http.StatusTooManyRequests, "")
	if code := r.JSON(t)["code"]; code != "rate_limited" {
		t.Errorf("code %v, want rate_limited", code)
	}
	// Retry-After is the seconds left in the caller's hour: more than a
	// minute has not passed, and at most an hour remains.
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || secs < 3600-60 || secs > 3600 {
		t.Errorf("Retry-After %q, want the seconds left in the hour's window", r.Header.Get("Retry-After"))
	}
	if detail := r.JSON(t)["detail"].(string); !strings.Contains(detail, strconv.Itoa(secs)) {
		t.Errorf("the detail does not say when to retry: %q", detail)
	}
	// Writes are limited alike; another caller has its own allowance.
	assertProblem(t, e.do("POST", "/v1/members", tok, map[string]any{"external_id": "RL-1"}), http.StatusTooManyRequests, "")
	e.do("GET", "/v1/tiers", e.token(loyalty.RolePOS, "till-2"), nil).must(t, 200)
	var n int64
	if err := e.store.DB().Raw("SELECT COUNT(*) FROM members WHERE external_id = 'RL-1'").Scan(&n).Error; err != nil || n != 0 {
		t.Errorf("a rate-limited enrolment was written: %d, %v", n, err)
	}

	t.Run("DefaultWindowIsAMinute", func(t *testing.T) {
		e := newEnvConfig(t, dialect, func(c *Config) { c.RateLimit = 1 })
		tok := e.pos()
		e.do("GET", "/v1/tiers", tok, nil).must(t, 200)
		r := e.do("GET", "/v1/tiers", tok, nil)
		assertProblem(t, r, http.StatusTooManyRequests, "")
		if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 || secs > 60 {
			t.Errorf("Retry-After %q, want 1 to 60 seconds", r.Header.Get("Retry-After"))
		}
	})
	t.Run("OffByDefault", func(t *testing.T) {
		e := newEnvConfig(t, dialect, func(c *Config) {})
		tok := e.pos()
		for i := 0; i < 200; i++ {
			e.do("GET", "/v1/tiers", tok, nil).must(t, 200)
		}
	})
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
