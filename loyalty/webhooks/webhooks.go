// Package webhooks delivers the event log (§14) to the HTTP endpoints an
// admin registers: signed POSTs, retried with exponential backoff for at
// least 72 hours, in commit order per member and endpoint, with a dead
// letter and a delivery history. The Service configures endpoints and reads
// their deliveries; the Dispatcher, running in every serve process, sends.
package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// Limits of an endpoint's configuration.
const (
	maxURL         = 2048
	maxDescription = 500
	maxFilters     = 50
)

// Statuses of a delivery.
const (
	// Pending: an attempt failed and another is scheduled (next_attempt_at).
	Pending = "pending"
	// Held: waiting for an earlier event of the same member to the same
	// endpoint to be delivered or given up.
	Held = "held"
	// Delivered: the endpoint answered 2xx.
	Delivered = "delivered"
	// Failed: retried for the whole retry window without success, the
	// dead letter; POST …/retry starts it again.
	Failed = "failed"
)

// Service configures endpoints and reads their deliveries.
type Service struct {
	ledger *loyalty.Service
	// changed tells this process's dispatcher that endpoints or retries
	// changed, so it need not wait for its next look.
	changed chan struct{}
}

// NewService builds the webhooks service on the ledger's database.
func NewService(ledger *loyalty.Service) *Service {
	return &Service{ledger: ledger, changed: make(chan struct{}, 1)}
}

