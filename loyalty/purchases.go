package loyalty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/tiers"
)

// ClockSkew is how far in the future an occurred_at may be.
const ClockSkew = 5 * time.Minute

// MaxItems bounds the lines of one purchase.
const MaxItems = 1000

// PurchaseItem is one line of a basket.
type PurchaseItem struct {
	SKU       string `json:"sku"`
	Category  string `json:"category"`
	Quantity  *int64 `json:"quantity"`
	UnitPrice *int64 `json:"unit_price"`
	Amount    *int64 `json:"amount"`
}

// PurchaseInput is the body of POST /v1/purchases and /v1/purchases/quote.
type PurchaseInput struct {
	MemberID   string         `json:"member_id"`
	ExternalID string         `json:"external_id"`
	StoreID    string         `json:"store_id"`
	Channel    string         `json:"channel"`
	OccurredAt string         `json:"occurred_at"`
	Currency   string         `json:"currency"`
	Total      *int64         `json:"total"`
	Items      []PurchaseItem `json:"items"`
	// PointsPayment is the points the member pays with (§16); absent or
	// 0 for none.
	PointsPayment *int64 `json:"points_payment,omitempty"`
}

// Item is a stored basket line.
type Item struct {
	SKU       string `json:"sku"`
	Category  string `json:"category"`
	Quantity  int64  `json:"quantity"`
	UnitPrice int64  `json:"unit_price"`
	Amount    int64  `json:"amount"`
}

// purchase is a validated PurchaseInput.
type purchase struct {
	PurchaseInput
	at    time.Time
	total int64
	items []Item
	// pay is the points paid with (§16), payAmount what they cover; the
	// rest of total is the cash part.
	pay, payAmount int64
}

// cash is the part of the total not paid with points: what earns, and what
// counts towards qualifying spend.
func (p purchase) cash() int64 { return p.total - p.payAmount }

// cashShare is the cash part's share of amount, a part of the total:
// ⌊amount · cash ÷ total⌋, exactly.
func (p purchase) cashShare(amount int64) int64 {
	if p.payAmount == 0 || p.total <= 0 {
		return amount
	}
	q := new(big.Int).Mul(big.NewInt(amount), big.NewInt(p.cash()))
	return q.Quo(q, big.NewInt(p.total)).Int64()
}

var (
	tokenExpr   = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)
	channelExpr = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)
)

