package api

import (
	"bytes"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/rewards"
)

func (s *server) createReward(c *fiber.Ctx) error {
	var in rewards.RewardInput
	if err := decode(c, &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c, in)
	if err != nil {
		return err
	}
	r, rep, err := s.rewards.Create(c.UserContext(), in, key)
	if err != nil {
		return err
	}
	return created(c, r, rep)
}

func (s *server) listRewards(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	p := principal(c)
	q := rewards.ListQuery{MemberID: c.Query("member_id"), All: c.QueryBool("include_retired"), Page: pg}
	l, err := s.rewards.List(c.UserContext(), p, q)
	if err != nil {
		return err
	}
	return c.JSON(l)
}

func (s *server) getReward(c *fiber.Ctx) error {
	r, err := s.rewards.Get(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(r)
}

func (s *server) patchReward(c *fiber.Ctx) error {
	var in rewards.RewardInput
	if err := decode(c, &in); err != nil {
		return err
	}
	r, err := s.rewards.Update(c.UserContext(), c.Params("id"), in)
	if err != nil {
		return err
	}
	return c.JSON(r)
}

func (s *server) retireReward(c *fiber.Ctx) error {
	if err := s.rewards.Retire(c.UserContext(), c.Params("id")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *server) redeem(c *fiber.Ctx) error {
	var in rewards.RedeemInput
	if err := decode(c, &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c, in)
	if err != nil {
		return err
	}
	r, rep, err := s.rewards.Redeem(c.UserContext(), principal(c), c.Params("id"), in, key)
	if err != nil {
		return err
	}
	return created(c, r, rep)
}

func (s *server) listRedemptions(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	l, err := s.rewards.Redemptions(c.UserContext(), principal(c), c.Params("id"), pg)
	if err != nil {
		return err
	}
	return c.JSON(l)
}

func (s *server) getRedemption(c *fiber.Ctx) error {
	r, err := s.rewards.Redemption(c.UserContext(), principal(c), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(r)
}

// answered writes the answer to an action on an existing resource: 200,
// or the replay of the first answer.
func answered(c *fiber.Ctx, v any, rep *loyalty.Replay) error {
	return written(c, fiber.StatusOK, v, rep)
}

func (s *server) cancelRedemption(c *fiber.Ctx) error {
	key, err := idempotencyKey(c, nil)
	if err != nil {
		return err
	}
	r, rep, err := s.rewards.Cancel(c.UserContext(), principal(c), c.Params("id"), key)
	if err != nil {
		return err
	}
	return answered(c, r, rep)
}

func (s *server) getCoupon(c *fiber.Ctx) error {
	r, err := s.rewards.Coupon(c.UserContext(), c.Params("code"))
	if err != nil {
		return err
	}
	return c.JSON(r)
}

func (s *server) useCoupon(c *fiber.Ctx) error {
	key, err := idempotencyKey(c, nil)
	if err != nil {
		return err
	}
	r, rep, err := s.rewards.Use(c.UserContext(), principal(c), c.Params("code"), key)
	if err != nil {
		return err
	}
	return answered(c, r, rep)
}

func (s *server) listJobs(c *fiber.Ctx) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	all, err := s.jobs.List(c.UserContext())
	if err != nil {
		return err
	}
	l, err := loyalty.PageOf(all, pg, func(j jobs.Status) string { return j.Name })
	if err != nil {
		return err
	}
	return c.JSON(l)
}

// RunJobInput is the optional body of POST /v1/jobs/{name}/run.
type RunJobInput struct {
	AsOf *time.Time `json:"as_of"`
}

func (s *server) runJob(c *fiber.Ctx) error {
	var in RunJobInput
	if len(bytes.TrimSpace(c.Body())) > 0 {
		if err := decode(c, &in); err != nil {
			return err
		}
	}
	asOf := s.svc.Now()
	if in.AsOf != nil {
		asOf = *in.AsOf
	}
	p := principal(c)
	rec, err := s.jobs.Run(c.UserContext(), c.Params("name"), asOf, string(p.Role)+":"+p.Subject)
	if err != nil {
		return err
	}
	return c.JSON(rec)
}
