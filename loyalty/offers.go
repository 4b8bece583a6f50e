package loyalty

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/tiers"
)

// Offer kinds (§11).
const (
	OfferMultiplier = "multiplier"
	OfferBonus      = "bonus"
)

// Offer statuses.
const (
	OfferActive = "active"
	OfferPaused = "paused"
)

// OfferConditions are what a purchase must satisfy for an offer to apply.
// Empty lists do not restrict.
type OfferConditions struct {
	Categories []string `json:"categories"`
	SKUs       []string `json:"skus"`
	StoreIDs   []string `json:"store_ids"`
	Channels   []string `json:"channels"`
	MinSpend   int64    `json:"min_spend"`
}

// OfferTarget says which members an offer is for.
type OfferTarget struct {
	All       bool     `json:"all"`
	Segments  []string `json:"segments"`
	MemberIDs []string `json:"member_ids"`
}

type offerRow struct {
	ID                 string `gorm:"primaryKey"`
	Code               string
	Name               string
	Kind               string
	Multiplier         string
	BonusPoints        int64
	Conditions         string
	TargetAll          bool
	TargetSegments     string
	RequiresActivation bool
	StartsAt           *time.Time
	EndsAt             *time.Time
	MaxUsesPerMember   *int
	Status             string
	TemplateID         *string
	OwnerMemberID      *string
	PersonalCategory   *string
	CreatedAt          time.Time
	UpdatedAt          time.Time
}

func (offerRow) TableName() string { return "offers" }

type offerMemberRow struct {
	OfferID  string `gorm:"primaryKey"`
	MemberID string `gorm:"primaryKey"`
}

func (offerMemberRow) TableName() string { return "offer_members" }

type activationRow struct {
	OfferID     string `gorm:"primaryKey"`
	MemberID    string `gorm:"primaryKey"`
	ActivatedAt time.Time
}

func (activationRow) TableName() string { return "offer_activations" }

type offerUseRow struct {
	OfferID    string `gorm:"primaryKey"`
	PurchaseID string `gorm:"primaryKey"`
	MemberID   string
	Points     int64
	CreatedAt  time.Time
}

func (offerUseRow) TableName() string { return "offer_uses" }

// Offer is an offer as marketers see it (§11).
type Offer struct {
	ID                 string          `json:"id"`
	Code               string          `json:"code"`
	Name               string          `json:"name"`
	Kind               string          `json:"kind"`
	Multiplier         decimal.Decimal `json:"multiplier"`
	BonusPoints        int64           `json:"bonus_points"`
	Conditions         OfferConditions `json:"conditions"`
	Target             OfferTarget     `json:"target"`
	RequiresActivation bool            `json:"requires_activation"`
	StartsAt           *time.Time      `json:"starts_at"`
	EndsAt             *time.Time      `json:"ends_at"`
	MaxUsesPerMember   *int            `json:"max_uses_per_member"`
	Status             string          `json:"status"`
	TemplateID         *string         `json:"template_id"`
	CreatedAt          time.Time       `json:"created_at"`
	UpdatedAt          time.Time       `json:"updated_at"`
}

func (r offerRow) conditions() OfferConditions {
	var c OfferConditions
	_ = json.Unmarshal([]byte(r.Conditions), &c)
	if r.PersonalCategory != nil {
		c.Categories = []string{*r.PersonalCategory}
	}
	for _, l := range []*[]string{&c.Categories, &c.SKUs, &c.StoreIDs, &c.Channels} {
		if *l == nil {
			*l = []string{}
		}
	}
	return c
}

func (r offerRow) segments() []string {
	s := []string{}
	_ = json.Unmarshal([]byte(r.TargetSegments), &s)
	return s
}

