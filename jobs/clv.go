package jobs

import (
	"context"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// ClvModel is the latest Gamma-Gamma spend model (§17), with the mean
// model CLV of the scored members beside the mean of the seeds' simple CLV
// (average check × purchases per year × relationship years) over the same
// horizon, for comparison.
type ClvModel struct {
	SpendModel    string             `json:"spend_model"`
	AsOf          time.Time          `json:"as_of"`
	Params        map[string]float64 `json:"params"`
	LogLikelihood float64            `json:"log_likelihood"`
	Customers     int64              `json:"customers"`
	HorizonWeeks  int                `json:"horizon_weeks"`
	ComputedAt    time.Time          `json:"computed_at"`
	Comparison    ClvComparison      `json:"comparison"`
}

// ClvComparison sets the model's CLV beside the seeds' simple formula,
// both means over the members scored, in minor units.
type ClvComparison struct {
	Members       int64  `json:"members"`
	MeanClv       *int64 `json:"mean_clv"`
	MeanSimpleClv *int64 `json:"mean_simple_clv"`
	SimpleClvRule string `json:"simple_clv_rule"`
}

// SimpleClvRule says how the simple CLV is computed.
const SimpleClvRule = "average check × purchases per year (both over the 365 days to as_of) × clv_horizon_weeks / 52 years"

// LatestClvModel returns the spend model of the latest churn-risk run.
func (r *Runner) LatestClvModel(ctx context.Context) (ClvModel, error) {
	var out ClvModel
	err := loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		var row struct {
			AsOf          time.Time
			P, Q, Gamma   float64
			LogLikelihood float64
			Customers     int64
			HorizonWeeks  int
			ComputedAt    time.Time
		}
		res := db.Raw(`SELECT as_of, p, q, gamma, log_likelihood, customers, horizon_weeks, computed_at
			FROM clv_models ORDER BY computed_at DESC, id DESC LIMIT 1`).Scan(&row)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return loyalty.Errorf(loyalty.NotFound, "no_model", "no spend model yet: run the churn-risk job over members with repeat purchases")
		}
		out = ClvModel{SpendModel: "gamma_gamma", AsOf: row.AsOf.UTC(),
			Params:        map[string]float64{"p": row.P, "q": row.Q, "gamma": row.Gamma},
			LogLikelihood: row.LogLikelihood, Customers: row.Customers, HorizonWeeks: row.HorizonWeeks, ComputedAt: row.ComputedAt.UTC(),
			Comparison: ClvComparison{SimpleClvRule: SimpleClvRule}}
		var c struct {
			N         int64
			Clv       loyalty.Sum
			SimpleClv loyalty.Sum
		}
		sum := r.svc.Store().SumSQL
		if err := db.Raw(`SELECT COUNT(*) AS n, ` + sum("clv") + ` AS clv, ` + sum("simple_clv") + ` AS simple_clv
			FROM member_churn WHERE clv IS NOT NULL`).Scan(&c).Error; err != nil {
			return err
		}
		out.Comparison.Members = c.N
		if c.N > 0 {
			n := decimal.NewFromInt(c.N)
			m := c.Clv.Decimal().DivRound(n, 0).IntPart()
			s := c.SimpleClv.Decimal().DivRound(n, 0).IntPart()
			out.Comparison.MeanClv, out.Comparison.MeanSimpleClv = &m, &s
		}
		return nil
	})
	return out, err
}

// ClvEntry is one member of the CLV list.
type ClvEntry struct {
	MemberID             string  `json:"member_id"`
	Clv                  int64   `json:"clv"`
	SimpleClv            *int64  `json:"simple_clv"`
	ExpectedTransactions *string `json:"expected_transactions"`
	PurchaseDays         int64   `json:"purchase_days"`
	ChurnRisk            string  `json:"churn_risk"`
}

// ClvList lists active members by clv, highest first (members without a
// clv are left out).
func (r *Runner) ClvList(ctx context.Context, page loyalty.Page) (loyalty.List[ClvEntry], error) {
	out := loyalty.List[ClvEntry]{Items: []ClvEntry{}}
	parts, err := page.CursorParts(2)
	if err != nil {
		return out, err
	}
	var after []any
	if parts != nil {
		v, err := strconv.ParseInt(parts[0], 10, 64)
		if err != nil {
			return out, loyalty.Invalidf("cursor", "is not a cursor this list returned")
		}
		after = []any{v, parts[1]}
	}
	var rows []struct {
		MemberID             string
		Clv                  int64
		SimpleClv            *int64
		ExpectedTransactions *float64
		PurchaseDays         int64
		ChurnRisk            string
	}
	if err := pageDesc(r.svc.Store().DB().WithContext(ctx),
		"c.member_id, c.clv, c.simple_clv, c.expected_transactions, c.purchase_days, c.churn_risk",
		"member_churn c JOIN members m ON m.id = c.member_id AND m.status = 'active' WHERE c.clv IS NOT NULL",
		"clv", "", map[string]any{}, after, page.Size(), &rows); err != nil {
		return out, err
	}
	for i, row := range rows {
		if i == page.Size() {
			last := rows[i-1]
			out.NextCursor = loyalty.Cursor(strconv.FormatInt(last.Clv, 10), last.MemberID)
			break
		}
		e := ClvEntry{MemberID: row.MemberID, Clv: row.Clv, SimpleClv: row.SimpleClv, PurchaseDays: row.PurchaseDays, ChurnRisk: row.ChurnRisk}
		if row.ExpectedTransactions != nil {
			s := dec4(*row.ExpectedTransactions)
			e.ExpectedTransactions = &s
		}
		out.Items = append(out.Items, e)
	}
	return out, nil
}

// ClvBand is one band of the CLV distribution.
type ClvBand struct {
	From, To int64 // minor units, To exclusive
	Members  int64
}

// ClvDistribution counts active members with a clv in ten equal-width
// bands from 0 to the highest clv, in one aggregate.
func (r *Runner) ClvDistribution(ctx context.Context) ([]ClvBand, error) {
	out := []ClvBand{}
	err := loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		var hi *int64
		if err := db.Raw(`SELECT MAX(clv) FROM member_churn WHERE clv IS NOT NULL`).Scan(&hi).Error; err != nil || hi == nil {
			return err
		}
		width := *hi/10 + 1
		var rows []struct{ Band, N int64 }
		if err := db.Raw(`SELECT c.clv / ? AS band, COUNT(*) AS n FROM member_churn c JOIN members m ON m.id = c.member_id AND m.status = 'active'
			WHERE c.clv IS NOT NULL GROUP BY 1`, width).Scan(&rows).Error; err != nil {
			return err
		}
		for i := int64(0); i < 10; i++ {
			out = append(out, ClvBand{From: i * width, To: (i + 1) * width})
		}
		for _, row := range rows {
			if row.Band >= 0 && row.Band < 10 {
				out[row.Band].Members += row.N
			}
		}
		return nil
	})
	return out, err
}
