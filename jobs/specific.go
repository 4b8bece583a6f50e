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

// derived is a table a job replaces whole on every run: its primary key
// and its other indexes, as the migrations made them (%s is the table's
// name in each).
type derived struct {
	name    string
	key     string
	indexes []string
}

var memberChurn = derived{"member_churn", "member_id", []string{
	"CREATE INDEX %s_clv ON %s (clv DESC, member_id)",
	"CREATE INDEX %s_risk ON %s (churn_risk " + riskCollate + " DESC, member_id " + riskCollate + ")",
}}

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

// replaceDerived replaces every row of t with the rows fill inserts into
// the table it is given. On SQLite fill inserts into t once its rows are
// deleted. On PostgreSQL, where it is a run over every member, fill
// inserts into a new table, which then takes t's place with its primary
// key and indexes built once over all rows: a fifth of the time of
// deleting and inserting every row, and no dead rows left behind. Readers
// wait only for the swap, at the end of the job's transaction.
func (r *Runner) replaceDerived(db *gorm.DB, t derived, fill func(target string) error) error {
	if r.svc.Store().Dialect != loyalty.Postgres {
		if err := db.Exec("DELETE FROM " + t.name).Error; err != nil {
			return err
		}
		return fill(t.name)
	}
	next := t.name + "_next"
	if err := db.Exec(`DROP TABLE IF EXISTS ` + next).Error; err != nil {
		return err
	}
	if err := db.Exec(`CREATE TABLE ` + next + ` (LIKE ` + t.name + ` INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`).Error; err != nil {
		return err
	}
	if err := fill(next); err != nil {
		return err
	}
	stmts := []string{`ALTER TABLE ` + next + ` ADD CONSTRAINT ` + next + `_pkey PRIMARY KEY (` + t.key + `)`}
	for _, ix := range t.indexes {
		stmts = append(stmts, fmt.Sprintf(ix, next, next))
	}
	stmts = append(stmts, `DROP TABLE `+t.name, `ALTER TABLE `+next+` RENAME TO `+t.name,
		`ALTER TABLE `+t.name+` RENAME CONSTRAINT `+next+`_pkey TO `+t.name+`_pkey`)
	for _, ix := range t.indexes {
		name := strings.Fields(fmt.Sprintf(ix, t.name, t.name))[2]
		stmts = append(stmts, `ALTER INDEX `+strings.Replace(name, t.name, next, 1)+` RENAME TO `+name)
	}
	for _, q := range stmts {
		if err := db.Exec(q).Error; err != nil {
			return err
		}
	}
	return nil
}
