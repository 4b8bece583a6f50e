package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// streamWait bounds waits for a stream's events: generous, for a busy
// machine; the 1 s of the contract is measured by the benchmark.
const streamWait = 15 * time.Second

// liveServer serves app on a loopback port until the test ends.
func liveServer(t *testing.T, app *fiber.App) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second) })
	return "http://" + ln.Addr().String()
}

// sequenced starts the service's sequencer, as every serve process runs it.
func sequenced(t *testing.T, svc *loyalty.Service) {
	t.Helper()
	stop := svc.StartSequencer(context.Background(), func(err error) { t.Logf("sequencer: %v", err) })
	t.Cleanup(stop)
}

// sseEvent is one message of a stream, or one comment.
type sseEvent struct {
	Event, ID, Data, Comment string
}

// sseStream reads a balance stream in the background.
type sseStream struct {
	t      *testing.T
	res    *http.Response
	events chan sseEvent
	ended  chan struct{}
}

// openStream GETs the stream; it returns the response when it is not 200.
func openStream(t *testing.T, base, member, token string, headers ...string) (*sseStream, *http.Response) {
	t.Helper()
	req, err := http.NewRequest("GET", base+"/v1/members/"+member+"/balance/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		defer res.Body.Close()
		return nil, res
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	s := &sseStream{t: t, res: res, events: make(chan sseEvent, 100), ended: make(chan struct{})}
	go s.read()
	t.Cleanup(s.close)
	return s, res
}

func (s *sseStream) read() {
	defer close(s.ended)
	br := bufio.NewReader(s.res.Body)
	var ev sseEvent
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if ev != (sseEvent{}) {
				s.events <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			ev.Comment = strings.TrimSpace(line[1:])
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "event":
				ev.Event = v
			case "id":
				ev.ID = v
			case "data":
				ev.Data = v
			}
		}
	}
}

func (s *sseStream) close() { s.res.Body.Close() }

// next returns the next balance event, skipping comments and the retry
// hint.
func (s *sseStream) next() (loyalty.Balance, sseEvent) {
	s.t.Helper()
	timeout := time.After(streamWait)
	for {
		select {
		case ev := <-s.events:
			if ev.Event == "" {
				continue
			}
			if ev.Event != "balance" {
				s.t.Fatalf("event %q, want balance", ev.Event)
			}
			var b loyalty.Balance
			if err := json.Unmarshal([]byte(ev.Data), &b); err != nil {
				s.t.Fatalf("data is not a balance: %v: %s", err, ev.Data)
			}
			if ev.ID != strconv.FormatInt(b.Version, 10) {
				s.t.Fatalf("id %q, the balance's version %d", ev.ID, b.Version)
			}
			return b, ev
		case <-s.ended:
			s.t.Fatal("the stream ended")
		case <-timeout:
			s.t.Fatalf("no balance event within %s", streamWait)
		}
	}
}

// nextFrom returns the next balance event whose version is above v,
// failing on one at or below it: a stream never sends a balance twice.
func (s *sseStream) nextAbove(v int64) loyalty.Balance {
	s.t.Helper()
	b, _ := s.next()
	if b.Version <= v {
		s.t.Fatalf("the stream sent version %d after %d", b.Version, v)
	}
	return b
}

func TestBalanceStream(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		sequenced(t, e.svc)
		log := slog.New(slog.NewJSONHandler(io.Discard, nil))
		base := liveServer(t, New(e.svc, Config{Auth: e.auth, Logger: log}, NewMetrics()))
		m := e.enrol()
		e.buy(m, 4000, "S-0")

		t.Run("PurchaseThroughTheAPI", func(t *testing.T) {
			s, res := openStream(t, base, m, e.token(loyalty.RoleMember, m))
			if s == nil {
				t.Fatalf("status %d", res.StatusCode)
			}
			first, _ := s.next()
			if want := e.balance(m); !sameBalance(first, want) {
				t.Fatalf("first event %+v, GET balance %+v", first, want)
			}
			e.buy(m, 2500, "S-1")
			got := s.nextAbove(first.Version)
			if want := e.balance(m); !sameBalance(got, want) {
				t.Fatalf("after the purchase the stream sent %+v, GET balance answers %+v", got, want)
			}
			if got.Available+got.Pending <= first.Available+first.Pending {
				t.Fatalf("the purchase earned nothing on the stream: %+v then %+v", first, got)
			}
		})

		t.Run("PurchaseThroughAnotherEngine", func(t *testing.T) {
			other := loyalty.NewService(loyaltytest.MustOpenAgain(t, e.store), loyalty.WithClock(e.clock.Now))
			sequenced(t, other)
			s, res := openStream(t, base, m, e.pos())
			if s == nil {
				t.Fatalf("status %d", res.StatusCode)
			}
			first, _ := s.next()
			total := int64(3100)
			in := loyalty.PurchaseInput{MemberID: m, ExternalID: "S-other", StoreID: "store-1", Currency: "USD", Total: &total}
			admin := loyalty.Principal{Subject: "op", Role: loyalty.RoleAdmin}
			if _, _, err := other.PostPurchase(loyalty.WithPrincipal(context.Background(), admin), admin, in, loyalty.IdempotencyKey{}); err != nil {
				t.Fatal(err)
			}
			got := s.nextAbove(first.Version)
			if want := e.balance(m); !sameBalance(got, want) {
				t.Fatalf("the stream sent %+v, GET balance answers %+v", got, want)
			}
		})

		t.Run("LastEventIDResumes", func(t *testing.T) {
			cur := e.balance(m)
			// An older id: the current balance at once.
			s, _ := openStream(t, base, m, e.admin(), "Last-Event-ID", strconv.FormatInt(cur.Version-1, 10))
			if b, _ := s.next(); !sameBalance(b, cur) {
				t.Fatalf("resumed from %d: got %+v, want %+v", cur.Version-1, b, cur)
			}
			// The current id: nothing until the next change, which is
			// then the first event.
			s2, _ := openStream(t, base, m, e.admin(), "Last-Event-ID", strconv.FormatInt(cur.Version, 10))
			e.buy(m, 1200, "S-resume")
			if b := s2.nextAbove(cur.Version); !sameBalance(b, e.balance(m)) {
				t.Fatalf("resumed stream sent %+v, GET balance answers %+v", b, e.balance(m))
			}
		})

		t.Run("Scope", func(t *testing.T) {
			other := e.enrol()
			if _, res := openStream(t, base, other, e.token(loyalty.RoleMember, m)); res == nil || res.StatusCode != http.StatusNotFound {
				t.Fatalf("a member streaming another member: %v", statusOf(res))
			}
			if _, res := openStream(t, base, m, e.marketer()); res == nil || res.StatusCode != http.StatusForbidden {
				t.Fatalf("a marketer: %v", statusOf(res))
			}
			if _, res := openStream(t, base, "mem_nobody", e.admin()); res == nil || res.StatusCode != http.StatusNotFound {
				t.Fatalf("an unknown member: %v", statusOf(res))
			}
			if _, res := openStream(t, base, m, ""); res == nil || res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("no token: %v", statusOf(res))
			}
			if s, res := openStream(t, base, other, e.tokenStore(loyalty.RolePOS, "till-7", "store-2")); s == nil {
				t.Fatalf("a till: %v", statusOf(res))
			}
		})
	})
}

