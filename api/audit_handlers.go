package api

import (
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// listAudit answers GET /v1/audit: the audit trail, newest first, filtered
// by ?action= (a prefix), ?actor=, ?target_kind=, ?target_id=, and ?from= /
// ?to= (RFC 3339, from inclusive, to exclusive).
func (s *server) listAudit(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	q := loyalty.AuditQuery{Page: pg}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"action", &q.Action}, {"actor", &q.ActorSub}, {"target_kind", &q.TargetKind}, {"target_id", &q.TargetID}} {
		if *f.dst, err = query(c, f.name); err != nil {
			return err
		}
		if len(*f.dst) > 255 || !utf8.ValidString(*f.dst) {
			return loyalty.Invalidf(f.name, "must be at most 255 characters of UTF-8")
		}
	}
	for _, f := range []struct {
		name string
		dst  **time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		v, err := query(c, f.name)
		if err != nil {
			return err
		}
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return loyalty.Invalidf(f.name, "must be an RFC 3339 time such as 2026-03-01T12:00:00Z")
		}
		*f.dst = &t
	}
	l, err := s.svc.AuditLog(c.UserContext(), principal(c), q)
	if err != nil {
		return err
	}
	return c.JSON(l)
}
