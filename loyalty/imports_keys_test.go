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
