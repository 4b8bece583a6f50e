package loyalty_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// probeStore opens a store with a table gc_probe for writes to leave marks in.
func probeStore(t *testing.T, dialect string) *loyalty.Store {
	t.Helper()
	s := loyaltytest.MustOpen(t, dialect)
	if err := s.DB().Exec("CREATE TABLE gc_probe (id INTEGER PRIMARY KEY, note TEXT NOT NULL)").Error; err != nil {
		t.Fatal(err)
	}
	return s
}

// probeIDs is every id in gc_probe, in order.
func probeIDs(t *testing.T, s *loyalty.Store) []int {
	t.Helper()
	var ids []int
	if err := s.DB().Raw("SELECT id FROM gc_probe ORDER BY id").Scan(&ids).Error; err != nil {
		t.Fatal(err)
	}
	return ids
}

func mark(tx *gorm.DB, id int) error {
	return tx.Exec("INSERT INTO gc_probe (id, note) VALUES (?, ?)", id, fmt.Sprint("write ", id)).Error
}

var errRefused = errors.New("refused")

// outcome waits for a queued write, turning a panic into an error.
func outcome(q *loyalty.Queued) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return q.Wait()
}

func TestGroupCommitRollsBackOnlyTheFailingWrite(t *testing.T) {
	s := probeStore(t, loyalty.SQLite)
	ctx := context.Background()
	var hooks sync.Map // id → ran
	var seen []int     // what write 9 saw of the ones before it
	qs := make([]*loyalty.Queued, 10)
	for i := range qs {
		qs[i] = loyalty.NewQueued(ctx, func(tx *gorm.DB) error {
			if err := mark(tx, i); err != nil {
				return err
			}
			loyalty.AfterCommit(tx, func() { hooks.Store(i, true) })
			switch i {
			case 3, 7:
				return errRefused
			case 5:
				panic("write 5 fails")
			case 6:
				// A constraint error after a write of its own: the first
				// row goes too.
				if err := mark(tx, 100); err != nil {
					return err
				}
				return mark(tx, 0)
			case 9:
				return tx.Raw("SELECT id FROM gc_probe ORDER BY id").Scan(&seen).Error
			}
			return nil
		})
	}
	loyalty.CommitGroup(s, qs...)
	for i, q := range qs {
		err := outcome(q)
		_, hooked := hooks.Load(i)
		switch i {
		case 3, 7:
			if !errors.Is(err, errRefused) {
				t.Errorf("write %d: %v, want its own error", i, err)
			}
		case 5:
			if err == nil || err.Error() != "panic: write 5 fails" {
				t.Errorf("write 5: %v, want its panic raised to its writer", err)
			}
		case 6:
			if !errors.Is(err, gorm.ErrDuplicatedKey) {
				t.Errorf("write 6: %v, want a duplicate key", err)
			}
		default:
			if err != nil {
				t.Errorf("write %d: %v", i, err)
			}
		}
		if hooked != (err == nil) {
			t.Errorf("write %d (err %v): after-commit hook ran = %v", i, err, hooked)
		}
	}
	want := []int{0, 1, 2, 4, 8, 9}
	if got := probeIDs(t, s); !slices.Equal(got, want) {
		t.Errorf("committed %v, want %v", got, want)
	}
	if want := []int{0, 1, 2, 4, 8, 9}; !slices.Equal(seen, want) {
		t.Errorf("write 9 saw %v, want the writes before it that stood, and its own: %v", seen, want)
	}
}

func TestGroupCommitFailureFailsTheWholeGroup(t *testing.T) {
	s := probeStore(t, loyalty.SQLite)
	ctx := context.Background()
	errDisk := errors.New("disk I/O error")
	loyalty.FailCommits(s, errDisk)
	var hooked atomic.Int32
	qs := make([]*loyalty.Queued, 5)
	for i := range qs {
		qs[i] = loyalty.NewQueued(ctx, func(tx *gorm.DB) error {
			loyalty.AfterCommit(tx, func() { hooked.Add(1) })
			return mark(tx, i)
		})
	}
	loyalty.CommitGroup(s, qs...)
	for i, q := range qs {
		if err := q.Wait(); !errors.Is(err, errDisk) {
			t.Errorf("write %d: %v, want the COMMIT's failure", i, err)
		}
	}
	if got := probeIDs(t, s); len(got) != 0 {
		t.Errorf("a failed COMMIT left %v", got)
	}
	if n := hooked.Load(); n != 0 {
		t.Errorf("%d after-commit hooks ran for a failed COMMIT", n)
	}

	// Every write of the failed group may be retried, and then counts once.
	loyalty.FailCommits(s, nil)
	for i := range qs {
		qs[i] = loyalty.NewQueued(ctx, func(tx *gorm.DB) error { return mark(tx, i) })
	}
	loyalty.CommitGroup(s, qs...)
	for i, q := range qs {
		if err := q.Wait(); err != nil {
			t.Errorf("retry of write %d: %v", i, err)
		}
	}
	if got, want := probeIDs(t, s), []int{0, 1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("after the retries %v, want %v", got, want)
	}
}

