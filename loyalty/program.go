package loyalty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/tiers"
)

// Expiry policies (§4).
const (
	ExpiryLot        = "lot"
	ExpiryInactivity = "inactivity"
)

// BirthdayGift configures the birthday gift.
type BirthdayGift struct {
	Enabled     bool     `json:"enabled"`
	RewardIDs   []string `json:"reward_ids"`
	BonusPoints int64    `json:"bonus_points"`
	ClaimDays   int      `json:"claim_days"`
	MinTier     *string  `json:"min_tier"`
}

// SegmentSettings configures the loyal segment.
type SegmentSettings struct {
	LoyalWindowWeeks    int `json:"loyal_window_weeks"`
	LoyalMinActiveWeeks int `json:"loyal_min_active_weeks"`
	LoyalMinCategories  int `json:"loyal_min_categories"`
}

// ChurnSettings configures churn scoring.
type ChurnSettings struct {
	RiskThreshold decimal.Decimal `json:"risk_threshold"`
}

// PointsPayment configures paying with points at the till (§16): Rate
// points pay one major unit of the currency.
type PointsPayment struct {
	Enabled       bool            `json:"enabled"`
	PointsPerUnit decimal.Decimal `json:"points_per_unit"`
	MinPoints     int64           `json:"min_points"`
	StepPoints    int64           `json:"step_points"`
	MaxShare      decimal.Decimal `json:"max_share"`
}

// PointValue is what one point pays, in minor units of a currency with exp
// minor digits, exactly; false when points cannot pay.
func (pp PointsPayment) PointValue(exp int32) (decimal.Decimal, bool) {
	if !pp.Enabled || !pp.PointsPerUnit.IsPositive() {
		return decimal.Zero, false
	}
	return decimal.New(1, exp).Div(pp.PointsPerUnit), true
}

// Program is the program's settings (§4).
type Program struct {
	Name           string          `json:"name"`
	Currency       string          `json:"currency"`
	PointsPerUnit  decimal.Decimal `json:"points_per_unit"`
	PendingDays    int             `json:"pending_days"`
	ExpiryPolicy   string          `json:"expiry_policy"`
	ExpiryDays     int             `json:"expiry_days"`
	TierPeriod     string          `json:"tier_period"`
	TierWindowDays int             `json:"tier_window_days"`
	Timezone       string          `json:"timezone"`
	BirthdayGift   BirthdayGift    `json:"birthday_gift"`
	Segments       SegmentSettings `json:"segments"`
	Churn          ChurnSettings   `json:"churn"`
	// PointsPayment is §16's setting; FeedbackBonusPoints and
	// ClvHorizonWeeks are §17's.
	PointsPayment       PointsPayment `json:"points_payment"`
	FeedbackBonusPoints int64         `json:"feedback_bonus_points"`
	ClvHorizonWeeks     int           `json:"clv_horizon_weeks"`
	Version             int64         `json:"version"`
	UpdatedAt           time.Time     `json:"updated_at"`

	loc      *time.Location
	exponent int32
}

// Location is the program's timezone.
func (p *Program) Location() *time.Location { return p.loc }

// Exponent is the number of minor-unit digits of the program currency.
func (p *Program) Exponent() int32 { return p.exponent }

// Period is the tier qualification period.
func (p *Program) Period() tiers.Period {
	return tiers.Period{Kind: p.TierPeriod, WindowDays: p.TierWindowDays, Location: p.loc}
}

// ProgramPatch changes some settings; nil fields keep their value.
type ProgramPatch struct {
	Name           *string          `json:"name"`
	Currency       *string          `json:"currency"`
	PointsPerUnit  *decimal.Decimal `json:"points_per_unit"`
	PendingDays    *int             `json:"pending_days"`
	ExpiryPolicy   *string          `json:"expiry_policy"`
	ExpiryDays     *int             `json:"expiry_days"`
	TierPeriod     *string          `json:"tier_period"`
	TierWindowDays *int             `json:"tier_window_days"`
	Timezone       *string          `json:"timezone"`
	BirthdayGift   *BirthdayGift    `json:"birthday_gift"`
	Segments       *SegmentSettings `json:"segments"`
	Churn          *ChurnSettings   `json:"churn"`
	// PointsPayment replaces the whole §16 block when given.
	PointsPayment       *PointsPayment `json:"points_payment"`
	FeedbackBonusPoints *int64         `json:"feedback_bonus_points"`
	ClvHorizonWeeks     *int           `json:"clv_horizon_weeks"`
}

