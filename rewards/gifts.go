package rewards

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// Gift statuses.
const (
	GiftAvailable = "available"
	GiftClaimed   = "claimed"
	GiftExpired   = "expired"
)

type giftRow struct {
	ID           string `gorm:"primaryKey"`
	MemberID     string
	Year         int
	Birthday     string
	Options      string
	BonusPoints  int64
	Status       string
	ExpiresAt    time.Time
	RedemptionID *string
	RunID        string
	CreatedAt    time.Time
	ClaimedAt    *time.Time
}

func (giftRow) TableName() string { return "member_gifts" }

// Gift is a member's birthday gift of one year (§10).
type Gift struct {
	ID           string     `json:"id"`
	MemberID     string     `json:"member_id"`
	Year         int        `json:"year"`
	Options      []Reward   `json:"options"`
	BonusPoints  int64      `json:"bonus_points"`
	Status       string     `json:"status"`
	ExpiresAt    time.Time  `json:"expires_at"`
	ClaimedAt    *time.Time `json:"claimed_at"`
	RedemptionID *string    `json:"redemption_id"`
}

// GiftSummary counts what a birthday-gifts run did.
type GiftSummary struct {
	Enabled   bool        `json:"enabled"`
	Timezones int         `json:"timezones"`
	Given     int64       `json:"given"`
	Points    loyalty.Sum `json:"points"`
	Expired   int64       `json:"expired"`
}

// BirthdayGifts gives every active member whose birthday is asOf's day in
// the member's own timezone (the program's when it has none; 29 February is
// celebrated on 28 February in common years) its gift of that year:
// bonus_points as a gift entry and a choice among the configured rewards,
// to claim within claim_days. A member below min_tier gets nothing. One
// gift per member per calendar year is a unique key, so a re-run, or two
// engines racing, never give twice, and a birthday changed after the day
// brings no second gift. It also marks unclaimed gifts past their time
// expired. The statements are per distinct timezone and chunk of
// giftChunk members, never per member.
//
// An as_of in the future is refused: it would expire this year's gifts
// early and give a later year's now, whose one-per-year key would then
// block the real one. A past as_of (a run the engine missed, caught up)
// gives the gifts of that day only while their claim window is still open
// now, so no gift is born expired, and only to members enrolled by the end
// of that day, as a run on the day would have.
func (s *Service) BirthdayGifts(ctx context.Context, asOf time.Time) (GiftSummary, error) {
	var sum GiftSummary
	asOf, err := s.ledger.AsOf(asOf)
	if err != nil {
		return sum, err
	}
	// First the expiry of unclaimed gifts and the day's members, zone by
	// zone; then their gifts giftChunk members a transaction, so that the
	// balances a chunk credits are locked for one chunk, not the run: a
	// till buying for one of them waits for a chunk at most. A run that
	// stops part way leaves the gifts given so far, and the one gift per
	// member and year makes the next run give only the rest.
	type zoneDay struct {
		zone     string
		year     int
		days     []string
		expires  time.Time
		endOfDay time.Time
		ids      []string
	}
	var plan []zoneDay
	err = loyalty.WriteSet(ctx, s.ledger, func(tx *loyalty.Tx) error {
		sum, plan = GiftSummary{}, nil
		prog, err := tx.Program()
		if err != nil {
			return err
		}
		g := prog.BirthdayGift
		res := tx.DB.Exec(expireGiftsSQL, asOf)
		if res.Error != nil {
			return res.Error
		}
		sum.Expired = res.RowsAffected
		if !g.Enabled {
			return nil
		}
		sum.Enabled = true
		// The timezones of the members whose birthday can be the run's day
		// somewhere: a local date is within a day of the UTC date, so
		// those born on the UTC day or the one either side of it, read by
		// the index on (birthday's month and day, timezone). The members
		// of a zone of their own are found within the index's range for
		// it; the program's zone ("") only needs one member born in those
		// days, which the zone's own read below then reads for the day
		// alone. Reading the three days' members to find their zones read
		// 9,000 rows of a million members' table from outside the server's
		// cache (0.29 s of a 2.3 s run), where a program in one zone gives
		// the day's 3,000.
		around := birthdaysAround(asOf)
		var zones []string
		if err := tx.DB.Raw(`SELECT DISTINCT COALESCE(timezone, '') FROM members
			WHERE `+bornOn+` AND COALESCE(timezone, '') > ''
			UNION ALL SELECT '' WHERE EXISTS (SELECT 1 FROM members WHERE `+bornOn+` AND COALESCE(timezone, '') = '')`,
			around, around).Scan(&zones).Error; err != nil {
			return err
		}
		for _, zone := range zones {
			loc := prog.Location()
			if zone != "" {
				if l, err := time.LoadLocation(zone); err == nil {
					loc = l
				}
			}
			local := asOf.In(loc)
			y, m, d := local.Date()
			// The claim window runs from the start of the birthday, local time.
			day := time.Date(y, m, d, 0, 0, 0, 0, loc)
			z := zoneDay{zone: zone, year: y, days: birthdaysOn(local), expires: loyalty.TS(day.AddDate(0, 0, g.ClaimDays)),
				endOfDay: loyalty.TS(day.AddDate(0, 0, 1))}
			if !z.expires.After(tx.Now) {
				continue // a past day whose gifts could no longer be claimed
			}
			if err := tx.DB.Raw(`SELECT id FROM members WHERE `+bornOn+`
				AND COALESCE(timezone, '') = ? AND enrolled_at < ? ORDER BY id`,
				z.days, zone, z.endOfDay).Scan(&z.ids).Error; err != nil {
				return err
			}
			plan = append(plan, z)
		}
		return nil
	})
	if err != nil {
		return sum, fmt.Errorf("birthday gifts: %w", err)
	}
	for _, z := range plan {
		sum.Timezones++
		for ids := z.ids; len(ids) > 0; {
			chunk := ids[:min(len(ids), giftChunk)]
			ids = ids[len(chunk):]
			var given int64
			var points loyalty.Sum
			err := loyalty.WriteSet(ctx, s.ledger, func(tx *loyalty.Tx) error {
				var err error
				given, points, err = s.giveGifts(tx, z.year, z.days, z.zone, z.expires, z.endOfDay, chunk)
				return err
			})
			if err != nil {
				return sum, fmt.Errorf("birthday gifts: %w", err)
			}
			sum.Given += given
			sum.Points = sum.Points.Add(points)
		}
	}
	return sum, nil
}

