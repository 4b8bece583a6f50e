package loyalty

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// The event log (§14), a transactional outbox.
//
// Every change an outside system cares about appends its event rows in the
// transaction that makes the change (appendEvents, or one more unnest
// insert in pgWriteSQL, or INSERT … SELECT in the set-based jobs), so a
// committed change always has its events and a rolled-back one never does.
//
// Consumers read by position, which is commit order. SQLite has one writer:
// a row's position is its id, given at insert. On PostgreSQL ids are taken
// before commit and transactions commit out of id order, so an event has
// no position at insert: its insert queues its id (event_queue, filled by
// a trigger on events), and a sequencer (RunSequencer, in every serve
// process, one pass at a time across processes through an advisory lock)
// gives the queued ids it can see — those of ended, committed
// transactions; a running transaction's rows are invisible to it —
// positions max(position)+1, … in id order, as narrow rows of
// event_positions (an event row is written once). Positions only grow, and
// a reader that pages by position never skips a row: a row without a
// position yet is given one above every position already given. Per member, ids are taken under the member's row
// lock, so the member's id order is its commit order, and its positions
// follow.

// Event types of §14.
const (
	EventMemberCreated       = "member.created"
	EventMemberUpdated       = "member.updated"
	EventMemberErased        = "member.erased"
	EventPurchaseCreated     = "purchase.created"
	EventPurchaseReturned    = "purchase.returned"
	EventPointsAdjusted      = "points.adjusted"
	EventPointsExpired       = "points.expired"
	EventRedemptionCreated   = "redemption.created"
	EventRedemptionCancelled = "redemption.cancelled"
	EventCouponUsed          = "coupon.used"
	EventTierChanged         = "tier.changed"
	EventGiftGranted         = "gift.granted"
	EventGiftClaimed         = "gift.claimed"
	EventOfferAssigned       = "offer.assigned"
	EventFeedbackReceived    = "feedback.received"
	EventBalanceChanged      = "balance.changed"
)

// EventTypes are the types of §14, in its order.
var EventTypes = []string{EventMemberCreated, EventMemberUpdated, EventMemberErased, EventPurchaseCreated,
	EventPurchaseReturned, EventPointsAdjusted, EventPointsExpired, EventRedemptionCreated, EventRedemptionCancelled,
	EventCouponUsed, EventTierChanged, EventGiftGranted, EventGiftClaimed, EventOfferAssigned, EventFeedbackReceived,
	EventBalanceChanged}

// Event is one event of the log.
type Event struct {
	ID         string // "evt_<id>"
	Position   int64
	Type       string
	OccurredAt time.Time
	MemberID   *string
	Data       json.RawMessage
}

// eventWire is the §14 wire form.
type eventWire struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	OccurredAt string          `json:"occurred_at"`
	MemberID   *string         `json:"member_id"`
	Data       json.RawMessage `json:"data"`
}

// JSON is the §14 wire form {"id","type","occurred_at","member_id","data"};
// deliveries, NATS and GET /v1/events all send exactly these bytes: what
// encoding/json makes of eventWire, built by hand (every delivery and every
// publish makes one, and reflection and the rescan of data were most of
// their cost). data is the engine's own JSON, written by json.Marshal in
// the change's transaction, so it is copied as it is; a row whose data is
// not JSON is sent with null data rather than not at all.
func (e Event) JSON() []byte {
	if !plainJSON(e.ID) || !plainJSON(e.Type) || (e.MemberID != nil && !plainJSON(*e.MemberID)) || !compactJSON(e.Data) {
		return e.slowJSON()
	}
	b := make([]byte, 0, 96+len(e.ID)+len(e.Type)+len(e.Data))
	b = append(b, `{"id":"`...)
	b = append(b, e.ID...)
	b = append(b, `","type":"`...)
	b = append(b, e.Type...)
	b = append(b, `","occurred_at":"`...)
	b = e.OccurredAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","member_id":`...)
	if e.MemberID == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = append(b, *e.MemberID...)
		b = append(b, '"')
	}
	b = append(b, `,"data":`...)
	b = append(b, e.Data...)
	return append(b, '}')
}

// slowJSON is JSON through encoding/json, for the strings that need
// escaping and data that is not compact.
func (e Event) slowJSON() []byte {
	b, err := json.Marshal(e.wire())
	if err != nil {
		w := e.wire()
		w.Data = json.RawMessage("null")
		b, _ = json.Marshal(w)
	}
	return b
}

