package webhooks

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// Config tunes a Dispatcher. Zero values take the defaults of §14.
type Config struct {
	// Timeout bounds one attempt, connection to last header; default 10 s.
	Timeout time.Duration
	// FirstRetry is the longest wait before the first retry (the wait is
	// jittered between half of it and all of it); each later wait doubles,
	// up to MaxBackoff. Defaults: 4 s and 1 h.
	FirstRetry time.Duration
	MaxBackoff time.Duration
	// RetryWindow is how long after its first failure a delivery is retried
	// before it is given up (the dead letter); default 72 h.
	RetryWindow time.Duration
	// BatchSize is how many events one read of the log takes; default 500.
	// A batch's reads, its record of deliveries and its cursor are paid
	// once per batch, so under load (a purchase is two events) larger
	// batches cost the engine less per event.
	BatchSize int
	// PerEndpoint bounds the attempts in flight to one endpoint (default 8);
	// Total bounds them over all endpoints (default 64).
	PerEndpoint int
	Total       int
	// Poll is how often the dispatcher looks for endpoints, for retries due
	// and, when it holds none, for an endpoint's lease; default 1 s.
	Poll time.Duration
	// CursorTTL is the lease on an endpoint's place in the log: another
	// process takes the endpoint over this long after the holder stopped
	// renewing it; default 30 s.
	CursorTTL time.Duration
	// LeaseTTL is the lease on a claimed retry: it must outlast an attempt;
	// default twice Timeout plus 20 s.
	LeaseTTL time.Duration
	// Client, when set, sends the requests. By default they go through a
	// fasthttp client (no redirects followed, keep-alive connections, no
	// goroutines of its own per connection: a request costs about half the
	// CPU of net/http's), or through net/http when the environment names a
	// proxy (HTTP_PROXY, HTTPS_PROXY), which net/http honours.
	Client *http.Client
	Logger *slog.Logger
	// HistoryKept is how long delivered rows stay in the history; default
	// 35 days, as the event log. Failed and open rows stay until settled.
	HistoryKept time.Duration
	// Registry, when set, gets the dispatcher's metrics
	// (loyalty_webhook_attempts_total{outcome},
	// loyalty_webhook_attempt_duration_seconds).
	Registry prometheus.Registerer
	// Owner names this process in the leases; default host, pid and a
	// random suffix.
	Owner string
	// fast is the default client, unless Client is set or a proxy is.
	fast *fasthttp.Client

	// Linger is how long an endpoint's stream waits after a batch that
	// was not full before it reads the log again, so that under load a
	// batch's fixed cost (its reads, its record of deliveries, its cursor)
	// is shared by many events rather than paid per commit; default
	// 100 ms.
	Linger time.Duration
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.Timeout, 10*time.Second)
	set(&c.FirstRetry, 4*time.Second)
	set(&c.MaxBackoff, time.Hour)
	set(&c.RetryWindow, 72*time.Hour)
	set(&c.Poll, time.Second)
	set(&c.CursorTTL, 30*time.Second)
	set(&c.LeaseTTL, 2*c.Timeout+20*time.Second)
	set(&c.HistoryKept, 35*24*time.Hour)
	set(&c.Linger, 100*time.Millisecond)
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	c.BatchSize = min(c.BatchSize, maxBatchItems)
	if c.PerEndpoint <= 0 {
		c.PerEndpoint = 8
	}
	if c.Total <= 0 {
		c.Total = 64
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Owner == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		c.Owner = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	if c.Client == nil && !proxied() {
		c.fast = &fasthttp.Client{
			NoDefaultUserAgentHeader: true,
			// Endpoints on one host share its connections; the attempts in
			// flight are bounded by PerEndpoint and Total already.
			MaxConnsPerHost:     c.Total,
			MaxConnWaitTimeout:  c.Timeout,
			MaxIdleConnDuration: 90 * time.Second,
			ReadTimeout:         c.Timeout,
			WriteTimeout:        c.Timeout,
			// The answer's body is the receiver's: read up to 64 KiB, never
			// kept.
			MaxResponseBodySize:    64 << 10,
			DisablePathNormalizing: true,
		}
	}
	if c.Client == nil && c.fast == nil {
		c.Client = &http.Client{
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				DialContext:         (&net.Dialer{Timeout: c.Timeout, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConnsPerHost: c.PerEndpoint,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: c.Timeout,
				ForceAttemptHTTP2:   true,
			},
			// A redirect is an answer other than 2xx: not followed, retried.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
}

// proxied reports whether the environment names an HTTP proxy.
func proxied() bool {
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		if os.Getenv(k) != "" {
			return true
		}
	}
	return false
}

// Dispatcher sends the event log to the active endpoints. Every serve
// process runs one: per endpoint, the process holding the lease on its
// place in the log (event_cursors 'webhook:<id>') reads events in batches,
// sends them concurrently across members and in order per member, and
// advances its place once per batch; every process claims the retries due,
// each under a lease, so no attempt is made by two processes at once.
type Dispatcher struct {
	svc    *Service
	ledger *loyalty.Service
	cfg    Config
	log    *slog.Logger
	total  chan struct{}
	m      *metrics

	mu        sync.Mutex
	endpoints map[string]*endpoint
	wg        sync.WaitGroup
}

// NewDispatcher builds the dispatcher of s's endpoints.
func NewDispatcher(s *Service, cfg Config) *Dispatcher {
	cfg.defaults()
	return &Dispatcher{svc: s, ledger: s.ledger, cfg: cfg, log: cfg.Logger, total: make(chan struct{}, cfg.Total),
		m: newMetrics(cfg.Registry), endpoints: map[string]*endpoint{}}
}

// Run delivers until ctx ends, then stops every attempt in flight (each is
// delivered again later: at least once), hands back its leases so another
// process takes over at once, and returns.
func (d *Dispatcher) Run(ctx context.Context) error {
	tick := time.NewTicker(max(d.cfg.Poll, 2*time.Second))
	defer tick.Stop()
	var pruned time.Time
	for {
		d.refresh(ctx)
		if time.Since(pruned) > time.Hour {
			d.prune(ctx)
			pruned = time.Now()
		}
		select {
		case <-ctx.Done():
			d.stop()
			return nil
		case <-tick.C:
		case <-d.svc.changed:
			d.mu.Lock()
			for _, e := range d.endpoints {
				e.poke()
			}
			d.mu.Unlock()
		}
	}
}

// refresh starts a worker for every active endpoint and stops those of
// endpoints deleted or made inactive.
func (d *Dispatcher) refresh(ctx context.Context) {
	var ids []string
	err := loyalty.Read(ctx, d.ledger, func(db *gorm.DB) error {
		return db.Model(&webhookRow{}).Where("active = ?", true).Order("id").Pluck("id", &ids).Error
	})
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("webhooks: list endpoints", "error", err.Error())
		}
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
		if _, ok := d.endpoints[id]; !ok {
			d.endpoints[id] = d.start(ctx, id)
		}
	}
	for id, e := range d.endpoints {
		if !want[id] {
			e.cancel()
			delete(d.endpoints, id)
		}
	}
}

