package loyalty

import (
	"encoding/json"
	"time"

	"gorm.io/gorm"
)

// saveKept writes back the kept state of accounts that lockKeptMany locked
// and keepWith brought to now: the kept columns, version, updated_at, and
// the points, debt and lifetime earned (as read, or as balanceMove moved
// them), which are all a rekeep changes.
// The two dialects differ only in how many rows go to one statement.
//   - PostgreSQL: one UPDATE … FROM json_to_recordset for the whole
//     chunk, one round trip instead of one per account.
//   - SQLite: one UPDATE per account; the database is in-process, so a
//     statement costs no round trip, and the cached statement is cheaper
//     than JSON.
func saveKept(tx *gorm.DB, accts []*account) error {
	if tx.Dialector.Name() != Postgres {
		for _, a := range accts {
			if err := tx.Save(&a.balance).Error; err != nil {
				return err
			}
		}
		return nil
	}
	type keptRow struct {
		MemberID        string     `json:"member_id"`
		Points          int64      `json:"points"`
		Debt            int64      `json:"debt"`
		LifetimeEarned  int64      `json:"lifetime_earned"`
		Version         int64      `json:"version"`
		UpdatedAt       time.Time  `json:"updated_at"`
		OpenAvailable   int64      `json:"open_available"`
		OpenPending     int64      `json:"open_pending"`
		QualifyingSpend int64      `json:"qualifying_spend"`
		ExpiringSoon    string     `json:"expiring_soon"`
		AsOf            time.Time  `json:"as_of"`
		NextChangeAt    *time.Time `json:"next_change_at"`
		ConfigVersion   int64      `json:"config_version"`
	}
	rows := make([]keptRow, len(accts))
	for i, a := range accts {
		b := &a.balance
		rows[i] = keptRow{b.MemberID, b.Points, b.Debt, b.LifetimeEarned, b.Version, b.UpdatedAt, b.OpenAvailable, b.OpenPending, b.QualifyingSpend,
			b.ExpiringSoon, b.AsOf, b.NextChangeAt, b.ConfigVersion}
	}
	js, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	return tx.Exec(`UPDATE member_balances b SET points = k.points, debt = k.debt,
			lifetime_earned = k.lifetime_earned, version = k.version, updated_at = k.updated_at,
			open_available = k.open_available, open_pending = k.open_pending, qualifying_spend = k.qualifying_spend,
			expiring_soon = k.expiring_soon, as_of = k.as_of, next_change_at = k.next_change_at, config_version = k.config_version
		FROM json_to_recordset(CAST(? AS json)) AS k(member_id text, points bigint, debt bigint, lifetime_earned bigint, version bigint, updated_at timestamptz,
			open_available bigint, open_pending bigint, qualifying_spend bigint, expiring_soon text, as_of timestamptz,
			next_change_at timestamptz, config_version bigint)
		WHERE b.member_id = k.member_id`, string(js)).Error
}

// jobWorkMem is the memory one hash or sort of a set-based job's statement
// may take on PostgreSQL before it spills to disk: the aggregates and
// rankings over a large base fit in it, where the default 4 MB spills
// them, and the job's cost stops growing faster than its input.
const jobWorkMem = "256MB"

// JobSettings raises work_mem for the rest of the transaction tx on
// PostgreSQL, for a set-based job, and maintenance_work_mem to as much
// for the indexes a job builds over a derived table it replaces (a
// million memberships' key: 1.4 s against 1.6 s with the default 64 MB,
// on a quiet server), and turns JIT compilation off there:
// the jobs' costliest statements are loops of index probes, one per
// member, whose estimated cost passes the JIT thresholds while compiling
// buys them nothing (0.73 s of compiling in one night at a million
// members, 0.31 s of it for the members' summaries; the RFM ranking took
// 4.1 s with it and without). SQLite sizes its sorts itself.
func JobSettings(tx *gorm.DB) error {
	if tx.Dialector.Name() != Postgres {
		return nil
	}
	return tx.Exec("SELECT set_config('work_mem', '" + jobWorkMem + "', true), set_config('maintenance_work_mem', '" + jobWorkMem +
		"', true), set_config('jit', 'off', true)").Error
}

