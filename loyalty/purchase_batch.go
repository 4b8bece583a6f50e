package loyalty

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// A till's batch (§15): purchases it took while offline, sent at once.
// Each is posted on its own, in order, under its own receipt, exactly as
// PostPurchase would post it alone, and one refused purchase does not stop
// the others; what a batch saves is the cost the purchases can share.
//
// The batch goes in chunks (sqliteBatchChunk, pgBatchChunk): the
// purchases of a chunk are planned one by one with the rules of a purchase
// posted alone (planPurchase), on accounts locked and read together, and
// written together in one transaction. A member's later purchases in a
// chunk are planned on its account as the earlier ones left it, which
// holds all they read but the offers' uses: a member with an offer live
// has one purchase to a chunk. A purchase that needs a transaction of its
// own (a payment with points, new settings, a lapse by inactivity to
// write, that second purchase of a member with offers) ends the chunk and
// is posted alone, and the next chunk starts after it; a chunk whose transaction
// fails (a lost connection, a conflict with a concurrent twin) is answered
// by nothing, and its purchases are posted again, which their receipts
// and keys make safe.
//
// Either way a purchase is answered only once its transaction committed.
//
// On PostgreSQL a large batch goes in lanes (batchLanes), each on a
// connection of its own and all at once, so that the server's cores share
// it: a lane holds whole members and whole receipts, so no answer depends
// on which lane commits first. SQLite has one writer, and one lane.

// MaxBatch is the most purchases one batch may carry.
const MaxBatch = 500

// pgBatchChunk bounds the purchases of one batch transaction on
// PostgreSQL: the members they lock stay locked until it commits.
const pgBatchChunk = 100

const pgLockChunkSQL = `SELECT 1 FROM member_balances WHERE member_id = ANY($1) ORDER BY member_id FOR UPDATE`

// BatchResult is one purchase of a batch, as PostPurchase answers it:
// posted (Result), replayed (Replay) or refused (Err).
type BatchResult struct {
	Result PurchaseResult
	Replay *Replay
	Err    error
}

// BatchItem is the key that guards purchase i of a batch sent under k:
// the batch's key and the index, over the purchase alone, so a batch sent
// again under its key replays purchase by purchase.
func (k IdempotencyKey) BatchItem(i int, in PurchaseInput) IdempotencyKey {
	if k.Key == "" {
		return k
	}
	canon, _ := json.Marshal(in)
	return IdempotencyKey{Key: k.Key + "#" + strconv.Itoa(i), Subject: k.Subject,
		RequestHash: HashRequest([]byte("purchase batch item"), canon)}
}

// PostPurchases posts a batch of at most MaxBatch purchases for p, in
// order, and answers each; see the comment above. keys[i], when keys is
// not nil, is purchase i's Idempotency-Key (BatchItem).
func (s *Service) PostPurchases(ctx context.Context, p Principal, ins []PurchaseInput, keys []IdempotencyKey) ([]BatchResult, error) {
	if len(ins) == 0 || len(ins) > MaxBatch {
		return nil, Invalidf("purchases", "must hold 1 to %d purchases", MaxBatch)
	}
	if keys == nil {
		keys = make([]IdempotencyKey, len(ins))
	} else if len(keys) != len(ins) {
		return nil, errors.New("post purchases: one key per purchase")
	}
	out := make([]BatchResult, len(ins))
	if s.store.pg == nil {
		s.postInOrder(ctx, p, ins, keys, out, s.sqliteBatchChunk)
		return out, nil
	}
	lanes := batchLanes(ins, pgBatchLanes())
	if len(lanes) == 1 {
		s.postInOrder(ctx, p, ins, keys, out, s.pgBatchChunk)
		return out, nil
	}
	var wg sync.WaitGroup
	for _, lane := range lanes {
		wg.Go(func() {
			lins, lkeys := make([]PurchaseInput, len(lane)), make([]IdempotencyKey, len(lane))
			for j, i := range lane {
				lins[j], lkeys[j] = ins[i], keys[i]
			}
			lout := make([]BatchResult, len(lane))
			s.postInOrder(ctx, p, lins, lkeys, lout, s.pgBatchChunk)
			for j, i := range lane {
				out[i] = lout[j]
			}
		})
	}
	wg.Wait()
	return out, nil
}