func (s *Service) validatePurchase(p Principal, prog *Program, in PurchaseInput) (purchase, error) {
	now := ts(s.now())
	out := purchase{PurchaseInput: in}
	var v Validation
	if in.MemberID == "" {
		v.Add("member_id", "is required")
	}
	if in.ExternalID != "" && !tokenExpr.MatchString(in.ExternalID) {
		v.Add("external_id", "must be 1 to 255 printable ASCII characters without spaces")
	}
	if in.StoreID != "" && !tokenExpr.MatchString(in.StoreID) {
		v.Add("store_id", "must be 1 to 255 printable ASCII characters without spaces")
	}
	if p.Role == RolePOS && p.StoreID != "" {
		if in.StoreID == "" {
			out.StoreID = p.StoreID
		} else if in.StoreID != p.StoreID {
			return out, Errorf(Forbidden, "wrong_store", "this till may post only for store %q", p.StoreID)
		}
	}
	if in.Channel == "" {
		out.Channel = "pos"
	} else if !channelExpr.MatchString(in.Channel) {
		v.Add("channel", "must be 1 to 32 lowercase letters, digits, _ or -")
	}
	out.at = now
	if in.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339Nano, in.OccurredAt)
		switch {
		case err != nil:
			v.Add("occurred_at", "must be an RFC 3339 time with offset, such as 2026-03-01T12:00:00Z")
		case t.After(now.Add(ClockSkew)):
			v.Add("occurred_at", "must not be in the future")
		case t.Year() < 1970:
			v.Add("occurred_at", "must be after 1970")
		default:
			out.at = ts(t)
		}
	}
	if in.Currency == "" {
		out.Currency = prog.Currency
	} else if in.Currency != prog.Currency {
		v.Add("currency", "must be the program currency %s", prog.Currency)
	}
	switch {
	case in.Total == nil:
		v.Add("total", "is required")
	case *in.Total <= 0:
		v.Add("total", "must be above 0")
	case *in.Total > MaxTotal:
		v.Add("total", "must be at most %d", MaxTotal)
	default:
		out.total = *in.Total
	}
	if len(in.Items) > MaxItems {
		v.Add("items", "at most %d lines", MaxItems)
	} else if len(in.Items) > 0 {
		var sum int64
		overflow := false
		for i, it := range in.Items {
			f := fmt.Sprintf("items[%d].", i)
			item := Item{SKU: it.SKU, Category: it.Category, Quantity: 1}
			if len(it.SKU) > 255 {
				v.Add(f+"sku", "at most 255 characters")
			}
			if len(it.Category) > 255 {
				v.Add(f+"category", "at most 255 characters")
			}
			if it.Quantity != nil {
				if *it.Quantity <= 0 || *it.Quantity > 1_000_000 {
					v.Add(f+"quantity", "must be from 1 to 1000000")
				}
				item.Quantity = *it.Quantity
			}
			if it.UnitPrice != nil {
				if *it.UnitPrice < 0 || *it.UnitPrice > MaxTotal {
					v.Add(f+"unit_price", "must be from 0 to %d", MaxTotal)
				}
				item.UnitPrice = *it.UnitPrice
			}
			switch {
			case it.Amount == nil:
				v.Add(f+"amount", "is required")
			case *it.Amount < 0 || *it.Amount > MaxTotal:
				v.Add(f+"amount", "must be from 0 to %d", MaxTotal)
			default:
				item.Amount = *it.Amount
				if it.UnitPrice == nil && item.Quantity > 0 {
					item.UnitPrice = item.Amount / item.Quantity
				}
				var ok bool
				if sum, ok = tiers.AddMinor(sum, item.Amount); !ok {
					overflow = true
				}
			}
			out.items = append(out.items, item)
		}
		if in.Total != nil && (overflow || sum != *in.Total) {
			v.Add("items", "amounts must add up to total (%d)", *in.Total)
		}
	}
	if err := v.Err(); err != nil {
		return out, err
	}
	if in.PointsPayment != nil && *in.PointsPayment != 0 {
		// The rules of the settings, before any lock; the member's
		// available points are checked under its lock (checkPayment).
		amount, err := prog.PointsPayment.CheckPayment(*in.PointsPayment, out.total, tiers.MaxPoints, prog.Exponent())
		if err != nil {
			return out, err
		}
		out.pay, out.payAmount = *in.PointsPayment, amount
	}
	return out, nil
}

// BreakdownLine is one source of a purchase's points.
type BreakdownLine struct {
	Source  string `json:"source"`
	Tier    string `json:"tier,omitempty"`
	OfferID string `json:"offer_id,omitempty"`
	Points  int64  `json:"points"`
}

// Quote is what a purchase earns, before or after it is posted.
type Quote struct {
	MemberID     string          `json:"member_id"`
	Total        int64           `json:"total"`
	Currency     string          `json:"currency"`
	PointsEarned int64           `json:"points_earned"`
	Breakdown    []BreakdownLine `json:"breakdown"`
	TierBefore   *string         `json:"tier_before"`
	TierAfter    *string         `json:"tier_after"`
	// PointsPayment is the payment with points, when the purchase has one.
	PointsPayment *PointsPaid `json:"points_payment,omitempty"`
}

// PointsPaid is a payment with points (§16): the points and the amount, in
// minor units, they cover.
type PointsPaid struct {
	Points int64 `json:"points"`
	Amount int64 `json:"amount"`
}

// PurchaseQuote is the answer to a quote: what the purchase would earn, and
// the largest payment with points the rules allow the member for it now.
type PurchaseQuote struct {
	Quote
	PointsPaymentMax int64 `json:"points_payment_max"`
}

// PurchaseResult is the answer to a posted purchase (§8).
type PurchaseResult struct {
	ID         string  `json:"id"`
	ExternalID *string `json:"external_id"`
	StoreID    string  `json:"store_id"`
	OccurredAt string  `json:"occurred_at"`
	Quote
	Balance Balance `json:"balance"`

	// encoded is this result as JSON, when the write that made it already
	// encoded it for its idempotency record: the answer sends these bytes
	// rather than encoding the result a second time.
	encoded json.RawMessage
}

