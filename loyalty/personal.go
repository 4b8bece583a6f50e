package loyalty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"
)

type templateRow struct {
	ID                 string `gorm:"primaryKey"`
	Code               string
	Name               string
	Kind               string
	Multiplier         string
	BonusPoints        int64
	Conditions         string
	DurationDays       int
	LookbackDays       int
	MinPurchases       int
	RequiresActivation bool
	MaxUsesPerMember   *int
	Active             bool
	CreatedAt          time.Time
	UpdatedAt          time.Time
}

func (templateRow) TableName() string { return "offer_templates" }

// OfferTemplate is a marketer's recipe for personal offers: "×2 on your
// favourite category for 14 days" for every member with enough history.
type OfferTemplate struct {
	ID                 string          `json:"id"`
	Code               string          `json:"code"`
	Name               string          `json:"name"`
	Kind               string          `json:"kind"`
	Multiplier         decimal.Decimal `json:"multiplier"`
	BonusPoints        int64           `json:"bonus_points"`
	Conditions         OfferConditions `json:"conditions"`
	DurationDays       int             `json:"duration_days"`
	LookbackDays       int             `json:"lookback_days"`
	MinPurchases       int             `json:"min_purchases"`
	RequiresActivation bool            `json:"requires_activation"`
	MaxUsesPerMember   *int            `json:"max_uses_per_member"`
	Active             bool            `json:"active"`
	CreatedAt          time.Time       `json:"created_at"`
	UpdatedAt          time.Time       `json:"updated_at"`
}

// OfferTemplateInput is the body of POST /v1/offer-templates and PATCH.
// The template's conditions apply as written except categories: each
// personal offer is on its member's favourite category.
type OfferTemplateInput struct {
	Code               *string          `json:"code"`
	Name               *string          `json:"name"`
	Kind               *string          `json:"kind"`
	Multiplier         *decimal.Decimal `json:"multiplier"`
	BonusPoints        *int64           `json:"bonus_points"`
	Conditions         *OfferConditions `json:"conditions"`
	DurationDays       *int             `json:"duration_days"`
	LookbackDays       *int             `json:"lookback_days"`
	MinPurchases       *int             `json:"min_purchases"`
	RequiresActivation *bool            `json:"requires_activation"`
	MaxUsesPerMember   *int             `json:"max_uses_per_member"`
	Active             *bool            `json:"active"`

	Present map[string]bool `json:"-"`
}

// UnmarshalJSON records which fields are present: a null
// max_uses_per_member makes the template's offers unlimited again.
func (in *OfferTemplateInput) UnmarshalJSON(b []byte) error {
	type plain OfferTemplateInput
	if err := json.Unmarshal(b, (*plain)(in)); err != nil {
		return err
	}
	var err error
	in.Present, err = PresentFields(b)
	return err
}

