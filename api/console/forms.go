package console

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// form reads an urlencoded form into the typed values a service takes,
// gathering every field that cannot be read into one validation error, so
// the page shows them all at once like the API's 422.
type form struct {
	c *fiber.Ctx
	v loyalty.Validation
}

func newForm(c *fiber.Ctx) *form { return &form{c: c} }

func (f *form) str(name string) string { return strings.TrimSpace(f.c.FormValue(name)) }

// has reports whether the form was sent with the field, even empty.
func (f *form) has(name string) bool { return f.c.Request().PostArgs().Has(name) }

// all returns every value of a repeated field (checkboxes).
func (f *form) all(name string) []string {
	out := []string{}
	for _, b := range f.c.Request().PostArgs().PeekMulti(name) {
		if s := strings.TrimSpace(string(b)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (f *form) checked(name string) bool { return f.str(name) != "" }

// int reads a whole number; blank is nil.
func (f *form) int(name string) *int64 {
	s := strings.ReplaceAll(f.str(name), ",", "")
	if s == "" {
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f.v.Add(name, "must be a whole number")
		return nil
	}
	return &n
}

// decimal reads a decimal such as 1.25; blank is nil.
func (f *form) decimal(name string) *decimal.Decimal {
	s := f.str(name)
	if s == "" {
		return nil
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		f.v.Add(name, "must be a decimal number such as 1.25")
		return nil
	}
	return &d
}

// money reads an amount in major units of the program currency (12.50)
// into minor units (1250); blank is nil.
func (f *form) money(name string, exp int32) *int64 {
	s := strings.ReplaceAll(f.str(name), ",", "")
	if s == "" {
		return nil
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		f.v.Add(name, "must be an amount such as 350.00")
		return nil
	}
	minor := d.Shift(exp)
	if !minor.Equal(minor.Truncate(0)) {
		f.v.Add(name, "has more decimals than the currency allows (%d)", exp)
		return nil
	}
	n := minor.IntPart()
	return &n
}

// instant reads a datetime-local value in the program timezone; blank is
// nil.
func (f *form) instant(name string, loc *time.Location) *time.Time {
	s := f.str(name)
	if s == "" {
		return nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			u := t.UTC()
			return &u
		}
	}
	f.v.Add(name, "must be a date and time such as 2026-03-01T09:00")
	return nil
}

// list splits a comma- or line-separated list, dropping blanks.
func (f *form) list(name string) []string {
	out := []string{}
	for _, s := range strings.FieldsFunc(f.str(name), func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (f *form) err() error { return f.v.Err() }

// decodeInto fills a service's input type from fields, through its JSON
// decoding, so inputs that record which fields were sent (a patch) see
// exactly the fields the form has.
func decodeInto(fields map[string]any, dst any) error {
	b, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, dst); err != nil {
		return loyalty.Errorf(loyalty.Invalid, "validation", "the form could not be read: %s", err.Error())
	}
	return nil
}

// formKey makes the idempotency key a creating form carries, so a form
// sent twice (a double click, a resubmission) has its effect once.
func formKey() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "console-" + base64.RawURLEncoding.EncodeToString(b)
}

// idemKey scopes the form's key to the caller, like the API's
// Idempotency-Key, with a hash of the form's fields.
func idemKey(c *fiber.Ctx, fields map[string]any) loyalty.IdempotencyKey {
	k := strings.TrimSpace(c.FormValue("idem"))
	if k == "" || len(k) > 255 {
		return loyalty.IdempotencyKey{}
	}
	p := user(c)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := [][]byte{[]byte(c.Method()), []byte(c.Path())}
	for _, name := range keys {
		b, _ := json.Marshal(fields[name])
		parts = append(parts, []byte(name), b)
	}
	return loyalty.IdempotencyKey{Key: k, Subject: string(p.Role) + ":" + p.Subject, RequestHash: loyalty.HashRequest(parts...)}
}

// flashes are the messages a page shows after a form that redirected to
// it: ?msg=code&x=detail. Only these codes show anything.
var flashes = map[string]string{
	"tier_saved":       "Tier “%s” saved.",
	"reward_created":   "Reward “%s” created.",
	"reward_saved":     "Reward “%s” saved.",
	"reward_retired":   "Reward “%s” retired.",
	"offer_created":    "Offer “%s” created.",
	"gift_saved":       "Birthday gift settings saved.",
	"payment_saved":    "Points-as-payment settings saved.",
	"adjusted":         "Adjustment of %s points recorded.",
	"job_ran":          "Job “%s” ran.",
	"job_failed":       "Job “%s” failed; see its last run below.",
	"webhook_paused":   "Webhook paused: events wait in the log until it is resumed.",
	"webhook_resumed":  "Webhook resumed.",
	"webhook_deleted":  "Webhook %s deleted.",
	"delivery_retried": "Delivery of %s queued for another attempt.",
}

func flash(c *fiber.Ctx) string {
	f, ok := flashes[c.Query("msg")]
	if !ok {
		return ""
	}
	if strings.Contains(f, "%s") {
		x := c.Query("x")
		if len(x) > 80 {
			x = x[:80]
		}
		return fmt.Sprintf(f, x)
	}
	return f
}
