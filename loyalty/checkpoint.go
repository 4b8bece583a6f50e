package loyalty

import (
	"context"
	"database/sql"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
)

// checkpointer moves SQLite's WAL checkpoints off the commit path. By
// default the connection that commits a transaction taking the WAL past
// 1,000 pages also checkpoints it, inside its COMMIT: on the single writer
// that is the group committer, and every write queued behind it waits (it
// was about a tenth of the committer's CPU under load). The writer runs
// with wal_autocheckpoint=0 instead, and this goroutine runs a PASSIVE
// checkpoint on a connection of its own every interval, concurrently with
// the writer and the readers, as SQLite allows.
//
// Durability is unchanged: in WAL mode with synchronous=NORMAL a COMMIT
// appends to the WAL without a sync either way, a checkpoint syncs the WAL
// before it copies pages into the database file and the file after, and
// recovery after a crash replays the WAL whoever checkpoints. A PASSIVE
// checkpoint copies what no reader still needs, as the automatic one did;
// the writer starts the WAL over once a checkpoint has copied all of it.
//
// Under a steady stream of reads that never happens by itself: the writer
// starts the WAL over only when no reader is reading any part of it, and
// with readers overlapping one another there always is one, so the WAL
// grows for as long as the load lasts (2.4 GB in five minutes of the
// benchmark's mix), without bound. Once a checkpoint finds the WAL past
// restartAt frames, long is set, and the group committer runs a RESTART
// checkpoint on the writer between two groups (restart): it copies the
// little the last PASSIVE one left, then waits, a few milliseconds at
// most, for the readers still reading the WAL to finish. Readers that
// start meanwhile read the database file alone, so the wait ends, and the
// next write starts the WAL over from its first frame: its file stops
// growing.
type checkpointer struct {
	db        *sql.DB
	interval  time.Duration
	quit      chan struct{}
	done      sync.WaitGroup
	closing   sync.Once
	restartAt atomic.Int64 // restartFrames; tests lower it
	long      atomic.Bool  // the WAL is past restartAt
	restarts  atomic.Int64 // restarts run, so that a checkpoint begun before one does not ask for another
}

// restartFrames is the WAL's length, in frames (pages), past which the
// writer restarts it: 32,768 frames, 128 MiB at SQLite's 4 KiB pages,
// about 15 seconds of writes under full load. A restart holds the writer
// for the copy and sync of what the last PASSIVE checkpoint left, and for
// the readers to finish: a few milliseconds on a quiet machine, tens on a
// busy one, so restarts are kept rare; the WAL's length costs readers
// nothing while the PASSIVE checkpoints keep up, as they find only the
// frames past the last checkpoint.
const restartFrames = 32768

// restartLag is how many frames a PASSIVE checkpoint may have left
// uncopied for the writer to restart the WAL after it: the RESTART copies
// them (and what the writer added since) on the writer, so they are kept
// few; under a steady load most PASSIVE checkpoints leave only the frames
// of the reads in progress.
const restartLag = 256

// restartWait bounds the writer's wait for the readers of the WAL, in
// milliseconds (its busy timeout while it restarts). A reader that holds
// its snapshot longer (a streamed export) makes the restart give up; the
// writer tries again after a later checkpoint.
const restartWait = 20

// checkpointInterval is how often the WAL is checkpointed: at a few
// thousand writes a second the WAL grows by a few hundred pages between
// checkpoints, less than the 1,000 of SQLite's automatic checkpoint.
const checkpointInterval = 100 * time.Millisecond

func newCheckpointer(db *sql.DB, interval time.Duration) *checkpointer {
	c := &checkpointer{db: db, interval: interval, quit: make(chan struct{})}
	c.restartAt.Store(restartFrames)
	c.done.Add(1)
	go c.run()
	return c
}

func (c *checkpointer) run() {
	defer c.done.Done()
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-t.C:
			c.checkpoint()
		}
	}
}

// checkpoint runs one PASSIVE checkpoint. A failure (the database busy in
// a way a PASSIVE checkpoint does not wait for) is retried at the next
// tick; the WAL keeps every commit meanwhile.
func (c *checkpointer) checkpoint() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var busy, log, done int64
	gen := c.restarts.Load()
	if err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done); err == nil &&
		c.restarts.Load() == gen {
		c.long.Store(log > c.restartAt.Load() && log-done <= restartLag)
	}
}

// restart runs a RESTART checkpoint on the writer's connection db, outside
// any transaction, when the last checkpoint found the WAL long, waiting at
// most restartWait for its readers. It is best effort: on failure the WAL
// keeps every commit, and a later checkpoint sets long again.
func (c *checkpointer) restart(db *gorm.DB) {
	if c == nil || !c.long.Swap(false) {
		return
	}
	if err := db.Exec("PRAGMA busy_timeout = " + strconv.Itoa(restartWait)).Error; err != nil {
		return
	}
	var busy, log, done int64
	_ = db.Raw("PRAGMA wal_checkpoint(RESTART)").Row().Scan(&busy, &log, &done)
	c.restarts.Add(1)
	_ = db.Exec("PRAGMA busy_timeout = 10000").Error
}

// close stops the goroutine after a last checkpoint; closing again does
// nothing (a store may be closed twice).
func (c *checkpointer) close() {
	c.closing.Do(func() {
		close(c.quit)
		c.done.Wait()
		c.checkpoint()
	})
}
