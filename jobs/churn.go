package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/jobs/bgnbd"
	"github.com/loyalty-engine/loyalty/jobs/gammagamma"
	"github.com/loyalty-engine/loyalty/jobs/mle"
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
	// Spend is the Gamma-Gamma fit of §17, absent when no member has a
	// repeat purchase.
	Spend *SpendFit `json:"spend_model,omitempty"`
	// Summaries says how the run brought the members' purchase summaries
	// to its as-of.
	Summaries *SummariesRefresh `json:"summaries,omitempty"`
}

// SummariesRefresh is what a run did to the members' purchase summaries:
// summed Members again, all of them when Rebuilt (a first run), into
// Table (member_activity, or churn_members for a run for a past day,
// which leaves member_activity alone).
type SummariesRefresh struct {
	Members int64  `json:"members"`
	Rebuilt bool   `json:"rebuilt"`
	Table   string `json:"table"`
}

// SpendFit is what the churn-risk run fitted of the spend model.
type SpendFit struct {
	P             float64 `json:"p"`
	Q             float64 `json:"q"`
	Gamma         float64 `json:"gamma"`
	LogLikelihood float64 `json:"log_likelihood"`
	Customers     int64   `json:"customers"`
}

// activitySQL summarises every member's purchase days up to the as-of
// day, in one pass over the purchases: each member's days (one hash
// aggregate by member and day), the first of them (one by member), then
// per member x repeat purchase days, the first and last day and the
// second, the purchases, the value of the repeat days (the spend model's
// input: every purchase day after the first) and of the last 365 days, in
// minor units, as floats (they may pass int64 over many days); and, for
// the RFM segments, the last purchase, the purchases and their net spend
// (exact) in the 365 days before the as-of instant. Integer days, from the
// stored local_day. Only hash aggregates and a hash join: no sort of the
// purchases, which at a large base spills to disk. It reads the members
// of the table members ("" for all); its arguments are activityArgs.
func (r *Runner) activitySQL(members string) string {
	store := r.svc.Store()
	if members != "" && store.Dialect == loyalty.Postgres {
		return activityByMemberSQL(members)
	}
	// All members: one pass over the purchases. Some (SQLite): theirs,
	// picked by IN.
	from := `purchases WHERE occurred_at <= @as_of AND local_day <= @day`
	if members != "" {
		from += " AND member_id IN (SELECT member_id FROM " + members + ")"
	}
	return `WITH d AS (
		SELECT purchases.member_id, local_day, COUNT(*) AS n, SUM(CAST(total AS DOUBLE PRECISION)) AS amt,
			MAX(CASE WHEN occurred_at > @year_ago THEN occurred_at END) AS rfm_last_at,
			SUM(CASE WHEN occurred_at > @year_ago THEN 1 ELSE 0 END) AS rfm_n,
			` + store.SumSQL("CASE WHEN occurred_at > @year_ago THEN "+loyalty.NetSpendSQL("purchases")+" ELSE 0 END") + ` AS rfm_spend
		FROM ` + from + ` GROUP BY purchases.member_id, local_day
	), f AS (SELECT member_id, MIN(local_day) AS first_day FROM d GROUP BY member_id)
	SELECT d.member_id, f.first_day, COUNT(*) - 1 AS x, MAX(d.local_day) AS last_day,
		MIN(CASE WHEN d.local_day > f.first_day THEN d.local_day END) AS second_day, SUM(d.n) AS purchases,
		SUM(CASE WHEN d.local_day > f.first_day THEN d.amt ELSE 0 END) AS repeat_spend,
		SUM(CASE WHEN d.local_day > @year_day THEN d.amt END) AS year_spend,
		MAX(d.rfm_last_at) AS rfm_last_at, SUM(d.rfm_n) AS rfm_n, ` + store.SumSQL("d.rfm_spend") + ` AS rfm_spend
	FROM d JOIN f ON f.member_id = d.member_id GROUP BY d.member_id, f.first_day`
}

