package loyalty

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/tiers"
)

// The books: the only code that writes ledger_entries, lots, lot_draws and
// member_balances. Per account, everything goes through updateAccount (the
// read-modify-write under the account's lock; exported as Tx.UpdateAccount):
// it locks the balance and member rows, runs the change, which appends
// entries, opens lots and draws from them, and saves the balance row with
// its kept state. In bulk, the set-based jobs call bulkCredit (Tx.BulkCredit)
// and bulkExpire, which lock the balances they change in one order, write
// the entries and lots set-based, and move and keep each balance row in
// one write (rekeep). The rules they follow (expiry,
// lapse, qualifying spend, lot order) are in rules.go.

// updateAccount is the one read-modify-write of a member's points: it
// locks the account (with a nil prog, under the settings current in tx),
// runs change on it and saves it, so a change is never left unsaved. When
// change fails nothing is saved, and the caller's transaction rolls back.
// It returns the saved account, for its view.
func updateAccount(tx *gorm.DB, memberID string, prog *Program, now time.Time, change func(*account) error) (*account, error) {
	a, err := lockAccount(tx, memberID, prog, now)
	if err != nil {
		return nil, err
	}
	if err := change(a); err != nil {
		return nil, err
	}
	if err := a.save(tx); err != nil {
		return nil, err
	}
	if err := a.emitBalance(tx); err != nil {
		return nil, err
	}
	return a, nil
}

// emitBalance emits balance.changed with the account's balance as a read
// answers it (§7), under the tiers tx sees.
func (a *account) emitBalance(tx *gorm.DB) error {
	set, err := settingsAt(tx, a.cfg)
	if err != nil {
		return err
	}
	return emit(tx, balanceEvent(a.view(set.ladder), nil, a.now))
}

// openBalance writes the balance row of a member enrolled at now; its copy
// of the member's tier is the insert's trigger's (migration 00042).
func openBalance(tx *gorm.DB, memberID string, now time.Time) error {
	return tx.Create(&balanceRow{MemberID: memberID, Version: 1, UpdatedAt: now, AsOf: now, ExpiringSoon: "[]"}).Error
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
// The lock is FOR NO KEY UPDATE: as exclusive as FOR UPDATE against every
// other writer of the rows, but not against the KEY SHARE lock a foreign
// key check takes on the member when a set-based job inserts rows that
// reference it (member_segments, member_churn, offers, events). With FOR
// UPDATE a till waited for such a job's whole transaction.
const (
	lockSQLite = `SELECT m.id, m.external_id, m.email, m.phone, m.first_name, m.last_name, m.birthday, m.timezone, m.status,
		m.tier_code, m.tier_since, m.churn_risk, m.enrolled_at, m.updated_at, ` + balanceColumns + `
		FROM member_balances b JOIN members m ON m.id = b.member_id WHERE b.member_id = ?`
	lockSQL = lockSQLite + " FOR NO KEY UPDATE OF b, m"
	// balanceColumns are what the lock statements read of a balance row b
	// (balanceDest), then the current config_version.
	balanceColumns = `b.points, b.debt, b.lifetime_earned, b.lifetime_redeemed, b.last_activity_at, b.version, b.updated_at,
		b.open_available, b.open_pending, b.qualifying_spend, b.expiring_soon, b.as_of, b.next_change_at, b.config_version,
		(SELECT config_version FROM program WHERE id = 1)`
)

// lockedDest is where a row of lockSQL scans to.
func (a *account) lockedDest(version *int64) []any {
	m := &a.member
	return append([]any{&m.ID, &m.ExternalID, &m.Email, &m.Phone, &m.FirstName, &m.LastName, &m.Birthday, &m.Timezone,
		&m.Status, &m.TierCode, &m.TierSince, &m.ChurnRisk, &m.EnrolledAt, &m.UpdatedAt}, a.balanceDest(version)...)
}

// balanceDest is where balanceColumns scan to.
func (a *account) balanceDest(version *int64) []any {
	b := &a.balance
	return []any{&b.Points, &b.Debt, &b.LifetimeEarned, &b.LifetimeRedeemed, &b.LastActivityAt, &b.Version, &b.UpdatedAt,
		&b.OpenAvailable, &b.OpenPending, &b.QualifyingSpend, &b.ExpiringSoon, &b.AsOf, &b.NextChangeAt, &b.ConfigVersion,
		version}
}

// lockAccount locks the member's balance and member rows with one
// statement. With a nil prog it takes the settings current in tx, checked
// against the config_version that statement also reads, and a.set holds
// them.
func lockAccount(tx *gorm.DB, memberID string, prog *Program, now time.Time) (*account, error) {
	a, err := lockKept(tx, memberID, prog, now)
	if err != nil {
		return nil, err
	}
	if err := a.expireInactive(tx); err != nil {
		return nil, err
	}
	return a, nil
}

// lockKept is lockAccount without the inactivity expiry: the account
// locked, with its kept state brought to now.
func lockKept(tx *gorm.DB, memberID string, prog *Program, now time.Time) (*account, error) {
	a := &account{prog: prog, now: now}
	var (
		rows *sql.Rows
		err  error
	)
	if tx.Dialector.Name() != Postgres {
		// A fixed text on the transaction's connection, through the
		// statement cache: no GORM statement building (see flushSQLite).
		rows, err = tx.Statement.ConnPool.QueryContext(tx.Statement.Context, lockSQLite, memberID)
	} else {
		rows, err = tx.Raw(lockSQL, memberID).Rows()
	}
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
		ev, err := eventOf(EventPointsExpired, &a.member.ID, a.now, entryFromRow(e))
		if err != nil {
			return err
		}
		if err := emit(tx, ev); err != nil {
			return err
		}
	}
	if len(lots) > 0 {
		// The balance row is saved by the caller with its other changes.
		a.balance.Version++
	}
	return nil
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

// drawBatch is how many lots a draw reads at a time.
const drawBatch = 50

// scanLots reads the member's open lots in the order of scans, drawBatch at
// a time, passing each batch to use until use reports that it has what it
// needs: a draw reads as many lots as it takes, however many are open. The
// lots are read as they stand; the caller changes them only after the scan.
func (a *account) scanLots(tx *gorm.DB, scans []lotScan, use func([]lotRow) bool) error {
	if d, inactive := a.inactivityDeadline(); inactive && !d.After(a.now) {
		return nil // every lot has lapsed (expireInactive wrote them off)
	}
	for _, s := range scans {
		args := []any{a.member.ID}
		for i := 0; i < s.args; i++ {
			args = append(args, a.now)
		}
		for offset := 0; ; offset += drawBatch {
			var lots []lotRow
			if err := tx.Where("member_id = ? AND remaining > 0 AND "+s.where, args...).Order(s.order).
				Limit(drawBatch).Offset(offset).Find(&lots).Error; err != nil {
				return err
			}
			if use(lots) {
				return nil
			}
			if len(lots) < drawBatch {
				break
			}
		}
	}
	return nil
}

// drawFrom takes n points from the lots the scans select, in their order,
// skipping those in skip. It returns the draws and what was left uncovered.
func (a *account) drawFrom(tx *gorm.DB, scans []lotScan, n int64, skip map[string]bool) ([]drawRow, int64, error) {
	var out []drawRow
	byID := map[string]lotRow{}
	err := a.scanLots(tx, scans, func(lots []lotRow) bool {
		kept := lots[:0]
		for _, l := range lots {
			if !skip[l.ID] {
				kept = append(kept, l)
				byID[l.ID] = l
			}
		}
		var d []drawRow
		d, n = allocate(kept, n)
		out = append(out, d...)
		return n == 0
	})
	if err != nil {
		return nil, n, err
	}
	return out, n, a.take(tx, byID, out)
}

// take applies draws to the lots they name: the remainders go down and the
// kept state follows.
func (a *account) take(tx *gorm.DB, lots map[string]lotRow, draws []drawRow) error {
	for _, d := range draws {
		l := lots[d.LotID]
		a.k.draw(l, d.Points, a.now)
		if err := tx.Model(&lotRow{}).Where("id = ?", l.ID).Update("remaining", l.Remaining-d.Points).Error; err != nil {
			return err
		}
	}
	return nil
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
		// After its entry, also when the account collects its writes.
		if err := a.insert(tx, &draws); err != nil {
			return row, err
		}
	}
	return row, nil
}