// prune drops delivered rows and batch rows older than HistoryKept. Every process does it
// about hourly; deleting what another already deleted costs nothing. The
// rows go endpoint by endpoint through the key's range of ids made before
// the cutoff (ids are time-ordered: loyalty.IDFloor), pruneChunk rows a
// transaction, so a run reads what it deletes rather than the whole
// history, and holds the writer (SQLite's, the rows' pages) for a chunk
// at a time. A row delivered by a retry after the cutoff stays, by its
// updated_at, until a later run.
func (d *Dispatcher) prune(ctx context.Context) {
	before := d.ledger.Now().Add(-d.cfg.HistoryKept)
	floor := loyalty.IDFloor(before)
	var hooks []string
	err := loyalty.Read(ctx, d.ledger, func(db *gorm.DB) error {
		return db.Model(&webhookRow{}).Order("id").Pluck("id", &hooks).Error
	})
	chunks := []struct {
		sql   string
		limit int
	}{
		{`DELETE FROM webhook_deliveries WHERE webhook_id = ? AND id IN (
			SELECT id FROM webhook_deliveries WHERE webhook_id = ? AND id < ? AND status = 'delivered' AND updated_at < ?
			ORDER BY id LIMIT ?)`, pruneChunk},
		// A batch row holds up to a batch's events (500 by default).
		{`DELETE FROM webhook_delivered WHERE webhook_id = ? AND id IN (
			SELECT id FROM webhook_delivered WHERE webhook_id = ? AND id < ? AND created_at < ?
			ORDER BY id LIMIT ?)`, max(1, pruneChunk/100)},
	}
	for _, id := range hooks {
		for _, c := range chunks {
			for err == nil && ctx.Err() == nil {
				var n int64
				_, _, err = loyalty.Write(ctx, d.ledger, loyalty.IdempotencyKey{}, func(tx *loyalty.Tx) (struct{}, error) {
					r := tx.DB.Exec(c.sql, id, id, floor, before, c.limit)
					n = r.RowsAffected
					return struct{}{}, r.Error
				})
				if n < int64(c.limit) {
					break
				}
			}
		}
	}
	if err != nil && ctx.Err() == nil {
		d.log.Warn("webhooks: prune history", "error", err.Error())
	}
}

