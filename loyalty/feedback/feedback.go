// Package feedback captures members' answers to the seeds' customer
// experience surveys (§17): Net Promoter Score, customer satisfaction and
// customer effort, from the app or the till after a purchase, with an
// optional bonus credited through the ledger.
package feedback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// Kinds of answer and their scales.
const (
	KindNPS  = "nps"  // 0–10: how likely to recommend
	KindCSAT = "csat" // 1–5: how satisfied
	KindCES  = "ces"  // 1–7: how easy
)

// Scale is the lowest and highest score of a kind; false for an unknown kind.
func Scale(kind string) (lo, hi int, ok bool) {
	switch kind {
	case KindNPS:
		return 0, 10, true
	case KindCSAT:
		return 1, 5, true
	case KindCES:
		return 1, 7, true
	}
	return 0, 0, false
}

// Service records feedback on the ledger service.
type Service struct{ ledger *loyalty.Service }

// NewService builds the service on the ledger.
func NewService(l *loyalty.Service) *Service { return &Service{ledger: l} }

// Input is the body of POST /v1/feedback.
type Input struct {
	MemberID   string  `json:"member_id"`
	Kind       string  `json:"kind"`
	Score      *int    `json:"score"`
	PurchaseID *string `json:"purchase_id"`
	StoreID    *string `json:"store_id"`
	Channel    *string `json:"channel"`
	Comment    *string `json:"comment"`
}

// Feedback is one recorded answer.
type Feedback struct {
	ID          string    `json:"id"`
	MemberID    string    `json:"member_id"`
	Kind        string    `json:"kind"`
	Score       int       `json:"score"`
	PurchaseID  *string   `json:"purchase_id"`
	StoreID     *string   `json:"store_id"`
	Channel     string    `json:"channel"`
	Tier        *string   `json:"tier"`
	Comment     *string   `json:"comment"`
	BonusPoints int64     `json:"bonus_points"`
	EntryID     *string   `json:"entry_id"`
	OccurredAt  time.Time `json:"occurred_at"`
}

type row struct {
	ID          string `gorm:"primaryKey"`
	MemberID    string
	Kind        string
	Score       int
	PurchaseID  *string
	PurchaseKey string
	StoreID     *string
	Channel     string
	TierCode    *string
	Comment     *string
	EntryID     *string
	BonusPoints int64
	OccurredAt  time.Time
	LocalDate   string
	CreatedAt   time.Time
}

func (row) TableName() string { return "feedback" }

