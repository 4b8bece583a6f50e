package loyalty

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/tiers"
)

// State that is kept, not recomputed. A member's balance row keeps, as of
// its as_of, what a read needs (kept) and the next instant at which any of
// it changes by itself (next_change_at): a pending lot becoming available,
// a lot expiring or entering the expiring-soon window, the inactivity
// deadline and the start of its window, a purchase entering or leaving the
// qualifying period. A read before that instant answers from the row
// alone. Past it, a read finishes the answer from the member's open lots
// (remaining > 0) and the purchases in the qualifying period as of as_of,
// never from closed lots or older purchases, and writes nothing; a write
// does the same under the row's lock and keeps the result.
//
// The version: the stored version counts the writes and the instants up
// to as_of; a read adds the instants in (as_of, now], counted from the
// same open lots and purchases, and a write stores that sum plus one. It
// never goes down and moves whenever what a read returns can differ.

// kept is what a balance needs at one instant: the open lots' remainders
// by state (debt not taken off), the qualifying spend, the points of the
// lots expiring within the window by instant, and the next instant at
// which any of it changes by itself (nil: none). The inactivity deadline
// is applied when the balance is shown (see keptView), as it moves with
// every earn or redeem.
type kept struct {
	Available, Pending, Spend int64
	Soon                      map[time.Time]int64
	Next                      *time.Time
}

// windowPurchase is what kept needs of a purchase.
type windowPurchase struct {
	OccurredAt time.Time
	Net        int64 // NetSpendSQL: the cash part less the cash part returned
}

// keptRules are the settings and the deadline the instants follow.
type keptRules struct {
	period   tiers.Period
	deadline time.Time
	inactive bool
}

// leaveAt is the first instant at which a purchase made at at no longer
// counts towards the qualifying spend: the first t with period.Start(t) > at.
func leaveAt(p tiers.Period, at time.Time) time.Time {
	if p.Kind == tiers.CalendarYear {
		loc := p.Location
		if loc == nil {
			loc = time.UTC
		}
		return time.Date(at.In(loc).Year()+1, 1, 1, 0, 0, 0, 0, loc).UTC()
	}
	return at.AddDate(0, 0, p.WindowDays).Add(time.Microsecond).UTC()
}

// forInstants calls f with every instant at which a balance made of lots,
// purchases and the inactivity deadline changes by itself.
func forInstants(r keptRules, lots []lotRow, purchases []windowPurchase, f func(time.Time)) {
	for _, l := range lots {
		f(l.AvailableAt.UTC())
		if l.ExpiresAt != nil {
			f(l.ExpiresAt.UTC())
			f(l.ExpiresAt.UTC().Add(-ExpiringSoonWindow))
		}
	}
	for _, p := range purchases {
		f(p.OccurredAt.UTC())
		f(leaveAt(r.period, p.OccurredAt))
	}
	if r.inactive {
		f(r.deadline)
		f(r.deadline.Add(-ExpiringSoonWindow))
	}
}

// passedIn counts the instants in (from, to].
func passedIn(r keptRules, lots []lotRow, purchases []windowPurchase, from, to time.Time) int64 {
	var n int64
	forInstants(r, lots, purchases, func(t time.Time) {
		if t.After(from) && !t.After(to) {
			n++
		}
	})
	return n
}

// keptAt computes kept at now from the member's open lots and the purchases
// of its qualifying period (any older ones are ignored).
func keptAt(r keptRules, lots []lotRow, purchases []windowPurchase, now time.Time) kept {
	k := kept{Soon: map[time.Time]int64{}}
	for _, l := range lots {
		k.addLot(l, now)
	}
	for _, p := range purchases {
		if inPeriod(r.period, p.OccurredAt, now) {
			k.Spend = addSpend(k.Spend, p.Net)
		}
	}
	forInstants(r, lots, purchases, func(t time.Time) { k.noteInstant(t, now) })
	return k
}

// noteInstant lowers Next to t when t is still to come.
func (k *kept) noteInstant(t, now time.Time) {
	if t.After(now) && (k.Next == nil || t.Before(*k.Next)) {
		t := t
		k.Next = &t
	}
}

// live reports whether a lot's points still count at now by its own expiry.
func live(l lotRow, now time.Time) bool { return l.ExpiresAt == nil || l.ExpiresAt.After(now) }

