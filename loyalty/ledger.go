package loyalty

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/tiers"
)

// Ledger entry kinds (§7).
const (
	KindEarn         = "earn"
	KindOffer        = "offer"
	KindBonus        = "bonus"
	KindGift         = "gift"
	KindRedeem       = "redeem"
	KindRedeemCancel = "redeem_cancel"
	KindReturn       = "return"
	KindExpire       = "expire"
	KindAdjust       = "adjust"
	KindFeedback     = "feedback"
	// KindPayment pays part of a purchase with points at the till (§16);
	// KindPaymentRefund gives back a return's share of it.
	KindPayment       = "payment"
	KindPaymentRefund = "payment_refund"
	// KindImport is an opening balance migrated by a members import (§15).
	KindImport = "import"
)

// Entry is one ledger entry as the API shows it.
type Entry struct {
	ID           string     `json:"id"`
	MemberID     string     `json:"member_id"`
	Kind         string     `json:"kind"`
	Points       int64      `json:"points"`
	OccurredAt   time.Time  `json:"occurred_at"`
	AvailableAt  time.Time  `json:"available_at"`
	ExpiresAt    *time.Time `json:"expires_at"`
	PurchaseID   *string    `json:"purchase_id"`
	ReturnID     *string    `json:"return_id"`
	RedemptionID *string    `json:"redemption_id"`
	OfferID      *string    `json:"offer_id"`
	Description  string     `json:"description"`
}

func entryFromRow(r entryRow) Entry {
	return Entry{ID: r.ID, MemberID: r.MemberID, Kind: r.Kind, Points: r.Points, OccurredAt: r.OccurredAt.UTC(),
		AvailableAt: r.AvailableAt.UTC(), ExpiresAt: utcp(r.ExpiresAt), PurchaseID: r.PurchaseID, ReturnID: r.ReturnID,
		RedemptionID: r.RedemptionID, OfferID: r.OfferID, Description: r.Description}
}

// lapsed returns the expire entries due at a.now that nobody has stored
// yet: those of the lots whose points have lapsed but still show a
// remainder, because the expire-points job has not reached them. A balance
// already leaves their points out; the ledger listing shows these entries,
// so that it always sums to the balance. Newest first, as the listing.
func (a *account) lapsed(tx *gorm.DB) ([]entryRow, error) {
	q := tx.Where("member_id = ? AND remaining > 0", a.member.ID)
	if deadline, inactive := a.inactivityDeadline(); !inactive || deadline.After(a.now) {
		q = q.Where("expires_at <= ?", a.now)
	}
	var lots []lotRow
	if err := q.Find(&lots).Error; err != nil {
		return nil, err
	}
	out := make([]entryRow, 0, len(lots))
	for _, l := range lots {
		if e, ok := a.lapsedEntry(l); ok {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return entryAfter(out[i], out[j]) })
	return out, nil
}

// entryAfter is the ledger listing's order, newest first: by occurred_at,
// then by id.
func entryAfter(x, y entryRow) bool {
	if !x.OccurredAt.Equal(y.OccurredAt) {
		return x.OccurredAt.After(y.OccurredAt)
	}
	return x.ID > y.ID
}

// Expiring is points that will expire at one instant.
type Expiring struct {
	Points    int64     `json:"points"`
	ExpiresAt time.Time `json:"expires_at"`
}

// TierRef names a member's tier in a balance.
type TierRef struct {
	Code           string          `json:"code"`
	Name           string          `json:"name"`
	EarnMultiplier decimal.Decimal `json:"earn_multiplier"`
}

// NextTier is what a member needs to reach the next tier.
type NextTier struct {
	Code        string `json:"code"`
	Name        string `json:"name"`
	SpendNeeded int64  `json:"spend_needed"`
}

