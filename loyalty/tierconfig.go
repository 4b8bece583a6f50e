package loyalty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/tiers"
)

// Tier is a tier as configured (§5).
type Tier struct {
	Code            string          `json:"code"`
	Name            string          `json:"name"`
	Rank            int             `json:"rank"`
	EarnMultiplier  decimal.Decimal `json:"earn_multiplier"`
	QualifyingSpend int64           `json:"qualifying_spend"`
	Benefits        []string        `json:"benefits"`
}

// TierInput is the body of PUT /v1/tiers/{code}.
type TierInput struct {
	Code            *string          `json:"code"`
	Name            *string          `json:"name"`
	Rank            *int             `json:"rank"`
	EarnMultiplier  *decimal.Decimal `json:"earn_multiplier"`
	QualifyingSpend *int64           `json:"qualifying_spend"`
	Benefits        []string         `json:"benefits"`
}

var codePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func tierFromRow(r tierRow) (Tier, error) {
	m, err := decimal.NewFromString(r.EarnMultiplier)
	if err != nil {
		return Tier{}, fmt.Errorf("tier %s multiplier: %w", r.Code, err)
	}
	t := Tier{Code: r.Code, Name: r.Name, Rank: r.Rank, EarnMultiplier: m, QualifyingSpend: r.QualifyingSpend, Benefits: []string{}}
	if r.Benefits != "" {
		if err := json.Unmarshal([]byte(r.Benefits), &t.Benefits); err != nil {
			return Tier{}, fmt.Errorf("tier %s benefits: %w", r.Code, err)
		}
	}
	return t, nil
}

func (t Tier) rule() tiers.Tier {
	return tiers.Tier{Code: t.Code, Name: t.Name, Rank: t.Rank, EarnMultiplier: t.EarnMultiplier, QualifyingSpend: t.QualifyingSpend, Benefits: t.Benefits}
}

func readTiers(tx *gorm.DB) ([]Tier, tiers.Ladder, error) {
	var rows []tierRow
	if err := tx.Order("rank").Find(&rows).Error; err != nil {
		return nil, nil, err
	}
	out := make([]Tier, 0, len(rows))
	rules := make([]tiers.Tier, 0, len(rows))
	for _, r := range rows {
		t, err := tierFromRow(r)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, t)
		rules = append(rules, t.rule())
	}
	return out, tiers.NewLadder(rules), nil
}

// Tiers lists the tiers by rank.
func (s *Service) Tiers(ctx context.Context) ([]Tier, error) {
	ts, _, err := loadTiers(s.store.read(ctx))
	if err != nil {
		return nil, fmt.Errorf("list tiers: %w", err)
	}
	return ts, nil
}

