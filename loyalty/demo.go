package loyalty

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
)

// ErrNotEmpty reports a demo seed into a database that already has members.
var ErrNotEmpty = errors.New("the database already has members; seed an empty database")

// demoLive is the recent part of the demo posted live through the service;
// what came before it is imported. It is the loyal segment's default window
// (eight weeks), so the baskets that segment counts categories in are
// whole, multi-line baskets.
const demoLive = 8 * 7 * 24 * time.Hour

// DemoOptions sizes the demo program.
type DemoOptions struct {
	Members int
	Seed    int64
	Now     time.Time
	// AfterPurchase, when set, runs after each purchase of the live part
	// with the purchase's time, so a caller can act then (redeem, say) in
	// order.
	AfterPurchase func(ctx context.Context, at time.Time, memberID string) error
}

// DemoSummary counts what SeedDemo wrote.
type DemoSummary struct {
	Members, Purchases, Returns int
	// Payments counts the purchases paid in part with points (§16).
	Payments     int
	PointsIssued int64
	// Imports are the members and purchases imports (§15) the history
	// came in through, in that order.
	Imports []Import
}

var (
	demoCategories = []string{"skincare", "makeup", "fragrance", "haircare", "bath", "body", "tools", "nails",
		"suncare", "men", "lips", "eyes", "face", "cleansers", "masks", "serums", "moisturizers", "toners",
		"brushes", "sponges", "candles", "gifts", "minis", "wellness", "vegan", "clean", "hair-tools", "shampoo",
		"conditioner", "deodorant"}
	demoFirst = []string{"Ada", "Ben", "Chloé", "Dev", "Emma", "Femi", "Grace", "Hiro", "Ines", "Jon", "Kai", "Lena", "Mia", "Noor", "Omar", "Pia"}
	demoLast  = []string{"Martin", "Okafor", "Silva", "Nguyen", "Kowalski", "Haddad", "Ito", "Berg", "Rossi", "Diaz"}
)

