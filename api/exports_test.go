package api

import (
	"bytes"
	"encoding/csv"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// readCSV parses an export's answer: 200, text/csv, an attachment, and
// well-formed CSV whose first row is header. It returns the rows after it.
func readCSV(t *testing.T, r resp, header []string) [][]string {
	t.Helper()
	r.must(t, 200)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Fatalf("Content-Type %q, want text/csv", ct)
	}
	if cd := r.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") {
		t.Fatalf("Content-Disposition %q, want an attachment", cd)
	}
	rows, err := csv.NewReader(bytes.NewReader(r.Body)).ReadAll()
	if err != nil {
		t.Fatalf("not CSV: %v\n%s", err, r.Body)
	}
	if len(rows) == 0 || !slices.Equal(rows[0], header) {
		t.Fatalf("header %q, want %q", rows, header)
	}
	return rows[1:]
}

// column returns a function reading a row's field by header name.
func column(header []string) func(row []string, name string) string {
	return func(row []string, name string) string {
		i := slices.Index(header, name)
		if i < 0 {
			panic("no column " + name)
		}
		return row[i]
	}
}

// exportChunk is the chunk the export tests run with: small, so that a
// handful of rows crosses several chunks and their boundaries.
const exportChunk = 3

// TestMembersExport exports members whose names need CSV quoting, one of
// them with points that became available since its balance row was kept,
// and an erased one, across several chunks: every member once, in id
// order, with the balance GET shows and without the erased member's data.
func TestMembersExport(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, loyalty.WithExportChunk(exportChunk))
		e.beautyLadder()
		admin := e.admin()
		e.do("PUT", "/v1/program", admin, map[string]any{"pending_days": 14}).must(t, 200)

		tricky := map[string]any{"external_id": "CARD,7", "email": "q@example.com", "phone": "+14155550123",
			"first_name": "Ann \"Nan\", the 2nd", "last_name": "Line\nBreak", "birthday": "1990-05-17", "timezone": "Europe/Paris"}
		trickyID := e.do("POST", "/v1/members", admin, tricky).must(t, 201).JSON(t)["id"].(string)
		formula := e.do("POST", "/v1/members", admin, map[string]any{"external_id": "F-1", "first_name": "=HYPERLINK(\"http://x\")",
			"last_name": "-2+3+cmd|' /C calc'!A0"}).must(t, 201).JSON(t)["id"].(string)
		erased := e.do("POST", "/v1/members", admin, erasedPII).must(t, 201).JSON(t)["id"].(string)
		ids := []string{trickyID, formula, erased}
		for range 5 {
			ids = append(ids, e.enrol())
		}
		e.buy(trickyID, 40000, "EXP-R-1") // VIB, with points pending for 14 days
		e.buy(erased, 1000, "EXP-R-2")
		e.do("DELETE", "/v1/members/"+erased, admin, nil).must(t, 204)
		// Past the pending days the balance row's kept state no longer
		// holds: the export finishes it as a balance read does.
		e.clock.Advance(15 * 24 * time.Hour)

		r := e.do("GET", "/v1/members/export", admin, nil)
		rows := readCSV(t, r, loyalty.MemberExportHeader)
		col := column(loyalty.MemberExportHeader)
		slices.Sort(ids)
		var got []string
		for _, row := range rows {
			got = append(got, col(row, "id"))
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("exported ids %q, want every member once in id order %q", got, ids)
		}
		for _, row := range rows {
			id := col(row, "id")
			b := e.balance(id)
			for name, want := range map[string]int64{"points_available": b.Available, "points_pending": b.Pending,
				"lifetime_earned": b.LifetimeEarned, "lifetime_redeemed": b.LifetimeRedeemed, "qualifying_spend": b.QualifyingSpend} {
				if col(row, name) != strconv.FormatInt(want, 10) {
					t.Errorf("member %s %s = %q, want %d (GET balance)", id, name, col(row, name), want)
				}
			}
			if b.Tier == nil || col(row, "tier") != b.Tier.Code {
				t.Errorf("member %s tier %q, want %+v", id, col(row, "tier"), b.Tier)
			}
			m := e.do("GET", "/v1/members/"+id, admin, nil).must(t, 200).JSON(t)
			if col(row, "status") != m["status"] {
				t.Errorf("member %s status %q, want %v", id, col(row, "status"), m["status"])
			}
			if at, err := time.Parse(time.RFC3339Nano, col(row, "enrolled_at")); err != nil || at.Format(time.RFC3339Nano) != m["enrolled_at"] {
				t.Errorf("member %s enrolled_at %q, want %v", id, col(row, "enrolled_at"), m["enrolled_at"])
			}
		}
		row := rows[slices.Index(got, trickyID)]
		for _, k := range []string{"external_id", "email", "phone", "first_name", "last_name", "birthday", "timezone"} {
			if col(row, k) != tricky[k] {
				t.Errorf("%s came back %q, want %q", k, col(row, k), tricky[k])
			}
		}
		if col(row, "tier") != "vib" || col(row, "points_available") != "400" || col(row, "points_pending") != "0" {
			t.Errorf("the buyer's row %q: want tier vib, 400 available, none pending", row)
		}
		row = rows[slices.Index(got, formula)]
		if col(row, "first_name") != "'=HYPERLINK(\"http://x\")" || col(row, "last_name") != "'-2+3+cmd|' /C calc'!A0" {
			t.Errorf("formulas not neutralised: %q", row)
		}
		row = rows[slices.Index(got, erased)]
		if col(row, "status") != "erased" {
			t.Errorf("erased member's row %q", row)
		}
		noPII(t, "members export", r.Body)
	})
}

