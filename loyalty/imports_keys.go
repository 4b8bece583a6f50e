package loyalty

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"unsafe"

	"github.com/bits-and-blooms/bloom/v3"
)

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
//
// A run that reaches keyRunMax keys leaves memory for a temporary file
// (keyDisk), so that what the set keeps in memory does not grow with the
// file: under keyRunMax keys in runs (8 MB), the disk runs' fences (1/512
// of their size) and a Bloom filter of a fixed 16 MB. A key the filter has
// not seen (nearly every new key) is told without reading the file.
type keySet struct {
	recent map[uint64]struct{}
	runs   []keyRun
	disk   *keyDisk
	// spillAt is the run length that goes to disk (keyRunMax; less in
	// tests).
	spillAt int
	// err is the first error of the disk runs: the set may then miss a
	// key, and its import fails.
	err error
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
	if k.disk != nil {
		seen, err := k.disk.has(h)
		if err != nil && k.err == nil {
			k.err = err
		}
		if seen {
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
	spillAt := k.spillAt
	if spillAt == 0 {
		spillAt = keyRunMax
	}
	if n := len(k.runs); len(k.runs[n-1].keys) >= spillAt {
		if err := k.spill(k.runs[n-1]); err != nil && k.err == nil {
			k.err = err
		}
		k.runs[n-1].free()
		k.runs = k.runs[:n-1]
	}
}

// spill moves a run to disk.
func (k *keySet) spill(r keyRun) error {
	if k.disk == nil {
		d, err := newKeyDisk()
		if err != nil {
			return err
		}
		k.disk = d
	}
	return k.disk.add(r.keys)
}

// release gives back the runs' memory; the set is empty after it.
func (k *keySet) release() {
	for _, r := range k.runs {
		r.free()
	}
	k.runs, k.recent = nil, nil
	if k.disk != nil {
		k.disk.close()
		k.disk = nil
	}
}

const (
	// keyBlock is the keys of a disk run read to look for one (4 KiB).
	keyBlock = 512
	// keyFilterWords is the size of the disk runs' Bloom filter in 64-bit
	// words (16 MiB), keyFilterHashes its hash functions: one key in
	// 7,000 is looked for on disk after 5 M keys, one in 70 after 15 M
	// (a 1 GiB file); a looked-for key costs a block read per run.
	keyFilterWords  = 1 << 21
	keyFilterHashes = 5
)

// keyDisk is the runs of a keySet in a temporary file, the name of which
// is removed at once where the system allows (the file goes with the
// process), with the first key of every block in memory and a Bloom filter
// of their keys.
type keyDisk struct {
	f      *os.File
	name   string // to remove at close; "" once removed
	end    int64
	runs   []diskRun
	filter *bloom.BloomFilter
	words  keyRun // the filter's bits
	block  []uint64
	hb     [8]byte
}

type diskRun struct {
	off   int64    // of its first key in the file
	n     int      // its keys
	fence []uint64 // the first key of each of its blocks
}

func newKeyDisk() (*keyDisk, error) {
	f, err := os.CreateTemp("", "loyalty-import-keys-*")
	if err != nil {
		return nil, fmt.Errorf("keys of the file on disk: %w", err)
	}
	d := &keyDisk{f: f, name: f.Name(), block: make([]uint64, keyBlock)}
	if os.Remove(d.name) == nil {
		d.name = ""
	}
	d.words = newKeyRun(keyFilterWords)
	d.words.keys = d.words.keys[:keyFilterWords] // zero, as mapped or made
	d.filter = bloom.FromWithM(d.words.keys, keyFilterWords*64, keyFilterHashes)
	return d, nil
}

// asBytes is the memory of keys as bytes (the file holds them in the
// machine's order: it is read back by the process that wrote it).
func asBytes(keys []uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(keys))), len(keys)*8)
}

// add writes a sorted run to the file.
func (d *keyDisk) add(keys []uint64) error {
	if _, err := d.f.WriteAt(asBytes(keys), d.end); err != nil {
		return fmt.Errorf("keys of the file on disk: %w", err)
	}
	r := diskRun{off: d.end, n: len(keys), fence: make([]uint64, 0, (len(keys)+keyBlock-1)/keyBlock)}
	for i, h := range keys {
		if i%keyBlock == 0 {
			r.fence = append(r.fence, h)
		}
		binary.LittleEndian.PutUint64(d.hb[:], h)
		d.filter.Add(d.hb[:])
	}
	d.runs = append(d.runs, r)
	d.end += int64(len(keys)) * 8
	return nil
}

// has reports whether h is in a disk run.
func (d *keyDisk) has(h uint64) (bool, error) {
	binary.LittleEndian.PutUint64(d.hb[:], h)
	if !d.filter.Test(d.hb[:]) {
		return false, nil
	}
	for _, r := range d.runs {
		// The block whose first key is the last at or below h.
		i, found := slices.BinarySearch(r.fence, h)
		if found {
			return true, nil
		}
		if i == 0 {
			continue
		}
		i--
		n := min(keyBlock, r.n-i*keyBlock)
		b := d.block[:n]
		if _, err := d.f.ReadAt(asBytes(b), r.off+int64(i*keyBlock)*8); err != nil {
			return false, fmt.Errorf("keys of the file on disk: %w", err)
		}
		if _, ok := slices.BinarySearch(b, h); ok {
			return true, nil
		}
	}
	return false, nil
}

func (d *keyDisk) close() {
	_ = d.f.Close()
	if d.name != "" {
		_ = os.Remove(d.name)
	}
	d.words.free()
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
