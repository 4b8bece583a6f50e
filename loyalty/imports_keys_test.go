package loyalty

import (
	"math/rand/v2"
	"testing"
)

func TestImportKeySet(t *testing.T) {
	var k keySet
	defer k.release()
	r := rand.New(rand.NewPCG(1, 2))
	const n = 3*keyRecentMax*16 + 123
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = r.Uint64()
		if k.add(keys[i]) {
			t.Fatalf("key %d reported seen before it was added", i)
		}
	}
	for i, h := range keys {
		if !k.add(h) {
			t.Fatalf("key %d of %d not seen again", i, n)
		}
	}
	total := len(k.recent)
	for i, run := range k.runs {
		total += len(run.keys)
		if i > 0 && len(run.keys) > len(k.runs[i-1].keys) {
			t.Errorf("run %d has %d keys, more than the run before it (%d)", i, len(run.keys), len(k.runs[i-1].keys))
		}
	}
	if total != n {
		t.Errorf("the set holds %d keys, want %d", total, n)
	}
	if len(k.runs) > 12 {
		t.Errorf("%d runs for %d keys, want about log2 of the chunks", len(k.runs), n)
	}
}

// TestImportKeySetOnDisk: runs that reach spillAt keys go to the disk, and
// every key is still told, from memory or from the file.
func TestImportKeySetOnDisk(t *testing.T) {
	k := keySet{spillAt: 4 * keyRecentMax}
	defer k.release()
	r := rand.New(rand.NewPCG(3, 4))
	const n = 40*keyRecentMax + 77
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = r.Uint64()
		if k.add(keys[i]) {
			t.Fatalf("key %d reported seen before it was added", i)
		}
	}
	if k.err != nil {
		t.Fatal(k.err)
	}
	if k.disk == nil || len(k.disk.runs) != 10 {
		t.Fatalf("disk runs = %v, want 10 of %d keys", k.disk, 4*keyRecentMax)
	}
	inMemory := len(k.recent)
	for _, run := range k.runs {
		inMemory += len(run.keys)
	}
	if inMemory >= k.spillAt {
		t.Errorf("%d keys in memory, want fewer than %d", inMemory, k.spillAt)
	}
	for i, h := range keys {
		if !k.add(h) {
			t.Fatalf("key %d of %d not seen again", i, n)
		}
	}
	// Keys never added, among them neighbours of those on disk (which
	// read the same blocks), are not seen.
	for i := 0; i < 20000; i++ {
		h := r.Uint64()
		if i%2 == 0 {
			h = keys[i] + 1
		}
		if k.add(h) {
			t.Fatalf("key %#x reported seen before it was added", h)
		}
	}
	if k.err != nil {
		t.Fatal(k.err)
	}
}