// spend appends a negative entry that must be covered by available points:
// it takes from the lots that expire first, and fails with 409 when the
// available points (kept, brought to now by lockAccount) fall short.
func (a *account) spend(tx *gorm.DB, e entrySpec) (entryRow, error) {
	n := -e.Points
	if n <= 0 {
		return entryRow{}, fmt.Errorf("spend of %d points", e.Points)
	}
	have := a.k.Available - a.balance.Debt
	if have < n {
		return entryRow{}, Errorf(Conflict, "insufficient_points", "%d points are available, %d are needed", max(have, 0), n)
	}
	draws, left, err := a.drawFrom(tx, availableScans, n, nil)
	if err != nil {
		return entryRow{}, err
	}
	if left > 0 {
		return entryRow{}, fmt.Errorf("member %s: %d available points kept, the lots lack %d of %d", a.member.ID, have, left, n)
	}
	return a.debit(tx, e, draws)
}

// reverse appends a negative entry that claws points back: from the live
// lots of the entries in own first (the purchase's own points, in the order
// they were opened), then from the available lots expiring first, then from
// pending lots. What is still missing becomes debt, the only way available
// points go below zero. A lapsed lot is never taken from, own or not: its
// points are the expire entry's (see lapsed), and the caller caps the
// reversal at what the purchase has not lost to expiry (ownExpired).
func (a *account) reverse(tx *gorm.DB, e entrySpec, own []string) (entryRow, error) {
	n := -e.Points
	if n <= 0 {
		return entryRow{}, fmt.Errorf("reversal of %d points", e.Points)
	}
	var first []lotRow
	if len(own) > 0 {
		if err := tx.Where("member_id = ? AND remaining > 0 AND entry_id IN ?", a.member.ID, own).Order("id").Find(&first).Error; err != nil {
			return entryRow{}, err
		}
	}
	skip, alive := map[string]bool{}, first[:0]
	d, inactive := a.inactivityDeadline()
	for _, l := range first {
		skip[l.ID] = true
		if live(l, a.now) && !(inactive && !d.After(a.now)) {
			alive = append(alive, l)
		}
	}
	byID := map[string]lotRow{}
	for _, l := range alive {
		byID[l.ID] = l
	}
	draws, n := allocate(alive, n)
	if err := a.take(tx, byID, draws); err != nil {
		return entryRow{}, err
	}
	for _, scans := range [][]lotScan{availableScans, pendingScans} {
		if n == 0 {
			break
		}
		more, left, err := a.drawFrom(tx, scans, n, skip)
		if err != nil {
			return entryRow{}, err
		}
		draws, n = append(draws, more...), left
	}
	a.balance.Debt += n
	return a.debit(tx, e, draws)
}

