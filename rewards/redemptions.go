package rewards

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// Redemption statuses: issued, then used or cancelled, never anything else
// (a trigger in the schema refuses any other change).
const (
	StatusIssued    = "issued"
	StatusUsed      = "used"
	StatusCancelled = "cancelled"
)

type redemptionRow struct {
	ID          string `gorm:"primaryKey"`
	MemberID    string
	RewardID    string
	PointsSpent int64
	CouponCode  string
	Status      string
	Channel     string
	EntryID     *string
	CreatedAt   time.Time
	UsedAt      *time.Time
	UsedBy      *string
	CancelledAt *time.Time
}

func (redemptionRow) TableName() string { return "redemptions" }

// Redemption is a reward a member took (§9).
type Redemption struct {
	ID          string           `json:"id"`
	MemberID    string           `json:"member_id"`
	RewardID    string           `json:"reward_id"`
	RewardCode  string           `json:"reward_code,omitempty"`
	PointsSpent int64            `json:"points_spent"`
	CouponCode  string           `json:"coupon_code"`
	Status      string           `json:"status"`
	Channel     string           `json:"channel"`
	CreatedAt   time.Time        `json:"created_at"`
	UsedAt      *time.Time       `json:"used_at"`
	UsedBy      *string          `json:"used_by"`
	CancelledAt *time.Time       `json:"cancelled_at"`
	Balance     *loyalty.Balance `json:"balance,omitempty"`
}

func redemptionFromRow(r redemptionRow) Redemption {
	return Redemption{ID: r.ID, MemberID: r.MemberID, RewardID: r.RewardID, PointsSpent: r.PointsSpent, CouponCode: r.CouponCode,
		Status: r.Status, Channel: r.Channel, CreatedAt: r.CreatedAt.UTC(), UsedAt: utcp(r.UsedAt), UsedBy: r.UsedBy,
		CancelledAt: utcp(r.CancelledAt)}
}

// couponAlphabet is Crockford's base32: no I, L, O or U, so a code read
// aloud or typed at a till is not mistaken.
var couponEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// newCoupon returns 80 random bits as 16 characters in four groups,
// e.g. "7KQ2-M9XD-4TRA-WZ3F".
func newCoupon() (string, error) {
	b := make([]byte, 10)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	s := couponEncoding.EncodeToString(b)
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16], nil
}

// NormalizeCoupon reads a coupon as a person may type it: any case, with
// or without dashes or spaces, O for 0 and I or L for 1.
func NormalizeCoupon(s string) string {
	s = strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(s))
	s = strings.NewReplacer("O", "0", "I", "1", "L", "1").Replace(s)
	if len(s) != 16 {
		return s
	}
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
}

// RedeemInput is the body of POST /v1/members/{id}/redemptions.
type RedeemInput struct {
	RewardID string `json:"reward_id"`
}

func channelOf(p loyalty.Principal) string {
	switch p.Role {
	case loyalty.RoleMember:
		return "app"
	case loyalty.RolePOS:
		return "pos"
	}
	return string(p.Role)
}

// Redeem spends a member's points on a reward and issues its coupon. The
// member's account lock serialises its redemptions (so the per-member limit
// holds), the reward's stock is taken by a conditional update (so it is
// never oversold), and the points come from the lots that expire first.
func (s *Service) Redeem(ctx context.Context, p loyalty.Principal, memberID string, in RedeemInput, key loyalty.IdempotencyKey) (Redemption, *loyalty.Replay, error) {
	if !p.SeesMember(memberID) {
		return Redemption{}, nil, loyalty.Errorf(loyalty.NotFound, "not_found", "no member has id %q", memberID)
	}
	if in.RewardID == "" {
		return Redemption{}, nil, loyalty.Invalidf("reward_id", "is required")
	}
	r, rep, err := loyalty.Write(ctx, s.ledger, key, func(tx *loyalty.Tx) (Redemption, error) {
		var red Redemption
		b, err := tx.UpdateAccount(memberID, func(acct *loyalty.Account) error {
			if !acct.Active() {
				return loyalty.Errorf(loyalty.Conflict, "member_erased", "the member was erased")
			}
			rw, err := getReward(tx.DB, in.RewardID)
			if err != nil {
				var e *loyalty.Error
				if errors.As(err, &e) && e.Code == loyalty.NotFound {
					return loyalty.Invalidf("reward_id", "no reward has this id")
				}
				return err
			}
			if err := s.eligible(tx, acct, rw); err != nil {
				return err
			}
			red, err = s.issue(tx, acct, rw, rw.CostPoints, channelOf(p))
			return err
		})
		if err != nil {
			return Redemption{}, err
		}
		red.Balance = &b
		return red, tx.EmitAnswer(loyalty.EventRedemptionCreated, memberID)
	})
	if err != nil {
		return Redemption{}, nil, fmt.Errorf("redeem: %w", err)
	}
	return r, rep, nil
}

