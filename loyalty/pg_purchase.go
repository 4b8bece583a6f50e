package loyalty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"gorm.io/driver/postgres"
)

// The purchase on PostgreSQL, through pgx, in two round trips:
//
//  1. BEGIN, the read of every idempotency guard's record, the lock of the
//     member's balance and member rows with the config_version, and the
//     offers live for the member;
//  2. the purchase's rows, the balance row and the member's tier in one
//     statement, the record of every guard with the result, and COMMIT.
//
// A balance row whose kept state no longer holds costs one more round trip
// between them (its open lots and window purchases); a replay answers from
// the stored result after the first and rolls back. A guard is recorded
// once, answered, rather than claimed and then answered: a concurrent twin
// waits on the member's lock, then fails on the record's (or receipt's)
// key when the first commits, and its next attempt replays the first's
// answer. The rules are
// planPurchase's, shared with the GORM path, which still runs when this
// store has not read the current settings yet or a member's points lapsed
// by inactivity (both rare: the first purchase after a settings change,
// the first after the inactivity deadline).

// Statements prepared on every connection of the pool as it opens, so that
// none costs a round trip of its own to prepare.
var (
	pgClaimedSQL = `SELECT request_hash, status, response FROM idempotency_keys WHERE scope = $1 AND key = $2`
	pgRecordSQL  = `INSERT INTO idempotency_keys (scope, key, request_hash, status, response, created_at) VALUES ($1, $2, $3, $4, $5, $6)`
	pgLockSQL    = strings.Replace(strings.Replace(lockSQL, "\n\t\tFROM member_balances b",
		",\n\t\t(SELECT version FROM offers_version WHERE id = 1)\n\t\tFROM member_balances b", 1), "?", "$1", 1)
	// pgOffersSeenSQL reads whether any offer is active, at the
	// offers_version it was read at.
	pgOffersSeenSQL = strings.Replace(offersSeenSQL, "?", "$1", 1)
	pgOffersSQL     = `SELECT id, code, name, kind, multiplier, bonus_points, conditions, target_all, target_segments, requires_activation,
		starts_at, ends_at, max_uses_per_member, status, template_id, owner_member_id, personal_category, created_at, updated_at
		FROM offers WHERE status = $1 AND (starts_at IS NULL OR starts_at <= $2) AND (ends_at IS NULL OR ends_at > $2)
		AND (owner_member_id IS NULL OR owner_member_id = $3) ORDER BY id`
	pgOfferFactsSQL = `SELECT 't', offer_id, 0 FROM offer_members WHERE member_id = $1
		UNION ALL SELECT 'a', offer_id, 0 FROM offer_activations WHERE member_id = $1
		UNION ALL SELECT 'u', offer_id, COUNT(*) FROM offer_uses WHERE member_id = $1 GROUP BY offer_id
		UNION ALL SELECT 's', segment_code, 0 FROM member_segments WHERE member_id = $1`
	pgOpenLotsSQL = `SELECT ` + keptLotColumns + ` FROM lots WHERE member_id = $1 AND remaining > 0`
	pgWindowSQL   = `SELECT p.occurred_at, ` + NetSpendSQL("p") + ` FROM purchases p WHERE p.member_id = $1 AND p.occurred_at >= $2`
	pgBalanceSQL  = strings.Replace(balanceSQL, "?", "$1", 1)
)

// preparePG prepares the hot path's fixed statements on a new connection,
// each named by its text, which pgx then runs prepared. A prepared
// statement's parameters go in binary, its types known; one run without
// preparing sends them as text, which for a till batch's arrays
// (pgChunkWriteSQL: 75 of them, up to pgBatchChunk elements each) means
// quoting every element: a quarter of the engine's CPU in a batch.
func preparePG(ctx context.Context, c *pgx.Conn) error {
	for _, q := range []string{pgClaimedSQL, pgRecordSQL, pgLockSQL, pgOffersSeenSQL, pgOffersSQL, pgOfferFactsSQL,
		pgOpenLotsSQL, pgWindowSQL, pgBalanceSQL, pgWriteSQL, pgLockChunkSQL, pgChunkWriteSQL} {
		if _, err := c.Prepare(ctx, q, q); err != nil {
			return err
		}
	}
	return nil
}

