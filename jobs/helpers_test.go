package jobs_test

import (
	"strings"

	"github.com/shopspring/decimal"
)

func strp(s string) *string { return &s }

func decimalp(s string) *decimal.Decimal {
	d := decimal.RequireFromString(s)
	return &d
}

func replaceAll(s, old, new string) string { return strings.ReplaceAll(s, old, new) }