// plainJSON reports whether s is its own JSON string body as encoding/json
// writes it: printable ASCII without quote, backslash or the HTML
// characters it escapes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// compactJSON reports, without parsing, whether data looks like what
// json.Marshal writes of an object or array: it starts and ends as one and
// holds no byte encoding/json would rewrite (white space between tokens,
// the HTML characters, U+2028 and U+2029, control characters). A string
// value's spaces make it answer false: the slow path is then exact.
func compactJSON(data []byte) bool {
	if len(data) < 2 || !(data[0] == '{' && data[len(data)-1] == '}' || data[0] == '[' && data[len(data)-1] == ']') {
		return false
	}
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c <= 0x20, c == '<', c == '>', c == '&', c == 0xe2:
			return false
		}
	}
	return true
}

func (e Event) wire() eventWire {
	return eventWire{ID: e.ID, Type: e.Type, OccurredAt: e.OccurredAt.UTC().Format(time.RFC3339Nano), MemberID: e.MemberID, Data: e.Data}
}

// MarshalJSON is JSON, so that a list of events encodes each the same way.
func (e Event) MarshalJSON() ([]byte, error) { return e.JSON(), nil }

// EventID is the public id of the event row id.
func EventID(id int64) string { return "evt_" + strconv.FormatInt(id, 10) }

// EventFilter selects events: Types holds exact types or "prefix.*" ("*"
// or none: all); MemberID "" means any member.
type EventFilter struct {
	Types    []string
	MemberID string
	// Follow marks the read of a sink that follows the end of the log
	// (the NATS sink, a webhook stream): with every type and no member,
	// it may be answered from the events another sink of the process
	// read a moment before (events_tail.go), and then may end before the
	// newest event. Reads for clients (GET /v1/events, the console) do
	// not set it: they see every event committed before them.
	Follow bool
}

// MatchEventType reports whether typ is selected by filters: exact types
// or "prefix.*"; "*" or no filter selects every type.
func MatchEventType(filters []string, typ string) bool {
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if f == "*" || f == typ {
			return true
		}
		if p, ok := strings.CutSuffix(f, "*"); ok && strings.HasSuffix(p, ".") && strings.HasPrefix(typ, p) {
			return true
		}
	}
	return false
}

// ValidEventFilter checks one filter: a type of §14, "*", or "prefix.*"
// whose prefix starts at least one type of §14.
func ValidEventFilter(f string) bool {
	if f == "*" {
		return true
	}
	for _, t := range EventTypes {
		if MatchEventType([]string{f}, t) && (f == t || strings.HasSuffix(f, ".*")) {
			return true
		}
	}
	return false
}

// newEvent is an event a write appends.
type newEvent struct {
	typ    string
	member *string
	at     time.Time
	data   []byte
	// answer: data is the JSON of the write's answer, which writeOnce
	// fills in from what it marshalled for the idempotency record.
	answer bool
}

// eventOf marshals v as an event's data.
func eventOf(typ string, member *string, at time.Time, v any) (newEvent, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return newEvent{}, fmt.Errorf("event %s: %w", typ, err)
	}
	return newEvent{typ: typ, member: member, at: ts(at), data: b}, nil
}

