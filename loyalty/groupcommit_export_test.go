package loyalty

import (
	"context"

	"gorm.io/gorm"
)

// Queued is a SQLite write for a group that a test composes itself.
type Queued struct{ r *writeReq }

// NewQueued builds a write of fn on behalf of a writer whose context is ctx.
func NewQueued(ctx context.Context, fn func(tx *gorm.DB) error) *Queued {
	return &Queued{r: newWriteReq(ctx, false, fn)}
}

// Wait is what the writer does after queueing: it returns the write's
// outcome once its group is done, or ctx's error if it gave up first.
func (q *Queued) Wait() error { return q.r.wait() }

// CommitGroup runs qs as one group of s's committer, the way the committer
// runs what it found queued, and returns once every write is answered.
// The committer's own groups and this one take turns on the writer.
func CommitGroup(s *Store, qs ...*Queued) {
	group := make([]*writeReq, len(qs))
	for i, q := range qs {
		group[i] = q.r
	}
	for len(group) > 0 {
		group = s.group.commit(group)
	}
}

// FailCommits makes every group's COMMIT of s fail with err until it is
// called again with nil. Call it only while no write is running.
func FailCommits(s *Store, err error) {
	if err == nil {
		s.group.beforeCommit = nil
		return
	}
	s.group.beforeCommit = func() error { return err }
}

// AfterCommit is afterCommit.
var AfterCommit = afterCommit

// WriteGroup runs fn as one write of s's committer (a group of its own or
// shared), as the store's writes do.
func WriteGroup(ctx context.Context, s *Store, fn func(tx *gorm.DB) error) error {
	return s.group.do(ctx, false, fn)
}

// ReadDB is s's pool of readers.
func ReadDB(s *Store) *gorm.DB { return s.r }

// SetRestartFrames sets the WAL length past which s's writer restarts it.
func SetRestartFrames(s *Store, n int64) { s.ckpt.restartAt.Store(n) }

// Checkpoint runs one of s's PASSIVE checkpoints now, as its ticker does.
func Checkpoint(s *Store) { s.ckpt.checkpoint() }

// OnWriter runs fn as one write of s's committer: alone in its
// transaction, as a job's or an import's write, or in a group, as a till's.
func OnWriter(ctx context.Context, s *Store, alone bool, fn func(tx *gorm.DB) error) error {
	return s.group.do(ctx, alone, fn)
}
