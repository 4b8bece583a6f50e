package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// purchaseBatch is the body of POST /v1/purchases/batch (§15).
type purchaseBatch struct {
	Purchases []json.RawMessage `json:"purchases"`
}

// batchAnswer is one purchase's answer in a batch: the status and body
// that POST /v1/purchases would have answered it with.
type batchAnswer struct {
	Index    int             `json:"index"`
	Status   int             `json:"status"`
	Replayed bool            `json:"replayed,omitempty"`
	Body     json.RawMessage `json:"body"`
}

// postPurchaseBatch posts a till's batch. A purchase whose JSON does not
// decode is answered with its problem and the others are posted; the batch
// itself is refused only when it is not a batch (no purchases, too many).
func (s *server) postPurchaseBatch(c *fiber.Ctx) error {
	var in purchaseBatch
	if err := decode(c, &in); err != nil {
		return err
	}
	if len(in.Purchases) == 0 || len(in.Purchases) > loyalty.MaxBatch {
		return loyalty.Invalidf("purchases", "must hold 1 to %d purchases", loyalty.MaxBatch)
	}
	key, err := idempotencyKey(c, in)
	if err != nil {
		return err
	}
	// Under an Idempotency-Key a batch sent again is answered as the first
	// time; each purchase is also guarded by a key of its own, for a batch
	// sent again before its answer was stored.
	if rep, err := s.svc.Answered(c.UserContext(), key); err != nil || rep != nil {
		if err != nil {
			return err
		}
		return written(c, fiber.StatusOK, nil, rep)
	}
	answers := make([]batchAnswer, len(in.Purchases))
	var ins []loyalty.PurchaseInput
	var keys []loyalty.IdempotencyKey
	var at []int // the index of ins[j] in the batch
	// Each purchase is decoded, and its key derived, on its own: on every
	// core, then gathered in order.
	decoded := make([]loyalty.PurchaseInput, len(in.Purchases))
	itemKeys := make([]loyalty.IdempotencyKey, len(in.Purchases))
	errs := make([]error, len(in.Purchases))
	loyalty.EachPart(len(in.Purchases), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if errs[i] = decodeItem(in.Purchases[i], &decoded[i]); errs[i] == nil {
				itemKeys[i] = key.BatchItem(i, decoded[i])
			}
		}
	})
	for i := range in.Purchases {
		answers[i].Index = i
		if errs[i] != nil {
			answers[i].Status, answers[i].Body = s.problemBody(c, errs[i])
			continue
		}
		ins, keys, at = append(ins, decoded[i]), append(keys, itemKeys[i]), append(at, i)
	}
	if len(ins) > 0 {
		results, err := s.svc.PostPurchases(c.UserContext(), principal(c), ins, keys)
		if err != nil {
			return err
		}
		for j, r := range results {
			a := &answers[at[j]]
			switch {
			case r.Err != nil:
				a.Status, a.Body = s.problemBody(c, r.Err)
			case r.Replay != nil:
				a.Status, a.Replayed, a.Body = fiber.StatusCreated, true, r.Replay.Body
			default:
				a.Status, a.Body = fiber.StatusCreated, r.Result.Encoded()
				if a.Body == nil {
					if a.Body, err = json.Marshal(r.Result); err != nil {
						return err
					}
				}
			}
		}
	}
	body := appendAnswers(make([]byte, 0, batchAnswerSize*len(answers)), answers)
	if err := s.svc.RecordAnswer(c.UserContext(), key, body); err != nil {
		// The purchases are posted and answered; a batch sent again
		// replays them one by one.
		s.log.Warn("batch answer not stored", "request_id", requestID(c), "error", err.Error())
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(body)
}

// problemBody is the status and problem document of a batch item's error,
// logged as the error handler logs a request's when it is the engine's.
func (s *server) problemBody(c *fiber.Ctx, err error) (int, json.RawMessage) {
	p := problemOf(err, c.Path())
	if p.Status >= 500 {
		s.log.Error("batch item failed", "request_id", requestID(c), "route", routePath(c), "error", err.Error())
	}
	body, _ := json.Marshal(p)
	return p.Status, body
}

// decodeItem is decodeJSON of one purchase of a batch whose body decode
// accepted: the body was one valid JSON value with no NUL character, so
// each of its parts is too, and only what a part may lack is checked (an
// object, of the right shape, its names each once).
func decodeItem(raw []byte, dst any) error {
	if trimmed := bytes.TrimSpace(raw); len(trimmed) == 0 || trimmed[0] != '{' {
		return loyalty.Errorf(loyalty.Malformed, "malformed", "the request body must be a JSON object")
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return decodeError(err, raw)
	}
	w := nameWalker{b: raw, mode: foldAll}
	if err := w.value(reflect.TypeOf(dst)); err != nil {
		var ne *nameError
		if errors.As(err, &ne) {
			return loyalty.Invalidf(ne.path, "%s", ne.msg)
		}
		return loyalty.Errorf(loyalty.Malformed, "malformed", "the request body is not valid JSON")
	}
	return nil
}

// batchAnswerSize is about the bytes of one answer in a batch's body.
const batchAnswerSize = 400

// appendAnswers appends the batch's answer, {"results": answers}, as
// json.Marshal would write it, each body as it was stored or encoded: the
// engine's own JSON, which needs no second pass.
func appendAnswers(b []byte, answers []batchAnswer) []byte {
	b = append(b, `{"results":[`...)
	for i, a := range answers {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(a.Index), 10)
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(a.Status), 10)
		if a.Replayed {
			b = append(b, `,"replayed":true`...)
		}
		b = append(b, `,"body":`...)
		if a.Body == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, a.Body...)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}