// errPGDuplicate is a purchase whose receipt or guard a concurrent twin
// recorded first.
var errPGDuplicate = errors.New("purchase recorded by a concurrent twin")

// errPGFallback sends a purchase to the GORM path.
var errPGFallback = errors.New("purchase needs the GORM path")

// pgPostPurchase posts a validated purchase through pgx, retrying on a
// serialization failure or deadlock as Store.write does. It returns
// errPGFallback, having changed nothing, when the GORM path must run.
func (s *Service) pgPostPurchase(ctx context.Context, set *settings, pur purchase, guards []guard) (PurchaseResult, *Replay, error) {
	var (
		res PurchaseResult
		rep *Replay
		err error
	)
	duplicates := 0
	for attempt := 0; attempt < 8; attempt++ {
		res, rep, err = s.pgPurchaseOnce(ctx, set, pur, guards)
		if errors.Is(err, errPGDuplicate) {
			// A concurrent twin committed first: the next attempt reads
			// its record and replays it. A receipt posted with no record
			// of it is a conflict.
			if duplicates++; duplicates > 1 {
				return res, nil, Errorf(Conflict, "duplicate", "receipt %q of store %q was already posted", pur.ExternalID, pur.StoreID)
			}
			continue
		}
		if !retryable(err) {
			return res, rep, err
		}
		select {
		case <-ctx.Done():
			return res, rep, err
		case <-time.After(time.Duration(attempt+1) * 10 * time.Millisecond):
		}
	}
	return res, rep, err
}

// pgTranslate maps PostgreSQL's errors as GORM's postgres dialect does
// (unique violations to gorm.ErrDuplicatedKey, …), so that one mapping
// (ErrorOf) serves both paths.
func pgTranslate(err error) error {
	if err == nil {
		return nil
	}
	return postgres.Dialector{}.Translate(err)
}

