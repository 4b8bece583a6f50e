package loyalty

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"
)

// The audit trail records every change an operator makes to the program's
// configuration, the catalog, the offers, or a member's points by hand. A
// row is inserted by the transaction of the change itself, so the change and
// its record commit or roll back together; the schema refuses to update or
// delete a row once written.

// SystemActor is the actor recorded for a change made without a principal in
// the context: the command line, the demo seeder.
const SystemActor = "system"

type auditRow struct {
	ID         string `gorm:"primaryKey"`
	OccurredAt time.Time
	ActorSub   string
	ActorRole  string
	Action     string
	TargetKind string
	TargetID   string
	Change     string
}

func (auditRow) TableName() string { return "audit_log" }

// AuditEntry is one row of the audit trail.
type AuditEntry struct {
	ID         string          `json:"id"`
	At         time.Time       `json:"at"`
	ActorSub   string          `json:"actor_sub"`
	ActorRole  string          `json:"actor_role"`
	Action     string          `json:"action"`
	TargetKind string          `json:"target_kind"`
	TargetID   string          `json:"target_id"`
	Change     json.RawMessage `json:"change"`
}

func auditFromRow(r auditRow) AuditEntry {
	c := json.RawMessage(r.Change)
	if !json.Valid(c) {
		c = json.RawMessage("{}")
	}
	return AuditEntry{ID: r.ID, At: r.OccurredAt.UTC(), ActorSub: r.ActorSub, ActorRole: r.ActorRole, Action: r.Action,
		TargetKind: r.TargetKind, TargetID: r.TargetID, Change: c}
}

// actorOf is the principal of ctx, or the system when there is none.
func actorOf(ctx context.Context) Principal {
	if p, err := PrincipalFrom(ctx); err == nil {
		return p
	}
	return Principal{Subject: SystemActor, Role: SystemActor}
}

// writeAudit inserts one audit row in tx, the transaction of the change.
func writeAudit(tx *gorm.DB, at time.Time, p Principal, action, kind, id string, change any) error {
	if p.Subject == "" {
		p = Principal{Subject: SystemActor, Role: SystemActor}
	}
	b, err := json.Marshal(change)
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	if change == nil || string(b) == "null" {
		b = []byte("{}")
	}
	if kind == "member" {
		if b, err = redactPersonal(b); err != nil {
			return fmt.Errorf("audit %s: %w", action, err)
		}
	}
	row := auditRow{ID: newID(), OccurredAt: ts(at), ActorSub: p.Subject, ActorRole: string(p.Role), Action: action,
		TargetKind: kind, TargetID: id, Change: string(b)}
	if err := tx.Create(&row).Error; err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// personalFields are a member's fields that erasure removes. The audit
// trail outlives an erasure and can never be changed, so a row about a
// member keeps only which of them changed, never their values.
var personalFields = map[string]bool{"external_id": true, "email": true, "phone": true, "first_name": true,
	"last_name": true, "birthday": true, "timezone": true}

// Redacted stands in the audit trail for a member's personal value.
const Redacted = "[redacted]"

// redactPersonal replaces, at any depth of the JSON change b, every value of
// a personal field that is not null with Redacted.
func redactPersonal(b []byte) ([]byte, error) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, x := range t {
				if personalFields[k] && x != nil {
					t[k] = Redacted
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range t {
				walk(x)
			}
		}
	}
	walk(v)
	return json.Marshal(v)
}

// Audit records action on the target (kind and id) by the principal of ctx,
// at the service's time. db must be the write transaction that makes the
// change, so that the change and its record stand or fall together. change
// is marshalled to JSON; build it with Change, and never put a member's
// personal data in it, only ids. For a member target the values of its
// personal fields are redacted all the same.
func (s *Service) Audit(ctx context.Context, db *gorm.DB, action, kind, id string, change any) error {
	return writeAudit(db, s.now(), actorOf(ctx), action, kind, id, change)
}

// Audit records action in the transaction, at the transaction's time; see
// Service.Audit.
func (t *Tx) Audit(ctx context.Context, action, kind, id string, change any) error {
	return writeAudit(t.DB, t.Now, actorOf(ctx), action, kind, id, change)
}

// auditIgnored are bookkeeping fields that change with every write and say
// nothing about what changed.
var auditIgnored = map[string]bool{"created_at": true, "updated_at": true, "version": true}

