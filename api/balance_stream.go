package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/api/problem"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// Defaults of the live balance streams (§14).
const (
	// DefaultStreamsPerCaller bounds the open balance streams of one
	// principal (role and subject): a till shows one customer, an app a
	// few devices of one member.
	DefaultStreamsPerCaller = 8
	// DefaultStreamHeartbeat is how often an idle stream sends a comment,
	// so that proxies keep it open and a gone client is noticed.
	DefaultStreamHeartbeat = 15 * time.Second
)

// balanceEventType is the event whose data is a member's balance (§7).
const balanceEventType = "balance.changed"

// tailPoll is how often the tail reads the log when nothing woke it, and
// tailGap the least time between two reads: on a busy engine every commit
// wakes the tail, which reads once for all the commits of the gap.
const (
	tailPoll = 250 * time.Millisecond
	tailGap  = 50 * time.Millisecond
)

// balanceStreams fans the log's balance changes out to the open streams of
// this process: one tail follows the event log (woken by EventsWake, and
// by a short ticker for what other processes commit) while any stream is
// open, and hands each balance.changed event to the streams of its member.
type balanceStreams struct {
	svc       *loyalty.Service
	log       *slog.Logger
	perCaller int

	mu      sync.Mutex
	members map[string]map[*balanceSub]struct{}
	callers map[string]int
	// tailing says a tail runs; it stops once no stream is open.
	tailing bool
}

// balanceSub is one open stream: the newest balance the tail saw for its
// member, and a signal that it moved.
type balanceSub struct {
	member string
	caller string
	wake   chan struct{}

	mu      sync.Mutex
	version int64
	data    []byte
}

func newBalanceStreams(svc *loyalty.Service, log *slog.Logger, perCaller int) *balanceStreams {
	return &balanceStreams{svc: svc, log: log, perCaller: orDefault(perCaller, DefaultStreamsPerCaller),
		members: map[string]map[*balanceSub]struct{}{}, callers: map[string]int{}}
}

// subscribe opens a stream of member's balance for p, starting the tail at
// the log's head when none runs. A change committed after subscribe
// returns reaches the stream, so the caller reads the current balance
// after it.
func (h *balanceStreams) subscribe(ctx context.Context, p loyalty.Principal, member string) (*balanceSub, error) {
	caller := string(p.Role) + ":" + p.Subject
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.callers[caller] >= h.perCaller {
		return nil, &loyalty.Error{Code: problem.RateLimited, Reason: "too_many_streams",
			Message: "this caller has " + strconv.Itoa(h.perCaller) + " balance streams open already; close one first"}
	}
	if !h.tailing {
		// The tail starts at the head read now, before the new stream's
		// first balance read: every change after that read has a higher
		// position.
		head, err := h.svc.EventsHead(ctx)
		if err != nil {
			return nil, err
		}
		h.tailing = true
		go h.tail(head)
	}
	sub := &balanceSub{member: member, caller: caller, wake: make(chan struct{}, 1)}
	if h.members[member] == nil {
		h.members[member] = map[*balanceSub]struct{}{}
	}
	h.members[member][sub] = struct{}{}
	h.callers[caller]++
	return sub, nil
}

func (h *balanceStreams) unsubscribe(sub *balanceSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if set := h.members[sub.member]; set != nil {
		delete(set, sub)
		if len(set) == 0 {
			delete(h.members, sub.member)
		}
	}
	if h.callers[sub.caller]--; h.callers[sub.caller] <= 0 {
		delete(h.callers, sub.caller)
	}
}