func templateFromRow(r templateRow) OfferTemplate {
	m, _ := decimal.NewFromString(r.Multiplier)
	o := offerRow{Conditions: r.Conditions}
	c := o.conditions()
	c.Categories = []string{}
	return OfferTemplate{ID: r.ID, Code: r.Code, Name: r.Name, Kind: r.Kind, Multiplier: m, BonusPoints: r.BonusPoints,
		Conditions: c, DurationDays: r.DurationDays, LookbackDays: r.LookbackDays, MinPurchases: r.MinPurchases,
		RequiresActivation: r.RequiresActivation, MaxUsesPerMember: r.MaxUsesPerMember, Active: r.Active,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

func (in OfferTemplateInput) apply(r *templateRow) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&r.Code, in.Code)
	set(&r.Name, in.Name)
	set(&r.Kind, in.Kind)
	if in.Multiplier != nil {
		r.Multiplier = in.Multiplier.String()
	}
	if in.BonusPoints != nil {
		r.BonusPoints = *in.BonusPoints
	}
	if in.Conditions != nil {
		c := *in.Conditions
		c.Categories = nil
		r.Conditions = mustJSON(c)
	}
	for _, f := range []struct {
		dst *int
		v   *int
	}{{&r.DurationDays, in.DurationDays}, {&r.LookbackDays, in.LookbackDays}, {&r.MinPurchases, in.MinPurchases}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	if in.RequiresActivation != nil {
		r.RequiresActivation = *in.RequiresActivation
	}
	if in.MaxUsesPerMember != nil || in.Present["max_uses_per_member"] {
		r.MaxUsesPerMember = in.MaxUsesPerMember
	}
	if in.Active != nil {
		r.Active = *in.Active
	}
}

func validateTemplate(r templateRow) error {
	var v Validation
	if !codePattern.MatchString(r.Code) || len(r.Code) > 40 {
		v.Add("code", "must be 1 to 40 lowercase letters, digits, _ or -")
	}
	validateTerms(&v, r.Name, r.Kind, r.Multiplier, r.BonusPoints)
	if r.DurationDays < 1 || r.DurationDays > 366 {
		v.Add("duration_days", "must be from 1 to 366")
	}
	if r.LookbackDays < 1 || r.LookbackDays > 3650 {
		v.Add("lookback_days", "must be from 1 to 3650")
	}
	if r.MinPurchases < 1 {
		v.Add("min_purchases", "must be at least 1")
	}
	if r.MaxUsesPerMember != nil && (*r.MaxUsesPerMember < 1 || *r.MaxUsesPerMember > 1_000_000) {
		v.Add("max_uses_per_member", "must be from 1 to 1000000")
	}
	return v.Err()
}

// CreateOfferTemplate adds a personal-offer template.
func (s *Service) CreateOfferTemplate(ctx context.Context, in OfferTemplateInput, key IdempotencyKey) (OfferTemplate, *Replay, error) {
	t, rep, err := writeOnce(ctx, s, headerGuard(key), func(tx *gorm.DB) (OfferTemplate, error) {
		now := ts(s.now())
		row := templateRow{ID: newID(), Multiplier: "1", Conditions: "{}", DurationDays: 14, LookbackDays: 90, MinPurchases: 3,
			Active: true, CreatedAt: now, UpdatedAt: now}
		in.apply(&row)
		if err := validateTemplate(row); err != nil {
			return OfferTemplate{}, err
		}
		if err := tx.Create(&row).Error; err != nil {
			if errors.Is(err, gorm.ErrDuplicatedKey) {
				return OfferTemplate{}, Errorf(Conflict, "duplicate", "a template with code %q exists", row.Code)
			}
			return OfferTemplate{}, err
		}
		t := templateFromRow(row)
		return t, s.Audit(ctx, tx, "offer_template.create", "offer_template", t.ID, Change(nil, t))
	})
	if err != nil {
		return t, nil, fmt.Errorf("create offer template: %w", err)
	}
	return t, rep, nil
}

// UpdateOfferTemplate changes a template; offers already given keep their terms.
func (s *Service) UpdateOfferTemplate(ctx context.Context, id string, in OfferTemplateInput) (OfferTemplate, error) {
	var out OfferTemplate
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		before, row, err := UpdateRow(tx, id, func(row *templateRow) error {
			in.apply(row)
			row.UpdatedAt = ts(s.now())
			return validateTemplate(*row)
		})
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			return Errorf(NotFound, "not_found", "no offer template has id %q", id)
		case errors.Is(err, gorm.ErrDuplicatedKey):
			return Errorf(Conflict, "duplicate", "a template with code %q exists", row.Code)
		case err != nil:
			return err
		}
		out = templateFromRow(row)
		return s.Audit(ctx, tx, "offer_template.update", "offer_template", id, Change(templateFromRow(before), out))
	})
	if err != nil {
		return out, fmt.Errorf("update offer template: %w", err)
	}
	return out, nil
}

// OfferTemplates lists the templates.
func (s *Service) OfferTemplates(ctx context.Context) ([]OfferTemplate, error) {
	var rows []templateRow
	if err := s.store.read(ctx).Order("code").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list offer templates: %w", err)
	}
	out := make([]OfferTemplate, len(rows))
	for i, r := range rows {
		out[i] = templateFromRow(r)
	}
	return out, nil
}

// PersonalOffersSummary counts the offers a run gave.
type PersonalOffersSummary struct {
	Templates int   `json:"templates"`
	Offers    int64 `json:"offers"`
}

