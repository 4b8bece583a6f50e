package loyalty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// The purchase on PostgreSQL, through pgx, in two round trips:
//
//  1. BEGIN, the claim of every idempotency guard (an insert that waits
//     for, then yields to, a concurrent claim, and a read of the row
//     claimed), the lock of the member's balance and member rows with the
//     config_version, and the offers live for the member;
//  2. the purchase's rows, the balance row and the member's tier in one
//     statement, the result stored under every guard, and COMMIT.
//
// A balance row whose kept state no longer holds costs one more round trip
// between them (its open lots and window purchases); a replay answers from
// the stored result after the first and rolls back. The rules are
// planPurchase's, shared with the GORM path, which still runs when this
// store has not read the current settings yet or a member's points lapsed
// by inactivity (both rare: the first purchase after a settings change,
// the first after the inactivity deadline).

// Statements prepared on every connection of the pool as it opens, so that
// none costs a round trip of its own to prepare.
var (
	pgClaimSQL   = `INSERT INTO idempotency_keys (scope, key, request_hash, status, response, created_at) VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT DO NOTHING`
	pgClaimedSQL = `SELECT request_hash, status, response FROM idempotency_keys WHERE scope = $1 AND key = $2`
	pgAnswerSQL  = `UPDATE idempotency_keys SET status = $3, response = $4 WHERE scope = $1 AND key = $2`
	pgLockSQL    = strings.Replace(lockSQL, "?", "$1", 1)
	pgOffersSQL  = `SELECT id, code, name, kind, multiplier, bonus_points, conditions, target_all, target_segments, requires_activation,
		starts_at, ends_at, max_uses_per_member, status, template_id, owner_member_id, personal_category, created_at, updated_at
		FROM offers WHERE status = $1 AND (starts_at IS NULL OR starts_at <= $2) AND (ends_at IS NULL OR ends_at > $2)
		AND (owner_member_id IS NULL OR owner_member_id = $3) ORDER BY id`
	pgOfferFactsSQL = `SELECT 't', offer_id, 0 FROM offer_members WHERE member_id = $1
		UNION ALL SELECT 'a', offer_id, 0 FROM offer_activations WHERE member_id = $1
		UNION ALL SELECT 'u', offer_id, COUNT(*) FROM offer_uses WHERE member_id = $1 GROUP BY offer_id
		UNION ALL SELECT 's', segment_code, 0 FROM member_segments WHERE member_id = $1`
	pgOpenLotsSQL = `SELECT id, entry_id, member_id, points, remaining, available_at, expires_at, created_at
		FROM lots WHERE member_id = $1 AND remaining > 0`
	pgWindowSQL  = `SELECT p.occurred_at, ` + NetSpendSQL("p") + ` FROM purchases p WHERE p.member_id = $1 AND p.occurred_at >= $2`
	pgBalanceSQL = strings.Replace(balanceSQL, "?", "$1", 1)
)

