package natsink_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/loyalty/natsink"
	"github.com/loyalty-engine/loyalty/loyalty/natsink/natstest"
)

var admin = loyalty.Principal{Subject: "op", Role: loyalty.RoleAdmin}

// engine is one service on the test's database, as one serve process has:
// its own store, the sequencer running.
func engine(t *testing.T, store *loyalty.Store) *loyalty.Service {
	t.Helper()
	svc := loyalty.NewService(store)
	stop := svc.StartSequencer(context.Background(), func(err error) { t.Logf("sequencer: %v", err) })
	t.Cleanup(stop)
	return svc
}

// TestSinkPublishesEveryEventOnceInOrder runs two sinks on one database
// (two engine processes: one publishes, the other waits for the lease)
// through a proxy whose connections the test cuts while purchases are
// posted concurrently. Afterwards the stream holds every event of the log
// once, in the log's order, with its id as Nats-Msg-Id and its wire JSON
// as body; a third sink on a fresh cursor publishes the whole log again and
// the stream drops every repeat.
func TestSinkPublishesEveryEventOnceInOrder(t *testing.T) {
	url := natstest.URL(t)
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		store := loyaltytest.MustOpen(t, dialect)
		svc := engine(t, store)
		other := engine(t, loyaltytest.MustOpenAgain(t, store))
		stream, subject := natstest.Names(t, url)
		px := newProxy(t, strings.TrimPrefix(url, "nats://"))
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg := natsink.Config{URL: "nats://" + px.addr(), Stream: stream, Subject: subject, Batch: 40,
			Lease: 2 * time.Second, Poll: 50 * time.Millisecond, AckTimeout: 2 * time.Second, Logger: log}

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		sinks := []*natsink.Sink{natsink.New(svc, cfg), natsink.New(other, cfg)}
		for _, s := range sinks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Run(ctx); err != nil {
					t.Errorf("sink: %v", err)
				}
			}()
		}
		defer func() { cancel(); wg.Wait() }()

		const members, workers, perWorker = 8, 4, 40
		ids := enrol(t, svc, members)
		var posted atomic.Int64
		load := make(chan struct{})
		go func() {
			defer close(load)
			var lw sync.WaitGroup
			for w := 0; w < workers; w++ {
				lw.Add(1)
				go func() {
					defer lw.Done()
					for i := 0; i < perWorker; i++ {
						// Half the purchases through each engine.
						s := svc
						if i%2 == 1 {
							s = other
						}
						buy(t, s, ids[(w+i*workers)%members], fmt.Sprintf("R-%d-%d", w, i), int64(1000+i*37))
						posted.Add(1)
					}
				}()
			}
			lw.Wait()
		}()
		// Cut every connection to NATS twice during the load, keeping the
		// server out of reach for a moment each time.
		for _, at := range []int64{workers * perWorker / 3, 2 * workers * perWorker / 3} {
			for posted.Load() < at {
				time.Sleep(5 * time.Millisecond)
			}
			px.cut(700 * time.Millisecond)
		}
		<-load

		evs := allEvents(t, svc)
		if len(evs) < 2*workers*perWorker {
			t.Fatalf("the log holds %d events for %d purchases", len(evs), workers*perWorker)
		}
		waitCount(t, url, stream, len(evs))
		checkStream(t, natstest.Messages(t, url, stream), evs, subject)
		if px.cuts.Load() == 0 {
			t.Fatal("the proxy cut no connection")
		}

		// Publishing the log again from its start adds nothing.
		again := cfg
		again.URL, again.Cursor = url, "nats-again"
		s := natsink.New(svc, again)
		actx, acancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = s.Run(actx) }()
		last := evs[len(evs)-1].Position
		deadline := time.Now().Add(60 * time.Second)
		for s.Position() < last && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		acancel()
		<-done
		if s.Position() < last {
			t.Fatalf("the second publication reached position %d of %d", s.Position(), last)
		}
		if s.Published() < int64(len(evs)) {
			t.Fatalf("the second publication was acknowledged %d events of %d", s.Published(), len(evs))
		}
		checkStream(t, natstest.Messages(t, url, stream), evs, subject)
	})
}

