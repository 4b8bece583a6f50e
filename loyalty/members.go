package loyalty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Member statuses.
const (
	StatusActive = "active"
	StatusErased = "erased"
)

// Member is a member as the API shows it (§6).
type Member struct {
	ID         string     `json:"id"`
	ExternalID *string    `json:"external_id"`
	Email      *string    `json:"email"`
	Phone      *string    `json:"phone"`
	FirstName  *string    `json:"first_name"`
	LastName   *string    `json:"last_name"`
	Birthday   *string    `json:"birthday"`
	Timezone   *string    `json:"timezone"`
	Status     string     `json:"status"`
	Tier       *string    `json:"tier"`
	TierSince  *time.Time `json:"tier_since"`
	EnrolledAt time.Time  `json:"enrolled_at"`
	Segments   []string   `json:"segments"`
	ChurnRisk  *string    `json:"churn_risk"`
	// CLV is the expected spend over the program's clv_horizon_weeks, in
	// minor units (§17); null until the churn-risk job fitted a spend model.
	CLV *int64 `json:"clv"`
}

// personalOf makes a stored enrolment reply erasable: it shows the member's
// personal data.
func (m Member) personalOf() string { return m.ID }

func memberFromRow(r memberRow) Member {
	return Member{ID: r.ID, ExternalID: r.ExternalID, Email: r.Email, Phone: r.Phone, FirstName: r.FirstName,
		LastName: r.LastName, Birthday: r.Birthday, Timezone: r.Timezone, Status: r.Status, Tier: r.TierCode,
		TierSince: utcp(r.TierSince), EnrolledAt: r.EnrolledAt.UTC(), Segments: []string{}, ChurnRisk: r.ChurnRisk}
}

func utcp(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// MemberInput is the body of POST /v1/members and PATCH /v1/members/{id}.
// For a patch, a field absent from the JSON is left alone and a JSON null
// clears it; Present records which fields the JSON named.
type MemberInput struct {
	ExternalID *string `json:"external_id"`
	Email      *string `json:"email"`
	Phone      *string `json:"phone"`
	FirstName  *string `json:"first_name"`
	LastName   *string `json:"last_name"`
	Birthday   *string `json:"birthday"`
	Timezone   *string `json:"timezone"`

	Present map[string]bool `json:"-"`
}

// UnmarshalJSON records which fields are present.
func (m *MemberInput) UnmarshalJSON(b []byte) error {
	type plain MemberInput
	if err := json.Unmarshal(b, (*plain)(m)); err != nil {
		return err
	}
	var err error
	m.Present, err = PresentFields(b)
	return err
}

// PresentFields names the fields a JSON object holds, so a patch can tell a
// field left out (unchanged) from a field set to null (cleared).
func PresentFields(b []byte) (map[string]bool, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	present := make(map[string]bool, len(raw))
	for k := range raw {
		present[k] = true
	}
	return present, nil
}

// contactFields are the fields a member may change on itself.
var contactFields = map[string]bool{"email": true, "phone": true, "first_name": true, "last_name": true}

var (
	e164      = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	extIDExpr = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)
)

// normalize validates the fields present and puts them in canonical form.
func (m *MemberInput) normalize(now time.Time) error {
	var v Validation
	trim := func(p **string) {
		if *p != nil {
			t := strings.TrimSpace(**p)
			if t == "" {
				*p = nil
			} else {
				*p = &t
			}
		}
	}
	for _, p := range []**string{&m.ExternalID, &m.Email, &m.Phone, &m.FirstName, &m.LastName, &m.Birthday, &m.Timezone} {
		trim(p)
	}
	if m.ExternalID != nil && !extIDExpr.MatchString(*m.ExternalID) {
		v.Add("external_id", "must be 1 to 255 printable ASCII characters without spaces")
	}
	if m.Email != nil {
		a, err := mail.ParseAddress(*m.Email)
		if err != nil || a.Address != *m.Email || len(*m.Email) > 254 {
			v.Add("email", "must be a plain e-mail address")
		} else {
			low := strings.ToLower(*m.Email)
			m.Email = &low
		}
	}
	if m.Phone != nil && !e164.MatchString(*m.Phone) {
		v.Add("phone", "must be in E.164 form, such as +14155550123")
	}
	for name, p := range map[string]*string{"first_name": m.FirstName, "last_name": m.LastName} {
		if p != nil && len(*p) > 200 {
			v.Add(name, "at most 200 characters")
		}
	}
	if m.Birthday != nil {
		d, err := time.Parse(time.DateOnly, *m.Birthday)
		if err != nil {
			v.Add("birthday", "must be a date YYYY-MM-DD")
		} else if d.After(now) || d.Year() < 1900 {
			v.Add("birthday", "must be a past date after 1900")
		}
	}
	if m.Timezone != nil {
		if _, err := time.LoadLocation(*m.Timezone); err != nil || *m.Timezone == "Local" {
			v.Add("timezone", "must be an IANA timezone such as America/New_York")
		}
	}
	return v.Err()
}