// refund gives back what the debit entryID took, as one entry of kind:
// into new lots that keep the availability and expiry of the lots it drew
// from, so a refund never extends a point's life. Any debt is paid first;
// points whose lot has expired come back expired and pay no debt.
func (a *account) refund(tx *gorm.DB, entryID string, e entrySpec) (entryRow, error) {
	var draws []drawRow
	if err := tx.Where("entry_id = ?", entryID).Order("lot_id").Find(&draws).Error; err != nil {
		return entryRow{}, err
	}
	ids := make([]string, 0, len(draws))
	for _, d := range draws {
		e.Points += d.Points
		ids = append(ids, d.LotID)
	}
	if e.Points == 0 {
		return entryRow{}, fmt.Errorf("refund of %s: it drew no points", entryID)
	}
	var srcs []lotRow
	if err := tx.Where("id IN ?", ids).Find(&srcs).Error; err != nil {
		return entryRow{}, err
	}
	src := make(map[string]lotRow, len(srcs))
	for _, l := range srcs {
		src[l.ID] = l
	}
	row, err := a.append(tx, e)
	if err != nil {
		return entryRow{}, err
	}
	for _, d := range draws {
		s := src[d.LotID]
		var pay int64
		if live(s, a.now) {
			pay = min(a.balance.Debt, d.Points)
		}
		a.balance.Debt -= pay
		lot := lotRow{ID: newID(), EntryID: row.ID, MemberID: a.member.ID, Points: d.Points, Remaining: d.Points - pay,
			AvailableAt: s.AvailableAt, ExpiresAt: s.ExpiresAt, CreatedAt: a.now}
		if err := a.insert(tx, &lot); err != nil {
			return entryRow{}, err
		}
		a.k.addLot(lot, a.now)
	}
	return row, nil
}

// refundPart gives back n points of what the debit entryID took, as one
// entry e, when refunded points of it were given back before: like refund,
// into new lots keeping the availability and expiry of the lots drawn, so
// a refund never extends a point's life (points whose lot has expired come
// back expired). The draws are given back in one fixed order, the lots
// that expire last first, so successive parts never give back a point
// twice and together give back the debit exactly.
func (a *account) refundPart(tx *gorm.DB, entryID string, refunded, n int64, e entrySpec) (entryRow, error) {
	if n <= 0 {
		return entryRow{}, fmt.Errorf("refund of %d points", n)
	}
	var draws []drawRow
	if err := tx.Where("entry_id = ?", entryID).Find(&draws).Error; err != nil {
		return entryRow{}, err
	}
	ids := make([]string, 0, len(draws))
	for _, d := range draws {
		ids = append(ids, d.LotID)
	}
	var srcs []lotRow
	if err := tx.Where("id IN ?", ids).Find(&srcs).Error; err != nil {
		return entryRow{}, err
	}
	src := make(map[string]lotRow, len(srcs))
	for _, l := range srcs {
		src[l.ID] = l
	}
	sort.Slice(draws, func(i, j int) bool { return lotBefore(src[draws[j].LotID], src[draws[i].LotID]) })
	e.Points = n
	row, err := a.append(tx, e)
	if err != nil {
		return entryRow{}, err
	}
	skip := refunded
	for _, d := range draws {
		t := d.Points
		if skip > 0 {
			s := min(skip, t)
			skip, t = skip-s, t-s
		}
		t = min(t, n)
		if t == 0 {
			continue
		}
		n -= t
		s := src[d.LotID]
		var pay int64
		if live(s, a.now) {
			pay = min(a.balance.Debt, t)
		}
		a.balance.Debt -= pay
		lot := lotRow{ID: newID(), EntryID: row.ID, MemberID: a.member.ID, Points: t, Remaining: t - pay,
			AvailableAt: s.AvailableAt, ExpiresAt: s.ExpiresAt, CreatedAt: a.now}
		if err := a.insert(tx, &lot); err != nil {
			return entryRow{}, err
		}
		a.k.addLot(lot, a.now)
	}
	if n > 0 {
		return entryRow{}, fmt.Errorf("refund of %s: %d points more than it drew", entryID, n)
	}
	return row, nil
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

// lockBalances locks, in one order, the balance rows of the members that
// the SELECT members returns, before a set-based change to their points.
// SQLite's write transaction already excludes other writers.
func lockBalances(tx *gorm.DB, members string, args map[string]any) error {
	if tx.Dialector.Name() != Postgres {
		return nil
	}
	return tx.Exec("SELECT 1 FROM member_balances WHERE member_id IN ("+members+") ORDER BY member_id FOR UPDATE", args).Error
}

// balanceMove is a set-based change to one member's balance row, made in
// Go on the row as lockKeptMany read it, so that keeping it writes the row
// once: the points credited (paying the debt first) or debited, the
// points earned, and the instants of change the lots it closed take out of
// what later reads count. A second UPDATE of a row in the same transaction
// has PostgreSQL check its foreign key again (the row is the transaction's
// own), which locks the member's row and writes its page to the WAL: at a
// million members, a page of members for every member a job moved.
type balanceMove struct{ points, earned, instants int64 }

// move makes m on the account's row: its points, debt and lifetime
// earned, its version past the write and the instants, and its kept state
// marked for computing again. A sum past int64 is refused, as the database
// refuses it, rather than wrapped.
func (a *account) move(m balanceMove) error {
	b := &a.balance
	points, ok := tiers.AddMinor(b.Points, m.points)
	earned, ok2 := tiers.AddMinor(b.LifetimeEarned, m.earned)
	if !ok || !ok2 {
		return fmt.Errorf("member %s: the balance would pass int64", b.MemberID)
	}
	b.Points, b.LifetimeEarned = points, earned
	if m.points > 0 {
		b.Debt = max(b.Debt-m.points, 0)
	}
	b.Version += 1 + m.instants
	asOf := b.AsOf
	b.NextChangeAt = &asOf
	return nil
}

// rekeep moves the balance rows of the members of moves, whose ledger
// entries and lots a set-based change just wrote, and brings their kept
// state up to now under the settings prog, one member at a time from its
// open lots and the purchases in its window: bounded per member by what is
// open, not by its history. Each row is written once. Without the keeping,
// every read of such a member would compute the same again, until the
// member's next write. The version moves past the write and the instants
// passed since the row's as_of, which a read at now adds anyway, so what a
// read returns is what it would have computed from the ledger.
//
// It also emits each member's balance.changed, rendered by the balance's
// own view from the account it just kept (no rule of the view written
// again in SQL), the events going in multi-row inserts of eventChunk.
func rekeep(tx *gorm.DB, prog *Program, moves map[string]balanceMove, now time.Time) error {
	ids := make([]string, 0, len(moves))
	for id := range moves {
		ids = append(ids, id)
	}
	return emitBalances(tx, prog, ids, now, true, true, moves)
}

// keepQuietly saves the kept state of the accounts of ids at now, as
// rekeep does, without events: for members whose balance nothing changed,
// only judged (the tier review), so that later jobs find it fresh.
func keepQuietly(tx *gorm.DB, prog *Program, ids []string, now time.Time) error {
	return emitBalances(tx, prog, ids, now, true, false, nil)
}

// emitBalances locks each account of ids, moves it by its entry of moves
// (if any), keeps and saves it when keep, and, when emit, emits its
// balance.changed from the balance's own view, eventChunk events to an
// insert. It goes keepChunk accounts at a time: one statement locks and
// reads them (in member order), one reads the open lots and one the window
// purchases of those not fresh, and one writes the kept rows back
// (saveKept), so a chunk costs a handful of round trips, not a few per
// member.
func emitBalances(tx *gorm.DB, prog *Program, ids []string, now time.Time, keep, emit bool, moves map[string]balanceMove) error {
	_, ladder, err := loadTiers(tx)
	if err != nil {
		return err
	}
	ids = sortedUnique(ids)
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), keepChunk)]
		ids = ids[len(chunk):]
		accts, err := lockKeptMany(tx, chunk, prog, now, moves)
		if err != nil {
			return err
		}
		if keep {
			if err := keepAll(tx, accts, now); err != nil {
				return err
			}
		}
		if emit {
			if err := insertEvents(tx, balanceEventsOf(accts, ladder, now)); err != nil {
				return err
			}
		}
	}
	return nil
}