// TestSinkCreatesStream checks the stream the sink makes when it is absent:
// its name and subjects.
func TestSinkCreatesStream(t *testing.T) {
	url := natstest.URL(t)
	store := loyaltytest.MustOpen(t, loyalty.SQLite)
	svc := engine(t, store)
	stream, subject := natstest.Names(t, url)
	ids := enrol(t, svc, 1)
	buy(t, svc, ids[0], "R-1", 5000)
	evs := allEvents(t, svc)
	ctx, cancel := context.WithCancel(context.Background())
	s := natsink.New(svc, natsink.Config{URL: url, Stream: stream, Subject: subject, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	waitCount(t, url, stream, len(evs))
	cancel()
	<-done
	msgs := natstest.Messages(t, url, stream)
	checkStream(t, msgs, evs, subject)
	for _, m := range msgs {
		if !strings.HasPrefix(m.Subject, subject+".") {
			t.Errorf("subject %s outside %s.>", m.Subject, subject)
		}
	}
}

func enrol(t *testing.T, svc *loyalty.Service, n int) []string {
	t.Helper()
	ctx := loyalty.WithPrincipal(context.Background(), admin)
	var ids []string
	for i := 0; i < n; i++ {
		ext := fmt.Sprintf("M-%d", i)
		m, _, err := svc.EnrolMember(ctx, loyalty.MemberInput{ExternalID: &ext}, loyalty.IdempotencyKey{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	return ids
}

func buy(t *testing.T, svc *loyalty.Service, member, ext string, total int64) {
	ctx := loyalty.WithPrincipal(context.Background(), admin)
	in := loyalty.PurchaseInput{MemberID: member, ExternalID: ext, StoreID: "s1", Total: &total}
	if _, _, err := svc.PostPurchase(ctx, admin, in, loyalty.IdempotencyKey{}); err != nil {
		t.Error(err)
	}
}

// allEvents reads the whole log, waiting until every committed event is
// positioned.
func allEvents(t *testing.T, svc *loyalty.Service) []loyalty.Event {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var out []loyalty.Event
		var after int64
		for {
			evs, err := svc.EventsAfter(ctx, after, loyalty.EventFilter{}, 500)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, evs...)
			if len(evs) < 500 {
				break
			}
			after = evs[len(evs)-1].Position
		}
		var unpositioned int64
		if err := svc.Store().DB().Raw("SELECT count(*) FROM events").Scan(&unpositioned).Error; err != nil {
			t.Fatal(err)
		}
		if int64(len(out)) == unpositioned || time.Now().After(deadline) {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitCount waits (generously) until the stream holds n messages.
func waitCount(t *testing.T, url, stream string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for natstest.Count(t, url, stream) < uint64(n) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
}

// checkStream asserts that the stream holds exactly evs, in order.
func checkStream(t *testing.T, msgs []natstest.Msg, evs []loyalty.Event, subject string) {
	t.Helper()
	if len(msgs) != len(evs) {
		seen := map[string]int{}
		for _, m := range msgs {
			seen[m.MsgID]++
		}
		missing, twice := 0, 0
		for _, e := range evs {
			switch seen[e.ID] {
			case 0:
				missing++
			case 1:
			default:
				twice++
			}
		}
		t.Fatalf("the stream holds %d messages, the log %d events (%d missing, %d more than once)", len(msgs), len(evs), missing, twice)
	}
	for i, e := range evs {
		m := msgs[i]
		if m.MsgID != e.ID {
			t.Fatalf("message %d (seq %d) is %s, the log's event %d is %s", i, m.Seq, m.MsgID, i, e.ID)
		}
		if m.Subject != subject+"."+e.Type {
			t.Errorf("event %s went to %s, want %s.%s", e.ID, m.Subject, subject, e.Type)
		}
		if !bytes.Equal(m.Data, e.JSON()) {
			t.Errorf("event %s: body %s, want %s", e.ID, m.Data, e.JSON())
		}
	}
}

// proxy forwards TCP connections to NATS and cuts them on demand.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
	cuts   atomic.Int64
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.closeAll() })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

func (p *proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// cut drops every connection and refuses new ones for d.
func (p *proxy) cut(d time.Duration) {
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
	p.closeAll()
	p.cuts.Add(1)
	time.AfterFunc(d, func() {
		p.mu.Lock()
		p.down = false
		p.mu.Unlock()
	})
}
