package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// CX groupings (§17).
var cxGroups = map[string]string{
	"store":   "f.store_id",
	"channel": "f.channel",
	"tier":    "f.tier_code",
	"segment": "ms.segment_code",
}

// NPS is the Net Promoter Score of a group: % promoters (9–10) − %
// detractors (0–6), null without answers.
type NPS struct {
	Score      *json.Number `json:"score"`
	Promoters  int64        `json:"promoters"`
	Passives   int64        `json:"passives"`
	Detractors int64        `json:"detractors"`
	Responses  int64        `json:"responses"`
}

// CSAT is the mean satisfaction score (1–5) and the share of satisfied
// answers (4–5).
type CSAT struct {
	Average          *json.Number `json:"average"`
	SatisfiedPercent *json.Number `json:"satisfied_percent"`
	Responses        int64        `json:"responses"`
}

// CES is the mean effort score (1–7).
type CES struct {
	Average   *json.Number `json:"average"`
	Responses int64        `json:"responses"`
}

// CXItem is one group of the CX report.
type CXItem struct {
	Group *string `json:"group"`
	NPS   NPS     `json:"nps"`
	CSAT  CSAT    `json:"csat"`
	CES   CES     `json:"ces"`
}

// CXQuery selects the answers of the report: answered on local dates in
// Range (all when nil), grouped by GroupBy ("" for one group).
type CXQuery struct {
	Range   *DayRange
	GroupBy string
}

func dec2(n decimal.Decimal) *json.Number {
	s := json.Number(n.StringFixed(2))
	return &s
}

// mean is total ÷ n rounded to 2 places, nil when n is 0.
func mean(total, n int64) *json.Number {
	if n == 0 {
		return nil
	}
	return dec2(decimal.NewFromInt(total).DivRound(decimal.NewFromInt(n), 2))
}

// CX computes NPS, CSAT and CES per group with exact decimals: the
// database counts answers per group, kind and score, the rest is
// arithmetic on those counts. Segment groups are the members' current
// segments (a member in two counts in both; one in none falls in the null
// group); tier groups the tier held when answering.
func (r *Runner) CX(ctx context.Context, q CXQuery) ([]CXItem, error) {
	grp := "NULL"
	join := ""
	if q.GroupBy != "" {
		g, ok := cxGroups[q.GroupBy]
		if !ok {
			return nil, loyalty.Invalidf("group_by", "must be store, channel, tier or segment")
		}
		grp = g
		if q.GroupBy == "segment" {
			join = " LEFT JOIN member_segments ms ON ms.member_id = f.member_id"
		}
	}
	where, args := "1 = 1", []any{}
	if q.Range != nil {
		where = "f.local_date >= ? AND f.local_date <= ?"
		args = append(args, q.Range.From.Format(time.DateOnly), q.Range.To.Format(time.DateOnly))
	}
	groupBy := "f.kind, f.score"
	if q.GroupBy != "" {
		groupBy = grp + ", " + groupBy
	}
	var rows []struct {
		Grp   *string
		Kind  string
		Score int
		N     int64
	}
	err := loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		return db.Raw(`SELECT `+grp+` AS grp, f.kind, f.score, COUNT(*) AS n FROM feedback f`+join+`
			WHERE `+where+` GROUP BY `+groupBy, args...).Scan(&rows).Error
	})
	if err != nil {
		return nil, fmt.Errorf("cx report: %w", err)
	}
	type acc struct {
		group                                   *string
		prom, pass, detr, npsN                  int64
		csatSum, csatN, satisfied, cesSum, cesN int64
	}
	groups := map[string]*acc{}
	key := func(g *string) string {
		if g == nil {
			return "\x00"
		}
		return "\x01" + *g
	}
	if q.GroupBy == "" {
		groups[key(nil)] = &acc{}
	}
	for _, row := range rows {
		k := key(row.Grp)
		a := groups[k]
		if a == nil {
			a = &acc{group: row.Grp}
			groups[k] = a
		}
		switch row.Kind {
		case "nps":
			a.npsN += row.N
			switch {
			case row.Score >= 9:
				a.prom += row.N
			case row.Score >= 7:
				a.pass += row.N
			default:
				a.detr += row.N
			}
		case "csat":
			a.csatN += row.N
			a.csatSum += int64(row.Score) * row.N
			if row.Score >= 4 {
				a.satisfied += row.N
			}
		case "ces":
			a.cesN += row.N
			a.cesSum += int64(row.Score) * row.N
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]CXItem, 0, len(keys))
	hundred := decimal.NewFromInt(100)
	for _, k := range keys {
		a := groups[k]
		it := CXItem{Group: a.group,
			NPS:  NPS{Promoters: a.prom, Passives: a.pass, Detractors: a.detr, Responses: a.npsN},
			CSAT: CSAT{Average: mean(a.csatSum, a.csatN), Responses: a.csatN},
			CES:  CES{Average: mean(a.cesSum, a.cesN), Responses: a.cesN}}
		if a.npsN > 0 {
			it.NPS.Score = dec2(decimal.NewFromInt(a.prom-a.detr).Mul(hundred).DivRound(decimal.NewFromInt(a.npsN), 2))
		}
		if a.csatN > 0 {
			it.CSAT.SatisfiedPercent = dec2(decimal.NewFromInt(a.satisfied).Mul(hundred).DivRound(decimal.NewFromInt(a.csatN), 2))
		}
		out = append(out, it)
	}
	return out, nil
}