// eligible checks what a member needs to redeem rw now, short of points and
// stock, which issue takes.
func (s *Service) eligible(tx *loyalty.Tx, acct *loyalty.Account, rw rewardRow) error {
	now := tx.Now
	if !rw.Active || (rw.ValidFrom != nil && now.Before(*rw.ValidFrom)) || (rw.ValidUntil != nil && !now.Before(*rw.ValidUntil)) {
		return loyalty.Errorf(loyalty.Conflict, "not_available", "reward %q is not available now", rw.Code)
	}
	if rw.MinTier != nil {
		ladder, err := tx.Ladder()
		if err != nil {
			return err
		}
		need, ok := ladder.Find(*rw.MinTier)
		have, hasTier := acct.Tier(ladder)
		if ok && (!hasTier || have.Rank < need.Rank) {
			return loyalty.Errorf(loyalty.Conflict, "tier_too_low", "reward %q needs tier %q", rw.Code, *rw.MinTier)
		}
	}
	if rw.PerMemberLimit != nil {
		var n int64
		if err := tx.DB.Model(&redemptionRow{}).Where("member_id = ? AND reward_id = ? AND status <> ?",
			acct.MemberID(), rw.ID, StatusCancelled).Count(&n).Error; err != nil {
			return err
		}
		if n >= int64(*rw.PerMemberLimit) {
			return loyalty.Errorf(loyalty.Conflict, "limit_reached", "the member has redeemed reward %q %d times, its limit", rw.Code, n)
		}
	}
	return nil
}

// issue takes one from stock, spends cost points and records the
// redemption with a fresh coupon, within the account's update (which saves
// the account and gives the balance after it).
func (s *Service) issue(tx *loyalty.Tx, acct *loyalty.Account, rw rewardRow, cost int64, channel string) (Redemption, error) {
	if rw.Stock != nil {
		res := tx.DB.Model(&rewardRow{}).Where("id = ? AND stock > 0", rw.ID).
			Updates(map[string]any{"stock": gorm.Expr("stock - 1"), "updated_at": tx.Now})
		if res.Error != nil {
			return Redemption{}, res.Error
		}
		if res.RowsAffected == 0 {
			return Redemption{}, loyalty.Errorf(loyalty.Conflict, "out_of_stock", "reward %q is out of stock", rw.Code)
		}
	}
	coupon, err := newCoupon()
	if err != nil {
		return Redemption{}, err
	}
	row := redemptionRow{ID: loyalty.NewID(), MemberID: acct.MemberID(), RewardID: rw.ID, PointsSpent: cost, CouponCode: coupon,
		Status: StatusIssued, Channel: channel, CreatedAt: tx.Now}
	if err := tx.DB.Create(&row).Error; err != nil {
		return Redemption{}, err
	}
	if cost > 0 {
		e, err := acct.Spend(loyalty.KindRedeem, cost, row.ID, "redeemed "+rw.Code)
		if err != nil {
			return Redemption{}, err
		}
		row.EntryID = &e.ID
		if err := tx.DB.Model(&redemptionRow{}).Where("id = ?", row.ID).Update("entry_id", e.ID).Error; err != nil {
			return Redemption{}, err
		}
	}
	out := redemptionFromRow(row)
	out.RewardCode = rw.Code
	return out, nil
}

func getRedemption(db *gorm.DB, where string, arg any) (redemptionRow, error) {
	var r redemptionRow
	if err := db.Where(where, arg).Take(&r).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return r, loyalty.Errorf(loyalty.NotFound, "not_found", "no such redemption")
		}
		return r, err
	}
	return r, nil
}