func preparePG(ctx context.Context, c *pgx.Conn) error {
	for _, q := range []string{pgClaimSQL, pgClaimedSQL, pgAnswerSQL, pgLockSQL, pgOffersSQL, pgOfferFactsSQL,
		pgOpenLotsSQL, pgWindowSQL, pgBalanceSQL} {
		if _, err := c.Prepare(ctx, q, q); err != nil {
			return err
		}
	}
	return nil
}

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
	for attempt := 0; attempt < 8; attempt++ {
		res, rep, err = s.pgPurchaseOnce(ctx, set, pur, guards)
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
		b.Queue(pgClaimSQL, g.scope, g.key, g.hash, now)
		b.Queue(pgClaimedSQL, g.scope, g.key)
	}
	b.Queue(pgLockSQL, pur.MemberID)
	b.Queue(pgOffersSQL, OfferActive, pur.at, pur.MemberID)
	b.Queue(pgOfferFactsSQL, pur.MemberID)
	found, err := func() (bool, error) {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return false, err
		}
		for _, g := range guards {
			tag, err := br.Exec()
			if err != nil {
				return false, err
			}
			var prev idempotencyRow
			if err := br.QueryRow().Scan(&prev.RequestHash, &prev.Status, &prev.Response); err != nil {
				return false, err
			}
			if tag.RowsAffected() == 1 || rep != nil {
				continue
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
			err = rows.Scan(a.lockedDest(&version)...)
		}
		rows.Close()
		if err := errors.Join(err, rows.Err()); err != nil {
			return false, err
		}
		a.balance.MemberID, a.cfg = a.member.ID, version
		if rows, err = br.Query(); err != nil {
			return false, err
		}
		for rows.Next() {
			var o offerRow
			if err := rows.Scan(&o.ID, &o.Code, &o.Name, &o.Kind, &o.Multiplier, &o.BonusPoints, &o.Conditions, &o.TargetAll,
				&o.TargetSegments, &o.RequiresActivation, &o.StartsAt, &o.EndsAt, &o.MaxUsesPerMember, &o.Status, &o.TemplateID,
				&o.OwnerMemberID, &o.PersonalCategory, &o.CreatedAt, &o.UpdatedAt); err != nil {
				rows.Close()
				return false, err
			}
			mo.offers = append(mo.offers, o)
		}
		if err := rows.Err(); err != nil {
			return false, err
		}
		if rows, err = br.Query(); err != nil {
			return false, err
		}
		for rows.Next() {
			var kind, id string
			var n int
			if err := rows.Scan(&kind, &id, &n); err != nil {
				rows.Close()
				return false, err
			}
			mo.fact(kind, id, n)
		}
		return found, rows.Err()
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

	// Round trip 2.
	b = &pgx.Batch{}
	q, args, err := w.pgStatement(a)
	if err != nil {
		return res, nil, err
	}
	b.Queue(q, args...)
	for _, g := range guards {
		b.Queue(pgAnswerSQL, g.scope, g.key, answered, string(body))
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
		if errors.Is(pgTranslate(err), gorm.ErrDuplicatedKey) {
			return res, nil, Errorf(Conflict, "duplicate", "receipt %q of store %q was already posted", pur.ExternalID, pur.StoreID)
		}
		return res, nil, err
	}
	return res, nil, nil
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
		if err := rows.Scan(&l.ID, &l.EntryID, &l.MemberID, &l.Points, &l.Remaining, &l.AvailableAt, &l.ExpiresAt, &l.CreatedAt); err != nil {
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

// pgArgs numbers a statement's arguments as PostgreSQL's placeholders.
type pgArgs []any

func (p *pgArgs) add(v any) string {
	*p = append(*p, v)
	return "$" + strconv.Itoa(len(*p))
}

func (p *pgArgs) tuple(vs ...any) string {
	var sb strings.Builder
	sb.WriteByte('(')
	for i, v := range vs {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(p.add(v))
	}
	sb.WriteByte(')')
	return sb.String()
}

// pgStatement is w with a's sealed balance row as one PostgreSQL statement:
// every insert and the tier a data-modifying WITH clause, the balance's
// update the statement itself (its row count says the row was there).
func (w *accountWrites) pgStatement(a *account) (string, []any, error) {
	var args pgArgs
	var ctes []string
	for _, r := range w.rows {
		var q string
		switch r := r.(type) {
		case *purchaseRow:
			q = "INSERT INTO purchases (id, member_id, store_id, external_id, channel, occurred_at, local_date, local_day, currency, total, returned_amount, points_earned, points_reversed, tier_code, created_at) VALUES " +
				args.tuple(r.ID, r.MemberID, r.StoreID, r.ExternalID, r.Channel, r.OccurredAt, r.LocalDate, r.LocalDay, r.Currency, r.Total,
					r.ReturnedAmount, r.PointsEarned, r.PointsReversed, r.TierCode, r.CreatedAt)
		case *[]itemRow:
			vals := make([]string, len(*r))
			for i, it := range *r {
				vals[i] = args.tuple(it.PurchaseID, it.Line, it.SKU, it.Category, it.Quantity, it.UnitPrice, it.Amount)
			}
			q = "INSERT INTO purchase_items (purchase_id, line, sku, category, quantity, unit_price, amount) VALUES " + strings.Join(vals, ", ")
		case *entryRow:
			q = "INSERT INTO ledger_entries (id, member_id, kind, points, occurred_at, available_at, expires_at, purchase_id, return_id, redemption_id, offer_id, description, created_at) VALUES " +
				args.tuple(r.ID, r.MemberID, r.Kind, r.Points, r.OccurredAt, r.AvailableAt, r.ExpiresAt, r.PurchaseID, r.ReturnID,
					r.RedemptionID, r.OfferID, r.Description, r.CreatedAt)
		case *lotRow:
			q = "INSERT INTO lots (id, entry_id, member_id, points, remaining, available_at, expires_at, created_at) VALUES " +
				args.tuple(r.ID, r.EntryID, r.MemberID, r.Points, r.Remaining, r.AvailableAt, r.ExpiresAt, r.CreatedAt)
		case *offerUseRow:
			q = "INSERT INTO offer_uses (offer_id, purchase_id, member_id, points, created_at) VALUES " +
				args.tuple(r.OfferID, r.PurchaseID, r.MemberID, r.Points, r.CreatedAt)
		default:
			return "", nil, fmt.Errorf("pgStatement: no insert for %T", r)
		}
		ctes = append(ctes, q)
	}
	if w.tier != nil {
		ctes = append(ctes, "UPDATE members SET tier_code = "+args.add(*w.tier)+", tier_since = "+args.add(a.now)+" WHERE id = "+args.add(a.member.ID))
	}
	var sb strings.Builder
	for i, q := range ctes {
		if i == 0 {
			sb.WriteString("WITH ")
		} else {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "w%d AS (%s)", i, q)
	}
	b := &a.balance
	fmt.Fprintf(&sb, ` UPDATE member_balances SET points = %s, debt = %s, lifetime_earned = %s, lifetime_redeemed = %s,
		last_activity_at = %s, version = %s, updated_at = %s, open_available = %s, open_pending = %s,
		qualifying_spend = %s, expiring_soon = %s, as_of = %s, next_change_at = %s, config_version = %s WHERE member_id = %s`,
		args.add(b.Points), args.add(b.Debt), args.add(b.LifetimeEarned), args.add(b.LifetimeRedeemed), args.add(b.LastActivityAt),
		args.add(b.Version), args.add(b.UpdatedAt), args.add(b.OpenAvailable), args.add(b.OpenPending), args.add(b.QualifyingSpend),
		args.add(b.ExpiringSoon), args.add(b.AsOf), args.add(b.NextChangeAt), args.add(b.ConfigVersion), args.add(b.MemberID))
	return sb.String(), args, nil
}
