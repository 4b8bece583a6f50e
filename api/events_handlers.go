package api

import (
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// eventPage is the answer of GET /v1/events (§14).
type eventPage struct {
	Items []loyalty.Event `json:"items"`
	// NextCursor continues the log after the last item (or, when there is
	// none yet, where this page was asked from): a consumer polls with it.
	NextCursor string `json:"next_cursor"`
}

// listEvents pages the event log in commit order, oldest first:
// ?after=CURSOR&type=a.b,c.*&member_id=&limit=.
func (s *server) listEvents(c *fiber.Ctx) error {
	after, err := query(c, "after")
	if err != nil {
		return err
	}
	var pos int64
	if after != "" {
		pos, err = strconv.ParseInt(after, 10, 64)
		if err != nil || pos < 0 || strings.TrimLeft(after, "0123456789") != "" {
			return loyalty.Invalidf("after", "is not a cursor this log returned")
		}
	}
	limit := 100
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			return loyalty.Invalidf("limit", "must be an integer from 1 to 500")
		}
		limit = n
	}
	var f loyalty.EventFilter
	types, err := query(c, "type")
	if err != nil {
		return err
	}
	if types != "" {
		for _, t := range strings.Split(types, ",") {
			t = strings.TrimSpace(t)
			if !loyalty.ValidEventFilter(t) {
				return loyalty.Invalidf("type", "must be event types of §14 or prefix.* (comma-separated), not %q", t)
			}
			f.Types = append(f.Types, t)
		}
	}
	if f.MemberID, err = query(c, "member_id"); err != nil {
		return err
	}
	if len(f.MemberID) > 255 {
		return loyalty.Invalidf("member_id", "must be at most 255 characters")
	}
	evs, err := s.svc.EventsAfter(c.UserContext(), pos, f, limit)
	if err != nil {
		return err
	}
	out := eventPage{Items: evs, NextCursor: strconv.FormatInt(pos, 10)}
	if out.Items == nil {
		out.Items = []loyalty.Event{}
	}
	if n := len(evs); n > 0 {
		out.NextCursor = strconv.FormatInt(evs[n-1].Position, 10)
	}
	return c.JSON(out)
}
