// Package natsink publishes the engine's event log to NATS JetStream: every
// event, at least once, in commit order, to the subject
// loyalty.events.<type> of the stream LOYALTY_EVENTS, with the header
// Nats-Msg-Id set to the event's id so that the stream drops a repeat.
//
// One publisher runs at a time across the serve processes of a database: it
// holds the lease of the durable cursor "nats", which records how far the
// stream has acknowledged the log. A batch of events is published
// asynchronously and the cursor advances once the whole batch, or the part
// of it that the stream acknowledged, is acknowledged; a crash, a lost
// connection or a NATS outage only delays events.
//
// Order under failures: every message but the first of a publishing session
// carries Nats-Expected-Last-Msg-Id, the id of the event before it. The
// stream stores a message only right after its predecessor, so when one is
// lost in flight (a connection cut), the ones sent behind it are refused
// rather than stored ahead of it, and the stream's events stay a prefix of
// the log in the log's order. The stream checks duplicates before that
// expectation, so a repeat of an event already stored is acknowledged as a
// duplicate. A session's first message goes without the expectation: the
// events before it are all acknowledged.
package natsink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// The names of §14 of the contract.
const (
	DefaultStream  = "LOYALTY_EVENTS"
	DefaultSubject = "loyalty.events"
	// CursorName is the durable cursor of the sink in event_cursors.
	CursorName = "nats"
)

// Source is the event log the sink follows; *loyalty.Service is one.
type Source interface {
	EventsAfter(ctx context.Context, after int64, f loyalty.EventFilter, limit int) ([]loyalty.Event, error)
	EventsWakeUntil(ctx context.Context) <-chan struct{}
	ClaimCursor(ctx context.Context, name, owner string, ttl time.Duration) (int64, bool, error)
	AdvanceCursor(ctx context.Context, name, owner string, position int64, ttl time.Duration) error
	ReleaseCursor(ctx context.Context, name, owner string) error
}

// Config configures a sink. Zero values take the defaults.
type Config struct {
	// URL is the NATS server (nats://host:4222), or several, comma-separated.
	URL string
	// Stream is the JetStream stream, created when absent (LOYALTY_EVENTS).
	Stream string
	// Subject is the subjects' prefix: an event goes to <Subject>.<type>,
	// and a created stream takes <Subject>.> (loyalty.events).
	Subject string
	// Cursor names the durable cursor (nats). Two sinks on one database
	// publishing to different streams need different cursors.
	Cursor string
	// Batch is how many events one round publishes before awaiting their
	// acknowledgements (1000): a round's read and its cursor's write are
	// paid once, so under load larger rounds cost less per event.
	Batch int
	// Lease is how long the cursor's lease lasts unless renewed (15s); a
	// publisher that dies is replaced after at most this long.
	Lease time.Duration
	// Poll is how often the log is read when nothing wakes the sink (250ms).
	Poll time.Duration
	// Linger is the least time between two rounds that are not full
	// (100ms): while the sink keeps up, a round takes what this much time
	// committed, so that the cursor's write, one per round, stays rare
	// beside the purchases' writes (SQLite has one writer).
	Linger time.Duration
	// AckTimeout bounds the wait for one acknowledgement (10s).
	AckTimeout time.Duration
	// Logger receives errors and state changes; it never receives event data.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Subject == "" {
		c.Subject = DefaultSubject
	}
	if c.Cursor == "" {
		c.Cursor = CursorName
	}
	if c.Batch <= 0 {
		c.Batch = 1000
	}
	if c.Lease <= 0 {
		c.Lease = 15 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = 250 * time.Millisecond
	}
	if c.Linger <= 0 {
		c.Linger = 100 * time.Millisecond
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Sink publishes the log of one database to one stream.
type Sink struct {
	cfg   Config
	src   Source
	owner string

	nc *nats.Conn
	js jetstream.JetStream

	published atomic.Int64
	position  atomic.Int64
}

// New makes a sink over src; Run starts it.
func New(src Source, cfg Config) *Sink {
	cfg.defaults()
	host, _ := os.Hostname()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &Sink{cfg: cfg, src: src, owner: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))}
}

// Published is how many events this sink had acknowledged by the stream
// (repeats included).
func (s *Sink) Published() int64 { return s.published.Load() }

// Position is the cursor position this sink last stored.
func (s *Sink) Position() int64 { return s.position.Load() }

// Run publishes until ctx ends, then gives up the cursor's lease and closes
// the connection. It returns an error only when the configuration is
// unusable; outages of NATS or of the database are waited out.
func (s *Sink) Run(ctx context.Context) error {
	log := s.cfg.Logger
	nc, err := nats.Connect(s.cfg.URL,
		nats.Name("loyalty-engine"),
		// Start even while the server is down, and keep trying for ever:
		// an outage delays events, it does not stop the engine.
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// A publish while disconnected fails at once instead of waiting in
		// a buffer: the round ends and is repeated after the reconnect.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }),
	)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(s.cfg.AckTimeout))
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	s.nc, s.js = nc, js
	for ctx.Err() == nil {
		pos, ok := s.claim(ctx)
		if !ok {
			break
		}
		s.lead(ctx, pos)
	}
	// Give the lease up so that another process takes over at once rather
	// than after it expires.
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.src.ReleaseCursor(rctx, s.cfg.Cursor, s.owner)
	return nil
}

