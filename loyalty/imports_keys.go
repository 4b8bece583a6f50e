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
type keySet struct {
	recent map[uint64]struct{}
	runs   [][]uint64
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
		if _, ok := slices.BinarySearch(r, h); ok {
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
	run := make([]uint64, 0, len(k.recent))
	for h := range k.recent {
		run = append(run, h)
	}
	slices.Sort(run)
	clear(k.recent)
	k.runs = append(k.runs, run)
	for n := len(k.runs); n >= 2; n = len(k.runs) {
		a, b := k.runs[n-2], k.runs[n-1]
		if len(b) < len(a) || len(a)+len(b) > keyRunMax {
			break
		}
		k.runs = append(k.runs[:n-2], mergeSorted(a, b))
	}
}

// mergeSorted is the sorted union of the sorted a and b, which share no
// element.
func mergeSorted(a, b []uint64) []uint64 {
	out := make([]uint64, 0, len(a)+len(b))
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