// addLot counts an open lot (one just opened, or read) into k at now.
func (k *kept) addLot(l lotRow, now time.Time) {
	k.moveLot(l, l.Remaining, now)
	k.noteInstant(l.AvailableAt.UTC(), now)
	if l.ExpiresAt != nil {
		k.noteInstant(l.ExpiresAt.UTC(), now)
		k.noteInstant(l.ExpiresAt.UTC().Add(-ExpiringSoonWindow), now)
	}
}

// draw takes n points of lot l out of k at now.
func (k *kept) draw(l lotRow, n int64, now time.Time) { k.moveLot(l, -n, now) }

func (k *kept) moveLot(l lotRow, n int64, now time.Time) {
	if n == 0 || !live(l, now) {
		return
	}
	if l.AvailableAt.After(now) {
		k.Pending += n
	} else {
		k.Available += n
	}
	if l.ExpiresAt != nil && !l.ExpiresAt.After(now.Add(ExpiringSoonWindow)) {
		at := l.ExpiresAt.UTC()
		if k.Soon == nil {
			k.Soon = map[time.Time]int64{}
		}
		if k.Soon[at] += n; k.Soon[at] == 0 {
			delete(k.Soon, at)
		}
	}
}

// addPurchase counts a purchase of total made at at into k at now.
func (k *kept) addPurchase(p tiers.Period, at time.Time, total int64, now time.Time) {
	if inPeriod(p, at, now) {
		k.Spend = addSpend(k.Spend, total)
	}
	k.noteInstant(at, now)
	k.noteInstant(leaveAt(p, at), now)
}

// addReturn takes amount returned of a purchase made at at out of k.
func (k *kept) addReturn(p tiers.Period, at time.Time, amount int64, now time.Time) {
	if !inPeriod(p, at, now) {
		return
	}
	if k.Spend == math.MaxInt64 {
		// Held at the bound: what is under it is not known here, so the
		// next read or write computes it again.
		k.Next = &now
		return
	}
	k.Spend -= amount
}

// keptSoon is the stored form of kept.Soon.
type keptSoon struct {
	Points    int64     `json:"points"`
	ExpiresAt time.Time `json:"expires_at"`
}

// encodeSoon writes the JSON of a list of keptSoon, by expiry, as
// encoding/json would (appended by hand: a write and a read of a member
// with many lots about to expire pay for this per lot).
func encodeSoon(m map[time.Time]int64) string {
	out := make([]keptSoon, 0, len(m))
	for t, p := range m {
		out = append(out, keptSoon{Points: p, ExpiresAt: t.UTC()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ExpiresAt.Before(out[j].ExpiresAt) })
	b := make([]byte, 0, 2+len(out)*64)
	b = append(b, '[')
	for i, e := range out {
		if y := e.ExpiresAt.Year(); y < 0 || y > 9999 {
			return mustJSON(out) // which refuses it as encoding/json does
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"points":`...)
		b = strconv.AppendInt(b, e.Points, 10)
		b = append(b, `,"expires_at":"`...)
		b = e.ExpiresAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `"}`...)
	}
	return string(append(b, ']'))
}

// decodeSoon reads what encodeSoon wrote: the shape it writes directly,
// anything else through encoding/json.
func decodeSoon(s string) (map[time.Time]int64, error) {
	if m, ok := decodeSoonFast(s); ok {
		return m, nil
	}
	var in []keptSoon
	if s != "" {
		if err := json.Unmarshal([]byte(s), &in); err != nil {
			return nil, err
		}
	}
	m := make(map[time.Time]int64, len(in))
	for _, e := range in {
		m[e.ExpiresAt.UTC()] += e.Points
	}
	return m, nil
}

// decodeSoonFast parses exactly encodeSoon's shape; ok is false on
// anything else.
func decodeSoonFast(s string) (m map[time.Time]int64, ok bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, false
	}
	s = s[1 : len(s)-1]
	m = make(map[time.Time]int64, strings.Count(s, "{"))
	const pre, mid = `{"points":`, `,"expires_at":"`
	for first := true; s != ""; first = false {
		if !first {
			if s[0] != ',' {
				return nil, false
			}
			s = s[1:]
		}
		if !strings.HasPrefix(s, pre) {
			return nil, false
		}
		s = s[len(pre):]
		i := strings.Index(s, mid)
		if i < 0 {
			return nil, false
		}
		p, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil {
			return nil, false
		}
		s = s[i+len(mid):]
		j := strings.Index(s, `"}`)
		if j < 0 {
			return nil, false
		}
		t, err := time.Parse(time.RFC3339, s[:j])
		if err != nil {
			return nil, false
		}
		m[t.UTC()] += p
		s = s[j+2:]
	}
	return m, true
}

