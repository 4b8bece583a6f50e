package webhooks

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// Delivery is one event's delivery to one endpoint (§14 GET
// /v1/webhooks/{id}/deliveries): its state and its last attempt.
type Delivery struct {
	ID            string     `json:"id"`
	WebhookID     string     `json:"webhook_id"`
	EventID       string     `json:"event_id"`
	EventType     string     `json:"event_type"`
	MemberID      *string    `json:"member_id"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	StatusCode    *int       `json:"status_code"`
	LatencyMS     *int64     `json:"latency_ms"`
	Error         *string    `json:"error"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	DeliveredAt   *time.Time `json:"delivered_at"`
}

// deliveryRow is a row of webhook_deliveries, keyed by its endpoint and
// its id (the table is clustered so on SQLite).
type deliveryRow struct {
	ID            string `gorm:"primaryKey"`
	WebhookID     string `gorm:"primaryKey"`
	EventID       int64
	EventPosition int64
	EventType     string
	MemberID      *string
	Status        string
	Attempts      int
	StatusCode    *int
	LatencyMS     *int64 `gorm:"column:latency_ms"`
	Error         *string
	NextAttemptAt *time.Time
	FirstFailedAt *time.Time
	LeaseOwner    *string
	LeaseUntil    *time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
	DeliveredAt   *time.Time
}

func (deliveryRow) TableName() string { return "webhook_deliveries" }

func utcp(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func (r deliveryRow) view() Delivery {
	return Delivery{ID: r.ID, WebhookID: r.WebhookID, EventID: loyalty.EventID(r.EventID), EventType: r.EventType, MemberID: r.MemberID,
		Status: r.Status, Attempts: r.Attempts, StatusCode: r.StatusCode, LatencyMS: r.LatencyMS, Error: r.Error,
		NextAttemptAt: utcp(r.NextAttemptAt), CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
		DeliveredAt: utcp(r.DeliveredAt)}
}

// deliveryColumns are the columns insertDeliveries writes, in order.
const deliveryColumns = "id, webhook_id, event_id, event_position, event_type, member_id, status, attempts, status_code, latency_ms, " +
	"error, next_attempt_at, first_failed_at, created_at, updated_at, delivered_at"

// deliveryChunk is the most rows one of SQLite's inserts writes: 16
// values a row, 1024 a statement. A batch is written in chunks of this
// many rows, then of halving sizes, so that a handful of texts serve every
// batch and each is compiled once (the statement cache) rather than per
// batch.
const deliveryChunk = 64

// onConflict ends an insert of delivery rows. A row for the same event
// exists only when an earlier engine recorded it and stopped before it
// advanced the cursor: that row stands.
const onConflict = " ON CONFLICT (webhook_id, event_id) DO NOTHING"

// insertSQL holds SQLite's text of the insert of n rows, built once per n.
var insertSQL sync.Map // int → string

func deliveriesInsert(n int) string {
	if q, ok := insertSQL.Load(n); ok {
		return q.(string)
	}
	var b strings.Builder
	b.WriteString("INSERT INTO webhook_deliveries (" + deliveryColumns + ") VALUES ")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?" + strings.Repeat(", ?", 15) + ")")
	}
	b.WriteString(onConflict)
	q, _ := insertSQL.LoadOrStore(n, b.String())
	return q.(string)
}

