package loyalty

import (
	"testing"
	"time"
)

func tailEvents(positions ...int64) []Event {
	out := make([]Event, len(positions))
	for i, p := range positions {
		out[i] = Event{ID: EventID(p), Position: p}
	}
	return out
}

func tailPositions(evs []Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Position
	}
	return out
}

func equalPositions(a []int64, b ...int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestEventTail: the tail answers a read after a position it covers with
// the events it holds after it, extends with a read that continues it,
// starts again otherwise, and answers nothing once stale, dropped, or
// for a read from before its start.
func TestEventTail(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var tl eventTail
	if _, ok := tl.get(0, 10, t0); ok {
		t.Fatal("an empty tail answered")
	}
	tl.put(10, tailEvents(11, 12, 14, 15), tl.generation(), t0) // 13 was purged, say
	for _, c := range []struct {
		after int64
		limit int
		want  []int64
		ok    bool
	}{
		{10, 10, []int64{11, 12, 14, 15}, true},
		{11, 2, []int64{12, 14}, true},
		{12, 10, []int64{14, 15}, true},
		{13, 10, []int64{14, 15}, true},
		{9, 10, nil, false},  // before the tail: 10 may have events it does not hold
		{15, 10, nil, false}, // at its end: the database may have more
	} {
		got, ok := tl.get(c.after, c.limit, t0.Add(time.Second))
		if ok != c.ok || !equalPositions(tailPositions(got), c.want...) {
			t.Errorf("after %d, limit %d: %v %v, want %v %v", c.after, c.limit, tailPositions(got), ok, c.want, c.ok)
		}
	}
	// A read that continues the tail extends it; the time stays the
	// first read's.
	tl.put(15, tailEvents(16, 17), tl.generation(), t0.Add(time.Second))
	if got, ok := tl.get(14, 10, t0.Add(time.Second)); !ok || !equalPositions(tailPositions(got), 15, 16, 17) {
		t.Fatalf("extended: %v %v", tailPositions(got), ok)
	}
	if _, ok := tl.get(14, 10, t0.Add(tailFresh+time.Millisecond)); ok {
		t.Fatal("a stale tail answered")
	}
	// One that does not continue it starts it again.
	tl.put(20, tailEvents(21), tl.generation(), t0.Add(time.Second))
	if _, ok := tl.get(16, 10, t0.Add(time.Second)); ok {
		t.Fatal("the replaced tail answered for a position before its start")
	}
	// A read begun before a drop is not kept.
	gen := tl.generation()
	tl.drop()
	if _, ok := tl.get(20, 10, t0.Add(time.Second)); ok {
		t.Fatal("a dropped tail answered")
	}
	tl.put(21, tailEvents(22), gen, t0.Add(time.Second))
	if _, ok := tl.get(21, 10, t0.Add(time.Second)); ok {
		t.Fatal("a read begun before the drop was kept")
	}
	// The tail keeps at most tailMax events, the newest.
	var ps []int64
	for p := int64(1); p <= tailMax+10; p++ {
		ps = append(ps, p)
	}
	tl.put(0, tailEvents(ps...), tl.generation(), t0)
	if _, ok := tl.get(5, 1, t0); ok {
		t.Fatal("the tail kept more than tailMax events")
	}
	if got, ok := tl.get(10, 1, t0); !ok || !equalPositions(tailPositions(got), 11) {
		t.Fatalf("the tail's oldest kept: %v %v", tailPositions(got), ok)
	}
}
