package jobs

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// RiskBucket counts the active members whose churn risk, from the latest
// churn-risk run, is in [From, To); the last bucket also holds risk 1.
type RiskBucket struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Members int64  `json:"members"`
}

// ChurnRiskDistribution counts the scored active members per tenth of churn
// risk, in one GROUP BY. Every bucket is listed, empty ones with 0; all are
// 0 before the first churn-risk run.
func (r *Runner) ChurnRiskDistribution(ctx context.Context) ([]RiskBucket, error) {
	out := make([]RiskBucket, 10)
	for i := range out {
		out[i] = RiskBucket{From: fmt.Sprintf("0.%d", i), To: fmt.Sprintf("%d.%d", (i+1)/10, (i+1)%10)}
	}
	// churn_risk is stored with four decimals ("0.3721", "1.0000"), so its
	// first three characters name its tenth on both dialects.
	var rows []struct {
		Tenth string
		N     int64
	}
	err := loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		return db.Raw(`SELECT SUBSTR(c.churn_risk, 1, 3) AS tenth, COUNT(*) AS n
			FROM member_churn c JOIN members m ON m.id = c.member_id AND m.status = 'active'
			GROUP BY SUBSTR(c.churn_risk, 1, 3)`).Scan(&rows).Error
	})
	if err != nil {
		return nil, fmt.Errorf("churn risk distribution: %w", err)
	}
	for _, row := range rows {
		// "0.d" is tenth d; "1.0" joins the last bucket.
		if len(row.Tenth) != 3 || row.Tenth[1] != '.' {
			continue
		}
		i := 9
		if row.Tenth[0] == '0' {
			i = int(row.Tenth[2] - '0')
		}
		if i < 0 || i > 9 {
			continue
		}
		out[i].Members += row.N
	}
	return out, nil
}