// Balance is a member's points and tier standing at one instant (§7).
type Balance struct {
	MemberID         string     `json:"member_id"`
	Available        int64      `json:"available"`
	Pending          int64      `json:"pending"`
	LifetimeEarned   int64      `json:"lifetime_earned"`
	LifetimeRedeemed int64      `json:"lifetime_redeemed"`
	ExpiringSoon     []Expiring `json:"expiring_soon"`
	Tier             *TierRef   `json:"tier"`
	QualifyingSpend  int64      `json:"qualifying_spend"`
	NextTier         *NextTier  `json:"next_tier"`
	AsOf             time.Time  `json:"as_of"`
	Version          int64      `json:"version"`
}

// ExpiringSoonWindow is how far ahead a balance lists expiring points.
const ExpiringSoonWindow = 30 * 24 * time.Hour

func (a *account) newBalance() Balance {
	return Balance{MemberID: a.member.ID, LifetimeEarned: a.balance.LifetimeEarned, LifetimeRedeemed: a.balance.LifetimeRedeemed,
		ExpiringSoon: []Expiring{}, AsOf: a.now}
}

// addSpend adds to a member's spend, held at the largest int64: a purchase
// may total MaxTotal, so thousands of them add up past int64, and a spend
// that large qualifies for every tier anyway.
func addSpend(spend, total int64) int64 {
	if sum, ok := tiers.AddMinor(spend, total); ok {
		return sum
	}
	return math.MaxInt64
}

// currentTier is the tier a member holds: its own, or the entry tier for a
// member enrolled before any tier existed.
func currentTier(ladder tiers.Ladder, m memberRow) (tiers.Tier, bool) {
	if m.TierCode != nil {
		if t, ok := ladder.Find(*m.TierCode); ok {
			return t, true
		}
	}
	return ladder.Entry()
}

// loadAccount loads a member's account without locks, for reading.
func loadAccount(tx *gorm.DB, memberID string, now time.Time) (*account, tiers.Ladder, error) {
	set, err := loadSettings(tx)
	if err != nil {
		return nil, nil, err
	}
	a := &account{prog: set.prog, now: now, cfg: set.version}
	ladder := set.ladder
	if a.member, err = getMember(tx, memberID); err != nil {
		return nil, nil, err
	}
	if err := tx.Where("member_id = ?", memberID).Take(&a.balance).Error; err != nil {
		return nil, nil, err
	}
	return a, ladder, nil
}

// Balance returns a member's balance now. It only reads.
func (s *Service) Balance(ctx context.Context, p Principal, memberID string) (Balance, error) {
	var b Balance
	if !p.SeesMember(memberID) {
		return b, hidden(memberID)
	}
	now := ts(s.now())
	if b, ok, err := s.quickBalance(ctx, memberID, now); err != nil || ok {
		if err != nil {
			return b, fmt.Errorf("balance: %w", err)
		}
		return b, nil
	}
	err := s.store.snapshot(ctx, func(tx *gorm.DB) error {
		a, ladder, err := loadAccount(tx, memberID, now)
		if err != nil {
			return err
		}
		b, err = a.readView(tx, ladder)
		return err
	})
	if err != nil {
		return b, fmt.Errorf("balance: %w", err)
	}
	return b, nil
}

