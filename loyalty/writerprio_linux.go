package loyalty

import (
	"fmt"
	"runtime"
	"syscall"
)

// lockWriterThread locks the calling goroutine (the committer) to its
// thread and raises that thread to nice; see writerprio.go. The thread
// stays locked for the goroutine's life, and exits with it.
func lockWriterThread(nice int) writerPrio {
	if nice >= 0 {
		return writerPrio{}
	}
	runtime.LockOSThread()
	tid := syscall.Gettid()
	base, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	if err != nil {
		runtime.UnlockOSThread()
		return writerPrio{err: fmt.Errorf("read the writer's priority: %w", err)}
	}
	// The raw getpriority returns 20 - nice (the kernel's way of keeping
	// its answer positive); Go's wrapper hands that on as it is.
	base = 20 - base
	p := writerPrio{tid: tid, base: base, nice: min(nice, base)}
	if err := setThreadNice(tid, p.nice); err != nil {
		runtime.UnlockOSThread()
		return writerPrio{err: fmt.Errorf("raise the writer's priority to nice %d: %w", p.nice, err)}
	}
	p.raised = true
	return p
}

func setThreadNice(tid, n int) error {
	return syscall.Setpriority(syscall.PRIO_PROCESS, tid, n)
}