func offerFromRow(r offerRow, memberIDs []string) Offer {
	m, _ := decimal.NewFromString(r.Multiplier)
	if memberIDs == nil {
		memberIDs = []string{}
	}
	if r.OwnerMemberID != nil {
		memberIDs = []string{*r.OwnerMemberID}
	}
	return Offer{ID: r.ID, Code: r.Code, Name: r.Name, Kind: r.Kind, Multiplier: m, BonusPoints: r.BonusPoints,
		Conditions: r.conditions(), Target: OfferTarget{All: r.TargetAll, Segments: r.segments(), MemberIDs: memberIDs},
		RequiresActivation: r.RequiresActivation, StartsAt: utcp(r.StartsAt), EndsAt: utcp(r.EndsAt),
		MaxUsesPerMember: r.MaxUsesPerMember, Status: r.Status, TemplateID: r.TemplateID,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

// OfferInput is the body of POST /v1/offers and PATCH /v1/offers/{id}; in
// a patch, absent fields are left alone and null clears a time or a limit.
type OfferInput struct {
	Code               *string          `json:"code"`
	Name               *string          `json:"name"`
	Kind               *string          `json:"kind"`
	Multiplier         *decimal.Decimal `json:"multiplier"`
	BonusPoints        *int64           `json:"bonus_points"`
	Conditions         *OfferConditions `json:"conditions"`
	Target             *OfferTarget     `json:"target"`
	RequiresActivation *bool            `json:"requires_activation"`
	StartsAt           *time.Time       `json:"starts_at"`
	EndsAt             *time.Time       `json:"ends_at"`
	MaxUsesPerMember   *int             `json:"max_uses_per_member"`
	Status             *string          `json:"status"`

	Present map[string]bool `json:"-"`
}

// UnmarshalJSON records which fields are present.
func (in *OfferInput) UnmarshalJSON(b []byte) error {
	type plain OfferInput
	if err := json.Unmarshal(b, (*plain)(in)); err != nil {
		return err
	}
	var err error
	in.Present, err = PresentFields(b)
	return err
}

func validateConditions(v *Validation, c OfferConditions, prefix string) {
	for name, l := range map[string][]string{"categories": c.Categories, "skus": c.SKUs, "store_ids": c.StoreIDs, "channels": c.Channels} {
		if len(l) > 500 {
			v.Add(prefix+name, "at most 500 values")
		}
		for _, s := range l {
			if s == "" || len(s) > 255 {
				v.Add(prefix+name, "values must be 1 to 255 characters")
				break
			}
		}
	}
	if c.MinSpend < 0 || c.MinSpend > MaxTotal {
		v.Add(prefix+"min_spend", "must be from 0 to %d", MaxTotal)
	}
}

// validateTerms checks what offers and templates share: a name and what
// the offer gives.
func validateTerms(v *Validation, name, kind, multiplier string, bonus int64) {
	if name == "" || len(name) > 200 {
		v.Add("name", "is required, at most 200 characters")
	}
	m, err := decimal.NewFromString(multiplier)
	if err != nil {
		m = decimal.Zero
	}
	validateReward(v, kind, m, bonus)
}

func validateReward(v *Validation, kind string, m decimal.Decimal, bonus int64) {
	if bonus < 0 || bonus > tiers.MaxPoints {
		v.Add("bonus_points", "must be from 0 to %d", int64(tiers.MaxPoints))
	}
	switch kind {
	case OfferMultiplier:
		if m.LessThanOrEqual(decimal.NewFromInt(1)) || m.GreaterThan(decimal.NewFromInt(100)) || m.Exponent() < -6 {
			v.Add("multiplier", "must be a decimal above 1 and at most 100, such as \"2\"")
		}
	case OfferBonus:
		if bonus == 0 {
			v.Add("bonus_points", "must be above 0")
		}
		if m.LessThan(decimal.NewFromInt(1)) || m.GreaterThan(decimal.NewFromInt(100)) {
			v.Add("multiplier", "is not used by a bonus offer; leave it out or at 1")
		}
	default:
		v.Add("kind", "must be multiplier or bonus")
	}
}

func (in OfferInput) apply(r *offerRow) (memberIDs []string, setMembers bool) {
	if in.Code != nil {
		r.Code = *in.Code
	}
	if in.Name != nil {
		r.Name = *in.Name
	}
	if in.Kind != nil {
		r.Kind = *in.Kind
	}
	if in.Multiplier != nil {
		r.Multiplier = in.Multiplier.String()
	}
	if in.BonusPoints != nil {
		r.BonusPoints = *in.BonusPoints
	}
	if in.Conditions != nil {
		b, _ := json.Marshal(in.Conditions)
		r.Conditions = string(b)
	}
	if in.Target != nil {
		r.TargetAll = in.Target.All
		segs := in.Target.Segments
		if segs == nil {
			segs = []string{}
		}
		b, _ := json.Marshal(segs)
		r.TargetSegments = string(b)
		memberIDs, setMembers = in.Target.MemberIDs, true
	}
	if in.RequiresActivation != nil {
		r.RequiresActivation = *in.RequiresActivation
	}
	if in.Present["starts_at"] {
		r.StartsAt = tsp(in.StartsAt)
	}
	if in.Present["ends_at"] {
		r.EndsAt = tsp(in.EndsAt)
	}
	if in.Present["max_uses_per_member"] {
		r.MaxUsesPerMember = in.MaxUsesPerMember
	}
	if in.Status != nil {
		r.Status = *in.Status
	}
	return memberIDs, setMembers
}

func validateOffer(tx *gorm.DB, r offerRow, memberIDs []string) error {
	var v Validation
	if !codePattern.MatchString(r.Code) {
		v.Add("code", "must be 1 to 64 lowercase letters, digits, _ or -")
	}
	validateTerms(&v, r.Name, r.Kind, r.Multiplier, r.BonusPoints)
	var c OfferConditions
	_ = json.Unmarshal([]byte(r.Conditions), &c)
	validateConditions(&v, c, "conditions.")
	if r.StartsAt != nil && r.EndsAt != nil && !r.EndsAt.After(*r.StartsAt) {
		v.Add("ends_at", "must be after starts_at")
	}
	if r.MaxUsesPerMember != nil && (*r.MaxUsesPerMember < 1 || *r.MaxUsesPerMember > 1_000_000) {
		v.Add("max_uses_per_member", "must be from 1 to 1000000 (null for unlimited)")
	}
	if r.Status != OfferActive && r.Status != OfferPaused {
		v.Add("status", "must be active or paused")
	}
	if len(memberIDs) > 10000 {
		v.Add("target.member_ids", "at most 10000; target a segment instead")
	} else if len(memberIDs) > 0 {
		var n int64
		if err := tx.Model(&memberRow{}).Where("id IN ?", memberIDs).Count(&n).Error; err != nil {
			return err
		}
		if n != int64(len(uniq(memberIDs))) {
			v.Add("target.member_ids", "names members that do not exist")
		}
	}
	return v.Err()
}

func uniq(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func setOfferMembers(tx *gorm.DB, offerID string, memberIDs []string) error {
	if err := tx.Where("offer_id = ?", offerID).Delete(&offerMemberRow{}).Error; err != nil {
		return err
	}
	ids := uniq(memberIDs)
	if len(ids) == 0 {
		return nil
	}
	rows := make([]offerMemberRow, len(ids))
	for i, id := range ids {
		rows[i] = offerMemberRow{OfferID: offerID, MemberID: id}
	}
	return tx.CreateInBatches(rows, 500).Error
}

func offerMembers(db *gorm.DB, offerID string) ([]string, error) {
	var ids []string
	err := db.Model(&offerMemberRow{}).Where("offer_id = ?", offerID).Order("member_id").Pluck("member_id", &ids).Error
	return ids, err
}

// CreateOffer adds an offer.
func (s *Service) CreateOffer(ctx context.Context, in OfferInput, key IdempotencyKey) (Offer, *Replay, error) {
	var v Validation
	for f, ok := range map[string]bool{"code": in.Code != nil, "name": in.Name != nil, "kind": in.Kind != nil} {
		if !ok {
			v.Add(f, "is required")
		}
	}
	if err := v.Err(); err != nil {
		return Offer{}, nil, err
	}
	o, rep, err := writeOnce(ctx, s, headerGuard(key), func(tx *gorm.DB) (Offer, error) {
		now := ts(s.now())
		row := offerRow{ID: newID(), Multiplier: "1", Conditions: "{}", TargetSegments: "[]", Status: OfferActive, CreatedAt: now, UpdatedAt: now}
		ids, _ := in.apply(&row)
		if err := validateOffer(tx, row, ids); err != nil {
			return Offer{}, err
		}
		if err := tx.Create(&row).Error; err != nil {
			if errors.Is(err, gorm.ErrDuplicatedKey) {
				return Offer{}, Errorf(Conflict, "duplicate", "an offer with code %q exists", row.Code)
			}
			return Offer{}, err
		}
		if err := setOfferMembers(tx, row.ID, ids); err != nil {
			return Offer{}, err
		}
		o := offerFromRow(row, uniq(ids))
		return o, s.Audit(ctx, tx, "offer.create", "offer", o.ID, Change(nil, o))
	})
	if err != nil {
		return Offer{}, nil, fmt.Errorf("create offer: %w", err)
	}
	return o, rep, nil
}

func getOffer(db *gorm.DB, id string) (offerRow, error) {
	var r offerRow
	if err := db.Where("id = ?", id).Take(&r).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return r, Errorf(NotFound, "not_found", "no offer has id %q", id)
		}
		return r, err
	}
	return r, nil
}

// UpdateOffer changes an offer; pausing is status "paused".
func (s *Service) UpdateOffer(ctx context.Context, id string, in OfferInput) (Offer, error) {
	var out Offer
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		// The row's lock also serialises edits of the offer's member list.
		var ids []string
		var setMembers bool
		before, row, err := UpdateRow(tx, id, func(row *offerRow) error {
			ids, setMembers = in.apply(row)
			if !setMembers {
				var err error
				if ids, err = offerMembers(tx, id); err != nil {
					return err
				}
			}
			row.UpdatedAt = ts(s.now())
			return validateOffer(tx, *row, ids)
		})
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			return Errorf(NotFound, "not_found", "no offer has id %q", id)
		case errors.Is(err, gorm.ErrDuplicatedKey):
			return Errorf(Conflict, "duplicate", "an offer with code %q exists", row.Code)
		case err != nil:
			return err
		}
		if err := s.auditOfferUpdate(ctx, tx, before, row, ids, setMembers); err != nil {
			return err
		}
		if setMembers {
			if err := setOfferMembers(tx, id, ids); err != nil {
				return err
			}
		}
		out = offerFromRow(row, uniq(ids))
		return nil
	})
	if err != nil {
		return Offer{}, fmt.Errorf("update offer: %w", err)
	}
	return out, nil
}