// pgBatchLanes is how many connections one batch writes on at once on
// PostgreSQL: one per core the engine may use, at most 4 and at most half
// the pool, so that a till's batch leaves room for the other requests.
func pgBatchLanes() int {
	return max(1, min(runtime.GOMAXPROCS(0), 4, PGPoolConns()/2))
}

// batchLanes splits a batch's indexes into at most n lanes that can be
// posted concurrently without changing any answer: purchases that share a
// member or a receipt (store and external id) share a lane, where they
// keep the batch's order, so a member's purchases are planned one after
// the other as posted alone, and of two purchases under one receipt the
// earlier is posted and the later replays it. Lanes are filled in the
// batch's order, each group going to the lane with the fewest purchases;
// a batch too small to gain from it is one lane.
func batchLanes(ins []PurchaseInput, n int) [][]int {
	if n <= 1 || len(ins) < 2*minLane {
		return [][]int{seq(len(ins))}
	}
	parent := make([]int, len(ins))
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	first := map[string]int{}
	join := func(key string, i int) {
		j, ok := first[key]
		if !ok {
			first[key] = i
			return
		}
		if a, b := find(i), find(j); a != b {
			parent[max(a, b)] = min(a, b)
		}
	}
	for i, in := range ins {
		parent[i] = i
		join("m\x00"+in.MemberID, i)
		if in.ExternalID != "" {
			join("r\x00"+in.StoreID+"\x00"+in.ExternalID, i)
		}
	}
	size := make([]int, len(ins))
	for i := range ins {
		size[find(i)]++
	}
	lanes, load := make([][]int, n), make([]int, n)
	laneOf := map[int]int{}
	for i := range ins {
		root := find(i)
		l, ok := laneOf[root]
		if !ok {
			l = 0
			for k := range load {
				if load[k] < load[l] {
					l = k
				}
			}
			laneOf[root] = l
			load[l] += size[root] // the whole group, so the next one sees it
		}
		lanes[l] = append(lanes[l], i)
	}
	return slices.DeleteFunc(lanes, func(l []int) bool { return len(l) == 0 })
}

// minLane is the fewest purchases worth a lane of their own.
const minLane = 50

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// postInOrder posts ins in order, in chunks where chunk can take them and
// one by one where it cannot, into out.
func (s *Service) postInOrder(ctx context.Context, p Principal, ins []PurchaseInput, keys []IdempotencyKey, out []BatchResult,
	chunk func(context.Context, Principal, []PurchaseInput, []IdempotencyKey, []BatchResult) int) {
	for i := 0; i < len(ins); {
		if err := ctx.Err(); err != nil {
			for ; i < len(ins); i++ {
				out[i].Err = err
			}
			break
		}
		i += chunk(ctx, p, ins[i:], keys[i:], out[i:])
		if i < len(ins) {
			r := &out[i]
			r.Result, r.Replay, r.Err = s.PostPurchase(ctx, p, ins[i], keys[i])
			i++
		}
	}
}

