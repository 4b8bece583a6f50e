package loyalty_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// decode reads a request body as the API would, so that the fields it
// names are the fields a patch changes.
func decode[T any](t testing.TB, body string) T {
	t.Helper()
	var in T
	if err := json.Unmarshal([]byte(body), &in); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return in
}

func newConfigService(t *testing.T, dialect string) (*loyalty.Service, context.Context) {
	t.Helper()
	clock := loyaltytest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	svc := loyalty.NewService(loyaltytest.MustOpen(t, dialect), loyalty.WithClock(clock.Now))
	return svc, loyalty.WithPrincipal(context.Background(), loyalty.Principal{Subject: "mk-1", Role: loyalty.RoleMarketer})
}

// Concurrent edits of one configuration row that name different fields
// must all take effect: each is a read-modify-write of the row, and one
// that wrote back a copy read before another committed would undo it.
const (
	editRounds = 10
	renames    = 6
)

func TestConcurrentOfferEdits(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		svc, ctx := newConfigService(t, dialect)
		var ms []string
		for i := 0; i < 3; i++ {
			m, _, err := svc.EnrolMember(ctx, loyalty.MemberInput{}, loyalty.IdempotencyKey{})
			if err != nil {
				t.Fatal(err)
			}
			ms = append(ms, m.ID)
		}
		o, _, err := svc.CreateOffer(ctx, decode[loyalty.OfferInput](t, `{"code":"x2","name":"Double","kind":"multiplier","multiplier":"2"}`),
			loyalty.IdempotencyKey{})
		if err != nil {
			t.Fatal(err)
		}
		t.Run("PauseAgainstRenames", func(t *testing.T) {
			for round := 0; round < editRounds; round++ {
				if _, err := svc.UpdateOffer(ctx, o.ID, decode[loyalty.OfferInput](t, `{"status":"active"}`)); err != nil {
					t.Fatal(err)
				}
				calls := []func(){func() {
					if _, err := svc.UpdateOffer(ctx, o.ID, decode[loyalty.OfferInput](t, `{"status":"paused"}`)); err != nil {
						t.Errorf("pause: %v", err)
					}
				}}
				for k := 0; k < renames; k++ {
					calls = append(calls, func() {
						body := fmt.Sprintf(`{"name":"Double %d-%d"}`, round, k)
						if _, err := svc.UpdateOffer(ctx, o.ID, decode[loyalty.OfferInput](t, body)); err != nil {
							t.Errorf("rename: %v", err)
						}
					})
				}
				loyaltytest.Together(calls...)
				got, err := svc.GetOffer(ctx, o.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.Status != loyalty.OfferPaused {
					t.Fatalf("round %d: the offer is %s after a pause raced %d renames", round, got.Status, renames)
				}
			}
		})
		t.Run("TargetsReplaceNotMerge", func(t *testing.T) {
			for round := 0; round < editRounds; round++ {
				var calls []func()
				for _, m := range ms {
					calls = append(calls, func() {
						body := fmt.Sprintf(`{"target":{"all":false,"segments":[],"member_ids":[%q]}}`, m)
						if _, err := svc.UpdateOffer(ctx, o.ID, decode[loyalty.OfferInput](t, body)); err != nil {
							t.Errorf("retarget: %v", err)
						}
					})
				}
				loyaltytest.Together(calls...)
				got, err := svc.GetOffer(ctx, o.ID)
				if err != nil {
					t.Fatal(err)
				}
				if len(got.Target.MemberIDs) != 1 || !slices.Contains(ms, got.Target.MemberIDs[0]) {
					t.Fatalf("round %d: %d edits each targeting one member left the offer targeting %v",
						round, len(ms), got.Target.MemberIDs)
				}
			}
		})
	})
}

func TestConcurrentOfferTemplateEdits(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		svc, ctx := newConfigService(t, dialect)
		tpl, _, err := svc.CreateOfferTemplate(ctx, decode[loyalty.OfferTemplateInput](t,
			`{"code":"fav-x2","name":"Double","kind":"multiplier","multiplier":"2"}`), loyalty.IdempotencyKey{})
		if err != nil {
			t.Fatal(err)
		}
		for round := 0; round < editRounds; round++ {
			if _, err := svc.UpdateOfferTemplate(ctx, tpl.ID, decode[loyalty.OfferTemplateInput](t, `{"active":true}`)); err != nil {
				t.Fatal(err)
			}
			calls := []func(){func() {
				if _, err := svc.UpdateOfferTemplate(ctx, tpl.ID, decode[loyalty.OfferTemplateInput](t, `{"active":false}`)); err != nil {
					t.Errorf("deactivate: %v", err)
				}
			}}
			for k := 0; k < renames; k++ {
				calls = append(calls, func() {
					body := fmt.Sprintf(`{"name":"Double %d-%d"}`, round, k)
					if _, err := svc.UpdateOfferTemplate(ctx, tpl.ID, decode[loyalty.OfferTemplateInput](t, body)); err != nil {
						t.Errorf("rename: %v", err)
					}
				})
			}
			loyaltytest.Together(calls...)
			all, err := svc.OfferTemplates(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 1 || all[0].Active {
				t.Fatalf("round %d: the template is active again after a deactivation raced %d renames: %+v", round, renames, all)
			}
		}
	})
}