// Encoded is the result's JSON as its write recorded it, or nil.
func (r PurchaseResult) Encoded() json.RawMessage { return r.encoded }

func (r *PurchaseResult) keepEncoded(b []byte) { r.encoded = b }

// earning computes a purchase's points for a member holding tier cur, and
// the tier the purchase lifts the member to given spendBefore.
func earning(prog *Program, ladder tiers.Ladder, member memberRow, pur purchase, spendBefore int64, now time.Time, mo *memberOffers) (Quote, error) {
	q := Quote{MemberID: member.ID, Total: pur.total, Currency: pur.Currency, Breakdown: []BreakdownLine{}}
	mult := decimal.NewFromInt(1)
	cur, hasTier := currentTier(ladder, member)
	if hasTier {
		mult = cur.EarnMultiplier
		code := cur.Code
		q.TierBefore, q.TierAfter = &code, &code
	}
	if pur.pay > 0 {
		q.PointsPayment = &PointsPaid{Points: pur.pay, Amount: pur.payAmount}
	}
	pts, err := tiers.Earn(pur.cash(), prog.Exponent(), prog.PointsPerUnit, mult)
	if err != nil {
		return q, Invalidf("total", "earns more points than the engine can hold")
	}
	line := BreakdownLine{Source: "tier", Points: pts}
	if hasTier {
		line.Tier = cur.Code
	}
	q.Breakdown = append(q.Breakdown, line)
	q.PointsEarned = pts
	for _, l := range mo.apply(prog, pur) {
		q.Breakdown = append(q.Breakdown, l)
		q.PointsEarned += l.Points
		if q.PointsEarned > tiers.MaxPoints {
			return q, Invalidf("total", "earns more points than the engine can hold")
		}
	}
	if hasTier {
		spend := spendBefore
		if !pur.at.Before(prog.Period().Start(now)) {
			spend = addSpend(spend, pur.cash())
		}
		next := ladder.Upgrade(cur, spend)
		q.TierAfter = &next.Code
	}
	return q, nil
}

// QuotePurchase answers what a purchase would earn now, with the payment
// with points it names if any, and the largest payment the member may make
// towards it; it writes nothing.
func (s *Service) QuotePurchase(ctx context.Context, p Principal, in PurchaseInput) (PurchaseQuote, error) {
	var q PurchaseQuote
	err := s.store.snapshot(ctx, func(tx *gorm.DB) error {
		prog, err := loadProgram(tx)
		if err != nil {
			return err
		}
		pur, err := s.validatePurchase(p, prog, in)
		if err != nil {
			return err
		}
		a, ladder, err := loadAccount(tx, pur.MemberID, ts(s.now()))
		if err != nil {
			return memberRef(err)
		}
		if a.member.Status != StatusActive {
			return Errorf(Conflict, "member_erased", "the member was erased")
		}
		if err := a.catchUp(tx); err != nil {
			return err
		}
		spend := a.k.Spend
		available := a.k.Available - a.balance.Debt
		if err := checkPayment(prog, &pur, available); err != nil {
			return err
		}
		q.PointsPaymentMax = prog.PointsPayment.MaxPayment(pur.total, available, prog.Exponent())
		mo, err := loadMemberOffers(tx, a.member.ID, pur.at)
		if err != nil {
			return err
		}
		q.Quote, err = earning(prog, ladder, a.member, pur, spend, a.now, mo)
		return err
	})
	if err != nil {
		return q, fmt.Errorf("quote purchase: %w", err)
	}
	return q, nil
}

// memberRef turns "member not found" for a member named in a body into a
// validation error on that field.
func memberRef(err error) error {
	var e *Error
	if errors.As(err, &e) && e.Code == NotFound {
		return Invalidf("member_id", "no member has this id")
	}
	return err
}

