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

// account is a member's balance row and member row, both locked for the
// rest of the transaction: every change to a member's points goes through
// one, so concurrent writes for one member are serialised while writes for
// different members run in parallel.
type account struct {
	member  memberRow
	balance balanceRow
	prog    *Program
	now     time.Time
	opened  []lotRow       // lots credit opened in this transaction
	set     *settings      // the settings, when lockAccount looked them up
	writes  *accountWrites // inserts deferred as data, see accountWrites
	cfg     int64          // the config_version the account was read under
	k       kept           // the kept state at now, with this transaction's changes
	passed  int64          // instants of change in (balance.AsOf, now]
}

// lockSQL reads and locks a member's balance and member rows, with the
// current config_version; lockSQLite is the same without the row locks,
// which SQLite has not (its write transaction excludes other writers).
const (
	lockSQLite = `SELECT m.id, m.external_id, m.email, m.phone, m.first_name, m.last_name, m.birthday, m.timezone, m.status,
		m.tier_code, m.tier_since, m.churn_risk, m.enrolled_at, m.updated_at,
		b.points, b.debt, b.lifetime_earned, b.lifetime_redeemed, b.last_activity_at, b.version, b.updated_at,
		b.open_available, b.open_pending, b.qualifying_spend, b.expiring_soon, b.as_of, b.next_change_at, b.config_version,
		(SELECT config_version FROM program WHERE id = 1)
		FROM member_balances b JOIN members m ON m.id = b.member_id WHERE b.member_id = ?`
	lockSQL = lockSQLite + " FOR UPDATE OF b, m"
)

// lockedDest is where a row of lockSQL scans to.
func (a *account) lockedDest(version *int64) []any {
	m, b := &a.member, &a.balance
	return []any{&m.ID, &m.ExternalID, &m.Email, &m.Phone, &m.FirstName, &m.LastName, &m.Birthday, &m.Timezone,
		&m.Status, &m.TierCode, &m.TierSince, &m.ChurnRisk, &m.EnrolledAt, &m.UpdatedAt,
		&b.Points, &b.Debt, &b.LifetimeEarned, &b.LifetimeRedeemed, &b.LastActivityAt, &b.Version, &b.UpdatedAt,
		&b.OpenAvailable, &b.OpenPending, &b.QualifyingSpend, &b.ExpiringSoon, &b.AsOf, &b.NextChangeAt, &b.ConfigVersion,
		version}
}

// lockAccount locks the member's balance and member rows with one
// statement. With a nil prog it takes the settings current in tx, checked
// against the config_version that statement also reads, and a.set holds
// them.
func lockAccount(tx *gorm.DB, memberID string, prog *Program, now time.Time) (*account, error) {
	a := &account{prog: prog, now: now}
	q := lockSQL
	if tx.Dialector.Name() != Postgres {
		q = lockSQLite
	}
	rows, err := tx.Raw(q, memberID).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, Errorf(NotFound, "not_found", "no member has id %q", memberID)
	}
	m, b := &a.member, &a.balance
	var version int64
	if err := rows.Scan(a.lockedDest(&version)...); err != nil {
		return nil, err
	}
	b.MemberID = m.ID
	a.cfg = version
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if a.prog == nil {
		if a.set, err = settingsAt(tx, version); err != nil {
			return nil, err
		}
		a.prog = a.set.prog
	}
	// The instants passed since the row was kept are counted on the lots
	// as they stand, before this transaction changes any.
	if err := a.catchUp(tx); err != nil {
		return nil, err
	}
	if err := a.expireInactive(tx); err != nil {
		return nil, err
	}
	return a, nil
}

// expireInactive writes, under the inactivity policy, the expiry of every
// lot of a member whose deadline has passed, before anything this
// transaction does can move the deadline (an earn or a redeem would
// otherwise bring expired points back). The entries are the ones the
// ledger listing shows from the deadline on and the expire-points job would
// store (see lapsedEntry), so none is written twice.
func (a *account) expireInactive(tx *gorm.DB) error {
	deadline, ok := a.inactivityDeadline()
	if !ok || deadline.After(a.now) {
		return nil
	}
	var lots []lotRow
	if err := tx.Where("member_id = ? AND remaining > 0", a.member.ID).Order("id").Find(&lots).Error; err != nil {
		return err
	}
	for _, l := range lots {
		e, ok := a.lapsedEntry(l)
		if !ok {
			continue
		}
		e.CreatedAt = a.now
		if err := a.insert(tx, &e); err != nil {
			return err
		}
		if err := tx.Create(&drawRow{EntryID: e.ID, LotID: l.ID, Points: l.Remaining}).Error; err != nil {
			return err
		}
		if err := tx.Model(&lotRow{}).Where("id = ?", l.ID).Update("remaining", 0).Error; err != nil {
			return err
		}
		a.k.draw(l, l.Remaining, a.now)
		a.balance.Points += e.Points
	}
	if len(lots) > 0 {
		// The balance row is saved by the caller with its other changes.
		a.balance.Version++
	}
	return nil
}