// keepAll keeps the accounts, caught up to now, and writes their rows
// back, one write each (saveKept).
func keepAll(tx *gorm.DB, accts []*account, now time.Time) error {
	for _, a := range accts {
		a.keepWith(0)
		a.balance.UpdatedAt = now
	}
	return saveKept(tx, accts)
}

// balanceEventsOf is the balance.changed of each account, from the
// balance's own view.
func balanceEventsOf(accts []*account, ladder tiers.Ladder, now time.Time) []newEvent {
	evs := make([]newEvent, 0, len(accts))
	for _, a := range accts {
		evs = append(evs, balanceEvent(a.view(ladder), nil, now))
	}
	return evs
}

// insertEvents appends evs in order, eventChunk to an insert.
func insertEvents(tx *gorm.DB, evs []newEvent) error {
	for len(evs) > 0 {
		n := min(len(evs), eventChunk)
		if err := appendEvents(tx, evs[:n]...); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

// keepChunk bounds the accounts emitBalances locks and keeps at a time.
const keepChunk = 500

func sortedUnique(ids []string) []string {
	out := append([]string(nil), ids...)
	sort.Strings(out)
	n := 0
	for i, id := range out {
		if i == 0 || id != out[n-1] {
			out[n] = id
			n++
		}
	}
	return out[:n]
}

// lockKeptMany is lockKept for many members at once: their balance rows
// locked and read in one statement, in member order, each moved by its
// entry of moves (if any), and the open lots and window purchases of those
// whose kept state is not fresh read in one statement each. A member of
// ids with no balance row is not_found, as in lockKept.
//
// Only the balance rows are read and locked: of the member, the accounts
// need its id and its tier, which the balance row keeps too (migration
// 00042's triggers copy it there) and which changes only under the
// balance's lock. A lock on the member's row writes its page to the WAL,
// and reading it reads a page of members and a leaf of its key for every
// member a job keeps: at a million members, from outside shared_buffers
// for nearly every lot a day's expiry closed.
func lockKeptMany(tx *gorm.DB, ids []string, prog *Program, now time.Time, moves map[string]balanceMove) ([]*account, error) {
	accts, err := lockRows(tx, ids, prog, now)
	if err != nil {
		return nil, err
	}
	return accts, moveAndCatchUp(tx, accts, moves)
}

// lockRows is the first half of lockKeptMany: the balance rows of ids
// locked and read, in member order, neither moved nor caught up; of each
// member, the account holds its id and tier. A member of ids with no
// balance row is not_found.
func lockRows(tx *gorm.DB, ids []string, prog *Program, now time.Time) ([]*account, error) {
	accts := make([]*account, 0, len(ids))
	add := func(scan func(dest ...any) error) error {
		a := &account{prog: prog, now: now}
		var version int64
		if err := scan(append([]any{&a.member.ID, &a.member.TierCode}, a.balanceDest(&version)...)...); err != nil {
			return err
		}
		a.balance.MemberID = a.member.ID
		a.cfg = version
		accts = append(accts, a)
		return nil
	}
	// On PostgreSQL through pgx on the transaction's connection, the
	// members as one array (a job locks thousands a batch).
	ok, err := withPGX(tx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, pgLockManySQL, ids)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := add(rows.Scan); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		q := lockManySQL + ` IN ? ORDER BY b.member_id`
		if tx.Dialector.Name() == Postgres {
			q += " FOR NO KEY UPDATE"
		}
		rows, err := tx.Raw(q, ids).Rows()
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			if err := add(rows.Scan); err != nil {
				return nil, err
			}
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	if len(accts) != len(ids) {
		found := map[string]bool{}
		for _, a := range accts {
			found[a.member.ID] = true
		}
		for _, id := range ids {
			if !found[id] {
				return nil, Errorf(NotFound, "not_found", "no member has id %q", id)
			}
		}
	}
	return accts, nil
}

// moveAndCatchUp makes each account's entry of moves (if any) on its row
// and brings the accounts' kept state to now (catchUpAll): the second half
// of lockKeptMany.
func moveAndCatchUp(tx *gorm.DB, accts []*account, moves map[string]balanceMove) error {
	for _, a := range accts {
		if m, ok := moves[a.member.ID]; ok {
			if err := a.move(m); err != nil {
				return err
			}
		}
	}
	return catchUpAll(tx, accts)
}

// lockManySQL reads the balance rows of members (lockRows), with the
// member's id and its tier from the row's copy; the members' condition
// follows. pgLockManySQL is it on PostgreSQL for an array of members, in
// member order, locked.
const (
	lockManySQL = `SELECT b.member_id, b.tier_code, ` + balanceColumns + `
		FROM member_balances b WHERE b.member_id`
	pgLockManySQL = lockManySQL + ` = ANY($1) ORDER BY b.member_id FOR NO KEY UPDATE`
)

// BulkCredit is a set-based credit of the same points to many members,
// each an entry of Kind and a lot available at once and expiring under the
// program's policy (Program.ExpiryFor), paying the member's debt first.
type BulkCredit struct {
	Kind   string
	Points int64
	// Rows is a SELECT of entry_id, member_id and description, one row per
	// credit and at most one per member, whose named arguments (@name) are
	// Args. The lot of entry e has id 'lot:' || e.
	Rows string
	Args map[string]any
}

// bulkCredit writes c at now with the settings prog.
func bulkCredit(tx *gorm.DB, prog *Program, now time.Time, c BulkCredit) error {
	if c.Points <= 0 {
		return fmt.Errorf("bulk credit of %d points", c.Points)
	}
	args := map[string]any{}
	for k, v := range c.Args {
		args[k] = v
	}
	args["bulk_kind"], args["bulk_points"], args["now"], args["bulk_expires"] = c.Kind, c.Points, now, prog.ExpiryFor(now)
	rows := "(" + c.Rows + ") c"
	if err := lockBalances(tx, "SELECT c.member_id FROM "+rows, args); err != nil {
		return err
	}
	// The members credited, read before the credit, as c.Rows may depend
	// on what it writes.
	var ids []string
	if err := tx.Raw(`SELECT c.member_id FROM `+rows+` ORDER BY c.member_id`, args).Scan(&ids).Error; err != nil {
		return err
	}
	if err := tx.Exec(`INSERT INTO ledger_entries (id, member_id, kind, points, occurred_at, available_at, expires_at, description, created_at)
		SELECT c.entry_id, c.member_id, @bulk_kind, @bulk_points, @now, @now, @bulk_expires, c.description, @now FROM `+rows,
		args).Error; err != nil {
		return err
	}
	if err := tx.Exec(`INSERT INTO lots (id, entry_id, member_id, points, remaining, available_at, expires_at, created_at)
		SELECT 'lot:' || c.entry_id, c.entry_id, c.member_id, @bulk_points,
			@bulk_points - (CASE WHEN b.debt < @bulk_points THEN b.debt ELSE @bulk_points END), @now, @bulk_expires, @now
		FROM `+rows+` JOIN member_balances b ON b.member_id = c.member_id`, args).Error; err != nil {
		return err
	}
	moves := make(map[string]balanceMove, len(ids))
	for _, id := range ids {
		moves[id] = balanceMove{points: c.Points, earned: c.Points}
	}
	return rekeep(tx, prog, moves, now)
}

// expiryCursor is where a run's picks of lapsed lots (pickLapsed) have got
// to. A pick takes up to expiryWindow lapsed lots past the cursor, in the
// order an index serves them (the open lots by expires_at under the lot
// policy; by id under the inactivity policy, whose lapsed lots an idle
// member's balance selects), and returns their members in member order,
// for batches (bulkExpire) to expire a few hundred at a time. Every batch
// closes every lapsed lot of its members, so the cursor only saves the
// index the walk over what earlier batches closed; exhausted is set once a
// pick found fewer than expiryWindow lots, when none is left after them.
type expiryCursor struct {
	afterAt   *time.Time
	afterID   string
	exhausted bool
}

// expiryWindow is how many lots due an expiry run picks at a time: their
// members are then expired a batch at a time in member order, so that
// consecutive batches read neighbouring pages of the member-keyed tables
// and indexes rather than pages all over them.
var expiryWindow = 20000

// pickLapsed returns, in member order and without duplicates, the members
// of the next expiryWindow lots past c whose points lapsed by asOf
// (lapseSQL), read by index and without locks, and moves c past them.
func pickLapsed(tx *gorm.DB, prog *Program, asOf time.Time, c *expiryCursor) ([]string, error) {
	if c.exhausted {
		return nil, nil
	}
	x := lapseSQL(tx.Dialector.Name(), prog, asOf)
	pick, order := x.due, "l.id"
	if x.from == "lots l" {
		order = "l.expires_at"
		if c.afterAt != nil {
			pick += " AND l.expires_at >= @after_at"
			x.args["after_at"] = *c.afterAt
		}
	} else if c.afterID != "" {
		pick += " AND l.id > @after_id"
		x.args["after_id"] = c.afterID
	}
	var picked []struct {
		ID        string
		MemberID  string
		ExpiresAt *time.Time
	}
	if err := tx.Raw(`SELECT l.id, l.member_id, l.expires_at FROM `+x.from+` WHERE `+pick+` ORDER BY `+order+` LIMIT `+strconv.Itoa(expiryWindow),
		x.args).Scan(&picked).Error; err != nil {
		return nil, err
	}
	c.exhausted = len(picked) < expiryWindow
	if len(picked) == 0 {
		return nil, nil
	}
	last := picked[len(picked)-1]
	c.afterAt, c.afterID = last.ExpiresAt, last.ID
	ids := make([]string, len(picked))
	for i, l := range picked {
		ids[i] = l.MemberID
	}
	return sortedUnique(ids), nil
}

// bulkExpire writes one expire entry for the remainder of every lot of the
// members in ids (in member order) whose points lapsed by asOf (lapseSQL),
// at now: the entry the ledger listing has shown since the lot lapsed
// (account.lapsedEntry), its draw and the lot's remainder down to zero,
// set-based, then the balances moved and kept, one write each (as rekeep
// keeps them; each balance row locked and read once, before the lots are
// closed, and its lots read after). The batch is every lapsed lot of its
// members, so that a member with several lapsed lots (a catch-up after
// days without a run) has its kept state brought along once, not once per
// lot. ladder is the tiers' ladder of prog's settings, for the balances'
// events. It returns what it expired: the lots, their members and points.
func bulkExpire(tx *gorm.DB, prog *Program, ladder tiers.Ladder, asOf, now time.Time, ids []string) (lots int64, members []string, points Sum, err error) {
	if len(ids) == 0 {
		return 0, nil, Sum{}, nil
	}
	x := lapseSQL(tx.Dialector.Name(), prog, asOf)
	x.args["now"] = now
	x.args["members"] = ids
	// Lock their balances, in one order, before touching lots, and read
	// them (lockRows: a balance is locked and read once a batch); then,
	// under the locks (nothing changes a member's lots without its
	// balance's), the batch: every lot of theirs lapsed by asOf. The
	// statements below select it again by the same condition.
	accts, err := lockRows(tx, ids, prog, now)
	if err != nil {
		return 0, nil, Sum{}, err
	}
	lapsed := x.from + ` WHERE ` + x.due + ` AND l.member_id `
	var entries []entryRow
	if tx.Dialector.Name() == Postgres {
		entries, err = closeLapsedPostgres(tx, lapsed, x)
	} else {
		entries, err = closeLapsed(tx, lapsed+`IN @members`, x)
	}
	if err != nil || len(entries) == 0 {
		return 0, nil, Sum{}, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].ID < entries[j].ID })
	members = make([]string, 0, len(ids))
	var sum int64
	for _, e := range entries {
		members = append(members, e.MemberID)
		if next, ok := tiers.AddMinor(sum, -e.Points); ok {
			sum = next
		} else {
			points, sum = points.Add(SumOf(sum)), -e.Points
		}
	}
	points = points.Add(SumOf(sum))
	members = sortedUnique(members)
	// The balances moved and kept, caught up from their lots as closed;
	// then the events in one insert an eventChunk: points.expired, each
	// expire entry as the ledger stored it, and each balance.changed.
	moves := expiryMoves(entries)
	moved := make([]*account, 0, len(moves))
	for _, a := range accts {
		if _, ok := moves[a.member.ID]; ok {
			moved = append(moved, a)
		}
	}
	evs, err := expiredEvents(entries, now)
	if err != nil {
		return 0, nil, Sum{}, err
	}
	for len(moved) > 0 {
		chunk := moved[:min(len(moved), keepChunk)]
		moved = moved[len(chunk):]
		if err := moveAndCatchUp(tx, chunk, moves); err != nil {
			return 0, nil, Sum{}, err
		}
		if err := keepAll(tx, chunk, now); err != nil {
			return 0, nil, Sum{}, err
		}
		evs = append(evs, balanceEventsOf(chunk, ladder, now)...)
	}
	if err := insertEvents(tx, evs); err != nil {
		return 0, nil, Sum{}, err
	}
	return int64(len(entries)), members, points, nil
}

