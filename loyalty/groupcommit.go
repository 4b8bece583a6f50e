package loyalty

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"gorm.io/gorm"
)

// SQLite group commit.
//
// SQLite has one writer, so every write transaction of the engine runs on
// one connection, one after another, and each pays for its own BEGIN,
// COMMIT and write of the pages it dirtied to the WAL. One committer runs
// the store's writes on that connection: writes queue for it, and it runs
// whatever has queued meanwhile in one IMMEDIATE transaction, each write
// inside a savepoint of its own, then commits once. A write that fails is
// rolled back to its savepoint alone; the others keep their effects. Every
// write is answered only after the group's COMMIT has returned, so an
// acknowledged write is durable exactly as it was with a transaction of its
// own, and a failed COMMIT fails every write of the group, whose effects
// (idempotency claims included) are then all gone, so each may be retried.
//
// Within a group the writes run in order, each seeing the ones before it:
// what serial transactions would have seen. Effects outside the database
// wait for the COMMIT through afterCommit.

// maxGroup bounds the writes of one group: a group holds its writers'
// answers until the last of them has run.
const maxGroup = 64

// groupCommitter runs the SQLite writes; see the comment above.
type groupCommitter struct {
	db      *gorm.DB      // the writer: one connection
	ckpt    *checkpointer // restarts the WAL between groups when long; nil in tests
	bulk    bool          // the writer is set up for a write alone (setBulk)
	nice    int           // asked of the writer's thread (WriterNice)
	prio    writerPrio    // the thread's priority; set once ready is closed
	ready   chan struct{}
	queue   chan *writeReq
	quit    chan struct{}
	stopped chan struct{}
	// beforeCommit, set by tests, runs just before each COMMIT; an error
	// it returns is taken as the COMMIT's own failure.
	beforeCommit func() error
}

// writeReq is one write waiting for, or run by, the committer.
type writeReq struct {
	ctx context.Context
	fn  func(tx *gorm.DB) error
	// alone runs the write in a transaction of its own: a set-based job
	// that may run long should not hold other writers' answers.
	alone bool
	state atomic.Int32     // queued, started or abandoned
	hooks txHooks          // run by the writer after the COMMIT
	done  chan writeResult // buffered: the committer never waits on it
}

const (
	reqQueued int32 = iota
	reqStarted
	reqAbandoned
)

type writeResult struct {
	err      error
	panicked any // the panic of fn, raised again in the writer's goroutine
	didPanic bool
}

// errStoreClosed answers writes that arrive after Close.
var errStoreClosed = errors.New("store is closed")

func newGroupCommitter(db *gorm.DB, ckpt *checkpointer, nice int) *groupCommitter {
	g := &groupCommitter{db: db, ckpt: ckpt, nice: nice, ready: make(chan struct{}), queue: make(chan *writeReq), quit: make(chan struct{}), stopped: make(chan struct{})}
	go g.run()
	return g
}

// close stops the committer after the group it is running.
func (g *groupCommitter) close() {
	select {
	case <-g.quit:
	default:
		close(g.quit)
	}
	<-g.stopped
}

// do runs fn in the next group and returns once that group has committed
// (nil) or fn or the COMMIT failed. A write whose ctx ends before it
// started is not run; once started in a shared transaction it completes
// with its group, and its writer is answered only after the COMMIT.
func (g *groupCommitter) do(ctx context.Context, alone bool, fn func(tx *gorm.DB) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := newWriteReq(ctx, alone, fn)
	select {
	case g.queue <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-g.quit:
		return errStoreClosed
	}
	return r.wait()
}

func newWriteReq(ctx context.Context, alone bool, fn func(tx *gorm.DB) error) *writeReq {
	return &writeReq{ctx: ctx, fn: fn, alone: alone, done: make(chan writeResult, 1)}
}

// wait returns r's outcome once its group has committed or failed, or
// ctx's error if r is given up before it started. A panic of fn is raised
// again here, in the writer's goroutine, as it was before group commit; the
// committer carries on.
func (r *writeReq) wait() error {
	var res writeResult
	select {
	case res = <-r.done:
	case <-r.ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return r.ctx.Err()
		}
		res = <-r.done
	}
	if res.didPanic {
		panic(res.panicked)
	}
	if res.err == nil {
		r.hooks.run()
	}
	return res.err
}

func (r *writeReq) finish(res writeResult) { r.done <- res }

func (g *groupCommitter) run() {
	defer close(g.stopped)
	g.prio = lockWriterThread(g.nice)
	close(g.ready)
	var held *writeReq // taken from the queue for the next group
	for {
		first := held
		held = nil
		if first == nil {
			select {
			case first = <-g.queue:
			case <-g.quit:
				return
			}
		}
		group := []*writeReq{first}
		// Take what has queued, without waiting for more: a write that
		// arrives alone is committed at once.
	fill:
		for !first.alone && len(group) < maxGroup {
			select {
			case r := <-g.queue:
				if r.alone {
					held = r
					break fill
				}
				group = append(group, r)
			default:
				break fill
			}
		}
		for len(group) > 0 {
			group = g.commit(group)
		}
		g.ckpt.restart(g.db)
	}
}

