package api

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// The randomized ledger test drives the engine through the API with a
// seeded mix of everything that moves points, checking each answer against
// a small model and the ledger invariants after every batch. Replay a
// failure with LOYALTY_TEST_SEED=<seed> go test ./api -run TestRandomizedLedger.

type simPurchase struct {
	id, member       string
	total, returned  int64
	earned, reversed int64
	returns          int
}

type simReward struct {
	id, code   string
	cost       int64
	stock      int64 // -1: unlimited
	limit      int   // 0: unlimited
	minTier    string
	validUntil time.Time // zero: open-ended
}

type simRedemption struct {
	id, member, coupon string
	reward             *simReward
	spent              int64
	status             string
}

type sim struct {
	t       *testing.T
	e       *env
	r       *rand.Rand
	members []string
	rewards []*simReward
	buys    []*simPurchase
	reds    []*simRedemption
	// hadReturn marks the members whose available points may go negative.
	hadReturn map[string]bool
	pos, adm  string
	outcomes  map[string]int
	recent    []string // the last operations, for the failure message
	op        int
	seed      uint64
}

var simTierRank = map[string]int{"insider": 0, "vib": 1, "rouge": 2}

// simMultiplier is each tier's earn multiplier as a fraction.
var simMultiplier = map[string][2]int64{"insider": {1, 1}, "vib": {5, 4}, "rouge": {3, 2}}

func (s *sim) logf(format string, args ...any) {
	s.recent = append(s.recent, fmt.Sprintf("#%d ", s.op)+fmt.Sprintf(format, args...))
	if len(s.recent) > 25 {
		s.recent = s.recent[1:]
	}
}

func (s *sim) fail(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("seed %d, operation %d: %s\nlast operations:\n  %s", s.seed, s.op, fmt.Sprintf(format, args...),
		strings.Join(s.recent, "\n  "))
}

func (s *sim) member() string { return s.members[s.r.IntN(len(s.members))] }

// name is a member's short name for the log: m0, m1, ...
func (s *sim) name(m string) string {
	for i, x := range s.members {
		if x == m {
			return fmt.Sprintf("m%d", i)
		}
	}
	return m
}

func (s *sim) count(what string) { s.outcomes[what]++ }

func (s *sim) purchase() {
	m := s.member()
	total := 100 + s.r.Int64N(40000)
	if s.r.IntN(20) == 0 {
		total = 50000 + s.r.Int64N(150000)
	}
	body := map[string]any{"member_id": m, "external_id": fmt.Sprintf("P-%d", s.op), "store_id": "store-" + strconv.Itoa(1+s.r.IntN(3)),
		"currency": "USD", "total": total}
	if s.r.IntN(5) == 0 {
		body["occurred_at"] = rfc(s.e.clock.Now().Add(-time.Duration(s.r.Int64N(int64(48 * time.Hour)))))
	}
	if s.r.IntN(2) == 0 {
		n := 1 + s.r.IntN(4)
		var items []map[string]any
		left := total
		for i := 0; i < n; i++ {
			amount := left
			if i < n-1 {
				amount = s.r.Int64N(left + 1)
			}
			left -= amount
			items = append(items, map[string]any{"sku": fmt.Sprintf("SKU-%d", s.r.IntN(50)),
				"category": []string{"skincare", "makeup", "fragrance", "hair", "tools"}[s.r.IntN(5)],
				"quantity": 1 + s.r.IntN(3), "amount": amount})
		}
		body["items"] = items
	}
	s.logf("purchase %s total %d", s.name(m), total)
	r := s.e.do("POST", "/v1/purchases", s.pos, body)
	if r.Status != 201 {
		s.fail("purchase: %d %s", r.Status, r.Body)
	}
	var res struct {
		ID           string `json:"id"`
		PointsEarned int64  `json:"points_earned"`
		TierBefore   string `json:"tier_before"`
	}
	r.Decode(s.t, &res)
	f := simMultiplier[res.TierBefore]
	if want := total * f[0] / (100 * f[1]); res.PointsEarned != want {
		s.fail("purchase of %d at %s earned %d, want %d", total, res.TierBefore, res.PointsEarned, want)
	}
	s.buys = append(s.buys, &simPurchase{id: res.ID, member: m, total: total, earned: res.PointsEarned})
	s.count("purchase")
}

