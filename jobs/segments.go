package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// Segment describes one computed segment.
type Segment struct {
	Code        string     `json:"code"`
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Members     int64      `json:"members"`
	ComputedAt  *time.Time `json:"computed_at"`
}

// segmentDefs are the segments the segments job computes. The RFM segments
// partition every member with a purchase in the last 365 days by recency
// (R) and the mean of frequency and monetary quintiles (FM), each 1 to 5.
var segmentDefs = []Segment{
	{Code: "loyal", Name: "Loyal customers", Description: "a purchase in at least loyal_min_active_weeks of the last loyal_window_weeks 7-day periods, across at least loyal_min_categories categories"},
	{Code: "rfm_champions", Name: "Champions", Description: "R ≥ 4 and FM ≥ 4: bought recently, often and much"},
	{Code: "rfm_loyal", Name: "Loyal", Description: "R ≥ 3 and FM ≥ 3, not champions"},
	{Code: "rfm_new", Name: "New or occasional", Description: "R ≥ 4 and FM ≤ 2: bought recently, little so far"},
	{Code: "rfm_promising", Name: "Promising", Description: "R = 3 and FM ≤ 2"},
	{Code: "rfm_at_risk", Name: "At risk", Description: "R ≤ 2 and FM ≥ 3: good customers who have not come back"},
	{Code: "rfm_hibernating", Name: "Hibernating", Description: "R ≤ 2 and FM ≤ 2"},
}

// SegmentsSummary counts the members of each segment after a run.
type SegmentsSummary struct {
	Members map[string]int64 `json:"members"`
}

