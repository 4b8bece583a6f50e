package loyalty

import (
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/tiers"
)

// The pure rules of the books, tested directly: no database.

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(days int) *time.Time {
	t := t0.AddDate(0, 0, days)
	return &t
}

func TestAllocate(t *testing.T) {
	lot := func(id string, remaining int64) lotRow { return lotRow{ID: id, Remaining: remaining} }
	for _, tc := range []struct {
		name  string
		lots  []lotRow
		n     int64
		draws []drawRow
		left  int64
	}{
		{"NothingToDraw", []lotRow{lot("a", 5)}, 0, nil, 0},
		{"FromTheFirstLot", []lotRow{lot("a", 5), lot("b", 5)}, 3, []drawRow{{LotID: "a", Points: 3}}, 0},
		{"AllOfTheFirstExactly", []lotRow{lot("a", 5), lot("b", 5)}, 5, []drawRow{{LotID: "a", Points: 5}}, 0},
		{"AcrossLots", []lotRow{lot("a", 5), lot("b", 5), lot("c", 5)}, 12,
			[]drawRow{{LotID: "a", Points: 5}, {LotID: "b", Points: 5}, {LotID: "c", Points: 2}}, 0},
		{"SkipsEmptyLots", []lotRow{lot("a", 0), lot("b", 4)}, 3, []drawRow{{LotID: "b", Points: 3}}, 0},
		{"ShortLeavesTheRest", []lotRow{lot("a", 2), lot("b", 3)}, 9,
			[]drawRow{{LotID: "a", Points: 2}, {LotID: "b", Points: 3}}, 4},
		{"NoLots", nil, 7, nil, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			draws, left := allocate(tc.lots, tc.n)
			if !reflect.DeepEqual(draws, tc.draws) || left != tc.left {
				t.Fatalf("allocate(%d) = %+v, left %d; want %+v, left %d", tc.n, draws, left, tc.draws, tc.left)
			}
		})
	}
}

func TestDrawOrder(t *testing.T) {
	lots := []lotRow{
		{ID: "never-old", AvailableAt: t0.AddDate(0, 0, -9)},
		{ID: "never-new", AvailableAt: t0.AddDate(0, 0, -1)},
		{ID: "late", AvailableAt: t0.AddDate(0, 0, -9), ExpiresAt: at(30)},
		{ID: "soon-b", AvailableAt: t0.AddDate(0, 0, -5), ExpiresAt: at(2)},
		{ID: "soon-a", AvailableAt: t0.AddDate(0, 0, -5), ExpiresAt: at(2)},
		{ID: "soon-earlier", AvailableAt: t0.AddDate(0, 0, -6), ExpiresAt: at(2)},
		{ID: "first", AvailableAt: t0.AddDate(0, 0, -1), ExpiresAt: at(1)},
	}
	sorted := func(less func(x, y lotRow) bool) []string {
		l := append([]lotRow(nil), lots...)
		sort.Slice(l, func(i, j int) bool { return less(l[i], l[j]) })
		ids := make([]string, len(l))
		for i, x := range l {
			ids[i] = x.ID
		}
		return ids
	}
	t.Run("Available", func(t *testing.T) {
		want := []string{"first", "soon-earlier", "soon-a", "soon-b", "late", "never-old", "never-new"}
		if got := sorted(lotBefore); !reflect.DeepEqual(got, want) {
			t.Fatalf("lotBefore orders %v, want %v", got, want)
		}
	})
	t.Run("Pending", func(t *testing.T) {
		want := []string{"late", "never-old", "soon-earlier", "soon-a", "soon-b", "first", "never-new"}
		if got := sorted(pendingBefore); !reflect.DeepEqual(got, want) {
			t.Fatalf("pendingBefore orders %v, want %v", got, want)
		}
	})
}