// PutTier creates or replaces the tier code. created is true when it is new.
// The whole ladder is validated with the change: rank 0 is the entry tier at
// zero spend and thresholds rise with rank. Members without a tier are given
// the entry tier as soon as there is one.
func (s *Service) PutTier(ctx context.Context, code string, in TierInput) (t Tier, created bool, err error) {
	err = s.store.write(ctx, func(tx *gorm.DB) error {
		// The program row serialises configuration changes.
		if err := forUpdate(tx).Take(&programRow{}, 1).Error; err != nil {
			return err
		}
		var v Validation
		if !codePattern.MatchString(code) {
			v.Add("code", "must be 1 to 64 lowercase letters, digits, _ or -, starting with a letter or digit")
		}
		if in.Code != nil && *in.Code != code {
			v.Add("code", "must match the code in the path")
		}
		var prev tierRow
		found := true
		if err := tx.Where("code = ?", code).Take(&prev).Error; err != nil {
			if !errors.Is(err, gorm.ErrRecordNotFound) {
				return err
			}
			found = false
		}
		t = Tier{Code: code, Benefits: []string{}}
		if found {
			var err error
			if t, err = tierFromRow(prev); err != nil {
				return err
			}
		} else {
			if in.Name == nil {
				v.Add("name", "is required")
			}
			if in.Rank == nil {
				v.Add("rank", "is required")
			}
			if in.EarnMultiplier == nil {
				v.Add("earn_multiplier", "is required")
			}
		}
		if in.Name != nil {
			t.Name = *in.Name
		}
		if in.Rank != nil {
			t.Rank = *in.Rank
		}
		if in.EarnMultiplier != nil {
			t.EarnMultiplier = *in.EarnMultiplier
		}
		if in.QualifyingSpend != nil {
			t.QualifyingSpend = *in.QualifyingSpend
		}
		if in.Benefits != nil {
			t.Benefits = in.Benefits
		}
		if t.Name == "" && in.Name != nil || len(t.Name) > 200 {
			v.Add("name", "must be 1 to 200 characters")
		}
		if t.Rank < 0 || t.Rank > 1000 {
			v.Add("rank", "must be from 0 to 1000")
		}
		if t.EarnMultiplier.IsNegative() || t.EarnMultiplier.GreaterThan(decimal.NewFromInt(1000)) || t.EarnMultiplier.Exponent() < -6 {
			v.Add("earn_multiplier", "must be a decimal from 0 to 1000 with at most 6 decimals")
		}
		if t.QualifyingSpend < 0 || t.QualifyingSpend > MaxTotal*1000 {
			v.Add("qualifying_spend", "must not be negative")
		}
		if len(t.Benefits) > 50 {
			v.Add("benefits", "at most 50")
		}
		if err := v.Err(); err != nil {
			return err
		}
		all, _, err := loadTiers(tx)
		if err != nil {
			return err
		}
		next := make([]tiers.Tier, 0, len(all)+1)
		for _, o := range all {
			if o.Code == code {
				continue
			}
			if o.Rank == t.Rank {
				return Errorf(Conflict, "rank_taken", "rank %d is held by tier %q", t.Rank, o.Code)
			}
			next = append(next, o.rule())
		}
		next = append(next, t.rule())
		ladder := tiers.NewLadder(next)
		if ladder[0].Rank != 0 {
			return Invalidf("rank", "the program needs a rank-0 entry tier")
		}
		if err := ladder.Validate(); err != nil {
			return Invalidf("qualifying_spend", "%s", err.Error())
		}
		benefits, _ := json.Marshal(t.Benefits)
		now := ts(s.now())
		row := tierRow{Code: code, Name: t.Name, Rank: t.Rank, EarnMultiplier: t.EarnMultiplier.String(),
			QualifyingSpend: t.QualifyingSpend, Benefits: string(benefits), CreatedAt: now, UpdatedAt: now}
		if found {
			// Every tier change holds the program row's lock, so prev is
			// current; only what changed is written.
			row.CreatedAt = prev.CreatedAt
			if err := updateChanged(tx, &prev, &row); err != nil {
				return err
			}
		} else if err := tx.Create(&row).Error; err != nil {
			return err
		}
		if err := s.auditTier(ctx, tx, found, prev, t); err != nil {
			return err
		}
		created = !found
		if t.Rank == 0 {
			return tx.Model(&memberRow{}).Where("tier_code IS NULL").
				Updates(map[string]any{"tier_code": code, "tier_since": now}).Error
		}
		return nil
	})
	if err != nil {
		return Tier{}, false, fmt.Errorf("put tier: %w", err)
	}
	return t, created, nil
}

// DeleteTier removes a tier no member holds.
func (s *Service) DeleteTier(ctx context.Context, code string) error {
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		if err := forUpdate(tx).Take(&programRow{}, 1).Error; err != nil {
			return err
		}
		var prev tierRow
		if err := tx.Where("code = ?", code).Take(&prev).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return Errorf(NotFound, "not_found", "no tier has code %q", code)
			}
			return err
		}
		var held int64
		if err := tx.Model(&memberRow{}).Where("tier_code = ?", code).Count(&held).Error; err != nil {
			return err
		}
		if held > 0 {
			return Errorf(Conflict, "tier_in_use", "%d members hold tier %q", held, code)
		}
		if prev.Rank == 0 {
			var others int64
			if err := tx.Model(&tierRow{}).Where("code <> ?", code).Count(&others).Error; err != nil {
				return err
			}
			if others > 0 {
				return Errorf(Conflict, "entry_tier", "the rank-0 entry tier cannot be deleted while other tiers exist")
			}
		}
		if err := tx.Delete(&tierRow{}, "code = ?", code).Error; err != nil {
			return err
		}
		old, err := tierFromRow(prev)
		if err != nil {
			return err
		}
		return s.Audit(ctx, tx, "tier.delete", "tier", code, Change(old, nil))
	})
	if err != nil {
		return fmt.Errorf("delete tier: %w", err)
	}
	return nil
}