// expiryMoves is what the expire entries take off each member's balance:
// the points, and the instants of change of each lot closed (at most
// three, see kept.go), which later reads no longer count.
func expiryMoves(entries []entryRow) map[string]balanceMove {
	moves := make(map[string]balanceMove, len(entries))
	for _, e := range entries {
		m := moves[e.MemberID]
		m.points += e.Points
		m.instants += 3
		moves[e.MemberID] = m
	}
	return moves
}

// expireColumns are the columns of an expire entry an INSERT writes.
const expireColumns = `(id, member_id, kind, points, occurred_at, available_at, expires_at, description, created_at)`

// expireEntrySQL is the expire entry of the lot l under the lapse rule x,
// as the select list of an INSERT INTO ledger_entries expireColumns.
func expireEntrySQL(x lapseRule) string {
	return `'` + expirePrefix + `' || l.id, l.member_id, '` + KindExpire + `', -l.remaining, ` + x.at + `, ` + x.at + `, l.expires_at,
			` + x.why + `, @now`
}

// closeLapsed writes, for the lots the SELECT lapsed (FROM … WHERE …)
// returns, their expire entries and draws and closes the lots, one
// statement each, and returns the entries as stored (SQLite: its
// statements cost no round trip). The balances are moved by the caller
// (expiryMoves), as they are kept.
func closeLapsed(tx *gorm.DB, lapsed string, x lapseRule) ([]entryRow, error) {
	var ids []string
	if err := tx.Raw(`SELECT '`+expirePrefix+`' || l.id FROM `+lapsed, x.args).Scan(&ids).Error; err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	if err := tx.Exec(`INSERT INTO ledger_entries `+expireColumns+`
		SELECT `+expireEntrySQL(x)+` FROM `+lapsed, x.args).Error; err != nil {
		return nil, err
	}
	if err := tx.Exec(`INSERT INTO lot_draws (entry_id, lot_id, points)
		SELECT '`+expirePrefix+`' || l.id, l.id, l.remaining FROM `+lapsed, x.args).Error; err != nil {
		return nil, err
	}
	if err := tx.Exec(`UPDATE lots SET remaining = 0 WHERE id IN (SELECT l.id FROM `+lapsed+`)`, x.args).Error; err != nil {
		return nil, err
	}
	var entries []entryRow
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), eventChunk)]
		ids = ids[len(chunk):]
		var rows []entryRow
		if err := tx.Where("id IN ?", chunk).Find(&rows).Error; err != nil {
			return nil, err
		}
		entries = append(entries, rows...)
	}
	return entries, nil
}