func (s *Service) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Webhook is an endpoint as the API shows it. Secret is set only in the
// answers that create it: POST /v1/webhooks and rotate-secret.
type Webhook struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Description string    `json:"description"`
	Active      bool      `json:"active"`
	Secret      string    `json:"secret,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

type webhookRow struct {
	ID            string `gorm:"primaryKey"`
	URL           string
	Events        string
	Description   string
	Secret        string
	Active        bool
	StartPosition int64
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

func (webhookRow) TableName() string { return "webhooks" }

func (r webhookRow) filters() []string {
	var f []string
	_ = json.Unmarshal([]byte(r.Events), &f)
	return f
}

func (r webhookRow) view() Webhook {
	return Webhook{ID: r.ID, URL: r.URL, Events: r.filters(), Description: r.Description, Active: r.Active,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

// Input is the body of POST /v1/webhooks and PATCH /v1/webhooks/{id}. In a
// patch a field absent from the JSON is left alone.
type Input struct {
	URL         *string  `json:"url"`
	Events      []string `json:"events"`
	Description *string  `json:"description"`
	Active      *bool    `json:"active"`

	present map[string]bool
}

// UnmarshalJSON records which fields the JSON names.
func (in *Input) UnmarshalJSON(b []byte) error {
	type plain Input
	if err := json.Unmarshal(b, (*plain)(in)); err != nil {
		return err
	}
	var err error
	in.present, err = loyalty.PresentFields(b)
	return err
}

func (in Input) has(f string) bool {
	if in.present != nil {
		return in.present[f]
	}
	switch f {
	case "url":
		return in.URL != nil
	case "events":
		return in.Events != nil
	case "description":
		return in.Description != nil
	case "active":
		return in.Active != nil
	}
	return false
}

// validate checks the fields present and returns the filters in canonical
// form (deduplicated, in the order given).
func (in Input) validate(v *loyalty.Validation) []string {
	if in.has("url") {
		if in.URL == nil {
			v.Add("url", "must not be null")
		} else if msg := checkURL(*in.URL); msg != "" {
			v.Add("url", "%s", msg)
		}
	}
	var filters []string
	if in.has("events") {
		if in.Events == nil {
			v.Add("events", "must be a list of event types, \"prefix.*\" or \"*\"")
		}
		var err string
		filters, err = CheckFilters(in.Events)
		if err != "" {
			v.Add("events", "%s", err)
		}
	}
	if in.has("description") {
		switch {
		case in.Description == nil:
			v.Add("description", "must not be null; send \"\" to clear it")
		case utf8.RuneCountInString(*in.Description) > maxDescription || !utf8.ValidString(*in.Description):
			v.Add("description", "must be at most %d characters of UTF-8", maxDescription)
		}
	}
	if in.has("active") && in.Active == nil {
		v.Add("active", "must be true or false")
	}
	return filters
}

// checkURL says what is wrong with an endpoint URL, or "" when nothing is:
// an absolute http or https URL with a host, no user name or password (they
// would travel to every log and proxy on the way) and no fragment.
func checkURL(raw string) string {
	if raw == "" || len(raw) > maxURL {
		return fmt.Sprintf("must be an http or https URL of at most %d characters", maxURL)
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] <= 0x20 || raw[i] == 0x7f {
			return "must not contain spaces or control characters"
		}
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must start with https:// or http://"
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return "must name a host, such as https://example.com/hooks"
	case u.User != nil:
		return "must not carry a user name or password; the signature authenticates the engine"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not have a fragment (#…)"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "has an invalid port"
		}
	}
	return ""
}

// CheckFilters validates an endpoint's event filters — exact types of §14,
// "prefix.*" where some type has that prefix, or "*" — and returns them
// deduplicated, or what is wrong with them.
func CheckFilters(filters []string) ([]string, string) {
	if len(filters) == 0 {
		return nil, "must list at least one event type, \"prefix.*\" or \"*\""
	}
	if len(filters) > maxFilters {
		return nil, fmt.Sprintf("must list at most %d filters", maxFilters)
	}
	out := make([]string, 0, len(filters))
	for _, f := range filters {
		if !loyalty.ValidEventFilter(f) {
			return nil, fmt.Sprintf("%q is not an event type of §14, \"prefix.*\" (such as \"tier.*\") or \"*\"", clip(f))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, ""
}

func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// newSecret is 32 random bytes, hex, with a prefix that says what it is.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("webhook secret: %w", err)
	}
	return "whsec_" + hex.EncodeToString(b), nil
}

func notFound(id string) error {
	return loyalty.Errorf(loyalty.NotFound, "not_found", "no webhook has id %q", clip(id))
}

func getRow(db *gorm.DB, id string) (webhookRow, error) {
	var r webhookRow
	err := db.Where("id = ?", id).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return r, notFound(id)
	}
	return r, err
}

// Create registers an endpoint. It receives the events committed from now
// on; the answer is the only one that shows its secret.
func (s *Service) Create(ctx context.Context, in Input, key loyalty.IdempotencyKey) (Webhook, *loyalty.Replay, error) {
	var v loyalty.Validation
	for _, f := range []string{"url", "events"} {
		if !in.has(f) {
			v.Add(f, "is required")
		}
	}
	filters := in.validate(&v)
	if err := v.Err(); err != nil {
		return Webhook{}, nil, err
	}
	secret, err := newSecret()
	if err != nil {
		return Webhook{}, nil, err
	}
	// Events committed between this read and the endpoint's are delivered
	// too: at least once from its creation on.
	head, err := s.ledger.EventsHead(ctx)
	if err != nil {
		return Webhook{}, nil, fmt.Errorf("create webhook: %w", err)
	}
	w, rep, err := loyalty.Write(ctx, s.ledger, key, func(tx *loyalty.Tx) (Webhook, error) {
		ev, _ := json.Marshal(filters)
		row := webhookRow{ID: loyalty.NewID(), URL: *in.URL, Events: string(ev), Secret: secret, Active: true,
			StartPosition: head, CreatedAt: tx.Now, UpdatedAt: tx.Now}
		if in.Description != nil {
			row.Description = *in.Description
		}
		if in.Active != nil {
			row.Active = *in.Active
		}
		if err := tx.DB.Create(&row).Error; err != nil {
			return Webhook{}, err
		}
		// The audit trail records the endpoint, never its secret.
		w := row.view()
		if err := tx.Audit(ctx, "webhook.create", "webhook", w.ID, loyalty.Change(nil, w)); err != nil {
			return Webhook{}, err
		}
		w.Secret = secret
		return w, nil
	})
	if err != nil {
		return Webhook{}, nil, fmt.Errorf("create webhook: %w", err)
	}
	s.notify()
	return w, rep, nil
}

// Get returns one endpoint, without its secret.
func (s *Service) Get(ctx context.Context, id string) (Webhook, error) {
	var out Webhook
	err := loyalty.Read(ctx, s.ledger, func(db *gorm.DB) error {
		r, err := getRow(db, id)
		out = r.view()
		return err
	})
	return out, err
}

// List returns the endpoints, oldest first, without their secrets.
func (s *Service) List(ctx context.Context, p loyalty.Page) (loyalty.List[Webhook], error) {
	out := loyalty.List[Webhook]{Items: []Webhook{}}
	after, err := p.AfterCursor()
	if err != nil {
		return out, err
	}
	var rows []webhookRow
	err = loyalty.Read(ctx, s.ledger, func(db *gorm.DB) error {
		q := db.Order("id").Limit(p.Size() + 1)
		if after != "" {
			q = q.Where("id > ?", after)
		}
		return q.Find(&rows).Error
	})
	if err != nil {
		return out, fmt.Errorf("list webhooks: %w", err)
	}
	if len(rows) > p.Size() {
		rows = rows[:p.Size()]
		out.NextCursor = loyalty.Cursor(rows[len(rows)-1].ID)
	}
	for _, r := range rows {
		out.Items = append(out.Items, r.view())
	}
	return out, nil
}

// Update changes an endpoint's url, events, description or active flag.
// Deliveries already under way finish to the URL they started with; the
// next ones use the new settings. An endpoint made inactive keeps its place
// in the log and resumes from it when made active again.
func (s *Service) Update(ctx context.Context, id string, in Input) (Webhook, error) {
	var v loyalty.Validation
	filters := in.validate(&v)
	if err := v.Err(); err != nil {
		return Webhook{}, err
	}
	w, _, err := loyalty.Write(ctx, s.ledger, loyalty.IdempotencyKey{}, func(tx *loyalty.Tx) (Webhook, error) {
		before, row, err := loyalty.UpdateRow(tx.DB, id, func(r *webhookRow) error {
			if in.has("url") {
				r.URL = *in.URL
			}
			if in.has("events") {
				ev, _ := json.Marshal(filters)
				r.Events = string(ev)
			}
			if in.has("description") {
				r.Description = *in.Description
			}
			if in.has("active") {
				r.Active = *in.Active
			}
			r.UpdatedAt = tx.Now
			return nil
		})
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return Webhook{}, notFound(id)
		}
		if err != nil {
			return Webhook{}, err
		}
		w := row.view()
		return w, tx.Audit(ctx, "webhook.update", "webhook", id, loyalty.Change(before.view(), w))
	})
	if err != nil {
		return Webhook{}, fmt.Errorf("update webhook: %w", err)
	}
	s.notify()
	return w, nil
}

// Delete removes an endpoint, its deliveries and its place in the log.
func (s *Service) Delete(ctx context.Context, id string) error {
	_, _, err := loyalty.Write(ctx, s.ledger, loyalty.IdempotencyKey{}, func(tx *loyalty.Tx) (struct{}, error) {
		row, err := getRow(tx.DB, id)
		if err != nil {
			return struct{}{}, err
		}
		// The cursor first: its row lock waits for a batch of the
		// endpoint's stream that is being recorded (its rows commit with
		// the cursor's advance), so the delete of the deliveries after it
		// sees that batch's rows; a batch recorded later finds no cursor
		// to advance and is rolled back.
		if err := tx.DB.Exec("DELETE FROM event_cursors WHERE name = ?", cursorName(id)).Error; err != nil {
			return struct{}{}, err
		}
		for _, table := range []string{"webhook_deliveries", "webhook_delivered"} {
			if err := tx.DB.Exec("DELETE FROM "+table+" WHERE webhook_id = ?", id).Error; err != nil {
				return struct{}{}, err
			}
		}
		if err := tx.DB.Exec("DELETE FROM webhooks WHERE id = ?", id).Error; err != nil {
			return struct{}{}, err
		}
		return struct{}{}, tx.Audit(ctx, "webhook.delete", "webhook", id, loyalty.Change(row.view(), nil))
	})
	if err != nil {
		return fmt.Errorf("delete webhook: %w", err)
	}
	s.notify()
	return nil
}

// RotateSecret gives an endpoint a new secret, answered once. Deliveries
// signed from the moment it commits use the new secret.
func (s *Service) RotateSecret(ctx context.Context, id string) (Webhook, error) {
	secret, err := newSecret()
	if err != nil {
		return Webhook{}, err
	}
	w, _, err := loyalty.Write(ctx, s.ledger, loyalty.IdempotencyKey{}, func(tx *loyalty.Tx) (Webhook, error) {
		_, row, err := loyalty.UpdateRow(tx.DB, id, func(r *webhookRow) error {
			r.Secret, r.UpdatedAt = secret, tx.Now
			return nil
		})
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return Webhook{}, notFound(id)
		}
		if err != nil {
			return Webhook{}, err
		}
		w := row.view()
		if err := tx.Audit(ctx, "webhook.rotate_secret", "webhook", id, map[string]any{"rotated": true}); err != nil {
			return Webhook{}, err
		}
		w.Secret = secret
		return w, nil
	})
	if err != nil {
		return Webhook{}, fmt.Errorf("rotate webhook secret: %w", err)
	}
	s.notify()
	return w, nil
}

func cursorName(id string) string { return "webhook:" + id }