// sqliteBatchChunk posts ins from the first as one write of the group
// committer, planned purchase by purchase and written set-based: each
// table's rows of all the purchases in a few multi-row INSERTs, then each
// balance row. It stops before a purchase that must be posted alone (see
// above), and returns how many it answered; when its write fails it
// answers none and returns 0.
func (s *Service) sqliteBatchChunk(ctx context.Context, p Principal, ins []PurchaseInput, keys []IdempotencyKey, out []BatchResult) int {
	set := cacheOf(s.store.r).last()
	if set == nil {
		return 0
	}
	type earlier struct {
		hash string
		body json.RawMessage
	}
	// Validated before the write takes its time: a purchase without an
	// occurred_at happened before it is written, as when posted alone.
	ins = ins[:min(len(ins), sqliteBatchChunk)]
	// So are the guards, whose hashes take their time off the writer.
	purs, invalid := make([]purchase, len(ins)), make([]error, len(ins))
	guardsOf := make([][]guard, len(ins))
	for n, in := range ins {
		purs[n], invalid[n] = s.validatePurchase(p, set.prog, in)
	}
	// The guards depend on their purchase alone: on every core. (The
	// validation stays in order: the purchases' default occurred_at
	// follow the batch's order.)
	EachPart(len(ins), func(lo, hi int) {
		for n := lo; n < hi; n++ {
			if invalid[n] == nil {
				guardsOf[n] = purs[n].guards(keys[n])
			}
		}
	})
	var got []BatchResult
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		got = got[:0] // a group rolled back runs its writes again
		now := ts(s.now())
		accounts, err := sqliteAccounts(tx, purs, invalid, set, now)
		if err != nil {
			return err
		}
		recorded, err := sqliteRecorded(tx, guardsOf)
		if err != nil {
			return err
		}
		live, err := s.store.anyOfferLive(tx)
		if err != nil {
			return err
		}
		held := map[string]*account{}    // members with a purchase in the chunk
		offerFree := map[*account]bool{} // with no offer live when read
		inChunk := map[string]earlier{}  // guards answered in the chunk
		var rows []any
		var saves []*account
		var tiers []*string
	items:
		for n, pur := range purs {
			if err := invalid[n]; err != nil {
				got = append(got, BatchResult{Err: err})
				continue
			}
			if pur.pay != 0 {
				break
			}
			carried := held[pur.MemberID]
			if carried != nil && !offerFree[carried] {
				break // its offers' uses were read before the chunk's
			}
			guards := guardsOf[n]
			for _, g := range guards {
				if prev, ok := inChunk[g.scope+"\x00"+g.key]; ok {
					r := BatchResult{Replay: &Replay{Body: prev.body}}
					if prev.hash != g.hash {
						r = BatchResult{Err: g.mismatch}
					}
					got = append(got, r)
					continue items
				}
				// As claim answers on SQLite: the one writer excludes a
				// concurrent twin, so a key with no record is free.
				if prev, ok := recorded[g.scope+"\x00"+g.key]; ok {
					rep, err := g.answer(prev)
					got = append(got, BatchResult{Replay: rep, Err: err})
					continue items
				}
			}
			a, mo := carried, newMemberOffers()
			if a == nil {
				if a = accounts[pur.MemberID]; a == nil {
					got = append(got, BatchResult{Err: memberRef(Errorf(NotFound, "not_found", "no member has id %q", pur.MemberID))})
					continue
				}
				if a.cfg != set.version {
					break // new settings: the general path
				}
				if d, ok := a.inactivityDeadline(); ok && !d.After(now) {
					break // expireInactive writes the lapse
				}
				if live {
					var err error
					if mo, err = s.store.offersFor(tx, a.member.ID, pur.at); err != nil {
						return err
					}
				}
				offerFree[a] = len(mo.offers) == 0
			}
			res, w, err := planPurchase(a, pur, mo)
			if err != nil {
				if !isRefusal(err) {
					return err
				}
				got = append(got, BatchResult{Err: err})
				continue
			}
			body, err := json.Marshal(res)
			if err != nil {
				return err
			}
			res.keepEncoded(body)
			rows = append(rows, w.rows...)
			for _, e := range res.events(body, now) {
				rows = append(rows, e.row())
			}
			for _, g := range guards {
				rows = append(rows, &answerRow{g: g, body: string(body), at: now})
				inChunk[g.scope+"\x00"+g.key] = earlier{hash: g.hash, body: body}
			}
			if carried == nil {
				saves, tiers = append(saves, a), append(tiers, nil)
			}
			if w.tier != nil {
				tiers[slices.Index(saves, a)] = w.tier
			}
			held[pur.MemberID] = a
			got = append(got, BatchResult{Result: res})
		}
		// Each table's rows together, in an order the foreign keys allow.
		slices.SortStableFunc(rows, func(x, y any) int { return cmp.Compare(tableRank(x), tableRank(y)) })
		if err := insertRowsSQLite(tx, rows); err != nil {
			return err
		}
		return saveManySQLite(tx, saves, tiers)
	})
	if err != nil {
		return 0
	}
	for i, r := range got {
		out[i] = r
		if r.Err == nil && r.Replay == nil {
			s.observePurchase(r.Result)
		}
	}
	return len(got)
}