// bornOn is the condition that a member row (of members, or the chunk's
// read of it in giveGifts) is active and was born on one of the month-days
// its argument lists: on members, the partial index members_birthday_day's
// predicate and first key.
const bornOn = `status = 'active' AND birthday IS NOT NULL AND substr(birthday, 6, 5) IN ?`

// expireGiftsSQL marks the gifts still available whose claim window ended
// by its as-of expired, read by the partial index member_gifts_open (the
// status a literal, as SQLite needs to use it), not by a scan of every
// gift ever given.
const expireGiftsSQL = `UPDATE member_gifts SET status = '` + GiftExpired + `'
	WHERE status = '` + GiftAvailable + `' AND expires_at <= ?`

// giftChunk is the most members one transaction of a birthday-gifts run
// gives gifts to: a till buying for one of them waits for the chunk's
// transaction, so a chunk is kept small (a variable for tests of runs
// over several chunks).
var giftChunk = 50

// giveGifts gives the gift of year to those of the members ids whose
// birthday is one of days in zone ("" for the program's) and who still
// qualify under the settings as tx reads them, and returns how many it
// gave and the points it credited.
func (s *Service) giveGifts(tx *loyalty.Tx, year int, days []string, zone string, expires, endOfDay time.Time, ids []string) (int64, loyalty.Sum, error) {
	prog, err := tx.Program()
	if err != nil {
		return 0, loyalty.Sum{}, err
	}
	g := prog.BirthdayGift
	if !g.Enabled {
		return 0, loyalty.Sum{}, nil
	}
	minRank := -1
	if g.MinTier != nil {
		ladder, err := tx.Ladder()
		if err != nil {
			return 0, loyalty.Sum{}, err
		}
		if t, ok := ladder.Find(*g.MinTier); ok {
			minRank = t.Rank
		}
	}
	options, _ := json.Marshal(g.RewardIDs)
	runID := loyalty.NewID()
	// The chunk's balances first, in member order, as the credit below
	// and a till lock them: a gift's member_id references its member's
	// balance row (migration 00041), whose key check then finds the row
	// held instead of locking it in the order of the insert.
	if err := tx.LockBalances(ids); err != nil {
		return 0, loyalty.Sum{}, err
	}
	// The chunk's members are read by their key first (MATERIALIZED: a
	// fence the planner keeps), then judged again. Left to itself,
	// PostgreSQL read them by the index on the birthday's day instead,
	// every member born that day for each chunk (2,985 rows read for 50
	// kept, 5.0 ms a chunk at a million members; 0.9 ms by key), a
	// night's gifts growing with the square of the base.
	q := `WITH m AS MATERIALIZED (SELECT id, status, birthday, timezone, enrolled_at, tier_code FROM members WHERE id IN ?)
		INSERT INTO member_gifts (id, member_id, year, birthday, options, bonus_points, status, expires_at, run_id, created_at)
		SELECT 'gift:' || m.id || ':' || ?, m.id, ?, m.birthday, ?, ?, 'available', ?, ?, ?
		FROM m
		WHERE ` + bornOn + ` AND COALESCE(m.timezone, '') = ? AND m.enrolled_at < ?`
	args := []any{ids, strconv.Itoa(year), year, string(options), g.BonusPoints, expires, runID, tx.Now, days, zone, endOfDay}
	if g.BonusPoints > 0 {
		// A balance the bonus would carry past int64 gets no gift,
		// rather than failing the run for every member of the day.
		q += ` AND EXISTS (SELECT 1 FROM member_balances b WHERE b.member_id = m.id
			AND b.points <= ? AND b.lifetime_earned <= ?)`
		args = append(args, int64(math.MaxInt64)-g.BonusPoints, int64(math.MaxInt64)-g.BonusPoints)
	}
	if minRank >= 0 {
		q += ` AND COALESCE((SELECT t.rank FROM tiers t WHERE t.code = m.tier_code),
			(SELECT MIN(t.rank) FROM tiers t)) >= ?`
		args = append(args, minRank)
	}
	res := tx.DB.Exec(q+" ON CONFLICT DO NOTHING", args...)
	if res.Error != nil || res.RowsAffected == 0 {
		return 0, loyalty.Sum{}, res.Error
	}
	given := res.RowsAffected
	if err := s.grantedEvents(tx, runID); err != nil {
		return 0, loyalty.Sum{}, err
	}
	if g.BonusPoints == 0 {
		return given, loyalty.Sum{}, nil
	}
	// The gift's own id is its entry's: one entry per gift.
	if err := tx.BulkCredit(loyalty.BulkCredit{Kind: loyalty.KindGift, Points: g.BonusPoints,
		Rows: `SELECT g.id AS entry_id, g.member_id, 'birthday gift ' || g.year AS description
			FROM member_gifts g WHERE g.run_id = @run`,
		Args: map[string]any{"run": runID}}); err != nil {
		return 0, loyalty.Sum{}, err
	}
	return given, loyalty.SumOf(g.BonusPoints).Times(given), nil
}

