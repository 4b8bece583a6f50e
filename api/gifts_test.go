package api

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/rewards"
)

// gfUTC is a UTC instant written as in the contract's examples.
func gfUTC(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// gfMember enrols a member with a birthday and, unless tz is empty, a
// timezone of its own.
func (e *env) gfMember(birthday, tz string) string {
	e.t.Helper()
	n := seq.Add(1)
	body := map[string]any{"external_id": fmt.Sprintf("G-%d", n), "email": fmt.Sprintf("g%d@example.com", n), "birthday": birthday}
	if tz != "" {
		body["timezone"] = tz
	}
	return e.do("POST", "/v1/members", e.pos(), body).must(e.t, 201).JSON(e.t)["id"].(string)
}

// gfReward adds a catalog reward and returns its id.
func (e *env) gfReward(code string, cost int64) string {
	e.t.Helper()
	return e.do("POST", "/v1/rewards", e.marketer(), map[string]any{"code": code, "name": "Reward " + code, "cost_points": cost}).
		must(e.t, 201).JSON(e.t)["id"].(string)
}

// gfProgram turns the birthday gift on; extra settings (such as the program
// timezone) go in as top-level program fields.
func (e *env) gfProgram(gift map[string]any, extra ...any) {
	e.t.Helper()
	gift["enabled"] = true
	body := map[string]any{"birthday_gift": gift}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i].(string)] = extra[i+1]
	}
	e.do("PUT", "/v1/program", e.marketer(), body).must(e.t, 200)
}

// gfRun runs the birthday-gifts job as of asOf and returns its summary.
func (e *env) gfRun(asOf time.Time) rewards.GiftSummary {
	e.t.Helper()
	var rec struct {
		Status  string              `json:"status"`
		Summary rewards.GiftSummary `json:"summary"`
	}
	e.do("POST", "/v1/jobs/birthday-gifts/run", e.marketer(), map[string]any{"as_of": asOf.Format(time.RFC3339Nano)}).
		must(e.t, 200).Decode(e.t, &rec)
	if rec.Status != "succeeded" {
		e.t.Fatalf("birthday-gifts as of %s: status %q", asOf, rec.Status)
	}
	return rec.Summary
}

// gfExpire runs the expire-points job as of now, so that the ledger
// catches up with points that expired.
func (e *env) gfExpire() {
	e.t.Helper()
	r := e.do("POST", "/v1/jobs/expire-points/run", e.marketer(), map[string]any{"as_of": e.clock.Now().Format(time.RFC3339Nano)}).
		must(e.t, 200).JSON(e.t)
	if r["status"] != "succeeded" {
		e.t.Fatalf("expire-points: %v", r)
	}
}

// gfGifts lists a member's gifts with the given token.
func (e *env) gfGifts(member, tok string) []rewards.Gift {
	e.t.Helper()
	var l struct {
		Items []rewards.Gift `json:"items"`
	}
	e.do("GET", "/v1/members/"+member+"/gifts", tok, nil).must(e.t, 200).Decode(e.t, &l)
	return l.Items
}

// gfYears is the years of a member's gifts, oldest first.
func (e *env) gfYears(member string) []int {
	e.t.Helper()
	var ys []int
	for _, g := range e.gfGifts(member, e.admin()) {
		ys = append(ys, g.Year)
	}
	sort.Ints(ys)
	return ys
}

// gfGiftEntries is the points of a member's ledger entries of kind gift.
func (e *env) gfGiftEntries(member string) []int64 {
	e.t.Helper()
	var pts []int64
	for _, en := range ofKind(e.ofLedger(member), "gift") {
		pts = append(pts, en.Points)
	}
	return pts
}