// claim waits until this sink holds the cursor's lease and returns its
// position; false when ctx ended first.
func (s *Sink) claim(ctx context.Context) (int64, bool) {
	var b backoff
	for {
		pos, ok, err := s.src.ClaimCursor(ctx, s.cfg.Cursor, s.owner, s.cfg.Lease)
		switch {
		case err != nil && ctx.Err() == nil:
			s.cfg.Logger.Warn("nats sink: claim cursor", "err", err)
			if !sleep(ctx, b.next()) {
				return 0, false
			}
			continue
		case err != nil:
			return 0, false
		case ok:
			s.cfg.Logger.Debug("nats sink publishes", "owner", s.owner, "position", pos)
			s.position.Store(pos)
			return pos, true
		}
		// Another process publishes; take over if its lease runs out.
		if !sleep(ctx, s.cfg.Lease/3) {
			return 0, false
		}
	}
}

// lead publishes from pos while this sink holds the lease; it returns when
// the lease is lost or ctx ends.
func (s *Sink) lead(ctx context.Context, pos int64) {
	log := s.cfg.Logger
	wake := s.src.EventsWakeUntil(ctx)
	tick := time.NewTicker(s.cfg.Poll)
	defer tick.Stop()
	renewed := time.Now()
	renew := func() bool {
		if time.Since(renewed) < s.cfg.Lease/3 {
			return true
		}
		if err := s.src.AdvanceCursor(ctx, s.cfg.Cursor, s.owner, pos, s.cfg.Lease); err != nil {
			if ctx.Err() == nil {
				log.Warn("nats sink: lease", "err", err)
			}
			return false
		}
		renewed = time.Now()
		return true
	}
	// wait pauses for d (or until the log moves, when d is 0), renewing
	// the lease; false when the lease is lost or ctx ended.
	wait := func(d time.Duration) bool {
		var timer <-chan time.Time
		if d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			timer = t.C
		}
		for {
			select {
			case <-ctx.Done():
				return false
			case <-timer:
				return renew()
			case <-wake:
				if d == 0 {
					return renew()
				}
			case <-tick.C:
				if !renew() {
					return false
				}
				if d == 0 {
					return true
				}
			}
		}
	}
	var (
		b       backoff
		ensured bool
		last    string // the id of the last event acknowledged in this session
	)
	for ctx.Err() == nil {
		if !ensured {
			if err := s.ensureStream(ctx); err != nil {
				if ctx.Err() == nil {
					log.Warn("nats sink: stream", "stream", s.cfg.Stream, "err", err)
				}
				if !wait(b.next()) {
					return
				}
				continue
			}
			ensured = true
		}
		evs, err := s.src.EventsAfter(ctx, pos, loyalty.EventFilter{Follow: true}, s.cfg.Batch)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("nats sink: read events", "err", err)
			}
			if !wait(b.next()) {
				return
			}
			continue
		}
		if len(evs) == 0 {
			if !wait(0) {
				return
			}
			continue
		}
		n, err := s.publish(ctx, evs, last)
		if n > 0 {
			pos, last = evs[n-1].Position, evs[n-1].ID
			if aerr := s.src.AdvanceCursor(ctx, s.cfg.Cursor, s.owner, pos, s.cfg.Lease); aerr != nil {
				// The stream has these events; whoever holds the cursor
				// now publishes them again, and the stream drops the
				// repeats.
				if ctx.Err() == nil {
					log.Warn("nats sink: advance cursor", "err", aerr)
				}
				return
			}
			renewed = time.Now()
			s.position.Store(pos)
			s.published.Add(int64(n))
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("nats sink: publish", "stream", s.cfg.Stream, "acknowledged", n, "of", len(evs), "err", err)
			// A new session: the next message goes without the expectation,
			// since what the stream holds last is no longer known.
			last = ""
			if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrNoStreamResponse) {
				ensured = false
			}
			if !wait(b.next()) {
				return
			}
			continue
		}
		b.reset()
		if len(evs) < s.cfg.Batch && !wait(s.cfg.Linger) {
			return
		}
	}
}

// ensureStream creates the stream when it is absent.
func (s *Sink) ensureStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := s.js.Stream(ctx, s.cfg.Stream)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	_, err = s.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        s.cfg.Stream,
		Description: "Events of the loyalty engine, in commit order",
		Subjects:    []string{s.cfg.Subject + ".>"},
		Storage:     jetstream.FileStorage,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil // another process made it first
	}
	if err == nil {
		s.cfg.Logger.Info("nats sink: created stream", "stream", s.cfg.Stream, "subjects", s.cfg.Subject+".>")
	}
	return err
}

// publish sends evs asynchronously, chained by their ids after last (none
// when last is empty), and waits for the acknowledgements. It returns how
// many events from the first were acknowledged, and the error that stopped
// the rest.
func (s *Sink) publish(ctx context.Context, evs []loyalty.Event, last string) (int, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	var sendErr error
	for _, ev := range evs {
		m := nats.NewMsg(s.cfg.Subject + "." + ev.Type)
		m.Data = ev.JSON()
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(s.cfg.Stream)}
		if last != "" {
			opts = append(opts, jetstream.WithExpectLastMsgID(last))
		}
		f, err := s.js.PublishMsgAsync(m, opts...)
		if err != nil {
			sendErr = err
			break
		}
		futures = append(futures, f)
		last = ev.ID
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return i, err
		case <-ctx.Done():
			return i, ctx.Err()
		}
	}
	return len(futures), sendErr
}

// backoff doubles a wait from 250ms up to 5s.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	switch {
	case b.d == 0:
		b.d = 250 * time.Millisecond
	case b.d < 5*time.Second:
		b.d *= 2
	}
	return b.d
}

func (b *backoff) reset() { b.d = 0 }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
