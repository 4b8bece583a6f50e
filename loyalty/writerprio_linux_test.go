package loyalty_test

import (
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// threadNice is the calling thread's nice value and id, read inside a
// write: the writer's own.
func threadNice(t *testing.T, s *loyalty.Store, alone bool) (nice, tid int) {
	t.Helper()
	err := loyalty.OnWriter(context.Background(), s, alone, func(*gorm.DB) error {
		tid = syscall.Gettid()
		p, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
		nice = 20 - p // the raw syscall's answer
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return nice, tid
}

func processNice(t *testing.T) int {
	t.Helper()
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	return 20 - p
}

// Till writes run on the writer's thread at the nice value asked for;
// a write alone in its transaction (a job's, an import's) at the
// process's own, and the next till write at the raised one again.
func TestWriterPriority(t *testing.T) {
	base := processNice(t)
	if base <= -20 {
		t.Skip("the process already runs at the highest priority")
	}
	want := max(-20, base-5)
	s, err := loyalty.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "loyalty.db"), loyalty.WriterNice(want))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nice, err := s.WriterPriority()
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		t.Skipf("this process may not raise a thread's priority: %v", err)
	}
	if err != nil || nice != want {
		t.Fatalf("WriterPriority() = %d, %v; want %d, nil", nice, err, want)
	}
	for i, step := range []struct {
		alone bool
		want  int
	}{{false, want}, {false, want}, {true, base}, {true, base}, {false, want}, {true, base}} {
		got, tid := threadNice(t, s, step.alone)
		if got != step.want {
			t.Errorf("write %d (alone %v): nice %d, want %d", i, step.alone, got, step.want)
		}
		if _, tid0 := threadNice(t, s, false); tid != tid0 {
			t.Errorf("write %d ran on thread %d, the writer's is %d", i, tid, tid0)
		}
	}
	if got := processNice(t); got != base {
		t.Errorf("the process's own nice value moved from %d to %d", base, got)
	}
}

// Without WriterNice the SQLite writer keeps the process's
// priority and reports nothing.
func TestWriterPriorityOff(t *testing.T) {
	base := processNice(t)
	s, err := loyalty.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "loyalty.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if nice, err := s.WriterPriority(); nice != 0 || err != nil {
		t.Fatalf("WriterPriority() = %d, %v; want 0, nil", nice, err)
	}
	for _, alone := range []bool{false, true} {
		if got, _ := threadNice(t, s, alone); got != base {
			t.Errorf("alone %v: nice %d, want the process's %d", alone, got, base)
		}
	}
}