// PostPurchase records a purchase, credits its points at the member's tier
// before the purchase, and upgrades the tier when the purchase lifts the
// qualifying spend to a higher threshold. A repeat of the same receipt
// (store_id, external_id) with the same body replays the first answer; a
// different body under the same receipt is 409.
func (s *Service) PostPurchase(ctx context.Context, p Principal, in PurchaseInput, key IdempotencyKey) (PurchaseResult, *Replay, error) {
	var res PurchaseResult
	// Malformed requests are refused before they take the write lock, with
	// the settings this store last read; the transaction validates again if
	// they changed since.
	set := cacheOf(s.store.r).last()
	var prog *Program
	if set != nil {
		prog = set.prog
	} else {
		var err error
		if prog, err = s.Program(ctx); err != nil {
			return res, nil, fmt.Errorf("post purchase: %w", err)
		}
	}
	pur, err := s.validatePurchase(p, prog, in)
	if err != nil {
		return res, nil, err
	}
	guards := pur.guards(key)
	var rep *Replay
	err = errPGFallback
	// A payment with points takes the general path: it draws from lots.
	if s.store.pg != nil && set != nil && pur.pay == 0 {
		res, rep, err = s.pgPostPurchase(ctx, set, pur, guards)
	}
	if errors.Is(err, errPGFallback) {
		res, rep, err = writeOnce(ctx, s, guards, func(tx *gorm.DB) (PurchaseResult, error) {
			return s.postPurchase(tx, p, in, pur, prog)
		})
	}
	if err != nil {
		return res, nil, fmt.Errorf("post purchase: %w", err)
	}
	if rep == nil {
		s.observePurchase(res)
	}
	return res, rep, nil
}

// guards are the idempotency records of a purchase: the caller's key, and
// its receipt (store_id, external_id) when it has one.
func (pur purchase) guards(key IdempotencyKey) []guard {
	guards := headerGuard(key)
	if pur.ExternalID != "" {
		canon, _ := json.Marshal(pur.PurchaseInput)
		guards = append(guards, guard{scope: "purchase:" + pur.StoreID, key: pur.ExternalID, hash: HashRequest(canon),
			mismatch: Errorf(Conflict, "duplicate", "receipt %q of store %q was already posted with different content", pur.ExternalID, pur.StoreID)})
	}
	return guards
}

// observePurchase counts a posted purchase in the business metrics.
func (s *Service) observePurchase(res PurchaseResult) {
	s.observer.PurchasePosted(res.PointsEarned)
	s.observer.PointsIssued(res.PointsEarned)
	if res.PointsPayment != nil {
		s.observer.PointsRedeemed(res.PointsPayment.Points)
	}
}

func (s *Service) postPurchase(tx *gorm.DB, p Principal, in PurchaseInput, pur purchase, validated *Program) (PurchaseResult, error) {
	var res PurchaseResult
	a, err := lockAccount(tx, pur.MemberID, nil, ts(s.now()))
	if err != nil {
		return res, memberRef(err)
	}
	if a.set.prog != validated {
		if pur, err = s.validatePurchase(p, a.set.prog, in); err != nil {
			return res, err
		}
	}
	mo, err := s.store.offersFor(tx, a.member.ID, pur.at)
	if err != nil {
		return res, err
	}
	res, w, err := planPurchaseTx(tx, a, pur, mo)
	if err != nil {
		return res, err
	}
	if err := w.flush(tx, a); err != nil {
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return res, Errorf(Conflict, "duplicate", "receipt %q of store %q was already posted", pur.ExternalID, pur.StoreID)
		}
		return res, err
	}
	return res, nil
}

// planPurchase is a purchase's rules, one definition for every dialect: on
// the account a, locked and brought to now, with the offers mo live for its
// member, it computes the answer and what to write (rows to insert, the
// balance row to save, the member's new tier), and each dialect's path
// sends the writes its way (flush, or pgWrites on PostgreSQL).
func planPurchase(a *account, pur purchase, mo *memberOffers) (PurchaseResult, *accountWrites, error) {
	return planPurchaseTx(nil, a, pur, mo)
}

// checkPayment checks pur's payment with points, if any, against the
// settings prog and the member's available points, and sets what it covers.
func checkPayment(prog *Program, pur *purchase, available int64) error {
	if pur.pay == 0 {
		return nil
	}
	amount, err := prog.PointsPayment.CheckPayment(pur.pay, pur.total, available, prog.Exponent())
	if err != nil {
		return err
	}
	pur.payAmount = amount
	return nil
}