// StoreCategory is one category of a store's purchases (§17).
type StoreCategory struct {
	Category      string       `json:"category"`
	SegmentBuyers int64        `json:"segment_buyers"`
	AllBuyers     int64        `json:"all_buyers"`
	Index         *json.Number `json:"index"`
}

// knownSegment reports a 404 for a segment code no definition has.
func knownSegment(code string) error {
	for _, d := range segmentDefs {
		if d.Code == code {
			return nil
		}
	}
	return loyalty.Errorf(loyalty.NotFound, "not_found", "no segment has code %q", code)
}

// StoreCategories ranks the categories of a store's purchases by how much
// more often the segment's members buy them there than all its buyers do:
// segment share = segment members who bought the category at the store ÷
// segment members who bought anything there; overall share = the same over
// all members; index = segment share ÷ overall share × 100 (2 decimals,
// null when no segment member bought at the store). Highest index first,
// then more segment buyers, then the category. Purchases on local dates
// in d, or all when d is nil.
func (r *Runner) StoreCategories(ctx context.Context, storeID, segment string, d *DayRange) ([]StoreCategory, error) {
	if err := knownSegment(segment); err != nil {
		return nil, err
	}
	where, args := "p.store_id = ?", []any{segment, storeID}
	if d != nil {
		where += " AND p.local_date >= ? AND p.local_date <= ?"
		args = append(args, d.From.Format(time.DateOnly), d.To.Format(time.DateOnly))
	}
	var rows []struct {
		Category      string
		SegmentBuyers int64
		AllBuyers     int64
	}
	var tot struct{ Seg, All int64 }
	err := loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		if err := db.Raw(`SELECT i.category, COUNT(DISTINCT ms.member_id) AS segment_buyers, COUNT(DISTINCT p.member_id) AS all_buyers
			FROM purchases p JOIN purchase_items i ON i.purchase_id = p.id
			LEFT JOIN member_segments ms ON ms.member_id = p.member_id AND ms.segment_code = ?
			WHERE `+where+` GROUP BY i.category`, args...).Scan(&rows).Error; err != nil {
			return err
		}
		return db.Raw(`SELECT COUNT(DISTINCT ms.member_id) AS seg, COUNT(DISTINCT p.member_id) AS "all"
			FROM purchases p JOIN purchase_items i ON i.purchase_id = p.id
			LEFT JOIN member_segments ms ON ms.member_id = p.member_id AND ms.segment_code = ?
			WHERE `+where, args...).Scan(&tot).Error
	})
	if err != nil {
		return nil, fmt.Errorf("store categories: %w", err)
	}
	out := make([]StoreCategory, 0, len(rows))
	for _, row := range rows {
		c := StoreCategory{Category: row.Category, SegmentBuyers: row.SegmentBuyers, AllBuyers: row.AllBuyers}
		if tot.Seg > 0 && row.AllBuyers > 0 {
			// (seg/segTot) ÷ (all/allTot) × 100 = seg × allTot × 100 ÷ (all × segTot)
			num := decimal.NewFromInt(row.SegmentBuyers).Mul(decimal.NewFromInt(tot.All)).Mul(decimal.NewFromInt(100))
			c.Index = dec2(num.DivRound(decimal.NewFromInt(row.AllBuyers).Mul(decimal.NewFromInt(tot.Seg)), 2))
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Index == nil) != (b.Index == nil) {
			return a.Index != nil
		}
		if a.Index != nil {
			da, _ := decimal.NewFromString(a.Index.String())
			db, _ := decimal.NewFromString(b.Index.String())
			if !da.Equal(db) {
				return da.GreaterThan(db)
			}
		}
		if a.SegmentBuyers != b.SegmentBuyers {
			return a.SegmentBuyers > b.SegmentBuyers
		}
		return a.Category < b.Category
	})
	return out, nil
}

// LapseQuery selects the category-lapse report: the segment's members, as
// of local day AsOf (0: today in the program timezone), over Weeks weeks.
type LapseQuery struct {
	Segment string
	Weeks   int
	AsOf    *time.Time // a local midnight: the last day counted
}

// LapseCategory is one category and how many of the segment's members
// lapsed in it.
type LapseCategory struct {
	Category string `json:"category"`
	Members  int64  `json:"members"`
}

