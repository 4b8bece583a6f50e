package loyalty

import (
	"sort"
	"time"

	"gorm.io/gorm"
)

// InsertLot stores a credit entry and its lot as the books would, for
// tests of the draw order that need lots of any shape.
func InsertLot(db *gorm.DB, memberID, id string, remaining int64, availableAt time.Time, expiresAt *time.Time) error {
	e := entryRow{ID: "e-" + id, MemberID: memberID, Kind: KindAdjust, Points: remaining + 1, OccurredAt: ts(availableAt),
		AvailableAt: ts(availableAt), ExpiresAt: tsp(expiresAt), Description: "test", CreatedAt: ts(availableAt)}
	if err := db.Create(&e).Error; err != nil {
		return err
	}
	l := lotRow{ID: id, EntryID: e.ID, MemberID: memberID, Points: remaining + 1, Remaining: remaining,
		AvailableAt: e.AvailableAt, ExpiresAt: e.ExpiresAt, CreatedAt: e.CreatedAt}
	return db.Create(&l).Error
}

// DrawOrders returns the ids of the member's lots a draw at now may take,
// available ones or pending ones, in the order the books read them in SQL
// (availableScans, pendingScans) and in the order the Go rule sorts them
// (lotBefore, pendingBefore).
func DrawOrders(db *gorm.DB, memberID string, now time.Time, pending bool) (bySQL, byGo []string, err error) {
	a, _, err := loadAccount(db, memberID, ts(now))
	if err != nil {
		return nil, nil, err
	}
	scans, less := availableScans, lotBefore
	if pending {
		scans, less = pendingScans, pendingBefore
	}
	err = a.scanLots(db, scans, func(lots []lotRow) bool {
		for _, l := range lots {
			bySQL = append(bySQL, l.ID)
		}
		return false
	})
	if err != nil {
		return nil, nil, err
	}
	var lots []lotRow
	if err := db.Where("member_id = ? AND remaining > 0", memberID).Find(&lots).Error; err != nil {
		return nil, nil, err
	}
	var open []lotRow
	for _, l := range lots {
		if live(l, a.now) && l.AvailableAt.After(a.now) == pending {
			open = append(open, l)
		}
	}
	sort.Slice(open, func(i, j int) bool { return less(open[i], open[j]) })
	for _, l := range open {
		byGo = append(byGo, l.ID)
	}
	return bySQL, byGo, nil
}

// SetExpiryBatch sets both the lots an expiry run picks at a time and the
// members each of its batches takes (its first and its most) to n, until
// the returned func restores them.
func SetExpiryBatch(n int) (restore func()) {
	old, oldMax, oldWindow := expiryBatchMembers, expiryBatchMax, expiryWindow
	expiryBatchMembers, expiryBatchMax, expiryWindow = n, n, n
	return func() { expiryBatchMembers, expiryBatchMax, expiryWindow = old, oldMax, oldWindow }
}

// SetExpiryWorkers sets the batches an expiry run has under way at once on
// PostgreSQL and the members each batch takes (its first and its most),
// until the returned func restores them.
func SetExpiryWorkers(workers, members int) (restore func()) {
	old, oldMembers, oldMax := expiryWorkers, expiryBatchMembers, expiryBatchMax
	expiryWorkers, expiryBatchMembers, expiryBatchMax = workers, members, members
	return func() { expiryWorkers, expiryBatchMembers, expiryBatchMax = old, oldMembers, oldMax }
}

// SetExpiryServingQuiet sets how long no write for a caller must have
// begun before an expiry run's workers after the first take batches, and
// a hook called as each batch begins, whose result is called as it ends;
// until the returned func restores them.
func SetExpiryServingQuiet(quiet time.Duration, begins func() (ends func())) (restore func()) {
	old, oldBegins := expiryServingQuiet, expiryBatchBegins
	expiryServingQuiet, expiryBatchBegins = quiet, begins
	return func() { expiryServingQuiet, expiryBatchBegins = old, oldBegins }
}

// ImportChunk is the rows of one import chunk.
const ImportChunk = importChunk

// SetImportBeforeEnrol sets a hook run as an import chunk (numbered from 1)
// comes to enrol its members; nil removes it.
func SetImportBeforeEnrol(f func(seq int64)) { importBeforeEnrol = f }

// SetImportCopied sets a hook that learns, for each PostgreSQL import
// chunk, whether its purchases were copied straight into their table, and
// the chunks that go through the stage after one found a stored purchase;
// the returned func restores both.
func SetImportCopied(skip int64, f func(direct bool)) (restore func()) {
	oldSkip, oldF := importDirectSkip, importCopied
	importDirectSkip, importCopied = skip, f
	return func() { importDirectSkip, importCopied = oldSkip, oldF }
}

// SetQueueVacuum sets when the sequencer vacuums event_queue (after rows
// taken off it, at most every), until the returned func restores it.
func SetQueueVacuum(rows int, every time.Duration) (restore func()) {
	oldRows, oldEvery := queueVacuumRows, queueVacuumEvery
	queueVacuumRows, queueVacuumEvery = rows, every
	return func() { queueVacuumRows, queueVacuumEvery = oldRows, oldEvery }
}

// BulkWALCompression is what an import chunk's transaction sets
// wal_compression to on PostgreSQL ("" to leave it).
func (s *Store) BulkWALCompression() string { return s.bulkWALCompression(s.w) }

// OpenLotsSQL is the tills' read of a member's open lots on PostgreSQL.
var OpenLotsSQL = pgOpenLotsSQL

// OfferFactsSQL is a purchase's read of the member's offer facts on
// PostgreSQL.
var OfferFactsSQL = pgOfferFactsSQL

// SetLockingJobIdle sets how long a job's transaction that locks rows a
// till may wait for runs in the jobs' cgroup, until the returned func
// restores it.
func SetLockingJobIdle(d time.Duration) (restore func()) {
	old := lockingJobIdle
	lockingJobIdle = d
	return func() { lockingJobIdle = old }
}