// grantedEvents emits gift.granted for every gift of the run, as the API
// lists a gift: one read of the run's gifts, one of their options (a run
// offers every gift the same), the events in multi-row inserts.
func (s *Service) grantedEvents(tx *loyalty.Tx, runID string) error {
	var rows []giftRow
	if err := tx.DB.Where("run_id = ?", runID).Order("id").Find(&rows).Error; err != nil {
		return err
	}
	evs := make([]loyalty.EventData, 0, len(rows))
	var options []Reward
	for i, r := range rows {
		g := Gift{ID: r.ID, MemberID: r.MemberID, Year: r.Year, BonusPoints: r.BonusPoints, Status: r.Status,
			ExpiresAt: r.ExpiresAt.UTC(), ClaimedAt: utcp(r.ClaimedAt), RedemptionID: r.RedemptionID, Options: options}
		if i == 0 || r.Options != rows[0].Options {
			v, err := giftView(tx.DB, r, tx.Now)
			if err != nil {
				return err
			}
			g = v
			if i == 0 {
				options = v.Options
			}
		}
		evs = append(evs, loyalty.EventData{MemberID: r.MemberID, Data: g})
	}
	return tx.EmitEach(loyalty.EventGiftGranted, evs)
}

func leap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

// birthdaysAround are the birthdays (month-day, as substr(birthday, 6, 5)
// reads them) that are some timezone's local day at the instant t: the UTC
// day and the day either side of it, and 29 February with a 28 February of
// a common year.
func birthdaysAround(t time.Time) []string {
	var days []string
	for d := -1; d <= 1; d++ {
		days = append(days, birthdaysOn(t.UTC().AddDate(0, 0, d))...)
	}
	return days
}

// birthdaysOn are the birthdays celebrated on day's date: its month-day,
// and 29 February on 28 February of a common year.
func birthdaysOn(day time.Time) []string {
	days := []string{day.Format("01-02")}
	if day.Month() == time.February && day.Day() == 28 && !leap(day.Year()) {
		days = append(days, "02-29")
	}
	return days
}

