package loyalty

import (
	"database/sql/driver"
	"fmt"
	"math/big"
	"sync"

	"github.com/shopspring/decimal"
	"modernc.org/sqlite"
)

// Sum is an exact sum of points or money over many rows: over every member
// of a program it passes what an int64 holds long before any one balance
// does (1,025 credits of 2^53 − 1 points are enough). It is an integer of
// any size, written to JSON as a plain number, read from either database
// as the aggregate of SumSQL gives it. The zero value is 0.
type Sum struct{ d decimal.Decimal }

// SumOf is n as a Sum.
func SumOf(n int64) Sum { return Sum{decimal.NewFromInt(n)} }

// ParseSum reads a decimal integer.
func ParseSum(s string) (Sum, error) {
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return Sum{}, fmt.Errorf("not an integer: %q", s)
	}
	return Sum{decimal.NewFromBigInt(b, 0)}, nil
}

// Add is s + o.
func (s Sum) Add(o Sum) Sum { return Sum{s.d.Add(o.d)} }

// Sub is s − o.
func (s Sum) Sub(o Sum) Sum { return Sum{s.d.Sub(o.d)} }

// Times is s · n.
func (s Sum) Times(n int64) Sum { return Sum{s.d.Mul(decimal.NewFromInt(n))} }

// Sign is −1, 0 or +1.
func (s Sum) Sign() int { return s.d.Sign() }

// Equal reports whether s and o are the same number.
func (s Sum) Equal(o Sum) bool { return s.d.Equal(o.d) }

// Decimal is s as a decimal, for exact rates.
func (s Sum) Decimal() decimal.Decimal { return s.d }

// Int64 is s when it fits in an int64.
func (s Sum) Int64() (int64, bool) {
	b := s.d.BigInt()
	return b.Int64(), b.IsInt64()
}

// String writes s in decimal digits.
func (s Sum) String() string { return s.d.BigInt().String() }

// MarshalJSON writes s as a JSON number, every digit kept.
func (s Sum) MarshalJSON() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalJSON reads a JSON integer of any size.
func (s *Sum) UnmarshalJSON(b []byte) error {
	v, err := ParseSum(string(b))
	if err != nil {
		return fmt.Errorf("sum: %w", err)
	}
	*s = v
	return nil
}

// Scan reads the aggregate as a driver returns it: an integer, or decimal
// digits (PostgreSQL's numeric; SQLite's exact_sum past int64). NULL, a
// sum over no rows, is 0.
func (s *Sum) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*s = Sum{}
	case int64:
		*s = SumOf(v)
	case []byte:
		return s.Scan(string(v))
	case string:
		p, err := ParseSum(v)
		if err != nil {
			return fmt.Errorf("scan sum: %w", err)
		}
		*s = p
	default:
		return fmt.Errorf("scan sum: unexpected %T", src)
	}
	return nil
}

// Value stores s as decimal digits, into a numeric (PostgreSQL) or text
// (SQLite) column.
func (s Sum) Value() (driver.Value, error) { return s.String(), nil }

// SumSQL is the SQL for the exact sum of the integer expression expr over
// a group, however far past int64 it goes: PostgreSQL's SUM, which is
// numeric over bigint; on SQLite, whose SUM fails with "integer overflow"
// past int64, the engine's exact_sum aggregate, an integer while it fits
// and decimal digits beyond. Over no rows both are NULL, as SUM is. It
// scans into a Sum.
//
// SQLite orders text after every number, and compares it with a number as
// a number only against a column of numeric affinity. To order by a sum,
// or compare it with anything else, use SumOrderSQL.
func (s *Store) SumSQL(expr string) string {
	if s.Dialect == SQLite {
		return "exact_sum(" + expr + ")"
	}
	return "SUM(" + expr + ")"
}

// SumOrderSQL is SumSQL as a number SQL orders and compares as such on
// either database: exact on PostgreSQL; on SQLite exact within int64 and,
// past it, the nearest floating-point value, which still orders above
// every int64 (never read back: read SumSQL for the figure itself).
func (s *Store) SumOrderSQL(expr string) string {
	return "CAST(" + s.SumSQL(expr) + " AS NUMERIC)"
}

var registerSQLiteFuncs = sync.OnceValue(func() error {
	return sqlite.RegisterFunction("exact_sum", &sqlite.FunctionImpl{NArgs: 1, Deterministic: true,
		MakeAggregate: func(sqlite.FunctionContext) (sqlite.AggregateFunction, error) { return &exactSum{}, nil }})
})

// exactSum is SQLite's exact_sum: it adds in an int64 until that would
// overflow, then carries the rest in a big integer. Only integers (and
// NULLs, skipped) may be summed, and the decimal text of an integer past
// int64, which is what exact_sum itself gives there (a sum of sums): a
// float or other text is an error, as money and points never are either.
type exactSum struct {
	small int64
	big   *big.Int // what no longer fits in small, when anything
	rows  bool     // a non-NULL value was seen
}

func (a *exactSum) Step(_ *sqlite.FunctionContext, args []driver.Value) error {
	switch v := args[0].(type) {
	case nil:
	case int64:
		a.rows = true
		if (v > 0 && a.small > maxInt64-v) || (v < 0 && a.small < minInt64-v) {
			if a.big == nil {
				a.big = new(big.Int)
			}
			a.big.Add(a.big, big.NewInt(a.small))
			a.small = 0
		}
		a.small += v
	case string:
		n, ok := new(big.Int).SetString(v, 10)
		if !ok {
			return fmt.Errorf("exact_sum of %q: only integers are summed", v)
		}
		a.rows = true
		if a.big == nil {
			a.big = new(big.Int)
		}
		a.big.Add(a.big, n)
	default:
		return fmt.Errorf("exact_sum of a %T: only integers are summed", v)
	}
	return nil
}

func (a *exactSum) WindowInverse(*sqlite.FunctionContext, []driver.Value) error {
	return fmt.Errorf("exact_sum is not a window function")
}

func (a *exactSum) WindowValue(*sqlite.FunctionContext) (driver.Value, error) {
	if !a.rows {
		return nil, nil
	}
	if a.big == nil {
		return a.small, nil
	}
	t := new(big.Int).Add(a.big, big.NewInt(a.small))
	if t.IsInt64() {
		return t.Int64(), nil
	}
	return t.String(), nil
}

func (a *exactSum) Final(*sqlite.FunctionContext) {}

const (
	maxInt64 = 1<<63 - 1
	minInt64 = -1 << 63
)