// pruneChunk is the most delivered rows one transaction of prune deletes
// (a variable for the tests).
var pruneChunk = 5000

func (d *Dispatcher) stop() {
	d.mu.Lock()
	for id, e := range d.endpoints {
		e.cancel()
		delete(d.endpoints, id)
	}
	d.mu.Unlock()
	d.wg.Wait()
	// Retries this process had claimed go back at once.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := loyalty.Write(ctx, d.ledger, loyalty.IdempotencyKey{}, func(tx *loyalty.Tx) (struct{}, error) {
		// Literal statuses: the open rows' partial index, not every row.
		return struct{}{}, tx.DB.Exec(`UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL
			WHERE lease_owner = ? AND status IN ('pending', 'held')`, d.cfg.Owner).Error
	})
	if err != nil {
		d.log.Warn("webhooks: release retries", "error", err.Error())
	}
}

// endpoint is the work of one endpoint in this process.
type endpoint struct {
	d        *Dispatcher
	id       string
	cancel   context.CancelFunc
	slots    chan struct{}
	nudge    chan struct{}
	inflight atomic.Int32

	hookMu   sync.Mutex
	hook     webhookRow
	hookRead time.Time
}

func (d *Dispatcher) start(parent context.Context, id string) *endpoint {
	ctx, cancel := context.WithCancel(parent)
	e := &endpoint{d: d, id: id, cancel: cancel, slots: make(chan struct{}, d.cfg.PerEndpoint), nudge: make(chan struct{}, 1)}
	d.wg.Add(2)
	go func() { defer d.wg.Done(); e.stream(ctx) }()
	go func() { defer d.wg.Done(); e.retries(ctx) }()
	return e
}

func (e *endpoint) poke() {
	select {
	case e.nudge <- struct{}{}:
	default:
	}
}

// errGone means the endpoint was deleted or made inactive.
var errGone = errors.New("webhook endpoint deleted or inactive")

// current is the endpoint's configuration, read again after Poll.
func (e *endpoint) current(ctx context.Context, fresh bool) (webhookRow, error) {
	e.hookMu.Lock()
	defer e.hookMu.Unlock()
	if !fresh && !e.hookRead.IsZero() && time.Since(e.hookRead) < e.d.cfg.Poll {
		return e.hook, nil
	}
	var r webhookRow
	err := loyalty.Read(ctx, e.d.ledger, func(db *gorm.DB) error {
		var err error
		r, err = getRow(db, e.id)
		return err
	})
	var le *loyalty.Error
	if errors.As(err, &le) && le.Code == loyalty.NotFound {
		return r, errGone
	}
	if err != nil {
		return r, err
	}
	if !r.Active {
		return r, errGone
	}
	e.hook, e.hookRead = r, time.Now()
	return r, nil
}

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

// stream takes the endpoint's lease when it is free and, while it holds
// it, delivers the log from the endpoint's place on.
func (e *endpoint) stream(ctx context.Context) {
	name := cursorName(e.id)
	wake := e.d.ledger.EventsWakeUntil(ctx)
	for ctx.Err() == nil {
		// A deleted endpoint's cursor is gone with it: claiming would make
		// it again.
		if _, err := e.current(ctx, false); errors.Is(err, errGone) {
			return
		}
		pos, ok, err := e.d.ledger.ClaimCursor(ctx, name, e.d.cfg.Owner, e.d.cfg.CursorTTL)
		if err != nil && ctx.Err() == nil {
			e.d.log.Warn("webhooks: claim cursor", "webhook_id", e.id, "error", err.Error())
		}
		if err != nil || !ok {
			sleep(ctx, e.d.cfg.Poll)
			continue
		}
		err = e.hold(ctx, name, pos, wake)
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = e.d.ledger.ReleaseCursor(rctx, name, e.d.cfg.Owner)
		cancel()
		if errors.Is(err, errGone) {
			return
		}
		if err != nil && ctx.Err() == nil {
			e.d.log.Warn("webhooks: stream", "webhook_id", e.id, "error", err.Error())
			sleep(ctx, e.d.cfg.Poll)
		}
	}
}