// Cancel gives a redemption's points and stock back. The points return to
// new lots that keep the availability and expiry of the lots they were
// taken from, so cancelling never extends a point's life. Only an issued
// coupon can be cancelled.
func (s *Service) Cancel(ctx context.Context, p loyalty.Principal, id string, key loyalty.IdempotencyKey) (Redemption, *loyalty.Replay, error) {
	r, rep, err := loyalty.Write(ctx, s.ledger, key, func(tx *loyalty.Tx) (Redemption, error) {
		red, err := getRedemption(tx.DB, "id = ?", id)
		if err != nil {
			return Redemption{}, err
		}
		if !p.SeesMember(red.MemberID) {
			return Redemption{}, loyalty.Errorf(loyalty.NotFound, "not_found", "no such redemption")
		}
		b, err := tx.UpdateAccount(red.MemberID, func(acct *loyalty.Account) error {
			res := tx.DB.Model(&redemptionRow{}).Where("id = ? AND status = ?", id, StatusIssued).
				Updates(map[string]any{"status": StatusCancelled, "cancelled_at": tx.Now})
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected == 0 {
				red, _ = getRedemption(tx.DB, "id = ?", id)
				return loyalty.Errorf(loyalty.Conflict, "not_issued", "the coupon is %s and cannot be cancelled", red.Status)
			}
			if err := tx.DB.Model(&rewardRow{}).Where("id = ? AND stock IS NOT NULL", red.RewardID).
				Updates(map[string]any{"stock": gorm.Expr("stock + 1"), "updated_at": tx.Now}).Error; err != nil {
				return err
			}
			if red.EntryID != nil {
				if _, err := acct.Refund(*red.EntryID, loyalty.KindRedeemCancel, red.ID, "redemption cancelled"); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return Redemption{}, err
		}
		red.Status, red.CancelledAt = StatusCancelled, &tx.Now
		out := redemptionFromRow(red)
		out.Balance = &b
		return out, tx.EmitAnswer(loyalty.EventRedemptionCancelled, red.MemberID)
	})
	if err != nil {
		return Redemption{}, nil, fmt.Errorf("cancel redemption: %w", err)
	}
	return r, rep, nil
}

// Use marks a coupon used at a till. Only an issued coupon can be used.
func (s *Service) Use(ctx context.Context, p loyalty.Principal, code string, key loyalty.IdempotencyKey) (Redemption, *loyalty.Replay, error) {
	code = NormalizeCoupon(code)
	r, rep, err := loyalty.Write(ctx, s.ledger, key, func(tx *loyalty.Tx) (Redemption, error) {
		red, err := getRedemption(tx.DB, "coupon_code = ?", code)
		if err != nil {
			return Redemption{}, loyalty.Errorf(loyalty.NotFound, "not_found", "no coupon has this code")
		}
		by := p.StoreID
		if by == "" {
			by = p.Subject
		}
		res := tx.DB.Model(&redemptionRow{}).Where("id = ? AND status = ?", red.ID, StatusIssued).
			Updates(map[string]any{"status": StatusUsed, "used_at": tx.Now, "used_by": by})
		if res.Error != nil {
			return Redemption{}, res.Error
		}
		if res.RowsAffected == 0 {
			return Redemption{}, loyalty.Errorf(loyalty.Conflict, "not_issued", "the coupon is %s and cannot be used", red.Status)
		}
		red.Status, red.UsedAt, red.UsedBy = StatusUsed, &tx.Now, &by
		return redemptionFromRow(red), tx.EmitAnswer(loyalty.EventCouponUsed, red.MemberID)
	})
	if err != nil {
		return Redemption{}, nil, fmt.Errorf("use coupon: %w", err)
	}
	return r, rep, nil
}

// Redemption returns one redemption.
func (s *Service) Redemption(ctx context.Context, p loyalty.Principal, id string) (Redemption, error) {
	var out Redemption
	err := loyalty.Read(ctx, s.ledger, func(db *gorm.DB) error {
		r, err := getRedemption(db, "id = ?", id)
		if err != nil {
			return err
		}
		if !p.SeesMember(r.MemberID) {
			return loyalty.Errorf(loyalty.NotFound, "not_found", "no such redemption")
		}
		out = redemptionFromRow(r)
		return nil
	})
	return out, err
}

// Redemptions lists a member's redemptions, newest first.
func (s *Service) Redemptions(ctx context.Context, p loyalty.Principal, memberID string, page loyalty.Page) (loyalty.List[Redemption], error) {
	out := loyalty.List[Redemption]{Items: []Redemption{}}
	if !p.SeesMember(memberID) {
		return out, loyalty.Errorf(loyalty.NotFound, "not_found", "no member has id %q", memberID)
	}
	err := loyalty.Read(ctx, s.ledger, func(db *gorm.DB) error {
		if _, _, _, err := loyalty.MemberTier(db, p, memberID); err != nil {
			return err
		}
		q := db.Where("member_id = ?", memberID)
		after, err := page.AfterCursor()
		if err != nil {
			return err
		}
		if after != "" {
			q = q.Where("id < ?", after)
		}
		var rows []redemptionRow
		if err := q.Order("id DESC").Limit(page.Size() + 1).Find(&rows).Error; err != nil {
			return err
		}
		for i, r := range rows {
			if i == page.Size() {
				out.NextCursor = loyalty.Cursor(rows[i-1].ID)
				break
			}
			out.Items = append(out.Items, redemptionFromRow(r))
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("list redemptions: %w", err)
	}
	return out, nil
}

// Coupon looks a coupon up by its code, as a till would before using it.
func (s *Service) Coupon(ctx context.Context, code string) (Redemption, error) {
	var out Redemption
	err := loyalty.Read(ctx, s.ledger, func(db *gorm.DB) error {
		r, err := getRedemption(db, "coupon_code = ?", NormalizeCoupon(code))
		if err != nil {
			return loyalty.Errorf(loyalty.NotFound, "not_found", "no coupon has this code")
		}
		out = redemptionFromRow(r)
		return nil
	})
	return out, err
}
