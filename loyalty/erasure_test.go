package loyalty_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/migrations"
)

func ptrTo(s string) *string { return &s }

// TestAuditRedactsMemberPersonalData writes member changes to the audit
// trail as a careless caller might, values and all: the rows keep which
// personal fields changed but none of their values, while other targets'
// changes keep theirs.
func TestAuditRedactsMemberPersonalData(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		svc, store := newAuditService(t, dialect)
		ctx := context.Background()
		db := store.DB()
		before := loyalty.Member{ID: "m-1", ExternalID: ptrTo("CARD-991"), Email: ptrTo("jo.private@example.com"),
			FirstName: ptrTo("Jolanda"), Birthday: ptrTo("1984-02-29"), Timezone: ptrTo("Asia/Tokyo"), Status: loyalty.StatusActive}
		after := before
		after.Email, after.Phone, after.LastName = ptrTo("jo.other@example.com"), ptrTo("+14155550123"), ptrTo("Privatova")
		for _, c := range []struct {
			action string
			change any
		}{
			{"member.create", loyalty.Change(nil, before)},
			{"member.update", loyalty.Change(before, after)},
			{"member.note", map[string]any{"members": []any{after}}},
		} {
			if err := svc.Audit(ctx, db, c.action, "member", "m-1", c.change); err != nil {
				t.Fatal(err)
			}
		}
		if err := svc.Audit(ctx, db, "program.update", "program", "1",
			loyalty.Change(map[string]any{"timezone": "UTC"}, map[string]any{"timezone": "Asia/Tokyo"})); err != nil {
			t.Fatal(err)
		}
		var rows []struct{ Action, Change string }
		if err := db.Raw("SELECT action, change FROM audit_log ORDER BY action").Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Action == "program.update" {
				if !strings.Contains(r.Change, "Asia/Tokyo") {
					t.Errorf("a program change lost its values: %s", r.Change)
				}
				continue
			}
			for _, pd := range []string{"CARD-991", "jo.private", "jo.other", "Jolanda", "Privatova", "1984-02-29", "4155550123", "Asia/Tokyo"} {
				if strings.Contains(r.Change, pd) {
					t.Errorf("%s keeps personal data %q: %s", r.Action, pd, r.Change)
				}
			}
			if r.Action == "member.update" {
				var c struct{ Old, New map[string]any }
				if err := json.Unmarshal([]byte(r.Change), &c); err != nil {
					t.Fatal(err)
				}
				if c.New["email"] != loyalty.Redacted || c.New["phone"] != loyalty.Redacted || c.Old["phone"] != nil ||
					c.New["last_name"] != loyalty.Redacted || len(c.New) != 3 {
					t.Errorf("member.update %s, want which fields changed (email, phone, last_name) without values", r.Change)
				}
			}
		}
	})
}

