package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// The serving engine's collector paces itself to a heap of gcHeapFloor
// rather than to twice the live heap while the live heap is small.
//
// The engine keeps little on the Go heap (about 5 MB between requests:
// its caches, pools and connections; 12–15 MB during an import, whose
// memory is mostly SQLite's and the key set's, off the Go heap), while a
// request allocates as it goes: a till's batch of 500 purchases allocates
// about 9 MB. At Go's default (GOGC=100) the heap's goal was 10 MB, and
// under a till's batches the collector ran every 20 ms, three times a
// batch, each time taking the second core from the writer and slowing it
// with its write barriers (233 collections in ten seconds; 17 with a goal
// of 64 MB).
//
// After each collection the tuner sets GOGC so that the next comes when
// the heap reaches gcHeapFloor: at most gcMaxPercent, and never under
// Go's default, so once the live heap passes half of gcHeapFloor the heap
// grows to twice what is live, as before. The floor is small: it is memory
// the process may hold on top of an import's (a floor of 64 MB took a
// 5 M-row SQLite import's peak RSS from 159 to 191 MB), and 32 MB already
// gives a till's batches most of the gain. The tuner reads the live heap
// the collection marked (runtime/metrics); a library tuner (bytedance's
// gctuner) reads HeapInuse, which right after a collection still holds
// the garbage not yet swept, and set the goal at half the floor asked.
// Setting GOGC or GOMEMLIMIT in the environment leaves the collector to
// them.
const (
	gcHeapFloor  = 32 << 20
	gcMaxPercent = 1000
)

// gcTuner sets GOGC after each collection (tune).
type gcTuner struct {
	live    []metrics.Sample
	percent int
}

// sentinel is an object nothing keeps, whose cleanup runs after the
// collection that finds it unreachable. It holds a pointer, so that it is
// not one of the tiny allocations that share a block (and a lifetime).
type sentinel struct{ _ *byte }

// tuneGC starts the tuner unless the environment sets the collector up;
// it reports whether it did.
func tuneGC() bool {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return false
	}
	t := &gcTuner{live: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}, percent: 100}
	t.arm()
	return true
}

func (t *gcTuner) arm() {
	runtime.AddCleanup(&sentinel{}, func(t *gcTuner) {
		t.tune()
		t.arm()
	}, t)
}

func (t *gcTuner) tune() {
	metrics.Read(t.live)
	p := gcPercent(t.live[0].Value.Uint64())
	if p != t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
}

// gcPercent is the GOGC that brings the next collection at gcHeapFloor
// for a live heap of live bytes, within [100, gcMaxPercent].
func gcPercent(live uint64) int {
	if live == 0 || live >= gcHeapFloor/2 {
		return 100
	}
	return min(gcMaxPercent, int(gcHeapFloor*100/live)-100)
}