func TestGroupCommitSkipsAWriteGivenUpBeforeItStarted(t *testing.T) {
	s := probeStore(t, loyalty.SQLite)
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan struct{})
	first := loyalty.NewQueued(context.Background(), func(tx *gorm.DB) error {
		<-gaveUp // the second write is given up while this one runs
		return mark(tx, 1)
	})
	var ran atomic.Bool
	second := loyalty.NewQueued(ctx, func(tx *gorm.DB) error {
		ran.Store(true)
		return mark(tx, 2)
	})
	third := loyalty.NewQueued(context.Background(), func(tx *gorm.DB) error { return mark(tx, 3) })
	done := make(chan struct{})
	go func() {
		defer close(done)
		loyalty.CommitGroup(s, first, second, third)
	}()
	cancel()
	if err := second.Wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("given-up write: %v, want context.Canceled", err)
	}
	close(gaveUp)
	<-done
	for i, q := range []*loyalty.Queued{first, third} {
		if err := q.Wait(); err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	if ran.Load() {
		t.Error("a write given up before it started was run")
	}
	if got, want := probeIDs(t, s), []int{1, 3}; !slices.Equal(got, want) {
		t.Errorf("committed %v, want %v", got, want)
	}
}

// A write can end the shared transaction itself (SQLite does, on a full disk
// or an I/O error); the writes before it in the group lost their effects
// with it and, not yet answered, run again in a new transaction.
func TestGroupCommitRerunsWritesOfAnAbortedTransaction(t *testing.T) {
	for _, ends := range []struct {
		name string
		fail bool
	}{{"FailingWrite", true}, {"SucceedingWrite", false}} {
		t.Run(ends.name, func(t *testing.T) {
			s := probeStore(t, loyalty.SQLite)
			ctx := context.Background()
			var runs [5]atomic.Int32
			qs := make([]*loyalty.Queued, 5)
			for i := range qs {
				qs[i] = loyalty.NewQueued(ctx, func(tx *gorm.DB) error {
					runs[i].Add(1)
					if err := mark(tx, i); err != nil {
						return err
					}
					if i == 2 {
						if err := tx.Exec("ROLLBACK").Error; err != nil {
							return err
						}
						if ends.fail {
							return errRefused
						}
					}
					return nil
				})
			}
			loyalty.CommitGroup(s, qs...)
			for i, q := range qs {
				err := q.Wait()
				if (i == 2) != (err != nil) {
					t.Errorf("write %d: %v", i, err)
				}
			}
			if got, want := probeIDs(t, s), []int{0, 1, 3, 4}; !slices.Equal(got, want) {
				t.Errorf("committed %v, want %v", got, want)
			}
			for i, want := range []int32{2, 2, 1, 1, 1} {
				if got := runs[i].Load(); got != want {
					t.Errorf("write %d ran %d times, want %d", i, got, want)
				}
			}
		})
	}
}

// Many writes at once, some failing and one panicking, through the store's
// ordinary write path: on SQLite they share transactions.
func TestConcurrentWritesFailAlone(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		s := probeStore(t, dialect)
		svc := loyalty.NewService(s)
		ctx := context.Background()
		const n = 200
		var hooked [n]atomic.Int32
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					if p := recover(); p != nil {
						errs[i] = fmt.Errorf("panic: %v", p)
					}
				}()
				_, _, errs[i] = loyalty.Write(ctx, svc, loyalty.IdempotencyKey{}, func(tx *loyalty.Tx) (int, error) {
					if err := mark(tx.DB, i); err != nil {
						return 0, err
					}
					loyalty.AfterCommit(tx.DB, func() { hooked[i].Add(1) })
					switch {
					case i%10 == 3:
						return 0, errRefused
					case i == 77:
						panic("write 77 fails")
					}
					return i, nil
				})
			}()
		}
		wg.Wait()
		var want []int
		for i, err := range errs {
			switch {
			case i%10 == 3:
				if !errors.Is(err, errRefused) {
					t.Errorf("write %d: %v, want its own error", i, err)
				}
			case i == 77:
				if err == nil || err.Error() != "panic: write 77 fails" {
					t.Errorf("write 77: %v, want its panic", err)
				}
			default:
				if err != nil {
					t.Errorf("write %d: %v", i, err)
				}
				want = append(want, i)
			}
			if h, ok := hooked[i].Load(), err == nil; (h == 1) != ok || h > 1 {
				t.Errorf("write %d (err %v): after-commit hook ran %d times", i, err, h)
			}
		}
		if got := probeIDs(t, s); !slices.Equal(got, want) {
			t.Errorf("committed %d writes, want %d: %v", len(got), len(want), got)
		}
	})
}

// The settings a write reads after changing them are its own, uncommitted:
// they must not become the store's cached settings unless it commits, since
// a rolled-back change's config_version is given again to the next change.
func TestRolledBackSettingsAreNotCached(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		s := loyaltytest.MustOpen(t, dialect)
		svc := loyalty.NewService(s)
		ctx := context.Background()
		rename := func(name string, fail bool) error {
			_, _, err := loyalty.Write(ctx, svc, loyalty.IdempotencyKey{}, func(tx *loyalty.Tx) (int, error) {
				if err := tx.DB.Exec("UPDATE program SET name = ? WHERE id = 1", name).Error; err != nil {
					return 0, err
				}
				p, err := tx.Program()
				if err != nil {
					return 0, err
				}
				if p.Name != name {
					return 0, fmt.Errorf("the write sees %q, not its own %q", p.Name, name)
				}
				if fail {
					return 0, errRefused
				}
				return 0, nil
			})
			return err
		}
		if err := rename("Rolled Back", true); !errors.Is(err, errRefused) {
			t.Fatal(err)
		}
		if err := rename("Committed", false); err != nil {
			t.Fatal(err)
		}
		p, err := svc.Program(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != "Committed" {
			t.Errorf("program name %q, want the committed %q", p.Name, "Committed")
		}
	})
}