// insertDeliveries writes new delivery rows (of a batch of the log)
// straight to the transaction's connection, without a lease: the rows are
// delivered, or open and left to whichever process claims them. fresh says
// that no row of the batch can exist yet (its events are past the highest
// one recorded when the stream took its lease): the insert then needs no
// ON CONFLICT, whose speculative insertion costs each row a probe of the
// key first. On PostgreSQL the batch goes as one statement of arrays, one
// a column; on SQLite, in multi-row inserts of prebuilt text.
func insertDeliveries(tx *gorm.DB, rows []deliveryRow, fresh bool) error {
	if tx.Dialector.Name() == loyalty.Postgres {
		return pgInsertDeliveries(tx, rows, fresh)
	}
	args := make([]any, 0, 16*min(len(rows), deliveryChunk))
	for len(rows) > 0 {
		n := deliveryChunk
		for n > len(rows) {
			n /= 2
		}
		args = args[:0]
		for i := range rows[:n] {
			r := &rows[i]
			args = append(args, r.ID, r.WebhookID, r.EventID, r.EventPosition, r.EventType, r.MemberID, r.Status, r.Attempts,
				r.StatusCode, r.LatencyMS, r.Error, r.NextAttemptAt, r.FirstFailedAt, r.CreatedAt, r.UpdatedAt, r.DeliveredAt)
		}
		if _, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, deliveriesInsert(n), args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// pgDeliveriesInsert is PostgreSQL's insert of a batch's rows: one text
// for every size of batch, its values bound as arrays in pgx's binary
// format rather than as sixteen parameters a row.
const pgDeliveriesInsert = "INSERT INTO webhook_deliveries (" + deliveryColumns + `)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::integer[],
	$9::integer[], $10::integer[], $11::text[], $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], $15::timestamptz[],
	$16::timestamptz[])`

func pgInsertDeliveries(tx *gorm.DB, rows []deliveryRow, fresh bool) error {
	n := len(rows)
	var (
		ids, hooks, types, statuses = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		members, errs               = make([]*string, n), make([]*string, n)
		events, positions           = make([]int64, n), make([]int64, n)
		attempts                    = make([]int32, n)
		codes, latencies            = make([]*int32, n), make([]*int32, n)
		nexts, firsts, delivered    = make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
		created, updated            = make([]time.Time, n), make([]time.Time, n)
	)
	for i := range rows {
		r := &rows[i]
		ids[i], hooks[i], types[i], statuses[i] = r.ID, r.WebhookID, r.EventType, r.Status
		members[i], errs[i] = r.MemberID, r.Error
		events[i], positions[i], attempts[i] = r.EventID, r.EventPosition, int32(r.Attempts)
		if r.StatusCode != nil {
			c := int32(*r.StatusCode)
			codes[i] = &c
		}
		if r.LatencyMS != nil {
			l := int32(min(*r.LatencyMS, math.MaxInt32))
			latencies[i] = &l
		}
		nexts[i], firsts[i], delivered[i] = r.NextAttemptAt, r.FirstFailedAt, r.DeliveredAt
		created[i], updated[i] = r.CreatedAt, r.UpdatedAt
	}
	q := pgDeliveriesInsert
	if !fresh {
		q += onConflict
	}
	_, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, q, ids, hooks, events, positions, types, members, statuses,
		attempts, codes, latencies, errs, nexts, firsts, created, updated, delivered)
	return err
}

// eventNumber is the row id of a public event id.
func eventNumber(id string) (int64, bool) {
	s, ok := strings.CutPrefix(id, "evt_")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

// Statuses lists a delivery's statuses, for validation and the console.
var Statuses = []string{Pending, Held, Delivered, Failed}

// DeliveryQuery filters an endpoint's deliveries.
type DeliveryQuery struct {
	// Status is one of Statuses, or "" for all.
	Status string
	Page   loyalty.Page
}

// Deliveries lists an endpoint's deliveries, newest first.
func (s *Service) Deliveries(ctx context.Context, webhookID string, q DeliveryQuery) (loyalty.List[Delivery], error) {
	out := loyalty.List[Delivery]{Items: []Delivery{}}
	if q.Status != "" && !slices.Contains(Statuses, q.Status) {
		return out, loyalty.Invalidf("status", "must be one of %s", strings.Join(Statuses, ", "))
	}
	before, err := q.Page.AfterCursor()
	if err != nil {
		return out, err
	}
	var rows []deliveryRow
	var batched []Delivery
	err = loyalty.Read(ctx, s.ledger, func(db *gorm.DB) error {
		if _, err := getRow(db, webhookID); err != nil {
			return err
		}
		sel := db.Where("webhook_id = ?", webhookID).Order("id DESC").Limit(q.Page.Size() + 1)
		switch q.Status {
		case "":
		case Delivered:
			// The endpoint's key: delivered rows are those of retries.
			sel = sel.Where("status = ?", q.Status)
		default:
			// The index of the rows not delivered (partial on SQLite,
			// which uses it only when the query states its condition in
			// the same words).
			sel = sel.Where("status = ? AND status <> 'delivered'", q.Status)
		}
		if before != "" {
			sel = sel.Where("id < ?", before)
		}
		if err := sel.Find(&rows).Error; err != nil {
			return err
		}
		if q.Status != "" && q.Status != Delivered {
			return nil
		}
		var err error
		batched, err = batchDeliveries(db, webhookID, before, q.Page.Size()+1)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("list deliveries: %w", err)
	}
	single := make([]Delivery, len(rows))
	for i, r := range rows {
		single[i] = r.view()
	}
	out.Items = mergeNewestFirst(single, batched, q.Page.Size()+1)
	if len(out.Items) > q.Page.Size() {
		out.Items = out.Items[:q.Page.Size()]
		out.NextCursor = loyalty.Cursor(out.Items[len(out.Items)-1].ID)
	}
	return out, nil
}

// Delivery returns one delivery of an endpoint.
func (s *Service) Delivery(ctx context.Context, webhookID, id string) (Delivery, error) {
	var out Delivery
	err := loyalty.Read(ctx, s.ledger, func(db *gorm.DB) error {
		var err error
		out, err = getDelivery(db, webhookID, id)
		return err
	})
	return out, err
}

// getDelivery finds a delivery of an endpoint: its row, or an item of
// one of its batch rows.
func getDelivery(db *gorm.DB, webhookID, id string) (Delivery, error) {
	var r deliveryRow
	err := db.Where("id = ? AND webhook_id = ?", id, webhookID).Take(&r).Error
	if err == nil {
		return r.view(), nil
	}
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return Delivery{}, err
	}
	d, ok, err := batchDelivery(db, webhookID, id)
	if ok || err != nil {
		return d, err
	}
	if _, werr := getRow(db, webhookID); werr != nil {
		return d, werr
	}
	return d, loyalty.Errorf(loyalty.NotFound, "not_found", "webhook %q has no delivery %q", clip(webhookID), clip(id))
}

// Retry starts a dead letter again: it is attempted at once (by whichever
// engine process claims it first) and, failing, retried with backoff for
// another retry window. Until it is delivered or given up again, the later
// events of its member to this endpoint that are not yet delivered wait
// behind it. Only a failed delivery can be retried (409 otherwise).
func (s *Service) Retry(ctx context.Context, webhookID, id string) (Delivery, error) {
	d, _, err := loyalty.Write(ctx, s.ledger, loyalty.IdempotencyKey{}, func(tx *loyalty.Tx) (Delivery, error) {
		_, row, err := loyalty.UpdateRowByKey(tx.DB, []any{id, webhookID}, func(r *deliveryRow) error {
			if r.Status != Failed {
				return loyalty.Errorf(loyalty.Conflict, "not_failed",
					"delivery %q is %s; only a failed delivery can be retried by hand", clip(id), r.Status)
			}
			now := tx.Now
			r.Status, r.NextAttemptAt, r.FirstFailedAt, r.LeaseOwner, r.LeaseUntil, r.UpdatedAt = Pending, &now, nil, nil, nil, now
			return nil
		})
		if errors.Is(err, gorm.ErrRecordNotFound) {
			// A delivery of a batch row was delivered on its first attempt.
			d, err := getDelivery(tx.DB, webhookID, id)
			if err == nil {
				err = loyalty.Errorf(loyalty.Conflict, "not_failed",
					"delivery %q is %s; only a failed delivery can be retried by hand", clip(id), d.Status)
			}
			return Delivery{}, err
		}
		if err != nil {
			return Delivery{}, err
		}
		v := row.view()
		return v, tx.Audit(ctx, "webhook.retry_delivery", "webhook", webhookID, map[string]any{"delivery_id": id, "event_id": v.EventID})
	})
	if err != nil {
		return Delivery{}, fmt.Errorf("retry delivery: %w", err)
	}
	s.notify()
	return d, nil
}