func (s *sim) giveBack() {
	var open []*simPurchase
	for _, p := range s.buys {
		if p.returned < p.total {
			open = append(open, p)
		}
	}
	if len(open) == 0 {
		return
	}
	p := open[s.r.IntN(len(open))]
	left := p.total - p.returned
	amount := left
	switch s.r.IntN(10) {
	case 0, 1, 2, 3:
	case 4:
		amount = left + 1 + s.r.Int64N(100) // more than is left
	default:
		amount = 1 + s.r.Int64N(left)
	}
	p.returns++
	expired := s.expiredOf(p)
	s.logf("return %s of %s: %d of %d left, %d of its points expired", s.name(p.member), p.id, amount, left, expired)
	r := s.e.do("POST", "/v1/purchases/"+p.id+"/returns", s.pos, map[string]any{"external_id": fmt.Sprintf("RET-%d", p.returns), "amount": amount})
	if amount > left {
		if r.Status != 422 {
			s.fail("return above what is left: %d %s", r.Status, r.Body)
		}
		s.count("return 422")
		return
	}
	if r.Status != 201 {
		s.fail("return: %d %s", r.Status, r.Body)
	}
	var res struct {
		PointsReversed int64 `json:"points_reversed"`
	}
	r.Decode(s.t, &res)
	want := p.earned * amount / p.total
	if p.returned+amount == p.total {
		want = p.earned - p.reversed
	}
	// §8: what expired is not taken back a second time.
	want = max(0, min(want, p.earned-p.reversed-expired))
	if res.PointsReversed != want {
		s.fail("return of %d of %d reversed %d, want %d", amount, p.total, res.PointsReversed, want)
	}
	p.returned += amount
	p.reversed += res.PointsReversed
	s.hadReturn[p.member] = true
	s.count("return")
}

// expiredOf reads how many of a purchase's own points have expired by now,
// from the raw rows: what expire entries took from the lots its credits
// opened, and what those lots still hold past their expires_at.
func (s *sim) expiredOf(p *simPurchase) int64 {
	s.t.Helper()
	own := `SELECT l.id FROM lots l JOIN ledger_entries c ON c.id = l.entry_id WHERE c.purchase_id = ? AND c.points > 0`
	stored := s.e.dbInt(`SELECT COALESCE(SUM(d.points), 0) FROM lot_draws d JOIN ledger_entries x ON x.id = d.entry_id
		WHERE x.kind = 'expire' AND d.lot_id IN (`+own+`)`, p.id)
	lapsed := s.e.dbInt(`SELECT COALESCE(SUM(remaining), 0) FROM lots WHERE expires_at <= ? AND id IN (`+own+`)`,
		loyalty.TS(s.e.clock.Now()), p.id)
	return stored + lapsed
}

// live counts a member's redemptions of a reward that were not cancelled.
func (s *sim) live(member string, rw *simReward) (n int) {
	for _, d := range s.reds {
		if d.reward == rw && (member == "" || d.member == member) && d.status != "cancelled" {
			n++
		}
	}
	return n
}