// appendEvents writes evs in tx, the transaction of their change, in one
// statement; once tx commits, the log's consumers are woken.
func appendEvents(tx *gorm.DB, evs ...newEvent) error {
	if len(evs) == 0 {
		return nil
	}
	if tx.Dialector.Name() != Postgres {
		// SQLite: the fixed texts of flushSQLite, through the statement
		// cache, past GORM's statement building (a purchase's path).
		for len(evs) > 0 {
			n := min(len(evs), maxRowsPerInsert)
			args := make([]any, 0, 4*n)
			for _, e := range evs[:n] {
				args = append(args, e.typ, e.member, ts(e.at), string(e.data))
			}
			if _, err := execSQLite(tx, insertSQL("events", n), args...); err != nil {
				return fmt.Errorf("append events: %w", err)
			}
			evs = evs[n:]
		}
		afterCommit(tx, hubOf(tx).committed)
		return nil
	}
	// Through pgx on the transaction's own connection (withPGX): one
	// prepared text whatever the events, each column an array, past
	// GORM's building of a statement with four parameters an event.
	if ok, err := withPGX(tx, func(ctx context.Context, c *pgx.Conn) error {
		types, members, ats, data := make([]string, len(evs)), make([]*string, len(evs)), make([]time.Time, len(evs)), make([]string, len(evs))
		for i, e := range evs {
			types[i], members[i], ats[i], data[i] = e.typ, e.member, ts(e.at), string(e.data)
		}
		_, err := c.Exec(ctx, pgAppendEventsSQL, types, members, ats, data)
		return err
	}); ok || err != nil {
		if err != nil {
			return fmt.Errorf("append events: %w", err)
		}
		afterCommit(tx, hubOf(tx).committed)
		return nil
	}
	var q strings.Builder
	q.WriteString("INSERT INTO events (type, member_id, occurred_at, data) VALUES ")
	args := make([]any, 0, 4*len(evs))
	for i, e := range evs {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?)")
		args = append(args, e.typ, e.member, ts(e.at), string(e.data))
	}
	if err := tx.Exec(q.String(), args...).Error; err != nil {
		return fmt.Errorf("append events: %w", err)
	}
	afterCommit(tx, hubOf(tx).committed)
	return nil
}

// pgAppendEventsSQL appends events from four arrays, in their order (the
// ids are taken as the rows come, and a member's events are read in id
// order).
const pgAppendEventsSQL = `INSERT INTO events (type, member_id, occurred_at, data)
	SELECT e.type, e.member_id, e.occurred_at, e.data
	FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) WITH ORDINALITY AS e(type, member_id, occurred_at, data, n)
	ORDER BY e.n`

// emitKey holds, in a write's context, the events its change emits
// deep inside (the balance.changed of updateAccount), which writeOnce
// appends after the event of the resource it answers.
type emitKey struct{}

// Emit appends an event of typ about member ("" none) whose data is v's
// JSON, in the transaction: for the packages built on the ledger.
func (t *Tx) Emit(typ, member string, v any) error {
	var m *string
	if member != "" {
		m = &member
	}
	return addEvent(t.DB, typ, m, t.Now, v)
}

// EmitAnswer emits an event of typ about member whose data is the answer
// of this write (Write's result), as marshalled once for its idempotency
// record: the resource as the API returns it. Only inside Write.
func (t *Tx) EmitAnswer(typ, member string) error {
	if _, ok := t.DB.Statement.Context.Value(emitKey{}).(*[]newEvent); !ok {
		return fmt.Errorf("event %s: EmitAnswer outside Write", typ)
	}
	m := member
	return emit(t.DB, newEvent{typ: typ, member: &m, at: ts(t.Now), answer: true})
}

// emit appends evs in tx, or holds them for the write's writeOnce.
func emit(tx *gorm.DB, evs ...newEvent) error {
	if held, ok := tx.Statement.Context.Value(emitKey{}).(*[]newEvent); ok {
		*held = append(*held, evs...)
		return nil
	}
	return appendEvents(tx, evs...)
}

// holdEvents returns tx with a place for the events emit holds.
func holdEvents(tx *gorm.DB) (*gorm.DB, *[]newEvent) {
	held := &[]newEvent{}
	return tx.WithContext(context.WithValue(tx.Statement.Context, emitKey{}, held)), held
}

// eventful is a write's answer that is also the data of its events:
// events returns them, given the answer's JSON body (marshalled once, for
// the idempotency record and the events both).
type eventful interface {
	events(body []byte, at time.Time) []newEvent
}

// answerEvents orders the events of a write that answers v (JSON body):
// the answer's own, then those its change emitted, balance.changed last.
func answerEvents(v any, body []byte, at time.Time, held []newEvent) []newEvent {
	var all, evs, balances []newEvent
	if e, ok := v.(eventful); ok {
		all = e.events(body, at)
	}
	for _, e := range held {
		if e.answer {
			e.data, e.answer = body, false
			all = append([]newEvent{e}, all...)
		}
	}
	for _, e := range append(all, held...) {
		if e.answer {
			continue
		}
		if e.typ == EventBalanceChanged {
			balances = append(balances, e)
			continue
		}
		evs = append(evs, e)
	}
	return append(evs, balances...)
}

