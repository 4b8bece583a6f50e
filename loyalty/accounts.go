package loyalty

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/tiers"
)

// Tx is a write transaction of the service, for packages built on the
// ledger (rewards, jobs). It carries the transaction's time.
type Tx struct {
	DB  *gorm.DB
	Now time.Time
	svc *Service
}

// Write runs fn in one write transaction guarded by the caller's
// Idempotency-Key: a repeat replays the first answer (status and the JSON of
// fn's result) instead of running fn again.
func Write[T any](ctx context.Context, s *Service, key IdempotencyKey, status int, fn func(*Tx) (T, error)) (T, *Replay, error) {
	return writeOnce(ctx, s, headerGuard(key), status, func(db *gorm.DB) (T, error) {
		return fn(&Tx{DB: db, Now: ts(s.now()), svc: s})
	})
}

// Read runs fn on one consistent snapshot of the database.
func Read(ctx context.Context, s *Service, fn func(db *gorm.DB) error) error {
	return s.store.snapshot(ctx, fn)
}

// NewID returns a new opaque, time-ordered id.
func NewID() string { return newID() }

// Account is a member's points, locked for the rest of a transaction.
type Account struct {
	a  *account
	tx *Tx
}

// LockAccount locks a member's balance for the rest of the transaction.
func (t *Tx) LockAccount(memberID string) (*Account, error) {
	prog, err := loadProgram(t.DB)
	if err != nil {
		return nil, err
	}
	a, err := lockAccount(t.DB, memberID, prog, t.Now)
	if err != nil {
		return nil, err
	}
	return &Account{a: a, tx: t}, nil
}

// Program returns the settings as the transaction sees them.
func (t *Tx) Program() (*Program, error) { return loadProgram(t.DB) }

// Ladder returns the tiers as the transaction sees them.
func (t *Tx) Ladder() (tiers.Ladder, error) {
	_, l, err := loadTiers(t.DB)
	return l, err
}

// MemberID is the account's member.
func (a *Account) MemberID() string { return a.a.member.ID }

// Active reports whether the member can still earn and spend.
func (a *Account) Active() bool { return a.a.member.Status == StatusActive }

// Tier is the member's current tier, if the program has tiers.
func (a *Account) Tier(l tiers.Ladder) (tiers.Tier, bool) { return currentTier(l, a.a.member) }

// Spend debits points from the available lots that expire first; 409
// insufficient_points when they fall short. A redeem counts as activity and
// as redeemed points.
func (a *Account) Spend(kind string, points int64, redemptionID, description string) (Entry, error) {
	id := newID()
	e := entrySpec{ID: id, Kind: kind, Points: -points, OccurredAt: a.tx.Now, RedemptionID: strp(redemptionID), Description: description}
	row, err := a.a.spend(a.tx.DB, e)
	if err != nil {
		return Entry{}, err
	}
	if kind == KindRedeem {
		a.a.balance.LifetimeRedeemed += points
		now := a.tx.Now
		a.a.balance.LastActivityAt = &now
		obs := a.tx.svc.observer
		afterCommit(a.tx.DB, func() { obs.PointsRedeemed(points) })
	}
	return entryFromRow(row), nil
}

// Refund gives back what the debit entryID took, as one entry of kind: into
// new lots that keep the availability and expiry of the lots it drew from,
// so a refund never extends a point's life. Any debt is paid first.
func (a *Account) Refund(entryID, kind, redemptionID, description string) (Entry, error) {
	var draws []drawRow
	if err := a.tx.DB.Where("entry_id = ?", entryID).Order("lot_id").Find(&draws).Error; err != nil {
		return Entry{}, err
	}
	var total int64
	for _, d := range draws {
		total += d.Points
	}
	if total == 0 {
		return Entry{}, fmt.Errorf("refund of %s: it drew no points", entryID)
	}
	row, err := a.a.append(a.tx.DB, entrySpec{Kind: kind, Points: total, OccurredAt: a.tx.Now, RedemptionID: strp(redemptionID), Description: description})
	if err != nil {
		return Entry{}, err
	}
	for _, d := range draws {
		var src lotRow
		if err := a.tx.DB.Where("id = ?", d.LotID).Take(&src).Error; err != nil {
			return Entry{}, err
		}
		// Points whose lot has expired come back expired and pay no debt.
		var pay int64
		if src.ExpiresAt == nil || src.ExpiresAt.After(a.tx.Now) {
			pay = min(a.a.balance.Debt, d.Points)
		}
		a.a.balance.Debt -= pay
		lot := lotRow{ID: newID(), EntryID: row.ID, MemberID: a.a.member.ID, Points: d.Points, Remaining: d.Points - pay,
			AvailableAt: src.AvailableAt, ExpiresAt: src.ExpiresAt, CreatedAt: a.tx.Now}
		if err := a.tx.DB.Create(&lot).Error; err != nil {
			return Entry{}, err
		}
	}
	if kind == KindRedeemCancel {
		a.a.balance.LifetimeRedeemed -= total
	}
	return entryFromRow(row), nil
}

