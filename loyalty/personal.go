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
	// BroughtForward counts the templates whose run judged only the
	// members whose answer could have changed since the template's last
	// run (the others judged every member).
	BroughtForward int `json:"brought_forward"`
}

// templateRun is a template's row of offer_template_runs: where its
// personal offers stand (see GivePersonalOffers).
type templateRun struct {
	TemplateID        string
	AsOf              time.Time
	TemplateUpdatedAt time.Time
	Cutoff            time.Time
	PurchaseRowid     *int64 // SQLite's mark; PostgreSQL's is Cutoff
	OffersSince       time.Time
}

// mark is the run's mark of the purchases, as PurchasesMark gives it.
func (r templateRun) mark() any {
	if r.PurchaseRowid != nil {
		return *r.PurchaseRowid
	}
	return r.Cutoff
}

// templateRuns reads offer_template_runs by template, locked on PostgreSQL
// so that two runs bring it forward one after the other.
func templateRuns(tx *gorm.DB) (map[string]templateRun, error) {
	cols, lock := "template_id, as_of, template_updated_at, cutoff, NULL AS purchase_rowid, offers_since", " FOR UPDATE"
	if tx.Dialector.Name() != Postgres {
		cols, lock = "template_id, as_of, template_updated_at, cutoff, purchase_rowid, offers_since", ""
	}
	var rows []templateRun
	if err := tx.Raw(`SELECT ` + cols + ` FROM offer_template_runs` + lock).Scan(&rows).Error; err != nil {
		return nil, err
	}
	out := make(map[string]templateRun, len(rows))
	for _, r := range rows {
		r.AsOf, r.TemplateUpdatedAt, r.Cutoff, r.OffersSince = ts(r.AsOf), ts(r.TemplateUpdatedAt), ts(r.Cutoff), ts(r.OffersSince)
		out[r.TemplateID] = r
	}
	return out, nil
}

// saveTemplateRun writes a template's row of offer_template_runs.
func saveTemplateRun(tx *gorm.DB, r templateRun) error {
	if tx.Dialector.Name() == Postgres {
		return tx.Exec(`INSERT INTO offer_template_runs (template_id, as_of, template_updated_at, cutoff, offers_since)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (template_id) DO UPDATE SET as_of = EXCLUDED.as_of,
			template_updated_at = EXCLUDED.template_updated_at, cutoff = EXCLUDED.cutoff, offers_since = EXCLUDED.offers_since`,
			r.TemplateID, r.AsOf, r.TemplateUpdatedAt, r.Cutoff, r.OffersSince).Error
	}
	return tx.Exec(`INSERT INTO offer_template_runs (template_id, as_of, template_updated_at, cutoff, purchase_rowid, offers_since)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (template_id) DO UPDATE SET as_of = excluded.as_of,
		template_updated_at = excluded.template_updated_at, cutoff = excluded.cutoff, purchase_rowid = excluded.purchase_rowid,
		offers_since = excluded.offers_since`,
		r.TemplateID, r.AsOf, r.TemplateUpdatedAt, r.Cutoff, r.PurchaseRowid, r.OffersSince).Error
}

// sameDay reports whether two instants fall on one UTC day, as the day in
// a personal offer's id does.
func sameDay(a, b time.Time) bool {
	return a.UTC().Format(time.DateOnly) == b.UTC().Format(time.DateOnly)
}

