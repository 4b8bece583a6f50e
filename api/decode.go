package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// decode reads a JSON body into dst. Unreadable JSON is 400; JSON of the
// wrong shape (a string where a number belongs, a number out of range) is
// 422 naming the field, as is an object naming a field twice or in another
// case (checkNames), which encoding/json would silently resolve.
func decode(c *fiber.Ctx, dst any) error {
	return decodeJSON(c.Body(), dst)
}

// decodeJSON is decode of body, a JSON object.
func decodeJSON(body []byte, dst any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return loyalty.Errorf(loyalty.Malformed, "malformed", "the request body is empty; send a JSON object")
	}
	if trimmed[0] != '{' {
		return loyalty.Errorf(loyalty.Malformed, "malformed", "the request body must be a JSON object")
	}
	if field, bad := nulField(body); bad {
		return loyalty.Invalidf(field, "must not contain NUL characters")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(dst); err != nil {
		return decodeError(err, body)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return loyalty.Errorf(loyalty.Malformed, "malformed", "the request body holds more than one JSON value")
	}
	if err := checkNames(body, reflect.TypeOf(dst), foldAll); err != nil {
		var ne *nameError
		if errors.As(err, &ne) {
			return loyalty.Invalidf(ne.path, "%s", ne.msg)
		}
		return loyalty.Errorf(loyalty.Malformed, "malformed", "the request body is not valid JSON")
	}
	return nil
}

func decodeError(err error, body []byte) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return loyalty.Errorf(loyalty.Malformed, "malformed", "the request body is not valid JSON")
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return loyalty.Errorf(loyalty.Malformed, "malformed", "the request body must be a JSON object")
		}
		return loyalty.Invalidf(field, "must be %s", describeType(te.Type.String()))
	}
	// Errors from a field's own UnmarshalJSON: a time or a decimal that
	// does not parse.
	var pe *time.ParseError
	if errors.As(err, &pe) || strings.Contains(err.Error(), "parsing time") || strings.Contains(err.Error(), "Time.UnmarshalJSON") {
		field := badTimeField(body, "")
		if field == "" {
			field = "body"
		}
		return loyalty.Invalidf(field, "must be an RFC 3339 time with offset, such as 2026-03-01T12:00:00Z")
	}
	if strings.Contains(err.Error(), "decimal") {
		field := badDecimalField(body, "")
		if field == "" {
			field = "body"
		}
		return loyalty.Invalidf(field, "must be a decimal string such as \"1.25\"")
	}
	return loyalty.Errorf(loyalty.Malformed, "malformed", "the request body cannot be read as the expected JSON object")
}

// isTimeKey says whether a key names a time: ends in _at, _from or
// _until, or is as_of.
func isTimeKey(k string) bool {
	return strings.HasSuffix(k, "_at") || strings.HasSuffix(k, "_from") || strings.HasSuffix(k, "_until") || k == "as_of"
}

// badTimeField finds the first time field of a JSON body that does not
// parse as RFC 3339.
func badTimeField(body []byte, prefix string) string {
	return badField(body, prefix, isTimeKey, func(raw json.RawMessage) bool {
		var t time.Time
		return string(raw) == "null" || t.UnmarshalJSON(raw) == nil
	})
}

// decimalFields are the request fields that hold exact decimals.
var decimalFields = map[string]bool{"earn_multiplier": true, "points_per_unit": true, "multiplier": true, "risk_threshold": true}

// badDecimalField finds the first decimal field of a JSON body that does
// not hold a decimal.
func badDecimalField(body []byte, prefix string) string {
	return badField(body, prefix, func(k string) bool { return decimalFields[k] }, func(raw json.RawMessage) bool {
		var d decimal.Decimal
		return d.UnmarshalJSON(raw) == nil
	})
}

// badField walks a JSON object and its nested objects and returns the path
// of the first field that is a candidate and not ok, or "" when none is, so
// a problem can name the field its value's own decoder would not.
func badField(body []byte, prefix string, candidate func(string) bool, ok func(json.RawMessage) bool) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return ""
	}
	for k, raw := range obj {
		if candidate(k) && !ok(raw) {
			return prefix + k
		}
		if len(raw) > 0 && raw[0] == '{' {
			if f := badField(raw, prefix+k+".", candidate, ok); f != "" {
				return f
			}
		}
	}
	return ""
}