// closeLapsedPostgres is closeLapsed in one statement on PostgreSQL: the
// lots closed (their remainders read as the update replaces them), the
// entries and draws inserted from them, and the entries returned as
// stored. One round trip instead of five, each lot read once, and the
// draws' foreign-key checks find the lots already locked by the update.
// lapsed ends in the lot's member, which the statement tests against the
// batch's members. Through pgx on the transaction's connection (withPGX),
// the members go as one array and the entries are scanned by hand: a
// batch returns thousands of them.
func closeLapsedPostgres(tx *gorm.DB, lapsed string, x lapseRule) ([]entryRow, error) {
	q := func(members string) string {
		return `WITH o AS MATERIALIZED (
			SELECT l.id, l.member_id, l.remaining, l.expires_at, ` + x.at + ` AS at, ` + x.why + ` AS why FROM ` + lapsed + members + `
		), closed AS (
			UPDATE lots SET remaining = 0 FROM o WHERE lots.id = o.id RETURNING o.*
		), draws AS (
			INSERT INTO lot_draws (entry_id, lot_id, points)
			SELECT '` + expirePrefix + `' || l.id, l.id, l.remaining FROM closed l
		)
		INSERT INTO ledger_entries ` + expireColumns + `
		SELECT '` + expirePrefix + `' || l.id, l.member_id, '` + KindExpire + `', -l.remaining, l.at, l.at, l.expires_at, l.why, @now
		FROM closed l
		RETURNING id, member_id, kind, points, occurred_at, available_at, expires_at, purchase_id, return_id, redemption_id,
			offer_id, description, created_at`
	}
	var entries []entryRow
	ok, err := withPGX(tx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, q(`= ANY(@members)`), pgx.NamedArgs(x.args))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e entryRow
			if err := rows.Scan(&e.ID, &e.MemberID, &e.Kind, &e.Points, &e.OccurredAt, &e.AvailableAt, &e.ExpiresAt, &e.PurchaseID,
				&e.ReturnID, &e.RedemptionID, &e.OfferID, &e.Description, &e.CreatedAt); err != nil {
				return err
			}
			entries = append(entries, e)
		}
		return rows.Err()
	})
	if !ok && err == nil {
		err = tx.Raw(q(`IN @members`), x.args).Scan(&entries).Error
	}
	return entries, err
}

