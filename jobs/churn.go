package jobs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/jobs/bgnbd"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// ChurnSummary is what a churn-risk run computed.
type ChurnSummary struct {
	Model         string  `json:"model"`
	TimeUnit      string  `json:"time_unit"`
	R             float64 `json:"r"`
	Alpha         float64 `json:"alpha"`
	A             float64 `json:"a"`
	B             float64 `json:"b"`
	LogLikelihood float64 `json:"log_likelihood"`
	Members       int64   `json:"members"`
	Scored        int64   `json:"scored"`
}

// churnStats summarises every member's purchase days up to the as-of day:
// x repeat purchase days, the last one tx_days after the first, observed
// for t_days since the first. Integer days, from the stored local_day.
const churnStats = `SELECT p.member_id, COUNT(DISTINCT p.local_day) - 1 AS x,
		MAX(p.local_day) - MIN(p.local_day) AS tx_days, ? - MIN(p.local_day) AS t_days,
		MAX(p.local_day) AS last_day, COUNT(*) AS purchases
	FROM purchases p WHERE p.occurred_at <= ? AND p.local_day <= ?
	GROUP BY p.member_id`

// ChurnRisk refits the BG/NBD model over every member's purchase history up
// to asOf (repeat purchases counted per distinct calendar day, time in
// weeks from the first purchase) and scores every member:
// churn_risk = 1 − P(alive). A member without a repeat purchase cannot have
// dropped out under the model, so it is scored by the recency rule instead:
// its risk is the share of repeat buyers whose second purchase day came
// within as many days of their first as it has now gone without one.
// Scores are computed once per distinct (x, t_x, T) and joined to members
// in one statement. A future asOf is refused; a past one fits and scores on
// the history up to it, which stands until the next run.
func (r *Runner) ChurnRisk(ctx context.Context, asOf time.Time) (ChurnSummary, error) {
	sum := ChurnSummary{Model: "bgnbd", TimeUnit: "week"}
	asOf, err := r.svc.AsOf(asOf)
	if err != nil {
		return sum, err
	}
	prog, err := r.svc.Program(ctx)
	if err != nil {
		return sum, err
	}
	day := loyalty.LocalDay(asOf, prog.Location())
	type tuple struct {
		X, TxDays, TDays int64
		N                int64
	}
	var tuples []tuple
	var gaps []struct{ Gap, N int64 }
	err = loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		if err := db.Raw(`SELECT x, tx_days, t_days, COUNT(*) AS n FROM (`+churnStats+`) s GROUP BY x, tx_days, t_days`,
			day, asOf, day).Scan(&tuples).Error; err != nil {
			return err
		}
		return db.Raw(`SELECT second - first AS gap, COUNT(*) AS n FROM (
				SELECT f.member_id, f.first, (SELECT MIN(p2.local_day) FROM purchases p2
					WHERE p2.member_id = f.member_id AND p2.local_day > f.first AND p2.occurred_at <= ? AND p2.local_day <= ?) AS second
				FROM (SELECT member_id, MIN(local_day) AS first FROM purchases WHERE occurred_at <= ? AND local_day <= ? GROUP BY member_id) f
			) g WHERE second IS NOT NULL GROUP BY second - first ORDER BY gap`, asOf, day, asOf, day).Scan(&gaps).Error
	})
	if err != nil {
		return sum, err
	}
	customers := make([]bgnbd.Customer, len(tuples))
	for i, t := range tuples {
		customers[i] = bgnbd.Customer{X: float64(t.X), TX: float64(t.TxDays) / 7, T: float64(t.TDays) / 7, Weight: float64(t.N)}
		sum.Members += t.N
	}
	p, ll, err := bgnbd.Fit(customers)
	if errors.Is(err, bgnbd.ErrNoData) {
		return sum, nil
	}
	if err != nil {
		return sum, err
	}
	sum.R, sum.Alpha, sum.A, sum.B, sum.LogLikelihood = p.R, p.Alpha, p.A, p.B, ll

	// The recency rule's distribution: days from first to second purchase.
	var repeaters int64
	for _, g := range gaps {
		repeaters += g.N
	}
	returnedWithin := func(days int64) float64 {
		if repeaters == 0 {
			return 0
		}
		i := sort.Search(len(gaps), func(i int) bool { return gaps[i].Gap > days })
		var n int64
		for _, g := range gaps[:i] {
			n += g.N
		}
		return float64(n) / float64(repeaters)
	}
	type score struct {
		X, TxDays, TDays              int64
		ChurnRisk, PAlive, Expected90 string
	}
	scores := make([]score, len(tuples))
	for i, t := range tuples {
		c := customers[i]
		alive := p.PAlive(c)
		risk := 1 - alive
		if t.X == 0 {
			risk = returnedWithin(t.TDays)
			alive = 1 - risk
		}
		scores[i] = score{X: t.X, TxDays: t.TxDays, TDays: t.TDays, ChurnRisk: dec4(risk), PAlive: dec4(alive),
			Expected90: dec4(p.ExpectedPurchases(c, 90.0/7))}
	}
	now := r.svc.Now()
	err = loyalty.WriteSet(ctx, r.svc, func(tx *loyalty.Tx) error {
		if err := tx.DB.Exec("DELETE FROM churn_tuples").Error; err != nil {
			return err
		}
		if len(scores) > 0 {
			if err := tx.DB.Table("churn_tuples").CreateInBatches(scores, 500).Error; err != nil {
				return err
			}
		}
		if err := tx.DB.Exec("DELETE FROM member_churn").Error; err != nil {
			return err
		}
		res := tx.DB.Exec(`INSERT INTO member_churn (member_id, churn_risk, p_alive, expected_purchases_90d, purchase_days, purchases,
				days_since_last_purchase, computed_at)
			SELECT s.member_id, t.churn_risk, t.p_alive, t.expected90, s.x + 1, s.purchases, ? - s.last_day, ?
			FROM (`+churnStats+`) s JOIN churn_tuples t ON t.x = s.x AND t.tx_days = s.tx_days AND t.t_days = s.t_days`,
			day, now, day, asOf, day)
		if res.Error != nil {
			return res.Error
		}
		sum.Scored = res.RowsAffected
		return tx.DB.Exec(`INSERT INTO churn_models (id, as_of, time_unit, r, alpha, a, b, log_likelihood, members, computed_at)
			VALUES (?, ?, 'week', ?, ?, ?, ?, ?, ?, ?)`, loyalty.NewID(), asOf, p.R, p.Alpha, p.A, p.B, ll, sum.Members, now).Error
	})
	if err != nil {
		return sum, fmt.Errorf("churn risk: %w", err)
	}
	return sum, nil
}