// sqliteBatchChunk bounds the purchases of one write on SQLite: a whole
// batch, whose pages shared by its purchases then go to the WAL once.
const sqliteBatchChunk = MaxBatch

// isRefusal says whether err is the engine refusing a request (a domain
// error with its code), not a failure of the database.
func isRefusal(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// tableRank orders a purchase's rows by table for set-based inserts:
// parents before the rows that refer to them.
func tableRank(r any) int {
	switch r.(type) {
	case *purchaseRow:
		return 0
	case *[]itemRow:
		return 1
	case *entryRow:
		return 2
	case *lotRow:
		return 3
	case *offerUseRow:
		return 4
	case *eventRow:
		return 5
	case *answerRow:
		return 6
	}
	return 7
}

// pgBatchChunk posts ins from the first in one transaction on one
// connection, in two round trips whatever their number: BEGIN, the
// chunk's balance rows locked in member order (so that two batches over the
// same members wait for each other rather than deadlock), and for each
// purchase what pgPurchaseIn reads first (its guards' records, its
// account locked, its member's offers); then, planned purchase by purchase
// with the same rules, one statement writing them all (pgChunkWriteSQL)
// and COMMIT. A member whose kept state lapsed costs a round trip of its
// own, as alone. It stops before a purchase that must be posted alone (as
// sqliteBatchChunk does), answers the others once committed, and returns
// how many it answered: 0, answering none, when its transaction failed.
func (s *Service) pgBatchChunk(ctx context.Context, p Principal, ins []PurchaseInput, keys []IdempotencyKey, out []BatchResult) int {
	set := cacheOf(s.store.r).last()
	if set == nil {
		return 0
	}
	// The chunk: validated, up to the first purchase that goes alone.
	type item struct {
		pur     purchase
		invalid error
		guards  []guard
	}
	var items []item
	held := map[string]bool{}
	var ids []string
	for n := 0; n < len(ins) && n < pgBatchChunk; n++ {
		pur, err := s.validatePurchase(p, set.prog, ins[n])
		if err == nil && pur.pay != 0 {
			break
		}
		it := item{pur: pur, invalid: err}
		if err == nil {
			it.guards = pur.guards(keys[n])
			if !held[pur.MemberID] {
				held[pur.MemberID] = true
				ids = append(ids, pur.MemberID)
			}
		}
		items = append(items, it)
	}
	if len(ids) == 0 {
		return 0
	}
	s.store.NoteServing()
	conn, err := s.store.pg.Acquire(ctx)
	if err != nil {
		return 0
	}
	defer conn.Release()
	defer func() {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			if _, err := conn.Exec(ctx, "rollback"); err != nil {
				_ = conn.Conn().Close(ctx)
			}
		}
	}()
	now := ts(s.now())
	seen := s.store.offersSeen.Load()
	skipOffers := seen != nil && !seen.active

	// Round trip 1.
	b := &pgx.Batch{}
	b.Queue("begin")
	b.Queue(pgLockChunkSQL, ids)
	for _, it := range items {
		if it.invalid != nil {
			continue
		}
		for _, g := range it.guards {
			b.Queue(pgClaimedSQL, g.scope, g.key)
		}
		b.Queue(pgLockSQL, it.pur.MemberID)
		if !skipOffers {
			b.Queue(pgOffersSQL, OfferActive, it.pur.at, it.pur.MemberID)
			b.Queue(pgOfferFactsSQL, it.pur.MemberID)
		}
	}
	type read struct {
		rep      *Replay
		refused  error
		a        *account
		mo       *memberOffers
		offersAt int64
	}
	reads := make([]read, len(items))
	err = func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		for range 2 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		for i, it := range items {
			if it.invalid != nil {
				continue
			}
			r := &reads[i]
			for _, g := range it.guards {
				var prev idempotencyRow
				err := br.QueryRow().Scan(&prev.RequestHash, &prev.Status, &prev.Response)
				if errors.Is(err, pgx.ErrNoRows) || (err == nil && (r.rep != nil || r.refused != nil)) {
					continue
				}
				if err != nil {
					return err
				}
				r.rep, r.refused = g.answer(prev)
			}
			a := &account{prog: set.prog, now: now, set: set}
			rows, err := br.Query()
			if err != nil {
				return err
			}
			var version int64
			found := rows.Next()
			if found {
				err = rows.Scan(append(a.lockedDest(&version), &r.offersAt)...)
			}
			rows.Close()
			if err := errors.Join(err, rows.Err()); err != nil {
				return err
			}
			a.balance.MemberID, a.cfg = a.member.ID, version
			if found {
				r.a = a
			} else if r.rep == nil && r.refused == nil {
				r.refused = memberRef(Errorf(NotFound, "not_found", "no member has id %q", it.pur.MemberID))
			}
			r.mo = newMemberOffers()
			if !skipOffers {
				if err := scanMemberOffers(br, r.mo); err != nil {
					return err
				}
			}
		}
		return nil
	}()
	if err != nil {
		return 0
	}

	// Plan each purchase; round trip 2 writes them all and commits.
	type earlier struct {
		hash string
		body json.RawMessage
	}
	inChunk := map[string]earlier{}
	got := make([]BatchResult, 0, len(items))
	var cw pgChunkWrites
	planned := map[string]*account{} // members planned in the chunk
	offerFree := map[*account]bool{} // with no offer live when read
	for i, it := range items {
		r := reads[i]
		switch {
		case it.invalid != nil:
			got = append(got, BatchResult{Err: it.invalid})
			continue
		case r.rep != nil || r.refused != nil:
			got = append(got, BatchResult{Replay: r.rep, Err: r.refused})
			continue
		}
		a := planned[it.pur.MemberID]
		carried := a != nil
		if !carried {
			a = r.a
			if a.cfg != set.version || (skipOffers && r.offersAt != seen.version) {
				break // new settings or offers: the general path
			}
			if d, ok := a.inactivityDeadline(); ok && !d.After(now) {
				break // expireInactive writes the lapse
			}
			offerFree[a] = len(r.mo.offers) == 0
		} else if !offerFree[a] {
			break // its offers' uses were read before the chunk's
		}
		var dup *BatchResult
		for _, g := range it.guards {
			if prev, ok := inChunk[g.scope+"\x00"+g.key]; ok {
				dup = &BatchResult{Replay: &Replay{Body: prev.body}}
				if prev.hash != g.hash {
					dup = &BatchResult{Err: g.mismatch}
				}
				break
			}
		}
		if dup != nil {
			got = append(got, *dup)
			continue
		}
		// A carried account is as the chunk's earlier purchases left it.
		if !carried && a.fresh() {
			if a.k, err = a.keptFromRow(); err != nil {
				return 0
			}
		} else if !carried {
			if err := a.pgCatchUp(ctx, conn); err != nil {
				return 0
			}
		}
		mo := r.mo
		if carried {
			mo = newMemberOffers()
		}
		res, w, err := planPurchase(a, it.pur, mo)
		if err != nil {
			if !isRefusal(err) {
				return 0
			}
			got = append(got, BatchResult{Err: err})
			continue
		}
		body, err := json.Marshal(res)
		if err != nil {
			return 0
		}
		for _, e := range res.events(body, now) {
			w.rows = append(w.rows, e.row())
		}
		if err := cw.add(a, w, !carried); err != nil {
			return 0
		}
		planned[it.pur.MemberID] = a
		for _, g := range it.guards {
			cw.record(g, body)
			inChunk[g.scope+"\x00"+g.key] = earlier{hash: g.hash, body: body}
		}
		res.keepEncoded(body)
		got = append(got, BatchResult{Result: res})
	}
	if len(got) == 0 {
		return 0
	}
	b = &pgx.Batch{}
	if len(cw.balances) > 0 {
		b.Queue(pgChunkWriteSQL, cw.args(now)...)
	}
	b.Queue("commit")
	if err := func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		if len(cw.balances) > 0 {
			tag, err := br.Exec()
			if err != nil {
				return err
			}
			if tag.RowsAffected() != int64(len(cw.balances)) {
				return fmt.Errorf("the batch's balance rows: %d updated of %d", tag.RowsAffected(), len(cw.balances))
			}
		}
		_, err := br.Exec()
		return err
	}(); err != nil {
		return 0
	}
	posted := false
	for i, r := range got {
		out[i] = r
		if r.Err == nil && r.Replay == nil {
			posted = true
			s.observePurchase(r.Result)
		}
	}
	if posted {
		hubOf(s.store.w).committed() // the purchases' events
	}
	return len(got)
}