// planPurchaseTx is planPurchase for a purchase that may pay with points:
// the payment draws from the member's lots, which it reads through tx (a
// purchase without one needs no tx). The payment is taken before the
// purchase's own points are credited, so they never pay for it.
func planPurchaseTx(tx *gorm.DB, a *account, pur purchase, mo *memberOffers) (PurchaseResult, *accountWrites, error) {
	var res PurchaseResult
	prog, ladder := a.set.prog, a.set.ladder
	if pur.Currency != prog.Currency {
		return res, nil, Invalidf("currency", "must be the program currency %s", prog.Currency)
	}
	if a.member.Status != StatusActive {
		return res, nil, Errorf(Conflict, "member_erased", "the member was erased")
	}
	if pur.pay > 0 && tx == nil {
		return res, nil, errPGFallback
	}
	if err := checkPayment(prog, &pur, a.k.Available-a.balance.Debt); err != nil {
		return res, nil, err
	}
	// The kept state before the purchase (the account was brought to now)
	// has its qualifying spend; with what this purchase adds, it is the
	// balance the purchase answers.
	q, err := earning(prog, ladder, a.member, pur, a.k.Spend, a.now, mo)
	if err != nil {
		return res, nil, err
	}
	w := &accountWrites{}
	a.writes = w
	defer func() { a.writes = nil }()
	row := purchaseRow{ID: newID(), MemberID: a.member.ID, StoreID: pur.StoreID, ExternalID: strp(pur.ExternalID),
		Channel: pur.Channel, OccurredAt: pur.at, LocalDate: pur.at.In(prog.Location()).Format(time.DateOnly),
		LocalDay: LocalDay(pur.at, prog.Location()),
		Currency: pur.Currency, Total: pur.total, PointsEarned: q.PointsEarned, TierCode: q.TierBefore, CreatedAt: a.now,
		PointsPaid: pur.pay, AmountPaidWithPoints: pur.payAmount}
	w.rows = append(w.rows, &row)
	if len(pur.items) > 0 {
		items := make([]itemRow, len(pur.items))
		for i, it := range pur.items {
			items[i] = itemRow{PurchaseID: row.ID, Line: i + 1, SKU: it.SKU, Category: it.Category, Quantity: it.Quantity, UnitPrice: it.UnitPrice, Amount: it.Amount}
		}
		w.rows = append(w.rows, &items)
	}
	pid := row.ID
	if pur.pay > 0 {
		if _, err := a.spend(tx, entrySpec{ID: newID(), Kind: KindPayment, Points: -pur.pay, OccurredAt: pur.at, PurchaseID: &pid,
			Description: "paid at the till " + pur.ExternalID}); err != nil {
			return res, nil, err
		}
		a.balance.LifetimeRedeemed += pur.pay
	}
	for _, line := range q.Breakdown {
		if line.Points == 0 {
			continue
		}
		spec := entrySpec{Kind: KindEarn, Points: line.Points, OccurredAt: pur.at,
			AvailableAt: pur.at.AddDate(0, 0, prog.PendingDays), ExpiresAt: prog.ExpiryFor(pur.at), PurchaseID: &pid,
			Description: "purchase " + pur.ExternalID}
		if line.Source == "offer" {
			spec.Kind, spec.OfferID = KindOffer, strp(line.OfferID)
			w.rows = append(w.rows, &offerUseRow{OfferID: line.OfferID, PurchaseID: pid, MemberID: a.member.ID, Points: line.Points, CreatedAt: a.now})
		}
		if _, err := a.credit(nil, spec); err != nil {
			return res, nil, err
		}
	}
	earned, ok := tiers.AddMinor(a.balance.LifetimeEarned, q.PointsEarned)
	if !ok {
		return res, nil, errLifetimeOverflow
	}
	a.balance.LifetimeEarned = earned
	if a.balance.LastActivityAt == nil || pur.at.After(*a.balance.LastActivityAt) {
		at := pur.at
		a.balance.LastActivityAt = &at
	}
	a.k.addPurchase(prog.Period(), pur.at, pur.cash(), a.now)
	a.seal()
	if q.TierAfter != nil && (q.TierBefore == nil || *q.TierAfter != *q.TierBefore) {
		w.tier = q.TierAfter
		a.member.TierCode = q.TierAfter
	}
	bal := a.view(ladder)
	return PurchaseResult{ID: row.ID, ExternalID: row.ExternalID, StoreID: row.StoreID,
		OccurredAt: pur.at.Format(time.RFC3339Nano), Quote: q, Balance: bal}, w, nil
}