// quickBalance answers a balance read from the member's balance row alone,
// with one statement that also reads the member's tier and config_version
// to check this store's settings against. ok is false when the caller must
// take the snapshot path: settings changed or not yet read, an unknown
// member (for its 404), or a row whose kept state no longer holds at now
// (see kept.go).
func (s *Service) quickBalance(ctx context.Context, memberID string, now time.Time) (b Balance, ok bool, err error) {
	set := cacheOf(s.store.r).last()
	if set == nil {
		return b, false, nil
	}
	a := &account{prog: set.prog, now: now, member: memberRow{ID: memberID}, cfg: set.version}
	var current int64
	bal, m := &a.balance, &a.member
	dest := []any{&current, &m.Status, &m.TierCode, &bal.Debt, &bal.LifetimeEarned, &bal.LifetimeRedeemed,
		&bal.LastActivityAt, &bal.Version, &bal.OpenAvailable, &bal.OpenPending, &bal.QualifyingSpend, &bal.ExpiringSoon,
		&bal.AsOf, &bal.NextChangeAt, &bal.ConfigVersion}
	if s.store.pg != nil {
		// One prepared statement through pgx, nothing for GORM to build.
		err := s.store.pg.QueryRow(ctx, pgBalanceSQL, memberID).Scan(dest...)
		if errors.Is(err, pgx.ErrNoRows) {
			return b, false, nil
		}
		if err != nil {
			return b, false, err
		}
	} else {
		rows, err := s.store.read(ctx).Raw(balanceSQL, memberID).Rows()
		if err != nil {
			return b, false, err
		}
		defer rows.Close()
		if !rows.Next() {
			return b, false, rows.Err()
		}
		if err := rows.Scan(dest...); err != nil {
			return b, false, err
		}
		if err := rows.Close(); err != nil {
			return b, false, err
		}
	}
	bal.MemberID = memberID
	if current != set.version {
		return b, false, nil
	}
	if !a.fresh() {
		return b, false, nil
	}
	k, err := a.keptFromRow()
	if err != nil {
		return b, false, err
	}
	return a.keptView(k, a.balance.Version, set.ladder), true, nil
}

// balanceSQL is what quickBalance reads: the balance row, the member's
// tier and status, and the current config_version.
const balanceSQL = `SELECT p.config_version, m.status, m.tier_code,
		b.debt, b.lifetime_earned, b.lifetime_redeemed, b.last_activity_at, b.version,
		b.open_available, b.open_pending, b.qualifying_spend, b.expiring_soon, b.as_of, b.next_change_at, b.config_version
		FROM member_balances b JOIN members m ON m.id = b.member_id JOIN program p ON p.id = 1
		WHERE b.member_id = ?`

