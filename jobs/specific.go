package jobs

import (
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// What the jobs' SQL does differently on the two dialects, side by side.

// jobMemory raises work_mem for the job's transaction (loyalty.JobMemory).
func jobMemory(db *gorm.DB) error { return loyalty.JobMemory(db) }

// tempTable creates the transaction's temporary table name from the query
// q: on PostgreSQL dropped at commit, on SQLite by dropTemp (SQLite has no
// ON COMMIT DROP).
func tempTable(db *gorm.DB, name, q string, args ...any) error {
	if db.Dialector.Name() == loyalty.Postgres {
		return db.Exec("CREATE TEMPORARY TABLE "+name+" ON COMMIT DROP AS "+q, args...).Error
	}
	if err := db.Exec("DROP TABLE IF EXISTS temp." + name).Error; err != nil {
		return err
	}
	return db.Exec("CREATE TEMPORARY TABLE "+name+" AS "+q, args...).Error
}

// dropTemp drops a temporary table tempTable made, on SQLite; the error
// is of no consequence (the next tempTable drops it too).
func dropTemp(db *gorm.DB, name string) {
	if db.Dialector.Name() != loyalty.Postgres {
		db.Exec("DROP TABLE IF EXISTS temp." + name)
	}
}
