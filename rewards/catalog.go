// Package rewards is the rewards catalog and what members do with it:
// redemptions paid in points, the coupons they issue, their use at a till
// and their cancellation. It builds on the loyalty ledger and takes every
// member's points under that member's account lock.
package rewards

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/tiers"
)

// Service is the rewards API.
type Service struct {
	ledger *loyalty.Service
}

// NewService builds the rewards service on the ledger.
func NewService(ledger *loyalty.Service) *Service { return &Service{ledger: ledger} }

type rewardRow struct {
	ID             string `gorm:"primaryKey"`
	Code           string
	Name           string
	Description    string
	CostPoints     int64
	MinTier        *string
	Stock          *int64
	PerMemberLimit *int
	ValidFrom      *time.Time
	ValidUntil     *time.Time
	Active         bool
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

func (rewardRow) TableName() string { return "rewards" }

// Reward is a catalog item (§9).
type Reward struct {
	ID             string     `json:"id"`
	Code           string     `json:"code"`
	Name           string     `json:"name"`
	Description    string     `json:"description"`
	CostPoints     int64      `json:"cost_points"`
	MinTier        *string    `json:"min_tier"`
	Stock          *int64     `json:"stock"`
	PerMemberLimit *int       `json:"per_member_limit"`
	ValidFrom      *time.Time `json:"valid_from"`
	ValidUntil     *time.Time `json:"valid_until"`
	Active         bool       `json:"active"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// MemberReward is a reward as one member may redeem it now.
type MemberReward struct {
	Reward
	// Affordable says whether the member's available points cover the cost.
	Affordable bool `json:"affordable"`
	// UsesLeft is how many more the member may redeem, null when unlimited.
	UsesLeft *int `json:"uses_left"`
}

func utcp(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func fromRow(r rewardRow) Reward {
	return Reward{ID: r.ID, Code: r.Code, Name: r.Name, Description: r.Description, CostPoints: r.CostPoints, MinTier: r.MinTier,
		Stock: r.Stock, PerMemberLimit: r.PerMemberLimit, ValidFrom: utcp(r.ValidFrom), ValidUntil: utcp(r.ValidUntil),
		Active: r.Active, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

// RewardInput is the body of POST /v1/rewards and PATCH /v1/rewards/{id}.
// In a patch a field absent from the JSON is left alone and null clears it.
type RewardInput struct {
	Code           *string    `json:"code"`
	Name           *string    `json:"name"`
	Description    *string    `json:"description"`
	CostPoints     *int64     `json:"cost_points"`
	MinTier        *string    `json:"min_tier"`
	Stock          *int64     `json:"stock"`
	PerMemberLimit *int       `json:"per_member_limit"`
	ValidFrom      *time.Time `json:"valid_from"`
	ValidUntil     *time.Time `json:"valid_until"`
	Active         *bool      `json:"active"`

	present map[string]bool
}

// UnmarshalJSON records which fields the JSON names.
func (in *RewardInput) UnmarshalJSON(b []byte) error {
	type plain RewardInput
	if err := json.Unmarshal(b, (*plain)(in)); err != nil {
		return err
	}
	var err error
	in.present, err = loyalty.PresentFields(b)
	return err
}

func (in RewardInput) has(f string) bool { return in.present[f] }

var codeExpr = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// apply copies the fields present into r.
func (in RewardInput) apply(r *rewardRow) {
	if in.has("code") && in.Code != nil {
		r.Code = *in.Code
	}
	if in.has("name") && in.Name != nil {
		r.Name = *in.Name
	}
	if in.has("description") {
		r.Description = ""
		if in.Description != nil {
			r.Description = *in.Description
		}
	}
	if in.has("cost_points") && in.CostPoints != nil {
		r.CostPoints = *in.CostPoints
	}
	if in.has("min_tier") {
		r.MinTier = in.MinTier
	}
	if in.has("stock") {
		r.Stock = in.Stock
	}
	if in.has("per_member_limit") {
		r.PerMemberLimit = in.PerMemberLimit
	}
	if in.has("valid_from") {
		r.ValidFrom = tsp(in.ValidFrom)
	}
	if in.has("valid_until") {
		r.ValidUntil = tsp(in.ValidUntil)
	}
	if in.has("active") && in.Active != nil {
		r.Active = *in.Active
	}
}

func tsp(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := loyalty.TS(*t)
	return &v
}

func validate(tx *gorm.DB, in RewardInput, r rewardRow) error {
	var v loyalty.Validation
	if !codeExpr.MatchString(r.Code) {
		v.Add("code", "must be 1 to 64 lowercase letters, digits, _ or -")
	}
	for _, f := range []string{"code", "name", "cost_points", "active"} {
		if in.has(f) && !present(in, f) {
			v.Add(f, "must not be null")
		}
	}
	if r.Name == "" || len(r.Name) > 200 {
		v.Add("name", "is required, at most 200 characters")
	}
	if len(r.Description) > 2000 {
		v.Add("description", "at most 2000 characters")
	}
	if r.CostPoints < 0 || r.CostPoints > tiers.MaxPoints {
		v.Add("cost_points", "must be from 0 to %d", int64(tiers.MaxPoints))
	}
	if r.Stock != nil && *r.Stock < 0 {
		v.Add("stock", "must not be negative (null for unlimited)")
	}
	if r.PerMemberLimit != nil && (*r.PerMemberLimit < 1 || *r.PerMemberLimit > 1_000_000) {
		v.Add("per_member_limit", "must be from 1 to 1000000 (null for unlimited)")
	}
	if r.Stock != nil && *r.Stock > tiers.MaxPoints {
		v.Add("stock", "is out of range")
	}
	if r.ValidFrom != nil && r.ValidUntil != nil && !r.ValidUntil.After(*r.ValidFrom) {
		v.Add("valid_until", "must be after valid_from")
	}
	if r.MinTier != nil {
		var n int64
		if err := tx.Table("tiers").Where("code = ?", *r.MinTier).Count(&n).Error; err != nil {
			return err
		}
		if n == 0 {
			v.Add("min_tier", "no tier has code %q", *r.MinTier)
		}
	}
	return v.Err()
}

func present(in RewardInput, f string) bool {
	switch f {
	case "code":
		return in.Code != nil
	case "name":
		return in.Name != nil
	case "cost_points":
		return in.CostPoints != nil
	case "active":
		return in.Active != nil
	}
	return true
}

// Create adds a reward to the catalog.
func (s *Service) Create(ctx context.Context, in RewardInput, key loyalty.IdempotencyKey) (Reward, *loyalty.Replay, error) {
	var v loyalty.Validation
	for _, f := range []string{"code", "name", "cost_points"} {
		if !in.has(f) {
			v.Add(f, "is required")
		}
	}
	if err := v.Err(); err != nil {
		return Reward{}, nil, err
	}
	r, rep, err := loyalty.Write(ctx, s.ledger, key, func(tx *loyalty.Tx) (Reward, error) {
		row := rewardRow{ID: loyalty.NewID(), Active: true, CreatedAt: tx.Now, UpdatedAt: tx.Now}
		in.apply(&row)
		if err := validate(tx.DB, in, row); err != nil {
			return Reward{}, err
		}
		if err := tx.DB.Create(&row).Error; err != nil {
			if errors.Is(err, gorm.ErrDuplicatedKey) {
				return Reward{}, loyalty.Errorf(loyalty.Conflict, "duplicate", "a reward with code %q exists", row.Code)
			}
			return Reward{}, err
		}
		r := fromRow(row)
		return r, tx.Audit(ctx, "reward.create", "reward", r.ID, loyalty.Change(nil, r))
	})
	if err != nil {
		return Reward{}, nil, fmt.Errorf("create reward: %w", err)
	}
	return r, rep, nil
}

func getReward(db *gorm.DB, id string) (rewardRow, error) {
	var r rewardRow
	if err := db.Where("id = ?", id).Take(&r).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return r, loyalty.Errorf(loyalty.NotFound, "not_found", "no reward has id %q", id)
		}
		return r, err
	}
	return r, nil
}

// Update changes the fields present in in.
func (s *Service) Update(ctx context.Context, id string, in RewardInput) (Reward, error) {
	return s.update(ctx, id, in, "reward.update")
}

// update changes the fields present in in, recorded in the audit trail as
// action.
func (s *Service) update(ctx context.Context, id string, in RewardInput, action string) (Reward, error) {
	r, _, err := loyalty.Write(ctx, s.ledger, loyalty.IdempotencyKey{}, func(tx *loyalty.Tx) (Reward, error) {
		// Redemptions and cancels change the stock meanwhile: the row is
		// read locked, and only the columns the patch changes are written.
		before, row, err := loyalty.UpdateRow(tx.DB, id, func(row *rewardRow) error {
			in.apply(row)
			row.UpdatedAt = tx.Now
			return validate(tx.DB, in, *row)
		})
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			return Reward{}, loyalty.Errorf(loyalty.NotFound, "not_found", "no reward has id %q", id)
		case errors.Is(err, gorm.ErrDuplicatedKey):
			return Reward{}, loyalty.Errorf(loyalty.Conflict, "duplicate", "a reward with code %q exists", row.Code)
		case err != nil:
			return Reward{}, err
		}
		r := fromRow(row)
		return r, tx.Audit(ctx, action, "reward", r.ID, loyalty.Change(fromRow(before), r))
	})
	if err != nil {
		return Reward{}, fmt.Errorf("update reward: %w", err)
	}
	return r, nil
}

// Retire takes a reward out of the catalog; its redemptions stay.
func (s *Service) Retire(ctx context.Context, id string) error {
	f := false
	_, err := s.update(ctx, id, RewardInput{Active: &f, present: map[string]bool{"active": true}}, "reward.retire")
	return err
}

// Get returns one reward, retired or not.
func (s *Service) Get(ctx context.Context, id string) (Reward, error) {
	var out Reward
	err := loyalty.Read(ctx, s.ledger, func(db *gorm.DB) error {
		r, err := getReward(db, id)
		out = fromRow(r)
		return err
	})
	return out, err
}

// ListQuery filters the catalog.
type ListQuery struct {
	// MemberID keeps the rewards that member may redeem now.
	MemberID string
	// All includes retired rewards (for marketers).
	All  bool
	Page loyalty.Page
}

// List returns active rewards by code; with a member, only those it may
// redeem now: tier, validity window, stock and its per-member limit.
func (s *Service) List(ctx context.Context, p loyalty.Principal, q ListQuery) (loyalty.List[MemberReward], error) {
	out := loyalty.List[MemberReward]{Items: []MemberReward{}}
	if p.Role == loyalty.RoleMember && q.MemberID == "" {
		q.MemberID = p.Subject
	}
	now := s.ledger.Now()
	err := loyalty.Read(ctx, s.ledger, func(db *gorm.DB) error {
		query := db.Model(&rewardRow{})
		if !q.All || q.MemberID != "" || p.Role == loyalty.RoleMember || p.Role == loyalty.RolePOS {
			query = query.Where("active = ?", true)
		}
		var avail int64
		var rank int
		var hasTier bool
		used := map[string]int{}
		if q.MemberID != "" {
			tier, ok, active, err := loyalty.MemberTier(db, p, q.MemberID)
			if err != nil {
				return err
			}
			if !active {
				return nil
			}
			rank, hasTier = tier.Rank, ok
			query = query.Where("(valid_from IS NULL OR valid_from <= ?) AND (valid_until IS NULL OR valid_until > ?) AND (stock IS NULL OR stock > 0)", now, now)
			var counts []struct {
				RewardID string
				N        int
			}
			if err := db.Table("redemptions").Select("reward_id, COUNT(*) AS n").
				Where("member_id = ? AND status <> ?", q.MemberID, StatusCancelled).Group("reward_id").Scan(&counts).Error; err != nil {
				return err
			}
			for _, c := range counts {
				used[c.RewardID] = c.N
			}
			b, err := loyalty.BalanceAt(db, q.MemberID, now)
			if err != nil {
				return err
			}
			avail = b.Available
		}
		if after, err := q.Page.AfterCursor(); err != nil {
			return err
		} else if after != "" {
			query = query.Where("code > ?", after)
		}
		var rows []rewardRow
		if err := query.Order("code").Find(&rows).Error; err != nil {
			return err
		}
		var ranks map[string]int
		if q.MemberID != "" {
			ranks = map[string]int{}
			var trs []struct {
				Code string
				Rank int
			}
			if err := db.Table("tiers").Select("code, rank").Scan(&trs).Error; err != nil {
				return err
			}
			for _, t := range trs {
				ranks[t.Code] = t.Rank
			}
		}
		limit := q.Page.Size()
		for _, r := range rows {
			item := MemberReward{Reward: fromRow(r)}
			if q.MemberID != "" {
				if r.MinTier != nil && (!hasTier || rank < ranks[*r.MinTier]) {
					continue
				}
				if r.PerMemberLimit != nil {
					left := *r.PerMemberLimit - used[r.ID]
					if left <= 0 {
						continue
					}
					item.UsesLeft = &left
				}
				item.Affordable = avail >= r.CostPoints
			}
			if len(out.Items) == limit {
				out.NextCursor = loyalty.Cursor(out.Items[len(out.Items)-1].Code)
				break
			}
			out.Items = append(out.Items, item)
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("list rewards: %w", err)
	}
	return out, nil
}
