package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
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
	in, input, err := decodeBatch(c.Body())
	if err != nil {
		return err
	}
	if len(in.Purchases) == 0 || len(in.Purchases) > loyalty.MaxBatch {
		return loyalty.Invalidf("purchases", "must hold 1 to %d purchases", loyalty.MaxBatch)
	}
	key, err := idempotencyKeyOf(c, input)
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

// decodeBatch is decode of a batch's body, and the input idempotencyKey
// digests (json.Marshal of what decode made of it, built only when the
// request carries a key). A body of the usual shape, {"purchases": [...]}
// with objects for purchases, is split into its purchases by one scan, and
// each is checked and, under a key, re-encoded on every core (a batch is a
// few hundred kilobytes: decode reads it whole several times, on one
// core); any other body, and one that is not valid JSON, goes through
// decode, which answers it as for any route.
func decodeBatch(body []byte) (purchaseBatch, func() ([]byte, error), error) {
	items, ok := splitBatch(body)
	if ok && len(items) <= loyalty.MaxBatch {
		if _, nul := nulField(body); !nul {
			// Valid, and its names as decode's checkNames finds them, or
			// decode answers the body.
			valid := make([]bool, len(items))
			raw := reflect.TypeFor[json.RawMessage]()
			loyalty.EachPart(len(items), func(lo, hi int) {
				for i := lo; i < hi; i++ {
					valid[i] = checkNames(items[i], raw, foldAll) == nil
				}
			})
			if !slices.Contains(valid, false) {
				in := purchaseBatch{Purchases: items}
				return in, func() ([]byte, error) { return marshalBatch(items) }, nil
			}
		}
	}
	var in purchaseBatch
	if err := decodeJSON(body, &in); err != nil {
		return in, nil, err
	}
	return in, func() ([]byte, error) { return json.Marshal(in) }, nil
}

// marshalBatch is json.Marshal(purchaseBatch{items}), each item's
// encoding (compacted, HTML-escaped) made on every core.
func marshalBatch(items []json.RawMessage) ([]byte, error) {
	enc := make([][]byte, len(items))
	errs := make([]error, len(items))
	loyalty.EachPart(len(items), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			enc[i], errs[i] = json.Marshal(items[i])
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	n := len(`{"purchases":[]}`) + len(items)
	for _, e := range enc {
		n += len(e)
	}
	b := append(make([]byte, 0, n), `{"purchases":[`...)
	for i, e := range enc {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	return append(b, "]}"...), nil
}

// splitBatch finds the purchases of a body {"purchases": [{...}, ...]}
// (any JSON whitespace between the tokens) without decoding them: ok is
// false for a body of any other shape (another name, or one more, a
// purchase that is not an object, anything after the object). The parts
// it returns are only delimited: strings are skipped whole, escapes
// included, and braces and brackets counted, so each purchase ends where
// its object does if it is valid JSON, which the caller checks.
func splitBatch(body []byte) (items []json.RawMessage, ok bool) {
	i := 0
	ws := func() {
		for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
			i++
		}
	}
	lit := func(s string) bool {
		ws()
		if !bytes.HasPrefix(body[i:], []byte(s)) {
			return false
		}
		i += len(s)
		return true
	}
	if !lit("{") || !lit(`"purchases"`) || !lit(":") || !lit("[") {
		return nil, false
	}
	end := func() bool {
		if !lit("}") {
			return false
		}
		ws()
		return i == len(body)
	}
	if lit("]") {
		return []json.RawMessage{}, end()
	}
	for {
		ws()
		if i == len(body) || body[i] != '{' {
			return nil, false
		}
		start, depth := i, 0
	object:
		for ; i < len(body); i++ {
			switch body[i] {
			case '"':
				for i++; i < len(body) && body[i] != '"'; i++ {
					if body[i] == '\\' {
						i++
					}
				}
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					i++
					break object
				}
			}
		}
		if depth != 0 {
			return nil, false
		}
		items = append(items, body[start:i:i])
		if lit(",") {
			continue
		}
		if !lit("]") {
			return nil, false
		}
		return items, end()
	}
}