// errContactTaken is the 409 a member gets when a detail it sets on itself
// belongs to another member. It is the same whichever detail it is, and
// like every duplicate it never says whose.
var errContactTaken = &Error{Code: Conflict, Reason: "duplicate", Message: "another member already uses one of these details"}

// uniqueConflict turns a duplicate key on members into the 409 of §6,
// naming the field when it can be found (never the member holding it).
func uniqueConflict(tx *gorm.DB, id string, in MemberInput) error {
	for _, f := range []struct {
		col string
		val *string
	}{{"external_id", in.ExternalID}, {"email", in.Email}, {"phone", in.Phone}} {
		if f.val == nil {
			continue
		}
		var n int64
		if err := tx.Model(&memberRow{}).Where(f.col+" = ? AND id <> ?", *f.val, id).Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return &Error{Code: Conflict, Reason: "duplicate", Message: "another member has this " + f.col,
				Fields: []FieldError{{Field: f.col, Message: "already used by another member"}}}
		}
	}
	return nil
}

// EnrolMember creates a member with the entry tier and an empty balance.
func (s *Service) EnrolMember(ctx context.Context, in MemberInput, key IdempotencyKey) (Member, *Replay, error) {
	now := ts(s.now())
	if err := in.normalize(now); err != nil {
		return Member{}, nil, err
	}
	m, rep, err := writeOnce(ctx, s, headerGuard(key), func(tx *gorm.DB) (Member, error) {
		if err := uniqueConflict(tx, "", in); err != nil {
			return Member{}, err
		}
		_, ladder, err := loadTiers(tx)
		if err != nil {
			return Member{}, err
		}
		row := memberRow{ID: newID(), ExternalID: in.ExternalID, Email: in.Email, Phone: in.Phone, FirstName: in.FirstName,
			LastName: in.LastName, Birthday: in.Birthday, Timezone: in.Timezone, Status: StatusActive, EnrolledAt: now, UpdatedAt: now}
		if entry, ok := ladder.Entry(); ok {
			row.TierCode, row.TierSince = &entry.Code, &now
		}
		if err := tx.Create(&row).Error; err != nil {
			return Member{}, err
		}
		if err := openBalance(tx, row.ID, now); err != nil {
			return Member{}, err
		}
		return memberFromRow(row), nil
	})
	if err != nil {
		return Member{}, nil, fmt.Errorf("enrol member: %w", err)
	}
	return m, rep, nil
}

func getMember(tx *gorm.DB, id string) (memberRow, error) {
	var r memberRow
	if err := tx.Where("id = ?", id).Take(&r).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return r, Errorf(NotFound, "not_found", "no member has id %q", id)
		}
		return r, err
	}
	return r, nil
}

func hidden(id string) error { return Errorf(NotFound, "not_found", "no member has id %q", id) }

// Member returns one member; a member token sees only itself.
func (s *Service) Member(ctx context.Context, p Principal, id string) (Member, error) {
	if !p.SeesMember(id) {
		return Member{}, hidden(id)
	}
	db := s.store.read(ctx)
	r, err := getMember(db, id)
	if err != nil {
		return Member{}, fmt.Errorf("get member: %w", err)
	}
	m := memberFromRow(r)
	if err := db.Table("member_segments").Where("member_id = ?", id).Order("segment_code").Pluck("segment_code", &m.Segments).Error; err != nil {
		return Member{}, fmt.Errorf("get member: %w", err)
	}
	var risk []struct {
		ChurnRisk string
		CLV       *int64 `gorm:"column:clv"`
	}
	if err := db.Table("member_churn").Select("churn_risk, clv").Where("member_id = ?", id).Scan(&risk).Error; err != nil {
		return Member{}, fmt.Errorf("get member: %w", err)
	}
	if len(risk) == 1 {
		m.ChurnRisk, m.CLV = &risk[0].ChurnRisk, risk[0].CLV
	}
	return m, nil
}

// MemberQuery looks members up by one or more exact keys.
type MemberQuery struct {
	ExternalID, Email, Phone string
	Page                     Page
}

// FindMembers lists members matching every key given, oldest first.
// Listing members' personal data in bulk is for marketers and admins: a
// till (or a member) must give an exact key, which matches one member at
// most.
func (s *Service) FindMembers(ctx context.Context, p Principal, q MemberQuery) (List[Member], error) {
	after, err := q.Page.afterID()
	if err != nil {
		return List[Member]{}, err
	}
	if !p.Is(RoleMarketer, RoleAdmin) && q.ExternalID == "" && q.Email == "" && q.Phone == "" {
		return List[Member]{Items: []Member{}}, Errorf(Forbidden, "lookup_key_required",
			"a %s token looks a member up by external_id, email or phone; listing members is for marketers and admins", p.Role)
	}
	db := s.store.read(ctx).Model(&memberRow{})
	if q.ExternalID != "" {
		db = db.Where("external_id = ?", q.ExternalID)
	}
	if q.Email != "" {
		db = db.Where("email = ?", strings.ToLower(strings.TrimSpace(q.Email)))
	}
	if q.Phone != "" {
		db = db.Where("phone = ?", strings.TrimSpace(q.Phone))
	}
	if after != "" {
		db = db.Where("id > ?", after)
	}
	var rows []memberRow
	if err := db.Order("id").Limit(q.Page.limit() + 1).Find(&rows).Error; err != nil {
		return List[Member]{}, fmt.Errorf("find members: %w", err)
	}
	out := List[Member]{Items: []Member{}}
	for i, r := range rows {
		if i == q.Page.limit() {
			out.NextCursor = encodeCursor(rows[i-1].ID)
			break
		}
		out.Items = append(out.Items, memberFromRow(r))
	}
	return out, nil
}

