package api

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
)

func (s *server) dayRange(c *fiber.Ctx) (jobs.DayRange, error) {
	prog, err := s.svc.Program(c.UserContext())
	if err != nil {
		return jobs.DayRange{}, err
	}
	from, err := query(c, "from")
	if err != nil {
		return jobs.DayRange{}, err
	}
	to, err := query(c, "to")
	if err != nil {
		return jobs.DayRange{}, err
	}
	return jobs.ParseDayRange(from, to, prog.Location())
}

func (s *server) redemptionRate(c *fiber.Ctx) error {
	d, err := s.dayRange(c)
	if err != nil {
		return err
	}
	switch c.Query("interval") {
	case "":
		r, err := s.jobs.RedemptionRate(c.UserContext(), d)
		if err != nil {
			return err
		}
		return c.JSON(r)
	case "month":
		pg, err := page(c)
		if err != nil {
			return err
		}
		l, err := s.ratesByMonth(c, d, pg)
		if err != nil {
			return err
		}
		return c.JSON(l)
	}
	return loyalty.Invalidf("interval", "must be month, or absent")
}

// ratesByMonth answers one page of the monthly rates of d: the months
// after the cursor's (a month, YYYY-MM), at most pg.Size() of them. Only
// the page's months are computed.
func (s *server) ratesByMonth(c *fiber.Ctx, d jobs.DayRange, pg loyalty.Page) (loyalty.List[jobs.Rate], error) {
	out := loyalty.List[jobs.Rate]{Items: []jobs.Rate{}}
	after, err := pg.AfterCursor()
	if err != nil {
		return out, err
	}
	from := d.From
	if after != "" {
		m, err := time.ParseInLocation("2006-01", after, d.Loc)
		if err != nil {
			return out, loyalty.Invalidf("cursor", "is not a cursor this list returned")
		}
		if next := m.AddDate(0, 1, 0); next.After(from) {
			from = next
		}
	}
	if from.After(d.To) {
		return out, nil
	}
	to := time.Date(from.Year(), from.Month()+time.Month(pg.Size()), 1, 0, 0, 0, 0, d.Loc).AddDate(0, 0, -1)
	if to.Before(d.To) {
		out.NextCursor = loyalty.Cursor(to.Format("2006-01"))
	} else {
		to = d.To
	}
	l, err := s.jobs.RedemptionRateByMonth(c.UserContext(), jobs.DayRange{From: from, To: to, Loc: d.Loc})
	if err != nil {
		return out, err
	}
	out.Items = append(out.Items, l...)
	return out, nil
}

func (s *server) summary(c *fiber.Ctx) error {
	d, err := s.dayRange(c)
	if err != nil {
		return err
	}
	sum, err := s.jobs.Summary(c.UserContext(), d)
	if err != nil {
		return err
	}
	return c.JSON(sum)
}

func (s *server) churnModel(c *fiber.Ctx) error {
	m, err := s.jobs.LatestChurnModel(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(m)
}

func (s *server) churnRisk(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	minRisk := "0.0000"
	if v := c.Query("min_risk"); v != "" {
		d, err := decimal.NewFromString(v)
		if err != nil || d.IsNegative() || d.GreaterThan(decimal.NewFromInt(1)) {
			return loyalty.Invalidf("min_risk", "must be a decimal from 0 to 1")
		}
		minRisk = d.StringFixed(4)
	}
	l, err := s.jobs.ChurnRiskList(c.UserContext(), minRisk, pg)
	if err != nil {
		return err
	}
	return c.JSON(l)
}

func (s *server) listSegments(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	all, err := s.jobs.SegmentList(c.UserContext())
	if err != nil {
		return err
	}
	// The segments keep their defined order: loyal, then the RFM ones.
	at := make(map[string]int, len(all))
	for i, sg := range all {
		at[sg.Code] = i
	}
	l, err := loyalty.PageOf(all, pg, func(sg jobs.Segment) string { return fmt.Sprintf("%04d", at[sg.Code]) })
	if err != nil {
		return err
	}
	return c.JSON(l)
}

// segmentMembers lists a segment's member ids, or with Accept: text/csv
// streams them with their contact fields for campaign tools.
func (s *server) segmentMembers(c *fiber.Ctx) error {
	code := c.Params("code")
	if strings.Contains(c.Get(fiber.HeaderAccept), "text/csv") {
		// Check the segment before streaming, so an unknown one is a 404.
		if _, err := s.jobs.SegmentMembers(c.UserContext(), code, loyalty.Page{Limit: 1}); err != nil {
			return err
		}
		// The rows are flushed (and the write deadline renewed) after
		// every chunk ExportSegment reads, as the other exports do.
		return s.streamCSV(c, "segment-"+code+".csv", func(ctx context.Context, w loyalty.RowWriter) error {
			n := 0
			err := s.jobs.ExportSegment(ctx, code, func(cols []string) error {
				if err := w.Write(cols); err != nil {
					return err
				}
				if n++; n%loyalty.DefaultExportChunk == 0 {
					return w.Flush()
				}
				return nil
			})
			if err != nil {
				return err
			}
			return w.Flush()
		})
	}
	pg, err := page(c)
	if err != nil {
		return err
	}
	l, err := s.jobs.SegmentMembers(c.UserContext(), code, pg)
	if err != nil {
		return err
	}
	return c.JSON(l)
}