// sameBalance compares two balances as the API writes them, as of aside.
func sameBalance(a, b loyalty.Balance) bool {
	a.AsOf, b.AsOf = time.Time{}, time.Time{}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func statusOf(res *http.Response) string {
	if res == nil {
		return "200 (a stream)"
	}
	return res.Status
}

// TestBalanceStreamMaxAge: with StreamMaxAge a stream ends after its first
// event (the test harness's apps end them at once), and a reconnection
// with Last-Event-ID resumes it.
func TestBalanceStreamMaxAge(t *testing.T) {
	e := newEnv(t, loyalty.SQLite)
	m := e.enrol()
	r := e.do("GET", "/v1/members/"+m+"/balance/stream", e.token(loyalty.RoleMember, m), nil).must(t, 200)
	if !strings.Contains(string(r.Body), "event: balance\nid: ") {
		t.Fatalf("stream without its balance: %q", r.Body)
	}
	v := e.balance(m).Version
	r = e.do("GET", "/v1/members/"+m+"/balance/stream", e.admin(), nil, "Last-Event-ID", strconv.FormatInt(v, 10)).must(t, 200)
	if strings.Contains(string(r.Body), "event: balance") {
		t.Fatalf("resumed at the current version, the stream sent it again: %q", r.Body)
	}
}

// TestBalanceStreamLimitsHeartbeatsShutdown runs an app with two streams a
// caller and a short heartbeat.
func TestBalanceStreamLimitsHeartbeatsShutdown(t *testing.T) {
	e := newEnv(t, loyalty.SQLite)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	app := New(e.svc, Config{Auth: e.auth, Logger: log, StreamsPerCaller: 2, StreamHeartbeat: 50 * time.Millisecond}, NewMetrics())
	base := liveServer(t, app)
	m := e.enrol()
	tok := e.token(loyalty.RoleMember, m)

	s1, _ := openStream(t, base, m, tok)
	s2, _ := openStream(t, base, m, tok)
	s1.next()
	s2.next()

	t.Run("Heartbeat", func(t *testing.T) {
		timeout := time.After(streamWait)
		for {
			select {
			case ev := <-s1.events:
				if ev.Comment != "" && ev.Event == "" {
					return
				}
			case <-timeout:
				t.Fatal("no heartbeat comment")
			}
		}
	})

	t.Run("TooMany", func(t *testing.T) {
		_, res := openStream(t, base, m, tok)
		if res == nil || res.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("a third stream: %s", statusOf(res))
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
			t.Fatalf("Content-Type %q", ct)
		}
		// Another caller is not held back.
		if s, res := openStream(t, base, m, e.admin()); s == nil {
			t.Fatalf("another caller: %s", statusOf(res))
		}
		// A closed stream frees its place once the server notices (at the
		// next heartbeat).
		s2.close()
		deadline := time.Now().Add(streamWait)
		for {
			s, res := openStream(t, base, m, tok)
			if s != nil {
				break
			}
			if res.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
				t.Fatalf("after closing a stream: %s", statusOf(res))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("Shutdown", func(t *testing.T) {
		// Open streams end when the server shuts down, which therefore
		// finishes well within its timeout.
		if err := app.ShutdownWithTimeout(streamWait); err != nil {
			t.Fatalf("shutdown with open streams: %v", err)
		}
		select {
		case <-s1.ended:
		case <-time.After(streamWait):
			t.Fatal("the stream did not end at shutdown")
		}
	})
}
