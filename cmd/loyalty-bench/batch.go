package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// The batch phase (issue 15): a till that was offline sends its receipts.
// Each round a till posts batchSize receipts one at a time, each waiting
// for the one before, as it would without the batch route, and then
// batchSize other receipts as one POST /v1/purchases/batch. Rounds
// alternate so that both see the same machine; the figures are the
// medians of the rounds' rates.

const (
	batchSize      = 500
	batchOfSingles = 5.0 // a batch posts at least this many times as fast as single posts
)

// batchResult is what the batch phase measured on one database.
type batchResult struct {
	rounds          int
	single, batched float64 // purchases per second, medians of the rounds
	errors          int     // purchases not answered 201
	// The engine process's CPU time per purchase, over all rounds: what
	// the batch saves the engine whatever else the machine is doing.
	singleCPU, batchedCPU time.Duration
}

var batchPath = []byte("/v1/purchases/batch")

// batchPhase runs rounds rounds from store 0's till, for random members of
// the load, keeping the books of what each purchase earned.
func (b *bench) batchPhase(ctx context.Context, srv *server, e *engine, label string, rounds int) (*batchResult, error) {
	c := e.newClient(0xba7c4)
	defer e.closeClients()
	res := &batchResult{rounds: rounds}
	var singles, batches []float64
	var lines [5]saleLine
	members := make([]int, batchSize)
	// post sends batchSize new receipts as one batch and keeps their books;
	// the time counted is the request's, the body built before it.
	post := func() (time.Duration, error) {
		body := append(c.body[:0], `{"purchases":[`...)
		for i := range members {
			if i > 0 {
				body = append(body, ',')
			}
			members[i] = c.rng.IntN(e.loadN)
			n, total := c.randomLines(&lines)
			body = c.appendPurchase(body, members[i], 0, lines[:n], total, "")
		}
		c.body = append(body, "]}"...)
		t0 := time.Now()
		st, err := c.do("POST", batchPath, e.posAuth[0], c.body)
		elapsed := time.Since(t0)
		if err != nil || st != 200 {
			for _, m := range members {
				e.uncertain[m].Store(true)
			}
			return 0, fmt.Errorf("%s: batch of %d: status %d, %v: %.200s", label, batchSize, st, err, c.resp.Body())
		}
		var out struct {
			Results []struct {
				Status int `json:"status"`
				Body   struct {
					PointsEarned int64 `json:"points_earned"`
				} `json:"body"`
			} `json:"results"`
		}
		if err := json.Unmarshal(c.resp.Body(), &out); err != nil || len(out.Results) != batchSize {
			return 0, fmt.Errorf("%s: batch answer of %d results: %v", label, len(out.Results), err)
		}
		for i, a := range out.Results {
			switch {
			case a.Status == 201:
				e.expected[members[i]].Add(a.Body.PointsEarned)
			case a.Status >= 500:
				e.uncertain[members[i]].Store(true)
				res.errors++
			default:
				res.errors++
			}
		}
		return elapsed, nil
	}
	for r := 0; r < rounds; r++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0, cpu0 := time.Now(), procCPU(srv.pid())
		for i := 0; i < batchSize; i++ {
			n, total := c.randomLines(&lines)
			if o := c.postPurchase(c.rng.IntN(e.loadN), 0, lines[:n], total, ""); !o.ok {
				res.errors++
			}
		}
		singles = append(singles, batchSize/time.Since(t0).Seconds())
		res.singleCPU += procCPU(srv.pid()) - cpu0

		cpu0 = procCPU(srv.pid())
		elapsed, err := post()
		res.batchedCPU += procCPU(srv.pid()) - cpu0
		if err != nil {
			return nil, err
		}
		batches = append(batches, batchSize/elapsed.Seconds())
	}
	if b.opt.profileDir != "" {
		// The engine's CPU profile of batches alone, posted back to back
		// after the measured rounds for a few seconds.
		const profiled = 4 * time.Second
		stop := b.profile(srv, e, strings.ToLower(strings.Fields(label)[0])+"-batch", profiled)
		for t0 := time.Now(); time.Since(t0) < profiled; {
			if _, err := post(); err != nil {
				stop()
				return nil, err
			}
		}
		stop()
	}
	res.single, res.batched = median(singles), median(batches)
	n := time.Duration(rounds * batchSize)
	res.singleCPU, res.batchedCPU = res.singleCPU/n, res.batchedCPU/n
	b.logf("%s: batch: %d rounds of %d purchases: one at a time %s/s, as one batch %s/s (%.1f×), %d not posted; "+
		"engine CPU per purchase %s one at a time, %s in a batch", label, rounds, batchSize, fmtRate(res.single),
		fmtRate(res.batched), res.batched/res.single, res.errors, res.singleCPU, res.batchedCPU)
	return res, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// procCPU is the user and system CPU time process pid has used, from
// /proc; 0 when it cannot be read.
func procCPU(pid int) time.Duration {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	st, err := p.Stat()
	if err != nil {
		return 0
	}
	return time.Duration(st.CPUTime() * float64(time.Second))
}