func TestBirthdayGiftTimezones(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		// Program timezone Asia/Tokyo (UTC+9); in June Auckland is UTC+12
		// (NZST) and Los Angeles UTC-7 (PDT). Local midnights starting
		// 15 June 2026: Auckland 14T12:00Z, Tokyo 14T15:00Z, UTC 15T00:00Z,
		// Los Angeles 15T07:00Z.
		setup := func(t *testing.T, birthday string) (*env, map[string]string) {
			e := newEnv(t, dialect)
			rw := e.gfReward("mini", 500)
			e.gfProgram(map[string]any{"reward_ids": []string{rw}, "bonus_points": 10, "claim_days": 30}, "timezone", "Asia/Tokyo")
			ms := map[string]string{
				"auckland": e.gfMember(birthday, "Pacific/Auckland"),
				"utc":      e.gfMember(birthday, "UTC"),
				"la":       e.gfMember(birthday, "America/Los_Angeles"),
				"program":  e.gfMember(birthday, ""),
			}
			// The gifts are listed after every run; the clock sits after them all.
			e.clock.Set(gfUTC("2026-06-16T12:00:00Z"))
			return e, ms
		}
		type step struct {
			at  string
			get string // the member given a gift by this run, if any
		}
		play := func(t *testing.T, e *env, ms map[string]string, steps []step) {
			have := map[string]bool{}
			for _, s := range steps {
				sum := e.gfRun(gfUTC(s.at))
				want := int64(0)
				if s.get != "" {
					want = 1
					have[s.get] = true
				}
				if sum.Given != want || !sum.Points.Equal(loyalty.SumOf(10*want)) {
					t.Errorf("as of %s: given %d (%d points), want %d", s.at, sum.Given, sum.Points, want)
				}
				for name, id := range ms {
					n := len(e.gfGifts(id, e.admin()))
					if (n == 1) != have[name] || n > 1 {
						t.Errorf("after the run as of %s: %s has %d gifts, want %v", s.at, name, n, have[name])
					}
				}
			}
		}

		t.Run("StartOfTheLocalDay", func(t *testing.T) {
			e, ms := setup(t, "1990-06-15")
			play(t, e, ms, []step{
				{"2026-06-14T11:59:59Z", ""}, // Auckland 14th 23:59:59
				{"2026-06-14T12:00:00Z", "auckland"},
				{"2026-06-14T14:59:59Z", ""}, // Tokyo 14th 23:59:59
				{"2026-06-14T15:00:00Z", "program"},
				{"2026-06-14T23:59:59Z", ""},
				{"2026-06-15T00:00:00Z", "utc"},
				{"2026-06-15T06:59:59Z", ""}, // Los Angeles 14th 23:59:59
				{"2026-06-15T07:00:00Z", "la"},
				{"2026-06-15T11:59:59Z", ""}, // the last second of the 15th in Auckland
			})
			// claim_days 30 from the local start of the birthday.
			for name, want := range map[string]string{
				"auckland": "2026-07-14T12:00:00Z", "program": "2026-07-14T15:00:00Z",
				"utc": "2026-07-15T00:00:00Z", "la": "2026-07-15T07:00:00Z",
			} {
				gs := e.gfGifts(ms[name], e.token(loyalty.RoleMember, ms[name]))
				if len(gs) != 1 {
					t.Fatalf("%s: %d gifts", name, len(gs))
				}
				g := gs[0]
				if g.Year != 2026 || g.Status != "available" || !g.ExpiresAt.Equal(gfUTC(want)) {
					t.Errorf("%s: year %d status %s expires %s, want 2026 available %s", name, g.Year, g.Status, g.ExpiresAt, want)
				}
				if pts := e.gfGiftEntries(ms[name]); len(pts) != 1 || pts[0] != 10 {
					t.Errorf("%s: gift entries %v, want [10]", name, pts)
				}
				if b := e.balance(ms[name]); b.Available != 10 {
					t.Errorf("%s: available %d, want 10", name, b.Available)
				}
			}
			e.checkLedger()
		})

		t.Run("EndOfTheLocalDay", func(t *testing.T) {
			// Born on the 14th; runs go backwards in time so that each zone
			// is first seen at the first instant of its 15th (nothing), then
			// one second earlier, the last second of its 14th (the gift).
			e, ms := setup(t, "1990-06-14")
			play(t, e, ms, []step{
				{"2026-06-15T07:00:00Z", ""},
				{"2026-06-15T06:59:59Z", "la"},
				{"2026-06-15T00:00:00Z", ""},
				{"2026-06-14T23:59:59Z", "utc"},
				{"2026-06-14T15:00:00Z", ""},
				{"2026-06-14T14:59:59Z", "program"},
				{"2026-06-14T12:00:00Z", ""},
				{"2026-06-14T11:59:59Z", "auckland"},
			})
			gs := e.gfGifts(ms["la"], e.admin())
			if len(gs) != 1 || !gs[0].ExpiresAt.Equal(gfUTC("2026-07-14T07:00:00Z")) {
				t.Errorf("la gift %+v, want expiry 2026-07-14T07:00:00Z", gs)
			}
			e.checkLedger()
		})

		t.Run("ClaimWindowAcrossDST", func(t *testing.T) {
			// Los Angeles moves to PDT on 8 March 2026: the birthday starts at
			// 2026-03-01T00:00-08:00 (08:00Z) and 30 local days later is
			// 2026-03-31T00:00-07:00 (07:00Z).
			e := newEnv(t, dialect)
			rw := e.gfReward("mini", 500)
			e.gfProgram(map[string]any{"reward_ids": []string{rw}, "bonus_points": 0, "claim_days": 30})
			la := e.gfMember("1990-03-01", "America/Los_Angeles")
			if s := e.gfRun(gfUTC("2026-03-01T07:59:59Z")); s.Given != 0 {
				t.Errorf("last second of 28 February in Los Angeles: %+v", s)
			}
			if s := e.gfRun(gfUTC("2026-03-01T08:00:00Z")); s.Given != 1 || s.Points.Sign() != 0 {
				t.Errorf("first second of 1 March in Los Angeles: %+v", s)
			}
			gs := e.gfGifts(la, e.admin())
			if len(gs) != 1 || !gs[0].ExpiresAt.Equal(gfUTC("2026-03-31T07:00:00Z")) {
				t.Errorf("gift %+v, want expiry 2026-03-31T07:00:00Z", gs)
			}
			// No bonus configured: no gift entry.
			if pts := e.gfGiftEntries(la); len(pts) != 0 {
				t.Errorf("gift entries %v with bonus_points 0", pts)
			}
			e.checkLedger()
		})
	})
}