// LocalDay is the calendar day of t in loc, counted in days since
// 1970-01-01: date arithmetic in SQL becomes integer arithmetic.
func LocalDay(t time.Time, loc *time.Location) int64 {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// LocalDates are the local_date bounds, inclusive, of the purchases made
// from from to to in any timezone: a local date is within a day of the
// instant's UTC date. A statement over a span of purchases adds them to
// its condition on occurred_at, so the local_date BRIN index narrows it to
// the span's pages.
func LocalDates(from, to time.Time) (string, string) {
	return from.UTC().AddDate(0, 0, -1).Format(time.DateOnly), to.UTC().AddDate(0, 0, 1).Format(time.DateOnly)
}

// Purchase is a stored purchase (§8 GET /v1/purchases/{id}).
type Purchase struct {
	ID             string    `json:"id"`
	MemberID       string    `json:"member_id"`
	ExternalID     *string   `json:"external_id"`
	StoreID        string    `json:"store_id"`
	Channel        string    `json:"channel"`
	OccurredAt     time.Time `json:"occurred_at"`
	LocalDate      string    `json:"local_date"`
	Currency       string    `json:"currency"`
	Total          int64     `json:"total"`
	Items          []Item    `json:"items"`
	PointsEarned   int64     `json:"points_earned"`
	Tier           *string   `json:"tier"`
	ReturnedAmount int64     `json:"returned_amount"`
	PointsReversed int64     `json:"points_reversed"`
	Returns        []Return  `json:"returns"`
	// PointsPayment is the payment with points (§16), when there was one,
	// and PointsRefunded what returns gave back of its points.
	PointsPayment  *PointsPaid `json:"points_payment,omitempty"`
	PointsRefunded int64       `json:"points_refunded,omitempty"`
}

// Return is one return of a purchase.
type Return struct {
	ID             string    `json:"id"`
	PurchaseID     string    `json:"purchase_id"`
	ExternalID     *string   `json:"external_id"`
	Amount         int64     `json:"amount"`
	PointsReversed int64     `json:"points_reversed"`
	OccurredAt     time.Time `json:"occurred_at"`
}

func returnFromRow(r returnRow) Return {
	return Return{ID: r.ID, PurchaseID: r.PurchaseID, ExternalID: r.ExternalID, Amount: r.Amount, PointsReversed: r.PointsReversed, OccurredAt: r.OccurredAt.UTC()}
}

func getPurchase(tx *gorm.DB, id string) (purchaseRow, error) {
	var r purchaseRow
	if err := tx.Where("id = ?", id).Take(&r).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return r, Errorf(NotFound, "not_found", "no purchase has id %q", id)
		}
		return r, err
	}
	return r, nil
}

