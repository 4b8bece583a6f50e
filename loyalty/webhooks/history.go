package webhooks

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// The deliveries an endpoint's stream makes on the first attempt are
// nearly all of its history, two or so a purchase. They are kept as one
// row of webhook_delivered per batch of the log, its events in a JSON
// array, rather than as a row each in webhook_deliveries: on SQLite a row
// a delivery was the largest part of what the sinks cost the single
// writer. Everything else (a delivery that failed, was held, was retried
// by hand) is a row of webhook_deliveries, whose rows change.
//
// A batch's id is a fresh id (a UUIDv7: ids compare as the instants they
// were made at) with its last four hex digits zero; the delivery of its
// i-th event has the same id with i in those digits. So the deliveries of
// a batch sort as its events did in the log, among the endpoint's other
// deliveries as the batch's instant does, and a delivery's id names its
// batch.

// maxBatchItems is the most events one batch row holds: its items are
// numbered in four hex digits.
const maxBatchItems = 1 << 16

// batchRow is a row of webhook_delivered.
type batchRow struct {
	WebhookID    string `gorm:"primaryKey"`
	ID           string `gorm:"primaryKey"`
	FirstEventID int64
	LastEventID  int64
	Events       int
	CreatedAt    time.Time
	Items        string
}

func (batchRow) TableName() string { return "webhook_delivered" }

// batchItem is one delivery of a batch row, in its JSON array.
type batchItem struct {
	Event     int64   `json:"e"`
	Type      string  `json:"t"`
	Member    *string `json:"m,omitempty"`
	Code      *int    `json:"c,omitempty"`
	LatencyMS *int64  `json:"l,omitempty"`
	Attempts  int     `json:"n"`
	// Made and Done are when the delivery was made and delivered, in Unix
	// microseconds.
	Made int64 `json:"at"`
	Done int64 `json:"ok"`
}

// batchID is a new batch row's id: item 0's.
func batchID() string { return itemID(loyalty.NewID(), 0) }

// itemID is the id of item i of the batch with the id (or any of its
// items' ids) given.
func itemID(batch string, i int) string {
	return batch[:len(batch)-4] + fmt.Sprintf("%04x", i)
}

// itemOf splits a delivery id into its batch row's id and its item,
// for an id of that shape (which any id is; whether the batch exists is
// the database's to say).
func itemOf(id string) (batch string, i int, ok bool) {
	if len(id) != 36 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(id[32:], 16, 16)
	if err != nil {
		return "", 0, false
	}
	return itemID(id, 0), int(n), true
}

// newBatchRow makes the row of a batch's delivered rows, in log order.
func newBatchRow(webhookID string, rows []deliveryRow, now time.Time) (batchRow, error) {
	slices.SortFunc(rows, func(a, b deliveryRow) int { return cmp.Compare(a.EventPosition, b.EventPosition) })
	items := make([]batchItem, len(rows))
	b := batchRow{WebhookID: webhookID, ID: batchID(), FirstEventID: rows[0].EventID, LastEventID: rows[0].EventID,
		Events: len(rows), CreatedAt: now}
	for i, r := range rows {
		b.FirstEventID, b.LastEventID = min(b.FirstEventID, r.EventID), max(b.LastEventID, r.EventID)
		done := r.UpdatedAt
		if r.DeliveredAt != nil {
			done = *r.DeliveredAt
		}
		items[i] = batchItem{Event: r.EventID, Type: r.EventType, Member: r.MemberID, Code: r.StatusCode, LatencyMS: r.LatencyMS,
			Attempts: r.Attempts, Made: r.CreatedAt.UnixMicro(), Done: done.UnixMicro()}
	}
	j, err := json.Marshal(items)
	b.Items = string(j)
	return b, err
}

// items decodes the batch row's JSON array.
func (b batchRow) items() ([]batchItem, error) {
	var items []batchItem
	if err := json.Unmarshal([]byte(b.Items), &items); err != nil {
		return nil, fmt.Errorf("webhook %s: delivered batch %s: %w", b.WebhookID, b.ID, err)
	}
	return items, nil
}

