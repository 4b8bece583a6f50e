//go:build !linux

package loyalty

import "errors"

// lockWriterThread does nothing where threads cannot be given priorities
// of their own (see writerprio_linux.go).
func lockWriterThread(nice int) writerPrio {
	if nice >= 0 {
		return writerPrio{}
	}
	return writerPrio{err: errors.New("a thread's priority is set on Linux only")}
}

func setThreadNice(tid, n int) error { return nil }