// rules are the account's keptRules.
func (a *account) rules() keptRules {
	d, ok := a.inactivityDeadline()
	return keptRules{period: a.prog.Period(), deadline: d.UTC(), inactive: ok}
}

// fresh reports whether the balance row's kept state holds at a.now: kept
// under the current settings, as of no later than now, and no instant of
// change between.
func (a *account) fresh() bool {
	b := &a.balance
	return b.ConfigVersion == a.cfg && !a.now.Before(b.AsOf) && (b.NextChangeAt == nil || a.now.Before(*b.NextChangeAt))
}

// keptFromRow is the row's kept state.
func (a *account) keptFromRow() (kept, error) {
	soon, err := decodeSoon(a.balance.ExpiringSoon)
	if err != nil {
		return kept{}, err
	}
	return kept{Available: a.balance.OpenAvailable, Pending: a.balance.OpenPending, Spend: a.balance.QualifyingSpend,
		Soon: soon, Next: a.balance.NextChangeAt}, nil
}

// keptLotColumns are the columns of a lot that keeping reads
// (catchUpFrom): on PostgreSQL those lots_member_open_cover carries, so
// that a member's open lots are read from a leaf page or two of the index
// (an index-only scan) rather than from a heap page each. At a million
// members a till's catch-up read eleven pages for a member's ten open lots
// with every column, one with these.
const keptLotColumns = `member_id, remaining, available_at, expires_at`

// openState reads the member's open lots (keptLotColumns) and the
// purchases of its qualifying period as of the row's as_of (and so of
// a.now, which is no earlier): all the history a balance needs, however
// long the member has been around.
func (a *account) openState(tx *gorm.DB) ([]lotRow, []windowPurchase, error) {
	var lots []lotRow
	if err := tx.Select(keptLotColumns).Where("member_id = ? AND remaining > 0", a.member.ID).Find(&lots).Error; err != nil {
		return nil, nil, err
	}
	var ps []windowPurchase
	if err := tx.Raw(`SELECT p.occurred_at, `+NetSpendSQL("p")+` AS net FROM purchases p WHERE p.member_id = ? AND p.occurred_at >= ?`,
		a.member.ID, a.windowFrom()).Scan(&ps).Error; err != nil {
		return nil, nil, err
	}
	return lots, ps, nil
}

// windowFrom is the start of the qualifying period openState reads.
func (a *account) windowFrom() time.Time {
	from := a.balance.AsOf
	if a.now.Before(from) {
		from = a.now
	}
	return ts(a.prog.Period().Start(from))
}

// catchUp brings the account's kept state to a.now: from the row when it
// is fresh, else from the open lots and the purchases in the window, with
// the instants passed since the row's as_of counted into a.passed.
func (a *account) catchUp(tx *gorm.DB) error {
	if a.fresh() {
		k, err := a.keptFromRow()
		a.k, a.passed = k, 0
		return err
	}
	lots, ps, err := a.openState(tx)
	if err != nil {
		return err
	}
	a.catchUpFrom(lots, ps)
	return nil
}

// catchUpFrom is catchUp from the open lots and window purchases read; of
// a lot it reads only remaining, available_at and expires_at.
func (a *account) catchUpFrom(lots []lotRow, ps []windowPurchase) {
	r := a.rules()
	a.passed = passedIn(r, lots, ps, a.balance.AsOf, a.now)
	a.k = keptAt(r, lots, ps, a.now)
}

// keep writes the account's kept state into its balance row, as of a.now,
// with the version moved past every instant up to now and one write.
func (a *account) keep() { a.keepWith(1) }

