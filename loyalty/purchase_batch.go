package loyalty

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"

	"gorm.io/gorm"
)

// A till's batch (§15): purchases it took while offline, sent at once.
// Each is posted on its own, in order, under its own receipt, exactly as
// PostPurchase would post it alone, and one refused purchase does not stop
// the others; what a batch saves is the cost the purchases can share.
//
//   - On SQLite the batch queues its purchases for the group committer in
//     order, each after the one before it is queued, so they share its
//     transactions (64 to a group), each in a savepoint of its own.
//   - On PostgreSQL up to pgBatchChunk purchases share one transaction on
//     one connection, each in a savepoint, in the two round trips of
//     pgPurchaseIn. A purchase that needs a transaction of its own (a
//     payment with points, new settings) ends the chunk and is posted
//     alone; a chunk whose transaction fails (a deadlock with another
//     batch, a lost connection) is answered by nothing and its purchases
//     are posted again, which their receipts make safe.
//
// Either way a purchase is answered only once its transaction committed.

// MaxBatch is the most purchases one batch may carry.
const MaxBatch = 500

// pgBatchChunk bounds the purchases of one batch transaction on
// PostgreSQL: the members they lock stay locked until it commits, a few
// tens of milliseconds.
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
	chunk := s.pgBatchChunk
	if s.store.pg == nil {
		chunk = s.sqliteBatchChunk
	}
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
	return out, nil
}

// sqliteBatchChunk posts ins from the first as one write of the group
// committer, planned purchase by purchase and written set-based: each
// table's rows of all the purchases in a few multi-row INSERTs, then each
// balance row. It stops before a purchase that must be posted alone (one
// paying with points, one whose member it already holds a purchase of,
// one whose member's points lapse by inactivity, one under settings newer
// than those it validated with), and returns how many it answered; when
// its write fails it answers none and returns 0.
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
	purs, invalid := make([]purchase, len(ins)), make([]error, len(ins))
	for n, in := range ins {
		purs[n], invalid[n] = s.validatePurchase(p, set.prog, in)
	}
	var got []BatchResult
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		got = got[:0] // a group rolled back runs its writes again
		now := ts(s.now())
		held := map[string]bool{}        // members with a purchase in the chunk
		answered := map[string]earlier{} // guards answered in the chunk
		var rows []any
		var saves []*account
		var tiers []*string
	items:
		for n, pur := range purs {
			if err := invalid[n]; err != nil {
				got = append(got, BatchResult{Err: err})
				continue
			}
			if pur.pay != 0 || held[pur.MemberID] {
				break
			}
			guards := pur.guards(keys[n])
			for _, g := range guards {
				if prev, ok := answered[g.scope+"\x00"+g.key]; ok {
					r := BatchResult{Replay: &Replay{Body: prev.body}}
					if prev.hash != g.hash {
						r = BatchResult{Err: g.mismatch}
					}
					got = append(got, r)
					continue items
				}
				rep, err := claim(tx, g, now)
				if err != nil || rep != nil {
					if err != nil && !isRefusal(err) {
						return err
					}
					got = append(got, BatchResult{Replay: rep, Err: err})
					continue items
				}
			}
			a, err := lockKept(tx, pur.MemberID, set.prog, now)
			if err != nil {
				if !isRefusal(err) {
					return err
				}
				got = append(got, BatchResult{Err: memberRef(err)})
				continue
			}
			a.set = set
			if a.cfg != set.version {
				break // new settings: the general path
			}
			if d, ok := a.inactivityDeadline(); ok && !d.After(now) {
				break // expireInactive writes the lapse
			}
			mo, err := s.store.offersFor(tx, a.member.ID, pur.at)
			if err != nil {
				return err
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
				answered[g.scope+"\x00"+g.key] = earlier{hash: g.hash, body: body}
			}
			saves, tiers = append(saves, a), append(tiers, w.tier)
			held[pur.MemberID] = true
			got = append(got, BatchResult{Result: res})
		}
		// Each table's rows together, in an order the foreign keys allow.
		slices.SortStableFunc(rows, func(x, y any) int { return cmp.Compare(tableRank(x), tableRank(y)) })
		if err := insertRowsSQLite(tx, rows); err != nil {
			return err
		}
		for i, a := range saves {
			if err := saveSQLite(tx, a, tiers[i]); err != nil {
				return err
			}
		}
		return nil
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

// sqliteBatchChunk bounds the purchases of one write on SQLite.
const sqliteBatchChunk = 250

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

// pgBatchChunk posts ins from the first in one transaction, until
// pgBatchChunk of them have run or one needs a transaction of its own,
// answers them in out once it has committed, and returns how many it
// answered. When the transaction fails it answers none and returns 0: the
// caller posts the first alone and starts the next chunk after it.
func (s *Service) pgBatchChunk(ctx context.Context, p Principal, ins []PurchaseInput, keys []IdempotencyKey, out []BatchResult) int {
	set := cacheOf(s.store.r).last()
	if set == nil {
		return 0
	}
	conn, err := s.store.pg.Acquire(ctx)
	if err != nil {
		return 0
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "begin"); err != nil {
		return 0
	}
	// The chunk's balances, locked at once in the order every set-based
	// write locks them (lockBalances): two batches touching the same
	// members in other orders then wait for each other instead of
	// deadlocking.
	ids := make([]string, 0, min(len(ins), pgBatchChunk))
	for _, in := range ins[:min(len(ins), pgBatchChunk)] {
		ids = append(ids, in.MemberID)
	}
	if _, err := conn.Exec(ctx, pgLockChunkSQL, ids); err != nil {
		return 0
	}
	defer func() {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			if _, err := conn.Exec(ctx, "rollback"); err != nil {
				_ = conn.Conn().Close(ctx)
			}
		}
	}()
	got := make([]BatchResult, 0, min(len(ins), pgBatchChunk))
	for n := 0; n < len(ins) && n < pgBatchChunk; n++ {
		pur, err := s.validatePurchase(p, set.prog, ins[n])
		if err != nil {
			got = append(got, BatchResult{Err: err})
			continue
		}
		if pur.pay != 0 {
			break // a payment with points draws from lots: the general path
		}
		guards := pur.guards(keys[n])
		res, rep, err := s.pgPurchaseIn(ctx, conn, pgInBatch, set, pur, guards)
		if errors.Is(err, errPGDuplicate) {
			// A concurrent twin committed first: read its record now.
			if res, rep, err = s.pgPurchaseIn(ctx, conn, pgInBatch, set, pur, guards); errors.Is(err, errPGDuplicate) {
				err = Errorf(Conflict, "duplicate", "receipt %q of store %q was already posted", pur.ExternalID, pur.StoreID)
			}
		}
		var refused *Error
		switch {
		case errors.Is(err, errPGFallback):
			n = len(ins) // this one goes alone
			continue
		case err != nil && (errors.Is(err, errPGScopeLost) || !errors.As(err, &refused)):
			return 0
		}
		got = append(got, BatchResult{Result: res, Replay: rep, Err: err})
	}
	if len(got) == 0 {
		return 0
	}
	if _, err := conn.Exec(ctx, "commit"); err != nil {
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