// Ledger lists a member's entries, newest first. Besides the stored
// entries it shows the expire entries due by now that the expire-points job
// has not stored yet (see lapsed), under the ids and at the instants the
// job will store them: the listing sums to available + pending at every
// instant, and an entry keeps its place in the order, and so its page,
// when the job stores it.
func (s *Service) Ledger(ctx context.Context, p Principal, memberID string, page Page) (List[Entry], error) {
	out := List[Entry]{Items: []Entry{}}
	if !p.SeesMember(memberID) {
		return out, hidden(memberID)
	}
	parts, err := page.decode(2)
	if err != nil {
		return out, err
	}
	// cur is the last entry of the previous page: this page lists what
	// comes after it in the order.
	var cur *entryRow
	if parts != nil {
		at, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil {
			return out, Invalidf("cursor", "is not a cursor this list returned")
		}
		cur = &entryRow{OccurredAt: ts(at), ID: parts[1]}
	}
	limit := page.limit()
	var rows []entryRow
	err = s.store.snapshot(ctx, func(tx *gorm.DB) error {
		a, _, err := loadAccount(tx, memberID, ts(s.now()))
		if err != nil {
			return err
		}
		due, err := a.lapsed(tx)
		if err != nil {
			return err
		}
		q := tx.Where("member_id = ?", memberID)
		if cur != nil {
			// The bound on occurred_at alone starts the index range at the
			// cursor; the OR alone would be a filter over every newer entry.
			q = q.Where("occurred_at <= ? AND (occurred_at < ? OR (occurred_at = ? AND id < ?))", cur.OccurredAt, cur.OccurredAt, cur.OccurredAt, cur.ID)
			kept := due[:0]
			for _, e := range due {
				if entryAfter(*cur, e) {
					kept = append(kept, e)
				}
			}
			due = kept
		}
		var stored []entryRow
		if err := q.Order("occurred_at DESC, id DESC").Limit(limit + 1).Find(&stored).Error; err != nil {
			return err
		}
		rows = mergeEntries(stored, due, limit+1)
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("ledger: %w", err)
	}
	for i, r := range rows {
		if i == limit {
			last := rows[i-1]
			out.NextCursor = encodeCursor(last.OccurredAt.UTC().Format(time.RFC3339Nano), last.ID)
			break
		}
		out.Items = append(out.Items, entryFromRow(r))
	}
	return out, nil
}

// mergeEntries merges stored entries and lapsed ones not yet stored, both
// newest first, into the first n. A lapsed entry already stored (it cannot
// be, within one snapshot) counts once.
func mergeEntries(stored, lapsed []entryRow, n int) []entryRow {
	seen := make(map[string]bool, len(stored))
	for _, e := range stored {
		seen[e.ID] = true
	}
	out := make([]entryRow, 0, min(n, len(stored)+len(lapsed)))
	i, j := 0, 0
	for len(out) < n {
		for j < len(lapsed) && seen[lapsed[j].ID] {
			j++
		}
		switch {
		case i < len(stored) && (j == len(lapsed) || entryAfter(stored[i], lapsed[j])):
			out = append(out, stored[i])
			i++
		case j < len(lapsed):
			out = append(out, lapsed[j])
			j++
		default:
			return out
		}
	}
	return out
}

// AdjustmentInput is the body of POST /v1/members/{id}/adjustments.
type AdjustmentInput struct {
	Points *int64 `json:"points"`
	Reason string `json:"reason"`
}

// Adjust credits or debits points by hand, with a reason; only an admin
// may. A debit needs the points to be available.
func (s *Service) Adjust(ctx context.Context, p Principal, memberID string, in AdjustmentInput, key IdempotencyKey) (Entry, *Replay, error) {
	if !p.Is(RoleAdmin) {
		return Entry{}, nil, Errorf(Forbidden, "forbidden", "only an admin may adjust a member's points")
	}
	var v Validation
	if in.Points == nil || *in.Points == 0 {
		v.Add("points", "is required and must not be 0")
	} else if *in.Points > tiers.MaxPoints || *in.Points < -tiers.MaxPoints {
		v.Add("points", "is out of range")
	}
	if len(in.Reason) == 0 || len(in.Reason) > 500 {
		v.Add("reason", "is required, at most 500 characters")
	}
	if err := v.Err(); err != nil {
		return Entry{}, nil, err
	}
	e, rep, err := writeOnce(ctx, s, headerGuard(key), func(tx *gorm.DB) (Entry, error) {
		prog, err := loadProgram(tx)
		if err != nil {
			return Entry{}, err
		}
		var row entryRow
		a, err := updateAccount(tx, memberID, prog, ts(s.now()), func(a *account) error {
			var err error
			spec := entrySpec{Kind: KindAdjust, Points: *in.Points, OccurredAt: a.now, Description: in.Reason}
			if *in.Points < 0 {
				row, err = a.spend(tx, spec)
				return err
			}
			// The balance is checked as the entry is appended; the lifetime
			// total must not wrap round either.
			earned, ok := tiers.AddMinor(a.balance.LifetimeEarned, *in.Points)
			if !ok {
				return errLifetimeOverflow
			}
			spec.ExpiresAt = a.prog.ExpiryFor(a.now)
			row, err = a.credit(tx, spec)
			a.balance.LifetimeEarned = earned
			return err
		})
		if err != nil {
			return Entry{}, err
		}
		ev, err := eventOf(EventPointsAdjusted, &row.MemberID, a.now, entryFromRow(row))
		if err != nil {
			return Entry{}, err
		}
		if err := emit(tx, ev); err != nil {
			return Entry{}, err
		}
		// The reason is free text and may name the member: the entry id leads to it.
		if err := writeAudit(tx, a.now, p, "points.adjust", "member", memberID,
			map[string]any{"entry_id": row.ID, "points": row.Points}); err != nil {
			return Entry{}, err
		}
		return entryFromRow(row), nil
	})
	if err != nil {
		return Entry{}, nil, fmt.Errorf("adjust: %w", err)
	}
	if rep == nil && e.Points > 0 {
		s.observer.PointsIssued(e.Points)
	}
	return e, rep, nil
}