// TestLedgerExport exports the entries of a range that holds entries of
// several members across chunks, with entries at its very start (in) and
// very end (out), by instants and by dates.
func TestLedgerExport(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, loyalty.WithExportChunk(exportChunk))
		admin := e.admin()
		a := e.do("POST", "/v1/members", admin, map[string]any{"external_id": "ACME,\"Ltd\""}).must(t, 201).JSON(t)["id"].(string)
		b := e.enrol()
		from := time.Date(2026, 2, 10, 0, 0, 0, 0, time.UTC)
		to := time.Date(2026, 2, 20, 0, 0, 0, 0, time.UTC)
		buys := []struct {
			member string
			at     time.Time
		}{
			{a, from.Add(-time.Microsecond)}, // out
			{a, from},                        // in
			{b, from.Add(time.Hour)},
			{a, from.Add(48 * time.Hour)},
			{b, from.Add(72 * time.Hour)},
			{a, to.Add(-time.Second)},
			{b, to.Add(-time.Microsecond)},
			{a, to}, // out
			{b, to.Add(time.Hour)},
		}
		for i, p := range buys {
			e.do("POST", "/v1/purchases", e.pos(), map[string]any{"member_id": p.member, "external_id": "L-" + strconv.Itoa(i),
				"store_id": "store-9", "currency": "USD", "total": 1000 + 100*i, "occurred_at": rfc(p.at)}).must(t, 201)
		}
		e.do("POST", "/v1/members/"+b+"/adjustments", admin, map[string]any{"points": -3, "reason": "fix, \"typo\"\nsecond line"}).must(t, 201)

		// want: the entries GET lists whose occurred_at is in [lo, hi), by id.
		want := func(lo, hi time.Time) map[string]loyalty.Entry {
			out := map[string]loyalty.Entry{}
			for _, m := range []string{a, b} {
				var l struct{ Items []loyalty.Entry }
				e.do("GET", "/v1/members/"+m+"/ledger?limit=500", admin, nil).must(t, 200).Decode(t, &l)
				for _, en := range l.Items {
					if !en.OccurredAt.Before(lo) && en.OccurredAt.Before(hi) {
						out[en.ID] = en
					}
				}
			}
			return out
		}
		col := column(loyalty.LedgerExportHeader)
		check := func(t *testing.T, query string, lo, hi time.Time) {
			rows := readCSV(t, e.do("GET", "/v1/ledger/export?"+query, admin, nil), loyalty.LedgerExportHeader)
			expect := want(lo, hi)
			if len(rows) != len(expect) || len(rows) <= exportChunk {
				t.Fatalf("%d rows, want %d (more than a chunk of %d)", len(rows), len(expect), exportChunk)
			}
			prev := ""
			for _, row := range rows {
				id := col(row, "entry_id")
				if id <= prev {
					t.Fatalf("entry %s after %s: not in id order", id, prev)
				}
				prev = id
				en, ok := expect[id]
				if !ok {
					t.Fatalf("entry %q is out of the range", row)
				}
				if col(row, "member_id") != en.MemberID || col(row, "kind") != en.Kind || col(row, "points") != strconv.FormatInt(en.Points, 10) ||
					col(row, "occurred_at") != rfc(en.OccurredAt) || col(row, "available_at") != rfc(en.AvailableAt) ||
					col(row, "purchase_id") != *en.PurchaseID || col(row, "description") != en.Description {
					t.Errorf("row %q, want %+v", row, en)
				}
				if col(row, "store_id") != "store-9" || !strings.HasPrefix(col(row, "purchase_external_id"), "L-") {
					t.Errorf("row %q lacks its purchase's store and receipt", row)
				}
				if en.MemberID == a && col(row, "member_external_id") != "ACME,\"Ltd\"" {
					t.Errorf("member external id %q", col(row, "member_external_id"))
				}
			}
		}
		t.Run("Instants", func(t *testing.T) {
			check(t, "from="+url.QueryEscape(rfc(from))+"&to="+url.QueryEscape(rfc(to)), from, to)
		})
		t.Run("Offsets", func(t *testing.T) {
			check(t, "from="+url.QueryEscape(from.In(time.FixedZone("", 5*3600)).Format(time.RFC3339))+"&to="+url.QueryEscape(rfc(to)), from, to)
		})
		t.Run("DatesInclusive", func(t *testing.T) {
			// The program's time zone is UTC: 2026-02-10..2026-02-19 is [from, to).
			check(t, "from=2026-02-10&to=2026-02-19", from, to)
		})
		t.Run("Adjustment", func(t *testing.T) {
			rows := readCSV(t, e.do("GET", "/v1/ledger/export?from=2026-03-01&to=2026-03-01", admin, nil), loyalty.LedgerExportHeader)
			if len(rows) != 1 || col(rows[0], "kind") != "adjust" || col(rows[0], "points") != "-3" ||
				col(rows[0], "description") != "fix, \"typo\"\nsecond line" || col(rows[0], "purchase_id") != "" {
				t.Fatalf("rows %q, want the adjustment with its reason intact", rows)
			}
			if _, err := time.Parse(time.RFC3339Nano, col(rows[0], "recorded_at")); err != nil {
				t.Errorf("recorded_at %q", col(rows[0], "recorded_at"))
			}
		})
		t.Run("EmptyRange", func(t *testing.T) {
			if rows := readCSV(t, e.do("GET", "/v1/ledger/export?from="+url.QueryEscape(rfc(from))+"&to="+url.QueryEscape(rfc(from)), admin, nil),
				loyalty.LedgerExportHeader); len(rows) != 0 {
				t.Fatalf("rows %q in an empty range", rows)
			}
		})
	})
}