// GetOffer returns one offer.
func (s *Service) GetOffer(ctx context.Context, id string) (Offer, error) {
	var out Offer
	err := s.store.snapshot(ctx, func(tx *gorm.DB) error {
		row, err := getOffer(tx, id)
		if err != nil {
			return err
		}
		ids, err := offerMembers(tx, id)
		out = offerFromRow(row, ids)
		return err
	})
	return out, err
}

// OfferQuery filters the offers list.
type OfferQuery struct {
	// Personal includes the one-member offers of the personal-offers job.
	Personal bool
	Page     Page
}

// ListOffers lists offers by id (creation order).
func (s *Service) ListOffers(ctx context.Context, q OfferQuery) (List[Offer], error) {
	out := List[Offer]{Items: []Offer{}}
	err := s.store.snapshot(ctx, func(tx *gorm.DB) error {
		db := tx.Model(&offerRow{})
		if !q.Personal {
			db = db.Where("owner_member_id IS NULL")
		}
		after, err := q.Page.afterID()
		if err != nil {
			return err
		}
		if after != "" {
			db = db.Where("id > ?", after)
		}
		var rows []offerRow
		if err := db.Order("id").Limit(q.Page.limit() + 1).Find(&rows).Error; err != nil {
			return err
		}
		for i, r := range rows {
			if i == q.Page.limit() {
				out.NextCursor = encodeCursor(rows[i-1].ID)
				break
			}
			ids, err := offerMembers(tx, r.ID)
			if err != nil {
				return err
			}
			out.Items = append(out.Items, offerFromRow(r, ids))
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("list offers: %w", err)
	}
	return out, nil
}

// OfferReach counts the active members an offer targets now.
func (s *Service) OfferReach(ctx context.Context, id string) (int64, error) {
	var n int64
	err := s.store.snapshot(ctx, func(tx *gorm.DB) error {
		row, err := getOffer(tx, id)
		if err != nil {
			return err
		}
		q := tx.Model(&memberRow{}).Where("status = ?", StatusActive)
		switch {
		case row.OwnerMemberID != nil:
			q = q.Where("id = ?", *row.OwnerMemberID)
		case row.TargetAll:
		case len(row.segments()) == 0:
			q = q.Where("id IN (SELECT member_id FROM offer_members WHERE offer_id = ?)", id)
		default:
			q = q.Where("id IN (SELECT member_id FROM offer_members WHERE offer_id = ?) OR id IN (SELECT member_id FROM member_segments WHERE segment_code IN ?)",
				id, row.segments())
		}
		return q.Count(&n).Error
	})
	return n, err
}

// memberOffers holds what decides which offers apply to one member.
type memberOffers struct {
	offers    []offerRow
	targeted  map[string]bool // offers naming the member
	activated map[string]bool
	uses      map[string]int
	segments  map[string]bool
}

func newMemberOffers() *memberOffers {
	return &memberOffers{targeted: map[string]bool{}, activated: map[string]bool{}, uses: map[string]int{}, segments: map[string]bool{}}
}

// fact records one fact about the member read in one statement (see
// pgOfferFactsSQL): t an offer naming it, a an activation, u n uses of an
// offer, s a segment it belongs to.
func (mo *memberOffers) fact(kind, id string, n int) {
	switch kind {
	case "t":
		mo.targeted[id] = true
	case "a":
		mo.activated[id] = true
	case "u":
		mo.uses[id] = n
	case "s":
		mo.segments[id] = true
	}
}

// offersVersionSQL reads offers_version; offersSeenSQL also whether any
// offer is active, in the same snapshot.
const (
	offersVersionSQL = `SELECT version FROM offers_version WHERE id = 1`
	offersSeenSQL    = `SELECT version, EXISTS (SELECT 1 FROM offers WHERE status = ?) FROM offers_version WHERE id = 1`
)

// offersFor is loadMemberOffers for a write: while offers_version is the
// one at which the store last found no active offer, it reads nothing more
// (one single-row read instead of five queries on the writer's path).
func (s *Store) offersFor(tx *gorm.DB, memberID string, at time.Time) (*memberOffers, error) {
	var v int64
	if err := queryRowTx(tx, offersVersionSQL).Scan(&v); err != nil {
		return nil, err
	}
	seen := s.offersSeen.Load()
	if seen != nil && seen.version == v && !seen.active {
		return newMemberOffers(), nil
	}
	mo, err := loadMemberOffers(tx, memberID, at)
	if err != nil {
		return nil, err
	}
	if seen == nil || seen.version != v {
		// Offers changed since last seen: what is active now, once.
		var now offersSeen
		if err := queryRowTx(tx, offersSeenSQL, OfferActive).Scan(&now.version, &now.active); err != nil {
			return nil, err
		}
		s.offersSeen.Store(&now)
	}
	return mo, nil
}

// anyOfferLive says whether an offer may be live: false when this store
// saw none active at the current offers_version, so that no member's need
// be read (offersFor would answer none for each).
func (s *Store) anyOfferLive(tx *gorm.DB) (bool, error) {
	var v int64
	if err := queryRowTx(tx, offersVersionSQL).Scan(&v); err != nil {
		return false, err
	}
	seen := s.offersSeen.Load()
	return seen == nil || seen.version != v || seen.active, nil
}

// queryRowTx runs a fixed text on the transaction: on SQLite on its
// connection through the statement cache, on PostgreSQL through GORM.
func queryRowTx(tx *gorm.DB, q string, args ...any) *sql.Row {
	if tx.Dialector.Name() != Postgres {
		return tx.Statement.ConnPool.QueryRowContext(tx.Statement.Context, q, args...)
	}
	return tx.Raw(q, args...).Row()
}

// loadMemberOffers reads the offers live at at that may apply to member.
func loadMemberOffers(tx *gorm.DB, memberID string, at time.Time) (*memberOffers, error) {
	mo := newMemberOffers()
	if err := tx.Where(`status = ? AND (starts_at IS NULL OR starts_at <= ?) AND (ends_at IS NULL OR ends_at > ?)
		AND (owner_member_id IS NULL OR owner_member_id = ?)`, OfferActive, at, at, memberID).
		Order("id").Find(&mo.offers).Error; err != nil {
		return nil, err
	}
	if len(mo.offers) == 0 {
		return mo, nil
	}
	var ids []string
	if err := tx.Model(&offerMemberRow{}).Where("member_id = ?", memberID).Pluck("offer_id", &ids).Error; err != nil {
		return nil, err
	}
	for _, id := range ids {
		mo.targeted[id] = true
	}
	if err := tx.Model(&activationRow{}).Where("member_id = ?", memberID).Pluck("offer_id", &ids).Error; err != nil {
		return nil, err
	}
	for _, id := range ids {
		mo.activated[id] = true
	}
	var uses []struct {
		OfferID string
		N       int
	}
	if err := tx.Model(&offerUseRow{}).Select("offer_id, COUNT(*) AS n").Where("member_id = ?", memberID).
		Group("offer_id").Scan(&uses).Error; err != nil {
		return nil, err
	}
	for _, u := range uses {
		mo.uses[u.OfferID] = u.N
	}
	var segs []string
	if err := tx.Table("member_segments").Where("member_id = ?", memberID).Pluck("segment_code", &segs).Error; err != nil {
		return nil, err
	}
	for _, sg := range segs {
		mo.segments[sg] = true
	}
	return mo, nil
}

// targets reports whether the offer is for this member.
func (mo *memberOffers) targets(o offerRow) bool {
	if o.OwnerMemberID != nil || o.TargetAll || mo.targeted[o.ID] {
		return true
	}
	for _, sg := range o.segments() {
		if mo.segments[sg] {
			return true
		}
	}
	return false
}

// usesLeft is how many more times the member may use the offer; -1 when
// unlimited.
func (mo *memberOffers) usesLeft(o offerRow) int {
	if o.MaxUsesPerMember == nil {
		return -1
	}
	return max(0, *o.MaxUsesPerMember-mo.uses[o.ID])
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// apply returns the breakdown lines of the offers that apply to pur, each
// floored on its own (§11).
func (mo *memberOffers) apply(prog *Program, pur purchase) []BreakdownLine {
	var lines []BreakdownLine
	for _, o := range mo.offers {
		if !mo.targets(o) || (o.RequiresActivation && !mo.activated[o.ID]) || mo.usesLeft(o) == 0 {
			continue
		}
		c := o.conditions()
		if len(c.StoreIDs) > 0 && !contains(c.StoreIDs, pur.StoreID) {
			continue
		}
		if len(c.Channels) > 0 && !contains(c.Channels, pur.Channel) {
			continue
		}
		// Offers earn on the cash part only (§16): a payment with points
		// takes its share off every line.
		eligible := pur.cash()
		if len(c.Categories) > 0 || len(c.SKUs) > 0 {
			eligible = 0
			for _, it := range pur.items {
				if contains(c.Categories, it.Category) || contains(c.SKUs, it.SKU) {
					eligible += it.Amount
				}
			}
			eligible = pur.cashShare(eligible)
		}
		if eligible == 0 {
			continue
		}
		if eligible < c.MinSpend {
			continue
		}
		var pts int64
		if o.Kind == OfferBonus {
			pts = o.BonusPoints
		} else {
			m, err := decimal.NewFromString(o.Multiplier)
			if err != nil {
				continue
			}
			pts, err = tiers.Earn(eligible, prog.Exponent(), prog.PointsPerUnit, m.Sub(decimal.NewFromInt(1)))
			if err != nil {
				continue
			}
		}
		if pts > 0 {
			lines = append(lines, BreakdownLine{Source: "offer", OfferID: o.ID, Points: pts})
		}
	}
	return lines
}

// MemberOffer is an offer live for one member now.
type MemberOffer struct {
	Offer
	Activated bool `json:"activated"`
	// UsesLeft is null when the offer has no per-member limit.
	UsesLeft *int `json:"uses_left"`
}

// MemberOffers lists the offers live for a member now, for its app.
func (s *Service) MemberOffers(ctx context.Context, p Principal, memberID string) (List[MemberOffer], error) {
	out := List[MemberOffer]{Items: []MemberOffer{}}
	if !p.SeesMember(memberID) {
		return out, hidden(memberID)
	}
	err := s.store.snapshot(ctx, func(tx *gorm.DB) error {
		if _, err := getMember(tx, memberID); err != nil {
			return err
		}
		mo, err := loadMemberOffers(tx, memberID, ts(s.now()))
		if err != nil {
			return err
		}
		for _, o := range mo.offers {
			if !mo.targets(o) {
				continue
			}
			left := mo.usesLeft(o)
			item := MemberOffer{Offer: offerFromRow(o, nil), Activated: !o.RequiresActivation || mo.activated[o.ID]}
			item.Target.MemberIDs = []string{}
			if left >= 0 {
				item.UsesLeft = &left
			}
			out.Items = append(out.Items, item)
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("member offers: %w", err)
	}
	return out, nil
}

// ActivateOffer records that a member opted in to an offer live for it.
// Activating twice is harmless.
func (s *Service) ActivateOffer(ctx context.Context, p Principal, memberID, offerID string) (MemberOffer, error) {
	if !p.SeesMember(memberID) {
		return MemberOffer{}, hidden(memberID)
	}
	var out MemberOffer
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		// The member row stays locked to the commit, so an erasure cannot
		// slip in between the check and the activation.
		m, err := getMember(forUpdate(tx), memberID)
		if err != nil {
			return err
		}
		if m.Status != StatusActive {
			return Errorf(Conflict, "member_erased", "the member was erased")
		}
		now := ts(s.now())
		mo, err := loadMemberOffers(tx, memberID, now)
		if err != nil {
			return err
		}
		for _, o := range mo.offers {
			if o.ID != offerID || !mo.targets(o) {
				continue
			}
			if err := tx.Clauses(onConflictNothing).Create(&activationRow{OfferID: offerID, MemberID: memberID, ActivatedAt: now}).Error; err != nil {
				return err
			}
			left := mo.usesLeft(o)
			out = MemberOffer{Offer: offerFromRow(o, nil), Activated: true}
			out.Target.MemberIDs = []string{}
			if left >= 0 {
				out.UsesLeft = &left
			}
			return nil
		}
		return Errorf(NotFound, "not_found", "no offer %q is live for this member", offerID)
	})
	if err != nil {
		return MemberOffer{}, fmt.Errorf("activate offer: %w", err)
	}
	return out, nil
}
