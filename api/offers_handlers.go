package api

import (
	"fmt"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/rewards"
)

func (s *server) createOffer(c *fiber.Ctx) error {
	var in loyalty.OfferInput
	if err := decode(c, &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c, in)
	if err != nil {
		return err
	}
	o, rep, err := s.svc.CreateOffer(c.UserContext(), in, key)
	if err != nil {
		return err
	}
	return created(c, o, rep)
}

func (s *server) listOffers(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	l, err := s.svc.ListOffers(c.UserContext(), loyalty.OfferQuery{Personal: c.QueryBool("personal"), Page: pg})
	if err != nil {
		return err
	}
	return c.JSON(l)
}

func (s *server) getOffer(c *fiber.Ctx) error {
	o, err := s.svc.GetOffer(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(o)
}

func (s *server) patchOffer(c *fiber.Ctx) error {
	var in loyalty.OfferInput
	if err := decode(c, &in); err != nil {
		return err
	}
	o, err := s.svc.UpdateOffer(c.UserContext(), c.Params("id"), in)
	if err != nil {
		return err
	}
	return c.JSON(o)
}

func (s *server) offerReach(c *fiber.Ctx) error {
	n, err := s.svc.OfferReach(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"offer_id": c.Params("id"), "members": n})
}

func (s *server) createTemplate(c *fiber.Ctx) error {
	var in loyalty.OfferTemplateInput
	if err := decode(c, &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c, in)
	if err != nil {
		return err
	}
	t, rep, err := s.svc.CreateOfferTemplate(c.UserContext(), in, key)
	if err != nil {
		return err
	}
	return created(c, t, rep)
}

func (s *server) listTemplates(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	all, err := s.svc.OfferTemplates(c.UserContext())
	if err != nil {
		return err
	}
	l, err := loyalty.PageOf(all, pg, func(t loyalty.OfferTemplate) string { return t.Code })
	if err != nil {
		return err
	}
	return c.JSON(l)
}

func (s *server) patchTemplate(c *fiber.Ctx) error {
	var in loyalty.OfferTemplateInput
	if err := decode(c, &in); err != nil {
		return err
	}
	t, err := s.svc.UpdateOfferTemplate(c.UserContext(), c.Params("id"), in)
	if err != nil {
		return err
	}
	return c.JSON(t)
}

func (s *server) memberOffers(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	all, err := s.svc.MemberOffers(c.UserContext(), principal(c), c.Params("id"))
	if err != nil {
		return err
	}
	l, err := loyalty.PageOf(all.Items, pg, func(o loyalty.MemberOffer) string { return o.ID })
	if err != nil {
		return err
	}
	return c.JSON(l)
}

func (s *server) activateOffer(c *fiber.Ctx) error {
	o, err := s.svc.ActivateOffer(c.UserContext(), principal(c), c.Params("id"), c.Params("offer_id"))
	if err != nil {
		return err
	}
	return c.JSON(o)
}

func (s *server) listGifts(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	all, err := s.rewards.Gifts(c.UserContext(), principal(c), c.Params("id"))
	if err != nil {
		return err
	}
	// Newest year first: the key counts down as years go up.
	l, err := loyalty.PageOf(all.Items, pg, func(g rewards.Gift) string { return fmt.Sprintf("%06d", 999999-g.Year) })
	if err != nil {
		return err
	}
	return c.JSON(l)
}

func (s *server) claimGift(c *fiber.Ctx) error {
	var in rewards.ClaimInput
	if err := decode(c, &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c, in)
	if err != nil {
		return err
	}
	r, rep, err := s.rewards.ClaimGift(c.UserContext(), principal(c), c.Params("id"), c.Params("gift_id"), in, key)
	if err != nil {
		return err
	}
	return created(c, r, rep)
}
