package main

import (
	"fmt"
	"math/bits"
	"sort"
	"strconv"
	"strings"
	"time"
)

// hist is a log-linear latency histogram in the manner of HdrHistogram:
// values below 256 ns are kept exactly, larger ones in buckets whose width
// is 1/128 of their magnitude, so every reported percentile is within 0.8%
// of the recorded value. Count, minimum and maximum are exact. It is not
// safe for concurrent use: each client goroutine records into its own and
// the phase merges them.
type hist struct {
	counts   []uint64
	n        uint64
	min, max int64
	sum      int64 // nanoseconds, for the mean
}

const (
	histExact   = 256 // values below are their own bucket
	histSubBits = 7   // 128 sub-buckets per power of two above
	histBuckets = histExact + (63-histSubBits)*(1<<histSubBits)
)

func newHist() *hist { return &hist{counts: make([]uint64, histBuckets)} }

// bucketOf maps a value in nanoseconds to its bucket.
func bucketOf(v int64) int {
	if v < histExact {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	u := uint64(v)
	shift := bits.Len64(u) - (histSubBits + 1)
	m := u >> uint(shift) // in [128, 256)
	return histExact + (shift-1)*(1<<histSubBits) + int(m-(1<<histSubBits))
}

// bucketHigh is the largest value that falls in bucket i.
func bucketHigh(i int) int64 {
	if i < histExact {
		return int64(i)
	}
	j := i - histExact
	shift := j>>histSubBits + 1
	m := uint64(j&(1<<histSubBits-1)) + 1<<histSubBits
	return int64((m+1)<<uint(shift) - 1)
}

func (h *hist) record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

func (h *hist) merge(o *hist) {
	if o == nil || o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// percentile is the nearest-rank percentile q (0 < q <= 100): the smallest
// recorded value such that at least q% of the values are at or below it,
// up to the bucket's precision. Zero when nothing was recorded.
func (h *hist) percentile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q / 100 * float64(h.n))
	if float64(rank) < q/100*float64(h.n) {
		rank++
	}
	if rank < 1 {
		rank = 1
	}
	if rank >= h.n {
		return time.Duration(h.max)
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			v := bucketHigh(i)
			if v > h.max {
				v = h.max
			}
			if v < h.min {
				v = h.min
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

func (h *hist) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / int64(h.n))
}

// statusCounts counts the outcomes that were not a success, keyed by HTTP
// status ("409") or "transport" for a request that got no response.
type statusCounts map[string]int64

func (s statusCounts) add(key string, n int64) {
	if n != 0 {
		s[key] += n
	}
}

func (s statusCounts) addStatus(status int) { s.add(strconv.Itoa(status), 1) }

func (s statusCounts) merge(o statusCounts) {
	for k, v := range o {
		s.add(k, v)
	}
}

func (s statusCounts) total() int64 {
	var t int64
	for _, v := range s {
		t += v
	}
	return t
}

// String renders the counts as "409×3, 503×1, transport×2": statuses in
// numeric order, other keys after them in alphabetical order; "0" when
// there are none.
func (s statusCounts) String() string {
	if s.total() == 0 {
		return "0"
	}
	keys := make([]string, 0, len(s))
	for k, v := range s {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, errA := strconv.Atoi(keys[i])
		b, errB := strconv.Atoi(keys[j])
		switch {
		case errA == nil && errB == nil:
			return a < b
		case errA == nil:
			return true
		case errB == nil:
			return false
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, s[k])
	}
	return strings.Join(parts, ", ")
}
