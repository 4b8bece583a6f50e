package loyalty_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

func newAuditService(t *testing.T, dialect string) (*loyalty.Service, *loyalty.Store) {
	t.Helper()
	store := loyaltytest.MustOpen(t, dialect)
	clock := loyaltytest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	return loyalty.NewService(store, loyalty.WithClock(clock.Now)), store
}

func auditRows(t *testing.T, svc *loyalty.Service) []loyalty.AuditEntry {
	t.Helper()
	l, err := svc.AuditLog(context.Background(), loyalty.Principal{Subject: "op", Role: loyalty.RoleAdmin}, loyalty.AuditQuery{Page: loyalty.Page{Limit: 500}})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func entryTier(t *testing.T, ctx context.Context, svc *loyalty.Service, code string) error {
	t.Helper()
	name, rank, m := "Entry", 0, decimal.NewFromInt(1)
	_, _, err := svc.PutTier(ctx, code, loyalty.TierInput{Name: &name, Rank: &rank, EarnMultiplier: &m})
	return err
}

// TestAuditAppendOnly checks that the schema refuses to change or remove an
// audit row, whoever asks.
func TestAuditAppendOnly(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		svc, store := newAuditService(t, dialect)
		if err := entryTier(t, context.Background(), svc, "base"); err != nil {
			t.Fatal(err)
		}
		db := store.DB()
		for _, stmt := range []string{
			"UPDATE audit_log SET action = 'tier.nothing'",
			"UPDATE audit_log SET actor_sub = 'someone-else' WHERE target_id = 'base'",
			"DELETE FROM audit_log",
			"DELETE FROM audit_log WHERE target_id = 'base'",
		} {
			if err := db.Exec(stmt).Error; err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Errorf("%s: %v, want the schema to refuse it as append-only", stmt, err)
			}
		}
		if dialect == loyalty.Postgres {
			if err := db.Exec("TRUNCATE audit_log").Error; err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Errorf("TRUNCATE audit_log: %v, want the schema to refuse it as append-only", err)
			}
		}
		rows := auditRows(t, svc)
		if len(rows) != 1 || rows[0].Action != "tier.create" || rows[0].ActorSub != loyalty.SystemActor {
			t.Errorf("audit trail after the refused statements: %+v", rows)
		}
	})
}

// TestAuditActor checks who a row names: the principal of the context, or
// the system when there is none.
func TestAuditActor(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		svc, _ := newAuditService(t, dialect)
		if err := entryTier(t, context.Background(), svc, "base"); err != nil {
			t.Fatal(err)
		}
		ctx := loyalty.WithPrincipal(context.Background(), loyalty.Principal{Subject: "mk-7", Role: loyalty.RoleMarketer})
		name := "Renamed"
		if _, _, err := svc.PutTier(ctx, "base", loyalty.TierInput{Name: &name}); err != nil {
			t.Fatal(err)
		}
		rows := auditRows(t, svc)
		if len(rows) != 2 {
			t.Fatalf("%d audit rows, want 2", len(rows))
		}
		if r := rows[1]; r.ActorSub != "system" || r.ActorRole != "system" || r.Action != "tier.create" {
			t.Errorf("change without a principal recorded as %+v", r)
		}
		if r := rows[0]; r.ActorSub != "mk-7" || r.ActorRole != "marketer" || r.Action != "tier.update" || r.TargetID != "base" {
			t.Errorf("change by mk-7 recorded as %+v", r)
		}
	})
}

// TestAuditSameTransaction checks that a change whose audit row cannot be
// written does not happen: the row is part of the change's transaction.
func TestAuditSameTransaction(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		svc, _ := newAuditService(t, dialect)
		// A role the audit table's CHECK refuses makes the audit insert fail.
		ctx := loyalty.WithPrincipal(context.Background(), loyalty.Principal{Subject: "x", Role: "intruder"})
		if err := entryTier(t, ctx, svc, "base"); err == nil {
			t.Fatal("the tier was saved although its audit row could not be written")
		}
		if ts, err := svc.Tiers(context.Background()); err != nil || len(ts) != 0 {
			t.Errorf("tiers after the failed write: %v %v, want none", ts, err)
		}
		if rows := auditRows(t, svc); len(rows) != 0 {
			t.Errorf("audit rows after the failed write: %+v", rows)
		}
	})
}

// TestAuditLogAdminOnly checks the service refuses the trail to other roles.
func TestAuditLogAdminOnly(t *testing.T) {
	svc, _ := newAuditService(t, loyalty.SQLite)
	for _, r := range []loyalty.Role{loyalty.RoleMarketer, loyalty.RolePOS, loyalty.RoleMember} {
		_, err := svc.AuditLog(context.Background(), loyalty.Principal{Subject: "s", Role: r}, loyalty.AuditQuery{})
		var e *loyalty.Error
		if !errors.As(err, &e) || e.Code != loyalty.Forbidden {
			t.Errorf("%s reading the audit trail: %v, want forbidden", r, err)
		}
	}
}

// TestAuditChange checks the compact change document.
func TestAuditChange(t *testing.T) {
	type thing struct {
		Name      string    `json:"name"`
		Cost      int       `json:"cost"`
		Tags      []string  `json:"tags"`
		UpdatedAt time.Time `json:"updated_at"`
	}
	old := thing{Name: "a", Cost: 1, Tags: []string{"x"}, UpdatedAt: time.Unix(1, 0)}
	upd := thing{Name: "a", Cost: 2, Tags: []string{"x", "y"}, UpdatedAt: time.Unix(2, 0)}
	for _, c := range []struct {
		name     string
		old, new any
		want     string
	}{
		{"Update", old, upd, `{"new":{"cost":2,"tags":["x","y"]},"old":{"cost":1,"tags":["x"]}}`},
		{"NoChange", old, old, `{"new":{},"old":{}}`},
		{"Create", nil, upd, `{"new":{"cost":2,"name":"a","tags":["x","y"]}}`},
		{"Delete", old, nil, `{"old":{"cost":1,"name":"a","tags":["x"]}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := json.Marshal(loyalty.Change(c.old, c.new))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.want {
				t.Errorf("Change = %s, want %s", b, c.want)
			}
		})
	}
}