// LapseReport is the category-lapse answer (§17).
type LapseReport struct {
	Items        []LapseCategory `json:"items"`
	MembersTotal int64           `json:"members_total"`
	From         string          `json:"from"`
	Split        string          `json:"split"`
	To           string          `json:"to"`
}

// LapsedMember is one member who lapsed in a category.
type LapsedMember struct {
	MemberID    string `json:"member_id"`
	WeeksBought int64  `json:"weeks_bought"`
}

// lapseSQL selects (member_id, category, weeks) of the segment's members
// who bought the category in at least half the weeks of the earlier window
// (d0, d1] and not at all in the later one (d1, d2]. Weeks are 7-day
// periods counted back from d1.
const lapseSQL = `SELECT prev.member_id, prev.category, prev.weeks FROM (
		SELECT p.member_id, i.category, COUNT(DISTINCT (p.local_day - ? - 1) / 7) AS weeks
		FROM purchases p JOIN purchase_items i ON i.purchase_id = p.id
		JOIN member_segments ms ON ms.member_id = p.member_id AND ms.segment_code = ?
		WHERE p.local_day > ? AND p.local_day <= ?
		GROUP BY p.member_id, i.category) prev
	WHERE prev.weeks * 2 >= ? AND NOT EXISTS (SELECT 1 FROM purchases p2 JOIN purchase_items i2 ON i2.purchase_id = p2.id
		WHERE p2.member_id = prev.member_id AND i2.category = prev.category AND p2.local_day > ? AND p2.local_day <= ?)`

func (r *Runner) lapseArgs(ctx context.Context, q LapseQuery) ([]any, LapseReport, error) {
	var rep LapseReport
	if err := knownSegment(q.Segment); err != nil {
		return nil, rep, err
	}
	if q.Weeks < 1 || q.Weeks > 52 {
		return nil, rep, loyalty.Invalidf("weeks", "must be from 1 to 52")
	}
	prog, err := r.svc.Program(ctx)
	if err != nil {
		return nil, rep, err
	}
	d2 := loyalty.LocalDay(r.svc.Now(), prog.Location())
	if q.AsOf != nil {
		d2 = loyalty.LocalDay(*q.AsOf, prog.Location())
	}
	w := int64(q.Weeks) * 7
	d1, d0 := d2-w, d2-2*w
	day := func(d int64) string { return time.Unix(d*86400, 0).UTC().Format(time.DateOnly) }
	rep = LapseReport{Items: []LapseCategory{}, From: day(d0 + 1), Split: day(d1 + 1), To: day(d2)}
	return []any{d0, q.Segment, d0, d1, q.Weeks, d1, d2}, rep, nil
}

// CategoryLapse counts, per category, the segment's members who bought it
// in at least half of the Weeks weeks before the last Weeks weeks and not
// at all in the last Weeks weeks (both windows end at AsOf's day). The
// report's from, split and to are the first day of each window and the
// last day counted. One statement over all members.
func (r *Runner) CategoryLapse(ctx context.Context, q LapseQuery) (LapseReport, error) {
	args, rep, err := r.lapseArgs(ctx, q)
	if err != nil {
		return rep, err
	}
	err = loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		if err := db.Raw(`SELECT category, COUNT(*) AS members FROM (`+lapseSQL+`) l GROUP BY category ORDER BY members DESC, category`,
			args...).Scan(&rep.Items).Error; err != nil {
			return err
		}
		return db.Raw(`SELECT COUNT(DISTINCT member_id) FROM (`+lapseSQL+`) l`, args...).Scan(&rep.MembersTotal).Error
	})
	if err != nil {
		return rep, fmt.Errorf("category lapse: %w", err)
	}
	if rep.Items == nil {
		rep.Items = []LapseCategory{}
	}
	return rep, nil
}

// CategoryLapseMembers lists the members who lapsed in one category, by id.
func (r *Runner) CategoryLapseMembers(ctx context.Context, q LapseQuery, category string, page loyalty.Page) (loyalty.List[LapsedMember], error) {
	out := loyalty.List[LapsedMember]{Items: []LapsedMember{}}
	args, _, err := r.lapseArgs(ctx, q)
	if err != nil {
		return out, err
	}
	after, err := page.AfterCursor()
	if err != nil {
		return out, err
	}
	var rows []struct {
		MemberID string
		Weeks    int64
	}
	err = loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		return db.Raw(`SELECT member_id, weeks FROM (`+lapseSQL+`) l WHERE category = ? AND member_id > ? ORDER BY member_id LIMIT ?`,
			append(args, category, after, page.Size()+1)...).Scan(&rows).Error
	})
	if err != nil {
		return out, fmt.Errorf("category lapse members: %w", err)
	}
	for i, row := range rows {
		if i == page.Size() {
			out.NextCursor = loyalty.Cursor(rows[i-1].MemberID)
			break
		}
		out.Items = append(out.Items, LapsedMember{MemberID: row.MemberID, WeeksBought: row.Weeks})
	}
	return out, nil
}