// Credit adds points in a new lot, available now and expiring under the
// program's policy.
func (a *Account) Credit(kind string, points int64, ref CreditRef, description string) (Entry, error) {
	e := entrySpec{Kind: kind, Points: points, OccurredAt: a.tx.Now, ExpiresAt: a.a.expiryFor(a.tx.Now),
		RedemptionID: strp(ref.RedemptionID), OfferID: strp(ref.OfferID), PurchaseID: strp(ref.PurchaseID), Description: description}
	earned, ok := tiers.AddMinor(a.a.balance.LifetimeEarned, points)
	if !ok {
		return Entry{}, errLifetimeOverflow
	}
	row, err := a.a.credit(a.tx.DB, e)
	if err != nil {
		return Entry{}, err
	}
	a.a.balance.LifetimeEarned = earned
	obs := a.tx.svc.observer
	afterCommit(a.tx.DB, func() { obs.PointsIssued(points) })
	return entryFromRow(row), nil
}

// CreditRef links a credit to what caused it.
type CreditRef struct {
	PurchaseID, RedemptionID, OfferID string
}

// Save writes the balance back; call it once after the account's changes.
func (a *Account) Save() error { return a.a.save(a.tx.DB) }

// Balance is the account's balance at the transaction's time.
func (a *Account) Balance() (Balance, error) {
	_, l, err := loadTiers(a.tx.DB)
	if err != nil {
		return Balance{}, err
	}
	return a.a.view(a.tx.DB, l)
}

// MemberTier returns a member's tier code and whether it is active, reading
// with db. A member token sees only itself.
func MemberTier(db *gorm.DB, p Principal, memberID string) (tier tiers.Tier, hasTier, active bool, err error) {
	if !p.SeesMember(memberID) {
		return tier, false, false, hidden(memberID)
	}
	m, err := getMember(db, memberID)
	if err != nil {
		return tier, false, false, err
	}
	_, l, err := loadTiers(db)
	if err != nil {
		return tier, false, false, err
	}
	tier, hasTier = currentTier(l, m)
	return tier, hasTier, m.Status == StatusActive, nil
}

// TS normalises a time for storage and comparison: UTC, microseconds.
func TS(t time.Time) time.Time { return ts(t) }

// BalanceAt computes a member's balance at now, reading with db.
func BalanceAt(db *gorm.DB, memberID string, now time.Time) (Balance, error) {
	a, ladder, err := loadAccount(db, memberID, ts(now))
	if err != nil {
		return Balance{}, err
	}
	return a.view(db, ladder)
}

// WriteSet runs a set-based job's statements in one transaction that sees
// one snapshot throughout; see Store.writeSerial.
func WriteSet(ctx context.Context, s *Service, fn func(*Tx) error) error {
	return s.store.writeSerial(ctx, func(db *gorm.DB) error {
		return fn(&Tx{DB: db, Now: ts(s.now()), svc: s})
	})
}

// LockBalances locks, in one order, the balances of the members that
// memberIDs (a SELECT of member ids) returns, before a set-based change to
// their points. SQLite's write transaction already excludes other writers.
func (t *Tx) LockBalances(memberIDs string, args ...any) error {
	if t.svc.store.Dialect != Postgres {
		return nil
	}
	return t.DB.Exec("SELECT 1 FROM member_balances WHERE member_id IN ("+memberIDs+") ORDER BY member_id FOR UPDATE", args...).Error
}

// ExpiryFor is when points credited at t expire under the program's lot
// policy; nil when they never expire by lot.
func (p *Program) ExpiryFor(t time.Time) *time.Time {
	if p.ExpiryPolicy != ExpiryLot || p.ExpiryDays == 0 {
		return nil
	}
	e := ts(t.AddDate(0, 0, p.ExpiryDays))
	return &e
}