func TestLapse(t *testing.T) {
	last := t0.AddDate(0, 0, -10)
	for _, tc := range []struct {
		name    string
		policy  string
		days    int
		last    *time.Time
		expires *time.Time
		at      time.Time
		why     string
		ok      bool
	}{
		{"NeverExpires", "never", 0, &last, nil, time.Time{}, "", false},
		{"OwnExpiry", ExpiryLot, 40, &last, at(5), at(5).UTC(), expiredByLot, true},
		{"NoExpiryUnderLotPolicy", ExpiryLot, 40, &last, nil, time.Time{}, "", false},
		{"InactivityDeadline", ExpiryInactivity, 30, &last, nil, last.AddDate(0, 0, 30), expiredByInactivity, true},
		{"OwnExpiryFirst", ExpiryInactivity, 30, &last, at(3), at(3).UTC(), expiredByLot, true},
		{"OwnExpiryAtTheDeadline", ExpiryInactivity, 30, &last, at(20), at(20).UTC(), expiredByLot, true},
		{"DeadlineFirst", ExpiryInactivity, 30, &last, at(25), last.AddDate(0, 0, 30), expiredByInactivity, true},
		{"NoActivityYet", ExpiryInactivity, 30, nil, at(25), at(25).UTC(), expiredByLot, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &account{prog: &Program{ExpiryPolicy: tc.policy, ExpiryDays: tc.days}, balance: balanceRow{LastActivityAt: tc.last}}
			got, why, ok := a.lapse(lotRow{ExpiresAt: tc.expires})
			if ok != tc.ok || why != tc.why || !got.Equal(tc.at) {
				t.Fatalf("lapse = %s %q %v, want %s %q %v", got, why, ok, tc.at, tc.why, tc.ok)
			}
		})
	}
}

func TestExpiryFor(t *testing.T) {
	for _, tc := range []struct {
		policy string
		days   int
		want   *time.Time
	}{
		{ExpiryLot, 40, at(40)},
		{ExpiryLot, 0, nil},
		{ExpiryInactivity, 40, nil},
		{"never", 0, nil},
	} {
		got := (&Program{ExpiryPolicy: tc.policy, ExpiryDays: tc.days}).ExpiryFor(t0)
		if (got == nil) != (tc.want == nil) || (got != nil && !got.Equal(*tc.want)) {
			t.Fatalf("%s %d days: ExpiryFor = %v, want %v", tc.policy, tc.days, got, tc.want)
		}
	}
}