// hold delivers batch after batch while the lease holds.
func (e *endpoint) hold(ctx context.Context, name string, pos int64, wake <-chan struct{}) error {
	cfg := e.d.cfg
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	renewed := time.Now()
	// A batch's rows commit with the cursor's advance past it, so rows
	// beyond the cursor are those of an earlier engine that recorded a
	// batch and stopped before it advanced: at most up to the highest
	// event recorded when the lease was taken (only the holder records
	// new events). Batches past it need no look for them.
	recorded, err := e.recordedUpTo(ctx)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		hook, err := e.current(ctx, false)
		if err != nil {
			return err
		}
		pos = max(pos, hook.StartPosition)
		evs, err := e.d.ledger.EventsAfter(ctx, pos, loyalty.EventFilter{Types: hook.filters(), Follow: true}, cfg.BatchSize)
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		if len(evs) == 0 {
			if time.Since(renewed) > cfg.CursorTTL/3 {
				if err := e.d.ledger.AdvanceCursor(ctx, name, cfg.Owner, pos, cfg.CursorTTL); err != nil {
					return fmt.Errorf("renew cursor: %w", err)
				}
				renewed = time.Now()
			}
			select {
			case <-ctx.Done():
			case <-wake:
			case <-tick.C:
			}
			continue
		}
		// The batch is sent with the endpoint as it is now: a secret rotated
		// or a URL changed before these events applies to them.
		if hook, err = e.current(ctx, true); err != nil {
			return err
		}
		if err := e.batch(ctx, name, pos, hook, evs, recorded); err != nil {
			return err
		}
		pos = evs[len(evs)-1].Position
		renewed = time.Now()
		if len(evs) < cfg.BatchSize {
			sleep(ctx, cfg.Linger)
		}
	}
	return ctx.Err()
}

