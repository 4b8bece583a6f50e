package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loyalty-engine/loyalty/api"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// benchTiers is the README's ladder: Insider, VIB from $350 and Rouge from
// $1,000 a year, at 1, 1.25 and 1.5 points per dollar.
var benchTiers = []struct {
	code, body string
}{
	{"insider", `{"code":"insider","name":"Insider","rank":0,"earn_multiplier":"1","qualifying_spend":0,"benefits":["birthday_gift"]}`},
	{"vib", `{"code":"vib","name":"VIB","rank":1,"earn_multiplier":"1.25","qualifying_spend":35000,"benefits":["birthday_gift","free_shipping"]}`},
	{"rouge", `{"code":"rouge","name":"Rouge","rank":2,"earn_multiplier":"1.5","qualifying_spend":100000,"benefits":["birthday_gift","free_shipping","early_access"]}`},
}

// rewardCost is the cheap reward's price in points: low enough that
// members redeem it again and again through every phase.
const rewardCost = 5

// voucherCost is the price in points of the voucher the long-standing
// members of the history phase spend their points on.
const voucherCost = 1000

var benchCategories = []string{"skincare", "makeup", "fragrance", "haircare", "bath", "body", "tools", "nails",
	"suncare", "men", "lips", "eyes", "face", "cleansers", "masks", "serums", "moisturizers", "toners"}

func bearer(tok string) []byte { return []byte("Bearer " + tok) }

// newEngine signs the tokens the load uses: an admin, one store-scoped
// till per store; members' tokens are signed once they are enrolled.
func newEngine(addr, secret string, stores int, timeout, ttl time.Duration) (*engine, error) {
	e := &engine{addr: addr, timeout: timeout, categories: benchCategories, redeemEvery: 5,
		runID: strconv.FormatInt(time.Now().UnixNano(), 36)}
	auth := api.AuthConfig{Secret: []byte(secret)}
	now := time.Now()
	tok, err := api.SignToken(auth, loyalty.RoleAdmin, "bench-admin", "", ttl, now)
	if err != nil {
		return nil, err
	}
	e.adminAuth = bearer(tok)
	for i := 0; i < stores; i++ {
		store := fmt.Sprintf("store-%02d", i+1)
		tok, err := api.SignToken(auth, loyalty.RolePOS, "till-"+store, store, ttl, now)
		if err != nil {
			return nil, err
		}
		e.stores = append(e.stores, store)
		e.posAuth = append(e.posAuth, bearer(tok))
	}
	return e, nil
}

// seed configures the program through the API and enrols n members
// concurrently, each with a first purchase, and extra members without
// one, whose history the history phase writes.
func (e *engine) seed(ctx context.Context, n, extra, conc int, secret string, ttl time.Duration) error {
	c := e.newClient(99)
	defer c.close()
	for _, t := range benchTiers {
		st, err := c.do("PUT", []byte("/v1/tiers/"+t.code), e.adminAuth, []byte(t.body))
		if err != nil || (st != 200 && st != 201) {
			return fmt.Errorf("seed: PUT /v1/tiers/%s: %d %v %s", t.code, st, err, c.resp.Body())
		}
	}
	body := fmt.Sprintf(`{"code":"bench-sample-%s","name":"Sample","description":"a deluxe sample","cost_points":%d,"stock":null,"per_member_limit":null}`,
		e.runID, rewardCost)
	st, err := c.do("POST", []byte("/v1/rewards"), e.adminAuth, []byte(body))
	if err != nil || st != 201 {
		return fmt.Errorf("seed: POST /v1/rewards: %d %v %s", st, err, c.resp.Body())
	}
	var rw struct{ ID string }
	if err := json.Unmarshal(c.resp.Body(), &rw); err != nil || rw.ID == "" {
		return fmt.Errorf("seed: reward answer %s: %v", c.resp.Body(), err)
	}
	e.rewardID = rw.ID
	body = fmt.Sprintf(`{"code":"bench-voucher-%s","name":"Voucher","description":"a store voucher","cost_points":%d,"stock":null,"per_member_limit":null}`,
		e.runID, voucherCost)
	st, err = c.do("POST", []byte("/v1/rewards"), e.adminAuth, []byte(body))
	if err != nil || st != 201 {
		return fmt.Errorf("seed: POST /v1/rewards: %d %v %s", st, err, c.resp.Body())
	}
	rw.ID = ""
	if err := json.Unmarshal(c.resp.Body(), &rw); err != nil || rw.ID == "" {
		return fmt.Errorf("seed: reward answer %s: %v", c.resp.Body(), err)
	}
	e.voucherID = rw.ID

	e.loadN = n
	n += extra
	e.memberIDs = make([]string, n)
	e.memberAuth = make([][]byte, n)
	e.expected = make([]atomic.Int64, n)
	e.uncertain = make([]atomic.Bool, n)
	auth := api.AuthConfig{Secret: []byte(secret)}
	err = parallel(ctx, n, conc, func(w int) func(i int) error {
		c := e.newClient(uint64(w) + 1000)
		store := w % len(e.stores)
		return func(i int) error {
			body := fmt.Sprintf(`{"external_id":"BENCH-%s-%d"}`, e.runID, i)
			st, err := c.do("POST", []byte("/v1/members"), e.posAuth[store], []byte(body))
			if err != nil || st != 201 {
				return fmt.Errorf("seed: enrol member %d: %d %v %s", i, st, err, c.resp.Body())
			}
			var m struct{ ID string }
			if err := json.Unmarshal(c.resp.Body(), &m); err != nil || m.ID == "" {
				return fmt.Errorf("seed: enrol answer %s: %v", c.resp.Body(), err)
			}
			tok, err := api.SignToken(auth, loyalty.RoleMember, m.ID, "", ttl, time.Now())
			if err != nil {
				return err
			}
			e.memberIDs[i], e.memberAuth[i] = m.ID, bearer(tok)
			if i >= e.loadN {
				return nil
			}
			if o := c.purchase(i, store); !o.ok {
				return fmt.Errorf("seed: first purchase of member %d: %d %v %s", i, o.status, o.err, c.resp.Body())
			}
			return nil
		}
	})
	return err
}

// parallel runs fn(i) for i in [0, n) on conc goroutines, each with its
// own state made by mk(worker); it stops at the first error.
func parallel(ctx context.Context, n, conc int, mk func(worker int) func(i int) error) error {
	if conc > n {
		conc = n
	}
	if conc < 1 {
		conc = 1
	}
	var next atomic.Int64
	var once sync.Once
	var first error
	var failed atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			fn := mk(w)
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}
