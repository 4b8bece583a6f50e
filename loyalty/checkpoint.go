package loyalty

import (
	"context"
	"database/sql"
	"sync"
	"time"
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
type checkpointer struct {
	db       *sql.DB
	interval time.Duration
	quit     chan struct{}
	done     sync.WaitGroup
	closing  sync.Once
}

// checkpointInterval is how often the WAL is checkpointed: at a few
// thousand writes a second the WAL grows by a few hundred pages between
// checkpoints, less than the 1,000 of SQLite's automatic checkpoint.
const checkpointInterval = 100 * time.Millisecond

func newCheckpointer(db *sql.DB, interval time.Duration) *checkpointer {
	c := &checkpointer{db: db, interval: interval, quit: make(chan struct{})}
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
	_ = c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done)
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