// trailingObject returns the JSON value of the last field of the object
// body when that field is key (the answers that end with their balance),
// a slice of body, not a copy; nil when it is not.
func trailingObject(body []byte, key string) []byte {
	tag := []byte(`,"` + key + `":`)
	i := bytes.LastIndex(body, tag)
	if i < 0 || len(body) == 0 || body[len(body)-1] != '}' {
		return nil
	}
	v := body[i+len(tag) : len(body)-1]
	if !json.Valid(v) {
		return nil
	}
	return v
}

// balanceEvent is balance.changed with the §7 balance b, whose JSON is
// raw when the caller has it.
func balanceEvent(b Balance, raw []byte, at time.Time) newEvent {
	if raw == nil {
		raw, _ = json.Marshal(b)
	}
	m := b.MemberID
	return newEvent{typ: EventBalanceChanged, member: &m, at: ts(at), data: raw}
}

// tierEvent is tier.changed of member from one tier code (nil: none) to
// another.
func tierEvent(member string, from, to *string, at time.Time) newEvent {
	data, _ := json.Marshal(struct {
		MemberID string  `json:"member_id"`
		From     *string `json:"from"`
		To       *string `json:"to"`
	}{member, from, to})
	return newEvent{typ: EventTierChanged, member: &member, at: ts(at), data: data}
}

// addEvent marshals v and appends it in tx.
func addEvent(tx *gorm.DB, typ string, member *string, at time.Time, v any) error {
	e, err := eventOf(typ, member, at, v)
	if err != nil {
		return err
	}
	return emit(tx, e)
}

// The event hub: who waits for new events in this process, and the
// sequencer's prompt. It is a GORM plugin of the store's configuration so
// that code holding only a transaction reaches it.
const eventsPlugin = "loyalty:events"

type eventHub struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
	// kick prompts the sequencer (PostgreSQL): this process committed
	// events. nil on SQLite, whose events are positioned as inserted.
	kick chan struct{}
}

func newEventHub(postgres bool) *eventHub {
	h := &eventHub{subs: map[chan struct{}]struct{}{}}
	if postgres {
		h.kick = make(chan struct{}, 1)
	}
	return h
}

func (*eventHub) Name() string              { return eventsPlugin }
func (*eventHub) Initialize(*gorm.DB) error { return nil }

func hubOf(db *gorm.DB) *eventHub {
	h, _ := db.Config.Plugins[eventsPlugin].(*eventHub)
	return h
}

// committed is called once a transaction that appended events committed.
func (h *eventHub) committed() {
	if h == nil {
		return
	}
	if h.kick != nil {
		select {
		case h.kick <- struct{}{}:
		default:
		}
		return
	}
	h.wake()
}

// wake tells every subscriber, without waiting for any.
func (h *eventHub) wake() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (h *eventHub) subscribe() chan struct{} {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return c
}

func (h *eventHub) unsubscribe(c chan struct{}) {
	h.mu.Lock()
	delete(h.subs, c)
	h.mu.Unlock()
}

// EventsWake returns a channel that receives (non-blocking send, capacity
// 1) after this process committed events (SQLite) or a sequencer pass of
// this process saw new positions (PostgreSQL, also those another process
// gave): consumers wait on it or on a ~250 ms ticker. Each caller gets its
// own channel, kept for the life of the service; a caller that goes away
// before then (a stream's connection) uses EventsWakeUntil.
func (s *Service) EventsWake() <-chan struct{} { return hubOf(s.store.w).subscribe() }

// EventsWakeUntil is EventsWake for a subscriber that goes away when ctx
// ends: its channel is dropped then.
func (s *Service) EventsWakeUntil(ctx context.Context) <-chan struct{} {
	h := hubOf(s.store.w)
	c := h.subscribe()
	context.AfterFunc(ctx, func() { h.unsubscribe(c) })
	return c
}

// posCol is the column holding an event's position in the dialect: SQLite's
// position is its id, which its primary key orders.
func (s *Store) posCol() string {
	if s.Dialect == Postgres {
		return "position"
	}
	return "id"
}

// positionsTable is the table whose primary key orders the positions
// given: SQLite's events, PostgreSQL's event_positions.
func (s *Store) positionsTable() string {
	if s.Dialect == Postgres {
		return "event_positions"
	}
	return "events"
}

// positionedEvents is the FROM of a read of positioned events, whose
// columns are id, position, type, member_id, occurred_at and data: on
// PostgreSQL the events joined to their positions.
func (s *Store) positionedEvents() string {
	if s.Dialect == Postgres {
		return "events JOIN event_positions USING (id)"
	}
	return "events"
}