// GivePersonalOffers gives, for every active template, each active member
// with at least min_purchases purchases in the last lookback_days an offer
// on its favourite category there (most spend; ties by name), live for
// duration_days from asOf, unless it holds a live one from that template.
// One INSERT … SELECT per template; an offer's id is derived from template,
// member and day, so a second run for the same asOf gives nothing twice.
// The first run of a template judges every member; a later one, for a
// later asOf and an unchanged template, only those whose answer can have
// changed since (offer_template_runs): a night costs the day's purchases
// and the offers ending, not the lookback's purchases of every member.
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
	err = s.store.writeJob(ctx, func(tx *gorm.DB) error {
		sum = PersonalOffersSummary{}
		if err := JobSettings(tx); err != nil {
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
		runs, err := templateRuns(tx)
		if err != nil {
			return err
		}
		cutoff := MarkCutoff(asOf, now)
		mark, err := PurchasesMark(tx, cutoff)
		if err != nil {
			return err
		}
		day := asOf.Format("20060102")
		for _, t := range tpls {
			from := ts(asOf.AddDate(0, 0, -t.LookbackDays))
			ends := ts(asOf.AddDate(0, 0, t.DurationDays))
			if !ends.After(now) {
				continue
			}
			fromDate, toDate := LocalDates(from, asOf)
			args := map[string]any{"tpl": t.ID, "day": day, "code": t.Code, "name": t.Name, "kind": t.Kind, "multiplier": t.Multiplier,
				"bonus": t.BonusPoints, "conditions": t.Conditions, "target_all": false, "activation": t.RequiresActivation,
				"as_of": asOf, "ends": ends, "max_uses": t.MaxUsesPerMember, "now": now, "from": from, "min": t.MinPurchases,
				"from_date": fromDate, "to_date": toDate}
			// The members due, into a table of the transaction: active,
			// with min_purchases in the window and without a live offer of
			// the template (a live one: active, not ended by the as-of, and
			// begun before the new one would end).
			live := `NOT EXISTS (SELECT 1 FROM offers o WHERE o.template_id = @tpl AND o.owner_member_id = d.member_id
					AND o.status = 'active' AND (o.ends_at IS NULL OR o.ends_at > @as_of) AND (o.starts_at IS NULL OR o.starts_at < @ends))`
			prev, ok := runs[t.ID]
			var due string
			broughtForward := false
			if ok && asOf.After(prev.AsOf) && prev.TemplateUpdatedAt.Equal(ts(t.UpdatedAt)) && UsableMark(prev.mark(), mark) {
				// Brought forward from the last run (offer_template_runs):
				// every member it passed over either fell short of the
				// purchases, and can only reach them with a purchase since
				// (written since its mark, or dated since its as-of), or
				// held a live offer, which can only stop being live by
				// ending or by an edit. Those members alone are judged:
				// first whether they hold a live offer (one probe of the
				// offers' index each; most members who bought do), then,
				// of those who do not, each one's purchases counted by its
				// index up to the minimum. The first step is fenced
				// (MATERIALIZED), as PostgreSQL would otherwise count
				// every member's purchases first: 1.8–1.9 s against
				// 1.0–1.2 s for 77,000 members at a million.
				sum.BroughtForward++
				broughtForward = true
				prevFrom, _ := LocalDates(prev.AsOf, asOf)
				args["mark"], args["prev_as_of"], args["prev_from_date"], args["offers_since"] = prev.mark(), prev.AsOf, prevFrom, prev.OffersSince
				due = `WITH d AS MATERIALIZED (SELECT d.member_id FROM (
						SELECT member_id FROM purchases WHERE ` + PurchasesSinceSQL(tx, "@mark") + `
						UNION SELECT member_id FROM purchases WHERE local_date >= @prev_from_date AND local_date <= @to_date
							AND occurred_at > @prev_as_of AND occurred_at <= @as_of
						UNION SELECT owner_member_id FROM offers WHERE status = 'active' AND ends_at > @prev_as_of AND ends_at <= @as_of
							AND template_id = @tpl
						UNION SELECT owner_member_id FROM offers WHERE template_id = @tpl AND updated_at > @offers_since
					) d WHERE ` + live + `)
					SELECT d.member_id FROM d JOIN members m ON m.id = d.member_id AND m.status = 'active'
					WHERE (SELECT COUNT(*) FROM (SELECT 1 FROM purchases p WHERE p.member_id = d.member_id
						AND p.occurred_at >= @from AND p.occurred_at <= @as_of LIMIT @min) n) >= @min`
			} else {
				// Every member: one aggregate over the window's purchases,
				// which the local_date BRIN index narrows (a local date is
				// within a day of the instant's UTC date); the table's size
				// (ANALYZE) then has PostgreSQL hash the window's purchases
				// for the favourite categories.
				due = `SELECT d.member_id FROM (
						SELECT p.member_id FROM purchases p
						WHERE p.occurred_at >= @from AND p.occurred_at <= @as_of
							AND p.local_date >= @from_date AND p.local_date <= @to_date
						GROUP BY p.member_id HAVING COUNT(*) >= @min
					) d JOIN members m ON m.id = d.member_id AND m.status = 'active'
					WHERE ` + live
			}
			if err := TempTable(tx, "offer_due", due, args); err != nil {
				return err
			}
			if tx.Dialector.Name() == Postgres {
				if err := tx.Exec(`ANALYZE offer_due`).Error; err != nil {
					return err
				}
			}
			// Each due member's favourite category: the most spent on in
			// the window, ranked in one pass over the due members' lines.
			// Brought forward on PostgreSQL, each member's is found inside
			// its own LATERAL instead, from its purchases of the window by
			// index and their lines by key, so the work is the due members'
			// lines whatever the planner makes of the window: joined at
			// once, a night's 10,000 offers took 1.5–2.8 s on some nights
			// and 18 s on another at a million members, as the plan changed
			// with the purchases' statistics. (SQLite has no LATERAL; a run
			// from scratch judges most members, for which the one pass is
			// the plan.)
			favourite := `SELECT f.member_id, f.category FROM (
					SELECT p.member_id, i.category,
						ROW_NUMBER() OVER (PARTITION BY p.member_id ORDER BY ` + s.store.SumOrderSQL("i.amount") + ` DESC, i.category) AS rn
					FROM offer_due c JOIN purchases p ON p.member_id = c.member_id AND p.occurred_at >= @from AND p.occurred_at <= @as_of
					JOIN purchase_items i ON i.purchase_id = p.id
					WHERE i.category <> ''
					GROUP BY p.member_id, i.category
				) f WHERE f.rn = 1`
			if broughtForward && tx.Dialector.Name() == Postgres {
				favourite = `SELECT c.member_id, f.category FROM offer_due c CROSS JOIN LATERAL (
					SELECT i.category FROM purchases p JOIN purchase_items i ON i.purchase_id = p.id
					WHERE p.member_id = c.member_id AND p.occurred_at >= @from AND p.occurred_at <= @as_of AND i.category <> ''
					GROUP BY i.category ORDER BY ` + s.store.SumOrderSQL("i.amount") + ` DESC, i.category LIMIT 1
				) f`
			}
			res := tx.Exec(`INSERT INTO offers (id, code, name, kind, multiplier, bonus_points, conditions, target_all, target_segments,
					requires_activation, starts_at, ends_at, max_uses_per_member, status, template_id, owner_member_id,
					personal_category, created_at, updated_at)
				SELECT 'po:' || @tpl || ':' || f.member_id || ':' || @day, @code || '-' || f.member_id || '-' || @day, @name, @kind,
					@multiplier, @bonus, @conditions, @target_all, '[]', @activation, @as_of, @ends, @max_uses, 'active', @tpl,
					f.member_id, f.category, @now, @now
				FROM (`+favourite+`) f WHERE 1 = 1
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
			// A run for a past as-of leaves the state where it is: what it
			// gave can only keep members from being due later.
			if !ok || !asOf.Before(prev.AsOf) {
				next := templateRun{TemplateID: t.ID, AsOf: asOf, TemplateUpdatedAt: ts(t.UpdatedAt), Cutoff: cutoff, OffersSince: cutoff}
				if rowid, isRowid := mark.(int64); isRowid {
					next.PurchaseRowid = &rowid
				}
				if ok && sameDay(prev.AsOf, asOf) {
					next.OffersSince = prev.OffersSince
				}
				if err := saveTemplateRun(tx, next); err != nil {
					return err
				}
			}
		}
		if sum.Offers == 0 {
			return nil
		}
		// Every till's purchase reads the live offers (pgOffersSQL) by a
		// plan its connection keeps, made for the table its statistics
		// last described: a run that grew the table by more than a tenth
		// gathers them again, so that the tills' plans are made again at
		// its commit for the offers they will find. A night that gave
		// 158,000 offers into a table analyzed empty had each purchase walk
		// every live personal offer, 48 ms a purchase at 1,000,000 members.
		if err := AnalyzeIfGrown(tx, "offers", sum.Offers); err != nil {
			return err
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
