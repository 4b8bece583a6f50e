package loyalty

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// Code classifies an error for every edge of the engine. The API maps each
// code to one HTTP status in one place.
type Code string

// The error vocabulary.
const (
	Malformed    Code = "malformed"    // the request cannot be read
	Invalid      Code = "invalid"      // it can be read but breaks a rule
	Unauthorized Code = "unauthorized" // no valid credentials
	Forbidden    Code = "forbidden"    // the role may not do this
	NotFound     Code = "not_found"
	Conflict     Code = "conflict"    // the state of the program forbids it
	TooLarge     Code = "too_large"   // the body is over the limit
	Unavailable  Code = "unavailable" // the database does not answer
	Internal     Code = "internal"
)

// FieldError names one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is a domain error. Reason is a stable machine-readable word
// (insufficient_points, duplicate, …) that clients may branch on.
type Error struct {
	Code    Code
	Reason  string
	Message string
	Fields  []FieldError
}

func (e *Error) Error() string { return e.Message }

// Errorf builds a domain error.
func Errorf(code Code, reason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Invalidf builds a validation error naming one field.
func Invalidf(field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Code: Invalid, Reason: "validation", Message: field + ": " + msg,
		Fields: []FieldError{{Field: field, Message: msg}}}
}

// Validation gathers field errors; Err returns nil when there are none.
type Validation struct{ fields []FieldError }

// Add records that field is invalid.
func (v *Validation) Add(field, format string, args ...any) {
	v.fields = append(v.fields, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Err is the gathered validation error, or nil.
func (v *Validation) Err() error {
	if len(v.fields) == 0 {
		return nil
	}
	msgs := make([]string, len(v.fields))
	for i, f := range v.fields {
		msgs[i] = f.Field + ": " + f.Message
	}
	return &Error{Code: Invalid, Reason: "validation", Message: strings.Join(msgs, "; "), Fields: v.fields}
}

// ErrorOf returns the domain error err carries, classifying database
// outages as Unavailable and anything else as Internal.
func ErrorOf(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return Errorf(Conflict, "duplicate", "a record with the same unique value already exists")
	case errors.Is(err, gorm.ErrForeignKeyViolated):
		return Errorf(Conflict, "in_use", "the record is referenced by or refers to another record in a way this change breaks")
	case errors.Is(err, gorm.ErrCheckConstraintViolated):
		return Errorf(Conflict, "constraint", "the change would break a rule of the ledger")
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22") {
		// Data exceptions: a value PostgreSQL cannot store as sent.
		return Errorf(Invalid, "invalid_value", "a value in the request cannot be stored: %s", pe.Message)
	}
	if IsUnavailable(err) {
		return Errorf(Unavailable, "database_unavailable", "the database is unavailable; retry later")
	}
	return &Error{Code: Internal, Reason: "internal", Message: "internal error"}
}

// IsUnavailable reports whether err means the database could not be reached
// or is shutting down, as opposed to a fault in the request or the engine.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P0x: the server is shutting down;
		// 53xxx: insufficient resources.
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P") || strings.HasPrefix(pe.Code, "53")
	}
	msg := err.Error()
	for _, s := range []string{"connection refused", "database is locked", "SQLITE_BUSY", "closed pool", "sql: database is closed", "conn closed", "unexpected EOF", "broken pipe"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