func (s *sim) redeem() {
	m := s.member()
	rw := s.rewards[s.r.IntN(len(s.rewards))]
	b := s.e.balance(m)
	now := s.e.clock.Now()
	want := ""
	switch {
	case !rw.validUntil.IsZero() && !now.Before(rw.validUntil):
		want = "not_available"
	case rw.minTier != "" && (b.Tier == nil || simTierRank[b.Tier.Code] < simTierRank[rw.minTier]):
		want = "tier_too_low"
	case rw.limit > 0 && s.live(m, rw) >= rw.limit:
		want = "limit_reached"
	case rw.stock >= 0 && int64(s.live("", rw)) >= rw.stock:
		want = "out_of_stock"
	case rw.cost > 0 && b.Available < rw.cost:
		want = "insufficient_points"
	}
	tok := s.pos
	switch s.r.IntN(3) {
	case 0:
		tok = s.e.token(loyalty.RoleMember, m)
	case 1:
		tok = s.adm
	}
	s.logf("redeem %s by %s with %d available: want %q", rw.code, s.name(m), b.Available, want)
	r := s.e.redeemReward(tok, m, rw.id)
	if want != "" {
		if r.Status != 409 || !strings.Contains(string(r.Body), `"code":"`+want+`"`) {
			s.fail("redeem %s: want 409 %s, got %d %s", rw.code, want, r.Status, r.Body)
		}
		s.count("redeem 409 " + want)
		return
	}
	if r.Status != 201 {
		s.fail("redeem %s with %d available: %d %s", rw.code, b.Available, r.Status, r.Body)
	}
	var res struct {
		ID          string `json:"id"`
		CouponCode  string `json:"coupon_code"`
		PointsSpent int64  `json:"points_spent"`
		Status      string `json:"status"`
		Balance     struct {
			Available int64 `json:"available"`
		} `json:"balance"`
	}
	r.Decode(s.t, &res)
	if res.PointsSpent != rw.cost || res.Status != "issued" || !couponFormat.MatchString(res.CouponCode) ||
		res.Balance.Available != b.Available-rw.cost {
		s.fail("redemption of %s with %d available: %s", rw.code, b.Available, r.Body)
	}
	s.reds = append(s.reds, &simRedemption{id: res.ID, member: m, coupon: res.CouponCode, reward: rw, spent: rw.cost, status: "issued"})
	s.count("redeem")
}

func (s *sim) pickRedemption() *simRedemption {
	if len(s.reds) == 0 {
		return nil
	}
	// Mostly recent ones, which are more often still issued.
	i := len(s.reds) - 1 - s.r.IntN(min(len(s.reds), 15))
	if s.r.IntN(4) == 0 {
		i = s.r.IntN(len(s.reds))
	}
	return s.reds[i]
}

func (s *sim) cancel() {
	d := s.pickRedemption()
	if d == nil {
		return
	}
	before := s.e.balance(d.member)
	// What comes back usable: the points drawn from lots not yet expired.
	// (The lots were available when drawn, so none is pending.)
	live := s.e.dbInt(`SELECT COALESCE(SUM(d.points), 0) FROM lot_draws d JOIN lots l ON l.id = d.lot_id
		JOIN redemptions r ON r.entry_id = d.entry_id WHERE r.id = ? AND (l.expires_at IS NULL OR l.expires_at > ?)`,
		d.id, loyalty.TS(s.e.clock.Now()))
	tok := s.pos
	if s.r.IntN(2) == 0 {
		tok = s.e.token(loyalty.RoleMember, d.member)
	}
	s.logf("cancel %s of %s (%s, %d points, %s) with %d available", d.id, s.name(d.member), d.reward.code, d.spent, d.status, before.Available)
	r := s.e.do("POST", "/v1/redemptions/"+d.id+"/cancel", tok, nil)
	if d.status != "issued" {
		if r.Status != 409 || !strings.Contains(string(r.Body), `"code":"not_issued"`) {
			s.fail("cancel of a %s redemption: %d %s", d.status, r.Status, r.Body)
		}
		s.count("cancel 409")
		return
	}
	if r.Status != 200 {
		s.fail("cancel: %d %s", r.Status, r.Body)
	}
	var res struct {
		Status  string `json:"status"`
		Balance struct {
			Available int64 `json:"available"`
		} `json:"balance"`
	}
	r.Decode(s.t, &res)
	// Points that come back to lots already expired add nothing, not even
	// by paying a debt.
	if res.Status != "cancelled" || res.Balance.Available != before.Available+live {
		s.fail("cancel of %d points (%d of them from lots not expired) with %d available: %s", d.spent, live, before.Available, r.Body)
	}
	d.status = "cancelled"
	s.count("cancel")
}