// pgChunkWriteSQL writes a chunk of purchases in one statement: each
// table's rows of all of them (the arrays of pgWriteSQL, $1 to $48, and
// the events'), the members whose tier moved, the guards' records with
// their answers, and the balance rows, whose count it answers.
const pgChunkWriteSQL = `WITH ` + pgInsertsSQL + `,
v AS (INSERT INTO events (type, member_id, occurred_at, data)
	SELECT * FROM unnest($49::text[], $50::text[], $51::timestamptz[], $52::text[])),
t AS (UPDATE members m SET tier_code = x.tier, tier_since = $53 FROM unnest($54::text[], $55::text[]) AS x(id, tier)
	WHERE m.id = x.id),
k AS (INSERT INTO idempotency_keys (scope, key, request_hash, status, response, created_at)
	SELECT g.scope, g.key, g.hash, $56, g.response, $53 FROM unnest($57::text[], $58::text[], $59::text[], $60::text[])
		AS g(scope, key, hash, response))
UPDATE member_balances b SET points = x.points, debt = x.debt, lifetime_earned = x.lifetime_earned,
	lifetime_redeemed = x.lifetime_redeemed, last_activity_at = x.last_activity_at, version = x.version,
	updated_at = x.updated_at, open_available = x.open_available, open_pending = x.open_pending,
	qualifying_spend = x.qualifying_spend, expiring_soon = x.expiring_soon, as_of = x.as_of,
	next_change_at = x.next_change_at, config_version = x.config_version
FROM unnest($61::text[], $62::bigint[], $63::bigint[], $64::bigint[], $65::bigint[], $66::timestamptz[], $67::bigint[],
	$68::timestamptz[], $69::bigint[], $70::bigint[], $71::bigint[], $72::text[], $73::timestamptz[], $74::timestamptz[],
	$75::bigint[]) AS x(member_id, points, debt, lifetime_earned, lifetime_redeemed, last_activity_at, version, updated_at,
	open_available, open_pending, qualifying_spend, expiring_soon, as_of, next_change_at, config_version)
WHERE b.member_id = x.member_id`