// TestMigrationErasesEarlierCopies replays an engine that erased a member
// before erasure reached stored replies: the migration names the
// enrolment replies it finds and takes the personal data out of those of
// erased members and out of their gifts, leaving everyone else's alone;
// erasures after it clean up on their own.
func TestMigrationErasesEarlierCopies(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		store := loyaltytest.MustOpen(t, dialect)
		clock := loyaltytest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		svc := loyalty.NewService(store, loyalty.WithClock(clock.Now))
		db := store.DB()

		enrol := func(n, email string) (loyalty.Member, loyalty.MemberInput, loyalty.IdempotencyKey) {
			in := loyalty.MemberInput{ExternalID: ptrTo("CARD-" + n), Email: ptrTo(email), Phone: ptrTo("+1415555010" + n),
				FirstName: ptrTo("First" + n), LastName: ptrTo("Last" + n), Birthday: ptrTo("1990-03-0" + n), Timezone: ptrTo("Europe/Oslo")}
			key := loyalty.IdempotencyKey{Key: "legacy-" + n, Subject: "pos:till-1", RequestHash: "hash-" + n}
			m, rep, err := svc.EnrolMember(ctx, in, key)
			if err != nil || rep != nil {
				t.Fatalf("enrol %s: %v %v", n, rep, err)
			}
			return m, in, key
		}
		gone, goneIn, goneKey := enrol("1", "gone@example.com")
		kept, _, _ := enrol("2", "kept@example.com")
		buy := `{"id":"p-1","external_id":"R-1","store_id":"store-1","member_id":"` + gone.ID + `","total":100}`
		if err := db.Exec("INSERT INTO idempotency_keys (scope, key, request_hash, status, response, created_at) VALUES (?, ?, ?, ?, ?, ?)",
			"key:pos:till-1", "legacy-buy", "hash-buy", 201, buy, clock.Now()).Error; err != nil {
			t.Fatal(err)
		}

		// Back to the schema before the migration, and an erasure as it was
		// then: the member row only.
		sqlDB, err := db.DB()
		if err != nil {
			t.Fatal(err)
		}
		sub, err := fs.Sub(migrations.FS, dialect)
		if err != nil {
			t.Fatal(err)
		}
		gd := goose.DialectSQLite3
		if dialect == loyalty.Postgres {
			gd = goose.DialectPostgres
		}
		p, err := goose.NewProvider(gd, sqlDB, sub)
		if err != nil {
			t.Fatal(err)
		}
		var version int64
		for _, s := range p.ListSources() {
			if strings.Contains(s.Path, "erasure_personal_copies") {
				version = s.Version
			}
		}
		if version == 0 {
			t.Fatal("no erasure_personal_copies migration")
		}
		if _, err := p.DownTo(ctx, version-1); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			`UPDATE members SET external_id = NULL, email = NULL, phone = NULL, first_name = NULL, last_name = NULL,
				birthday = NULL, timezone = NULL, status = 'erased' WHERE id = ?`,
			`INSERT INTO member_gifts (id, member_id, year, birthday, options, bonus_points, status, expires_at, run_id, created_at)
				SELECT 'gift:' || id || ':2026', id, 2026, '1990-03-01', '[]', 0, 'available', enrolled_at, 'run-1', enrolled_at
				FROM members WHERE id = ?`,
		} {
			if err := db.Exec(q, gone.ID).Error; err != nil {
				t.Fatal(err)
			}
		}
		if _, err := p.Up(ctx); err != nil {
			t.Fatal(err)
		}

		type row struct {
			Key              string
			Response         string
			PersonalMemberID *string
		}
		var rows []row
		if err := db.Raw("SELECT key, response, personal_member_id FROM idempotency_keys ORDER BY key").Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		got := map[string]row{}
		for _, r := range rows {
			got[r.Key] = r
		}
		named := func(r row) string {
			if r.PersonalMemberID == nil {
				return ""
			}
			return *r.PersonalMemberID
		}
		if r := got["legacy-1"]; named(r) != gone.ID {
			t.Errorf("the erased member's enrolment reply names %q, want %s", named(r), gone.ID)
		}
		if r := got["legacy-2"]; named(r) != kept.ID || !strings.Contains(r.Response, "kept@example.com") {
			t.Errorf("the active member's enrolment reply: named %q, %s; want named %s and unchanged", named(r), r.Response, kept.ID)
		}
		if r := got["legacy-buy"]; named(r) != "" || r.Response != buy {
			t.Errorf("a purchase reply: named %q, %s; want unnamed and unchanged", named(r), r.Response)
		}
		_, rep, err := svc.EnrolMember(ctx, goneIn, goneKey)
		if err != nil || rep == nil {
			t.Fatalf("replay of the erased member's enrolment: %v %v", rep, err)
		}
		var m loyalty.Member
		if err := json.Unmarshal(rep.Body, &m); err != nil {
			t.Fatal(err)
		}
		if m.ID != gone.ID || m.Status != loyalty.StatusErased || m.ExternalID != nil || m.Email != nil || m.Phone != nil ||
			m.FirstName != nil || m.LastName != nil || m.Birthday != nil || m.Timezone != nil {
			t.Errorf("replay after the migration: %s", rep.Body)
		}
		var birthdays []string
		if err := db.Raw("SELECT birthday FROM member_gifts").Scan(&birthdays).Error; err != nil {
			t.Fatal(err)
		}
		if len(birthdays) != 1 || birthdays[0] != "" {
			t.Errorf("gift birthdays %q after the migration, want one blank", birthdays)
		}

		// The reply the migration named is erased with its member.
		if err := svc.EraseMember(ctx, kept.ID); err != nil {
			t.Fatal(err)
		}
		var resp string
		if err := db.Raw("SELECT response FROM idempotency_keys WHERE key = 'legacy-2'").Scan(&resp).Error; err != nil {
			t.Fatal(err)
		}
		if strings.Contains(resp, "kept@example.com") || !strings.Contains(resp, `"status":"erased"`) {
			t.Errorf("the named reply after erasure: %s", resp)
		}
	})
}