// Purchase returns one purchase with its items and returns.
func (s *Service) Purchase(ctx context.Context, p Principal, id string) (Purchase, error) {
	var out Purchase
	err := s.store.snapshot(ctx, func(tx *gorm.DB) error {
		r, err := getPurchase(tx, id)
		if err != nil {
			return err
		}
		if !p.SeesMember(r.MemberID) {
			return Errorf(NotFound, "not_found", "no purchase has id %q", id)
		}
		out = Purchase{ID: r.ID, MemberID: r.MemberID, ExternalID: r.ExternalID, StoreID: r.StoreID, Channel: r.Channel,
			OccurredAt: r.OccurredAt.UTC(), LocalDate: r.LocalDate, Currency: r.Currency, Total: r.Total, PointsEarned: r.PointsEarned,
			Tier: r.TierCode, ReturnedAmount: r.ReturnedAmount, PointsReversed: r.PointsReversed, Items: []Item{}, Returns: []Return{},
			PointsRefunded: r.PointsRefunded}
		if r.PointsPaid > 0 {
			out.PointsPayment = &PointsPaid{Points: r.PointsPaid, Amount: r.AmountPaidWithPoints}
		}
		var items []itemRow
		if err := tx.Where("purchase_id = ?", id).Order("line").Find(&items).Error; err != nil {
			return err
		}
		for _, it := range items {
			out.Items = append(out.Items, Item{SKU: it.SKU, Category: it.Category, Quantity: it.Quantity, UnitPrice: it.UnitPrice, Amount: it.Amount})
		}
		var rets []returnRow
		if err := tx.Where("purchase_id = ?", id).Order("created_at, id").Find(&rets).Error; err != nil {
			return err
		}
		for _, rr := range rets {
			out.Returns = append(out.Returns, returnFromRow(rr))
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("get purchase: %w", err)
	}
	return out, nil
}

// ReturnInput is the body of POST /v1/purchases/{id}/returns.
type ReturnInput struct {
	ExternalID string `json:"external_id"`
	Amount     *int64 `json:"amount"`
	OccurredAt string `json:"occurred_at"`
}

// mayReturn refuses a till bound to one store the purchases of another.
func mayReturn(p Principal, pr purchaseRow) error {
	if p.Role == RolePOS && p.StoreID != "" && pr.StoreID != p.StoreID {
		return Errorf(Forbidden, "wrong_store", "this till may return only purchases of store %q", p.StoreID)
	}
	return nil
}

// ReturnResult is the answer to a posted return (§8).
type ReturnResult struct {
	Return
	// PointsRefunded is what the return gave back of the purchase's
	// payment with points (§16), when it had one.
	PointsRefunded int64   `json:"points_refunded,omitempty"`
	Balance        Balance `json:"balance"`
}

// refundPayment gives back a return's share of the purchase's payment with
// points (§16), as a payment_refund entry into lots that keep their expiry,
// and returns the points refunded and the part of the amount the payment
// covered that the return takes back (both ⌊… · amount ÷ total⌋, exactly
// the rest on the return that completes a full refund).
func refundPayment(tx *gorm.DB, a *account, pr purchaseRow, amount int64, at time.Time, returnID, externalID string) (int64, int64, error) {
	if pr.PointsPaid == 0 {
		return 0, 0, nil
	}
	refund := PaymentRefund(pr.PointsPaid, pr.Total, amount, pr.ReturnedAmount, pr.PointsRefunded)
	paidBack := PaymentRefund(pr.AmountPaidWithPoints, pr.Total, amount, pr.ReturnedAmount, pr.AmountPaidReturned)
	if refund == 0 {
		return 0, paidBack, nil
	}
	var payment entryRow
	if err := tx.Where("purchase_id = ? AND kind = ?", pr.ID, KindPayment).Take(&payment).Error; err != nil {
		return 0, 0, fmt.Errorf("payment of purchase %s: %w", pr.ID, err)
	}
	pid, rid := pr.ID, returnID
	if _, err := a.refundPart(tx, payment.ID, pr.PointsRefunded, refund, entrySpec{Kind: KindPaymentRefund, OccurredAt: at,
		PurchaseID: &pid, ReturnID: &rid, Description: "payment refunded on return " + externalID}); err != nil {
		return 0, 0, err
	}
	a.balance.LifetimeRedeemed -= refund
	return refund, paidBack, nil
}

// PostReturn records a return of part or all of a purchase and claws back
// its points in proportion; the return completing a full refund takes back
// exactly what is left. A repeat of the same return (purchase, external_id)
// replays the first answer.
func (s *Service) PostReturn(ctx context.Context, p Principal, purchaseID string, in ReturnInput, key IdempotencyKey) (ReturnResult, *Replay, error) {
	var res ReturnResult
	now := ts(s.now())
	var v Validation
	if in.ExternalID != "" && !tokenExpr.MatchString(in.ExternalID) {
		v.Add("external_id", "must be 1 to 255 printable ASCII characters without spaces")
	}
	if in.Amount == nil || *in.Amount <= 0 || *in.Amount > MaxTotal {
		v.Add("amount", "is required, above 0")
	}
	at := now
	if in.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339Nano, in.OccurredAt)
		if err != nil {
			v.Add("occurred_at", "must be an RFC 3339 time with offset")
		} else if t.After(now.Add(ClockSkew)) {
			v.Add("occurred_at", "must not be in the future")
		} else {
			at = ts(t)
		}
	}
	if err := v.Err(); err != nil {
		return res, nil, err
	}
	guards := headerGuard(key)
	if in.ExternalID != "" {
		canon, _ := json.Marshal(in)
		guards = append(guards, guard{scope: "return:" + purchaseID, key: in.ExternalID, hash: HashRequest(canon),
			mismatch: Errorf(Conflict, "duplicate", "return %q of this purchase was already posted with different content", in.ExternalID)})
	}
	// A till bound to a store may return only that store's purchases, and
	// is told so before any key is looked at: a replay is an answer too.
	var pr purchaseRow
	allowed := func(tx *gorm.DB) error {
		var err error
		if pr, err = getPurchase(tx, purchaseID); err != nil {
			return err
		}
		return mayReturn(p, pr)
	}
	res, rep, err := writeOnceAllowed(ctx, s, allowed, guards, func(tx *gorm.DB) (ReturnResult, error) {
		prog, err := loadProgram(tx)
		if err != nil {
			return res, err
		}
		var ret returnRow
		var refunded int64
		a, err := updateAccount(tx, pr.MemberID, prog, now, func(a *account) error {
			if err := forUpdate(tx).Where("id = ?", purchaseID).Take(&pr).Error; err != nil {
				return err
			}
			if at.Before(pr.OccurredAt) {
				return Invalidf("occurred_at", "must not be before the purchase")
			}
			amount := *in.Amount
			if pr.ReturnedAmount+amount > pr.Total {
				return Invalidf("amount", "returns of this purchase would exceed its total: %d of %d are left", pr.Total-pr.ReturnedAmount, pr.Total)
			}
			var own []string
			if err := tx.Model(&entryRow{}).Where("purchase_id = ? AND points > 0", pr.ID).Pluck("id", &own).Error; err != nil {
				return err
			}
			expired, err := a.ownExpired(tx, own)
			if err != nil {
				return err
			}
			rev := tiers.Reversal(pr.PointsEarned, pr.Total, amount, pr.ReturnedAmount, pr.PointsReversed, expired)
			ret = returnRow{ID: newID(), PurchaseID: pr.ID, MemberID: pr.MemberID, ExternalID: strp(in.ExternalID), Amount: amount,
				PointsReversed: rev, OccurredAt: at, CreatedAt: now}
			if err := tx.Create(&ret).Error; err != nil {
				return err
			}
			if rev > 0 {
				pid, rid := pr.ID, ret.ID
				if _, err := a.reverse(tx, entrySpec{Kind: KindReturn, Points: -rev, OccurredAt: at, PurchaseID: &pid, ReturnID: &rid,
					Description: "return " + in.ExternalID}, own); err != nil {
					return err
				}
				a.balance.LifetimeEarned -= rev
			}
			refund, paidBack, err := refundPayment(tx, a, pr, amount, at, ret.ID, in.ExternalID)
			if err != nil {
				return err
			}
			refunded = refund
			if err := tx.Model(&purchaseRow{}).Where("id = ?", pr.ID).Updates(map[string]any{
				"returned_amount": pr.ReturnedAmount + amount, "points_reversed": pr.PointsReversed + rev,
				"points_refunded": pr.PointsRefunded + refund, "amount_paid_returned": pr.AmountPaidReturned + paidBack}).Error; err != nil {
				return err
			}
			// Qualifying spend follows the cash part: what the payment
			// covered of the return was never counted.
			a.k.addReturn(prog.Period(), pr.OccurredAt, amount-paidBack, now)
			return nil
		})
		if err != nil {
			return res, err
		}
		_, ladder, err := loadTiers(tx)
		if err != nil {
			return res, err
		}
		bal := a.view(ladder)
		return ReturnResult{Return: returnFromRow(ret), PointsRefunded: refunded, Balance: bal}, nil
	})
	if err != nil {
		return res, nil, fmt.Errorf("post return: %w", err)
	}
	return res, rep, nil
}