func (s *sim) use() {
	d := s.pickRedemption()
	if d == nil {
		return
	}
	code := d.coupon
	if s.r.IntN(3) == 0 {
		code = strings.ToLower(strings.ReplaceAll(code, "-", ""))
	}
	s.logf("use %s (%s)", code, d.status)
	r := s.e.do("POST", "/v1/coupons/"+code+"/use", s.pos, nil)
	if d.status != "issued" {
		if r.Status != 409 || !strings.Contains(string(r.Body), `"code":"not_issued"`) {
			s.fail("use of a %s coupon: %d %s", d.status, r.Status, r.Body)
		}
		s.count("use 409")
		return
	}
	if r.Status != 200 || !strings.Contains(string(r.Body), `"status":"used"`) {
		s.fail("use: %d %s", r.Status, r.Body)
	}
	d.status = "used"
	s.count("use")
}

func (s *sim) adjust() {
	m := s.member()
	pts := 1 + s.r.Int64N(400)
	if s.r.IntN(2) == 0 {
		pts = -(1 + s.r.Int64N(300))
	}
	b := s.e.balance(m)
	s.logf("adjust %s by %d with %d available", s.name(m), pts, b.Available)
	r := s.e.do("POST", "/v1/members/"+m+"/adjustments", s.adm, map[string]any{"points": pts, "reason": "random"})
	if pts < 0 && b.Available < -pts {
		if r.Status != 409 || !strings.Contains(string(r.Body), `"code":"insufficient_points"`) {
			s.fail("debit of %d with %d available: %d %s", -pts, b.Available, r.Status, r.Body)
		}
		s.count("adjust 409")
		return
	}
	if r.Status != 201 {
		s.fail("adjust by %d with %d available: %d %s", pts, b.Available, r.Status, r.Body)
	}
	s.count("adjust")
}

func (s *sim) advance() {
	// Log-uniform from a minute to two weeks.
	lo, hi := math.Log(float64(time.Minute)), math.Log(float64(14*oneDay))
	d := time.Duration(math.Exp(lo + s.r.Float64()*(hi-lo))).Truncate(time.Microsecond)
	s.e.clock.Advance(d)
	s.logf("advance %s to %s", d, rfc(s.e.clock.Now()))
	s.count("advance")
}

func (s *sim) expire() {
	now := s.e.clock.Now()
	s.logf("expire-points at %s", rfc(now))
	r := s.e.do("POST", "/v1/jobs/expire-points/run", s.adm, map[string]any{"as_of": rfc(now)})
	if r.Status != 200 || !strings.Contains(string(r.Body), `"status":"succeeded"`) {
		s.fail("expire-points: %d %s", r.Status, r.Body)
	}
	s.count("expire")
}

