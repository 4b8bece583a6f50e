package loyalty

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Replay is the stored result of a write that has been repeated: the JSON
// of what the write returned the first time. The API answers it with the
// status it gives that write, the same each time.
type Replay struct {
	Body json.RawMessage
}

// The states of an idempotency record (its status column): claimed by a
// write in progress, or answered with the write's result. Records stored
// before results were kept as domain results hold the first answer's HTTP
// status there, which counts as answered.
const (
	claimed  = 0
	answered = 1
)

// IdempotencyKey is the caller's Idempotency-Key with what it guards. The
// zero value means the caller sent none.
type IdempotencyKey struct {
	Key         string // as sent, 1–255 printable ASCII
	Subject     string // the caller's sub: keys are scoped to the caller
	RequestHash string // hash of method, route and canonical body
}

// HashRequest digests the parts of a request that make it "the same".
func HashRequest(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		var n [8]byte
		l := len(p)
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// guard is one idempotency record a write claims before its effect.
type guard struct {
	scope, key, hash string
	// mismatch is the error when the key was used for a different request:
	// 422 for a caller's key, 409 for a natural key such as a receipt number.
	mismatch *Error
}

func headerGuard(k IdempotencyKey) []guard {
	if k.Key == "" {
		return nil
	}
	return []guard{{scope: "key:" + k.Subject, key: k.Key, hash: k.RequestHash,
		mismatch: Errorf(Invalid, "idempotency_key_reused", "Idempotency-Key was already used with a different request")}}
}

var errReplayed = errors.New("replayed")

// personalReply is a write's result that shows a member's personal data.
// Its stored copy names the member, and erasing the member replaces the
// copy with the erased view (eraseReplies), so that a replay after the
// erasure shows nothing erased. Results that carry only ids and points
// (purchases, returns, adjustments, redemptions) are not personal.
type personalReply interface {
	personalOf() string
}

// eraseReplies replaces every stored reply that showed member m with m as it
// is now, erased: the same status, the same member id, no personal data.
// It runs in the erasure's transaction.
func eraseReplies(tx *gorm.DB, m Member) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Model(&idempotencyRow{}).Where("personal_member_id = ?", m.ID).Update("response", string(body)).Error
}

// onConflictNothing makes an insert of an existing key a no-op.
var onConflictNothing = clause.OnConflict{DoNothing: true}

// writeOnce runs fn in a write transaction guarded by idempotency records.
// Each guard is claimed first (on PostgreSQL an insert that waits for, then
// yields to, a concurrent claim of the same key; on SQLite, whose one
// writer excludes any, a read); if one was already completed, the
// transaction is rolled back and its first response replayed. Otherwise fn
// runs and its result is stored under every guard in the same transaction,
// so a crash keeps both the effect and its record, or neither.
func writeOnce[T any](ctx context.Context, s *Service, guards []guard, fn func(tx *gorm.DB) (T, error)) (T, *Replay, error) {
	return writeOnceAllowed(ctx, s, nil, guards, fn)
}

// writeOnceAllowed is writeOnce for a write whose caller may be refused
// for what the write touches (a till bound to one store returning another
// store's purchase): allowed runs first, in the same transaction, so a
// caller refused the write is refused its replay too, and never reads the
// first caller's answer.
func writeOnceAllowed[T any](ctx context.Context, s *Service, allowed func(tx *gorm.DB) error, guards []guard, fn func(tx *gorm.DB) (T, error)) (T, *Replay, error) {
	var out T
	var replay *Replay
	now := ts(s.now())
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		replay = nil
		if allowed != nil {
			if err := allowed(tx); err != nil {
				return err
			}
		}
		for _, g := range guards {
			r, err := claim(tx, g, now)
			if err != nil {
				return err
			}
			if r != nil {
				replay = r
				return errReplayed
			}
		}
		etx, held := holdEvents(tx)
		v, err := fn(etx)
		if err != nil {
			return err
		}
		body, err := json.Marshal(v)
		if err != nil {
			return err
		}
		// The answer's events first (their data is body, marshalled
		// once), then those its change emitted deeper down.
		if err := appendEvents(tx, answerEvents(v, body, now, *held)...); err != nil {
			return err
		}
		if tx.Dialector.Name() != Postgres {
			var personal string
			p, isPersonal := any(v).(personalReply)
			if isPersonal {
				personal = p.personalOf()
			}
			for _, g := range guards {
				if err := answerSQLite(tx, g, string(body), isPersonal, personal, now); err != nil {
					return err
				}
			}
			out = v
			if k, ok := any(&out).(interface{ keepEncoded([]byte) }); ok {
				k.keepEncoded(body)
			}
			return nil
		}
		stored := map[string]any{"status": answered, "response": string(body)}
		if p, ok := any(v).(personalReply); ok {
			stored["personal_member_id"] = p.personalOf()
		}
		for _, g := range guards {
			if err := tx.Model(&idempotencyRow{}).Where("scope = ? AND key = ?", g.scope, g.key).
				Updates(stored).Error; err != nil {
				return err
			}
		}
		out = v
		if k, ok := any(&out).(interface{ keepEncoded([]byte) }); ok {
			k.keepEncoded(body)
		}
		return nil
	})
	if errors.Is(err, errReplayed) {
		return out, replay, nil
	}
	return out, nil, err
}

