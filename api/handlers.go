package api

import (
	"fmt"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/loyalty"
)

func (s *server) getProgram(c *fiber.Ctx) error {
	p, err := s.svc.Program(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(p)
}

func (s *server) putProgram(c *fiber.Ctx) error {
	var in loyalty.ProgramPatch
	if err := decode(c, &in); err != nil {
		return err
	}
	p, err := s.svc.UpdateProgram(c.UserContext(), in)
	if err != nil {
		return err
	}
	return c.JSON(p)
}

func (s *server) listTiers(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	ts, err := s.svc.Tiers(c.UserContext())
	if err != nil {
		return err
	}
	// Ranks run from 0 to 1000: four digits sort them.
	l, err := loyalty.PageOf(ts, pg, func(t loyalty.Tier) string { return fmt.Sprintf("%04d", t.Rank) })
	if err != nil {
		return err
	}
	return c.JSON(l)
}

func (s *server) putTier(c *fiber.Ctx) error {
	var in loyalty.TierInput
	if err := decode(c, &in); err != nil {
		return err
	}
	t, isNew, err := s.svc.PutTier(c.UserContext(), c.Params("code"), in)
	if err != nil {
		return err
	}
	if isNew {
		c.Status(fiber.StatusCreated)
	}
	return c.JSON(t)
}

func (s *server) deleteTier(c *fiber.Ctx) error {
	if err := s.svc.DeleteTier(c.UserContext(), c.Params("code")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *server) enrolMember(c *fiber.Ctx) error {
	var in loyalty.MemberInput
	if err := decode(c, &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c, in)
	if err != nil {
		return err
	}
	m, rep, err := s.svc.EnrolMember(c.UserContext(), in, key)
	if err != nil {
		return err
	}
	return created(c, m, rep)
}

func (s *server) findMembers(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	q := loyalty.MemberQuery{Page: pg}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"external_id", &q.ExternalID}, {"email", &q.Email}, {"phone", &q.Phone}} {
		if *f.dst, err = query(c, f.name); err != nil {
			return err
		}
	}
	// A "+" in a phone number arrives as a space when the client did not
	// encode it.
	if strings.HasPrefix(q.Phone, " ") {
		q.Phone = "+" + strings.TrimSpace(q.Phone)
	}
	l, err := s.svc.FindMembers(c.UserContext(), principal(c), q)
	if err != nil {
		return err
	}
	return c.JSON(l)
}

func (s *server) getMember(c *fiber.Ctx) error {
	m, err := s.svc.Member(c.UserContext(), principal(c), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(m)
}

func (s *server) patchMember(c *fiber.Ctx) error {
	var in loyalty.MemberInput
	if err := decode(c, &in); err != nil {
		return err
	}
	m, err := s.svc.UpdateMember(c.UserContext(), principal(c), c.Params("id"), in)
	if err != nil {
		return err
	}
	return c.JSON(m)
}

func (s *server) eraseMember(c *fiber.Ctx) error {
	if err := s.svc.EraseMember(c.UserContext(), c.Params("id")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *server) getBalance(c *fiber.Ctx) error {
	b, err := s.svc.Balance(c.UserContext(), principal(c), c.Params("id"))
	if err != nil {
		return err
	}
	return sendBalance(c, b)
}

// sendBalance answers a balance read: 304 when If-None-Match names its
// version, else the balance with that version as its ETag.
func sendBalance(c *fiber.Ctx, b loyalty.Balance) error {
	etag := `"` + itoa(b.Version) + `"`
	c.Set(fiber.HeaderETag, etag)
	c.Set(fiber.HeaderCacheControl, "private, no-cache")
	if inm := c.Get(fiber.HeaderIfNoneMatch); inm != "" && etagMatches(inm, etag) {
		return c.SendStatus(fiber.StatusNotModified)
	}
	return c.JSON(b)
}

// etagMatches compares If-None-Match with an ETag, weakly as RFC 9110 asks
// for GET: W/"17" and "17" match, as does *.
func etagMatches(header, etag string) bool {
	for _, part := range strings.Split(header, ",") {
		part = strings.TrimPrefix(strings.TrimSpace(part), "W/")
		if part == "*" || part == etag || `"`+part+`"` == etag {
			return true
		}
	}
	return false
}

func (s *server) getLedger(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	l, err := s.svc.Ledger(c.UserContext(), principal(c), c.Params("id"), pg)
	if err != nil {
		return err
	}
	return c.JSON(l)
}

func (s *server) postAdjustment(c *fiber.Ctx) error {
	var in loyalty.AdjustmentInput
	if err := decode(c, &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c, in)
	if err != nil {
		return err
	}
	e, rep, err := s.svc.Adjust(c.UserContext(), principal(c), c.Params("id"), in, key)
	if err != nil {
		return err
	}
	return created(c, e, rep)
}

func (s *server) quotePurchase(c *fiber.Ctx) error {
	var in loyalty.PurchaseInput
	if err := decode(c, &in); err != nil {
		return err
	}
	q, err := s.svc.QuotePurchase(c.UserContext(), principal(c), in)
	if err != nil {
		return err
	}
	return c.JSON(q)
}

func (s *server) postPurchase(c *fiber.Ctx) error {
	var in loyalty.PurchaseInput
	if err := decode(c, &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c, in)
	if err != nil {
		return err
	}
	r, rep, err := s.svc.PostPurchase(c.UserContext(), principal(c), in, key)
	if err != nil {
		return err
	}
	return created(c, r, rep)
}

func (s *server) getPurchase(c *fiber.Ctx) error {
	p, err := s.svc.Purchase(c.UserContext(), principal(c), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(p)
}

func (s *server) postReturn(c *fiber.Ctx) error {
	var in loyalty.ReturnInput
	if err := decode(c, &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c, in)
	if err != nil {
		return err
	}
	r, rep, err := s.svc.PostReturn(c.UserContext(), principal(c), c.Params("id"), in, key)
	if err != nil {
		return err
	}
	return created(c, r, rep)
}