// check runs expire-points now and asserts the invariants.
func (s *sim) check() {
	s.t.Helper()
	s.expire()
	e := s.e
	e.checkLedger()
	if s.t.Failed() {
		s.fail("ledger invariants broken")
	}
	now := e.clock.Now()
	if n := e.dbInt("SELECT COUNT(*) FROM lots WHERE remaining > 0 AND expires_at <= ?", loyalty.TS(now)); n != 0 {
		s.fail("%d expired lots keep points after expire-points", n)
	}
	spent := map[string]int64{}
	for _, d := range s.reds {
		if d.status != "cancelled" {
			spent[d.member] += d.spent
		}
	}
	for _, m := range s.members {
		b := e.balance(m)
		if b.Available < 0 && !s.hadReturn[m] {
			s.fail("member %s with no return has %d available", m, b.Available)
		}
		if b.Pending < 0 {
			s.fail("member %s has %d pending", m, b.Pending)
		}
		if b.LifetimeRedeemed != spent[m] {
			s.fail("member %s: lifetime_redeemed %d, redemptions not cancelled spent %d", m, b.LifetimeRedeemed, spent[m])
		}
	}
	for _, rw := range s.rewards {
		if rw.stock >= 0 {
			if got, want := e.rewardStock(rw.id), rw.stock-int64(s.live("", rw)); got != want {
				s.fail("reward %s: stock %d, want %d", rw.code, got, want)
			}
		}
	}
	var redeemed, refunded, issued, cancelled int64
	for _, d := range s.reds {
		issued += d.spent
		if d.status == "cancelled" {
			cancelled += d.spent
		}
	}
	redeemed = -e.dbInt("SELECT COALESCE(SUM(points), 0) FROM ledger_entries WHERE kind = 'redeem'")
	refunded = e.dbInt("SELECT COALESCE(SUM(points), 0) FROM ledger_entries WHERE kind = 'redeem_cancel'")
	if redeemed != issued || refunded != cancelled {
		s.fail("ledger redeemed %d and refunded %d; redemptions spent %d, cancelled %d", redeemed, refunded, issued, cancelled)
	}
}

func TestRandomizedLedger(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("LOYALTY_TEST_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("LOYALTY_TEST_SEED: %v", err)
		}
	}
	ops, members := 3000, 30
	if testing.Short() {
		ops, members = 400, 12
	}
	t.Logf("seed %d (replay with LOYALTY_TEST_SEED=%d)", seed, seed)
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.do("PUT", "/v1/program", e.marketer(), map[string]any{"pending_days": 2, "expiry_days": 60}).must(t, 200)
		e.beautyLadder()
		s := &sim{t: t, e: e, r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), hadReturn: map[string]bool{},
			pos: e.pos(), adm: e.admin(), outcomes: map[string]int{}, seed: seed}
		for i := 0; i < members; i++ {
			s.members = append(s.members, e.enrol())
		}
		start := e.clock.Now()
		for _, rw := range []*simReward{
			{code: "coffee", cost: 50, stock: -1},
			{code: "mask", cost: 200, stock: 40},
			{code: "tote", cost: 120, stock: -1, limit: 2},
			{code: "vip-kit", cost: 300, stock: 10, limit: 1, minTier: "vib"},
			{code: "sample", cost: 0, stock: -1, limit: 3},
			{code: "seasonal", cost: 80, stock: -1, validUntil: start.AddDate(0, 0, 120)},
		} {
			fields := []any{}
			if rw.stock >= 0 {
				fields = append(fields, "stock", rw.stock)
			}
			if rw.limit > 0 {
				fields = append(fields, "per_member_limit", rw.limit)
			}
			if rw.minTier != "" {
				fields = append(fields, "min_tier", rw.minTier)
			}
			if !rw.validUntil.IsZero() {
				fields = append(fields, "valid_until", rfc(rw.validUntil))
			}
			rw.id = e.addReward(rw.code, rw.cost, fields...)["id"].(string)
			s.rewards = append(s.rewards, rw)
		}
		began := time.Now()
		for s.op = 1; s.op <= ops; s.op++ {
			switch k := s.r.IntN(100); {
			case k < 30:
				s.purchase()
			case k < 38:
				s.giveBack()
			case k < 58:
				s.redeem()
			case k < 65:
				s.cancel()
			case k < 72:
				s.use()
			case k < 82:
				s.adjust()
			case k < 96:
				s.advance()
			default:
				s.expire()
			}
			if s.op%100 == 0 {
				s.check()
			}
		}
		s.check()
		var kinds []string
		for k, n := range s.outcomes {
			kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
		}
		sort.Strings(kinds)
		t.Logf("seed %d: %d operations over %d members, %s simulated, in %s: %s", seed, ops, members,
			e.clock.Now().Sub(start).Round(time.Hour), time.Since(began).Round(time.Millisecond), strings.Join(kinds, " "))
	})
}
