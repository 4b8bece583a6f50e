// Command loyalty-load measures a running engine: it enrols members, then
// posts purchases from concurrent clients (with a retry of each on a
// timeout, as a till would), reads balances, and reports throughput and
// latency percentiles. At the end it checks that every member's balance is
// exactly the points its purchases earned. Every run is bounded by
// -requests and -duration, and it talks only to the address it is given
// (loopback in this project's use).
//
//	loyalty-load -url http://127.0.0.1:8080 -token "$TOKEN" -members 200 -requests 20000 -concurrency 16
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "engine base URL")
	token := flag.String("token", os.Getenv("TOKEN"), "admin token")
	members := flag.Int("members", 100, "members to enrol")
	requests := flag.Int("requests", 10000, "purchases to post")
	conc := flag.Int("concurrency", 8, "concurrent clients")
	readEvery := flag.Int("read-every", 4, "read the balance after every Nth purchase (0: never)")
	duration := flag.Duration("duration", 5*time.Minute, "stop after this long in any case")
	flag.Parse()
	if err := run(*url, *token, *members, *requests, *conc, *readEvery, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "loyalty-load:", err)
		os.Exit(1)
	}
}

type client struct {
	base, token string
	http        *http.Client
}

func (c *client) do(method, path string, body any, key string) (int, []byte, time.Duration, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	start := time.Now()
	res, err := c.http.Do(req)
	if err != nil {
		return 0, nil, time.Since(start), err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, time.Since(start), err
}

func run(base, token string, nMembers, nRequests, conc, readEvery int, limit time.Duration) error {
	if token == "" {
		return errors.New("-token (or $TOKEN) is required: an admin token")
	}
	c := &client{base: base, token: token, http: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2}}}
	run := time.Now().UnixNano()
	ids := make([]string, nMembers)
	for i := range ids {
		st, b, _, err := c.do("POST", "/v1/members", map[string]any{"external_id": fmt.Sprintf("LOAD-%d-%d", run, i)}, "")
		if err != nil || st != 201 {
			return fmt.Errorf("enrol: %d %s %v", st, b, err)
		}
		var m struct{ ID string }
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		ids[i] = m.ID
	}
	var (
		next                  atomic.Int64
		mu                    sync.Mutex
		writeLat, readLat     []time.Duration
		earned                = make([]int64, nMembers)
		fails, retries, reads atomic.Int64
	)
	deadline := time.Now().Add(limit)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= nRequests || time.Now().After(deadline) {
					return
				}
				m := i % nMembers
				total := int64(500 + (i*7919)%20000)
				body := map[string]any{"member_id": ids[m], "external_id": fmt.Sprintf("LR-%d-%d", run, i), "store_id": "load",
					"total": total, "items": []map[string]any{{"sku": "S", "category": fmt.Sprintf("c%d", i%25), "amount": total}}}
				var st int
				var b []byte
				var d time.Duration
				var err error
				for attempt := 0; attempt < 3; attempt++ {
					st, b, d, err = c.do("POST", "/v1/purchases", body, "")
					if err == nil && st < 500 {
						break
					}
					retries.Add(1)
				}
				if err != nil || st != 201 {
					fails.Add(1)
					continue
				}
				var r struct {
					PointsEarned int64 `json:"points_earned"`
				}
				_ = json.Unmarshal(b, &r)
				mu.Lock()
				writeLat = append(writeLat, d)
				earned[m] += r.PointsEarned
				mu.Unlock()
				if readEvery > 0 && i%readEvery == 0 {
					st, _, d, err := c.do("GET", "/v1/members/"+ids[m]+"/balance", nil, "")
					if err == nil && st == 200 {
						reads.Add(1)
						mu.Lock()
						readLat = append(readLat, d)
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	fmt.Printf("purchases: %d in %.1fs = %.0f/s (%d clients), failed %d, retried %d\n",
		len(writeLat), elapsed.Seconds(), float64(len(writeLat))/elapsed.Seconds(), conc, fails.Load(), retries.Load())
	report("POST /v1/purchases", writeLat)
	report("GET  balance", readLat)
	bad := 0
	for i, id := range ids {
		st, b, _, err := c.do("GET", "/v1/members/"+id+"/balance", nil, "")
		var bal struct{ Available, Pending int64 }
		if err != nil || st != 200 || json.Unmarshal(b, &bal) != nil || bal.Available+bal.Pending != earned[i] {
			bad++
		}
	}
	if bad > 0 || fails.Load() > 0 {
		return fmt.Errorf("%d members' balances differ from the points their purchases earned; %d purchases failed", bad, fails.Load())
	}
	fmt.Printf("balances: all %d members hold exactly the points their purchases earned\n", nMembers)
	return nil
}

func report(name string, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	fmt.Printf("%-20s n=%d p50=%.2fms p95=%.2fms p99=%.2fms max=%.2fms\n", name, len(lat), p(.50), p(.95), p(.99), p(1))
}
