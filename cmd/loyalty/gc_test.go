package main

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 100},
		{2 << 20, gcMaxPercent}, // 32/2 - 1 = 15: held to the most
		{5 << 20, 540},          // the next collection at 32 MB
		{10 << 20, 220},
		{gcHeapFloor / 2, 100},   // past half the floor: Go's default
		{gcHeapFloor * 4, 100},   // never under it
		{gcHeapFloor/2 - 1, 100}, // just under half: 100 (rounded down)
	} {
		if got := gcPercent(c.live); got != c.want {
			t.Errorf("gcPercent(%d MB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// TestTuneGC: with the environment silent, the serving process's GOGC
// follows its live heap after a collection; GOGC set leaves it alone.
func TestTuneGC(t *testing.T) {
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/heap/live:bytes"}}
	t.Setenv("GOGC", "50")
	if tuneGC() {
		t.Fatal("tuneGC started with GOGC set")
	}
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	if !tuneGC() {
		t.Fatal("tuneGC did not start with the environment silent")
	}
	// The tuner runs after a collection, in the cleanup goroutine.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		runtime.GC()
		metrics.Read(gogc)
		live := gogc[1].Value.Uint64()
		if int(gogc[0].Value.Uint64()) == gcPercent(live) && gcPercent(live) > 100 {
			return
		}
	}
	t.Fatalf("GOGC %d with a live heap of %d bytes; want %d", gogc[0].Value.Uint64(), gogc[1].Value.Uint64(),
		gcPercent(gogc[1].Value.Uint64()))
}