// activityByMemberSQL is activitySQL for the members of the table
// members on PostgreSQL: each member's summary is made inside its own
// LATERAL, from its purchase days (a member's few dozen rows of
// purchases_member_cover, grouped by day and numbered in day order; the
// subquery keeps PostgreSQL from turning the loop into a join with every
// purchase), so
// no step holds more than one member's rows. The same figures as the
// one-pass form, without its two aggregations and join over every
// touched member's days at once (21,036 members at a million: 1.41 s
// then, 0.41 s now). A member with no purchase up to the as-of has no
// row.
func activityByMemberSQL(members string) string {
	return `SELECT t.member_id, s.first_day, s.x, s.last_day, s.second_day, s.purchases, s.repeat_spend, s.year_spend,
		s.rfm_last_at, s.rfm_n, s.rfm_spend
	FROM ` + members + ` t CROSS JOIN LATERAL (
		SELECT MIN(d.local_day) AS first_day, COUNT(*) - 1 AS x, MAX(d.local_day) AS last_day,
			MIN(d.local_day) FILTER (WHERE d.k = 2) AS second_day, SUM(d.n) AS purchases,
			COALESCE(SUM(d.amt) FILTER (WHERE d.k > 1), 0) AS repeat_spend,
			SUM(CASE WHEN d.local_day > @year_day THEN d.amt END) AS year_spend,
			MAX(d.rfm_last_at) AS rfm_last_at, SUM(d.rfm_n) AS rfm_n, SUM(d.rfm_spend) AS rfm_spend
		FROM (
			SELECT p.local_day, COUNT(*) AS n, SUM(CAST(p.total AS DOUBLE PRECISION)) AS amt,
				MAX(CASE WHEN p.occurred_at > @year_ago THEN p.occurred_at END) AS rfm_last_at,
				SUM(CASE WHEN p.occurred_at > @year_ago THEN 1 ELSE 0 END) AS rfm_n,
				SUM(CASE WHEN p.occurred_at > @year_ago THEN ` + loyalty.NetSpendSQL("p") + ` ELSE 0 END) AS rfm_spend,
				ROW_NUMBER() OVER (ORDER BY p.local_day) AS k
			FROM purchases p WHERE p.member_id = t.member_id AND p.occurred_at <= @as_of AND p.local_day <= @day
			GROUP BY p.local_day
		) d
		HAVING COUNT(*) > 0
	) s`
}

// activityColumns are the columns of activitySQL, member_activity's.
const activityColumns = `member_id, first_day, x, last_day, second_day, purchases, repeat_spend, year_spend, rfm_last_at, rfm_n, rfm_spend`

// activityArgs are activitySQL's named arguments for the as-of instant
// asOf, local day day.
func activityArgs(asOf time.Time, day int64) map[string]any {
	return map[string]any{"year_ago": asOf.AddDate(0, 0, -365), "as_of": asOf, "day": day, "year_day": day - 365}
}

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
	now := r.svc.Now()
	// One transaction that writes only the churn tables, which no till
	// touches: the members' summaries are brought to asOf (activityTable:
	// the members whose summary changed since the last run are summed
	// again), and everything after reads them.
	err = loyalty.WriteDerived(ctx, r.svc, func(tx *loyalty.Tx) error {
		sum = ChurnSummary{Model: "bgnbd", TimeUnit: "week"}
		db := tx.DB
		if err := jobSettings(db); err != nil {
			return err
		}
		table, refreshed, rebuilt, err := r.activityTable(db, asOf, day, now)
		if err != nil {
			return err
		}
		defer loyalty.DropTemp(db, "churn_members")
		sum.Summaries = &SummariesRefresh{Members: refreshed, Rebuilt: rebuilt, Table: table}
		return r.churnRisk(db, table, &sum, prog, asOf, day, now)
	})
	if err != nil {
		return sum, fmt.Errorf("churn risk: %w", err)
	}
	return sum, nil
}