func claim(tx *gorm.DB, g guard, now time.Time) (*Replay, error) {
	if tx.Dialector.Name() != Postgres {
		// The one writer excludes any concurrent twin: a key with no record
		// is free until this transaction records it, answered.
		var prev idempotencyRow
		err := tx.Statement.ConnPool.QueryRowContext(tx.Statement.Context, recordedSQLite, g.scope, g.key).
			Scan(&prev.RequestHash, &prev.Status, &prev.Response)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return g.answer(prev)
	} else {
		row := idempotencyRow{Scope: g.scope, Key: g.key, RequestHash: g.hash, Status: claimed, Response: "", CreatedAt: now}
		res := tx.Clauses(onConflictNothing).Create(&row)
		if res.Error != nil {
			return nil, res.Error
		}
		if res.RowsAffected == 1 {
			return nil, nil
		}
	}
	var prev idempotencyRow
	if err := tx.Where("scope = ? AND key = ?", g.scope, g.key).Take(&prev).Error; err != nil {
		return nil, err
	}
	return g.answer(prev)
}

// answer is the replay of the record prev, already claimed under g.
func (g guard) answer(prev idempotencyRow) (*Replay, error) {
	if prev.RequestHash != g.hash {
		return nil, g.mismatch
	}
	if prev.Status == claimed {
		return nil, Errorf(Conflict, "in_progress", "the same request is still being processed; retry shortly")
	}
	return &Replay{Body: json.RawMessage(prev.Response)}, nil
}

// Answered is the stored answer of a request sent under k when there is
// one (a replay), nil when k is free or none was sent, or k's mismatch
// error when k was used for another request. It is for a request made of
// writes each guarded on its own (a till's batch, whose answer
// RecordAnswer stores once they are all done).
func (s *Service) Answered(ctx context.Context, k IdempotencyKey) (*Replay, error) {
	gs := headerGuard(k)
	if len(gs) == 0 {
		return nil, nil
	}
	var prev idempotencyRow
	err := s.store.read(ctx).Where("scope = ? AND key = ?", gs[0].scope, gs[0].key).Take(&prev).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return gs[0].answer(prev)
}

// RecordAnswer stores body as the answer of the request sent under k (see
// Answered). A twin's answer recorded first stands: both answered alike.
func (s *Service) RecordAnswer(ctx context.Context, k IdempotencyKey, body []byte) error {
	gs := headerGuard(k)
	if len(gs) == 0 {
		return nil
	}
	g := gs[0]
	row := idempotencyRow{Scope: g.scope, Key: g.key, RequestHash: g.hash, Status: answered, Response: string(body),
		CreatedAt: ts(s.now())}
	return s.store.write(ctx, func(tx *gorm.DB) error { return tx.Clauses(onConflictNothing).Create(&row).Error })
}

// PurgeIdempotencyKeys forgets callers' keys older than keep. Natural keys
// (receipt numbers) are kept for as long as the records they guard.
func (s *Service) PurgeIdempotencyKeys(ctx context.Context, keep time.Duration) (int64, error) {
	var n int64
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		res := tx.Where("scope LIKE ? AND created_at < ?", "key:%", ts(s.now().Add(-keep))).Delete(&idempotencyRow{})
		n = res.RowsAffected
		return res.Error
	})
	return n, err
}

// On SQLite the read and the record of a guard are fixed texts run on the
// transaction's connection through the statement cache (see flushSQLite):
// the same rows GORM would write, without its statement building. Its one
// writer lets a guard be recorded once, answered, where PostgreSQL's GORM
// path claims it first and answers it after.
const (
	recordedSQLite = `SELECT request_hash, status, response FROM idempotency_keys WHERE scope = ? AND "key" = ?`
	recordSQLite   = `INSERT INTO idempotency_keys (scope, "key", request_hash, status, response, created_at, personal_member_id)
		VALUES (?, ?, ?, ?, ?, ?, ?)`
)

func answerSQLite(tx *gorm.DB, g guard, body string, isPersonal bool, personal string, now time.Time) error {
	var p *string
	if isPersonal {
		p = &personal
	}
	_, err := execSQLite(tx, recordSQLite, g.scope, g.key, g.hash, answered, body, now, p)
	return err
}