// keepWith is keep with the version moved by writes (0 or 1) besides the
// instants passed.
func (a *account) keepWith(writes int64) {
	b := &a.balance
	b.Version += a.passed + writes
	a.passed = 0
	if r := a.rules(); r.inactive {
		a.k.noteInstant(r.deadline, a.now)
		a.k.noteInstant(r.deadline.Add(-ExpiringSoonWindow), a.now)
	}
	b.OpenAvailable, b.OpenPending, b.QualifyingSpend = a.k.Available, a.k.Pending, a.k.Spend
	b.ExpiringSoon = encodeSoon(a.k.Soon)
	b.AsOf = a.now
	b.NextChangeAt = a.k.Next
	b.ConfigVersion = a.cfg
}

// keptView is the balance at a.now from the kept state k, with version.
func (a *account) keptView(k kept, version int64, ladder tiers.Ladder) Balance {
	b := a.newBalance()
	soon := a.now.Add(ExpiringSoonWindow)
	deadline, inactive := a.inactivityDeadline()
	byTime := map[time.Time]int64{}
	if !inactive || deadline.After(a.now) {
		// Past the inactivity deadline every lot is gone; else the sums stand.
		b.Available, b.Pending = k.Available, k.Pending
		for t, p := range k.Soon {
			if t.After(a.now) && !t.After(soon) && p != 0 {
				byTime[t] += p
			}
		}
	}
	b.Available -= a.balance.Debt
	if inactive && !deadline.After(soon) && b.Available+b.Pending > 0 {
		byTime[deadline.UTC()] += b.Available + b.Pending + a.balance.Debt
	}
	for t, p := range byTime {
		b.ExpiringSoon = append(b.ExpiringSoon, Expiring{Points: p, ExpiresAt: t})
	}
	sort.Slice(b.ExpiringSoon, func(i, j int) bool { return b.ExpiringSoon[i].ExpiresAt.Before(b.ExpiringSoon[j].ExpiresAt) })
	b.QualifyingSpend = k.Spend
	b.Version = version
	if cur, ok := currentTier(ladder, a.member); ok {
		b.Tier = &TierRef{Code: cur.Code, Name: cur.Name, EarnMultiplier: cur.EarnMultiplier}
		if next, ok := ladder.Next(cur.Code); ok {
			b.NextTier = &NextTier{Code: next.Code, Name: next.Name, SpendNeeded: max(0, next.QualifyingSpend-b.QualifyingSpend)}
		}
	}
	return b
}

// view is the balance of a locked account after its changes (kept is
// brought to a.now) or of a loaded one (see readView).
func (a *account) view(ladder tiers.Ladder) Balance {
	return a.keptView(a.k, a.balance.Version+a.passed, ladder)
}

// readView is the balance of an account loaded for reading, at a.now:
// from the row alone when it is fresh, else from the open lots and the
// purchases in the window. It writes nothing.
func (a *account) readView(tx *gorm.DB, ladder tiers.Ladder) (Balance, error) {
	if err := a.catchUp(tx); err != nil {
		return Balance{}, err
	}
	return a.view(ladder), nil
}

// catchUpAll is catchUp for many accounts: the fresh ones from their rows,
// the others from their open lots and window purchases, read in two
// statements for all of them from the earliest window any of them needs.
func catchUpAll(tx *gorm.DB, accounts []*account) error {
	var stale []string
	byID := map[string]*account{}
	var from time.Time
	for _, a := range accounts {
		if a.fresh() {
			k, err := a.keptFromRow()
			if err != nil {
				return err
			}
			a.k, a.passed = k, 0
			continue
		}
		if w := a.windowFrom(); len(stale) == 0 || w.Before(from) {
			from = w
		}
		stale = append(stale, a.member.ID)
		byID[a.member.ID] = a
	}
	if len(stale) == 0 {
		return nil
	}
	lotsOf := make(map[string][]lotRow, len(stale))
	windowOf := make(map[string][]windowPurchase, len(stale))
	windowFrom := make(map[string]time.Time, len(stale))
	for _, id := range stale {
		windowFrom[id] = byID[id].windowFrom()
	}
	addPurchase := func(id string, p windowPurchase) {
		// Each member's window starts where its own balance row says.
		if !p.OccurredAt.Before(windowFrom[id]) {
			windowOf[id] = append(windowOf[id], p)
		}
	}
	if ok, err := withPGX(tx, func(ctx context.Context, c *pgx.Conn) error {
		return pgCatchUpRows(ctx, c, stale, from, byID, lotsOf, addPurchase)
	}); err != nil {
		return err
	} else if !ok {
		if err := catchUpRows(tx, stale, from, lotsOf, addPurchase); err != nil {
			return err
		}
	}
	for _, id := range stale {
		byID[id].catchUpFrom(lotsOf[id], windowOf[id])
	}
	return nil
}

