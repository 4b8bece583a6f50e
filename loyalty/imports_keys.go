package loyalty

import "slices"

// keySet is the set of the 8-byte hashes of the keys an import has read,
// which tells a key repeated within its file. A Go map of uint64 costs
// about 30 bytes a key (144 MB live for 5 million keys, measured), which
// would make the import's memory grow with its file far beyond the keys'
// own 8 bytes; keySet keeps close to those 8 bytes (40 MB for 5 million):
// the newest keys in a small map, the others in sorted runs searched by
// bisection. A full map becomes a run; runs merge while the newest is at
// least as long as the one before (so there are about log₂ of them), up to
// keyRunMax keys, so that a merge's copy is bounded too.
//
// The runs live outside the Go heap where the platform allows
// (keyrun_unix.go): on the heap, the collector lets the heap grow to twice
// what is live before it collects, and the runs, most of what an import
// keeps, doubled the import's memory with their 8 bytes a key (a 5 M-row
// SQLite import peaked at 240 MB of RSS). release gives them back; the set
// is not used after it.
type keySet struct {
	recent map[uint64]struct{}
	runs   []keyRun
}

const (
	// keyRecentMax is the keys the map holds before it becomes a run.
	keyRecentMax = 4096
	// keyRunMax bounds the keys of a run made by merging (8 MB).
	keyRunMax = 1 << 20
)

// add reports whether h is in the set, and adds it.
func (k *keySet) add(h uint64) bool {
	if _, ok := k.recent[h]; ok {
		return true
	}
	for _, r := range k.runs {
		if _, ok := slices.BinarySearch(r.keys, h); ok {
			return true
		}
	}
	if k.recent == nil {
		k.recent = make(map[uint64]struct{}, keyRecentMax)
	}
	k.recent[h] = struct{}{}
	if len(k.recent) >= keyRecentMax {
		k.seal()
	}
	return false
}

// seal moves the map's keys into a run and merges the runs.
func (k *keySet) seal() {
	run := newKeyRun(len(k.recent))
	for h := range k.recent {
		run.keys = append(run.keys, h)
	}
	slices.Sort(run.keys)
	clear(k.recent)
	k.runs = append(k.runs, run)
	for n := len(k.runs); n >= 2; n = len(k.runs) {
		a, b := k.runs[n-2], k.runs[n-1]
		if len(b.keys) < len(a.keys) || len(a.keys)+len(b.keys) > keyRunMax {
			break
		}
		m := newKeyRun(len(a.keys) + len(b.keys))
		m.keys = mergeSorted(m.keys, a.keys, b.keys)
		a.free()
		b.free()
		k.runs = append(k.runs[:n-2], m)
	}
}

// release gives back the runs' memory; the set is empty after it.
func (k *keySet) release() {
	for _, r := range k.runs {
		r.free()
	}
	k.runs, k.recent = nil, nil
}

// mergeSorted appends to out the sorted union of the sorted a and b, which
// share no element.
func mergeSorted(out, a, b []uint64) []uint64 {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i] < b[j] {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}