func programFromRow(r programRow) (*Program, error) {
	p := &Program{Name: r.Name, Currency: r.Currency, PendingDays: r.PendingDays, ExpiryPolicy: r.ExpiryPolicy,
		ExpiryDays: r.ExpiryDays, TierPeriod: r.TierPeriod, TierWindowDays: r.TierWindowDays, Timezone: r.Timezone,
		Version: r.Version, UpdatedAt: r.UpdatedAt.UTC(), FeedbackBonusPoints: r.FeedbackBonusPoints, ClvHorizonWeeks: r.ClvHorizonWeeks}
	var err error
	if r.PointsPayment != "" {
		if err := json.Unmarshal([]byte(r.PointsPayment), &p.PointsPayment); err != nil {
			return nil, fmt.Errorf("program points_payment: %w", err)
		}
	}
	if p.PointsPerUnit, err = decimal.NewFromString(r.PointsPerUnit); err != nil {
		return nil, fmt.Errorf("program points_per_unit: %w", err)
	}
	if err := json.Unmarshal([]byte(r.BirthdayGift), &p.BirthdayGift); err != nil {
		return nil, fmt.Errorf("program birthday_gift: %w", err)
	}
	if err := json.Unmarshal([]byte(r.Segments), &p.Segments); err != nil {
		return nil, fmt.Errorf("program segments: %w", err)
	}
	if err := json.Unmarshal([]byte(r.Churn), &p.Churn); err != nil {
		return nil, fmt.Errorf("program churn: %w", err)
	}
	if p.BirthdayGift.RewardIDs == nil {
		p.BirthdayGift.RewardIDs = []string{}
	}
	if p.loc, err = loadLocation(r.Timezone); err != nil {
		return nil, fmt.Errorf("program timezone: %w", err)
	}
	p.exponent, _ = CurrencyExponent(r.Currency)
	return p, nil
}

func readProgram(tx *gorm.DB) (*Program, error) {
	var r programRow
	if err := tx.Take(&r, 1).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, errors.New("program settings row is missing: run the migrations")
		}
		return nil, err
	}
	return programFromRow(r)
}

// Program returns the settings.
func (s *Service) Program(ctx context.Context) (*Program, error) {
	return loadProgram(s.store.read(ctx))
}

// UpdateProgram changes the settings named in patch and returns the result.
func (s *Service) UpdateProgram(ctx context.Context, patch ProgramPatch) (*Program, error) {
	var out *Program
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		// The program row's lock also serialises every tier change.
		var before Program
		_, row, err := UpdateRow(tx, 1, func(row *programRow) error {
			p, err := programFromRow(*row)
			if err != nil {
				return err
			}
			oldCurrency := p.Currency
			before = *p
			applyProgramPatch(p, patch)
			if err := validateProgram(tx, p); err != nil {
				return err
			}
			if p.Currency != oldCurrency {
				var n int64
				if err := tx.Model(&purchaseRow{}).Limit(1).Count(&n).Error; err != nil {
					return err
				}
				if n > 0 {
					return Errorf(Conflict, "currency_locked", "the currency cannot change once purchases are recorded")
				}
			}
			gift, _ := json.Marshal(p.BirthdayGift)
			seg, _ := json.Marshal(p.Segments)
			churn, _ := json.Marshal(p.Churn)
			pay, _ := json.Marshal(p.PointsPayment)
			*row = programRow{FeedbackBonusPoints: p.FeedbackBonusPoints, ClvHorizonWeeks: p.ClvHorizonWeeks, PointsPayment: string(pay),
				ID: 1, Name: p.Name, Currency: p.Currency, PointsPerUnit: p.PointsPerUnit.String(),
				PendingDays: p.PendingDays, ExpiryPolicy: p.ExpiryPolicy, ExpiryDays: p.ExpiryDays, TierPeriod: p.TierPeriod,
				TierWindowDays: p.TierWindowDays, Timezone: p.Timezone, BirthdayGift: string(gift), Segments: string(seg),
				Churn: string(churn), Version: row.Version + 1, UpdatedAt: ts(s.now())}
			return nil
		})
		if err != nil {
			return err
		}
		if out, err = programFromRow(row); err != nil {
			return err
		}
		return s.Audit(ctx, tx, "program.update", "program", "1", Change(before, out))
	})
	if err != nil {
		return nil, fmt.Errorf("update program: %w", err)
	}
	return out, nil
}

func applyProgramPatch(p *Program, q ProgramPatch) {
	if q.Name != nil {
		p.Name = *q.Name
	}
	if q.Currency != nil {
		p.Currency = *q.Currency
	}
	if q.PointsPerUnit != nil {
		p.PointsPerUnit = *q.PointsPerUnit
	}
	if q.PendingDays != nil {
		p.PendingDays = *q.PendingDays
	}
	if q.ExpiryPolicy != nil {
		p.ExpiryPolicy = *q.ExpiryPolicy
	}
	if q.ExpiryDays != nil {
		p.ExpiryDays = *q.ExpiryDays
	}
	if q.TierPeriod != nil {
		p.TierPeriod = *q.TierPeriod
	}
	if q.TierWindowDays != nil {
		p.TierWindowDays = *q.TierWindowDays
	}
	if q.Timezone != nil {
		p.Timezone = *q.Timezone
	}
	if q.BirthdayGift != nil {
		p.BirthdayGift = *q.BirthdayGift
		if p.BirthdayGift.RewardIDs == nil {
			p.BirthdayGift.RewardIDs = []string{}
		}
	}
	if q.Segments != nil {
		p.Segments = *q.Segments
	}
	if q.Churn != nil {
		p.Churn = *q.Churn
	}
	if q.PointsPayment != nil {
		p.PointsPayment = *q.PointsPayment
	}
	if q.FeedbackBonusPoints != nil {
		p.FeedbackBonusPoints = *q.FeedbackBonusPoints
	}
	if q.ClvHorizonWeeks != nil {
		p.ClvHorizonWeeks = *q.ClvHorizonWeeks
	}
}