// deliveries are the batch row's deliveries, in log order.
func (b batchRow) deliveries() ([]Delivery, error) {
	items, err := b.items()
	if err != nil {
		return nil, err
	}
	out := make([]Delivery, len(items))
	for i, it := range items {
		made, done := time.UnixMicro(it.Made).UTC(), time.UnixMicro(it.Done).UTC()
		out[i] = Delivery{ID: itemID(b.ID, i), WebhookID: b.WebhookID, EventID: loyalty.EventID(it.Event), EventType: it.Type,
			MemberID: it.Member, Status: Delivered, Attempts: it.Attempts, StatusCode: it.Code, LatencyMS: it.LatencyMS,
			CreatedAt: made, UpdatedAt: done, DeliveredAt: &done}
	}
	return out, nil
}

// batchColumns are the columns of webhook_delivered, in insertBatch's order.
const batchColumns = "webhook_id, id, first_event_id, last_event_id, events, created_at, items"

// insertBatch writes a batch row (one statement a batch: GORM's cost
// is shared by its events).
func insertBatch(tx *gorm.DB, b batchRow) error {
	return tx.Exec("INSERT INTO webhook_delivered ("+batchColumns+") VALUES (?, ?, ?, ?, ?, ?, ?)",
		b.WebhookID, b.ID, b.FirstEventID, b.LastEventID, b.Events, b.CreatedAt, b.Items).Error
}

// batchDeliveries reads an endpoint's batch rows newest first, below the
// delivery id before ("" from the newest), and returns up to n of their
// deliveries, newest first: a key lookup per batch row read, and rows
// are read only until n are found.
func batchDeliveries(db *gorm.DB, webhookID, before string, n int) ([]Delivery, error) {
	var out []Delivery
	// A batch row's id is below its deliveries' ids but the first's, so
	// the batch of the delivery before is among those below it too.
	bound := before
	for len(out) < n {
		sel := db.Where("webhook_id = ?", webhookID).Order("id DESC").Limit(1)
		if bound != "" {
			sel = sel.Where("id < ?", bound)
		}
		var rows []batchRow
		if err := sel.Find(&rows).Error; err != nil {
			return nil, err
		}
		if len(rows) == 0 {
			break
		}
		ds, err := rows[0].deliveries()
		if err != nil {
			return nil, err
		}
		for i := len(ds) - 1; i >= 0 && len(out) < n; i-- {
			if before == "" || ds[i].ID < before {
				out = append(out, ds[i])
			}
		}
		bound = rows[0].ID
	}
	return out, nil
}

// batchDelivery finds a delivery of an endpoint's batch rows by its id.
func batchDelivery(db *gorm.DB, webhookID, id string) (Delivery, bool, error) {
	batch, i, ok := itemOf(id)
	if !ok {
		return Delivery{}, false, nil
	}
	var rows []batchRow
	if err := db.Where("webhook_id = ? AND id = ?", webhookID, batch).Limit(1).Find(&rows).Error; err != nil || len(rows) == 0 {
		return Delivery{}, false, err
	}
	ds, err := rows[0].deliveries()
	if err != nil || i >= len(ds) {
		return Delivery{}, false, err
	}
	return ds[i], true, nil
}

// batchEvents says which of the events nums (ids of the log, ascending)
// an endpoint's batch rows hold, reading only the rows whose span of
// events meets theirs (the index by last event).
func batchEvents(db *gorm.DB, webhookID string, nums []int64) (map[int64]bool, error) {
	hit := map[int64]bool{}
	if len(nums) == 0 {
		return hit, nil
	}
	var rows []batchRow
	if err := db.Where("webhook_id = ? AND last_event_id >= ? AND first_event_id <= ?", webhookID, nums[0], nums[len(nums)-1]).
		Find(&rows).Error; err != nil {
		return nil, err
	}
	want := map[int64]bool{}
	for _, n := range nums {
		want[n] = true
	}
	for _, b := range rows {
		items, err := b.items()
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if want[it.Event] {
				hit[it.Event] = true
			}
		}
	}
	return hit, nil
}

// mergeNewestFirst merges two lists of deliveries, each newest first
// (descending ids), into one of at most n.
func mergeNewestFirst(a, b []Delivery, n int) []Delivery {
	out := make([]Delivery, 0, min(n, len(a)+len(b)))
	for len(out) < n && (len(a) > 0 || len(b) > 0) {
		if len(b) == 0 || (len(a) > 0 && a[0].ID > b[0].ID) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return out
}