// tail follows the log from pos until no stream is open.
func (h *balanceStreams) tail(pos int64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wake := h.svc.EventsWakeUntil(ctx)
	tick := time.NewTicker(tailPoll)
	defer tick.Stop()
	filter := loyalty.EventFilter{Types: []string{balanceEventType}}
	const batch = 500
	failing := false
	for {
		evs, err := h.svc.EventsAfter(ctx, pos, filter, batch)
		switch {
		case err != nil:
			if !failing {
				h.log.Warn("balance streams: read events", "err", err)
			}
			failing = true
		default:
			failing = false
			for _, ev := range evs {
				h.dispatch(ev)
			}
			if len(evs) > 0 {
				pos = evs[len(evs)-1].Position
			}
		}
		if err == nil && len(evs) == batch {
			continue
		}
		read := time.Now()
		select {
		case <-wake:
		case <-tick.C:
		}
		if d := tailGap - time.Since(read); d > 0 {
			time.Sleep(d)
		}
		h.mu.Lock()
		if len(h.members) == 0 {
			h.tailing = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
	}
}

// dispatch hands a balance.changed event to its member's streams.
func (h *balanceStreams) dispatch(ev loyalty.Event) {
	if ev.MemberID == nil {
		return
	}
	h.mu.Lock()
	set := h.members[*ev.MemberID]
	subs := make([]*balanceSub, 0, len(set))
	for s := range set {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	if len(subs) == 0 {
		return
	}
	var b struct {
		Version *int64 `json:"version"`
	}
	if err := json.Unmarshal(ev.Data, &b); err != nil || b.Version == nil {
		return
	}
	data := ev.Data
	if bytes.ContainsAny(data, "\r\n") {
		var buf bytes.Buffer
		if json.Compact(&buf, data) != nil {
			return
		}
		data = buf.Bytes()
	}
	for _, s := range subs {
		s.offer(*b.Version, data)
	}
}

// offer keeps the balance if it is newer than what the stream holds and
// wakes the stream.
func (s *balanceSub) offer(version int64, data []byte) {
	s.mu.Lock()
	if version <= s.version {
		s.mu.Unlock()
		return
	}
	s.version, s.data = version, data
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns the newest balance if its version is above sent.
func (s *balanceSub) take(sent int64) (int64, []byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version <= sent {
		return 0, nil, false
	}
	return s.version, s.data, true
}

// balanceStream serves GET /v1/members/{id}/balance/stream: the balance at
// once (unless Last-Event-ID names its version or a later one) and after
// every change, as server-sent events, until the client goes away or the
// server shuts down.
func (s *server) balanceStream(c *fiber.Ctx) error {
	p := principal(c)
	id := c.Params("id")
	if !p.SeesMember(id) {
		// As the balance read would answer, before taking a stream slot.
		_, err := s.svc.Balance(c.UserContext(), p, id)
		return err
	}
	sub, err := s.streams.subscribe(c.UserContext(), p, id)
	if err != nil {
		return err
	}
	b, err := s.svc.Balance(c.UserContext(), p, id)
	if err != nil {
		s.streams.unsubscribe(sub)
		return err
	}
	first, err := json.Marshal(b)
	if err != nil {
		s.streams.unsubscribe(sub)
		return err
	}
	sub.offer(b.Version, first)
	var sent int64 = -1
	if v, err := strconv.ParseInt(c.Get("Last-Event-ID"), 10, 64); err == nil && v >= 0 {
		sent = v
	}

	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	// Proxies such as nginx would otherwise hold events back.
	c.Set("X-Accel-Buffering", "no")
	rc := c.Context()
	// The server closes done when it shuts down: streams end then, so the
	// shutdown does not wait for their clients.
	done := rc.Done()
	conn := rc.Conn()
	heartbeat, writeTimeout := s.streamHeartbeat, s.writeTimeout
	var expired <-chan time.Time
	if s.streamMaxAge > 0 {
		expired = time.After(s.streamMaxAge)
	}
	rc.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer s.streams.unsubscribe(sub)
		// The server's write deadline was set once for the whole response;
		// each write of a stream gets its own.
		flush := func() bool {
			if conn != nil && writeTimeout > 0 {
				_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			}
			return w.Flush() == nil
		}
		// The retry hint makes an EventSource reconnect after a second.
		if _, err := w.WriteString("retry: 1000\n\n"); err != nil || !flush() {
			return
		}
		beat := time.NewTicker(heartbeat)
		defer beat.Stop()
		for {
			if v, data, ok := sub.take(sent); ok {
				w.WriteString("event: balance\nid: ")
				w.WriteString(strconv.FormatInt(v, 10))
				w.WriteString("\ndata: ")
				w.Write(data)
				w.WriteString("\n\n")
				if !flush() {
					return
				}
				sent = v
				beat.Reset(heartbeat)
			}
			select {
			case <-sub.wake:
			case <-beat.C:
				w.WriteString(": heartbeat\n\n")
				if !flush() {
					return
				}
			case <-done:
				return
			case <-expired:
				return
			}
		}
	})
	return nil
}