func dec4(v float64) string {
	if math.IsNaN(v) || v < 0 {
		v = 0
	}
	return strconv.FormatFloat(v, 'f', 4, 64)
}

// ChurnModel is the latest fitted model (§13).
type ChurnModel struct {
	Model         string             `json:"model"`
	AsOf          time.Time          `json:"as_of"`
	TimeUnit      string             `json:"time_unit"`
	Params        map[string]float64 `json:"params"`
	LogLikelihood float64            `json:"log_likelihood"`
	Members       int64              `json:"members"`
	ComputedAt    time.Time          `json:"computed_at"`
}

// LatestChurnModel returns the model of the latest churn-risk run.
func (r *Runner) LatestChurnModel(ctx context.Context) (ChurnModel, error) {
	var row struct {
		AsOf           time.Time
		TimeUnit       string
		R, Alpha, A, B float64
		LogLikelihood  float64
		Members        int64
		ComputedAt     time.Time
	}
	res := r.svc.Store().DB().WithContext(ctx).Raw(`SELECT as_of, time_unit, r, alpha, a, b, log_likelihood, members, computed_at
		FROM churn_models ORDER BY computed_at DESC, id DESC LIMIT 1`).Scan(&row)
	if res.Error != nil {
		return ChurnModel{}, res.Error
	}
	if res.RowsAffected == 0 {
		return ChurnModel{}, loyalty.Errorf(loyalty.NotFound, "no_model", "no churn model yet: run the churn-risk job")
	}
	return ChurnModel{Model: "bgnbd", AsOf: row.AsOf.UTC(), TimeUnit: row.TimeUnit,
		Params:        map[string]float64{"r": row.R, "alpha": row.Alpha, "a": row.A, "b": row.B},
		LogLikelihood: row.LogLikelihood, Members: row.Members, ComputedAt: row.ComputedAt.UTC()}, nil
}

// RiskEntry is one member of the churn-risk list.
type RiskEntry struct {
	MemberID              string `json:"member_id"`
	ChurnRisk             string `json:"churn_risk"`
	PAlive                string `json:"p_alive"`
	ExpectedPurchases90d  string `json:"expected_purchases_90d"`
	DaysSinceLastPurchase int64  `json:"days_since_last_purchase"`
	Purchases             int64  `json:"purchases"`
}

// ChurnRiskList lists active members at or above minRisk, highest first.
func (r *Runner) ChurnRiskList(ctx context.Context, minRisk string, page loyalty.Page) (loyalty.List[RiskEntry], error) {
	out := loyalty.List[RiskEntry]{Items: []RiskEntry{}}
	parts, err := page.CursorParts(2)
	if err != nil {
		return out, err
	}
	q := r.svc.Store().DB().WithContext(ctx).Table("member_churn c").
		Select("c.member_id, c.churn_risk, c.p_alive, c.expected_purchases90d, c.days_since_last_purchase, c.purchases").
		Joins("JOIN members m ON m.id = c.member_id AND m.status = 'active'").
		Where("c.churn_risk >= ?", minRisk)
	if parts != nil {
		q = q.Where("(c.churn_risk < ?) OR (c.churn_risk = ? AND c.member_id > ?)", parts[0], parts[0], parts[1])
	}
	var rows []struct {
		MemberID              string
		ChurnRisk             string
		PAlive                string
		ExpectedPurchases90d  string `gorm:"column:expected_purchases_90d"`
		DaysSinceLastPurchase int64
		Purchases             int64
	}
	q = q.Select("c.member_id, c.churn_risk, c.p_alive, c.expected_purchases_90d, c.days_since_last_purchase, c.purchases")
	if err := q.Order("c.churn_risk DESC, c.member_id").Limit(page.Size() + 1).Scan(&rows).Error; err != nil {
		return out, err
	}
	for i, row := range rows {
		if i == page.Size() {
			last := rows[i-1]
			out.NextCursor = loyalty.Cursor(last.ChurnRisk, last.MemberID)
			break
		}
		out.Items = append(out.Items, RiskEntry{MemberID: row.MemberID, ChurnRisk: row.ChurnRisk, PAlive: row.PAlive,
			ExpectedPurchases90d: row.ExpectedPurchases90d, DaysSinceLastPurchase: row.DaysSinceLastPurchase, Purchases: row.Purchases})
	}
	return out, nil
}