func token(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func (in Input) validate() error {
	var v loyalty.Validation
	if in.MemberID == "" {
		v.Add("member_id", "is required")
	}
	lo, hi, ok := Scale(in.Kind)
	if !ok {
		v.Add("kind", "must be nps, csat or ces")
	}
	switch {
	case in.Score == nil:
		v.Add("score", "is required")
	case ok && (*in.Score < lo || *in.Score > hi):
		v.Add("score", "must be from %d to %d for %s", lo, hi, in.Kind)
	}
	if in.PurchaseID != nil && *in.PurchaseID == "" {
		v.Add("purchase_id", "must not be empty; omit it or give null")
	}
	if in.StoreID != nil && !token(*in.StoreID) {
		v.Add("store_id", "must be 1 to 255 printable ASCII characters without spaces")
	}
	if in.Channel != nil && (!token(*in.Channel) || len(*in.Channel) > 50) {
		v.Add("channel", "must be 1 to 50 printable ASCII characters without spaces")
	}
	if in.Comment != nil && (!utf8.ValidString(*in.Comment) || utf8.RuneCountInString(*in.Comment) > 2000) {
		v.Add("comment", "must be at most 2000 characters of UTF-8")
	}
	return v.Err()
}

func defaultChannel(p loyalty.Principal) string {
	switch p.Role {
	case loyalty.RoleMember:
		return "app"
	case loyalty.RolePOS:
		return "pos"
	}
	return string(p.Role)
}

// Record stores one answer. One answer per member, purchase (or none) and
// kind: the schema's unique key refuses a second (409 duplicate). When the
// program's feedback_bonus_points is above 0 the answer credits that many
// points as a feedback entry in the same transaction, so a refused answer
// credits nothing. The store and channel default to the purchase's; a till
// bound to a store answers only about that store's purchases.
func (s *Service) Record(ctx context.Context, p loyalty.Principal, in Input, key loyalty.IdempotencyKey) (Feedback, *loyalty.Replay, error) {
	if err := in.validate(); err != nil {
		return Feedback{}, nil, err
	}
	if !p.SeesMember(in.MemberID) {
		return Feedback{}, nil, loyalty.Errorf(loyalty.NotFound, "not_found", "no member has id %q", in.MemberID)
	}
	f, rep, err := loyalty.Write(ctx, s.ledger, key, func(tx *loyalty.Tx) (Feedback, error) {
		var out Feedback
		_, err := tx.UpdateAccount(in.MemberID, func(acct *loyalty.Account) error {
			var err error
			out, err = s.record(tx, acct, p, in)
			return err
		})
		if err != nil {
			return out, err
		}
		return out, tx.EmitAnswer(loyalty.EventFeedbackReceived, in.MemberID)
	})
	if err != nil {
		return Feedback{}, nil, fmt.Errorf("record feedback: %w", err)
	}
	return f, rep, nil
}

// record stores one answer for a locked, active account and credits its
// bonus, if any; the caller's closure saves the account.
func (s *Service) record(tx *loyalty.Tx, acct *loyalty.Account, p loyalty.Principal, in Input) (Feedback, error) {
	if !acct.Active() {
		return Feedback{}, loyalty.Errorf(loyalty.Conflict, "member_erased", "the member was erased")
	}
	prog, err := tx.Program()
	if err != nil {
		return Feedback{}, err
	}
	r := row{ID: loyalty.NewID(), MemberID: in.MemberID, Kind: in.Kind, Score: *in.Score, PurchaseID: in.PurchaseID,
		StoreID: in.StoreID, Comment: in.Comment, OccurredAt: tx.Now, CreatedAt: tx.Now,
		LocalDate: tx.Now.In(prog.Location()).Format(time.DateOnly)}
	if r.Comment != nil && strings.TrimSpace(*r.Comment) == "" {
		r.Comment = nil
	}
	channel := ""
	if in.PurchaseID != nil {
		var pur struct{ MemberID, StoreID, Channel string }
		res := tx.DB.Raw("SELECT member_id, store_id, channel FROM purchases WHERE id = ?", *in.PurchaseID).Scan(&pur)
		if res.Error != nil {
			return Feedback{}, res.Error
		}
		if res.RowsAffected == 0 || pur.MemberID != in.MemberID {
			return Feedback{}, loyalty.Invalidf("purchase_id", "no purchase of this member has this id")
		}
		r.PurchaseKey = *in.PurchaseID
		if r.StoreID == nil {
			r.StoreID = &pur.StoreID
		}
		channel = pur.Channel
	}
	if p.Role == loyalty.RolePOS && p.StoreID != "" {
		if r.StoreID == nil {
			r.StoreID = &p.StoreID
		} else if *r.StoreID != p.StoreID {
			return Feedback{}, loyalty.Errorf(loyalty.Forbidden, "wrong_store", "this till may record feedback only for store %q", p.StoreID)
		}
	}
	switch {
	case in.Channel != nil:
		r.Channel = *in.Channel
	case channel != "":
		r.Channel = channel
	default:
		r.Channel = defaultChannel(p)
	}
	ladder, err := tx.Ladder()
	if err != nil {
		return Feedback{}, err
	}
	if t, ok := acct.Tier(ladder); ok {
		code := t.Code
		r.TierCode = &code
	}
	if bonus := prog.FeedbackBonusPoints; bonus > 0 {
		e, err := acct.Credit(loyalty.KindFeedback, bonus, loyalty.CreditRef{}, "feedback "+in.Kind)
		if err != nil {
			return Feedback{}, err
		}
		r.EntryID, r.BonusPoints = &e.ID, bonus
	}
	if err := tx.DB.Create(&r).Error; err != nil {
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return Feedback{}, loyalty.Errorf(loyalty.Conflict, "duplicate",
				"the member already answered %s for this purchase", in.Kind)
		}
		return Feedback{}, err
	}
	return Feedback{ID: r.ID, MemberID: r.MemberID, Kind: r.Kind, Score: r.Score, PurchaseID: r.PurchaseID, StoreID: r.StoreID,
		Channel: r.Channel, Tier: r.TierCode, Comment: r.Comment, BonusPoints: r.BonusPoints, EntryID: r.EntryID,
		OccurredAt: r.OccurredAt.UTC()}, nil
}
