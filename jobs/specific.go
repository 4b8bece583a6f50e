package jobs

import (
	"fmt"
	"strconv"
	"strings"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// What the jobs' SQL does differently on the two dialects, side by side.

// jobSettings sets work_mem and JIT for the job's transaction
// (loyalty.JobSettings).
func jobSettings(db *gorm.DB) error { return loyalty.JobSettings(db) }

// categoriesTable is the table of the members' latest purchase in each
// category: one row a member on PostgreSQL (member_category_marks, two
// arrays in step), one row a category elsewhere (member_categories).
func (r *Runner) categoriesTable() string {
	if r.svc.Store().Dialect == loyalty.Postgres {
		return "member_category_marks"
	}
	return "member_categories"
}

// derived is a table a job replaces whole on every run from the engine's
// other tables, and nothing else: its primary key and its other indexes,
// as the migrations made them (%s is the table's name in each); the job
// that fills it; and filled, a query with a row once the job has filled
// it (RecoverDerived).
type derived struct {
	name    string
	key     string
	indexes []string
	job     string
	filled  string
}

var memberChurn = derived{name: "member_churn", key: "member_id", indexes: []string{
	"CREATE INDEX %s_clv ON %s (clv DESC, member_id)",
	"CREATE INDEX %s_risk ON %s (churn_risk " + riskCollate + " DESC, member_id " + riskCollate + ")",
}, job: "churn-risk", filled: "SELECT 1 FROM churn_models"}

// memberSegments is every member's segments (applySegments); a
// membership's computed_at is the run that placed the member in the
// segment.
var memberSegments = derived{name: "member_segments", key: "member_id, segment_code", indexes: []string{
	"CREATE INDEX %s_code ON %s (segment_code)",
}, job: "segments", filled: "SELECT 1 FROM segment_runs"}

// derivedTables are the tables replaceDerived writes.
var derivedTables = []derived{memberChurn, memberSegments}

// riskCollate is the collation of member_churn_risk's keys on PostgreSQL
// (migration 00037), which the churn-risk list's comparisons and order name
// to be read from it: bytes ("C"), where the database's collation compared
// each pair of strings through the C library. A risk is written "0.3721"
// and an id in lower-case hex and dashes, so both orders are the same; the
// nightly build of the index over a million members took 1.25 s against
// 1.8 s.
const riskCollate = `COLLATE "C"`

// pageDesc reads into rows the page of a list of members ordered by the
// column key of c descending, then by member_id (both under the collation
// collate names, "" for the columns' own): the rows of from (the list's
// FROM and WHERE, c its member_churn, with the named args) up to size+1 of
// them, after the cursor's value and member id when after is not nil. A
// cursor's page is read as two halves that each start in the
// index on (key DESC, member_id) where they begin: the members at the
// cursor's value after its member, then those below the value. (One
// condition with an OR of the two is no index range: the scan would start
// at the top and filter out every row before the cursor, so a page would
// cost more the deeper it is.)
func pageDesc(db *gorm.DB, cols, from, key, collate string, args map[string]any, after []any, size int, rows any) error {
	if after != nil {
		args["after_key"], args["after_id"] = after[0], after[1]
	}
	q := pageDescSQL(cols, from, key, collate, after != nil, size)
	if len(args) == 0 {
		return db.Raw(q).Scan(rows).Error
	}
	return db.Raw(q, args).Scan(rows).Error
}

// pageDescSQL is pageDesc's query, for a page after a cursor (whose value
// and member id are the arguments after_key and after_id) or the first.
func pageDescSQL(cols, from, key, collate string, after bool, size int) string {
	if collate != "" {
		collate = " " + collate
	}
	k, id := "c."+key+collate, "c.member_id"+collate
	order := " ORDER BY " + k + " DESC, " + id + " LIMIT " + strconv.Itoa(size+1)
	if !after {
		return "SELECT " + cols + " FROM " + from + order
	}
	return `SELECT * FROM (SELECT * FROM (SELECT ` + cols + ` FROM ` + from + ` AND ` + k + ` = @after_key AND ` + id + ` > @after_id` + order + `) AS tie
		UNION ALL SELECT * FROM (SELECT ` + cols + ` FROM ` + from + ` AND ` + k + ` < @after_key` + order + `) AS below) AS page
		ORDER BY ` + key + collate + ` DESC, member_id` + collate + ` LIMIT ` + strconv.Itoa(size+1)
}

// replaceDerived replaces every row of t with the rows of the query rows
// (with args), whose columns are named as t's, and returns how many there
// are. On SQLite the rows are inserted into t once its rows are deleted.
// On PostgreSQL, where it is a run over every member, they go into a new
// table, which then takes t's place with its primary key and indexes built
// once over all rows: a fifth of the time of deleting and inserting every
// row, and no dead rows left behind. Readers wait only for the swap, at
// the end of the job's transaction.
//
// The new table is unlogged and written as CREATE TABLE AS: the rows go
// to no WAL (nor do the indexes, whose files are not synced to disk
// either), and they pass through a small ring of the server's buffers, not
// through all of them. The tills' commits flush the WAL written before
// them and read their members' pages from those buffers: beside a churn
// scoring that wrote its million rows so, their p99 was 19–25 ms, against
// 26–50 ms beside the same rows inserted into a logged table. Its columns
// take t's types, collations, NOT NULL, defaults and CHECKs from the
// catalog, so that the table is as the migrations made it. PostgreSQL
// empties an unlogged table when it recovers from a crash; RecoverDerived
// fills it again.
func (r *Runner) replaceDerived(db *gorm.DB, t derived, rows string, args ...any) (int64, error) {
	var cols []struct {
		Name, Type, Def, Collation string
		NotNull                    bool
	}
	if r.svc.Store().Dialect != loyalty.Postgres {
		if err := db.Raw(`SELECT name FROM pragma_table_info(?) ORDER BY cid`, t.name).Scan(&cols).Error; err != nil {
			return 0, err
		}
		if err := db.Exec("DELETE FROM " + t.name).Error; err != nil {
			return 0, err
		}
		names := make([]string, len(cols))
		for i, c := range cols {
			names[i] = c.Name
		}
		list := strings.Join(names, ", ")
		res := db.Exec(`INSERT INTO `+t.name+` (`+list+`) SELECT `+list+` FROM (`+rows+`) AS r`, args...)
		return res.RowsAffected, res.Error
	}
	if err := db.Raw(`SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
			COALESCE(pg_get_expr(d.adbin, d.adrelid), '') AS def,
			CASE WHEN a.attcollation <> t.typcollation THEN CAST(CAST(a.attcollation AS regcollation) AS text) ELSE '' END AS collation
		FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = CAST(? AS regclass) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, t.name).Scan(&cols).Error; err != nil {
		return 0, err
	}
	var checks []string
	if err := db.Raw(`SELECT 'CONSTRAINT ' || quote_ident(conname) || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = CAST(? AS regclass) AND contype = 'c' ORDER BY conname`, t.name).Scan(&checks).Error; err != nil {
		return 0, err
	}
	next := t.name + "_next"
	if err := db.Exec(`DROP TABLE IF EXISTS ` + next).Error; err != nil {
		return 0, err
	}
	sel := make([]string, len(cols))
	var alter []string
	for i, c := range cols {
		sel[i] = "CAST(r." + c.Name + " AS " + c.Type + ")"
		if c.Collation != "" {
			// A key the migrations made in bytes (migration 00043).
			sel[i] += " COLLATE " + c.Collation
		}
		sel[i] += " AS " + c.Name
		if c.NotNull {
			alter = append(alter, "ALTER COLUMN "+c.Name+" SET NOT NULL")
		}
		if c.Def != "" {
			alter = append(alter, "ALTER COLUMN "+c.Name+" SET DEFAULT "+c.Def)
		}
	}
	for _, c := range checks {
		alter = append(alter, "ADD "+c)
	}
	res := db.Exec(`CREATE UNLOGGED TABLE `+next+` AS SELECT `+strings.Join(sel, ", ")+` FROM (`+rows+`) AS r`, args...)
	if res.Error != nil {
		return 0, res.Error
	}
	// One ALTER, one pass over the rows to check them.
	stmts := []string{`ALTER TABLE ` + next + ` ` + strings.Join(alter, ", "),
		`ALTER TABLE ` + next + ` ADD CONSTRAINT ` + next + `_pkey PRIMARY KEY (` + t.key + `)`}
	if len(alter) == 0 {
		stmts = stmts[1:]
	}
	for _, ix := range t.indexes {
		stmts = append(stmts, fmt.Sprintf(ix, next, next))
	}
	// Its statistics, which a new table has none of until autovacuum
	// gets to it: the readers' plans (the members a segment's offer
	// targets, by segment) are made on them from the swap on.
	stmts = append(stmts, `ANALYZE `+next)
	stmts = append(stmts, `DROP TABLE `+t.name, `ALTER TABLE `+next+` RENAME TO `+t.name,
		`ALTER TABLE `+t.name+` RENAME CONSTRAINT `+next+`_pkey TO `+t.name+`_pkey`)
	for _, ix := range t.indexes {
		name := strings.Fields(fmt.Sprintf(ix, t.name, t.name))[2]
		stmts = append(stmts, `ALTER INDEX `+strings.Replace(name, t.name, next, 1)+` RENAME TO `+name)
	}
	for _, q := range stmts {
		if err := db.Exec(q).Error; err != nil {
			return 0, err
		}
	}
	return res.RowsAffected, nil
}
