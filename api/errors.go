package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/api/problem"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// Problem is an RFC 9457 problem document. Type is a URI reference relative
// to the API ("/problems/insufficient_points"); Code repeats its last
// segment for clients that branch on it.
type Problem struct {
	Type     string               `json:"type"`
	Title    string               `json:"title"`
	Status   int                  `json:"status"`
	Detail   string               `json:"detail"`
	Instance string               `json:"instance,omitempty"`
	Code     string               `json:"code"`
	Errors   []loyalty.FieldError `json:"errors,omitempty"`
}

// errorHandler is the app's one error handler: every error a handler or
// middleware returns becomes a problem document here.
func errorHandler(log *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		p := problemOf(err, c.Path())
		if p.Status >= 500 {
			log.Error("request failed", "request_id", requestID(c), "route", routePath(c), "method", c.Method(), "error", err.Error())
		}
		if p.Status == http.StatusServiceUnavailable {
			c.Set(fiber.HeaderRetryAfter, "5")
		}
		body, merr := json.Marshal(p)
		if merr != nil {
			return merr
		}
		c.Set(fiber.HeaderContentType, "application/problem+json")
		return c.Status(p.Status).Send(body)
	}
}

// problemOf is the problem document of err, for a request to instance.
func problemOf(err error, instance string) Problem {
	var fe *fiber.Error
	var e *loyalty.Error
	switch {
	case errors.As(err, &fe):
		e = fiberError(fe)
	default:
		e = loyalty.ErrorOf(err)
	}
	status := problem.Status(e.Code)
	return Problem{Type: "/problems/" + e.Reason, Title: http.StatusText(status), Status: status, Detail: e.Message,
		Instance: instance, Code: e.Reason, Errors: e.Fields}
}

func fiberError(fe *fiber.Error) *loyalty.Error {
	switch fe.Code {
	case http.StatusRequestEntityTooLarge:
		return loyalty.Errorf(loyalty.TooLarge, "body_too_large", "the request body is larger than 1 MiB")
	case http.StatusNotFound:
		return loyalty.Errorf(loyalty.NotFound, "not_found", "no such resource")
	case http.StatusMethodNotAllowed:
		return &loyalty.Error{Code: problem.MethodNotAllowed, Reason: "method_not_allowed", Message: "method not allowed"}
	case http.StatusBadRequest:
		return loyalty.Errorf(loyalty.Malformed, "malformed", "%s", fe.Message)
	case http.StatusUnsupportedMediaType:
		return loyalty.Errorf(loyalty.Malformed, "unsupported_media_type", "send application/json")
	case http.StatusTooManyRequests:
		return &loyalty.Error{Code: problem.RateLimited, Reason: "rate_limited", Message: "too many requests from this caller; retry later"}
	case http.StatusRequestHeaderFieldsTooLarge:
		return &loyalty.Error{Code: problem.HeaderTooLarge, Reason: "header_too_large", Message: "the request line and headers are too large"}
	case http.StatusRequestTimeout:
		return &loyalty.Error{Code: loyalty.Malformed, Reason: "timeout", Message: "the request took too long to arrive"}
	}
	if fe.Code >= 500 {
		return &loyalty.Error{Code: loyalty.Internal, Reason: "internal", Message: "internal error"}
	}
	return loyalty.Errorf(loyalty.Malformed, "bad_request", "%s", fe.Message)
}
