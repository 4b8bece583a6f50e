//go:build !unix

package loyalty

// keyRun is a sorted run of a keySet, on the Go heap where no anonymous
// mapping is at hand (see keyrun_unix.go).
type keyRun struct {
	keys []uint64
}

func newKeyRun(n int) keyRun { return keyRun{keys: make([]uint64, 0, n)} }

func (keyRun) free() {}
