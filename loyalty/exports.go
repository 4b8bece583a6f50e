package loyalty

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Exports (§15) stream whole tables as rows. Each reads in chunks of
// exportChunk rows, one keyset-paged query per chunk ordered by primary
// key, and hands every chunk to the writer before reading the next, so
// memory stays bounded whatever the table's size and no query or read
// transaction stays open while a slow client takes its rows. A chunk is one
// consistent snapshot; the export as a whole is not: a row written during a
// long export appears in it when its key is past the chunk being read.

// DefaultExportChunk is how many rows one query of an export reads.
const DefaultExportChunk = 2000

// WithExportChunk sets how many rows one query of an export reads (default
// DefaultExportChunk); tests lower it to see exports cross chunks.
func WithExportChunk(n int) Option {
	return func(s *Service) {
		if n > 0 {
			s.exportChunk = n
		}
	}
}

// RowWriter receives an export's rows. Flush is called after every chunk
// and at the end, so rows reach the client as they are read; an error from
// either stops the export.
type RowWriter interface {
	Write(row []string) error
	Flush() error
}

// MemberExportHeader is the header row of ExportMembers.
var MemberExportHeader = []string{"id", "external_id", "email", "phone", "first_name", "last_name", "birthday", "timezone",
	"status", "tier", "enrolled_at", "points_available", "points_pending", "lifetime_earned", "lifetime_redeemed",
	"qualifying_spend"}

// LedgerExportHeader is the header row of ExportLedger.
var LedgerExportHeader = []string{"entry_id", "member_id", "member_external_id", "kind", "points", "occurred_at",
	"available_at", "expires_at", "purchase_id", "purchase_external_id", "store_id", "return_id", "redemption_id",
	"offer_id", "description", "recorded_at"}