// EventsAfter returns up to limit positioned events with position > after,
// in position order, selected by f.
func (s *Service) EventsAfter(ctx context.Context, after int64, f EventFilter, limit int) ([]Event, error) {
	if limit <= 0 {
		return nil, Invalidf("limit", "must be above 0")
	}
	// The sinks' reads of every event follow the end of the log together:
	// they share the tail.
	whole := f.Follow && f.MemberID == "" && anyAll(f.Types)
	var gen uint64
	if whole {
		if evs, ok := s.store.tail.get(after, limit, time.Now()); ok {
			return evs, nil
		}
		gen = s.store.tail.generation()
	}
	read := time.Now()
	pos := s.store.posCol()
	q := s.store.read(ctx).Table(s.store.positionedEvents()).Select("id, "+pos+" AS position, type, member_id, occurred_at, data").
		Where(pos+" > ?", after)
	if f.MemberID != "" {
		q = q.Where("member_id = ?", f.MemberID)
	}
	if !anyAll(f.Types) {
		// Exact types by equality, "prefix.*" as a range of the column:
		// 'prefix.' <= type < 'prefix/' ('/' follows '.').
		var conds []string
		var args []any
		for _, t := range f.Types {
			if p, ok := strings.CutSuffix(t, "*"); ok && strings.HasSuffix(p, ".") {
				conds = append(conds, "(type >= ? AND type < ?)")
				args = append(args, p, p[:len(p)-1]+"/")
				continue
			}
			conds = append(conds, "type = ?")
			args = append(args, t)
		}
		q = q.Where("("+strings.Join(conds, " OR ")+")", args...)
	}
	rows, err := q.Order(pos).Limit(limit).Rows()
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var (
			id   int64
			e    Event
			data string
		)
		if err := rows.Scan(&id, &e.Position, &e.Type, &e.MemberID, &e.OccurredAt, &data); err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
		e.ID, e.Data, e.OccurredAt = EventID(id), json.RawMessage(data), e.OccurredAt.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	if whole {
		s.store.tail.put(after, out, gen, read)
	}
	return out, nil
}

// anyAll reports whether filters select every type (none, or "*").
func anyAll(filters []string) bool {
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if f == "*" {
			return true
		}
	}
	return false
}

// EventsHead is the highest position given so far (0: none): a consumer
// that starts from now rather than from the oldest kept event starts here.
func (s *Service) EventsHead(ctx context.Context) (int64, error) {
	var head *int64
	if err := s.store.read(ctx).Raw("SELECT max(" + s.store.posCol() + ") FROM " + s.store.positionsTable()).Scan(&head).Error; err != nil {
		return 0, fmt.Errorf("events head: %w", err)
	}
	if head == nil {
		return 0, nil
	}
	return *head, nil
}

// ErrLeaseLost answers a cursor's owner whose lease another owner took.
var ErrLeaseLost = errors.New("event cursor lease lost")

// ClaimCursor takes the lease of the consumer cursor name for owner until
// ttl from now, creating the cursor at position 0 when absent, and returns
// its position. ok is false, with no error, when another owner holds an
// unexpired lease. The holder claiming again renews its lease.
func (s *Service) ClaimCursor(ctx context.Context, name, owner string, ttl time.Duration) (position int64, ok bool, err error) {
	now := ts(s.now())
	err = s.store.write(ctx, func(tx *gorm.DB) error {
		if err := tx.Exec(`INSERT INTO event_cursors (name, position, updated_at) VALUES (?, 0, ?) ON CONFLICT (name) DO NOTHING`,
			name, now).Error; err != nil {
			return err
		}
		var got []int64
		if err := tx.Raw(`UPDATE event_cursors SET lease_owner = ?, lease_until = ?, updated_at = ?
			WHERE name = ? AND (lease_owner IS NULL OR lease_owner = ? OR lease_until IS NULL OR lease_until <= ?) RETURNING position`,
			owner, now.Add(ttl), now, name, owner, now).Scan(&got).Error; err != nil {
			return err
		}
		if len(got) == 1 {
			position, ok = got[0], true
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("claim cursor %s: %w", name, err)
	}
	return position, ok, nil
}

// AdvanceCursor stores position as the cursor's and renews owner's lease
// for ttl; ErrLeaseLost when owner no longer holds it.
func (s *Service) AdvanceCursor(ctx context.Context, name, owner string, position int64, ttl time.Duration) error {
	now := ts(s.now())
	var n int64
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		r := tx.Exec(`UPDATE event_cursors SET position = ?, lease_until = ?, updated_at = ?
			WHERE name = ? AND lease_owner = ? AND lease_until > ?`, position, now.Add(ttl), now, name, owner, now)
		n = r.RowsAffected
		return r.Error
	})
	if err != nil {
		return fmt.Errorf("advance cursor %s: %w", name, err)
	}
	if n != 1 {
		return fmt.Errorf("advance cursor %s for %s: %w", name, owner, ErrLeaseLost)
	}
	return nil
}