func TestBirthdayGiftLeapDay(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		rw := e.gfReward("mini", 500)
		e.gfProgram(map[string]any{"reward_ids": []string{rw}, "bonus_points": 5, "claim_days": 30})
		leapling := e.gfMember("1992-02-29", "")
		feb28 := e.gfMember("1990-02-28", "")
		mar1 := e.gfMember("1990-03-01", "")
		run := func(at string, wantGiven int64) {
			t.Helper()
			e.clock.Set(gfUTC(at))
			if sum := e.gfRun(gfUTC(at)); sum.Given != wantGiven {
				t.Errorf("as of %s: given %d, want %d", at, sum.Given, wantGiven)
			}
		}
		// 2027 is a common year: 1 March is not the leapling's day, 28 February is.
		run("2027-03-01T00:00:00Z", 1) // mar1 only
		if ys := e.gfYears(leapling); len(ys) != 0 {
			t.Fatalf("leapling has gifts %v on 1 March 2027", ys)
		}
		run("2027-02-27T23:59:59Z", 0)
		run("2027-02-28T00:00:00Z", 2) // leapling and feb28
		run("2027-02-28T23:59:59Z", 0)
		if ys := e.gfYears(leapling); fmt.Sprint(ys) != "[2027]" {
			t.Fatalf("leapling gifts %v, want [2027]", ys)
		}
		// 2028 is a leap year: the leapling waits for 29 February.
		run("2028-02-28T00:00:00Z", 1) // feb28 only
		run("2028-02-28T23:59:59Z", 0)
		if ys := e.gfYears(leapling); fmt.Sprint(ys) != "[2027]" {
			t.Fatalf("leapling gifts %v after 28 February 2028, want [2027]", ys)
		}
		run("2028-02-29T00:00:00Z", 1) // leapling
		run("2028-03-01T00:00:00Z", 1) // mar1
		for name, c := range map[string]struct {
			id   string
			want string
		}{"leapling": {leapling, "[2027 2028]"}, "feb28": {feb28, "[2027 2028]"}, "mar1": {mar1, "[2027 2028]"}} {
			if ys := e.gfYears(c.id); fmt.Sprint(ys) != c.want {
				t.Errorf("%s gifts %v, want %s", name, ys, c.want)
			}
		}
		gs := e.gfGifts(leapling, e.admin())
		for _, g := range gs {
			want := map[int]string{2027: "2027-03-30T00:00:00Z", 2028: "2028-03-30T00:00:00Z"}[g.Year]
			if !g.ExpiresAt.Equal(gfUTC(want)) {
				t.Errorf("leapling %d gift expires %s, want %s", g.Year, g.ExpiresAt, want)
			}
		}
		if pts := e.gfGiftEntries(leapling); fmt.Sprint(pts) != "[5 5]" {
			t.Errorf("leapling gift entries %v", pts)
		}
		// The 2027 gifts' points expired on 28 February 2028.
		e.gfExpire()
		for _, m := range []string{leapling, feb28, mar1} {
			if b := e.balance(m); b.Available != 5 || b.LifetimeEarned != 10 {
				t.Errorf("balance %+v, want 5 of 10", b)
			}
		}
		e.checkLedger()
	})
}

