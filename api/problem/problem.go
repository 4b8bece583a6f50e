// Package problem maps the domain's error codes to HTTP statuses, once, for
// every HTTP edge of the engine: the JSON API and the console.
package problem

import (
	"net/http"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// Codes the HTTP edges add to the domain's vocabulary.
const (
	RateLimited      loyalty.Code = "rate_limited"
	MethodNotAllowed loyalty.Code = "method_not_allowed"
	HeaderTooLarge   loyalty.Code = "header_too_large"
)

var statuses = map[loyalty.Code]int{
	loyalty.Malformed:    http.StatusBadRequest,
	loyalty.Invalid:      http.StatusUnprocessableEntity,
	loyalty.Unauthorized: http.StatusUnauthorized,
	loyalty.Forbidden:    http.StatusForbidden,
	loyalty.NotFound:     http.StatusNotFound,
	loyalty.Conflict:     http.StatusConflict,
	loyalty.TooLarge:     http.StatusRequestEntityTooLarge,
	loyalty.Unavailable:  http.StatusServiceUnavailable,
	loyalty.Internal:     http.StatusInternalServerError,
	RateLimited:          http.StatusTooManyRequests,
	MethodNotAllowed:     http.StatusMethodNotAllowed,
	HeaderTooLarge:       http.StatusRequestHeaderFieldsTooLarge,
}

// Status is the HTTP status of an error code; an unknown code is a 500.
func Status(code loyalty.Code) int {
	if s, ok := statuses[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}
