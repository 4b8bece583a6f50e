package api

import (
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/feedback"
)

func (s *server) postFeedback(c *fiber.Ctx) error {
	var in feedback.Input
	if err := decode(c, &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c, in)
	if err != nil {
		return err
	}
	f, rep, err := s.feedback.Record(c.UserContext(), principal(c), in, key)
	if err != nil {
		return err
	}
	return created(c, f, rep)
}

// optionalRange reads ?from=&to=: both or neither.
func (s *server) optionalRange(c *fiber.Ctx) (*jobs.DayRange, error) {
	from, err := query(c, "from")
	if err != nil {
		return nil, err
	}
	to, err := query(c, "to")
	if err != nil {
		return nil, err
	}
	if from == "" && to == "" {
		return nil, nil
	}
	d, err := s.dayRange(c)
	if err != nil {
		return nil, err
	}
	return &d, nil
}

func (s *server) cxReport(c *fiber.Ctx) error {
	d, err := s.optionalRange(c)
	if err != nil {
		return err
	}
	g, err := query(c, "group_by")
	if err != nil {
		return err
	}
	items, err := s.jobs.CX(c.UserContext(), jobs.CXQuery{Range: d, GroupBy: g})
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"items": items})
}

func (s *server) clvModel(c *fiber.Ctx) error {
	m, err := s.jobs.LatestClvModel(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(m)
}

func (s *server) clvList(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	l, err := s.jobs.ClvList(c.UserContext(), pg)
	if err != nil {
		return err
	}
	return c.JSON(l)
}

func segmentParam(c *fiber.Ctx) (string, error) {
	seg, err := query(c, "segment")
	if err != nil || seg != "" {
		return seg, err
	}
	return "loyal", nil
}

func (s *server) storeCategories(c *fiber.Ctx) error {
	store, err := query(c, "store_id")
	if err != nil {
		return err
	}
	if store == "" {
		return loyalty.Invalidf("store_id", "is required")
	}
	seg, err := segmentParam(c)
	if err != nil {
		return err
	}
	d, err := s.optionalRange(c)
	if err != nil {
		return err
	}
	items, err := s.jobs.StoreCategories(c.UserContext(), store, seg, d)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"items": items})
}

func (s *server) categoryLapse(c *fiber.Ctx) error {
	seg, err := segmentParam(c)
	if err != nil {
		return err
	}
	q := jobs.LapseQuery{Segment: seg, Weeks: 8}
	if v := c.Query("weeks"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 52 {
			return loyalty.Invalidf("weeks", "must be an integer from 1 to 52")
		}
		q.Weeks = n
	}
	asOf, err := query(c, "as_of")
	if err != nil {
		return err
	}
	if asOf != "" {
		prog, err := s.svc.Program(c.UserContext())
		if err != nil {
			return err
		}
		t, err := time.ParseInLocation(time.DateOnly, asOf, prog.Location())
		if err != nil {
			return loyalty.Invalidf("as_of", "must be a date YYYY-MM-DD")
		}
		q.AsOf = &t
	}
	cat, err := query(c, "category")
	if err != nil {
		return err
	}
	if cat != "" {
		pg, err := page(c)
		if err != nil {
			return err
		}
		l, err := s.jobs.CategoryLapseMembers(c.UserContext(), q, cat, pg)
		if err != nil {
			return err
		}
		return c.JSON(l)
	}
	rep, err := s.jobs.CategoryLapse(c.UserContext(), q)
	if err != nil {
		return err
	}
	return c.JSON(rep)
}