func TestInPeriod(t *testing.T) {
	p := tiers.Period{Kind: tiers.Rolling, WindowDays: 30}
	for _, tc := range []struct {
		name     string
		occurred time.Time
		want     bool
	}{
		{"AtTheStart", t0.AddDate(0, 0, -30), true},
		{"JustBeforeTheStart", t0.AddDate(0, 0, -30).Add(-time.Microsecond), false},
		{"Now", t0, true},
		{"AfterNow", t0.Add(time.Microsecond), false},
	} {
		if got := inPeriod(p, tc.occurred, t0); got != tc.want {
			t.Fatalf("%s: inPeriod = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func testProgram() *Program {
	return &Program{Currency: "EUR", PointsPerUnit: decimal.NewFromInt(1), TierPeriod: tiers.Rolling, TierWindowDays: 365,
		loc: time.UTC, exponent: 2}
}

func TestOffersApply(t *testing.T) {
	prog := testProgram()
	three := 3
	pur := purchase{PurchaseInput: PurchaseInput{StoreID: "s1", Channel: "pos"}, at: t0, total: 10000,
		items: []Item{{SKU: "A1", Category: "shoes", Amount: 6000}, {SKU: "B2", Category: "bags", Amount: 4000}}}
	for _, tc := range []struct {
		name  string
		offer offerRow
		mo    memberOffers
		want  []BreakdownLine
	}{
		{"DoubleOnTheTotal", offerRow{ID: "o", Kind: OfferMultiplier, Multiplier: "2", TargetAll: true}, memberOffers{},
			[]BreakdownLine{{Source: "offer", OfferID: "o", Points: 100}}},
		{"BonusPoints", offerRow{ID: "o", Kind: OfferBonus, BonusPoints: 250, TargetAll: true}, memberOffers{},
			[]BreakdownLine{{Source: "offer", OfferID: "o", Points: 250}}},
		{"CategoryOnly", offerRow{ID: "o", Kind: OfferMultiplier, Multiplier: "1.5", TargetAll: true, Conditions: `{"categories":["bags"]}`},
			memberOffers{}, []BreakdownLine{{Source: "offer", OfferID: "o", Points: 20}}},
		{"NoEligibleItem", offerRow{ID: "o", Kind: OfferBonus, BonusPoints: 5, TargetAll: true, Conditions: `{"skus":["Z9"]}`},
			memberOffers{}, nil},
		{"OtherStore", offerRow{ID: "o", Kind: OfferBonus, BonusPoints: 5, TargetAll: true, Conditions: `{"store_ids":["s2"]}`},
			memberOffers{}, nil},
		{"OtherChannel", offerRow{ID: "o", Kind: OfferBonus, BonusPoints: 5, TargetAll: true, Conditions: `{"channels":["web"]}`},
			memberOffers{}, nil},
		{"BelowMinSpend", offerRow{ID: "o", Kind: OfferBonus, BonusPoints: 5, TargetAll: true, Conditions: `{"min_spend":10001}`},
			memberOffers{}, nil},
		{"AtMinSpend", offerRow{ID: "o", Kind: OfferBonus, BonusPoints: 5, TargetAll: true, Conditions: `{"min_spend":10000}`},
			memberOffers{}, []BreakdownLine{{Source: "offer", OfferID: "o", Points: 5}}},
		{"NotTargeted", offerRow{ID: "o", Kind: OfferBonus, BonusPoints: 5}, memberOffers{}, nil},
		{"TargetedByName", offerRow{ID: "o", Kind: OfferBonus, BonusPoints: 5}, memberOffers{targeted: map[string]bool{"o": true}},
			[]BreakdownLine{{Source: "offer", OfferID: "o", Points: 5}}},
		{"TargetedBySegment", offerRow{ID: "o", Kind: OfferBonus, BonusPoints: 5, TargetSegments: `["loyal"]`},
			memberOffers{segments: map[string]bool{"loyal": true}}, []BreakdownLine{{Source: "offer", OfferID: "o", Points: 5}}},
		{"NotActivated", offerRow{ID: "o", Kind: OfferBonus, BonusPoints: 5, TargetAll: true, RequiresActivation: true}, memberOffers{}, nil},
		{"Activated", offerRow{ID: "o", Kind: OfferBonus, BonusPoints: 5, TargetAll: true, RequiresActivation: true},
			memberOffers{activated: map[string]bool{"o": true}}, []BreakdownLine{{Source: "offer", OfferID: "o", Points: 5}}},
		{"UsedUp", offerRow{ID: "o", Kind: OfferBonus, BonusPoints: 5, TargetAll: true, MaxUsesPerMember: &three},
			memberOffers{uses: map[string]int{"o": 3}}, nil},
		{"UsesLeft", offerRow{ID: "o", Kind: OfferBonus, BonusPoints: 5, TargetAll: true, MaxUsesPerMember: &three},
			memberOffers{uses: map[string]int{"o": 2}}, []BreakdownLine{{Source: "offer", OfferID: "o", Points: 5}}},
		{"FlooredOnItsOwn", offerRow{ID: "o", Kind: OfferMultiplier, Multiplier: "1.333", TargetAll: true}, memberOffers{},
			[]BreakdownLine{{Source: "offer", OfferID: "o", Points: 33}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mo := tc.mo
			mo.offers = []offerRow{tc.offer}
			if got := mo.apply(prog, pur); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("apply = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestEarning(t *testing.T) {
	prog := testProgram()
	ladder := tiers.NewLadder([]tiers.Tier{
		{Code: "base", Rank: 0, EarnMultiplier: decimal.NewFromInt(1)},
		{Code: "silver", Rank: 1, EarnMultiplier: decimal.RequireFromString("1.5"), QualifyingSpend: 50000},
		{Code: "gold", Rank: 2, EarnMultiplier: decimal.NewFromInt(2), QualifyingSpend: 100000},
	})
	code := func(s string) *string { return &s }
	for _, tc := range []struct {
		name        string
		tier        *string
		total       int64
		occurred    time.Time
		spendBefore int64
		points      int64
		after       string
	}{
		{"EntryTier", nil, 1999, t0, 0, 19, "base"},
		{"AtTheTierHeldBefore", code("silver"), 10000, t0, 60000, 150, "silver"},
		{"UpgradeAfterThePurchase", code("base"), 10000, t0, 45000, 100, "silver"},
		{"SkipsATier", code("base"), 100000, t0, 0, 1000, "gold"},
		{"NeverDown", code("gold"), 100, t0, 0, 2, "gold"},
		{"OutsideTheWindowLiftsNothing", code("base"), 10000, t0.AddDate(-2, 0, 0), 45000, 100, "base"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pur := purchase{at: tc.occurred, total: tc.total}
			q, err := earning(prog, ladder, memberRow{ID: "m", TierCode: tc.tier}, pur, tc.spendBefore, t0, &memberOffers{})
			if err != nil {
				t.Fatal(err)
			}
			if q.PointsEarned != tc.points || q.TierAfter == nil || *q.TierAfter != tc.after {
				t.Fatalf("earning = %d points, tier after %v; want %d, %s", q.PointsEarned, q.TierAfter, tc.points, tc.after)
			}
		})
	}
}