// commit runs group in one transaction and answers each of its writes.
// It returns the writes to run again: those that had succeeded in a
// transaction that a later write's failure aborted as a whole (SQLite
// rolls back the transaction on a few errors, such as a full disk), none
// of them yet answered. The write that caused it is answered with its
// error, so each round is smaller.
func (g *groupCommitter) commit(group []*writeReq) (again []*writeReq) {
	g.setBulk(group[0].alone)
	tx := g.db.WithContext(context.Background()).Begin()
	if tx.Error != nil {
		err := fmt.Errorf("begin: %w", tx.Error)
		for _, r := range group {
			if r.start() {
				r.finish(writeResult{err: err})
			}
		}
		return nil
	}
	ok := group[:0:0]
	for i, r := range group {
		if !r.start() {
			continue
		}
		res, aborted := g.runOne(tx, r, len(group) > 1)
		if res.err == nil && !res.didPanic {
			ok = append(ok, r)
			continue
		}
		r.finish(res)
		if aborted {
			_ = tx.Rollback().Error
			for _, o := range ok {
				o.hooks = nil
			}
			return append(ok, group[i+1:]...)
		}
	}
	if len(ok) == 0 {
		_ = tx.Rollback().Error
		return nil
	}
	var err error
	if g.beforeCommit != nil {
		if err = g.beforeCommit(); err != nil {
			_ = tx.Rollback().Error
		}
	}
	if err == nil {
		err = tx.Commit().Error
	}
	if err != nil {
		// SQLite has rolled back a transaction whose COMMIT failed, or
		// Rollback above has.
		err = fmt.Errorf("commit: %w", err)
		for _, r := range ok {
			r.finish(writeResult{err: err})
		}
		return nil
	}
	for _, r := range ok {
		r.finish(writeResult{})
	}
	return nil
}

// setBulk sets the writer up for a write alone in its transaction (bulk)
// or for a group, when it is not set up so already: before the write
// runs, never after its answer, so that a write's answer is the last the
// writer does for it. The writer keeps its savepoint and statement
// journals in memory (temp_store in Open), which a group's savepoints
// write page by page. A set-based job may touch much of the database:
// its journals go to a file, as SQLite's default has them. Failing to
// switch costs only memory or speed, not correctness.
//
// A write alone also spills its dirty pages once the cache is full
// (bulkSpill) rather than holding up to 32 MiB of them (writerSpill, for a
// till's batch, whose pages change again before its commit): an import's
// chunks stream through the tables, and the larger cache stayed the
// process's memory for good.
func (g *groupCommitter) setBulk(bulk bool) {
	if g.bulk == bulk {
		return
	}
	g.bulk = bulk
	g.prio.set(!bulk)
	store, spill := "MEMORY", writerSpill
	if bulk {
		store, spill = "FILE", bulkSpill
	}
	_ = g.db.Exec("PRAGMA temp_store = " + store).Error
	_ = g.db.Exec("PRAGMA cache_spill = " + strconv.Itoa(spill)).Error
}

// start marks r as run; false if its writer has given up waiting.
func (r *writeReq) start() bool {
	return r.state.CompareAndSwap(reqQueued, reqStarted) || r.state.Load() == reqStarted
}

// runOne runs r inside a savepoint of tx, which it releases on success and
// rolls back to on failure; aborted reports that tx itself is gone. A
// write alone in its group needs no savepoint: its failure rolls back tx.
func (g *groupCommitter) runOne(tx *gorm.DB, r *writeReq, savepoint bool) (res writeResult, aborted bool) {
	r.hooks = nil
	if !savepoint {
		res = r.call(r.ctx, tx)
		return res, res.err != nil || res.didPanic
	}
	if err := exec(tx, "SAVEPOINT w"); err != nil {
		return writeResult{err: fmt.Errorf("savepoint: %w", err)}, true
	}
	res = r.call(context.WithoutCancel(r.ctx), tx)
	if res.err == nil && !res.didPanic {
		if err := exec(tx, "RELEASE w"); err != nil {
			res.err = fmt.Errorf("release savepoint: %w", err)
		} else {
			return res, false
		}
	}
	r.hooks = nil
	// ROLLBACK TO keeps the savepoint open; RELEASE ends it. Either failing
	// means the transaction is no longer there to roll back into.
	if err := exec(tx, "ROLLBACK TO w"); err != nil {
		return res, true
	}
	if err := exec(tx, "RELEASE w"); err != nil {
		return res, true
	}
	return res, false
}

// exec runs a statement of the committer's own on tx, past GORM.
func exec(tx *gorm.DB, query string) error {
	_, err := tx.Statement.ConnPool.ExecContext(context.Background(), query)
	return err
}

// call runs r.fn on tx with ctx. In a shared transaction ctx must not be
// r's own, cancellable one: on SQLite an interrupted write statement rolls
// back the whole transaction, the group's; a started write completes with
// its group. A write alone in its transaction keeps its cancellation, as
// a long job should.
func (r *writeReq) call(ctx context.Context, tx *gorm.DB) (res writeResult) {
	defer func() {
		if p := recover(); p != nil {
			res = writeResult{panicked: p, didPanic: true}
		}
	}()
	ctx = context.WithValue(ctx, txHooksKey{}, &r.hooks)
	return writeResult{err: r.fn(tx.WithContext(ctx))}
}

// txHooks are what a write does once its transaction has committed.
type txHooks []func()

type txHooksKey struct{}

func (h txHooks) run() {
	for _, f := range h {
		f()
	}
}

// afterCommit runs f once the write transaction tx belongs to has
// committed, and never if it rolls back: in-memory state (cached settings,
// metrics) must not show what the database may yet not keep. Outside a
// write of the store it runs f now.
func afterCommit(tx *gorm.DB, f func()) {
	if h, ok := tx.Statement.Context.Value(txHooksKey{}).(*txHooks); ok {
		*h = append(*h, f)
		return
	}
	f()
}