// Segments recomputes segment membership as of asOf in a few statements:
// one for the loyal segment, one for the RFM segments from the members'
// purchase summaries brought to asOf (activityTable, which the churn-risk
// run shares). A future asOf is refused; a past one computes membership
// from the purchases up to it, which stands until the next run.
func (r *Runner) Segments(ctx context.Context, asOf time.Time) (SegmentsSummary, error) {
	sum := SegmentsSummary{Members: map[string]int64{}}
	asOf, err := r.svc.AsOf(asOf)
	if err != nil {
		return sum, err
	}
	prog, err := r.svc.Program(ctx)
	if err != nil {
		return sum, err
	}
	sg := prog.Segments
	now := r.svc.Now()
	err = loyalty.WriteDerived(ctx, r.svc, func(tx *loyalty.Tx) error {
		if err := jobSettings(tx.DB); err != nil {
			return err
		}
		// Week k (0 = the latest) is (asOf − 7(k+1) days, asOf − 7k days].
		var week strings.Builder
		args := []any{}
		week.WriteString("CASE")
		for k := 0; k < sg.LoyalWindowWeeks; k++ {
			week.WriteString(" WHEN p.occurred_at > ? THEN ")
			week.WriteString(fmt.Sprint(k))
			args = append(args, asOf.AddDate(0, 0, -7*(k+1)))
		}
		week.WriteString(" END")
		windowStart := asOf.AddDate(0, 0, -7*sg.LoyalWindowWeeks)
		fromDate, toDate := loyalty.LocalDates(windowStart, asOf)
		args = append(args, windowStart, asOf, fromDate, toDate, sg.LoyalMinActiveWeeks)
		// The loyal segment's first test, in one pass over the window's
		// purchases: the members who bought in enough of its weeks. On
		// PostgreSQL each member's weeks are bits of a mask (two, as a
		// window has up to 104 weeks) ORed in one hash aggregate by member,
		// and counted; elsewhere distinct weeks per member are two levels
		// of GROUP BY, member and week then member (which hash, where
		// COUNT(DISTINCT …) per member sorts the window's purchases). The
		// second level's hash of every member's weeks took 4.2 s of 5.2 s
		// at a million members, the masks 1.4 s. The window's purchases
		// are found by the local_date BRIN index (a local date is within a
		// day of the instant's UTC date), not by reading the whole table.
		// Only their lines are read for the second, by index: a weekly
		// shopper's dozen purchases, not every line of the window.
		weeks := `SELECT member_id FROM (
				SELECT member_id, week FROM pw GROUP BY member_id, week
			) mw GROUP BY member_id HAVING COUNT(*) >= ?`
		if r.svc.Store().Dialect == loyalty.Postgres {
			weeks = `SELECT member_id FROM pw GROUP BY member_id
				HAVING COALESCE(bit_count(bit_or(CASE WHEN week < 63 THEN CAST(1 AS bigint) << week END)::bit(64)), 0)
					+ COALESCE(bit_count(bit_or(CASE WHEN week >= 63 THEN CAST(1 AS bigint) << (week - 63) END)::bit(64)), 0) >= ?`
		}
		if err := loyalty.TempTable(tx.DB, "loyal_weeks", `WITH pw AS (
				SELECT p.member_id, `+week.String()+` AS week
				FROM purchases p WHERE p.occurred_at > ? AND p.occurred_at <= ?
					AND p.local_date >= ? AND p.local_date <= ?
			) `+weeks, args...); err != nil {
			return err
		}
		defer loyalty.DropTemp(tx.DB, "loyal_weeks")
		if r.svc.Store().Dialect == loyalty.Postgres {
			// Its size, for the plan: their purchases by index.
			if err := tx.DB.Exec(`ANALYZE loyal_weeks`).Error; err != nil {
				return err
			}
		}
		if err := r.foldCategories(tx.DB, now); err != nil {
			return err
		}
		// A first fold fills the members' categories from nothing: the
		// plans below read their statistics (a sort of 200,000 rows
		// expected to be a few hundred, at 100,000 members, without them).
		if err := loyalty.AnalyzeIfStale(tx.DB, r.categoriesTable()); err != nil {
			return err
		}
		// The RFM figures are the members' purchase summaries brought to
		// asOf (activityTable).
		activity, _, _, err := r.activityTable(tx.DB, asOf, loyalty.LocalDay(asOf, prog.Location()), now)
		if err != nil {
			return err
		}
		defer loyalty.DropTemp(tx.DB, "churn_members")
		// Every segment is computed here, into a temporary table (no WAL),
		// then made member_segments' rows (applySegments).
		if err := loyalty.TempTable(tx.DB, "segments_next", `SELECT member_id, segment_code FROM member_segments WHERE 1 = 0`); err != nil {
			return err
		}
		defer loyalty.DropTemp(tx.DB, "segments_next")
		if err := r.fillSegments(tx.DB, "segments_next", activity, windowStart, asOf, sg.LoyalMinCategories); err != nil {
			return err
		}
		return r.applySegments(tx.DB, now)
	})
	if err != nil {
		return sum, fmt.Errorf("segments: %w", err)
	}
	list, err := r.SegmentList(ctx)
	if err != nil {
		return sum, err
	}
	for _, s := range list {
		sum.Members[s.Code] = s.Members
	}
	return sum, nil
}