func (s *Service) pgPurchaseOnce(ctx context.Context, set *settings, pur purchase, guards []guard) (res PurchaseResult, rep *Replay, err error) {
	s.store.NoteServing()
	conn, err := s.store.pg.Acquire(ctx)
	if err != nil {
		return res, nil, err
	}
	defer conn.Release()
	// Whatever ends the transaction early rolls it back; a connection that
	// cannot is closed, and its release drops it from the pool.
	defer func() {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			if _, rerr := conn.Exec(ctx, "rollback"); rerr != nil {
				_ = conn.Conn().Close(ctx)
			}
		}
		err = pgTranslate(err)
	}()
	now := ts(s.now())
	a := &account{prog: set.prog, now: now, set: set}
	mo := newMemberOffers()

	// Round trip 1.
	b := &pgx.Batch{}
	b.Queue("begin")
	for _, g := range guards {
		b.Queue(pgClaimedSQL, g.scope, g.key)
	}
	b.Queue(pgLockSQL, pur.MemberID)
	seen := s.store.offersSeen.Load()
	skipOffers := seen != nil && !seen.active
	if !skipOffers {
		b.Queue(pgOffersSQL, OfferActive, pur.at, pur.MemberID)
		b.Queue(pgOfferFactsSQL, pur.MemberID)
	}
	var offersVersion int64
	found, err := func() (bool, error) {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return false, err
		}
		for _, g := range guards {
			var prev idempotencyRow
			err := br.QueryRow().Scan(&prev.RequestHash, &prev.Status, &prev.Response)
			if errors.Is(err, pgx.ErrNoRows) || (err == nil && rep != nil) {
				continue
			}
			if err != nil {
				return false, err
			}
			if rep, err = g.answer(prev); err != nil {
				return false, err
			}
		}
		rows, err := br.Query()
		if err != nil {
			return false, err
		}
		var version int64
		found := rows.Next()
		if found {
			err = rows.Scan(append(a.lockedDest(&version), &offersVersion)...)
		}
		rows.Close()
		if err := errors.Join(err, rows.Err()); err != nil {
			return false, err
		}
		a.balance.MemberID, a.cfg = a.member.ID, version
		if skipOffers {
			return found, nil
		}
		return found, scanMemberOffers(br, mo)
	}()
	switch {
	case err != nil:
		return res, nil, err
	case rep != nil:
		return res, rep, nil
	case !found:
		return res, nil, memberRef(Errorf(NotFound, "not_found", "no member has id %q", pur.MemberID))
	case a.cfg != set.version:
		return res, nil, errPGFallback
	}
	if skipOffers && offersVersion != seen.version {
		// Offers changed since none was active: read the member's now, in
		// one more round trip, and what is active, for the next purchases.
		b := &pgx.Batch{}
		b.Queue(pgOffersSQL, OfferActive, pur.at, pur.MemberID)
		b.Queue(pgOfferFactsSQL, pur.MemberID)
		if err := func() error {
			br := conn.SendBatch(ctx, b)
			defer br.Close()
			return scanMemberOffers(br, mo)
		}(); err != nil {
			return res, nil, err
		}
	}
	if seen == nil || offersVersion != seen.version {
		defer s.store.seeOffers(ctx, conn)
	}
	if d, ok := a.inactivityDeadline(); ok && !d.After(now) {
		return res, nil, errPGFallback // expireInactive writes the lapse
	}
	if a.fresh() {
		if a.k, err = a.keptFromRow(); err != nil {
			return res, nil, err
		}
	} else if err := a.pgCatchUp(ctx, conn); err != nil {
		return res, nil, err
	}

	res, w, err := planPurchase(a, pur, mo)
	if err != nil {
		return res, nil, err
	}
	body, err := json.Marshal(res)
	if err != nil {
		return res, nil, err
	}
	// The events go into the write statement, their data cut from the
	// answer just marshalled.
	for _, e := range res.events(body, now) {
		w.rows = append(w.rows, e.row())
	}

	// Round trip 2.
	b = &pgx.Batch{}
	q, args, err := w.pgStatement(a)
	if err != nil {
		return res, nil, err
	}
	b.Queue(q, args...)
	for _, g := range guards {
		b.Queue(pgRecordSQL, g.scope, g.key, g.hash, answered, string(body), now)
	}
	b.Queue("commit")
	br := conn.SendBatch(ctx, b)
	tag, err := br.Exec()
	if err == nil && tag.RowsAffected() != 1 {
		err = fmt.Errorf("balance of member %s: %d rows updated", a.member.ID, tag.RowsAffected())
	}
	for range guards {
		if err == nil {
			_, err = br.Exec()
		}
	}
	if err == nil {
		_, err = br.Exec()
	}
	if err = errors.Join(err, br.Close()); err != nil {
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
			return res, nil, errPGDuplicate
		}
		return res, nil, err
	}
	hubOf(s.store.w).committed() // the purchase's events
	res.keepEncoded(body)
	return res, nil, nil
}

// offersSeen is whether any offer was active at an offers_version.
type offersSeen struct {
	version int64
	active  bool
}

// seeOffers records whether any offer is active now, once the purchase's
// transaction has ended (deferred after the rollback guard, it runs
// first: it skips a connection still in a transaction).
func (s *Store) seeOffers(ctx context.Context, conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() != 'I' {
		return
	}
	var seen offersSeen
	if err := conn.QueryRow(ctx, pgOffersSeenSQL, OfferActive).Scan(&seen.version, &seen.active); err == nil {
		s.offersSeen.Store(&seen)
	}
}

// scanMemberOffers reads the results of pgOffersSQL and pgOfferFactsSQL.
func scanMemberOffers(br pgx.BatchResults, mo *memberOffers) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	for rows.Next() {
		var o offerRow
		if err := rows.Scan(&o.ID, &o.Code, &o.Name, &o.Kind, &o.Multiplier, &o.BonusPoints, &o.Conditions, &o.TargetAll,
			&o.TargetSegments, &o.RequiresActivation, &o.StartsAt, &o.EndsAt, &o.MaxUsesPerMember, &o.Status, &o.TemplateID,
			&o.OwnerMemberID, &o.PersonalCategory, &o.CreatedAt, &o.UpdatedAt); err != nil {
			rows.Close()
			return err
		}
		mo.offers = append(mo.offers, o)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if rows, err = br.Query(); err != nil {
		return err
	}
	for rows.Next() {
		var kind, id string
		var n int
		if err := rows.Scan(&kind, &id, &n); err != nil {
			rows.Close()
			return err
		}
		mo.fact(kind, id, n)
	}
	return rows.Err()
}