// ReleaseCursor gives up owner's lease of the cursor, if it holds it.
func (s *Service) ReleaseCursor(ctx context.Context, name, owner string) error {
	now := ts(s.now())
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		return tx.Exec(`UPDATE event_cursors SET lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE name = ? AND lease_owner = ?`,
			now, name, owner).Error
	})
	if err != nil {
		return fmt.Errorf("release cursor %s: %w", name, err)
	}
	return nil
}

// The sequencer (PostgreSQL).

// sequencerLock is the advisory lock key (with the schema's hash) that
// makes the sequencer's passes of every process on one database run one at
// a time.
const sequencerLock int32 = 0x6c657631 // "lev1"

// sequenceBatch bounds the rows one pass positions; a full pass is followed
// by another at once.
const sequenceBatch = 10000

// sequencerInterval is how often a sequencer looks for rows committed by
// other processes, besides when its own process committed events.
const sequencerInterval = 100 * time.Millisecond

// sequencerLinger is the least time between two passes that a commit of
// this process prompts.
const sequencerLinger = 20 * time.Millisecond

// pgSequenceSQL positions, in id order, the queued events the statement
// sees (those of committed transactions only), above the highest position
// given: it takes their ids off event_queue and adds their narrow rows to
// event_positions, and answers how many it positioned and the highest
// position now. The event rows themselves are not written again.
//
// The batch's ids are taken as an array (an InitPlan, read once) rather
// than as an IN (subquery): the queue is drained as fast as it fills, so a
// vacuum (vacuumQueue) finds it nearly empty and records it so, and with
// that estimate PostgreSQL joined the queue to its own first rows in a
// nested loop that read them again for each row — minutes a pass once an
// import had queued a million ids faster than the passes took them.
var pgSequenceSQL = `WITH m AS (SELECT coalesce(max(position), 0) AS p FROM event_positions),
q AS (DELETE FROM event_queue WHERE id = ANY (ARRAY(SELECT id FROM event_queue ORDER BY id LIMIT ` + strconv.Itoa(sequenceBatch) + `)) RETURNING id),
b AS (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM q),
u AS (INSERT INTO event_positions (position, id) SELECT m.p + b.rn, b.id FROM b, m RETURNING position)
SELECT count(*), greatest(coalesce(max(u.position), 0), (SELECT p FROM m)) FROM u`

// PGSequenceSQL is the sequencer's statement, for the benchmark's
// reference of an import without the engine.
var PGSequenceSQL = pgSequenceSQL

// SequenceEvents runs one pass of the sequencer: it positions the rows
// without a position that were committed before it began (up to
// sequenceBatch of them), after any pass of another process that holds
// the lock. It returns the rows it positioned and the highest position it
// saw. On SQLite, where rows are positioned as inserted, it positions
// nothing.
func (s *Service) SequenceEvents(ctx context.Context) (positioned int, head int64, err error) {
	if s.store.pg == nil {
		head, err = s.EventsHead(ctx)
		return 0, head, err
	}
	// One round trip: a pass is a transaction of its own, one at a time per
	// schema (tests share a database, each in a schema of its own) through
	// the advisory lock; the sequencing statement, a new statement with a
	// new snapshot, sees the positions of every pass that ended before this
	// one took the lock.
	err = func() error {
		conn, err := s.store.pg.Acquire(ctx)
		if err != nil {
			return err
		}
		defer conn.Release()
		b := &pgx.Batch{}
		b.Queue("begin")
		b.Queue(`SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))`, sequencerLock)
		b.Queue(pgSequenceSQL)
		b.Queue("commit")
		br := conn.SendBatch(ctx, b)
		var n int64
		_, err = br.Exec()
		if err == nil {
			_, err = br.Exec()
		}
		if err == nil {
			err = br.QueryRow().Scan(&n, &head)
		}
		if err == nil {
			_, err = br.Exec()
		}
		if err = errors.Join(err, br.Close()); err != nil {
			if conn.Conn().PgConn().TxStatus() != 'I' {
				if _, rerr := conn.Exec(ctx, "rollback"); rerr != nil {
					_ = conn.Conn().Close(ctx)
				}
			}
			return err
		}
		positioned = int(n)
		return nil
	}()
	if err != nil {
		return 0, 0, fmt.Errorf("sequence events: %w", err)
	}
	return positioned, head, nil
}