// foldCategories brings the members' categories up to the purchases
// written since category_state's watermark: each member's latest purchase
// in each category of their lines, kept as the later of the two (so a line
// folded twice changes nothing). The watermark is, as member_activity's, an
// hour before now on PostgreSQL (created_at, by its BRIN index) and the
// newest purchase's rowid on SQLite; with no state yet every purchase is
// folded. On PostgreSQL a member's categories are one row of
// member_category_marks (foldMarksSQL), elsewhere one row a category in
// member_categories.
func (r *Runner) foldCategories(db *gorm.DB, now time.Time) error {
	pg := r.svc.Store().Dialect == loyalty.Postgres
	lock, since, later := "", "p.created_at > ?", "GREATEST(member_categories.last_at, EXCLUDED.last_at)"
	var next any = now.Add(-loyalty.MarkMargin)
	if pg {
		lock = " FOR UPDATE"
	} else {
		var top int64
		if err := db.Raw(`SELECT COALESCE(MAX(rowid), 0) FROM purchases`).Row().Scan(&top); err != nil {
			return err
		}
		next, since, later = top, "p.rowid > ?", "MAX(member_categories.last_at, excluded.last_at)"
	}
	// The watermark as the driver reads it: a time on PostgreSQL, a rowid
	// on SQLite; none before the first run.
	var prev any
	err := db.Raw(`SELECT watermark FROM category_state WHERE id = 1` + lock).Row().Scan(&prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	lines := `SELECT p.member_id, i.category, MAX(p.occurred_at) AS last_at FROM purchases p JOIN purchase_items i ON i.purchase_id = p.id
		WHERE %s i.category <> '' GROUP BY p.member_id, i.category`
	switch {
	case prev == nil:
		// The first run: every purchase, into an emptied table.
		if err := db.Exec(`DELETE FROM ` + r.categoriesTable()).Error; err != nil {
			return err
		}
		if pg {
			err = db.Exec(`INSERT INTO member_category_marks (member_id, categories, last_ats)
				SELECT c.member_id, array_agg(c.category ORDER BY c.category), array_agg(c.last_at ORDER BY c.category)
				FROM (` + fmt.Sprintf(lines, "") + `) c GROUP BY c.member_id`).Error
		} else {
			err = db.Exec(`INSERT INTO member_categories (member_id, category, last_at) ` + fmt.Sprintf(lines, "")).Error
		}
	case pg:
		err = db.Exec(foldMarksSQL(fmt.Sprintf(lines, since+" AND")), prev).Error
	default:
		err = db.Exec(`INSERT INTO member_categories (member_id, category, last_at) `+fmt.Sprintf(lines, since+" AND")+`
			ON CONFLICT (member_id, category) DO UPDATE SET last_at = `+later+`
			WHERE member_categories.last_at < excluded.last_at`, prev).Error
	}
	if err != nil {
		return err
	}
	if err := db.Exec(`DELETE FROM category_state`).Error; err != nil {
		return err
	}
	return db.Exec(`INSERT INTO category_state (id, watermark) VALUES (1, ?)`, next).Error
}

// foldMarksSQL folds lines (member_id, category, last_at: a member's latest
// purchase in a category, one row each) into member_category_marks on
// PostgreSQL: each member with lines has its categories merged with its row's
// inside its own LATERAL (the later purchase of each category, the arrays
// ordered by category), and its row written only when that changed it. A
// night's 27,000 members at a million merge in about the time the day's
// 55,000 (member, category) rows took to upsert one by one among 6.9
// million.
func foldMarksSQL(lines string) string {
	return `INSERT INTO member_category_marks (member_id, categories, last_ats)
		SELECT d.member_id, x.categories, x.last_ats FROM (
			SELECT c.member_id, array_agg(c.category) AS categories, array_agg(c.last_at) AS last_ats
			FROM (` + lines + `) c GROUP BY c.member_id
		) d LEFT JOIN member_category_marks m ON m.member_id = d.member_id
		CROSS JOIN LATERAL (
			SELECT array_agg(v.category ORDER BY v.category) AS categories, array_agg(v.last_at ORDER BY v.category) AS last_ats
			FROM (
				SELECT u.category, MAX(u.last_at) AS last_at FROM (
					SELECT * FROM unnest(m.categories, m.last_ats)
					UNION ALL SELECT * FROM unnest(d.categories, d.last_ats)
				) u (category, last_at) GROUP BY u.category
			) v
		) x
		ON CONFLICT (member_id) DO UPDATE SET categories = EXCLUDED.categories, last_ats = EXCLUDED.last_ats
		WHERE (member_category_marks.categories, member_category_marks.last_ats) IS DISTINCT FROM (EXCLUDED.categories, EXCLUDED.last_ats)`
}

// applySegments makes member_segments hold the memberships in
// segments_next, each stamped with the run that placed the member in its
// segment: a membership already there keeps its computed_at, a new one is
// stamped now. It records the run in segment_runs.
//
// On PostgreSQL the table is derived (memberSegments) and replaced whole:
// a new unlogged table of every membership, its old stamps joined in (one
// hash join of the two), with its key and index built once, swapped in at
// the end of the run's transaction. At a million members, deleting the
// memberships that ended and inserting the new ones took 6.4 s of a 25 s
// run, with two anti-joins of a million rows and 218 MB of WAL that the
// tills' commits flushed behind them; replaced unlogged, the rows go to no
// WAL. On SQLite the rows that ended are deleted and the new ones
// inserted.
func (r *Runner) applySegments(db *gorm.DB, now time.Time) error {
	if r.svc.Store().Dialect == loyalty.Postgres {
		// Its size, for the join's plan.
		if err := db.Exec(`ANALYZE segments_next`).Error; err != nil {
			return err
		}
		if _, err := r.replaceDerived(db, memberSegments, `SELECT n.member_id, n.segment_code, COALESCE(s.computed_at, ?) AS computed_at
				FROM segments_next n LEFT JOIN member_segments s ON s.member_id = n.member_id AND s.segment_code = n.segment_code`,
			now); err != nil {
			return err
		}
	} else {
		if err := db.Exec(`CREATE INDEX temp.segments_next_key ON segments_next (member_id, segment_code)`).Error; err != nil {
			return err
		}
		if err := db.Exec(`DELETE FROM member_segments WHERE NOT EXISTS (SELECT 1 FROM segments_next n
				WHERE n.member_id = member_segments.member_id AND n.segment_code = member_segments.segment_code)`).Error; err != nil {
			return err
		}
		// By the index on segments_next, the memberships already there
		// passed over by the primary key; the WHERE makes SQLite read ON
		// CONFLICT as the upsert's.
		if err := db.Exec(`INSERT INTO member_segments (member_id, segment_code, computed_at)
				SELECT member_id, segment_code, ? FROM segments_next WHERE 1 = 1
				ON CONFLICT (member_id, segment_code) DO NOTHING`, now).Error; err != nil {
			return err
		}
	}
	if err := db.Exec(`DELETE FROM segment_runs`).Error; err != nil {
		return err
	}
	return db.Exec(`INSERT INTO segment_runs (id, computed_at) VALUES (1, ?)`, now).Error
}

// fillSegments inserts into target the members of every segment: the
// loyal one from the members in loyal_weeks who bought in enough
// categories between windowStart and asOf, the RFM segments from the
// members' summaries in the table activity. A member's categories are
// counted from the latest purchase in each (member_category_marks on
// PostgreSQL, member_categories elsewhere), in one pass over those after
// windowStart that also marks the members with
// a purchase after asOf (late), which hides whether they had one in the
// window too (none on a night's run but for receipts dated ahead); a late
// member's categories are counted from its lines of the window instead
// (distinct categories as two levels of GROUP BY). Only active members
// are in a segment: the others are left out by an anti-join with the few
// members not active, not by a join with every member.
func (r *Runner) fillSegments(db *gorm.DB, target, activity string, windowStart, asOf time.Time, minCategories int) error {
	counts := `SELECT mc.member_id,
				SUM(CASE WHEN mc.last_at <= ? THEN 1 ELSE 0 END) AS n, MAX(CASE WHEN mc.last_at > ? THEN 1 ELSE 0 END) AS late
			FROM loyal_weeks w JOIN member_categories mc ON mc.member_id = w.member_id
			WHERE mc.last_at > ? GROUP BY mc.member_id`
	if r.svc.Store().Dialect == loyalty.Postgres {
		// Each candidate's one row, its dates counted in place: 0.8 s at
		// a million members, where joining the candidates with a row a
		// category (2.1 million of 6.9 million) took 3.2 s.
		counts = `SELECT w.member_id, c.n, c.late FROM loyal_weeks w JOIN member_category_marks m ON m.member_id = w.member_id
			CROSS JOIN LATERAL (
				SELECT SUM(CASE WHEN a <= ? THEN 1 ELSE 0 END) AS n, MAX(CASE WHEN a > ? THEN 1 ELSE 0 END) AS late
				FROM unnest(m.last_ats) AS a WHERE a > ?
			) c WHERE c.n IS NOT NULL`
	}
	if err := loyalty.TempTable(db, "loyal_counts", counts, asOf, asOf, windowStart); err != nil {
		return err
	}
	defer loyalty.DropTemp(db, "loyal_counts")
	if r.svc.Store().Dialect == loyalty.Postgres {
		// Its late members, for the plan: their purchases by index.
		if err := db.Exec(`ANALYZE loyal_counts`).Error; err != nil {
			return err
		}
	}
	if err := db.Exec(`INSERT INTO `+target+` (member_id, segment_code)
			SELECT c.member_id, 'loyal' FROM (
				SELECT member_id FROM loyal_counts WHERE late = 0 AND n >= ?
				UNION ALL
				SELECT member_id FROM (
					SELECT p.member_id, i.category
					FROM loyal_counts w JOIN purchases p ON p.member_id = w.member_id
					JOIN purchase_items i ON i.purchase_id = p.id
					WHERE w.late = 1 AND p.occurred_at > ? AND p.occurred_at <= ? AND i.category <> '' GROUP BY p.member_id, i.category
				) pc GROUP BY member_id HAVING COUNT(*) >= ?
			) c WHERE `+notActive("c.member_id"),
		minCategories, windowStart, asOf, minCategories).Error; err != nil {
		return err
	}
	// The quintiles' orders, each broken by member id. On PostgreSQL
	// the frequency's ties (most members share a handful of counts) are
	// broken by a hash of the id first, in one integer with the count, and
	// the spend's by the hash before the id: a sort compares a row's first
	// key in place and reads the row for the next, which a tie did for most
	// rows (the statement took 5.7 s at a million members, 3.9 s keyed
	// so).
	byN, bySpend, hash := "a.n, a.member_id", "a.spend, a.member_id", ""
	if r.svc.Store().Dialect == loyalty.Postgres {
		byN, bySpend, hash = "CAST(a.n AS bigint) * 4294967296 + a.h, a.member_id", "a.spend, a.h, a.member_id", ", hashtext(a.member_id) AS h"
	}
	return db.Exec(`INSERT INTO ` + target + ` (member_id, segment_code)
			SELECT s.member_id, CASE
				WHEN s.r >= 4 AND s.fm >= 4 THEN 'rfm_champions'
				WHEN s.r >= 3 AND s.fm >= 3 THEN 'rfm_loyal'
				WHEN s.r >= 4 THEN 'rfm_new'
				WHEN s.r = 3 THEN 'rfm_promising'
				WHEN s.fm >= 3 THEN 'rfm_at_risk'
				ELSE 'rfm_hibernating' END
			FROM (
				SELECT q.member_id, q.r, (q.f + q.m + 1) / 2 AS fm FROM (
					SELECT a.member_id,
						NTILE(5) OVER (ORDER BY a.last_at, a.member_id) AS r,
						NTILE(5) OVER (ORDER BY ` + byN + `) AS f,
						NTILE(5) OVER (ORDER BY ` + bySpend + `) AS m
					FROM (
						SELECT a.member_id, a.rfm_last_at AS last_at, a.rfm_n AS n, CAST(a.rfm_spend AS NUMERIC) AS spend` + hash + `
						FROM ` + activity + ` a
						WHERE a.rfm_n > 0 AND ` + notActive("a.member_id") + `
					) a
				) q
			) s`).Error
}

// SegmentList lists the segments with their sizes.
func (r *Runner) SegmentList(ctx context.Context) ([]Segment, error) {
	out := make([]Segment, len(segmentDefs))
	copy(out, segmentDefs)
	err := loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		var counts []struct {
			SegmentCode string
			N           int64
		}
		if err := db.Raw(`SELECT segment_code, COUNT(*) AS n FROM member_segments GROUP BY segment_code`).Scan(&counts).Error; err != nil {
			return err
		}
		// When the segments were last computed: the run's time, which
		// every segment shares, members or none (read as the column
		// itself, which both drivers type as a time).
		var run []time.Time
		if err := db.Table("segment_runs").Where("id = 1").Pluck("computed_at", &run).Error; err != nil {
			return err
		}
		for i := range out {
			if len(run) == 1 {
				t := run[0].UTC()
				out[i].ComputedAt = &t
			}
			for _, c := range counts {
				if c.SegmentCode != out[i].Code {
					continue
				}
				out[i].Members = c.N
				if out[i].ComputedAt != nil {
					continue
				}
				// Members placed with no run recorded (before the runs
				// were): when the latest of them was.
				var at []time.Time
				if err := db.Table("member_segments").Where("segment_code = ?", c.SegmentCode).
					Order("computed_at DESC").Limit(1).Pluck("computed_at", &at).Error; err != nil {
					return err
				}
				if len(at) == 1 {
					t := at[0].UTC()
					out[i].ComputedAt = &t
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	return out, nil
}

// SegmentMembers lists the ids of a segment's members, by id.
func (r *Runner) SegmentMembers(ctx context.Context, code string, page loyalty.Page) (loyalty.List[string], error) {
	out := loyalty.List[string]{Items: []string{}}
	known := false
	for _, d := range segmentDefs {
		known = known || d.Code == code
	}
	if !known {
		return out, loyalty.Errorf(loyalty.NotFound, "not_found", "no segment has code %q", code)
	}
	after, err := page.AfterCursor()
	if err != nil {
		return out, err
	}
	var ids []string
	err = loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
		q := db.Table("member_segments").Where("segment_code = ? AND member_id > ?", code, after)
		return q.Order("member_id").Limit(page.Size()+1).Pluck("member_id", &ids).Error
	})
	if err != nil {
		return out, fmt.Errorf("segment members: %w", err)
	}
	for i, id := range ids {
		if i == page.Size() {
			out.NextCursor = loyalty.Cursor(ids[i-1])
			break
		}
		out.Items = append(out.Items, id)
	}
	return out, nil
}

// ExportSegment streams every member of a segment with its contact fields,
// for campaign tools, calling row once per member in id order. It reads in
// chunks of loyalty.DefaultExportChunk members, each one short read of its
// own (see loyalty's exports), so no query or transaction stays open while
// row waits for a slow client.
func (r *Runner) ExportSegment(ctx context.Context, code string, row func(cols []string) error) error {
	if _, err := r.SegmentMembers(ctx, code, loyalty.Page{Limit: 1}); err != nil {
		return err
	}
	if err := row([]string{"member_id", "external_id", "email", "phone", "first_name", "last_name", "tier"}); err != nil {
		return err
	}
	after := ""
	for {
		var chunk [][]string
		err := loyalty.Read(ctx, r.svc, func(db *gorm.DB) error {
			rows, err := db.Raw(`SELECT m.id, COALESCE(m.external_id, ''), COALESCE(m.email, ''),
					COALESCE(m.phone, ''), COALESCE(m.first_name, ''), COALESCE(m.last_name, ''), COALESCE(m.tier_code, '')
				FROM member_segments s JOIN members m ON m.id = s.member_id
				WHERE s.segment_code = ? AND s.member_id > ? AND m.status = 'active' ORDER BY s.member_id LIMIT ?`,
				code, after, loyalty.DefaultExportChunk).Rows()
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				cols := make([]string, 7)
				ptrs := make([]any, 7)
				for i := range cols {
					ptrs[i] = &cols[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					return err
				}
				chunk = append(chunk, cols)
			}
			return rows.Err()
		})
		if err != nil {
			return fmt.Errorf("export segment: %w", err)
		}
		for _, cols := range chunk {
			if err := row(cols); err != nil {
				return err
			}
		}
		if len(chunk) < loyalty.DefaultExportChunk {
			return nil
		}
		after = chunk[len(chunk)-1][0]
	}
}

// notActive is a condition that the member whose id is the expression
// member is not one of the members not active: an anti-join with those
// few (a hash of a handful of ids, read from the index that holds only
// them, members_not_active) where a join with members would hash every
// member.
func notActive(member string) string {
	return `NOT EXISTS (SELECT 1 FROM members na WHERE na.id = ` + member + ` AND na.status <> 'active')`
}