// catchUpRows reads, for catchUpAll, the open lots of the members stale
// into lotsOf and their purchases since from into add, through
// database/sql. Both reads scan their rows by hand: a job keeps thousands
// of accounts a run, and GORM's reflection per row cost more than the
// rest of the keeping. Of the lots, only keptLotColumns: a member's fifty
// open lots are a leaf page or two of lots_member_open_cover, not fifty
// heap pages.
func catchUpRows(tx *gorm.DB, stale []string, from time.Time, lotsOf map[string][]lotRow, add func(string, windowPurchase)) error {
	rows, err := tx.Raw(`SELECT `+keptLotColumns+` FROM lots WHERE member_id IN ? AND remaining > 0`, stale).Rows()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var l lotRow
		if err := rows.Scan(&l.MemberID, &l.Remaining, &l.AvailableAt, &l.ExpiresAt); err != nil {
			return err
		}
		lotsOf[l.MemberID] = append(lotsOf[l.MemberID], l)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := rows.Close(); err != nil {
		return err
	}
	prows, err := tx.Raw(`SELECT p.member_id, p.occurred_at, `+NetSpendSQL("p")+` AS net FROM purchases p
		WHERE p.member_id IN ? AND p.occurred_at >= ?`, stale, from).Rows()
	if err != nil {
		return err
	}
	defer prows.Close()
	for prows.Next() {
		var id string
		var p windowPurchase
		if err := prows.Scan(&id, &p.OccurredAt, &p.Net); err != nil {
			return err
		}
		add(id, p)
	}
	if err := prows.Err(); err != nil {
		return err
	}
	return prows.Close()
}

// The reads of catchUpRows on PostgreSQL, one prepared text each whatever
// the members (an array, not a list of parameters).
var (
	pgOpenLotsManySQL = `SELECT ` + keptLotColumns + ` FROM lots WHERE member_id = ANY($1) AND remaining > 0`
	pgWindowManySQL   = `SELECT p.member_id, p.occurred_at, ` + NetSpendSQL("p") + ` FROM purchases p
		WHERE p.member_id = ANY($1) AND p.occurred_at >= $2`
)

// pgCatchUpRows is catchUpRows through pgx on the transaction's own
// connection, both reads in one round trip, their values decoded from
// the binary format. A row's member id is looked up among byID's keys
// rather than allocated for each of the hundreds of thousands of rows a
// day's expiry reads at a million members.
func pgCatchUpRows(ctx context.Context, c *pgx.Conn, stale []string, from time.Time, byID map[string]*account,
	lotsOf map[string][]lotRow, add func(string, windowPurchase)) error {
	b := &pgx.Batch{}
	b.Queue(pgOpenLotsManySQL, stale)
	b.Queue(pgWindowManySQL, stale, from)
	br := c.SendBatch(ctx, b)
	defer br.Close()
	// each scans the rows of the batch's next read into dest, after the
	// member's id, which it finds among byID's keys, and calls keep with
	// it. The values go into the same variables row after row and are
	// copied from there, so that a row allocates only the expiry its lot
	// keeps (pgx allocates a new one for each).
	each := func(dest []any, keep func(id string)) error {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		dest = append([]any{nil}, dest...)
		for rows.Next() {
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			a, ok := byID[string(rows.RawValues()[0])]
			if !ok {
				return fmt.Errorf("catch-up: a row of member %q, not asked for", rows.RawValues()[0])
			}
			keep(a.member.ID)
		}
		return rows.Err()
	}
	var (
		remaining, net int64
		available, at  time.Time
		expires        *time.Time
	)
	if err := each([]any{&remaining, &available, &expires}, func(id string) {
		lotsOf[id] = append(lotsOf[id], lotRow{MemberID: id, Remaining: remaining, AvailableAt: available, ExpiresAt: expires})
	}); err != nil {
		return err
	}
	if err := each([]any{&at, &net}, func(id string) { add(id, windowPurchase{OccurredAt: at, Net: net}) }); err != nil {
		return err
	}
	return br.Close()
}