// pgChunkWrites gathers a chunk's writes as pgChunkWriteSQL's arrays.
type pgChunkWrites struct {
	x                          pgWriteArgs
	tierIDs, tiers             []string
	gScope, gKey, gHash, gBody []string
	balances                   []*balanceRow
}

// add gathers the writes w planned on account a; first says a is new to
// the chunk: its balance row is written once, as the chunk's last purchase
// of the member left it.
func (c *pgChunkWrites) add(a *account, w *accountWrites, first bool) error {
	if err := c.x.add(w.rows); err != nil {
		return err
	}
	if w.tier != nil {
		if i := slices.Index(c.tierIDs, a.member.ID); i >= 0 {
			c.tiers[i] = *w.tier
		} else {
			c.tierIDs, c.tiers = append(c.tierIDs, a.member.ID), append(c.tiers, *w.tier)
		}
	}
	if first {
		c.balances = append(c.balances, &a.balance)
	}
	return nil
}

// record gathers guard g's record, answered with body.
func (c *pgChunkWrites) record(g guard, body []byte) {
	c.gScope, c.gKey, c.gHash, c.gBody = append(c.gScope, g.scope), append(c.gKey, g.key), append(c.gHash, g.hash), append(c.gBody, string(body))
}

// args are pgChunkWriteSQL's arguments, the chunk written at now.
func (c *pgChunkWrites) args(now time.Time) []any {
	x := &c.x
	n := len(c.balances)
	var (
		ids, soon                               = make([]string, n), make([]string, n)
		points, debt, earned, redeemed, version = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		openAvail, openPending, spend, cfg      = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		lastActivity, next                      = make([]*time.Time, n), make([]*time.Time, n)
		updated, asOf                           = make([]time.Time, n), make([]time.Time, n)
	)
	for i, b := range c.balances {
		ids[i], points[i], debt[i], earned[i], redeemed[i] = b.MemberID, b.Points, b.Debt, b.LifetimeEarned, b.LifetimeRedeemed
		lastActivity[i], version[i], updated[i] = b.LastActivityAt, b.Version, b.UpdatedAt
		openAvail[i], openPending[i], spend[i], soon[i] = b.OpenAvailable, b.OpenPending, b.QualifyingSpend, b.ExpiringSoon
		asOf[i], next[i], cfg[i] = b.AsOf, b.NextChangeAt, b.ConfigVersion
	}
	return append(x.inserts(), x.vType, x.vMember, x.vAt, x.vData,
		now, c.tierIDs, c.tiers,
		answered, c.gScope, c.gKey, c.gHash, c.gBody,
		ids, points, debt, earned, redeemed, lastActivity, version, updated, openAvail, openPending, spend, soon, asOf, next, cfg)
}

