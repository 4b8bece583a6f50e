package loyalty

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Rows as stored. They stay inside the package; the API speaks in the views
// of views.go.

type programRow struct {
	ID             int `gorm:"primaryKey"`
	Name           string
	Currency       string
	PointsPerUnit  string
	PendingDays    int
	ExpiryPolicy   string
	ExpiryDays     int
	TierPeriod     string
	TierWindowDays int
	Timezone       string
	BirthdayGift   string
	Segments       string
	Churn          string
	// §16 and §17 settings (migration 00009).
	FeedbackBonusPoints int64
	ClvHorizonWeeks     int
	PointsPayment       string
	Version             int64
	UpdatedAt           time.Time
}

func (programRow) TableName() string { return "program" }

type tierRow struct {
	Code            string `gorm:"primaryKey"`
	Name            string
	Rank            int
	EarnMultiplier  string
	QualifyingSpend int64
	Benefits        string
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

func (tierRow) TableName() string { return "tiers" }

type memberRow struct {
	ID         string `gorm:"primaryKey"`
	ExternalID *string
	Email      *string
	Phone      *string
	FirstName  *string
	LastName   *string
	Birthday   *string
	Timezone   *string
	Status     string
	TierCode   *string
	TierSince  *time.Time
	ChurnRisk  *string
	EnrolledAt time.Time
	UpdatedAt  time.Time
}

func (memberRow) TableName() string { return "members" }

type balanceRow struct {
	MemberID         string `gorm:"primaryKey"`
	Points           int64
	Debt             int64
	LifetimeEarned   int64
	LifetimeRedeemed int64
	LastActivityAt   *time.Time
	Version          int64
	UpdatedAt        time.Time
	// What a read needs, kept as of AsOf under the settings of
	// ConfigVersion, until NextChangeAt (nil: never); see kept.go.
	OpenAvailable   int64
	OpenPending     int64
	QualifyingSpend int64
	ExpiringSoon    string
	AsOf            time.Time
	NextChangeAt    *time.Time
	ConfigVersion   int64
}

func (balanceRow) TableName() string { return "member_balances" }

type purchaseRow struct {
	ID             string `gorm:"primaryKey"`
	MemberID       string
	StoreID        string
	ExternalID     *string
	Channel        string
	OccurredAt     time.Time
	LocalDate      string
	LocalDay       int64 // days since 1970-01-01 of LocalDate, for portable date arithmetic
	Currency       string
	Total          int64
	ReturnedAmount int64
	PointsEarned   int64
	PointsReversed int64
	// What the purchase paid with points (§16), and what its returns
	// refunded of that; all 0 without a payment.
	PointsPaid           int64
	AmountPaidWithPoints int64
	PointsRefunded       int64
	AmountPaidReturned   int64
	TierCode             *string
	CreatedAt            time.Time
}

func (purchaseRow) TableName() string { return "purchases" }

type itemRow struct {
	PurchaseID string `gorm:"primaryKey"`
	Line       int    `gorm:"primaryKey"`
	SKU        string `gorm:"column:sku"`
	Category   string
	Quantity   int64
	UnitPrice  int64
	Amount     int64
}

func (itemRow) TableName() string { return "purchase_items" }

type returnRow struct {
	ID             string `gorm:"primaryKey"`
	PurchaseID     string
	MemberID       string
	ExternalID     *string
	Amount         int64
	PointsReversed int64
	OccurredAt     time.Time
	CreatedAt      time.Time
}

func (returnRow) TableName() string { return "returns" }

type entryRow struct {
	ID           string `gorm:"primaryKey"`
	MemberID     string
	Kind         string
	Points       int64
	OccurredAt   time.Time
	AvailableAt  time.Time
	ExpiresAt    *time.Time
	PurchaseID   *string
	ReturnID     *string
	RedemptionID *string
	OfferID      *string
	Description  string
	CreatedAt    time.Time
}

func (entryRow) TableName() string { return "ledger_entries" }

type lotRow struct {
	ID          string `gorm:"primaryKey"`
	EntryID     string
	MemberID    string
	Points      int64
	Remaining   int64
	AvailableAt time.Time
	ExpiresAt   *time.Time
	CreatedAt   time.Time
}

func (lotRow) TableName() string { return "lots" }

type drawRow struct {
	EntryID string `gorm:"primaryKey"`
	LotID   string `gorm:"primaryKey"`
	Points  int64
}

func (drawRow) TableName() string { return "lot_draws" }

type idempotencyRow struct {
	Scope       string `gorm:"primaryKey"`
	Key         string `gorm:"primaryKey"`
	RequestHash string
	Status      int // claimed or answered, see Replay
	Response    string
	CreatedAt   time.Time
	// PersonalMemberID is the member whose personal data Response shows,
	// so that erasing the member can replace it; see personalReply.
	PersonalMemberID *string
}

func (idempotencyRow) TableName() string { return "idempotency_keys" }

// newID returns an opaque, time-ordered id (UUIDv7), so that ordering by id
// is ordering by creation.
func newID() string { return uuid.Must(uuid.NewV7()).String() }

// IDFloor is the least id NewID makes at t or later. An id is a UUIDv7,
// whose text begins with its Unix milliseconds in hex, so ids compare as
// the instants they were made at: every id made before t is below it.
func IDFloor(t time.Time) string {
	ms := uint64(t.UnixMilli())
	return fmt.Sprintf("%08x-%04x", ms>>16, ms&0xffff)
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
