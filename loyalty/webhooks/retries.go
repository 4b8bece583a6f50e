package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// retries claims this endpoint's deliveries that are due — failed attempts
// whose wait is over, and held events whose predecessor is settled — and
// makes their attempts, a bounded number at a time. Every process runs it;
// the lease on each row keeps two from making the same attempt.
func (e *endpoint) retries(ctx context.Context) {
	tick := time.NewTicker(e.d.cfg.Poll)
	defer tick.Stop()
	for ctx.Err() == nil {
		if err := e.claimDue(ctx); err != nil {
			if errors.Is(err, errGone) {
				return
			}
			if ctx.Err() == nil {
				e.d.log.Warn("webhooks: claim retries", "webhook_id", e.id, "error", err.Error())
			}
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		case <-e.nudge:
		}
	}
}

// claimSQL claims up to n due rows of an endpoint: open, due, not leased
// (or the lease expired, as after a crash mid-attempt), and the first open
// row of their member, so a member's deliveries go one at a time in log
// order. PostgreSQL skips rows another process is claiming.
const claimSQL = `UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ?
WHERE webhook_id = ? AND id IN (
  SELECT d.id FROM webhook_deliveries d
  WHERE d.webhook_id = ? AND d.status IN ('pending', 'held') AND d.next_attempt_at <= ?
    AND (d.lease_until IS NULL OR d.lease_until < ?)
    AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
      WHERE p.webhook_id = d.webhook_id AND p.member_id = d.member_id
        AND p.status IN ('pending', 'held') AND p.event_position < d.event_position)
  ORDER BY d.next_attempt_at, d.event_position
  LIMIT ?%s)
RETURNING id, webhook_id, event_id, event_position, event_type, member_id, status, attempts, first_failed_at`

func (e *endpoint) claimDue(ctx context.Context) error {
	free := e.d.cfg.PerEndpoint - int(e.inflight.Load())
	if free <= 0 {
		return nil
	}
	// An endpoint deleted or made inactive stops here.
	if _, err := e.current(ctx, false); err != nil {
		return err
	}
	// A read first: the claim is a write, and most looks find nothing due.
	var due []string
	now := e.d.ledger.Now()
	err := loyalty.Read(ctx, e.d.ledger, func(db *gorm.DB) error {
		// The statuses are literals so that the partial index of the open
		// rows by due time applies (a read of a few rows, however long the
		// endpoint's history); SQLite's planner, without statistics, would
		// rather walk the endpoint's key, every row it ever delivered.
		return db.Raw(`SELECT id FROM `+openDeliveries(e.d.ledger, "webhook_deliveries_due")+` WHERE webhook_id = ?
			AND status IN ('pending', 'held') AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?) LIMIT 1`,
			e.id, now, now).Scan(&due).Error
	})
	if err != nil || len(due) == 0 {
		return err
	}
	lock := ""
	if e.d.ledger.Store().Dialect == loyalty.Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	var rows []deliveryRow
	_, _, err = loyalty.Write(ctx, e.d.ledger, loyalty.IdempotencyKey{}, func(tx *loyalty.Tx) (struct{}, error) {
		rows = rows[:0]
		until := tx.Now.Add(e.d.cfg.LeaseTTL)
		return struct{}{}, tx.DB.Raw(fmt.Sprintf(claimSQL, lock), e.d.cfg.Owner, until, e.id, e.id, tx.Now, tx.Now, free).Scan(&rows).Error
	})
	if err != nil || len(rows) == 0 {
		return err
	}
	hook, err := e.current(ctx, true)
	if err != nil {
		return err
	}
	for _, r := range rows {
		e.inflight.Add(1)
		e.d.wg.Add(1)
		go func() {
			defer e.d.wg.Done()
			defer e.inflight.Add(-1)
			if e.attempt(ctx, hook, r) {
				// The member's next held event may be due now.
				e.poke()
			}
		}()
	}
	return nil
}

