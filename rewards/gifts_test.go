package rewards_test

import (
	"maps"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/rewards"
)

// TestBirthdayGiftsInChunks: a run gives the day's gifts a chunk of
// members a transaction. Over several chunks every member born on the day
// gets one gift, one gift.granted event and one credit of the bonus, the
// summary counts them all, and a second run gives nothing more.
func TestBirthdayGiftsInChunks(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		defer rewards.SetGiftChunk(2)()
		gift := loyalty.BirthdayGift{Enabled: true, BonusPoints: 50, ClaimDays: 30}
		if _, err := e.ledger.UpdateProgram(e.ctx, loyalty.ProgramPatch{BirthdayGift: &gift}); err != nil {
			t.Fatal(err)
		}
		born, other := "1990-03-01", "1990-07-14"
		var today []string
		for i := range 6 {
			b := born
			if i == 5 {
				b = other
			}
			m, _, err := e.ledger.EnrolMember(e.ctx, loyalty.MemberInput{Birthday: &b}, loyalty.IdempotencyKey{})
			if err != nil {
				t.Fatal(err)
			}
			if b == born {
				today = append(today, m.ID)
			}
		}
		count := func(q string, args ...any) int64 {
			var n int64
			if err := e.store.DB().Raw(q, args...).Scan(&n).Error; err != nil {
				t.Fatal(err)
			}
			return n
		}
		sum, err := e.rw.BirthdayGifts(e.ctx, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if sum.Given != 5 || sum.Points.String() != "250" {
			t.Errorf("summary gave %d gifts and %s points, want 5 and 250", sum.Given, sum.Points)
		}
		for _, m := range today {
			if n := count(`SELECT COUNT(*) FROM member_gifts WHERE member_id = ?`, m); n != 1 {
				t.Errorf("member %s has %d gifts, want 1", m, n)
			}
			if n := count(`SELECT COALESCE(SUM(points), 0) FROM ledger_entries WHERE member_id = ? AND kind = 'gift'`, m); n != 50 {
				t.Errorf("member %s was credited %d gift points, want 50", m, n)
			}
			if n := count(`SELECT COUNT(*) FROM events WHERE member_id = ? AND type = 'gift.granted'`, m); n != 1 {
				t.Errorf("member %s has %d gift.granted events, want 1", m, n)
			}
		}
		if n := count(`SELECT COUNT(*) FROM member_gifts`); n != 5 {
			t.Errorf("%d gifts in all, want 5 (none for the member born on another day)", n)
		}
		again, err := e.rw.BirthdayGifts(e.ctx, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if again.Given != 0 || count(`SELECT COUNT(*) FROM ledger_entries WHERE kind = 'gift'`) != 5 {
			t.Errorf("a second run gave %d gifts more", again.Given)
		}
	})
}

// TestBirthdayGiftsLockNoMember: on PostgreSQL a gifts run locks the
// balances it credits, not the members' rows, whose pages a lock writes to
// the WAL (a page of members for every gift at a million members). A
// row's xmax names the last transaction that locked or changed it; the
// members' are the same before and after the run.
func TestBirthdayGiftsLockNoMember(t *testing.T) {
	e := newEnv(t, loyalty.Postgres)
	defer rewards.SetGiftChunk(2)()
	gift := loyalty.BirthdayGift{Enabled: true, BonusPoints: 50, ClaimDays: 30}
	if _, err := e.ledger.UpdateProgram(e.ctx, loyalty.ProgramPatch{BirthdayGift: &gift}); err != nil {
		t.Fatal(err)
	}
	born := "1990-03-01"
	var ids []string
	for range 5 {
		m, _, err := e.ledger.EnrolMember(e.ctx, loyalty.MemberInput{Birthday: &born}, loyalty.IdempotencyKey{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	before := loyaltytest.MemberLockers(t, e.store, ids)
	sum, err := e.rw.BirthdayGifts(e.ctx, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Given != 5 {
		t.Fatalf("the run gave %d gifts, want 5", sum.Given)
	}
	if after := loyaltytest.MemberLockers(t, e.store, ids); !maps.Equal(after, before) {
		t.Fatalf("the run locked member rows: xmax %v before, %v after", before, after)
	}
}
