package loyalty

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
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
	if s.store.pg != nil {
		s.pgPostBatch(ctx, p, ins, keys, out)
	} else {
		s.postBatchQueued(ctx, p, ins, keys, out)
	}
	return out, nil
}

// postBatchQueued posts each purchase through PostPurchase, each queued
// for the writer after the one before it, so that the group committer runs
// them in the batch's order, many to a transaction.
func (s *Service) postBatchQueued(ctx context.Context, p Principal, ins []PurchaseInput, keys []IdempotencyKey, out []BatchResult) {
	var wg sync.WaitGroup
	for i := range ins {
		queued := make(chan struct{})
		var once sync.Once
		next := func() { once.Do(func() { close(queued) }) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer next() // refused before it was queued
			r := &out[i]
			r.Result, r.Replay, r.Err = s.PostPurchase(context.WithValue(ctx, queuedKey{}, next), p, ins[i], keys[i])
		}()
		<-queued
	}
	wg.Wait()
}

// pgPostBatch posts the batch in chunks sharing a transaction, each
// purchase that cannot share one alone.
func (s *Service) pgPostBatch(ctx context.Context, p Principal, ins []PurchaseInput, keys []IdempotencyKey, out []BatchResult) {
	for i := 0; i < len(ins); {
		if err := ctx.Err(); err != nil {
			for ; i < len(ins); i++ {
				out[i].Err = err
			}
			return
		}
		i += s.pgBatchChunk(ctx, p, ins[i:], keys[i:], out[i:])
		if i < len(ins) {
			r := &out[i]
			r.Result, r.Replay, r.Err = s.PostPurchase(ctx, p, ins[i], keys[i])
			i++
		}
	}
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