// attempt makes one claimed attempt and records it; it reports whether the
// delivery was settled (delivered or given up).
func (e *endpoint) attempt(ctx context.Context, hook webhookRow, r deliveryRow) bool {
	ev, found, err := e.event(ctx, r.EventID)
	if err != nil {
		if ctx.Err() == nil {
			e.d.log.Warn("webhooks: read event", "webhook_id", e.id, "delivery_id", r.ID, "error", err.Error())
		}
		return false
	}
	var res result
	now := e.d.ledger.Now()
	if !found {
		// Purged from the log (kept ≥ 30 days, retried for 72 h: only a dead
		// letter retried by hand long after).
		r.Attempts++
		msg := "the event is no longer in the log"
		r.Status, r.Error, r.NextAttemptAt, r.UpdatedAt = Failed, &msg, nil, now
	} else {
		var ok bool
		res, ok = e.send(ctx, hook, ev, nil)
		if !ok {
			return false
		}
		e.d.apply(&r, res, e.d.ledger.Now())
	}
	err = e.record(ctx, r)
	if err != nil {
		if ctx.Err() == nil {
			e.d.log.Warn("webhooks: record attempt", "webhook_id", e.id, "delivery_id", r.ID, "error", err.Error())
		}
		return false
	}
	if r.Status != Delivered {
		e.d.log.Info("webhooks: delivery failed", "webhook_id", e.id, "delivery_id", r.ID, "event_id", loyalty.EventID(r.EventID),
			"attempts", r.Attempts, "status", r.Status, "error", deref(r.Error))
	}
	return r.Status != Pending
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// record writes an attempt's outcome, if this process still holds the
// row's lease: when it expired and another process took the row, that
// process's outcome is the one kept.
func (e *endpoint) record(ctx context.Context, r deliveryRow) error {
	_, _, err := loyalty.Write(ctx, e.d.ledger, loyalty.IdempotencyKey{}, func(tx *loyalty.Tx) (struct{}, error) {
		return struct{}{}, tx.DB.Model(&deliveryRow{}).
			Where("webhook_id = ? AND id = ? AND lease_owner = ? AND status IN ?", r.WebhookID, r.ID, e.d.cfg.Owner, []string{Pending, Held}).
			Updates(map[string]any{"status": r.Status, "attempts": r.Attempts, "status_code": r.StatusCode, "latency_ms": r.LatencyMS,
				"error": r.Error, "next_attempt_at": r.NextAttemptAt, "first_failed_at": r.FirstFailedAt, "delivered_at": r.DeliveredAt,
				"lease_owner": nil, "lease_until": nil, "updated_at": r.UpdatedAt}).Error
	})
	return err
}

// event reads one event of the log by its row id.
func (e *endpoint) event(ctx context.Context, n int64) (loyalty.Event, bool, error) {
	var row struct {
		ID         int64
		Position   *int64
		Type       string
		MemberID   *string
		OccurredAt time.Time
		Data       string
	}
	// SQLite's position is the row id (one writer commits in id order).
	pos := "id"
	if e.d.ledger.Store().Dialect == loyalty.Postgres {
		pos = "position"
	}
	var found bool
	err := loyalty.Read(ctx, e.d.ledger, func(db *gorm.DB) error {
		from := "events"
		if pos == "position" {
			from = "events LEFT JOIN event_positions USING (id)"
		}
		res := db.Raw("SELECT id, "+pos+" AS position, type, member_id, occurred_at, data FROM "+from+" WHERE id = ?", n).Scan(&row)
		found = res.RowsAffected > 0
		return res.Error
	})
	if err != nil || !found {
		return loyalty.Event{}, false, err
	}
	ev := loyalty.Event{ID: loyalty.EventID(row.ID), Type: row.Type, OccurredAt: row.OccurredAt.UTC(), MemberID: row.MemberID,
		Data: json.RawMessage(row.Data)}
	if row.Position != nil {
		ev.Position = *row.Position
	}
	return ev, true, nil
}