// batch delivers one read of the log: the members' runs concurrently, each
// in order, and then records every delivery and advances the cursor past
// the batch in one write, which commits only while this process holds the
// lease. It renews the lease while the batch lasts, and stops the batch if
// the lease is lost.
func (e *endpoint) batch(ctx context.Context, name string, pos int64, hook webhookRow, evs []loyalty.Event, recorded int64) error {
	cfg := e.d.cfg
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		t := time.NewTicker(cfg.CursorTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := e.d.ledger.AdvanceCursor(ctx, name, cfg.Owner, pos, cfg.CursorTTL); err != nil {
					cancel(fmt.Errorf("renew cursor: %w", err))
					return
				}
			}
		}
	}()
	defer func() { cancel(nil); <-renewDone }()

	skip, blocked, err := e.known(ctx, evs, recorded)
	if err != nil {
		return err
	}
	// Runs per member, in log order; events with no member each run alone.
	var runs [][]loyalty.Event
	at := map[string]int{}
	for _, ev := range evs {
		n, _ := eventNumber(ev.ID)
		if skip[n] {
			continue
		}
		if ev.MemberID == nil {
			runs = append(runs, []loyalty.Event{ev})
			continue
		}
		i, ok := at[*ev.MemberID]
		if !ok {
			i = len(runs)
			at[*ev.MemberID] = i
			runs = append(runs, nil)
		}
		runs[i] = append(runs[i], ev)
	}
	// The runs go to a fixed set of workers, as many as the endpoint may
	// have attempts in flight, each taking the next run when it is done
	// with one: a slow member's run holds one worker, the others carry on.
	// (A goroutine per run cost the engine their stacks and scheduling,
	// hundreds per batch under load.)
	rows := make([][]deliveryRow, len(runs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(cfg.PerEndpoint, len(runs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sg := newSigner(hook.Secret)
			for i := range next {
				rows[i] = e.run(ctx, hook, runs[i], blocked, sg)
			}
		}()
	}
feed:
	for i := range runs {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	// The deliveries made go into one batch row; the others (failed,
	// held) are rows of their own, which retries change.
	var done, open []deliveryRow
	fresh := true
	for _, r := range rows {
		for i := range r {
			if r[i].Status == Delivered {
				done = append(done, r[i])
				continue
			}
			// Only a row of its own needs an id; a batch's deliveries take
			// theirs from the batch row.
			r[i].ID = loyalty.NewID()
			open = append(open, r[i])
			fresh = fresh && r[i].EventID > recorded
		}
	}
	end := evs[len(evs)-1].Position
	if len(done)+len(open) == 0 {
		if err := e.d.ledger.AdvanceCursor(ctx, name, cfg.Owner, end, cfg.CursorTTL); err != nil {
			return fmt.Errorf("advance cursor: %w", err)
		}
		return nil
	}
	var history batchRow
	if len(done) > 0 {
		if history, err = newBatchRow(hook.ID, done, e.d.ledger.Now()); err != nil {
			return fmt.Errorf("record deliveries: %w", err)
		}
	}
	_, _, err = loyalty.Write(ctx, e.d.ledger, loyalty.IdempotencyKey{}, func(tx *loyalty.Tx) (struct{}, error) {
		if len(done) > 0 {
			if err := insertBatch(tx.DB, history); err != nil {
				return struct{}{}, err
			}
		}
		if len(open) > 0 {
			if err := insertDeliveries(tx.DB, open, fresh); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, advanceCursor(tx, name, cfg.Owner, end, cfg.CursorTTL)
	})
	if err != nil {
		return fmt.Errorf("record deliveries: %w", err)
	}
	if len(open) > 0 {
		e.poke()
	}
	return nil
}

// run delivers one member's run of a batch in order and returns its
// delivery rows: from the first that is not delivered on, the member's
// later events are held behind it, as they are when the member already
// had an open delivery (blocked). It stops, with the rows so far, when ctx
// ends; the batch then records nothing.
func (e *endpoint) run(ctx context.Context, hook webhookRow, run []loyalty.Event, blocked map[string]bool, sg *signer) []deliveryRow {
	out := make([]deliveryRow, 0, len(run))
	held := run[0].MemberID != nil && blocked[*run[0].MemberID]
	for _, ev := range run {
		n, _ := eventNumber(ev.ID)
		now := e.d.ledger.Now()
		row := deliveryRow{WebhookID: hook.ID, EventID: n, EventPosition: ev.Position, EventType: ev.Type,
			MemberID: ev.MemberID, CreatedAt: now, UpdatedAt: now}
		if held {
			row.Status, row.NextAttemptAt = Held, &now
			out = append(out, row)
			continue
		}
		res, ok := e.send(ctx, hook, ev, sg)
		if !ok {
			return out
		}
		e.d.apply(&row, res, e.d.ledger.Now())
		held = row.Status != Delivered && ev.MemberID != nil
		out = append(out, row)
	}
	return out
}

// advanceCursor is loyalty's AdvanceCursor inside the write tx: the
// deliveries of a batch and the cursor past it commit together, or, when
// another process took the lease, neither does.
func advanceCursor(tx *loyalty.Tx, name, owner string, position int64, ttl time.Duration) error {
	r := tx.DB.Exec(`UPDATE event_cursors SET position = ?, lease_until = ?, updated_at = ?
		WHERE name = ? AND lease_owner = ? AND lease_until > ?`, position, tx.Now.Add(ttl), tx.Now, name, owner, tx.Now)
	if r.Error != nil {
		return r.Error
	}
	if r.RowsAffected != 1 {
		return fmt.Errorf("advance cursor %s for %s: %w", name, owner, loyalty.ErrLeaseLost)
	}
	return nil
}

// recordedUpTo is the highest event id the endpoint has a delivery for
// (0: none), read from the end of the (webhook_id, event_id) key and of
// the batch rows' (webhook_id, last_event_id) index.
func (e *endpoint) recordedUpTo(ctx context.Context) (int64, error) {
	var rows, batches *int64
	err := loyalty.Read(ctx, e.d.ledger, func(db *gorm.DB) error {
		if err := db.Raw("SELECT max(event_id) FROM webhook_deliveries WHERE webhook_id = ?", e.id).Scan(&rows).Error; err != nil {
			return err
		}
		return db.Raw("SELECT max(last_event_id) FROM webhook_delivered WHERE webhook_id = ?", e.id).Scan(&batches).Error
	})
	if err != nil {
		return 0, fmt.Errorf("read deliveries: %w", err)
	}
	var top int64
	for _, p := range []*int64{rows, batches} {
		if p != nil {
			top = max(top, *p)
		}
	}
	return top, nil
}

// known reads which events of the batch already have a delivery, a row
// or an item of a batch row (skip them; looked for only among the events
// at or below recorded, which is none once the stream is past what an
// earlier holder recorded) and which
// of its members have an open delivery to this endpoint (their events are
// held behind it). Both are key lookups, one per event or member, so their
// cost follows the batch, not the endpoint's history.
func (e *endpoint) known(ctx context.Context, evs []loyalty.Event, recorded int64) (skip map[int64]bool, blocked map[string]bool, err error) {
	var nums []int64
	var members []string
	seen := map[string]bool{}
	for _, ev := range evs {
		if n, _ := eventNumber(ev.ID); n <= recorded {
			nums = append(nums, n)
		}
		if ev.MemberID != nil && !seen[*ev.MemberID] {
			seen[*ev.MemberID] = true
			members = append(members, *ev.MemberID)
		}
	}
	skip, blocked = map[int64]bool{}, map[string]bool{}
	// SQLite's planner, without statistics, would rather walk the
	// endpoint's open rows by status than look each member up.
	open := openDeliveries(e.d.ledger, "webhook_deliveries_open")
	err = loyalty.Read(ctx, e.d.ledger, func(db *gorm.DB) error {
		if len(nums) > 0 {
			var hits []int64
			if err := db.Raw("SELECT event_id FROM webhook_deliveries WHERE webhook_id = ? AND event_id IN ?", e.id, nums).
				Scan(&hits).Error; err != nil {
				return err
			}
			for _, n := range hits {
				skip[n] = true
			}
			slices.Sort(nums)
			batched, err := batchEvents(db, e.id, nums)
			if err != nil {
				return err
			}
			maps.Copy(skip, batched)
		}
		if len(members) == 0 {
			return nil
		}
		// The statuses are literals so that the partial index of the open
		// rows applies.
		var held []string
		if err := db.Raw("SELECT DISTINCT member_id FROM "+open+" WHERE webhook_id = ? AND member_id IN ? AND status IN ('pending', 'held')",
			e.id, members).Scan(&held).Error; err != nil {
			return err
		}
		for _, m := range held {
			blocked[m] = true
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read deliveries: %w", err)
	}
	return skip, blocked, nil
}

// openDeliveries is the FROM of a read of an endpoint's open deliveries
// by the partial index named: on SQLite, whose planner has no statistics
// to prefer it to the endpoint's key, the index is named in the query.
func openDeliveries(ledger *loyalty.Service, index string) string {
	if ledger.Store().Dialect == loyalty.Postgres {
		return "webhook_deliveries"
	}
	return "webhook_deliveries INDEXED BY " + index
}

// result is the outcome of one attempt.
type result struct {
	code    int
	latency time.Duration
	err     string
}

func (r result) ok() bool { return r.err == "" && r.code >= 200 && r.code < 300 }

// send makes one attempt. ok is false when ctx ended first (shutdown, or
// the lease lost): the attempt counts for nothing and is made again.
// sg signs the request; nil makes a signer for this attempt alone.
func (e *endpoint) send(ctx context.Context, hook webhookRow, ev loyalty.Event, sg *signer) (result, bool) {
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return result{}, false
	}
	defer func() { <-e.slots }()
	select {
	case e.d.total <- struct{}{}:
	case <-ctx.Done():
		return result{}, false
	}
	defer func() { <-e.d.total }()

	body := ev.JSON()
	if sg == nil {
		sg = newSigner(hook.Secret)
	}
	if fc := e.d.cfg.fast; fc != nil {
		return e.sendFast(ctx, fc, hook, ev, body, sg)
	}
	actx, cancel := context.WithTimeout(ctx, e.d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, hook.URL, bytes.NewReader(body))
	if err != nil {
		return result{err: "the URL cannot be requested"}, true
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "loyalty-webhooks/1")
	req.Header.Set(HeaderEventID, ev.ID)
	req.Header.Set(HeaderEventType, ev.Type)
	req.Header.Set(HeaderSignature, string(sg.header(time.Now(), body)))
	start := time.Now()
	res, err := e.d.cfg.Client.Do(req)
	lat := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return result{}, false
		}
		return result{latency: lat, err: describe(err, actx, e.d.cfg.Timeout)}, true
	}
	// The answer's body is read (bounded) so the connection is reused, and
	// dropped: it is the receiver's, and never stored or logged.
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	r := result{code: res.StatusCode, latency: lat}
	if !r.ok() {
		r.err = fmt.Sprintf("the endpoint answered %d", res.StatusCode)
	}
	if ctx.Err() != nil && !r.ok() {
		return result{}, false
	}
	return r, true
}

// sendFast is send's attempt through the fasthttp client. It cannot be
// cut short: when ctx ends during it, it runs to its answer or its
// timeout, and counts for nothing unless it succeeded.
func (e *endpoint) sendFast(ctx context.Context, fc *fasthttp.Client, hook webhookRow, ev loyalty.Event, body []byte, sg *signer) (result, bool) {
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI(hook.URL)
	req.Header.SetMethod(http.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.SetUserAgent("loyalty-webhooks/1")
	req.Header.Set(HeaderEventID, ev.ID)
	req.Header.Set(HeaderEventType, ev.Type)
	req.Header.SetBytesV(HeaderSignature, sg.header(time.Now(), body))
	req.SetBodyRaw(body)
	start := time.Now()
	err := fc.DoDeadline(req, res, start.Add(e.d.cfg.Timeout))
	lat := time.Since(start)
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		// The status line and headers were read: the answer stands, its
		// body is dropped with the connection.
		err = nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return result{}, false
		}
		return result{latency: lat, err: describe(err, ctx, e.d.cfg.Timeout)}, true
	}
	r := result{code: res.StatusCode(), latency: lat}
	if !r.ok() {
		r.err = fmt.Sprintf("the endpoint answered %d", r.code)
	}
	if ctx.Err() != nil && !r.ok() {
		return result{}, false
	}
	return r, true
}

// describe says why a request failed in a few words, without the URL
// (which may carry a token in its query) or anything the receiver sent.
func describe(err error, actx context.Context, timeout time.Duration) string {
	// net.Error's Timeout, or fasthttp's timeouts (which have no Temporary).
	var ne interface{ Timeout() bool }
	var oe *net.OpError
	var de *net.DNSError
	switch {
	case errors.Is(actx.Err(), context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, fasthttp.ErrDialTimeout):
		return fmt.Sprintf("no answer within %s", timeout)
	case errors.As(err, &de):
		return "the host name does not resolve"
	case errors.As(err, &oe) && oe.Op == "dial":
		return "connection refused or unreachable"
	case errors.As(err, &oe):
		return "the connection failed"
	}
	return "the request failed"
}

// apply records an attempt's outcome on a delivery row: delivered, or
// pending with the next attempt after a jittered, doubling wait, or failed
// once the retry window since its first failure has passed.
func (d *Dispatcher) apply(r *deliveryRow, res result, now time.Time) {
	defer func() { d.m.observe(r.Status, res.latency) }()
	r.Attempts++
	r.UpdatedAt = now
	code, lat := res.code, res.latency.Milliseconds()
	r.StatusCode, r.LatencyMS = nil, &lat
	if code != 0 {
		r.StatusCode = &code
	}
	r.LeaseOwner, r.LeaseUntil = nil, nil
	if res.ok() {
		r.Status, r.Error, r.NextAttemptAt, r.DeliveredAt = Delivered, nil, nil, &now
		return
	}
	msg := res.err
	r.Error = &msg
	if r.FirstFailedAt == nil {
		first := now
		r.FirstFailedAt = &first
	}
	elapsed := now.Sub(*r.FirstFailedAt)
	if elapsed >= d.cfg.RetryWindow {
		r.Status, r.NextAttemptAt = Failed, nil
		return
	}
	next := now.Add(d.backoff(elapsed))
	r.Status, r.NextAttemptAt = Pending, &next
}

// backoff is the wait before the next attempt of a delivery that has been
// failing for elapsed: FirstRetry, then the time failed so far plus
// FirstRetry (which doubles the wait at every attempt), at most
// MaxBackoff, each jittered down by up to half so that deliveries failing
// together spread out.
func (d *Dispatcher) backoff(elapsed time.Duration) time.Duration {
	w := min(d.cfg.FirstRetry+elapsed, d.cfg.MaxBackoff)
	return w/2 + mrand.N(w/2+1)
}