// SeedDemo loads a demo program into an empty database: the Insider / VIB /
// Rouge ladder (0 / 350 / 1,000 dollars a year at 1 / 1.25 / 1.5 points per
// dollar) and members with nine months of purchases across categories,
// stores and channels. As a retailer moving to the engine would, it brings
// the members and their history up to eight weeks ago in through the CSV
// import (§15) with earning, so they hold points and tiers; the last eight
// weeks are posted live through the service with its clock at each event's
// time: multi-line baskets, payments with points, some returns, and
// whatever AfterPurchase does.
func SeedDemo(ctx context.Context, store *Store, opt DemoOptions) (DemoSummary, error) {
	var sum DemoSummary
	if opt.Members <= 0 {
		opt.Members = 300
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	var n int64
	if err := store.read(ctx).Model(&memberRow{}).Count(&n).Error; err != nil {
		return sum, fmt.Errorf("seed demo: %w", err)
	}
	if n > 0 {
		return sum, fmt.Errorf("seed demo: %w (%d members)", ErrNotEmpty, n)
	}
	clock := opt.Now.Add(-300 * 24 * time.Hour)
	svc := NewService(store, WithClock(func() time.Time { return clock }))
	name, cur, p := "Beauty Insider", "USD", decimal.NewFromInt(1)
	pend, exp, win := 0, 365, 365
	policy, period, tz := ExpiryLot, "rolling", "America/New_York"
	// Points pay at the till as at Sephora: 500 points pay 10 dollars.
	pay := PointsPayment{Enabled: true, PointsPerUnit: decimal.NewFromInt(50), MinPoints: 500, StepPoints: 500, MaxShare: decimal.NewFromInt(1)}
	if _, err := svc.UpdateProgram(ctx, ProgramPatch{Name: &name, Currency: &cur, PointsPerUnit: &p, PendingDays: &pend,
		ExpiryPolicy: &policy, ExpiryDays: &exp, TierPeriod: &period, TierWindowDays: &win, Timezone: &tz, PointsPayment: &pay}); err != nil {
		return sum, fmt.Errorf("seed demo: %w", err)
	}
	for _, t := range []struct {
		code, name string
		rank       int
		mult       string
		spend      int64
		benefits   []string
	}{
		{"insider", "Insider", 0, "1", 0, []string{"birthday_gift"}},
		{"vib", "VIB", 1, "1.25", 35000, []string{"birthday_gift", "free_shipping"}},
		{"rouge", "Rouge", 2, "1.5", 100000, []string{"birthday_gift", "free_shipping", "early_access"}},
	} {
		m := decimal.RequireFromString(t.mult)
		if _, _, err := svc.PutTier(ctx, t.code, TierInput{Name: &t.name, Rank: &t.rank, EarnMultiplier: &m,
			QualifyingSpend: &t.spend, Benefits: t.benefits}); err != nil {
			return sum, fmt.Errorf("seed demo: %w", err)
		}
	}

	rng := rand.New(rand.NewPCG(uint64(opt.Seed), 0x10ea1))
	// Who pays with points draws from its own source, so the rest of the
	// demo is the same with or without payments.
	payRng := rand.New(rand.NewPCG(uint64(opt.Seed), 0x9a1d))
	type event struct {
		at     time.Time
		member int
	}
	var events []event
	start := opt.Now.Add(-270 * 24 * time.Hour)
	firstAt := make([]time.Time, opt.Members)
	for m := 0; m < opt.Members; m++ {
		// Buyers range from weekly regulars to one-off visitors; some lapse.
		gapDays := []float64{5, 9, 14, 30, 60, 120}[rng.IntN(6)]
		first := start.Add(time.Duration(rng.Float64()*200*24) * time.Hour)
		firstAt[m] = first
		end := opt.Now
		if rng.IntN(4) == 0 {
			end = first.Add(time.Duration(30+rng.IntN(120)) * 24 * time.Hour)
		}
		for t := first; t.Before(end); t = t.Add(time.Duration((0.5+rng.Float64())*gapDays*24) * time.Hour) {
			events = append(events, event{at: t, member: m})
		}
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].at.Before(events[j].at) })

	// The import: every member, enrolled at its first purchase, and the
	// purchases before the live part, one row each with its basket's total
	// and its first line's category (a row of the import is one line).
	cutoff := opt.Now.Add(-demoLive)
	ext := func(m int) string { return fmt.Sprintf("CUST-%05d", m+1) }
	var members, history bytes.Buffer
	mw, hw := csv.NewWriter(&members), csv.NewWriter(&history)
	_ = mw.Write([]string{"external_id", "email", "phone", "first_name", "last_name", "birthday", "timezone", "enrolled_at"})
	for m := range opt.Members {
		f, l := demoFirst[rng.IntN(len(demoFirst))], demoLast[rng.IntN(len(demoLast))]
		bday := time.Date(1960+rng.IntN(45), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
		enrolled := firstAt[m]
		if enrolled.After(cutoff) {
			enrolled = cutoff
		}
		_ = mw.Write([]string{ext(m), fmt.Sprintf("member%04d@example.com", m+1), fmt.Sprintf("+1555%07d", m+1), f, l, bday, tz,
			enrolled.UTC().Format(time.RFC3339)})
	}
	_ = hw.Write([]string{"member_external_id", "external_id", "store_id", "occurred_at", "total", "currency", "channel", "category"})
	type livePurchase struct {
		at     time.Time
		member int
		in     PurchaseInput
	}
	var live []livePurchase
	for i, ev := range events {
		in := demoBasket(rng, "", i, ev.at)
		if !ev.at.Before(cutoff) {
			live = append(live, livePurchase{at: ev.at, member: ev.member, in: in})
			continue
		}
		_ = hw.Write([]string{ext(ev.member), in.ExternalID, in.StoreID, in.OccurredAt, strconv.FormatInt(*in.Total, 10),
			in.Currency, in.Channel, in.Items[0].Category})
	}
	for _, w := range []*csv.Writer{mw, hw} {
		if w.Flush(); w.Error() != nil {
			return sum, fmt.Errorf("seed demo: %w", w.Error())
		}
	}
	// The import runs on the day the live part starts, as on the day the
	// program moved to the engine: tiers and balances are those as of then.
	clock = cutoff
	for _, f := range []struct {
		kind string
		file *bytes.Buffer
	}{{ImportMembers, &members}, {ImportPurchases, &history}} {
		imp, err := svc.BeginImport(ctx, ImportOptions{Kind: f.kind, Earn: f.kind == ImportPurchases})
		if err != nil {
			return sum, fmt.Errorf("seed demo: %w", err)
		}
		if imp, err = svc.RunImport(ctx, imp.ID, f.file); err != nil {
			return sum, fmt.Errorf("seed demo: %w", err)
		}
		sum.Imports = append(sum.Imports, imp)
		if imp.Status != ImportSucceeded || imp.RowsFailed > 0 {
			msg := ""
			if imp.Error != nil {
				msg = ": " + *imp.Error
			}
			return sum, fmt.Errorf("seed demo: the %s import ended %s with %d rows failed%s", f.kind, imp.Status, imp.RowsFailed, msg)
		}
	}
	sum.Members, sum.Purchases = int(sum.Imports[0].RowsCreated), int(sum.Imports[1].RowsCreated)
	var found []struct{ ID, ExternalID string }
	if err := store.read(ctx).Raw("SELECT id, external_id FROM members").Scan(&found).Error; err != nil {
		return sum, fmt.Errorf("seed demo: %w", err)
	}
	byExt := make(map[string]string, len(found))
	for _, f := range found {
		byExt[f.ExternalID] = f.ID
	}

	admin := Principal{Subject: "demo", Role: RoleAdmin}
	for _, lp := range live {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		in, at, id := lp.in, lp.at, byExt[ext(lp.member)]
		in.MemberID = id
		clock = at
		if payRng.IntN(4) == 0 {
			// Some members pay with points, as much as the till offers.
			q, err := svc.QuotePurchase(ctx, admin, in)
			if err != nil {
				return sum, fmt.Errorf("seed demo: %w", err)
			}
			if q.PointsPaymentMax > 0 {
				in.PointsPayment = &q.PointsPaymentMax
				sum.Payments++
			}
		}
		res, _, err := svc.PostPurchase(ctx, admin, in, IdempotencyKey{})
		if err != nil {
			return sum, fmt.Errorf("seed demo: %w", err)
		}
		sum.Purchases++
		if opt.AfterPurchase != nil {
			if err := opt.AfterPurchase(ctx, at, id); err != nil {
				return sum, fmt.Errorf("seed demo: %w", err)
			}
		}
		if rng.IntN(25) == 0 {
			amount := *in.Items[0].Amount
			clock = at.Add(time.Duration(1+rng.IntN(10)) * 24 * time.Hour)
			if clock.After(opt.Now) {
				continue
			}
			if _, _, err := svc.PostReturn(ctx, admin, res.ID, ReturnInput{ExternalID: "RET-" + in.ExternalID, Amount: &amount}, IdempotencyKey{}); err != nil {
				return sum, fmt.Errorf("seed demo: %w", err)
			}
			sum.Returns++
		}
	}
	// What the purchases earned, imported or live.
	if err := store.read(ctx).Raw("SELECT COALESCE(SUM(points_earned), 0) FROM purchases").Scan(&sum.PointsIssued).Error; err != nil {
		return sum, fmt.Errorf("seed demo: %w", err)
	}
	return sum, nil
}

func demoBasket(rng *rand.Rand, memberID string, n int, at time.Time) PurchaseInput {
	lines := 1 + rng.IntN(4)
	var items []PurchaseItem
	var total int64
	for l := 0; l < lines; l++ {
		qty := int64(1 + rng.IntN(2))
		price := int64(500 + rng.IntN(60)*100)
		amount := qty * price
		cat := demoCategories[rng.IntN(len(demoCategories))]
		items = append(items, PurchaseItem{SKU: fmt.Sprintf("SKU-%s-%d", cat, rng.IntN(20)), Category: cat,
			Quantity: &qty, UnitPrice: &price, Amount: &amount})
		total += amount
	}
	channel := []string{"pos", "pos", "pos", "online", "app"}[rng.IntN(5)]
	return PurchaseInput{MemberID: memberID, ExternalID: fmt.Sprintf("R-%07d", n+1), StoreID: fmt.Sprintf("store-%d", 1+rng.IntN(8)),
		Channel: channel, OccurredAt: at.UTC().Format(time.RFC3339), Currency: "USD", Total: &total, Items: items}
}