// queueVacuumRows and queueVacuumEvery say when the sequencer vacuums
// event_queue: after it took that many rows off the queue, at most that
// often. A pass reads the queue from its lowest id, and every row taken
// off leaves a dead entry at the front of its primary key until a vacuum
// removes it; autovacuum comes a minute or more later at best, and not at
// all where it is off. Without it, a 2 M-row import left 2.1 M dead
// entries that every pass read again (4,500–5,700 buffers, 25–34 ms,
// twice a pass), so a pass cost more the longer the load lasted. A vacuum
// of the queue is a few hundred pages while it is kept this short.
var (
	queueVacuumRows  = 50000
	queueVacuumEvery = time.Second
)

// vacuumQueue vacuums event_queue, unless another process is vacuuming it
// (SKIP_LOCKED): VACUUM runs outside a transaction, and takes no lock that
// the inserts of events or the sequencer's passes wait for.
func (s *Service) vacuumQueue(ctx context.Context) error {
	if _, err := s.store.pg.Exec(ctx, "VACUUM (SKIP_LOCKED) event_queue"); err != nil {
		return fmt.Errorf("vacuum event_queue: %w", err)
	}
	return nil
}

// RunSequencer positions the events of every process on the database until
// ctx ends: every sequencerInterval, at once when this process committed
// events, and again at once after a full pass. It wakes the subscribers of
// EventsWake whenever the highest position moved. It returns at once on
// SQLite, whose events need no sequencer. Every serve process runs it
// (StartSequencer).
func (s *Service) RunSequencer(ctx context.Context, onError func(error)) {
	h := hubOf(s.store.w)
	if s.store.pg == nil || h == nil || h.kick == nil {
		return
	}
	t := time.NewTicker(sequencerInterval)
	defer t.Stop()
	var (
		seen     int64
		taken    int       // rows taken off the queue since its last vacuum
		vacuumed time.Time // when this process last vacuumed it
	)
	for {
		began := time.Now()
		n, head, err := s.SequenceEvents(ctx)
		switch {
		case err != nil && ctx.Err() == nil && onError != nil:
			onError(err)
		case err == nil && head > seen:
			seen = head
			h.wake()
		}
		if taken += n; taken >= queueVacuumRows && time.Since(vacuumed) >= queueVacuumEvery {
			if err := s.vacuumQueue(ctx); err != nil && ctx.Err() == nil && onError != nil {
				onError(err)
			}
			taken, vacuumed = 0, time.Now()
		}
		if err == nil && n >= sequenceBatch {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-h.kick:
			// Commits come one after another under load: a pass at most
			// every sequencerLinger takes all of them at once, rather than
			// a pass (and its advisory lock) per commit.
			if d := sequencerLinger - time.Since(began); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
		case <-t.C:
		}
	}
}

// StartSequencer runs RunSequencer in the background until stop is called
// (which waits for it to end) or ctx ends.
func (s *Service) StartSequencer(ctx context.Context, onError func(error)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.RunSequencer(ctx, onError)
	}()
	return func() {
		cancel()
		<-done
	}
}

// eventRow is an event as a row of an account's deferred writes
// (accountWrites): the purchase paths insert it with the others.
type eventRow struct {
	Type       string
	MemberID   *string
	OccurredAt time.Time
	Data       string
}

func (eventRow) TableName() string { return "events" }

func (e newEvent) row() *eventRow {
	return &eventRow{Type: e.typ, MemberID: e.member, OccurredAt: e.at, Data: string(e.data)}
}