// touchBalances moves the version of the balances of the members the SQL
// condition cond on members selects, for a change a balance shows that its
// row does not keep (the member's tier), so that ETags before it go stale.
func touchBalances(tx *gorm.DB, cond string, args ...any) error {
	return tx.Exec(`UPDATE member_balances SET version = version + 1
		WHERE member_id IN (SELECT id FROM members WHERE `+cond+`)`, args...).Error
}

// eventChunk bounds the rows of one multi-row insert of events (SQLite
// binds at most 32,766 values; four per event).
const eventChunk = 500

// expiredEvents is points.expired of each expire entry, in the order
// given.
func expiredEvents(entries []entryRow, now time.Time) ([]newEvent, error) {
	evs := make([]newEvent, 0, len(entries))
	for _, e := range entries {
		ev, err := eventOf(EventPointsExpired, &e.MemberID, now, entryFromRow(e))
		if err != nil {
			return nil, err
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// balanceEvents emits balance.changed for the members in ids, whose
// balance a set-based change moved without changing their points (a tier
// review): each account read as a balance read reads it, and its view.
func balanceEvents(tx *gorm.DB, prog *Program, ids []string, now time.Time) error {
	return emitBalances(tx, prog, ids, now, false, true, nil)
}

// openBalances writes, set-based, the empty balance rows of the members in
// ids, enrolled at now (openBalance for many), each with its member's tier
// (which the insert's trigger would otherwise look up a row at a time).
func openBalances(tx *gorm.DB, ids []string, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	cond, arg := anyOf(tx, "id", ids)
	return tx.Exec(`INSERT INTO member_balances (member_id, points, debt, lifetime_earned, lifetime_redeemed, version, updated_at, as_of, expiring_soon, tier_code)
		SELECT id, 0, 0, 0, 0, 1, ?, ?, '[]', tier_code FROM members WHERE `+cond, now, now, arg).Error
}

// OpeningCredit is one member's opening balance migrated by an import: an
// entry of kind import with its own points.
type OpeningCredit struct {
	MemberID    string
	Points      int64
	Description string
}

// creditOpenings writes each credit at now as an entry of kind import and
// its lot, available at once and expiring under the program's policy,
// and moves and keeps each balance in one write (rekeep). The entries are
// multi-row inserts; at most one credit a member.
func creditOpenings(tx *gorm.DB, prog *Program, now time.Time, credits []OpeningCredit) error {
	if len(credits) == 0 {
		return nil
	}
	entries := make([][]any, 0, len(credits))
	lots := make([][]any, 0, len(credits))
	entryIDs := make([]string, 0, len(credits))
	ids := make([]string, 0, len(credits))
	expires := prog.ExpiryFor(now)
	for _, c := range credits {
		if c.Points <= 0 {
			return fmt.Errorf("opening credit of %d points", c.Points)
		}
		id := newID()
		entries = append(entries, []any{id, c.MemberID, KindImport, c.Points, now, now, expires, c.Description, now})
		entryIDs, ids = append(entryIDs, id), append(ids, c.MemberID)
	}
	if err := lockBalances(tx, "SELECT member_id FROM member_balances WHERE member_id IN @ids", map[string]any{"ids": ids}); err != nil {
		return err
	}
	if err := insertValues(tx, "INSERT INTO ledger_entries (id, member_id, kind, points, occurred_at, available_at, expires_at, description, created_at)",
		entries, "", nil); err != nil {
		return err
	}
	// The lot pays the member's debt first, as account.credit does.
	var debts []struct {
		MemberID string
		Debt     int64
	}
	if err := tx.Raw(`SELECT member_id, debt FROM member_balances WHERE member_id IN ?`, ids).Scan(&debts).Error; err != nil {
		return err
	}
	debt := make(map[string]int64, len(debts))
	for _, d := range debts {
		debt[d.MemberID] = d.Debt
	}
	for i, c := range credits {
		lots = append(lots, []any{"lot:" + entryIDs[i], entryIDs[i], c.MemberID, c.Points, c.Points - min(debt[c.MemberID], c.Points), now, expires, now})
	}
	if err := insertValues(tx, "INSERT INTO lots (id, entry_id, member_id, points, remaining, available_at, expires_at, created_at)",
		lots, "", nil); err != nil {
		return err
	}
	moves := make(map[string]balanceMove, len(credits))
	for _, c := range credits {
		m := moves[c.MemberID]
		m.points, m.earned = m.points+c.Points, m.earned+c.Points
		moves[c.MemberID] = m
	}
	return rekeep(tx, prog, moves, now)
}

// historyChanged brings the balance rows of the members of the purchases
// in ids, just imported as history, along set-based: the last activity
// moves to the latest of them, the version moves past the write, and the
// kept state (qualifying spend, next change) is marked for computing again
// (next_change_at = as_of, as moveBalances does), so that a read or write
// keeps it from the purchases in the member's window.
func historyChanged(tx *gorm.DB, ids []string, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	cond, arg := anyOf(tx, "id", ids)
	return tx.Exec(historyMoved("(SELECT member_id, MAX(occurred_at) AS at FROM purchases WHERE "+cond+" GROUP BY member_id) x"),
		now, arg).Error
}

// historyMoved is historyChanged's statement over from, a row source named
// x of (member_id, at: the member's latest purchase just imported); its
// first argument is the write's time, then from's.
func historyMoved(from string) string {
	return `UPDATE member_balances SET version = member_balances.version + 1, updated_at = ?,
			next_change_at = member_balances.as_of,
			last_activity_at = CASE WHEN member_balances.last_activity_at IS NULL OR member_balances.last_activity_at < x.at
				THEN x.at ELSE member_balances.last_activity_at END
		FROM ` + from + `
		WHERE member_balances.member_id = x.member_id`
}
