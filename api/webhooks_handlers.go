package api

import (
	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
)

func (s *server) createWebhook(c *fiber.Ctx) error {
	var in webhooks.Input
	if err := decode(c, &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c, in)
	if err != nil {
		return err
	}
	w, rep, err := s.webhooks.Create(c.UserContext(), in, key)
	if err != nil {
		return err
	}
	return created(c, w, rep)
}

func (s *server) listWebhooks(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	l, err := s.webhooks.List(c.UserContext(), pg)
	if err != nil {
		return err
	}
	return c.JSON(l)
}

func (s *server) getWebhook(c *fiber.Ctx) error {
	w, err := s.webhooks.Get(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(w)
}

func (s *server) patchWebhook(c *fiber.Ctx) error {
	var in webhooks.Input
	if err := decode(c, &in); err != nil {
		return err
	}
	w, err := s.webhooks.Update(c.UserContext(), c.Params("id"), in)
	if err != nil {
		return err
	}
	return c.JSON(w)
}

func (s *server) deleteWebhook(c *fiber.Ctx) error {
	if err := s.webhooks.Delete(c.UserContext(), c.Params("id")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *server) rotateWebhookSecret(c *fiber.Ctx) error {
	w, err := s.webhooks.RotateSecret(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(w)
}

func (s *server) listDeliveries(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	status, err := query(c, "status")
	if err != nil {
		return err
	}
	l, err := s.webhooks.Deliveries(c.UserContext(), c.Params("id"), webhooks.DeliveryQuery{Status: status, Page: pg})
	if err != nil {
		return err
	}
	return c.JSON(l)
}

// retryDelivery answers 202: the attempt is made by the dispatcher, never
// while the API call waits.
func (s *server) retryDelivery(c *fiber.Ctx) error {
	d, err := s.webhooks.Retry(c.UserContext(), c.Params("id"), c.Params("delivery_id"))
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusAccepted).JSON(d)
}
