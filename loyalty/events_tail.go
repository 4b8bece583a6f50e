package loyalty

import (
	"sort"
	"sync"
	"time"
)

// eventTail keeps the newest events read from the log, so that the
// process's sinks, which all follow the end of the log (the NATS sink and
// every webhook stream that takes all types), read each event from the
// database once rather than once each: the first to read a stretch of the
// log fills the tail, the others find it there. It holds only what a read
// of the database answered: the events after a position up to the last
// one returned, which are every event in that range (positions are given
// in commit order, so none can appear in it later).
//
// A cached event is as old as the read that fetched it: the tail answers
// only for tailFresh after that read, no staler than a sink that read the
// database then. An erasure in this process drops the tail (its events'
// data is scrubbed); one in another process is seen after tailFresh.
type eventTail struct {
	mu   sync.Mutex
	from int64     // the position the tail starts after
	evs  []Event   // every event after from, in position order
	at   time.Time // of the tail's first read
	gen  uint64    // bumped by drop: a read begun before it is not kept
}

const (
	// tailFresh is how long a read of the log answers from the tail.
	tailFresh = 2 * time.Second
	// tailMax is the most events the tail keeps: at a few thousand
	// events a second, a second or two of the log.
	tailMax = 4096
)

// get answers up to limit events after the position after from the tail,
// if it holds the event after it.
func (t *eventTail) get(after int64, limit int, now time.Time) ([]Event, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.evs) == 0 || after < t.from || now.Sub(t.at) > tailFresh {
		return nil, false
	}
	i := sort.Search(len(t.evs), func(i int) bool { return t.evs[i].Position > after })
	if i == len(t.evs) {
		return nil, false
	}
	n := min(limit, len(t.evs)-i)
	return append([]Event(nil), t.evs[i:i+n]...), true
}

// generation is the tail's generation, read before a read of the database.
func (t *eventTail) generation() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gen
}

// put keeps what a read of the database answered: evs, every event after
// after up to its last. It extends the tail when it starts where the tail
// ends, and replaces it otherwise. A read begun before a drop (gen) is not
// kept.
func (t *eventTail) put(after int64, evs []Event, gen uint64, at time.Time) {
	if len(evs) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen != t.gen {
		return
	}
	// Extended, the tail keeps the time of its first read: it answers
	// tailFresh after that, then starts again from the next read.
	if n := len(t.evs); n > 0 && t.evs[n-1].Position == after && at.Sub(t.at) <= tailFresh {
		t.evs = append(t.evs, evs...)
	} else {
		t.from, t.evs, t.at = after, append([]Event(nil), evs...), at
	}
	if over := len(t.evs) - tailMax; over > 0 {
		t.from = t.evs[over-1].Position
		t.evs = append(t.evs[:0:0], t.evs[over:]...)
	}
}

// drop empties the tail, and keeps out the reads begun before.
func (t *eventTail) drop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.evs, t.gen = nil, t.gen+1
}