// sqliteAccounts reads, in one statement, the accounts of the members the
// valid purchases purs are for, each brought to now as lockKept brings one
// (SQLite's write transaction is their lock).
func sqliteAccounts(tx *gorm.DB, purs []purchase, invalid []error, set *settings, now time.Time) (map[string]*account, error) {
	var ids []string
	for n, pur := range purs {
		if invalid[n] == nil {
			ids = append(ids, pur.MemberID)
		}
	}
	out := map[string]*account{}
	if len(ids) == 0 {
		return out, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := tx.Statement.ConnPool.QueryContext(tx.Statement.Context, lockManySQLite, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		a := &account{prog: set.prog, now: now, set: set}
		if err := rows.Scan(a.lockedDest(&a.cfg)...); err != nil {
			return nil, err
		}
		a.balance.MemberID = a.member.ID
		out[a.member.ID] = a
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
	accts := make([]*account, 0, len(out))
	for _, a := range out {
		accts = append(accts, a)
	}
	if err := catchUpAll(tx, accts); err != nil {
		return nil, err
	}
	return out, nil
}

// lockManySQLite is lockSQLite for the members of a JSON array.
var lockManySQLite = strings.Replace(lockSQLite, "WHERE b.member_id = ?",
	"WHERE b.member_id IN (SELECT value FROM json_each(?))", 1)

// sqliteRecorded reads, in one statement, the records of the guards in
// guardsOf that exist, by scope and key joined with a NUL.
func sqliteRecorded(tx *gorm.DB, guardsOf [][]guard) (map[string]idempotencyRow, error) {
	var keys [][2]string
	for _, gs := range guardsOf {
		for _, g := range gs {
			keys = append(keys, [2]string{g.scope, g.key})
		}
	}
	out := map[string]idempotencyRow{}
	if len(keys) == 0 {
		return out, nil
	}
	list, err := json.Marshal(keys)
	if err != nil {
		return nil, err
	}
	rows, err := tx.Statement.ConnPool.QueryContext(tx.Statement.Context, recordedManySQLite, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var r idempotencyRow
		if err := rows.Scan(&r.Scope, &r.Key, &r.RequestHash, &r.Status, &r.Response); err != nil {
			return nil, err
		}
		out[r.Scope+"\x00"+r.Key] = r
	}
	return out, errors.Join(rows.Err(), rows.Close())
}

// recordedManySQLite is recordedSQLite for the [scope, key] pairs of a
// JSON array, each found through the primary key.
const recordedManySQLite = `SELECT k.scope, k."key", k.request_hash, k.status, k.response
	FROM json_each(?) j JOIN idempotency_keys k ON k.scope = j.value ->> 0 AND k."key" = j.value ->> 1`

// saveManySQLite is saveSQLite for the accounts of a chunk, tiers[i]
// being accts[i]'s: their sealed balance rows, which must all be there,
// in a few multi-row UPDATEs rather than one statement each, the same
// columns set to the same values; then each member's new tier when it
// moved.
func saveManySQLite(tx *gorm.DB, accts []*account, tiers []*string) error {
	var args []any
	for rest := accts; len(rest) > 0; {
		// A power of two of rows, so that few texts are compiled and cached.
		n := 1 << (bits.Len(uint(min(len(rest), maxBalancesPerUpdate))) - 1)
		args = args[:0]
		for _, a := range rest[:n] {
			args = append(args, balanceUpdateArgs(&a.balance)...)
		}
		got, err := execSQLite(tx, balanceUpdateManySQL(n), args...)
		if err != nil {
			return err
		}
		if got != int64(n) {
			return fmt.Errorf("the chunk's balance rows: %d updated of %d", got, n)
		}
		rest = rest[n:]
	}
	for i, a := range accts {
		if tiers[i] == nil {
			continue
		}
		if _, err := execSQLite(tx, `UPDATE members SET tier_code = ?, tier_since = ?, updated_at = ? WHERE id = ?`,
			*tiers[i], a.now, a.now, a.member.ID); err != nil {
			return err
		}
	}
	return nil
}

// maxBalancesPerUpdate bounds the rows of one balanceUpdateManySQL (15
// values each, of SQLite's 32,766).
const maxBalancesPerUpdate = 256

var balanceUpdateTexts sync.Map // row count → SQL text

// balanceUpdateManySQL is balanceUpdateSQLite for n balance rows, each
// bound from balanceUpdateArgs in turn: the columns of VALUES row i are
// those arguments, column8 the member.
func balanceUpdateManySQL(n int) string {
	if q, ok := balanceUpdateTexts.Load(n); ok {
		return q.(string)
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", 15), ",") + ")"
	q := `UPDATE member_balances SET points = v.column1, debt = v.column2, lifetime_earned = v.column3,
	lifetime_redeemed = v.column4, last_activity_at = v.column5, version = v.column6, updated_at = v.column7,
	open_available = v.column9, open_pending = v.column10, qualifying_spend = v.column11, expiring_soon = v.column12,
	as_of = v.column13, next_change_at = v.column14, config_version = v.column15
	FROM (VALUES ` + strings.TrimSuffix(strings.Repeat(row+",", n), ",") + `) AS v WHERE member_balances.member_id = v.column8`
	got, _ := balanceUpdateTexts.LoadOrStore(n, q)
	return got.(string)
}

// EachPart runs f over [0, n) in contiguous parts, one per core the
// process may use, each of at least minPart indexes, and returns once all
// have returned. The API decodes a till batch's purchases with it too.
func EachPart(n int, f func(lo, hi int)) {
	const minPart = 64
	parts := max(1, min(runtime.GOMAXPROCS(0), n/minPart))
	if parts == 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := range parts {
		lo, hi := i*n/parts, (i+1)*n/parts
		wg.Go(func() { f(lo, hi) })
	}
	wg.Wait()
}
