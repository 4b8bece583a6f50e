package loyalty

import (
	"context"
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
// Idempotency-Key: a repeat replays the first result (the JSON of fn's
// result) instead of running fn again.
func Write[T any](ctx context.Context, s *Service, key IdempotencyKey, fn func(*Tx) (T, error)) (T, *Replay, error) {
	return writeOnce(ctx, s, headerGuard(key), func(db *gorm.DB) (T, error) {
		return fn(&Tx{DB: db, Now: ts(s.now()), svc: s})
	})
}

// Read runs fn on one consistent snapshot of the database.
func Read(ctx context.Context, s *Service, fn func(db *gorm.DB) error) error {
	return s.store.snapshot(ctx, fn)
}

// NewID returns a new opaque, time-ordered id.
func NewID() string { return newID() }

// Account is a member's points, locked for the rest of a transaction. It
// exists only inside Tx.UpdateAccount, which saves it.
type Account struct {
	a  *account
	tx *Tx
}

// UpdateAccount is the read-modify-write of a member's points: it locks
// the member's account for the rest of the transaction, runs change on it,
// saves it and returns its balance afterwards. When change fails nothing is
// saved and the error is returned as it is.
func (t *Tx) UpdateAccount(memberID string, change func(*Account) error) (Balance, error) {
	prog, err := loadProgram(t.DB)
	if err != nil {
		return Balance{}, err
	}
	a, err := updateAccount(t.DB, memberID, prog, t.Now, func(a *account) error {
		return change(&Account{a: a, tx: t})
	})
	if err != nil {
		return Balance{}, err
	}
	_, l, err := loadTiers(t.DB)
	if err != nil {
		return Balance{}, err
	}
	return a.view(l), nil
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
	row, err := a.a.refund(a.tx.DB, entryID, entrySpec{Kind: kind, OccurredAt: a.tx.Now, RedemptionID: strp(redemptionID), Description: description})
	if err != nil {
		return Entry{}, err
	}
	if kind == KindRedeemCancel {
		a.a.balance.LifetimeRedeemed -= row.Points
	}
	return entryFromRow(row), nil
}

// Credit adds points in a new lot, available now and expiring under the
// program's policy.
func (a *Account) Credit(kind string, points int64, ref CreditRef, description string) (Entry, error) {
	e := entrySpec{Kind: kind, Points: points, OccurredAt: a.tx.Now, ExpiresAt: a.a.prog.ExpiryFor(a.tx.Now),
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

// BalanceAt computes a member's balance at now afresh from its open lots and
// the purchases of its qualifying period, reading with db, whether or not
// the balance row's kept state still holds (which Service.Balance answers
// from).
func BalanceAt(db *gorm.DB, memberID string, now time.Time) (Balance, error) {
	a, ladder, err := loadAccount(db, memberID, ts(now))
	if err != nil {
		return Balance{}, err
	}
	lots, ps, err := a.openState(db)
	if err != nil {
		return Balance{}, err
	}
	r := a.rules()
	return a.keptView(keptAt(r, lots, ps, a.now), a.balance.Version+passedIn(r, lots, ps, a.balance.AsOf, a.now), ladder), nil
}

// WriteSet runs a set-based job's statements in one transaction that sees
// one snapshot throughout; see Store.writeSerial.
func WriteSet(ctx context.Context, s *Service, fn func(*Tx) error) error {
	return s.store.writeSerial(ctx, func(db *gorm.DB) error {
		return fn(&Tx{DB: db, Now: ts(s.now()), svc: s})
	})
}

// WriteDerived runs fn in a write transaction at the database's default
// isolation (READ COMMITTED on PostgreSQL), for jobs that replace derived
// tables (segments, churn scores) and write no ledger: each statement sees
// what was committed when it started, and a till's purchase meanwhile
// (which may update its member row) never makes the job start over, as it
// would under WriteSet's one snapshot, holding its rows again each time.
// On SQLite, whose writer is alone, it is WriteSet.
func WriteDerived(ctx context.Context, s *Service, fn func(*Tx) error) error {
	if s.store.Dialect != Postgres {
		return WriteSet(ctx, s, fn)
	}
	return s.store.writeJob(ctx, func(db *gorm.DB) error {
		return fn(&Tx{DB: db, Now: ts(s.now()), svc: s})
	})
}

// LockBalances locks the balance rows of the members ids, in one order,
// until the transaction ends (nothing on SQLite, whose write transaction
// excludes other writers): before a set-based change inserts rows whose
// key references them, so that each key check finds its row already held
// rather than locking it in the order of the insert.
func (t *Tx) LockBalances(ids []string) error {
	return lockBalances(t.DB, "SELECT member_id FROM member_balances WHERE member_id IN @ids", map[string]any{"ids": ids})
}

// BulkCredit credits the same points to many members at once (see
// BulkCredit), set-based, under the transaction's time and settings.
func (t *Tx) BulkCredit(c BulkCredit) error {
	prog, err := loadProgram(t.DB)
	if err != nil {
		return err
	}
	return bulkCredit(t.DB, prog, t.Now, c)
}