// ExportMembers writes every member, in id order, with its balance as a
// balance read would show it now and its tier. An erased member keeps its
// row, status erased, without personal data. Admins only.
func (s *Service) ExportMembers(ctx context.Context, p Principal, w RowWriter) error {
	if !p.Is(RoleAdmin) {
		return Errorf(Forbidden, "forbidden", "only an admin may export the members")
	}
	if err := w.Write(MemberExportHeader); err != nil {
		return err
	}
	after := ""
	for {
		var rows [][]string
		err := s.store.snapshot(ctx, func(tx *gorm.DB) error {
			var err error
			rows, after, err = s.memberChunk(tx, after)
			return err
		})
		if err != nil {
			return fmt.Errorf("export members: %w", err)
		}
		for _, r := range rows {
			if err := w.Write(r); err != nil {
				return err
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if len(rows) < s.chunk() {
			return nil
		}
	}
}

func (s *Service) chunk() int {
	if s.exportChunk > 0 {
		return s.exportChunk
	}
	return DefaultExportChunk
}

// memberExportSQL reads one chunk of members with their balance rows: the
// chunk is taken first, by primary key, so that the join is of its rows
// alone whatever plan the database would choose for the whole table.
const memberExportSQL = `SELECT m.id, m.external_id, m.email, m.phone, m.first_name, m.last_name, m.birthday, m.timezone,
		m.status, m.tier_code, m.enrolled_at,
		b.debt, b.lifetime_earned, b.lifetime_redeemed, b.last_activity_at, b.version,
		b.open_available, b.open_pending, b.qualifying_spend, b.expiring_soon, b.as_of, b.next_change_at, b.config_version
	FROM (SELECT * FROM members WHERE id > ? ORDER BY id LIMIT ?) m JOIN member_balances b ON b.member_id = m.id
	ORDER BY m.id`

// memberChunk reads the members after id after, at most one chunk of
// them, as export rows, and returns the last id read. A balance row whose
// kept state still holds answers alone; the others are finished, as a
// balance read does (kept.go), from their open lots and window purchases,
// read for the whole chunk at once.
func (s *Service) memberChunk(tx *gorm.DB, after string) ([][]string, string, error) {
	set, err := loadSettings(tx)
	if err != nil {
		return nil, after, err
	}
	now := ts(s.now())
	sqlRows, err := tx.Raw(memberExportSQL, after, s.chunk()).Rows()
	if err != nil {
		return nil, after, err
	}
	defer sqlRows.Close()
	var accounts []*account
	for sqlRows.Next() {
		a := &account{prog: set.prog, now: now, cfg: set.version}
		m, b := &a.member, &a.balance
		if err := sqlRows.Scan(&m.ID, &m.ExternalID, &m.Email, &m.Phone, &m.FirstName, &m.LastName, &m.Birthday, &m.Timezone,
			&m.Status, &m.TierCode, &m.EnrolledAt,
			&b.Debt, &b.LifetimeEarned, &b.LifetimeRedeemed, &b.LastActivityAt, &b.Version,
			&b.OpenAvailable, &b.OpenPending, &b.QualifyingSpend, &b.ExpiringSoon, &b.AsOf, &b.NextChangeAt, &b.ConfigVersion); err != nil {
			return nil, after, err
		}
		b.MemberID = m.ID
		accounts = append(accounts, a)
	}
	if err := sqlRows.Err(); err != nil {
		return nil, after, err
	}
	if err := sqlRows.Close(); err != nil {
		return nil, after, err
	}
	if err := catchUpAll(tx, accounts); err != nil {
		return nil, after, err
	}
	out := make([][]string, 0, len(accounts))
	for _, a := range accounts {
		out = append(out, memberExportRow(a.member, a.view(set.ladder)))
		after = a.member.ID
	}
	return out, after, nil
}

// memberExportRow is one member's export row. An erased member's personal
// fields are empty: erasure cleared them (EraseMember), and the export
// does not depend on that alone.
func memberExportRow(m memberRow, b Balance) []string {
	str := func(p *string) string {
		if p == nil || m.Status == StatusErased {
			return ""
		}
		return SpreadsheetSafe(*p)
	}
	tier := ""
	if b.Tier != nil {
		tier = b.Tier.Code
	}
	return []string{m.ID, str(m.ExternalID), str(m.Email), str(m.Phone), str(m.FirstName), str(m.LastName),
		str(m.Birthday), str(m.Timezone), m.Status, tier, exportTime(m.EnrolledAt),
		strconv.FormatInt(b.Available, 10), strconv.FormatInt(b.Pending, 10),
		strconv.FormatInt(b.LifetimeEarned, 10), strconv.FormatInt(b.LifetimeRedeemed, 10),
		strconv.FormatInt(b.QualifyingSpend, 10)}
}

// LedgerRange is the half-open range [From, To) of occurred_at an
// accounting export covers.
type LedgerRange struct{ From, To time.Time }

// ParseLedgerRange reads a ledger export's required from and to: each an
// RFC 3339 instant or a date YYYY-MM-DD in loc. Instants make the
// half-open range [from, to); dates count whole days with both ends
// included, as the analytics' date ranges do (§13), so
// from=2026-11-01&to=2026-11-30 is November.
func ParseLedgerRange(from, to string, loc *time.Location) (LedgerRange, error) {
	var r LedgerRange
	var v Validation
	f, errF := rangeEnd(from, loc, false)
	if errF != nil {
		v.Add("from", "%s", errF.Error())
	}
	t, errT := rangeEnd(to, loc, true)
	if errT != nil {
		v.Add("to", "%s", errT.Error())
	}
	if errF == nil && errT == nil {
		// A date to stands for its following midnight: the day before
		// from comes out as from itself.
		if t.Before(f) || t.Equal(f) && isDate(to) {
			v.Add("to", "must not be before from")
		}
		r = LedgerRange{From: f, To: t}
	}
	return r, v.Err()
}

func isDate(s string) bool { return len(s) == len(time.DateOnly) && !strings.ContainsAny(s, "Tt") }

// rangeEnd parses one end of a range: an RFC 3339 instant, or a date whose
// start (from) or following midnight (an inclusive to) it stands for.
func rangeEnd(raw string, loc *time.Location, inclusiveDay bool) (time.Time, error) {
	const want = "an RFC 3339 time such as 2026-03-01T00:00:00Z or a date YYYY-MM-DD"
	switch {
	case raw == "":
		return time.Time{}, errors.New("is required: " + want)
	case isDate(raw):
		d, err := time.ParseInLocation(time.DateOnly, raw, loc)
		if err != nil {
			return time.Time{}, errors.New("must be a valid date YYYY-MM-DD or " + want)
		}
		if inclusiveDay {
			d = d.AddDate(0, 0, 1)
		}
		return d, nil
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil || t.Year() < 1 || t.Year() > 9999 {
		return time.Time{}, errors.New("must be " + want)
	}
	return t, nil
}

// ExportLedger writes every ledger entry of every member whose occurred_at
// (when the points were earned, spent, expired or adjusted: the instant
// the analytics of §13 count them at) is in [r.From, r.To), in the order
// the engine recorded them (entry id), with the member's external id and,
// for a purchase's entries, the purchase's receipt number and store. Each
// row also carries recorded_at, when the entry was written: history
// imported or posted late lands in the period it occurred in, and
// recorded_at tells it apart. Expiries appear once the expire-points job
// has recorded them. Admins only.
func (s *Service) ExportLedger(ctx context.Context, p Principal, r LedgerRange, w RowWriter) error {
	if !p.Is(RoleAdmin) {
		return Errorf(Forbidden, "forbidden", "only an admin may export the ledger")
	}
	if r.To.Before(r.From) {
		return Invalidf("to", "must not be before from")
	}
	if err := w.Write(LedgerExportHeader); err != nil {
		return err
	}
	from, to := ts(r.From), ts(r.To)
	after, done := "", false
	for !done {
		var rows [][]string
		err := s.store.snapshot(ctx, func(tx *gorm.DB) error {
			var err error
			rows, after, done, err = s.ledgerChunk(tx, from, to, after)
			return err
		})
		if err != nil {
			return fmt.Errorf("export ledger: %w", err)
		}
		for _, r := range rows {
			if err := w.Write(r); err != nil {
				return err
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// The ledger export walks the whole ledger by entry id, a chunk of entries
// at a time, and keeps those of the range: one pass over the primary key
// however wide or narrow the range, each query bounded by the chunk. A
// query that filtered the range first and then took the first ids would
// read and sort the whole range again for every chunk (there is no index
// on occurred_at that gives the ids' order), or the whole table when the
// planner chooses to scan it.

// ledgerChunkEndSQL finds the last id of the chunk after an id.
const ledgerChunkEndSQL = `SELECT id FROM ledger_entries WHERE id > ? ORDER BY id LIMIT 1 OFFSET ?`

// ledgerExportSQL reads the entries of a range after an id; ledgerChunk
// bounds the ids from above but for the last chunk.
const ledgerExportSQL = `SELECT e.id, e.member_id, m.external_id, e.kind, e.points, e.occurred_at, e.available_at,
		e.expires_at, e.purchase_id, p.external_id, p.store_id, e.return_id, e.redemption_id, e.offer_id, e.description,
		e.created_at
	FROM ledger_entries e JOIN members m ON m.id = e.member_id LEFT JOIN purchases p ON p.id = e.purchase_id
	WHERE e.occurred_at >= ? AND e.occurred_at < ? AND e.id > ?`

// ledgerChunk reads the entries of [from, to) among the chunk of ids after
// after, and returns where the next chunk starts and whether this was the
// last.
func (s *Service) ledgerChunk(tx *gorm.DB, from, to time.Time, after string) ([][]string, string, bool, error) {
	var ends []string
	if err := tx.Raw(ledgerChunkEndSQL, after, s.chunk()-1).Scan(&ends).Error; err != nil {
		return nil, after, false, err
	}
	query, args := ledgerExportSQL, []any{from, to, after}
	end, done := "", len(ends) == 0
	if !done {
		end = ends[0]
		query, args = query+" AND e.id <= ?", append(args, end)
	}
	sqlRows, err := tx.Raw(query+" ORDER BY e.id", args...).Rows()
	if err != nil {
		return nil, after, false, err
	}
	defer sqlRows.Close()
	var out [][]string
	for sqlRows.Next() {
		var e entryRow
		var memberExt, purchaseExt, storeID *string
		if err := sqlRows.Scan(&e.ID, &e.MemberID, &memberExt, &e.Kind, &e.Points, &e.OccurredAt, &e.AvailableAt,
			&e.ExpiresAt, &e.PurchaseID, &purchaseExt, &storeID, &e.ReturnID, &e.RedemptionID, &e.OfferID, &e.Description,
			&e.CreatedAt); err != nil {
			return nil, after, false, err
		}
		str := func(p *string) string {
			if p == nil {
				return ""
			}
			return SpreadsheetSafe(*p)
		}
		expires := ""
		if e.ExpiresAt != nil {
			expires = exportTime(*e.ExpiresAt)
		}
		out = append(out, []string{e.ID, e.MemberID, str(memberExt), e.Kind, strconv.FormatInt(e.Points, 10),
			exportTime(e.OccurredAt), exportTime(e.AvailableAt), expires, str(e.PurchaseID), str(purchaseExt), str(storeID),
			str(e.ReturnID), str(e.RedemptionID), str(e.OfferID), SpreadsheetSafe(e.Description), exportTime(e.CreatedAt)})
	}
	return out, end, done, sqlRows.Err()
}

// exportTime writes an instant as the API does: RFC 3339 in UTC.
func exportTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// SpreadsheetSafe keeps a free-text field from being read as a formula by
// the spreadsheet an export is opened in (CSV injection): a field that
// starts with =, @, a tab or a carriage return, or with + or - followed by
// anything but a phone number's or a number's characters, gets a leading
// apostrophe, which spreadsheets hide. Phone numbers such as +14155550177
// and plain numbers are left as they are.
func SpreadsheetSafe(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '@', '\t', '\r':
		return "'" + s
	case '+', '-':
		if strings.Trim(s[1:], "0123456789 ()-./") != "" {
			return "'" + s
		}
	}
	return s
}