// TestExportsRefuse checks what the exports refuse before streaming:
// other roles, and a missing, malformed or backwards range.
func TestExportsRefuse(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		ok := "?from=2026-01-01&to=2026-02-01"
		t.Run("Roles", func(t *testing.T) {
			for _, path := range []string{"/v1/members/export", "/v1/ledger/export" + ok} {
				for _, tok := range []string{e.marketer(), e.pos(), e.token(loyalty.RoleMember, m)} {
					if r := e.do("GET", path, tok, nil); r.Status != 403 || r.Header.Get("Content-Type") != "application/problem+json" {
						t.Errorf("GET %s: %d %s, want 403 problem", path, r.Status, r.Body)
					}
				}
				if r := e.do("GET", path, "", nil); r.Status != 401 {
					t.Errorf("GET %s without a token: %d, want 401", path, r.Status)
				}
			}
		})
		for _, c := range []struct{ name, query, field string }{
			{"NoRange", "", "from"},
			{"NoTo", "?from=2026-01-01", "to"},
			{"NoFrom", "?to=2026-01-01", "from"},
			{"NotATime", "?from=yesterday&to=2026-01-01", "from"},
			{"NotADate", "?from=2026-02-30&to=2026-03-01", "from"},
			{"NoOffset", "?from=2026-01-01T00:00:00&to=2026-03-01", "from"},
			{"Backwards", "?from=2026-02-01T00:00:00Z&to=2026-01-31T23:59:59Z", "to"},
			{"BackwardsDates", "?from=2026-02-02&to=2026-02-01", "to"},
			{"NUL", "?from=2026-01-01%00&to=2026-02-01", "from"},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := e.do("GET", "/v1/ledger/export"+c.query, e.admin(), nil)
				if r.Status != 422 || r.Header.Get("Content-Type") != "application/problem+json" {
					t.Fatalf("%d %s, want 422 problem", r.Status, r.Body)
				}
				var p Problem
				r.Decode(t, &p)
				if len(p.Errors) == 0 || p.Errors[0].Field != c.field {
					t.Fatalf("problem %+v, want an error on %s", p, c.field)
				}
			})
		}
	})
}