func TestBirthdayGiftOncePerYear(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		// Each case has an engine of its own, as its clock goes its own way.
		setup := func(t *testing.T) *env {
			e := newEnv(t, dialect)
			rw := e.gfReward("mini", 500)
			e.gfProgram(map[string]any{"reward_ids": []string{rw}, "bonus_points": 25, "claim_days": 30})
			return e
		}

		t.Run("RerunsTheSameDay", func(t *testing.T) {
			e := setup(t)
			m := e.gfMember("1990-06-15", "UTC")
			e.clock.Set(gfUTC("2026-06-15T00:00:00Z"))
			if s := e.gfRun(gfUTC("2026-06-15T00:00:00Z")); s.Given != 1 || !s.Points.Equal(loyalty.SumOf(25)) {
				t.Fatalf("first run %+v", s)
			}
			for _, at := range []string{"2026-06-15T00:00:00Z", "2026-06-15T00:00:01Z", "2026-06-15T18:30:00Z", "2026-06-15T23:59:59.999999Z"} {
				e.clock.Set(gfUTC(at))
				if s := e.gfRun(gfUTC(at)); s.Given != 0 || s.Points.Sign() != 0 {
					t.Errorf("re-run as of %s: %+v", at, s)
				}
			}
			if ys := e.gfYears(m); fmt.Sprint(ys) != "[2026]" {
				t.Errorf("gifts %v", ys)
			}
			if pts := e.gfGiftEntries(m); fmt.Sprint(pts) != "[25]" {
				t.Errorf("gift entries %v", pts)
			}
			if b := e.balance(m); b.Available != 25 || b.LifetimeEarned != 25 {
				t.Errorf("balance %+v", b)
			}

			// A birthday moved, after the day, to later in the year gives
			// no second gift that year; the next year it does.
			e.do("PATCH", "/v1/members/"+m, e.pos(), map[string]any{"birthday": "1990-09-10"}).must(t, 200)
			e.clock.Set(gfUTC("2026-09-10T08:00:00Z"))
			if s := e.gfRun(gfUTC("2026-09-10T08:00:00Z")); s.Given != 0 {
				t.Errorf("moved birthday: %+v", s)
			}
			if ys := e.gfYears(m); fmt.Sprint(ys) != "[2026]" {
				t.Errorf("gifts after the move %v", ys)
			}
			e.clock.Set(gfUTC("2027-09-10T08:00:00Z"))
			if s := e.gfRun(gfUTC("2027-09-10T08:00:00Z")); s.Given != 1 || !s.Points.Equal(loyalty.SumOf(25)) {
				t.Errorf("next year: %+v", s)
			}
			if ys := e.gfYears(m); fmt.Sprint(ys) != "[2026 2027]" {
				t.Errorf("gifts next year %v", ys)
			}
			if pts := e.gfGiftEntries(m); fmt.Sprint(pts) != "[25 25]" {
				t.Errorf("gift entries %v", pts)
			}
			// The 2026 gift's points expired 365 days after 2026-06-15.
			if b := e.balance(m); b.Available != 25 || b.LifetimeEarned != 50 {
				t.Errorf("balance %+v, want 25 available of 50 earned", b)
			}
			e.gfExpire()
			if exp := ofKind(e.ofLedger(m), "expire"); len(exp) != 1 || exp[0].Points != -25 {
				t.Errorf("expire entries %+v", exp)
			}
			e.checkLedger()
		})

		t.Run("PaysDebtFirst", func(t *testing.T) {
			e := setup(t)
			// 100 points earned and spent, then the purchase returned: a debt
			// of 100. The 25-point gift pays part of it.
			m := e.gfMember("1990-08-20", "")
			e.clock.Set(gfUTC("2026-08-01T12:00:00Z"))
			p := e.buy(m, 10000, "PD-1")
			r100 := e.gfReward("hundred", 100)
			e.do("POST", "/v1/members/"+m+"/redemptions", e.pos(), map[string]any{"reward_id": r100}).must(t, 201)
			e.do("POST", "/v1/purchases/"+p["id"].(string)+"/returns", e.pos(), map[string]any{"external_id": "PD-R", "amount": 10000}).must(t, 201)
			if b := e.balance(m); b.Available != -100 {
				t.Fatalf("before the gift: %+v", b)
			}
			e.clock.Set(gfUTC("2026-08-20T06:00:00Z"))
			if s := e.gfRun(gfUTC("2026-08-20T06:00:00Z")); s.Given != 1 {
				t.Errorf("summary %+v", s)
			}
			if b := e.balance(m); b.Available != -75 {
				t.Errorf("after the gift: available %d, want -75", b.Available)
			}
			if n := e.ofCount("SELECT debt FROM member_balances WHERE member_id = ?", m); n != 75 {
				t.Errorf("debt %d, want 75", n)
			}
			e.checkLedger()
		})

		t.Run("ConcurrentRuns", func(t *testing.T) {
			e := setup(t)
			for round, runners := range []int{2, 8} {
				day := gfUTC("2026-07-01T00:00:00Z").AddDate(0, 0, round)
				m := e.gfMember("1990-"+day.Format("01-02"), "")
				asOf := day.Add(8 * time.Hour)
				e.clock.Set(asOf)
				rs := make([]resp, runners)
				errs := make([]error, runners)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range rs {
					wg.Add(1)
					go func(i int) {
						defer wg.Done()
						<-start
						rs[i], errs[i] = e.ofSend("POST", "/v1/jobs/birthday-gifts/run", e.marketer(),
							map[string]any{"as_of": asOf.Format(time.RFC3339)})
					}(i)
				}
				close(start)
				wg.Wait()
				var given int64
				for i, r := range rs {
					if errs[i] != nil {
						t.Fatal(errs[i])
					}
					var rec struct {
						Status  string              `json:"status"`
						Summary rewards.GiftSummary `json:"summary"`
					}
					r.must(t, 200).Decode(t, &rec)
					if rec.Status != "succeeded" {
						t.Errorf("run %d: %s", i, r.Body)
					}
					given += rec.Summary.Given
				}
				if given != 1 {
					t.Errorf("%d concurrent runs gave %d gifts, want 1", runners, given)
				}
				if ys := e.gfYears(m); fmt.Sprint(ys) != "[2026]" {
					t.Errorf("gifts %v", ys)
				}
				if pts := e.gfGiftEntries(m); fmt.Sprint(pts) != "[25]" {
					t.Errorf("%d concurrent runs: gift entries %v, want [25]", runners, pts)
				}
				if b := e.balance(m); b.Available != 25 || b.LifetimeEarned != 25 {
					t.Errorf("%d concurrent runs: balance %+v, want 25", runners, b)
				}
			}
			e.checkLedger()
		})
	})
}