// pgCatchUp is catchUp through pgx: one round trip for the open lots and
// the purchases of the qualifying period.
func (a *account) pgCatchUp(ctx context.Context, conn *pgxpool.Conn) error {
	b := &pgx.Batch{}
	b.Queue(pgOpenLotsSQL, a.member.ID)
	b.Queue(pgWindowSQL, a.member.ID, a.windowFrom())
	br := conn.SendBatch(ctx, b)
	defer br.Close()
	var lots []lotRow
	rows, err := br.Query()
	if err != nil {
		return err
	}
	for rows.Next() {
		var l lotRow
		if err := rows.Scan(&l.MemberID, &l.Remaining, &l.AvailableAt, &l.ExpiresAt); err != nil {
			rows.Close()
			return err
		}
		lots = append(lots, l)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var ps []windowPurchase
	if rows, err = br.Query(); err != nil {
		return err
	}
	for rows.Next() {
		var p windowPurchase
		if err := rows.Scan(&p.OccurredAt, &p.Net); err != nil {
			rows.Close()
			return err
		}
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	a.catchUpFrom(lots, ps)
	return nil
}

// pgWriteSQL is every write of a purchase in one statement of constant
// text, prepared once per connection: each table's rows go as one array per
// column (unnest), the tier's change is skipped unless $47, and the
// balance's update is the statement itself (its row count says the row was
// there). The inserts are data-modifying WITH clauses, whose foreign keys
// are checked at the end of the statement.
// pgInsertsSQL are the CTEs inserting a purchase's rows from the arrays $1
// to $48 (pgWriteArgs.inserts): of one purchase (pgWriteSQL) or of a
// batch's chunk (pgChunkWriteSQL).
const pgInsertsSQL = `p AS (INSERT INTO purchases (id, member_id, store_id, external_id, channel, occurred_at, local_date, local_day,
		currency, total, returned_amount, points_earned, points_reversed, tier_code, created_at)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::bigint[],
		$9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::text[], $15::timestamptz[])),
i AS (INSERT INTO purchase_items (purchase_id, line, sku, category, quantity, unit_price, amount)
	SELECT * FROM unnest($16::text[], $17::bigint[], $18::text[], $19::text[], $20::bigint[], $21::bigint[], $22::bigint[])),
e AS (INSERT INTO ledger_entries (id, member_id, kind, points, occurred_at, available_at, expires_at, purchase_id, return_id,
		redemption_id, offer_id, description, created_at)
	SELECT * FROM unnest($23::text[], $24::text[], $25::text[], $26::bigint[], $27::timestamptz[], $28::timestamptz[],
		$29::timestamptz[], $30::text[], $31::text[], $32::text[], $33::text[], $34::text[], $35::timestamptz[])),
l AS (INSERT INTO lots (id, entry_id, member_id, points, remaining, available_at, expires_at, created_at)
	SELECT * FROM unnest($36::text[], $37::text[], $38::text[], $39::bigint[], $40::bigint[], $41::timestamptz[],
		$42::timestamptz[], $43::timestamptz[])),
u AS (INSERT INTO offer_uses (offer_id, purchase_id, member_id, points, created_at)
	SELECT * FROM unnest($44::text[], $45::text[], $46::text[], $47::bigint[], $48::timestamptz[]))`

const pgWriteSQL = `WITH ` + pgInsertsSQL + `,
v AS (INSERT INTO events (type, member_id, occurred_at, data)
	SELECT * FROM unnest($68::text[], $69::text[], $70::timestamptz[], $71::text[])),
t AS (UPDATE members SET tier_code = $49, tier_since = $50 WHERE id = $51 AND $52::boolean)
UPDATE member_balances SET points = $53, debt = $54, lifetime_earned = $55, lifetime_redeemed = $56,
	last_activity_at = $57, version = $58, updated_at = $59, open_available = $60, open_pending = $61,
	qualifying_spend = $62, expiring_soon = $63, as_of = $64, next_change_at = $65, config_version = $66 WHERE member_id = $67`

// pgWriteArgs are pgWriteSQL's arguments, column arrays filled from rows.
type pgWriteArgs struct {
	pID, pMember, pStore, pChannel, pLocalDate, pCurrency []string
	pExternal, pTier                                      []*string
	pOccurred, pCreated                                   []time.Time
	pLocalDay, pTotal, pReturned, pEarned, pReversed      []int64
	iPurchase, iSKU, iCategory                            []string
	iLine, iQuantity, iUnitPrice, iAmount                 []int64
	eID, eMember, eKind, eDescription                     []string
	ePoints                                               []int64
	eOccurred, eAvailable, eCreated                       []time.Time
	eExpires                                              []*time.Time
	ePurchase, eReturn, eRedemption, eOffer               []*string
	lID, lEntry, lMember                                  []string
	lPoints, lRemaining                                   []int64
	lAvailable, lCreated                                  []time.Time
	lExpires                                              []*time.Time
	uOffer, uPurchase, uMember                            []string
	uPoints                                               []int64
	uCreated                                              []time.Time
	vType, vData                                          []string
	vMember                                               []*string
	vAt                                                   []time.Time
}

// pgStatement is w with a's sealed balance row as pgWriteSQL's arguments.
func (w *accountWrites) pgStatement(a *account) (string, []any, error) {
	var x pgWriteArgs
	if err := x.add(w.rows); err != nil {
		return "", nil, err
	}
	tier := ""
	if w.tier != nil {
		tier = *w.tier
	}
	b := &a.balance
	return pgWriteSQL, append(x.inserts(), tier, a.now, a.member.ID, w.tier != nil,
		b.Points, b.Debt, b.LifetimeEarned, b.LifetimeRedeemed, b.LastActivityAt, b.Version, b.UpdatedAt,
		b.OpenAvailable, b.OpenPending, b.QualifyingSpend, b.ExpiringSoon, b.AsOf, b.NextChangeAt, b.ConfigVersion, b.MemberID,
		x.vType, x.vMember, x.vAt, x.vData), nil
}

// inserts are the arrays of pgWriteSQL's inserts but the events': $1 to
// $48.
func (x *pgWriteArgs) inserts() []any {
	return []any{
		x.pID, x.pMember, x.pStore, x.pExternal, x.pChannel, x.pOccurred, x.pLocalDate, x.pLocalDay,
		x.pCurrency, x.pTotal, x.pReturned, x.pEarned, x.pReversed, x.pTier, x.pCreated,
		x.iPurchase, x.iLine, x.iSKU, x.iCategory, x.iQuantity, x.iUnitPrice, x.iAmount,
		x.eID, x.eMember, x.eKind, x.ePoints, x.eOccurred, x.eAvailable, x.eExpires, x.ePurchase, x.eReturn,
		x.eRedemption, x.eOffer, x.eDescription, x.eCreated,
		x.lID, x.lEntry, x.lMember, x.lPoints, x.lRemaining, x.lAvailable, x.lExpires, x.lCreated,
		x.uOffer, x.uPurchase, x.uMember, x.uPoints, x.uCreated,
	}
}

// add appends rows (as accountWrites holds them) to the arrays.
func (x *pgWriteArgs) add(rows []any) error {
	item := func(it *itemRow) {
		x.iPurchase, x.iLine, x.iSKU = append(x.iPurchase, it.PurchaseID), append(x.iLine, int64(it.Line)), append(x.iSKU, it.SKU)
		x.iCategory, x.iQuantity = append(x.iCategory, it.Category), append(x.iQuantity, it.Quantity)
		x.iUnitPrice, x.iAmount = append(x.iUnitPrice, it.UnitPrice), append(x.iAmount, it.Amount)
	}
	for _, r := range rows {
		switch r := r.(type) {
		case *purchaseRow:
			x.pID, x.pMember, x.pStore = append(x.pID, r.ID), append(x.pMember, r.MemberID), append(x.pStore, r.StoreID)
			x.pExternal, x.pChannel = append(x.pExternal, r.ExternalID), append(x.pChannel, r.Channel)
			x.pOccurred, x.pLocalDate = append(x.pOccurred, r.OccurredAt), append(x.pLocalDate, r.LocalDate)
			x.pLocalDay, x.pCurrency = append(x.pLocalDay, r.LocalDay), append(x.pCurrency, r.Currency)
			x.pTotal, x.pReturned = append(x.pTotal, r.Total), append(x.pReturned, r.ReturnedAmount)
			x.pEarned, x.pReversed = append(x.pEarned, r.PointsEarned), append(x.pReversed, r.PointsReversed)
			x.pTier, x.pCreated = append(x.pTier, r.TierCode), append(x.pCreated, r.CreatedAt)
		case *[]itemRow:
			for i := range *r {
				item(&(*r)[i])
			}
		case *itemRow:
			item(r)
		case *entryRow:
			x.eID, x.eMember, x.eKind = append(x.eID, r.ID), append(x.eMember, r.MemberID), append(x.eKind, r.Kind)
			x.ePoints, x.eOccurred = append(x.ePoints, r.Points), append(x.eOccurred, r.OccurredAt)
			x.eAvailable, x.eExpires = append(x.eAvailable, r.AvailableAt), append(x.eExpires, r.ExpiresAt)
			x.ePurchase, x.eReturn = append(x.ePurchase, r.PurchaseID), append(x.eReturn, r.ReturnID)
			x.eRedemption, x.eOffer = append(x.eRedemption, r.RedemptionID), append(x.eOffer, r.OfferID)
			x.eDescription, x.eCreated = append(x.eDescription, r.Description), append(x.eCreated, r.CreatedAt)
		case *lotRow:
			x.lID, x.lEntry, x.lMember = append(x.lID, r.ID), append(x.lEntry, r.EntryID), append(x.lMember, r.MemberID)
			x.lPoints, x.lRemaining = append(x.lPoints, r.Points), append(x.lRemaining, r.Remaining)
			x.lAvailable, x.lExpires = append(x.lAvailable, r.AvailableAt), append(x.lExpires, r.ExpiresAt)
			x.lCreated = append(x.lCreated, r.CreatedAt)
		case *offerUseRow:
			x.uOffer, x.uPurchase, x.uMember = append(x.uOffer, r.OfferID), append(x.uPurchase, r.PurchaseID), append(x.uMember, r.MemberID)
			x.uPoints, x.uCreated = append(x.uPoints, r.Points), append(x.uCreated, r.CreatedAt)
		case *eventRow:
			x.vType, x.vMember, x.vAt, x.vData = append(x.vType, r.Type), append(x.vMember, r.MemberID), append(x.vAt, r.OccurredAt), append(x.vData, r.Data)
		default:
			return fmt.Errorf("pgStatement: no insert for %T", r)
		}
	}
	return nil
}

// PGPurchaseStatements are the texts of the statements a purchase sends
// on PostgreSQL, in the order it sends them, for the bench's reference
// that runs the same database work without the engine.
type PGPurchaseStatements struct {
	Prepare                                                   func(context.Context, *pgx.Conn) error
	Claimed, Lock, Offers, OfferFacts, Write, Record, Balance string
	OfferStatus                                               string
}

// PGPurchaseSQL is what PGPurchaseStatements says of this engine.
var PGPurchaseSQL = PGPurchaseStatements{Prepare: preparePG, Claimed: pgClaimedSQL, Lock: pgLockSQL,
	Offers: pgOffersSQL, OfferFacts: pgOfferFactsSQL, Write: pgWriteSQL, Record: pgRecordSQL, Balance: pgBalanceSQL,
	OfferStatus: OfferActive}