// TestExportsPage exports more members than one default chunk holds, of
// the members and of a segment: every row arrives once, in order.
func TestExportsPage(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		n := loyalty.DefaultExportChunk + 7
		db := e.store.DB()
		// The rows are written straight into the tables: the export reads
		// them, and enrolling this many through the API would only be slow.
		var members, balances []map[string]any
		now := loyalty.TS(e.clock.Now())
		for i := range n {
			id := "m-" + strconv.Itoa(100000+i)
			members = append(members, map[string]any{"id": id, "external_id": "X-" + strconv.Itoa(i), "status": "active",
				"enrolled_at": now, "updated_at": now})
			balances = append(balances, map[string]any{"member_id": id, "points": 0, "debt": 0, "lifetime_earned": 0,
				"lifetime_redeemed": 0, "version": 1, "updated_at": now, "open_available": 0, "open_pending": 0,
				"qualifying_spend": 0, "expiring_soon": "[]", "as_of": now, "config_version": 0})
		}
		if err := db.Table("members").CreateInBatches(members, 500).Error; err != nil {
			t.Fatal(err)
		}
		if err := db.Table("member_balances").CreateInBatches(balances, 500).Error; err != nil {
			t.Fatal(err)
		}
		rows := readCSV(t, e.do("GET", "/v1/members/export", e.admin(), nil), loyalty.MemberExportHeader)
		if len(rows) != n {
			t.Fatalf("%d rows, want %d", len(rows), n)
		}
		for i, row := range rows {
			if want := "m-" + strconv.Itoa(100000+i); row[0] != want || row[1] != "X-"+strconv.Itoa(i) {
				t.Fatalf("row %d is %q, want %s", i, row, want)
			}
		}

		// The segment export reads in the same chunks.
		var seg []map[string]any
		for _, m := range members {
			seg = append(seg, map[string]any{"member_id": m["id"], "segment_code": "loyal", "computed_at": now})
		}
		if err := db.Table("member_segments").CreateInBatches(seg, 500).Error; err != nil {
			t.Fatal(err)
		}
		rows = readCSV(t, e.do("GET", "/v1/segments/loyal/members", e.admin(), nil, "Accept", "text/csv"),
			[]string{"member_id", "external_id", "email", "phone", "first_name", "last_name", "tier"})
		if len(rows) != n {
			t.Fatalf("segment export: %d rows, want %d", len(rows), n)
		}
		for i, row := range rows {
			if want := "m-" + strconv.Itoa(100000+i); row[0] != want {
				t.Fatalf("segment export row %d is %q, want %s", i, row, want)
			}
		}
	})
}