func TestBirthdayGiftMinTier(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		rw := e.gfReward("mini", 500)
		e.gfProgram(map[string]any{"reward_ids": []string{rw}, "bonus_points": 25, "claim_days": 30, "min_tier": "vib"})
		insider := e.gfMember("1990-06-15", "")
		vib := e.gfMember("1990-06-15", "")
		rouge := e.gfMember("1990-06-15", "")
		// A purchase earns at the tier held before it: 35000 → 350, 100000 → 1000.
		if r := e.buy(vib, 35000, "MT-1"); r["tier_after"] != "vib" || num(r["points_earned"]) != 350 {
			t.Fatalf("vib purchase %v", r)
		}
		if r := e.buy(rouge, 100000, "MT-2"); r["tier_after"] != "rouge" || num(r["points_earned"]) != 1000 {
			t.Fatalf("rouge purchase %v", r)
		}
		e.clock.Set(gfUTC("2026-06-15T10:00:00Z"))
		if s := e.gfRun(gfUTC("2026-06-15T10:00:00Z")); s.Given != 2 || !s.Points.Equal(loyalty.SumOf(50)) {
			t.Errorf("summary %+v, want 2 gifts", s)
		}
		for name, c := range map[string]struct {
			id      string
			gifts   int
			balance int64
		}{"insider": {insider, 0, 0}, "vib": {vib, 1, 375}, "rouge": {rouge, 1, 1025}} {
			if n := len(e.gfGifts(c.id, e.admin())); n != c.gifts {
				t.Errorf("%s: %d gifts, want %d", name, n, c.gifts)
			}
			if n := len(e.gfGiftEntries(c.id)); n != c.gifts {
				t.Errorf("%s: %d gift entries, want %d", name, n, c.gifts)
			}
			if b := e.balance(c.id); b.Available != c.balance {
				t.Errorf("%s: available %d, want %d", name, b.Available, c.balance)
			}
		}
		e.checkLedger()
	})
}

