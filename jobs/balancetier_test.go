package jobs_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestBalanceRowsKeepTheMemberTier follows a member's tier through each
// kind of write that moves it (the entry tier given to the members without
// one when it is created, enrolment, an upgrade at a purchase, a move down
// at a review) and checks that its balance row's copy, which the jobs read
// instead of the member's row, follows it; and that the balance.changed of
// a day's expiry, whose balances are read that way, shows the member's
// tier.
func TestBalanceRowsKeepTheMemberTier(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		start := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, start)
		days := 30
		e.program(loyalty.ProgramPatch{ExpiryDays: &days, TierWindowDays: &days})
		same := func(when string, members ...string) {
			t.Helper()
			for _, m := range members {
				var copied *string
				if err := e.store.DB().Raw(`SELECT tier_code FROM member_balances WHERE member_id = ?`, m).Scan(&copied).Error; err != nil {
					t.Fatal(err)
				}
				if got, want := deref(copied), e.tierOf(m); got != want {
					t.Errorf("%s: member %s holds %q, its balance row's copy %q", when, m, want, got)
				}
			}
		}
		early := e.enrol("")
		same("enrolled with no tiers", early)
		e.ladder()
		same("the entry tier created", early)
		late := e.enrol("")
		same("enrolled at the entry tier", late)
		if r := e.buy(late, 35000); deref(r.TierAfter) != "vib" {
			t.Fatalf("a purchase of 35,000 left the member at %q", deref(r.TierAfter))
		}
		same("upgraded at a purchase", early, late)

		later := start.AddDate(0, 0, 2*days)
		e.clock.Set(later)
		if s := string(e.run(t, "tier-review", later).Summary); s != `{"downgraded":1,"judged":1,"brought_forward":false}` {
			t.Fatalf("tier review %s, want one member moved down", s)
		}
		same("moved down at a review", early, late)

		// The purchase's lot lapsed 30 days after it: its expiry keeps the
		// balance and says what it is, with the member's tier.
		if s := string(e.run(t, "expire-points", later).Summary); s != `{"policy":"lot","lots":1,"members":1,"points":350}` {
			t.Fatalf("expiry %s, want the purchase's lot expired", s)
		}
		if _, _, err := e.svc.SequenceEvents(e.ctx); err != nil {
			t.Fatal(err)
		}
		evs, err := e.svc.EventsAfter(e.ctx, 0, loyalty.EventFilter{Types: []string{loyalty.EventBalanceChanged}, MemberID: late}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			t.Fatal("no balance.changed")
		}
		var b struct {
			Available int64 `json:"available"`
			Tier      *struct {
				Code string `json:"code"`
			} `json:"tier"`
		}
		if err := json.Unmarshal(evs[len(evs)-1].Data, &b); err != nil {
			t.Fatal(err)
		}
		if b.Tier == nil || b.Tier.Code != "insider" || b.Available != 0 {
			t.Errorf("the expiry's balance.changed %s, want 0 available at insider", evs[len(evs)-1].Data)
		}
		same("after the expiry", early, late)
	})
}