// scrubEvents takes from the earlier events of the erased member the
// personal data the API no longer shows of it: member.created and
// member.updated carry the erased member instead, feedback.received loses
// its comment (free text) as the feedback row does. Set-based, through the
// member's index.
func scrubEvents(tx *gorm.DB, erased Member) error {
	body, err := json.Marshal(erased)
	if err != nil {
		return err
	}
	if err := tx.Exec(`UPDATE events SET data = ? WHERE member_id = ? AND type IN (?, ?)`,
		string(body), erased.ID, EventMemberCreated, EventMemberUpdated).Error; err != nil {
		return fmt.Errorf("scrub events: %w", err)
	}
	noComment := `json_set(data, '$.comment', json('null'))`
	if tx.Dialector.Name() == Postgres {
		noComment = `(data::jsonb || '{"comment": null}')::text`
	}
	if err := tx.Exec(`UPDATE events SET data = `+noComment+` WHERE member_id = ? AND type = ?`,
		erased.ID, EventFeedbackReceived).Error; err != nil {
		return fmt.Errorf("scrub events: %w", err)
	}
	return nil
}

// EventData is one event of a batch that Tx.EmitEach writes.
type EventData struct {
	MemberID string
	Data     any
}

// EmitEach appends one event of typ per item of evs (set-based jobs), in
// multi-row inserts.
func (t *Tx) EmitEach(typ string, evs []EventData) error {
	batch := make([]newEvent, 0, min(len(evs), eventChunk))
	for _, e := range evs {
		var m *string
		if e.MemberID != "" {
			id := e.MemberID
			m = &id
		}
		ev, err := eventOf(typ, m, t.Now, e.Data)
		if err != nil {
			return err
		}
		if batch = append(batch, ev); len(batch) == eventChunk {
			if err := appendEvents(t.DB, batch...); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return appendEvents(t.DB, batch...)
}

// DefaultEventRetention is how long the log keeps events unless told
// otherwise; §14 asks for at least 30 days.
const (
	DefaultEventRetention = 35 * 24 * time.Hour
	MinEventRetention     = 30 * 24 * time.Hour
)

// purgeChunk bounds the rows one delete of PurgeEvents removes, so that no
// statement holds the writer long.
const purgeChunk = 5000

// PurgeEvents deletes the positioned events that occurred before asOf less
// retention (at least MinEventRetention), oldest first, in chunks of a few
// set-based statements each. It keeps the event of the highest position,
// so that positions never start again below what consumers have read, and
// never touches an event not yet positioned. It returns the events
// deleted.
func (s *Service) PurgeEvents(ctx context.Context, asOf time.Time, retention time.Duration) (int64, error) {
	asOf, err := s.AsOf(asOf)
	if err != nil {
		return 0, err
	}
	retention = max(retention, MinEventRetention)
	horizon := ts(asOf.Add(-retention))
	pos := s.store.posCol()
	// Every event from the first one at or after the horizon (in id order,
	// which occurred_at follows but for transactions in flight together)
	// is kept; of those before it, the ones that occurred before the
	// horizon go.
	var cut *int64
	if err := s.store.read(ctx).Raw(`SELECT id FROM events WHERE occurred_at >= ? ORDER BY id LIMIT 1`, horizon).
		Scan(&cut).Error; err != nil {
		return 0, fmt.Errorf("purge events: %w", err)
	}
	var total int64
	for {
		var n int64
		err := s.store.write(ctx, func(tx *gorm.DB) error {
			q := `SELECT id FROM ` + s.store.positionedEvents() + ` WHERE occurred_at < @h
				AND ` + pos + ` < (SELECT max(` + pos + `) FROM ` + s.store.positionsTable() + `)`
			if cut != nil {
				q += ` AND id < @cut`
			}
			q += ` ORDER BY id LIMIT ` + strconv.Itoa(purgeChunk)
			if s.store.Dialect == Postgres {
				// An event and its position go together.
				q = `WITH d AS (DELETE FROM event_positions WHERE id IN (` + q + `) RETURNING id)
				DELETE FROM events WHERE id IN (SELECT id FROM d)`
			} else {
				q = `DELETE FROM events WHERE id IN (` + q + `)`
			}
			args := map[string]any{"h": horizon}
			if cut != nil {
				args["cut"] = *cut
			}
			r := tx.Exec(q, args)
			n = r.RowsAffected
			return r.Error
		})
		if err != nil {
			return total, fmt.Errorf("purge events: %w", err)
		}
		total += n
		if n < purgeChunk {
			return total, nil
		}
	}
}