func TestBirthdayGiftClaim(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		mini := e.gfReward("mini", 500)
		tote := e.gfReward("tote", 800)
		other := e.gfReward("other", 100)
		e.gfProgram(map[string]any{"reward_ids": []string{tote, mini}, "bonus_points": 10, "claim_days": 30})
		m := e.gfMember("1990-06-15", "UTC")
		o := e.gfMember("1990-06-15", "UTC")
		mt, ot := e.token(loyalty.RoleMember, m), e.token(loyalty.RoleMember, o)
		e.clock.Set(gfUTC("2026-06-15T09:00:00Z"))
		if s := e.gfRun(gfUTC("2026-06-15T00:00:00Z")); s.Given != 2 {
			t.Fatalf("summary %+v", s)
		}

		gs := e.gfGifts(m, mt)
		if len(gs) != 1 {
			t.Fatalf("gifts %+v", gs)
		}
		g := gs[0]
		if g.Year != 2026 || g.Status != "available" || !g.ExpiresAt.Equal(gfUTC("2026-07-15T00:00:00Z")) || g.BonusPoints != 10 {
			t.Errorf("gift %+v", g)
		}
		if len(g.Options) != 2 {
			t.Fatalf("options %+v", g.Options)
		}
		byID := map[string]rewards.Reward{}
		for _, op := range g.Options {
			byID[op.ID] = op
		}
		if r := byID[mini]; r.Code != "mini" || r.Name != "Reward mini" || r.CostPoints != 500 {
			t.Errorf("mini option %+v", r)
		}
		if r := byID[tote]; r.Code != "tote" || r.Name != "Reward tote" || r.CostPoints != 800 {
			t.Errorf("tote option %+v", r)
		}
		claim := func(member, gift, tok string, body any) resp {
			return e.do("POST", "/v1/members/"+member+"/gifts/"+gift+"/claim", tok, body)
		}

		t.Run("RewardNotAnOption", func(t *testing.T) {
			ofProblem(t, claim(m, g.ID, mt, map[string]any{"reward_id": other}), 422, "")
			ofProblem(t, claim(m, g.ID, mt, map[string]any{"reward_id": "no-such-reward"}), 422, "")
			ofProblem(t, claim(m, g.ID, mt, map[string]any{}), 422, "")
		})

		t.Run("AnotherMember", func(t *testing.T) {
			ofProblem(t, e.do("GET", "/v1/members/"+m+"/gifts", ot, nil), 404, "")
			ofProblem(t, claim(m, g.ID, ot, map[string]any{"reward_id": mini}), 404, "")
			// Its own path with the other member's gift is no better.
			ofProblem(t, claim(o, g.ID, ot, map[string]any{"reward_id": mini}), 404, "")
			ofProblem(t, claim(m, "gift:nope", mt, map[string]any{"reward_id": mini}), 404, "")
		})

		t.Run("ClaimOnce", func(t *testing.T) {
			var red rewards.Redemption
			claim(m, g.ID, mt, map[string]any{"reward_id": tote}).must(t, 201).Decode(t, &red)
			if red.PointsSpent != 0 || red.CouponCode == "" || red.RewardID != tote || red.Status != "issued" || red.MemberID != m {
				t.Errorf("redemption %+v", red)
			}
			if red.Balance == nil || red.Balance.Available != 10 {
				t.Errorf("redemption balance %+v, want 10 available", red.Balance)
			}
			c := e.do("GET", "/v1/coupons/"+red.CouponCode, e.pos(), nil).must(t, 200).JSON(t)
			if c["status"] != "issued" || c["reward_id"] != tote {
				t.Errorf("coupon %v", c)
			}
			after := e.gfGifts(m, mt)[0]
			if after.Status != "claimed" || after.RedemptionID == nil || *after.RedemptionID != red.ID {
				t.Errorf("gift after claim %+v", after)
			}
			ofProblem(t, claim(m, g.ID, mt, map[string]any{"reward_id": mini}), 409, "already_claimed")
			ofProblem(t, claim(m, g.ID, mt, map[string]any{"reward_id": tote}), 409, "already_claimed")
			if b := e.balance(m); b.Available != 10 {
				t.Errorf("balance %+v, want the 10 bonus points untouched", b)
			}
		})

		t.Run("Expired", func(t *testing.T) {
			og := e.gfGifts(o, ot)
			if len(og) != 1 {
				t.Fatalf("gifts %+v", og)
			}
			e.clock.Set(gfUTC("2026-07-14T23:59:59Z"))
			if s := e.gfGifts(o, ot)[0].Status; s != "available" {
				t.Errorf("a second before the end: %s", s)
			}
			e.clock.Set(gfUTC("2026-07-15T00:00:00Z"))
			if s := e.gfGifts(o, ot)[0].Status; s != "expired" {
				t.Errorf("at expires_at, before the job: status %s, want expired", s)
			}
			if n := e.ofCount("SELECT COUNT(*) FROM member_gifts WHERE member_id = ? AND status = 'available'", o); n != 1 {
				t.Fatalf("the job has not run, yet %d available rows", n)
			}
			ofProblem(t, claim(o, og[0].ID, ot, map[string]any{"reward_id": mini}), 409, "gift_expired")
			if s := e.gfRun(gfUTC("2026-07-15T00:00:00Z")); s.Expired != 1 {
				t.Errorf("job summary %+v, want 1 expired (the claimed gift stays claimed)", s)
			}
			if s := e.gfGifts(o, ot)[0].Status; s != "expired" {
				t.Errorf("after the job: %s", s)
			}
			if s := e.gfGifts(m, mt)[0].Status; s != "claimed" {
				t.Errorf("claimed gift after the job: %s", s)
			}
			ofProblem(t, claim(o, og[0].ID, ot, map[string]any{"reward_id": mini}), 409, "gift_expired")
		})
		e.checkLedger()
	})
}