// OneCore keeps the rest of the transaction tx's statements to one
// backend on PostgreSQL: no parallel workers, for queries or index builds.
// Every nightly job's transaction runs so (bulkSettle): on a database
// server that also answers the tills, a statement in workers on every core
// at once makes each till's round trip wait for one, where on one core it
// leaves them the others. Nothing on SQLite.
func OneCore(tx *gorm.DB) error {
	if tx.Dialector.Name() != Postgres {
		return nil
	}
	return tx.Exec("SELECT " + oneCore).Error
}

// oneCore is OneCore's settings as set_config calls (SET LOCAL), for a
// SELECT that may set others in the same round trip.
const oneCore = `set_config('max_parallel_workers_per_gather', '0', true), set_config('max_parallel_maintenance_workers', '0', true)`

// AnalyzeIfStale has PostgreSQL gather table's statistics again, in tx,
// when more of its rows changed since they were gathered than a tenth of
// the rows they counted (and at least a thousand): a set-based job's plan
// over a table that a run before it grew from nothing would otherwise be
// chosen for an empty table. ANALYZE reads a sample of fixed size, so it
// costs the same on any table; autovacuum does the same, on its own time.
// Nothing on SQLite, whose planner reads no such statistics here.
func AnalyzeIfStale(tx *gorm.DB, table string) error {
	return analyzeIf(tx, table, "COALESCE(s.n_mod_since_analyze, 0)")
}

// AnalyzeIfGrown has PostgreSQL gather table's statistics again, in tx,
// when tx added more rows to it than a tenth of those they counted (and at
// least a thousand): AnalyzeIfStale for a transaction's own rows, which
// the server's counters show only once it has committed. ANALYZE counts
// the rows the transaction inserted, and its statistics, with the plans
// made again for them, take effect when it commits. Nothing on SQLite.
func AnalyzeIfGrown(tx *gorm.DB, table string, added int64) error {
	return analyzeIf(tx, table, "CAST(? AS bigint)", added)
}

// analyzeIf runs ANALYZE of table in tx on PostgreSQL when the rows
// changed (an expression over pg_stat_user_tables s, with its
// placeholders' args) are more than a tenth of those its statistics
// counted, and at least a thousand.
func analyzeIf(tx *gorm.DB, table, changed string, args ...any) error {
	if tx.Dialector.Name() != Postgres {
		return nil
	}
	var due []bool
	if err := tx.Raw(`SELECT `+changed+` > GREATEST(1000, c.reltuples / 10) FROM pg_class c
		LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = CAST(? AS regclass)`, append(args, table)...).Scan(&due).Error; err != nil {
		return err
	}
	if len(due) == 0 || !due[0] {
		return nil
	}
	return tx.Exec("ANALYZE " + table).Error
}

// TempTable creates the transaction's temporary table name from the query
// q: on PostgreSQL dropped at commit, on SQLite by DropTemp (SQLite has no
// ON COMMIT DROP).
func TempTable(db *gorm.DB, name, q string, args ...any) error {
	if db.Dialector.Name() == Postgres {
		return db.Exec("CREATE TEMPORARY TABLE "+name+" ON COMMIT DROP AS "+q, args...).Error
	}
	if err := db.Exec("DROP TABLE IF EXISTS temp." + name).Error; err != nil {
		return err
	}
	return db.Exec("CREATE TEMPORARY TABLE "+name+" AS "+q, args...).Error
}

// DropTemp drops a temporary table TempTable made, on SQLite; the error
// is of no consequence (the next TempTable drops it too).
func DropTemp(db *gorm.DB, name string) {
	if db.Dialector.Name() != Postgres {
		db.Exec("DROP TABLE IF EXISTS temp." + name)
	}
}