// UpdateMember changes the fields present in in. A member may change only
// its own contact fields.
func (s *Service) UpdateMember(ctx context.Context, p Principal, id string, in MemberInput) (Member, error) {
	if !p.SeesMember(id) {
		return Member{}, hidden(id)
	}
	if p.Role == RoleMember {
		for f := range in.Present {
			if !contactFields[f] {
				return Member{}, Errorf(Forbidden, "forbidden", "a member may change only email, phone, first_name and last_name")
			}
		}
	}
	now := ts(s.now())
	if err := in.normalize(now); err != nil {
		return Member{}, err
	}
	var out Member
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		r, err := getMember(forUpdate(tx), id)
		if err != nil {
			return err
		}
		if r.Status == StatusErased {
			return Errorf(Conflict, "member_erased", "the member was erased")
		}
		set := func(name string, dst **string, v *string) {
			if in.Present[name] {
				*dst = v
			}
		}
		set("external_id", &r.ExternalID, in.ExternalID)
		set("email", &r.Email, in.Email)
		set("phone", &r.Phone, in.Phone)
		set("first_name", &r.FirstName, in.FirstName)
		set("last_name", &r.LastName, in.LastName)
		set("birthday", &r.Birthday, in.Birthday)
		set("timezone", &r.Timezone, in.Timezone)
		r.UpdatedAt = now
		err = uniqueConflict(tx, id, MemberInput{ExternalID: r.ExternalID, Email: r.Email, Phone: r.Phone})
		if err == nil {
			err = tx.Save(&r).Error
		}
		if err != nil && p.Role == RoleMember && isDuplicate(err) {
			// A member must not learn which of another member's details
			// it has guessed, only that the change cannot be made.
			return errContactTaken
		}
		if err != nil {
			return err
		}
		out = memberFromRow(r)
		return addEvent(tx, EventMemberUpdated, &r.ID, now, out)
	})
	if err != nil {
		return Member{}, fmt.Errorf("update member: %w", err)
	}
	return out, nil
}

// isDuplicate reports whether err is a uniqueness conflict on members,
// found by uniqueConflict or by the schema.
func isDuplicate(err error) bool {
	var e *Error
	return errors.Is(err, gorm.ErrDuplicatedKey) || (errors.As(err, &e) && e.Reason == "duplicate")
}

// EraseMember removes a member's personal data and keeps its ledger, so the
// program's books still add up. The copies go in the same transaction: a
// stored reply that showed the member (an enrolment's, replayed for a
// repeated Idempotency-Key) now shows the erased member, and the member's
// birthday gifts forget the date. Erasing an erased member changes nothing
// and writes no second audit row, so a client may safely retry.
func (s *Service) EraseMember(ctx context.Context, id string) error {
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		r, err := getMember(forUpdate(tx), id)
		if err != nil {
			return err
		}
		if r.Status == StatusErased {
			return nil
		}
		r.ExternalID, r.Email, r.Phone, r.FirstName, r.LastName, r.Birthday, r.Timezone = nil, nil, nil, nil, nil, nil, nil
		r.Status, r.UpdatedAt = StatusErased, ts(s.now())
		if err := tx.Save(&r).Error; err != nil {
			return err
		}
		if err := eraseReplies(tx, memberFromRow(r)); err != nil {
			return err
		}
		// A gift row records the birthday it was given for; the gift stays,
		// as its ledger entry does, without the date.
		if err := tx.Exec("UPDATE member_gifts SET birthday = '' WHERE member_id = ?", id).Error; err != nil {
			return err
		}
		// A feedback comment is free text and may name the member; the
		// scores stay, as its analytics count them.
		if err := tx.Exec("UPDATE feedback SET comment = NULL WHERE member_id = ?", id).Error; err != nil {
			return err
		}
		// The member's earlier events lose the same personal data, and the
		// erasure's own event carries none.
		erased := memberFromRow(r)
		if err := scrubEvents(tx, erased); err != nil {
			return err
		}
		if err := addEvent(tx, EventMemberErased, &r.ID, s.now(), erased); err != nil {
			return err
		}
		return s.Audit(ctx, tx, "member.erase", "member", id, nil)
	})
	if err != nil {
		return fmt.Errorf("erase member: %w", err)
	}
	// The tail may hold the member's events as they were.
	s.store.tail.drop()
	return nil
}