// Gifts lists a member's birthday gifts, newest first, with their options.
func (s *Service) Gifts(ctx context.Context, p loyalty.Principal, memberID string) (loyalty.List[Gift], error) {
	out := loyalty.List[Gift]{Items: []Gift{}}
	if !p.SeesMember(memberID) {
		return out, loyalty.Errorf(loyalty.NotFound, "not_found", "no member has id %q", memberID)
	}
	now := s.ledger.Now()
	err := loyalty.Read(ctx, s.ledger, func(db *gorm.DB) error {
		if _, _, _, err := loyalty.MemberTier(db, p, memberID); err != nil {
			return err
		}
		var rows []giftRow
		if err := db.Where("member_id = ?", memberID).Order("year DESC").Find(&rows).Error; err != nil {
			return err
		}
		for _, r := range rows {
			g, err := giftView(db, r, now)
			if err != nil {
				return err
			}
			out.Items = append(out.Items, g)
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("list gifts: %w", err)
	}
	return out, nil
}

func giftView(db *gorm.DB, r giftRow, now time.Time) (Gift, error) {
	g := Gift{ID: r.ID, MemberID: r.MemberID, Year: r.Year, BonusPoints: r.BonusPoints, Status: r.Status,
		ExpiresAt: r.ExpiresAt.UTC(), ClaimedAt: utcp(r.ClaimedAt), RedemptionID: r.RedemptionID, Options: []Reward{}}
	// A gift past its time is expired even before the job says so.
	if g.Status == GiftAvailable && !now.Before(r.ExpiresAt) {
		g.Status = GiftExpired
	}
	var ids []string
	_ = json.Unmarshal([]byte(r.Options), &ids)
	if len(ids) > 0 {
		var rows []rewardRow
		if err := db.Where("id IN ?", ids).Order("code").Find(&rows).Error; err != nil {
			return g, err
		}
		for _, rw := range rows {
			g.Options = append(g.Options, fromRow(rw))
		}
	}
	return g, nil
}

// ClaimInput is the body of POST /v1/members/{id}/gifts/{gift_id}/claim.
type ClaimInput struct {
	RewardID string `json:"reward_id"`
}

// ClaimGift turns a gift into a zero-point redemption of the reward chosen
// among its options. A gift is claimed once, before it expires.
func (s *Service) ClaimGift(ctx context.Context, p loyalty.Principal, memberID, giftID string, in ClaimInput, key loyalty.IdempotencyKey) (Redemption, *loyalty.Replay, error) {
	if !p.SeesMember(memberID) {
		return Redemption{}, nil, loyalty.Errorf(loyalty.NotFound, "not_found", "no member has id %q", memberID)
	}
	if in.RewardID == "" {
		return Redemption{}, nil, loyalty.Invalidf("reward_id", "is required: choose one of the gift's options")
	}
	r, rep, err := loyalty.Write(ctx, s.ledger, key, func(tx *loyalty.Tx) (Redemption, error) {
		var red Redemption
		b, err := tx.UpdateAccount(memberID, func(acct *loyalty.Account) error {
			// A claim issues a coupon as a redemption does, so an erased
			// member may no more claim than redeem.
			if !acct.Active() {
				return loyalty.Errorf(loyalty.Conflict, "member_erased", "the member was erased")
			}
			// The gift is read locked, so the expiry of the birthday job either
			// came first and is seen here, or waits for the claim.
			_, _, err := loyalty.UpdateRow(tx.DB, giftID, func(g *giftRow) error {
				if g.MemberID != memberID {
					return gorm.ErrRecordNotFound
				}
				switch {
				case g.Status == GiftClaimed:
					return loyalty.Errorf(loyalty.Conflict, "already_claimed", "the gift was already claimed")
				case g.Status == GiftExpired || !tx.Now.Before(g.ExpiresAt):
					return loyalty.Errorf(loyalty.Conflict, "gift_expired", "the gift expired at %s", g.ExpiresAt.UTC().Format(time.RFC3339))
				}
				var ids []string
				_ = json.Unmarshal([]byte(g.Options), &ids)
				ok := false
				for _, id := range ids {
					ok = ok || id == in.RewardID
				}
				if !ok {
					return loyalty.Invalidf("reward_id", "is not one of the gift's options")
				}
				rw, err := getReward(tx.DB, in.RewardID)
				if err != nil {
					return err
				}
				if red, err = s.issue(tx, acct, rw, 0, channelOf(p)); err != nil {
					return err
				}
				g.Status, g.RedemptionID, g.ClaimedAt = GiftClaimed, &red.ID, &tx.Now
				return nil
			})
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return loyalty.Errorf(loyalty.NotFound, "not_found", "the member has no gift %q", giftID)
			}
			return err
		})
		if err != nil {
			return Redemption{}, err
		}
		red.Balance = &b
		return red, tx.EmitAnswer(loyalty.EventGiftClaimed, memberID)
	})
	if err != nil {
		return Redemption{}, nil, fmt.Errorf("claim gift: %w", err)
	}
	return r, rep, nil
}
