//go:build unix

package loyalty

import (
	"syscall"
	"unsafe"
)

// keyRun is a sorted run of a keySet, its keys in memory mapped for it
// alone (outside the Go heap) unless the mapping failed.
type keyRun struct {
	keys   []uint64 // empty, with room for the run's keys, when new
	mapped []byte   // the mapping holding keys; nil when keys are on the heap
}

// newKeyRun makes a run with room for n keys.
func newKeyRun(n int) keyRun {
	if n == 0 {
		return keyRun{}
	}
	b, err := syscall.Mmap(-1, 0, n*8, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return keyRun{keys: make([]uint64, 0, n)}
	}
	return keyRun{keys: unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), n)[:0], mapped: b}
}

// free unmaps the run's keys; neither r nor a slice of its keys is used
// after it.
func (r keyRun) free() {
	if r.mapped != nil {
		_ = syscall.Munmap(r.mapped)
	}
}
