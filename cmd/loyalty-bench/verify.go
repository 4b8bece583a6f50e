package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync"
)

// verifyResult is what the closing check found.
type verifyResult struct {
	checked     int // members whose ledger was summed
	compared    int // of which also compared with the bench's own books
	problems    []string
	problemsCnt int
}

func (v *verifyResult) ok() bool { return v.problemsCnt == 0 }

// verify checks, for every member (or a sample of size sample when
// 0 < sample < members), that available + pending equals the sum of the
// member's ledger entries (read page by page), and, where every write's
// outcome is known, that it equals what the bench's own books say the
// member earned minus what it spent.
func (e *engine) verify(ctx context.Context, sample, conc int) (*verifyResult, error) {
	idx := make([]int, len(e.memberIDs))
	for i := range idx {
		idx[i] = i
	}
	if sample > 0 && sample < len(idx) {
		r := rand.New(rand.NewPCG(1, 2))
		r.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		idx = idx[:sample]
	}
	res := &verifyResult{}
	var mu sync.Mutex
	problem := func(format string, a ...any) {
		mu.Lock()
		res.problemsCnt++
		if len(res.problems) < 20 {
			res.problems = append(res.problems, fmt.Sprintf(format, a...))
		}
		mu.Unlock()
	}
	err := parallel(ctx, len(idx), conc, func(w int) func(int) error {
		c := e.newClient(uint64(w) + 5000)
		return func(k int) error {
			m := idx[k]
			id := e.memberIDs[m]
			st, err := c.do("GET", []byte("/v1/members/"+id+"/balance"), e.adminAuth, nil)
			if err != nil || st != 200 {
				return fmt.Errorf("verify: balance of %s: %d %v %s", id, st, err, c.resp.Body())
			}
			var bal struct {
				Available *int64 `json:"available"`
				Pending   *int64 `json:"pending"`
			}
			if err := json.Unmarshal(c.resp.Body(), &bal); err != nil || bal.Available == nil || bal.Pending == nil {
				return fmt.Errorf("verify: balance of %s unreadable: %v %s", id, err, c.resp.Body())
			}
			var sum int64
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > 100000 {
					return fmt.Errorf("verify: ledger of %s does not end", id)
				}
				path := "/v1/members/" + id + "/ledger?limit=500"
				if cursor != "" {
					path += "&cursor=" + url.QueryEscape(cursor)
				}
				st, err := c.do("GET", []byte(path), e.adminAuth, nil)
				if err != nil || st != 200 {
					return fmt.Errorf("verify: ledger of %s: %d %v %s", id, st, err, c.resp.Body())
				}
				var pg struct {
					Items []struct {
						Points *int64 `json:"points"`
					} `json:"items"`
					NextCursor *string `json:"next_cursor"`
				}
				if err := json.Unmarshal(c.resp.Body(), &pg); err != nil {
					return fmt.Errorf("verify: ledger of %s unreadable: %v", id, err)
				}
				for _, it := range pg.Items {
					if it.Points == nil {
						return fmt.Errorf("verify: ledger entry of %s without points", id)
					}
					sum += *it.Points
				}
				if pg.NextCursor == nil || *pg.NextCursor == "" {
					break
				}
				cursor = *pg.NextCursor
			}
			held := *bal.Available + *bal.Pending
			if held != sum {
				problem("member %s: available %d + pending %d = %d, but its ledger entries sum to %d",
					id, *bal.Available, *bal.Pending, held, sum)
			}
			mu.Lock()
			res.checked++
			mu.Unlock()
			if !e.uncertain[m].Load() {
				if want := e.expected[m].Load(); held != want {
					problem("member %s: holds %d points, but its purchases earned and its redemptions spent %d net",
						id, held, want)
				}
				mu.Lock()
				res.compared++
				mu.Unlock()
			}
			return nil
		}
	})
	e.closeClients()
	return res, err
}