// expirePrefix makes the id of a lot's expire entry from the lot's id: the
// entry is the lot's, one per lot, so whoever writes it (the expire-points
// job, the inactivity write-off of a locked account) writes the same row,
// and the ledger listing shows it under that id before it is stored.
const expirePrefix = "exp:"

func expireEntryID(lotID string) string { return expirePrefix + lotID }

// Descriptions of expire entries, by the rule that expired the lot.
const (
	expiredByLot        = "points expired"
	expiredByInactivity = "points expired after inactivity"
)

// lapse is when the points of lot l lapse for this account: at the lot's
// own expires_at, or at the inactivity deadline when that comes first. ok
// is false for a lot that never lapses as things stand. The expire-points
// job dates its entries by the same rule, in SQL (lapseSQL).
func (a *account) lapse(l lotRow) (at time.Time, why string, ok bool) {
	deadline, inactive := a.inactivityDeadline()
	switch {
	case l.ExpiresAt != nil && (!inactive || !l.ExpiresAt.After(deadline)):
		return l.ExpiresAt.UTC(), expiredByLot, true
	case inactive:
		return deadline.UTC(), expiredByInactivity, true
	}
	return time.Time{}, "", false
}

// lapsedEntry is the expire entry of lot l if its points have lapsed at
// a.now: all that is left of the lot, dated when it lapsed. It is the same
// row whether it is stored yet or not, CreatedAt aside.
func (a *account) lapsedEntry(l lotRow) (entryRow, bool) {
	at, why, ok := a.lapse(l)
	if !ok || at.After(a.now) || l.Remaining <= 0 {
		return entryRow{}, false
	}
	at = ts(at)
	return entryRow{ID: expireEntryID(l.ID), MemberID: l.MemberID, Kind: KindExpire, Points: -l.Remaining, OccurredAt: at,
		AvailableAt: at, ExpiresAt: tsp(l.ExpiresAt), Description: why}, true
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

// save writes the cached balance back, its kept state as of now, with a
// new version.
func (a *account) save(tx *gorm.DB) error {
	a.seal()
	return tx.Save(&a.balance).Error
}

// seal brings the balance row to what save writes: its kept state as of
// now, with a new version.
func (a *account) seal() {
	a.keep()
	a.balance.UpdatedAt = a.now
}

// entrySpec describes an entry to append.
type entrySpec struct {
	ID           string // preset for debits, whose draws name it; else new
	Kind         string
	Points       int64 // signed
	OccurredAt   time.Time
	AvailableAt  time.Time // credits only; defaults to OccurredAt
	ExpiresAt    *time.Time
	PurchaseID   *string
	ReturnID     *string
	RedemptionID *string
	OfferID      *string
	Description  string
}

func (a *account) append(tx *gorm.DB, e entrySpec) (entryRow, error) {
	if e.AvailableAt.IsZero() {
		e.AvailableAt = e.OccurredAt
	}
	id := e.ID
	if id == "" {
		id = newID()
	}
	row := entryRow{ID: id, MemberID: a.member.ID, Kind: e.Kind, Points: e.Points, OccurredAt: ts(e.OccurredAt),
		AvailableAt: ts(e.AvailableAt), ExpiresAt: tsp(e.ExpiresAt), PurchaseID: e.PurchaseID, ReturnID: e.ReturnID,
		RedemptionID: e.RedemptionID, OfferID: e.OfferID, Description: e.Description, CreatedAt: a.now}
	if err := a.insert(tx, &row); err != nil {
		return entryRow{}, err
	}
	sum, ok := tiers.AddMinor(a.balance.Points, e.Points)
	if !ok {
		return entryRow{}, Errorf(Conflict, "overflow", "the balance would overflow")
	}
	a.balance.Points = sum
	return row, nil
}

// errLifetimeOverflow refuses a credit that would take a member's lifetime
// earned points past int64.
var errLifetimeOverflow = Errorf(Conflict, "overflow", "the member's lifetime earned points would overflow")

// expiryFor is when a credit occurring at t expires under the program's
// lot policy; nil when points never expire or expire by inactivity.
func (a *account) expiryFor(t time.Time) *time.Time {
	if a.prog.ExpiryPolicy != ExpiryLot || a.prog.ExpiryDays == 0 {
		return nil
	}
	e := ts(t.AddDate(0, 0, a.prog.ExpiryDays))
	return &e
}

// credit appends a positive entry and opens its lot, which pays any debt
// left by earlier returns first.
func (a *account) credit(tx *gorm.DB, e entrySpec) (entryRow, error) {
	if e.Points <= 0 {
		return entryRow{}, fmt.Errorf("credit of %d points", e.Points)
	}
	row, err := a.append(tx, e)
	if err != nil {
		return row, err
	}
	pay := min(a.balance.Debt, e.Points)
	a.balance.Debt -= pay
	lot := lotRow{ID: newID(), EntryID: row.ID, MemberID: a.member.ID, Points: e.Points, Remaining: e.Points - pay,
		AvailableAt: row.AvailableAt, ExpiresAt: row.ExpiresAt, CreatedAt: a.now}
	if err := a.insert(tx, &lot); err != nil {
		return row, err
	}
	a.opened = append(a.opened, lot)
	a.k.addLot(lot, a.now)
	return row, nil
}

// openLots returns the member's lots with points left, split by state at now.
func (a *account) openLots(tx *gorm.DB) (avail, pending []lotRow, err error) {
	var lots []lotRow
	if err := tx.Where("member_id = ? AND remaining > 0", a.member.ID).Find(&lots).Error; err != nil {
		return nil, nil, err
	}
	deadline, inactive := a.inactivityDeadline()
	for _, l := range lots {
		switch {
		case l.ExpiresAt != nil && !l.ExpiresAt.After(a.now):
		case inactive && !deadline.After(a.now):
		case l.AvailableAt.After(a.now):
			pending = append(pending, l)
		default:
			avail = append(avail, l)
		}
	}
	// Expiring first; never-expiring last; then oldest first.
	sort.Slice(avail, func(i, j int) bool { return lotBefore(avail[i], avail[j]) })
	sort.Slice(pending, func(i, j int) bool {
		if !pending[i].AvailableAt.Equal(pending[j].AvailableAt) {
			return pending[i].AvailableAt.Before(pending[j].AvailableAt)
		}
		return lotBefore(pending[i], pending[j])
	})
	return avail, pending, nil
}

func lotBefore(x, y lotRow) bool {
	switch {
	case x.ExpiresAt != nil && y.ExpiresAt == nil:
		return true
	case x.ExpiresAt == nil && y.ExpiresAt != nil:
		return false
	case x.ExpiresAt != nil && !x.ExpiresAt.Equal(*y.ExpiresAt):
		return x.ExpiresAt.Before(*y.ExpiresAt)
	case !x.AvailableAt.Equal(y.AvailableAt):
		return x.AvailableAt.Before(y.AvailableAt)
	}
	return x.ID < y.ID
}

// inactivityDeadline is when all points expire under the inactivity policy.
func (a *account) inactivityDeadline() (time.Time, bool) {
	if a.prog.ExpiryPolicy != ExpiryInactivity || a.prog.ExpiryDays == 0 || a.balance.LastActivityAt == nil {
		return time.Time{}, false
	}
	return a.balance.LastActivityAt.UTC().AddDate(0, 0, a.prog.ExpiryDays), true
}

// take removes n points from lots in order. It returns the draws it made
// and what it could not take.
func (a *account) take(tx *gorm.DB, lots []lotRow, n int64) ([]drawRow, int64, error) {
	var draws []drawRow
	for i := range lots {
		if n == 0 {
			break
		}
		l := &lots[i]
		t := min(l.Remaining, n)
		if t == 0 {
			continue
		}
		a.k.draw(*l, t, a.now)
		l.Remaining -= t
		n -= t
		draws = append(draws, drawRow{LotID: l.ID, Points: t})
		if err := tx.Model(&lotRow{}).Where("id = ?", l.ID).Update("remaining", l.Remaining).Error; err != nil {
			return nil, n, err
		}
	}
	return draws, n, nil
}

// debit appends the negative entry e and records the draws it took.
func (a *account) debit(tx *gorm.DB, e entrySpec, draws []drawRow) (entryRow, error) {
	row, err := a.append(tx, e)
	if err != nil {
		return row, err
	}
	for i := range draws {
		draws[i].EntryID = row.ID
	}
	if len(draws) > 0 {
		if err := tx.Create(&draws).Error; err != nil {
			return row, err
		}
	}
	return row, nil
}

// spend appends a negative entry that must be covered by available points:
// it takes from the lots that expire first, and fails with 409 when the
// available points fall short.
func (a *account) spend(tx *gorm.DB, e entrySpec) (entryRow, error) {
	n := -e.Points
	if n <= 0 {
		return entryRow{}, fmt.Errorf("spend of %d points", e.Points)
	}
	avail, _, err := a.openLots(tx)
	if err != nil {
		return entryRow{}, err
	}
	var have int64
	for _, l := range avail {
		have += l.Remaining
	}
	have -= a.balance.Debt
	if have < n {
		return entryRow{}, Errorf(Conflict, "insufficient_points", "%d points are available, %d are needed", max(have, 0), n)
	}
	draws, _, err := a.take(tx, avail, n)
	if err != nil {
		return entryRow{}, err
	}
	return a.debit(tx, e, draws)
}

// reverse appends a negative entry that claws points back: from the live
// lots of the entries in own first (the purchase's own points), then from
// the available lots expiring first, then from pending lots. What is still
// missing becomes debt, the only way available points go below zero. A
// lapsed lot is never taken from, own or not: its points are the expire
// entry's (see lapsed), and the caller caps the reversal at what the
// purchase has not lost to expiry (ownExpired).
func (a *account) reverse(tx *gorm.DB, e entrySpec, own map[string]bool) (entryRow, error) {
	n := -e.Points
	if n <= 0 {
		return entryRow{}, fmt.Errorf("reversal of %d points", e.Points)
	}
	avail, pending, err := a.openLots(tx)
	if err != nil {
		return entryRow{}, err
	}
	var first, rest []lotRow
	for _, l := range append(avail, pending...) {
		if own[l.EntryID] {
			first = append(first, l)
		} else {
			rest = append(rest, l)
		}
	}
	// The purchase's own lots in the order they were opened.
	sort.Slice(first, func(i, j int) bool { return first[i].ID < first[j].ID })
	draws, left, err := a.take(tx, append(first, rest...), n)
	if err != nil {
		return entryRow{}, err
	}
	a.balance.Debt += left
	return a.debit(tx, e, draws)
}

// ownExpired is how many points of the lots of the entries in own have
// been lost to expiry by a.now: what the expire entries of those lots took,
// stored or (lapsed but not yet stored) as the listing shows them.
func (a *account) ownExpired(tx *gorm.DB, own []string) (int64, error) {
	if len(own) == 0 {
		return 0, nil
	}
	var lots []lotRow
	if err := tx.Where("member_id = ? AND entry_id IN ?", a.member.ID, own).Find(&lots).Error; err != nil {
		return 0, err
	}
	var lost int64
	ids := make([]string, 0, len(lots))
	for _, l := range lots {
		ids = append(ids, expireEntryID(l.ID))
		if e, ok := a.lapsedEntry(l); ok {
			lost -= e.Points
		}
	}
	if len(ids) == 0 {
		return lost, nil
	}
	var stored int64
	if err := tx.Raw(`SELECT COALESCE(SUM(points), 0) FROM lot_draws WHERE entry_id IN ?`, ids).Scan(&stored).Error; err != nil {
		return 0, err
	}
	return lost + stored, nil
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
			q = q.Where("occurred_at < ? OR (occurred_at = ? AND id < ?)", cur.OccurredAt, cur.OccurredAt, cur.ID)
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
		a, err := lockAccount(tx, memberID, prog, ts(s.now()))
		if err != nil {
			return Entry{}, err
		}
		spec := entrySpec{Kind: KindAdjust, Points: *in.Points, OccurredAt: a.now, Description: in.Reason}
		var row entryRow
		if *in.Points > 0 {
			// The balance is checked as the entry is appended; the lifetime
			// total must not wrap round either.
			earned, ok := tiers.AddMinor(a.balance.LifetimeEarned, *in.Points)
			if !ok {
				return Entry{}, errLifetimeOverflow
			}
			spec.ExpiresAt = a.expiryFor(a.now)
			row, err = a.credit(tx, spec)
			a.balance.LifetimeEarned = earned
		} else {
			row, err = a.spend(tx, spec)
		}
		if err != nil {
			return Entry{}, err
		}
		if err := a.save(tx); err != nil {
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