// GivePersonalOffers gives, for every active template, each active member
// with at least min_purchases purchases in the last lookback_days an offer
// on its favourite category there (most spend; ties by name), live for
// duration_days from asOf, unless it holds a live one from that template.
// One INSERT … SELECT per template; an offer's id is derived from template,
// member and day, so a second run for the same asOf gives nothing twice.
//
// A future asOf is refused. A past one gives an offer only when it is still
// live now (no offer is born ended), and never one whose days overlap an
// offer of the same template the member holds, whichever run gave that.
func (s *Service) GivePersonalOffers(ctx context.Context, asOf time.Time) (PersonalOffersSummary, error) {
	var sum PersonalOffersSummary
	asOf, err := s.AsOf(asOf)
	if err != nil {
		return sum, err
	}
	now := ts(s.now())
	err = s.store.write(ctx, func(tx *gorm.DB) error {
		sum = PersonalOffersSummary{}
		if err := JobMemory(tx); err != nil {
			return err
		}
		// The plan below joins the members due against their live offers:
		// with the statistics of offers from before a run gave thousands
		// (an empty table's), PostgreSQL compared every member due with
		// every offer (20 s at 100,000 members, against 50 ms hashed).
		if err := AnalyzeIfStale(tx, "offers"); err != nil {
			return err
		}
		var tpls []templateRow
		if err := tx.Where("active = ?", true).Order("code").Find(&tpls).Error; err != nil {
			return err
		}
		day := asOf.Format("20060102")
		for _, t := range tpls {
			from := ts(asOf.AddDate(0, 0, -t.LookbackDays))
			ends := ts(asOf.AddDate(0, 0, t.DurationDays))
			if !ends.After(now) {
				continue
			}
			// First the members due, into a table of the transaction: those
			// with min_purchases in the window (one aggregate over the
			// window's purchases, which the local_date BRIN index narrows:
			// a local date is within a day of the instant's UTC date),
			// active and without a live offer of the template. Then the
			// favourite category of those alone. Once the first night has
			// given its offers, a night ranks the few whose offer ended or
			// who newly qualify, their purchases by index; on a first night
			// the table's size (ANALYZE) has PostgreSQL hash the window's
			// purchases instead.
			fromDate, toDate := LocalDates(from, asOf)
			args := map[string]any{"tpl": t.ID, "day": day, "code": t.Code, "name": t.Name, "kind": t.Kind, "multiplier": t.Multiplier,
				"bonus": t.BonusPoints, "conditions": t.Conditions, "target_all": false, "activation": t.RequiresActivation,
				"as_of": asOf, "ends": ends, "max_uses": t.MaxUsesPerMember, "now": now, "from": from, "min": t.MinPurchases,
				"from_date": fromDate, "to_date": toDate}
			if err := TempTable(tx, "offer_due", `SELECT d.member_id FROM (
					SELECT p.member_id FROM purchases p
					WHERE p.occurred_at >= @from AND p.occurred_at <= @as_of
						AND p.local_date >= @from_date AND p.local_date <= @to_date
					GROUP BY p.member_id HAVING COUNT(*) >= @min
				) d JOIN members m ON m.id = d.member_id AND m.status = 'active'
				WHERE NOT EXISTS (SELECT 1 FROM offers o WHERE o.template_id = @tpl AND o.owner_member_id = d.member_id
					AND o.status = 'active' AND (o.ends_at IS NULL OR o.ends_at > @as_of) AND (o.starts_at IS NULL OR o.starts_at < @ends))`,
				args); err != nil {
				return err
			}
			if tx.Dialector.Name() == Postgres {
				if err := tx.Exec(`ANALYZE offer_due`).Error; err != nil {
					return err
				}
			}
			res := tx.Exec(`INSERT INTO offers (id, code, name, kind, multiplier, bonus_points, conditions, target_all, target_segments,
					requires_activation, starts_at, ends_at, max_uses_per_member, status, template_id, owner_member_id,
					personal_category, created_at, updated_at)
				SELECT 'po:' || @tpl || ':' || f.member_id || ':' || @day, @code || '-' || f.member_id || '-' || @day, @name, @kind,
					@multiplier, @bonus, @conditions, @target_all, '[]', @activation, @as_of, @ends, @max_uses, 'active', @tpl,
					f.member_id, f.category, @now, @now
				FROM (
					SELECT p.member_id, i.category,
						ROW_NUMBER() OVER (PARTITION BY p.member_id ORDER BY `+s.store.SumOrderSQL("i.amount")+` DESC, i.category) AS rn
					FROM offer_due c JOIN purchases p ON p.member_id = c.member_id AND p.occurred_at >= @from AND p.occurred_at <= @as_of
					JOIN purchase_items i ON i.purchase_id = p.id
					WHERE i.category <> ''
					GROUP BY p.member_id, i.category
				) f
				WHERE f.rn = 1
				ON CONFLICT DO NOTHING`, args)
			if res.Error == nil {
				// The next template makes its own (PostgreSQL drops it at
				// commit only).
				res.Error = tx.Exec(`DROP TABLE offer_due`).Error
			}
			if res.Error != nil {
				return res.Error
			}
			sum.Templates++
			sum.Offers += res.RowsAffected
		}
		if sum.Offers == 0 {
			return nil
		}
		// offer.assigned: the offers this run gave (created now; a
		// conflict left an older one alone), read back in one statement and
		// rendered as the API shows an offer.
		var given []offerRow
		if err := tx.Where("owner_member_id IS NOT NULL AND template_id IS NOT NULL AND created_at = ?", now).
			Order("id").Find(&given).Error; err != nil {
			return err
		}
		t := &Tx{DB: tx, Now: now, svc: s}
		evs := make([]EventData, len(given))
		for i, o := range given {
			evs[i] = EventData{MemberID: *o.OwnerMemberID, Data: offerFromRow(o, nil)}
		}
		return t.EmitEach(EventOfferAssigned, evs)
	})
	if err != nil {
		return sum, fmt.Errorf("personal offers: %w", err)
	}
	return sum, nil
}