func TestConcurrentTierAndProgramEdits(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		svc, ctx := newConfigService(t, dialect)
		name, rank, one := "Base", 0, decimal.NewFromInt(1)
		if _, _, err := svc.PutTier(ctx, "base", loyalty.TierInput{Name: &name, Rank: &rank, EarnMultiplier: &one}); err != nil {
			t.Fatal(err)
		}
		for round := 0; round < editRounds; round++ {
			mult := decimal.NewFromInt(int64(2 + round))
			days := round + 1
			calls := []func(){
				func() {
					if _, _, err := svc.PutTier(ctx, "base", loyalty.TierInput{EarnMultiplier: &mult}); err != nil {
						t.Errorf("tier multiplier: %v", err)
					}
				},
				func() {
					if _, err := svc.UpdateProgram(ctx, loyalty.ProgramPatch{PendingDays: &days}); err != nil {
						t.Errorf("program pending days: %v", err)
					}
				},
			}
			for k := 0; k < renames; k++ {
				calls = append(calls,
					func() {
						n := fmt.Sprintf("Base %d-%d", round, k)
						if _, _, err := svc.PutTier(ctx, "base", loyalty.TierInput{Name: &n}); err != nil {
							t.Errorf("tier rename: %v", err)
						}
					},
					func() {
						n := fmt.Sprintf("Program %d-%d", round, k)
						if _, err := svc.UpdateProgram(ctx, loyalty.ProgramPatch{Name: &n}); err != nil {
							t.Errorf("program rename: %v", err)
						}
					})
			}
			loyaltytest.Together(calls...)
			ts, err := svc.Tiers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(ts) != 1 || !ts[0].EarnMultiplier.Equal(mult) {
				t.Fatalf("round %d: tiers %+v, want the multiplier %s set while it was renamed", round, ts, mult)
			}
			p, err := svc.Program(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if p.PendingDays != days {
				t.Fatalf("round %d: pending_days %d, want %d set while the program was renamed", round, p.PendingDays, days)
			}
		}
	})
}

// templateRow is a few columns of an offer template, enough to edit it.
type templateRow struct {
	ID               string `gorm:"primaryKey"`
	Name             string
	BonusPoints      int64
	MaxUsesPerMember *int
	UpdatedAt        time.Time
}

func (templateRow) TableName() string { return "offer_templates" }

// TestUpdateRow checks the read-modify-write helper itself: it writes the
// columns the change altered and no other (a column another statement
// changed after the read keeps that value), notices a change made through
// a pointer field, and stores the caller's update time, not GORM's.
func TestUpdateRow(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		svc, ctx := newConfigService(t, dialect)
		tpl, _, err := svc.CreateOfferTemplate(ctx, decode[loyalty.OfferTemplateInput](t,
			`{"code":"fav-x2","name":"Double","kind":"multiplier","multiplier":"2","max_uses_per_member":3}`), loyalty.IdempotencyKey{})
		if err != nil {
			t.Fatal(err)
		}
		stamp := time.Date(2026, 4, 1, 9, 30, 0, 0, time.UTC)
		db := svc.Store().DB()
		err = db.Transaction(func(tx *gorm.DB) error {
			before, after, err := loyalty.UpdateRow(tx, tpl.ID, func(r *templateRow) error {
				// Another statement changes a column after the read.
				if err := tx.Exec("UPDATE offer_templates SET bonus_points = 7 WHERE id = ?", tpl.ID).Error; err != nil {
					return err
				}
				r.Name = "Double up"
				*r.MaxUsesPerMember = 5
				r.UpdatedAt = stamp
				return nil
			})
			if err != nil {
				return err
			}
			if before.Name != "Double" || *before.MaxUsesPerMember != 3 || after.Name != "Double up" || *after.MaxUsesPerMember != 5 {
				t.Errorf("before %+v, after %+v", before, after)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var got templateRow
		if err := db.Take(&got, "id = ?", tpl.ID).Error; err != nil {
			t.Fatal(err)
		}
		if got.Name != "Double up" || got.MaxUsesPerMember == nil || *got.MaxUsesPerMember != 5 || got.BonusPoints != 7 ||
			!got.UpdatedAt.Equal(stamp) {
			t.Fatalf("stored %+v; want the new name, 5 uses, the bonus of 7 left alone, updated at %s", got, stamp)
		}

		err = db.Transaction(func(tx *gorm.DB) error {
			_, _, err := loyalty.UpdateRow(tx, "no-such-template", func(r *templateRow) error {
				t.Error("change called for a row that does not exist")
				return nil
			})
			return err
		})
		if !errors.Is(err, gorm.ErrRecordNotFound) {
			t.Fatalf("a missing row: %v, want gorm.ErrRecordNotFound", err)
		}
		err = db.Transaction(func(tx *gorm.DB) error {
			_, _, err := loyalty.UpdateRow(tx, tpl.ID, func(r *templateRow) error {
				r.ID = "other"
				return nil
			})
			return err
		})
		if err == nil {
			t.Fatal("a change of the primary key was written")
		}
	})
}