// nulField finds a string of a JSON body holding U+0000, which no text
// column can store, and names where it is.
func nulField(body []byte) (string, bool) {
	// JSON spells the escape with a lowercase u; \U0000 is looked for too,
	// as before, though no valid body holds it. No copy of the body is made.
	if bytes.IndexByte(body, 0) < 0 && !bytes.Contains(body, []byte(`\u0000`)) && !bytes.Contains(body, []byte(`\U0000`)) {
		return "", false
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return "body", true
	}
	return findNul(v, "")
}

func findNul(v any, path string) (string, bool) {
	switch x := v.(type) {
	case string:
		if strings.IndexByte(x, 0) >= 0 {
			return path, true
		}
	case []any:
		for i, e := range x {
			if f, ok := findNul(e, fmt.Sprintf("%s[%d]", path, i)); ok {
				return f, true
			}
		}
	case map[string]any:
		for k, e := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if strings.IndexByte(k, 0) >= 0 {
				return p, true
			}
			if f, ok := findNul(e, p); ok {
				return f, true
			}
		}
	}
	return "", false
}

// query reads a query parameter, refusing NUL characters.
func query(c *fiber.Ctx, name string) (string, error) {
	v := c.Query(name)
	if strings.IndexByte(v, 0) >= 0 {
		return "", loyalty.Invalidf(name, "must not contain NUL characters")
	}
	return v, nil
}

func describeType(t string) string {
	t = strings.TrimLeft(t, "*[]")
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer in range"
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.Contains(t, "Decimal"):
		return "a decimal string such as \"1.25\""
	}
	return "of another type"
}

// idempotencyKey reads Idempotency-Key and digests the request it guards:
// method, path and in, the input decode made of the body (nil for a route
// that reads none). Hashing the decoded input, re-encoded, makes two
// bodies the same request exactly when the engine reads them alike,
// whatever their spacing, order or ignored fields.
func idempotencyKey(c *fiber.Ctx, in any) (loyalty.IdempotencyKey, error) {
	return idempotencyKeyOf(c, func() ([]byte, error) {
		if in == nil {
			return nil, nil
		}
		return json.Marshal(in)
	})
}

// idempotencyKeyOf is idempotencyKey with the input's encoding made by
// input, which runs only when the request carries a key.
func idempotencyKeyOf(c *fiber.Ctx, input func() ([]byte, error)) (loyalty.IdempotencyKey, error) {
	k := c.Get("Idempotency-Key")
	if k == "" {
		return loyalty.IdempotencyKey{}, nil
	}
	if len(k) > 255 {
		return loyalty.IdempotencyKey{}, loyalty.Invalidf("Idempotency-Key", "must be 1 to 255 printable ASCII characters")
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return loyalty.IdempotencyKey{}, loyalty.Invalidf("Idempotency-Key", "must be 1 to 255 printable ASCII characters")
		}
	}
	in, err := input()
	if err != nil {
		return loyalty.IdempotencyKey{}, fmt.Errorf("idempotency key: %w", err)
	}
	p := principal(c)
	return loyalty.IdempotencyKey{Key: k, Subject: string(p.Role) + ":" + p.Subject,
		RequestHash: loyalty.HashRequest([]byte(c.Method()), []byte(c.Path()), in)}, nil
}

// page reads ?limit= and ?cursor=.
func page(c *fiber.Ctx) (loyalty.Page, error) {
	cur, err := query(c, "cursor")
	if err != nil {
		return loyalty.Page{}, err
	}
	p := loyalty.Page{Cursor: cur}
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			return p, loyalty.Invalidf("limit", "must be an integer from 1 to 500")
		}
		p.Limit = n
	}
	return p, nil
}

// created answers a write that creates something: 201 with its result, or
// with the stored result of its first run when it is a replay.
func created(c *fiber.Ctx, v any, rep *loyalty.Replay) error {
	return written(c, fiber.StatusCreated, v, rep)
}

// written answers a write with status, the one status the API gives that
// write: its result, or the stored result of the first run, marked as a
// replay. The domain stores results, never statuses.
func written(c *fiber.Ctx, status int, v any, rep *loyalty.Replay) error {
	if rep != nil {
		c.Set("Idempotent-Replayed", "true")
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Status(status).Send(rep.Body)
	}
	if e, ok := v.(interface{ Encoded() json.RawMessage }); ok && e.Encoded() != nil {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Status(status).Send(e.Encoded())
	}
	return c.Status(status).JSON(v)
}
