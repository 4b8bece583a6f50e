package console

import (
	"encoding/json"
	"html/template"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
)

func (h *handler) funcs() template.FuncMap {
	return template.FuncMap{
		"static": func(name string) string {
			a, ok := h.static[name]
			if !ok {
				return Prefix + "/static/" + name
			}
			return Prefix + "/static/" + name + "?v=" + a.version
		},
		"currency": func(p *loyalty.Program) string {
			if p == nil {
				return ""
			}
			return p.Currency
		},
		"jobrow": func(j jobs.Status, csrf string, p *loyalty.Program) jobRow {
			return jobRow{Job: j, CSRF: csrf, Program: p}
		},
		"dict": func(kv ...any) map[string]any {
			m := make(map[string]any, len(kv)/2)
			for i := 0; i+1 < len(kv); i += 2 {
				k, _ := kv[i].(string)
				m[k] = kv[i+1]
			}
			return m
		},
		"money":    money,
		"amount":   amount,
		"pts":      groupDigits,
		"sum":      groupSum,
		"signed":   signed,
		"when":     when,
		"dtlocal":  dtlocal,
		"deref":    deref,
		"label":    label,
		"pct":      pct,
		"num":      num,
		"moneynum": moneyNumber,
		"risk":     risk,
		"join":     func(l []string) string { return strings.Join(l, ", ") },
		"summary": func(raw json.RawMessage) string {
			s := string(raw)
			if s == "{}" || s == "null" {
				return ""
			}
			if len(s) > 240 {
				s = s[:240] + "…"
			}
			return s
		},
		"contains": contains,
	}
}

func exponent(p *loyalty.Program) int32 {
	if p == nil {
		return 2
	}
	return p.Exponent()
}

// amount shows minor units as a plain decimal in major units, for inputs.
func amount(minor int64, p *loyalty.Program) string {
	exp := exponent(p)
	return decimal.New(minor, -exp).StringFixed(exp)
}

// moneyNumber is money of an exact integer of minor units, however large.
func moneyNumber(n *json.Number, p *loyalty.Program) string {
	d, err := decimal.NewFromString(n.String())
	if err != nil {
		return n.String()
	}
	exp := exponent(p)
	whole, frac, _ := strings.Cut(d.Shift(-exp).StringFixed(exp), ".")
	out := groupString(strings.TrimPrefix(whole, "-"))
	if strings.HasPrefix(whole, "-") {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	if p != nil {
		out += " " + p.Currency
	}
	return out
}

// money shows minor units as a grouped amount with the currency.
func money(minor int64, p *loyalty.Program) string {
	s := amount(minor, p)
	whole, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(whole, "-")
	whole = strings.TrimPrefix(whole, "-")
	out := groupString(whole)
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	if p != nil {
		out += " " + p.Currency
	}
	return out
}

func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + groupString(s[1:])
	}
	return groupString(s)
}

// groupSum groups the digits of a sum over many members, which may pass
// int64.
func groupSum(n loyalty.Sum) string {
	s := n.String()
	if strings.HasPrefix(s, "-") {
		return "-" + groupString(s[1:])
	}
	return groupString(s)
}

func groupString(digits string) string {
	var b strings.Builder
	for i, r := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func signed(n int64) string {
	if n > 0 {
		return "+" + groupDigits(n)
	}
	return groupDigits(n)
}

func location(p *loyalty.Program) *time.Location {
	if p == nil || p.Location() == nil {
		return time.UTC
	}
	return p.Location()
}

// when shows an instant in the program timezone; it takes a time or a
// pointer to one (nil shows a dash).
func when(t any, p *loyalty.Program) string {
	var v time.Time
	switch x := t.(type) {
	case time.Time:
		v = x
	case *time.Time:
		if x == nil {
			return "—"
		}
		v = *x
	default:
		return ""
	}
	if v.IsZero() {
		return "—"
	}
	return v.In(location(p)).Format("2006-01-02 15:04")
}

// dtlocal is an instant as a datetime-local input value.
func dtlocal(t *time.Time, p *loyalty.Program) string {
	if t == nil {
		return ""
	}
	return t.In(location(p)).Format("2006-01-02T15:04")
}

func deref(s any) string {
	switch x := s.(type) {
	case *string:
		if x != nil {
			return *x
		}
	case *int64:
		if x != nil {
			return strconv.FormatInt(*x, 10)
		}
	case *int:
		if x != nil {
			return strconv.Itoa(*x)
		}
	case string:
		return x
	}
	return ""
}

// label turns a field name of a service error ("birthday_gift.claim_days")
// into words ("Claim days").
func label(field string) string {
	if i := strings.LastIndexByte(field, '.'); i >= 0 {
		field = field[i+1:]
	}
	field = strings.ReplaceAll(field, "_", " ")
	r := []rune(field)
	if len(r) > 0 {
		r[0] = unicode.ToUpper(r[0])
	}
	return string(r)
}

// num shows a decimal figure, or a dash for null.
func num(n *json.Number) string {
	if n == nil {
		return "—"
	}
	return n.String()
}

func pct(n *json.Number) string {
	if n == nil {
		return "—"
	}
	return n.String() + "%"
}

// risk shows a churn risk such as "0.3721" as "37%".
func risk(s *string) string {
	if s == nil {
		return "not scored"
	}
	d, err := decimal.NewFromString(*s)
	if err != nil {
		return *s
	}
	return d.Mul(decimal.NewFromInt(100)).Round(0).String() + "%"
}