// Change describes a change for the audit trail: {"new": …} for a creation
// (old nil), {"old": …} for a deletion (new nil), and for an update only the
// top-level fields whose JSON differs, as {"old": {…}, "new": {…}}.
func Change(old, new any) any {
	switch {
	case old == nil && new == nil:
		return map[string]any{}
	case old == nil:
		return map[string]any{"new": trimmed(new)}
	case new == nil:
		return map[string]any{"old": trimmed(old)}
	}
	o, oerr := fields(old)
	n, nerr := fields(new)
	if oerr != nil || nerr != nil {
		return map[string]any{"old": old, "new": new}
	}
	before, after := map[string]json.RawMessage{}, map[string]json.RawMessage{}
	for k, v := range n {
		if auditIgnored[k] {
			continue
		}
		if w, ok := o[k]; !ok || !bytes.Equal(v, w) {
			after[k] = v
			if ok {
				before[k] = w
			}
		}
	}
	for k, w := range o {
		if _, ok := n[k]; !ok && !auditIgnored[k] {
			before[k] = w
		}
	}
	return map[string]any{"old": before, "new": after}
}

// fields splits the JSON object of v into its top-level fields.
func fields(v any) (map[string]json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// trimmed is v without its bookkeeping fields, when v is a JSON object.
func trimmed(v any) any {
	m, err := fields(v)
	if err != nil {
		return v
	}
	for k := range auditIgnored {
		delete(m, k)
	}
	return m
}

// AuditQuery filters the audit trail. Action matches as a prefix ("tier."
// finds every tier change); From is inclusive, To exclusive.
type AuditQuery struct {
	Action     string
	ActorSub   string
	TargetKind string
	TargetID   string
	From, To   *time.Time
	Page       Page
}

// AuditLog lists the audit trail, newest first; only an admin may read it.
func (s *Service) AuditLog(ctx context.Context, p Principal, q AuditQuery) (List[AuditEntry], error) {
	out := List[AuditEntry]{Items: []AuditEntry{}}
	if !p.Is(RoleAdmin) {
		return out, Errorf(Forbidden, "forbidden", "only an admin may read the audit trail")
	}
	if q.From != nil && q.To != nil && q.To.Before(*q.From) {
		return out, Invalidf("to", "must not be before from")
	}
	db := s.store.read(ctx).Model(&auditRow{})
	if q.Action != "" {
		db = db.Where("substr(action, 1, ?) = ?", len([]rune(q.Action)), q.Action)
	}
	if q.ActorSub != "" {
		db = db.Where("actor_sub = ?", q.ActorSub)
	}
	if q.TargetKind != "" {
		db = db.Where("target_kind = ?", q.TargetKind)
	}
	if q.TargetID != "" {
		db = db.Where("target_id = ?", q.TargetID)
	}
	if q.From != nil {
		db = db.Where("occurred_at >= ?", ts(*q.From))
	}
	if q.To != nil {
		db = db.Where("occurred_at < ?", ts(*q.To))
	}
	parts, err := q.Page.decode(2)
	if err != nil {
		return out, err
	}
	if parts != nil {
		at, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil {
			return out, Invalidf("cursor", "is not a cursor this list returned")
		}
		// The bound on occurred_at alone starts the index range at the
		// cursor; the OR alone would be a filter over every newer row.
		db = db.Where("occurred_at <= ? AND (occurred_at < ? OR (occurred_at = ? AND id < ?))", ts(at), ts(at), ts(at), parts[1])
	}
	var rows []auditRow
	limit := q.Page.limit()
	if err := db.Order("occurred_at DESC, id DESC").Limit(limit + 1).Find(&rows).Error; err != nil {
		return out, fmt.Errorf("audit log: %w", err)
	}
	for i, r := range rows {
		if i == limit {
			last := rows[i-1]
			out.NextCursor = encodeCursor(last.OccurredAt.UTC().Format(time.RFC3339Nano), last.ID)
			break
		}
		out.Items = append(out.Items, auditFromRow(r))
	}
	return out, nil
}

// auditTier records a tier's creation or update: prev is the stored row
// when found.
func (s *Service) auditTier(ctx context.Context, tx *gorm.DB, found bool, prev tierRow, t Tier) error {
	if !found {
		return s.Audit(ctx, tx, "tier.create", "tier", t.Code, Change(nil, t))
	}
	old, err := tierFromRow(prev)
	if err != nil {
		return err
	}
	return s.Audit(ctx, tx, "tier.update", "tier", t.Code, Change(old, t))
}

// auditOfferUpdate records an offer's update. It must run before a new
// member list replaces the stored one, which it reads as the old value.
func (s *Service) auditOfferUpdate(ctx context.Context, tx *gorm.DB, before, after offerRow, ids []string, setMembers bool) error {
	oldIDs := ids
	if setMembers {
		var err error
		if oldIDs, err = offerMembers(tx, before.ID); err != nil {
			return err
		}
	}
	// The same members in another order are no change.
	newIDs := slices.Clone(uniq(ids))
	slices.Sort(newIDs)
	oldIDs = slices.Clone(uniq(oldIDs))
	slices.Sort(oldIDs)
	return s.Audit(ctx, tx, "offer.update", "offer", after.ID, Change(offerFromRow(before, oldIDs), offerFromRow(after, newIDs)))
}