// churnRisk fits and scores from the members' summaries in table
// (activitySQL's columns).
func (r *Runner) churnRisk(db *gorm.DB, table string, sum *ChurnSummary, prog *loyalty.Program, asOf time.Time, day int64, now time.Time) error {
	spendPairs, err := spendStats(db, table, prog.Exponent())
	if err != nil {
		return err
	}
	tuples, gaps, err := churnCounts(db, table, day)
	if err != nil {
		return err
	}
	customers := make([]bgnbd.Customer, len(tuples))
	for i, t := range tuples {
		customers[i] = bgnbd.Customer{X: float64(t.X), TX: float64(t.TxDays) / 7, T: float64(t.TDays) / 7, Weight: float64(t.N)}
		sum.Members += t.N
	}
	p, ll, err := bgnbd.Fit(customers)
	if errors.Is(err, bgnbd.ErrNoData) {
		return nil
	}
	if err != nil {
		return err
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
	horizon := float64(prog.ClvHorizonWeeks)
	gg, ggLL, ggN, ggErr := gammagamma.Fit(spendPairs)
	if ggErr != nil && !errors.Is(ggErr, gammagamma.ErrNoData) {
		return ggErr
	}
	if ggErr == nil {
		sum.Spend = &SpendFit{P: gg.P, Q: gg.Q, Gamma: gg.Gamma, LogLikelihood: ggLL, Customers: int64(ggN)}
	}
	// Each distinct summary scored once, the summaries split over the
	// cores (the expectations sum hypergeometric series).
	scores := make([]score, len(tuples))
	idx := make([]int, len(tuples))
	for i := range idx {
		idx[i] = i
	}
	mle.Each(mle.Split(idx), func(part []int) struct{} {
		for _, i := range part {
			t, c := tuples[i], customers[i]
			alive := p.PAlive(c)
			risk := 1 - alive
			if t.X == 0 {
				risk = returnedWithin(t.TDays)
				alive = 1 - risk
			}
			scores[i] = score{X: t.X, TxDays: t.TxDays, TDays: t.TDays, ChurnRisk: dec4(risk), PAlive: dec4(alive),
				Expected90: dec4(p.ExpectedPurchases(c, 90.0/7)), ExpectedHorizon: p.ExpectedPurchases(c, horizon)}
		}
		return struct{}{}
	})
	if err := scoreTable(db, scores); err != nil {
		return err
	}
	defer loyalty.DropTemp(db, "churn_scores")
	// CLV = expected purchase days over the horizon × the Gamma-Gamma
	// expected value of one, in minor units; the seeds' simple CLV is
	// the last 365 days' spend (average check × purchases per year)
	// times the horizon in years.
	clv := "NULL"
	if sum.Spend != nil {
		scale := math.Pow10(int(prog.Exponent()))
		em := fmt.Sprintf("((%s + s.repeat_spend) * %s / (%s * s.x + %s))", lit(gg.Gamma*scale), lit(gg.P), lit(gg.P), lit(gg.Q-1))
		clv = fmt.Sprintf("CASE WHEN %s * s.x + %s > 0 THEN %s END", lit(gg.P), lit(gg.Q-1), r.roundSQL("t.expected_horizon * "+em))
	}
	simple := r.roundSQL(fmt.Sprintf("COALESCE(s.year_spend, 0) * %d / 52.0", prog.ClvHorizonWeeks))
	// Each member looks its scores up in a hash of the distinct
	// summaries. PostgreSQL reads the join of the summaries' day
	// differences as matching few members and would sort every member's
	// summary for a merge join instead: 4.6 s to write a million members'
	// rows, 2.9 s by the hash. The instant is typed on PostgreSQL, where
	// a bare parameter in replaceDerived's inner SELECT would be text.
	pg := r.svc.Store().Dialect == loyalty.Postgres
	at := "?"
	if pg {
		at = "CAST(? AS timestamptz)"
		if err := db.Exec(`SET LOCAL enable_mergejoin = off`).Error; err != nil {
			return err
		}
	}
	scored, err := r.replaceDerived(db, memberChurn, `SELECT s.member_id, t.churn_risk, t.p_alive,
			t.expected90 AS expected_purchases_90d, s.x + 1 AS purchase_days, s.purchases,
			? - s.last_day AS days_since_last_purchase, `+at+` AS computed_at, t.expected_horizon AS expected_transactions,
			s.repeat_spend, `+clv+` AS clv, `+simple+` AS simple_clv
		FROM `+table+` s JOIN churn_scores t ON t.x = s.x AND t.tx_days = s.last_day - s.first_day AND t.t_days = ? - s.first_day`,
		day, now, day)
	if err != nil {
		return err
	}
	if pg {
		// Back to what the connection had, for the rest of the
		// transaction.
		if err := db.Exec(`SET LOCAL enable_mergejoin = DEFAULT`).Error; err != nil {
			return err
		}
	}
	sum.Scored = scored
	if err := db.Exec(`INSERT INTO churn_models (id, as_of, time_unit, r, alpha, a, b, log_likelihood, members, computed_at)
		VALUES (?, ?, 'week', ?, ?, ?, ?, ?, ?, ?)`, loyalty.NewID(), asOf, p.R, p.Alpha, p.A, p.B, ll, sum.Members, now).Error; err != nil {
		return err
	}
	if sum.Spend == nil {
		return nil
	}
	return db.Exec(`INSERT INTO clv_models (id, as_of, p, q, gamma, log_likelihood, customers, horizon_weeks, computed_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, loyalty.NewID(), asOf, gg.P, gg.Q, gg.Gamma, ggLL, sum.Spend.Customers,
		prog.ClvHorizonWeeks, now).Error
}

// score is what a distinct (x, t_x, T) scores.
type score struct {
	X, TxDays, TDays              int64
	ChurnRisk, PAlive, Expected90 string
	ExpectedHorizon               float64
}

// scoreTable puts scores in churn_scores, a table of the transaction that
// the members' scoring joins. On PostgreSQL it is a temporary table, which
// is not written to the WAL, filled by statements of scoreChunk rows, each
// row's columns sent as arrays, and its size goes to the planner; on
// SQLite in multi-row inserts, with the key the join looks up.
func scoreTable(db *gorm.DB, scores []score) error {
	if db.Dialector.Name() == loyalty.Postgres {
		if err := db.Exec(`CREATE TEMPORARY TABLE churn_scores (x bigint, tx_days bigint, t_days bigint, churn_risk text,
			p_alive text, expected90 text, expected_horizon float8) ON COMMIT DROP`).Error; err != nil {
			return err
		}
		// A chunk at a time, in arrays kept from one to the next: a large
		// base has hundreds of thousands of distinct summaries, whose
		// arrays in one statement the driver would encode into a buffer
		// grown to tens of megabytes, copied at every growth, in the
		// process that answers the tills. (At a million members, 293,504
		// summaries: the run's heap peaked at 303–351 MB and the slowest
		// till beside it took 108–290 ms; in chunks 202–219 MB and 46–119
		// ms, four runs each, alternated.)
		n := min(len(scores), scoreChunk)
		xs, txs, ts := make([]int64, n), make([]int64, n), make([]int64, n)
		risk, alive, e90 := make([]string, n), make([]string, n), make([]string, n)
		horizon := make([]float64, n)
		for chunk := range slices.Chunk(scores, scoreChunk) {
			k := len(chunk)
			for i, c := range chunk {
				xs[i], txs[i], ts[i], risk[i], alive[i], e90[i], horizon[i] = c.X, c.TxDays, c.TDays, c.ChurnRisk, c.PAlive, c.Expected90, c.ExpectedHorizon
			}
			if _, err := db.Statement.ConnPool.ExecContext(db.Statement.Context, `INSERT INTO churn_scores
				SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::float8[])`,
				xs[:k], txs[:k], ts[:k], risk[:k], alive[:k], e90[:k], horizon[:k]); err != nil {
				return err
			}
		}
		return db.Exec(`ANALYZE churn_scores`).Error
	}
	if err := loyalty.TempTable(db, "churn_scores", `SELECT 0 AS x, 0 AS tx_days, 0 AS t_days, '' AS churn_risk, '' AS p_alive,
		'' AS expected90, 0.0 AS expected_horizon WHERE 0`); err != nil {
		return err
	}
	if err := db.Exec(`CREATE INDEX temp.churn_scores_key ON churn_scores (x, tx_days, t_days)`).Error; err != nil {
		return err
	}
	if len(scores) == 0 {
		return nil
	}
	return db.Table("churn_scores").CreateInBatches(scores, 4000).Error
}

// scoreChunk is how many of the distinct summaries' scores scoreTable
// sends in one statement on PostgreSQL: under a megabyte of arrays. (A
// variable for tests.)
var scoreChunk = 10000

// summaryCount is how many members share a distinct (x, t_x, T) on the
// local day of a run.
type summaryCount struct {
	X, TxDays, TDays int64
	N                int64
}

// gapCount is how many repeat buyers bought again Gap days after their
// first purchase.
type gapCount struct{ Gap, N int64 }

// churnCounts reads from table the BG/NBD fit's sufficient statistics as
// of local day day, each distinct (x, t_x, T) in days and how many members
// share it, and the recency rule's, the days from a repeat buyer's first
// purchase to its second and how many share them, in that order.
func churnCounts(db *gorm.DB, table string, day int64) ([]summaryCount, []gapCount, error) {
	var tuples []summaryCount
	err := loyalty.ScanEach(db, func(rows *sql.Rows) error {
		var t summaryCount
		if err := rows.Scan(&t.X, &t.TxDays, &t.TDays, &t.N); err != nil {
			return err
		}
		tuples = append(doubled(tuples), t)
		return nil
	}, `SELECT x, tx_days, t_days, COUNT(*) AS n FROM (
			SELECT x, last_day - first_day AS tx_days, ? - first_day AS t_days FROM `+table+`) s
		GROUP BY x, tx_days, t_days`, day)
	if err != nil {
		return nil, nil, err
	}
	var gaps []gapCount
	err = loyalty.ScanEach(db, func(rows *sql.Rows) error {
		var g gapCount
		if err := rows.Scan(&g.Gap, &g.N); err != nil {
			return err
		}
		gaps = append(gaps, g)
		return nil
	}, `SELECT second_day - first_day AS gap, COUNT(*) AS n FROM `+table+`
		WHERE second_day IS NOT NULL GROUP BY second_day - first_day ORDER BY gap`)
	return tuples, gaps, err
}

// spendStats reads the spend model's sufficient statistics from
// table: each distinct (repeat days x, mean value m_x in major units) and
// how many members share it.
func spendStats(db *gorm.DB, table string, exponent int32) ([]gammagamma.Customer, error) {
	scale := math.Pow10(int(exponent))
	var out []gammagamma.Customer
	err := loyalty.ScanEach(db, func(rows *sql.Rows) error {
		var x, n int64
		var spend float64
		if err := rows.Scan(&x, &spend, &n); err != nil {
			return err
		}
		out = append(doubled(out), gammagamma.Customer{X: float64(x), MX: spend / scale / float64(x), Weight: float64(n)})
		return nil
	}, `SELECT x, repeat_spend AS spend, COUNT(*) AS n FROM `+table+` WHERE x > 0 GROUP BY x, repeat_spend`)
	return out, err
}

// doubled is rows with room for as many again once it is full: a scan's
// rows, of unknown number, are collected in about twice their size, where
// append's growth by a quarter past a few hundred rows allocates about
// five times it over hundreds of thousands.
func doubled[R any](rows []R) []R {
	if len(rows) < cap(rows) {
		return rows
	}
	return slices.Grow(rows, max(len(rows), 256))
}

// lit writes a model parameter as an SQL numeric literal.
func lit(v float64) string { return strconv.FormatFloat(v, 'g', 17, 64) }

// roundSQL rounds a non-negative float expression half up to an integer,
// held at the largest int64: PostgreSQL's cast to bigint rounds by itself
// and fails past it, SQLite's truncates.
func (r *Runner) roundSQL(expr string) string {
	if r.svc.Store().Dialect == loyalty.Postgres {
		return "CAST(FLOOR(LEAST(" + expr + " + 0.5, 9.2e18)) AS bigint)"
	}
	return "CAST(MIN(" + expr + " + 0.5, 9.2e18) AS INTEGER)"
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
	var rows []struct {
		MemberID              string
		ChurnRisk             string
		PAlive                string
		ExpectedPurchases90d  string `gorm:"column:expected_purchases_90d"`
		DaysSinceLastPurchase int64
		Purchases             int64
	}
	var after []any
	if parts != nil {
		after = []any{parts[0], parts[1]}
	}
	// On PostgreSQL in the collation of the list's index (riskCollate).
	collate := ""
	if r.svc.Store().Dialect == loyalty.Postgres {
		collate = riskCollate
	}
	if err := pageDesc(r.svc.Store().DB().WithContext(ctx),
		"c.member_id, c.churn_risk, c.p_alive, c.expected_purchases_90d, c.days_since_last_purchase, c.purchases",
		"member_churn c JOIN members m ON m.id = c.member_id AND m.status = 'active' WHERE c.churn_risk "+collate+" >= @min",
		"churn_risk", collate, map[string]any{"min": minRisk}, after, page.Size(), &rows); err != nil {
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