func validateProgram(tx *gorm.DB, p *Program) error {
	var v Validation
	if p.Name == "" || len(p.Name) > 200 {
		v.Add("name", "must be 1 to 200 characters")
	}
	if _, ok := CurrencyExponent(p.Currency); !ok {
		v.Add("currency", "must be a supported ISO 4217 code in capitals, such as USD")
	}
	if p.PointsPerUnit.IsNegative() || p.PointsPerUnit.GreaterThan(decimal.NewFromInt(1_000_000)) || p.PointsPerUnit.Exponent() < -6 {
		v.Add("points_per_unit", "must be a decimal from 0 to 1000000 with at most 6 decimals")
	}
	if p.PendingDays < 0 || p.PendingDays > 365 {
		v.Add("pending_days", "must be from 0 to 365")
	}
	if p.ExpiryPolicy != ExpiryLot && p.ExpiryPolicy != ExpiryInactivity {
		v.Add("expiry_policy", "must be lot or inactivity")
	}
	if p.ExpiryDays < 0 || p.ExpiryDays > 3650 {
		v.Add("expiry_days", "must be from 0 (never) to 3650")
	} else if p.ExpiryDays > 0 && p.ExpiryDays <= p.PendingDays {
		v.Add("expiry_days", "must be above pending_days, or 0 for never")
	}
	if p.TierPeriod != tiers.Rolling && p.TierPeriod != tiers.CalendarYear {
		v.Add("tier_period", "must be rolling or calendar_year")
	}
	if p.TierWindowDays < 1 || p.TierWindowDays > 3650 {
		v.Add("tier_window_days", "must be from 1 to 3650")
	}
	if loc, err := time.LoadLocation(p.Timezone); err != nil || p.Timezone == "" || p.Timezone == "Local" {
		v.Add("timezone", "must be an IANA timezone such as Europe/Paris")
	} else {
		p.loc = loc
	}
	g := p.BirthdayGift
	if g.BonusPoints < 0 || g.BonusPoints > tiers.MaxPoints {
		v.Add("birthday_gift.bonus_points", "must not be negative")
	}
	if g.ClaimDays < 1 || g.ClaimDays > 366 {
		v.Add("birthday_gift.claim_days", "must be from 1 to 366")
	}
	if g.MinTier != nil {
		var n int64
		if err := tx.Model(&tierRow{}).Where("code = ?", *g.MinTier).Count(&n).Error; err != nil {
			return err
		}
		if n == 0 {
			v.Add("birthday_gift.min_tier", "no tier has code %q", *g.MinTier)
		}
	}
	sg := p.Segments
	if sg.LoyalWindowWeeks < 1 || sg.LoyalWindowWeeks > 104 {
		v.Add("segments.loyal_window_weeks", "must be from 1 to 104")
	}
	if sg.LoyalMinActiveWeeks < 1 || sg.LoyalMinActiveWeeks > sg.LoyalWindowWeeks {
		v.Add("segments.loyal_min_active_weeks", "must be from 1 to loyal_window_weeks")
	}
	if sg.LoyalMinCategories < 1 {
		v.Add("segments.loyal_min_categories", "must be at least 1")
	}
	if p.Churn.RiskThreshold.IsNegative() || p.Churn.RiskThreshold.GreaterThan(decimal.NewFromInt(1)) {
		v.Add("churn.risk_threshold", "must be a decimal from 0 to 1")
	}
	pp := p.PointsPayment
	if !pp.PointsPerUnit.IsPositive() || pp.PointsPerUnit.GreaterThan(decimal.NewFromInt(1_000_000_000)) || pp.PointsPerUnit.Exponent() < -6 {
		v.Add("points_payment.points_per_unit", "must be a decimal above 0 and at most 1000000000 with at most 6 decimals")
	}
	if pp.StepPoints < 1 || pp.StepPoints > tiers.MaxPoints {
		v.Add("points_payment.step_points", "must be at least 1")
	}
	if pp.MinPoints < 0 || pp.MinPoints > tiers.MaxPoints {
		v.Add("points_payment.min_points", "must not be negative")
	}
	if !pp.MaxShare.IsPositive() || pp.MaxShare.GreaterThan(decimal.NewFromInt(1)) {
		v.Add("points_payment.max_share", "must be a decimal above 0 and at most 1")
	}
	if p.FeedbackBonusPoints < 0 || p.FeedbackBonusPoints > tiers.MaxPoints {
		v.Add("feedback_bonus_points", "must not be negative")
	}
	if p.ClvHorizonWeeks < 1 || p.ClvHorizonWeeks > 520 {
		v.Add("clv_horizon_weeks", "must be from 1 to 520")
	}
	p.exponent, _ = CurrencyExponent(p.Currency)
	return v.Err()
}
