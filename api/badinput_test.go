package api

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// hostileRow is one bad request and the problem it must be answered with.
type hostileRow struct {
	name    string
	method  string
	path    string
	body    any // nil, a raw string or []byte, or a value sent as JSON
	headers []string
	status  int
	field   string // for 422: a field the errors array must name
}

// chunked is a body sent with chunked transfer encoding, without a
// Content-Length the server could check up front.
type chunked []byte

// oversized reports whether body is over the limit and so must go through
// a socket (see listen and overSocket).
func oversized(body any) bool {
	switch b := body.(type) {
	case chunked:
		return true
	case []byte:
		return len(b) > BodyLimit
	}
	return false
}

// listen serves e's app on a real TCP listener until the test ends and
// returns its address. app.Test turns a body over the limit into an error
// instead of returning the answer the server writes, so the 413 rows go
// through a socket.
func listen(t testing.TB, e *env) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.app.Listener(ln) }()
	t.Cleanup(func() { _ = e.app.ShutdownWithTimeout(5 * time.Second) })
	return ln.Addr().String()
}

// overSocket sends the head of a request with an oversized body to the app
// listening at addr and reads the answer. It announces the body (its
// Content-Length, or the first chunk's size) without sending it: the server
// must refuse from the announcement, and a server that closes a connection
// with unread data would reset it and lose the answer before the client
// reads it.
func overSocket(t testing.TB, addr, method, path, token string, body any, headers ...string) resp {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var head strings.Builder
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: loyalty.test\r\nContent-Type: application/json\r\n", method, path)
	if token != "" {
		fmt.Fprintf(&head, "Authorization: Bearer %s\r\n", token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&head, "%s: %s\r\n", headers[i], headers[i+1])
	}
	switch b := body.(type) {
	case chunked:
		fmt.Fprintf(&head, "Transfer-Encoding: chunked\r\n\r\n%x\r\n", len(b))
	case []byte:
		fmt.Fprintf(&head, "Content-Length: %d\r\n\r\n", len(b))
	default:
		t.Fatalf("overSocket: unsupported body %T", body)
	}
	if _, err := io.WriteString(conn, head.String()); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: out}
}

// withKeys returns a copy of base with the given keys set; a nil value
// removes the key.
func withKeys(base map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(base)+len(kv)/2)
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
			continue
		}
		out[k] = kv[i+1]
	}
	return out
}

// basketLines makes n basket lines of amount each.
func basketLines(n int, amount int64) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = map[string]any{"sku": fmt.Sprintf("SKU-%d", i), "category": "skincare", "amount": amount}
	}
	return out
}

// padded is a JSON purchase body of at least size bytes.
func padded(member string, size int) []byte {
	head := fmt.Sprintf(`{"member_id":%q,"currency":"USD","total":1000,"pad":"`, member)
	return []byte(head + strings.Repeat("a", size-len(head)) + `"}`)
}

func TestHostileBodies(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		victim := e.enrol()
		buyer := e.enrol()
		dup := e.do("POST", "/v1/members", e.pos(), map[string]any{"external_id": "DUP-1", "email": "dup@example.com",
			"phone": "+14155550123"}).must(t, 201).JSON(t)["id"].(string)
		open := e.buy(buyer, 5000, "HB-OPEN")["id"].(string)
		refunded := e.buy(buyer, 3000, "HB-REFUNDED")["id"].(string)
		e.do("POST", "/v1/purchases/"+refunded+"/returns", e.pos(), map[string]any{"external_id": "HB-RET-1", "amount": 3000}).must(t, 201)

		var membersBefore int64
		if err := e.store.DB().Raw("SELECT COUNT(*) FROM members").Scan(&membersBefore).Error; err != nil {
			t.Fatal(err)
		}

		pos, admin, marketer := e.pos(), e.admin(), e.marketer()
		now := e.clock.Now()
		buy := map[string]any{"member_id": victim, "external_id": "HB-1", "store_id": "store-1", "currency": "USD", "total": 1000}
		ledger := "/v1/members/" + victim + "/ledger"
		const (
			malformed = http.StatusBadRequest
			notFound  = http.StatusNotFound
			conflict  = http.StatusConflict
			tooLarge  = http.StatusRequestEntityTooLarge
			invalid   = http.StatusUnprocessableEntity
		)
		type row = hostileRow
		p := func(name string, body any, status int, field string, headers ...string) row {
			return row{name: "purchase/" + name, method: "POST", path: "/v1/purchases", body: body, headers: headers, status: status, field: field}
		}
		rows := []row{
			// Unreadable bodies.
			p("TruncatedJSON", `{"member_id": "x", "total": `, malformed, ""),
			p("TrailingComma", `{"member_id": "x", "total": 100,}`, malformed, ""),
			p("SingleQuotes", `{'member_id': 'x'}`, malformed, ""),
			p("TwoObjects", `{"total": 1}{"total": 2}`, malformed, ""),
			p("TrailingGarbage", `{"total": 1} xyz`, malformed, ""),
			p("Array", `[{"member_id": "x", "total": 100}]`, malformed, ""),
			p("String", `"purchase"`, malformed, ""),
			p("Number", `42`, malformed, ""),
			p("EmptyBody", "", malformed, ""),
			p("WhitespaceBody", " \n\t ", malformed, ""),
			p("DeepNesting", strings.Repeat("[", 100_000), malformed, ""),
			p("NotUTF8JSON", []byte{0xff, 0xfe, '{', '}'}, malformed, ""),
			// Wrong types.
			p("TotalString", withKeys(buy, "total", "100"), invalid, "total"),
			p("TotalFraction", withKeys(buy, "total", 10.5), invalid, "total"),
			p("TotalBool", withKeys(buy, "total", true), invalid, "total"),
			p("ItemsObject", withKeys(buy, "items", map[string]any{}), invalid, "items"),
			p("ItemsString", withKeys(buy, "items", "SKU-1"), invalid, "items"),
			p("ItemAmountString", withKeys(buy, "items", []map[string]any{{"sku": "A", "amount": "1000"}}), invalid, "items"),
			p("MemberIDNumber", withKeys(buy, "member_id", 17), invalid, "member_id"),
			p("OccurredAtNumber", withKeys(buy, "occurred_at", now.Unix()), invalid, "occurred_at"),
			// Amounts.
			p("MissingTotal", withKeys(buy, "total", nil), invalid, "total"),
			p("ZeroTotal", withKeys(buy, "total", 0), invalid, "total"),
			p("NegativeTotal", withKeys(buy, "total", -100), invalid, "total"),
			p("TotalAboveMax", withKeys(buy, "total", loyalty.MaxTotal+1), invalid, "total"),
			p("TotalMaxInt64", `{"member_id":"`+victim+`","currency":"USD","total":9223372036854775807}`, invalid, "total"),
			p("TotalOverflowInt64", `{"member_id":"`+victim+`","currency":"USD","total":9223372036854775808}`, invalid, "total"),
			p("TotalUnderflowInt64", `{"member_id":"`+victim+`","currency":"USD","total":-9223372036854775809}`, invalid, "total"),
			p("Total1e30", `{"member_id":"`+victim+`","currency":"USD","total":1e30}`, invalid, "total"),
			p("ItemsDoNotSum", withKeys(buy, "items", []map[string]any{{"sku": "A", "amount": 400}, {"sku": "B", "amount": 500}}), invalid, "items"),
			p("ItemsExceedTotal", withKeys(buy, "items", basketLines(2, 1000)), invalid, "items"),
			p("ItemAmountNegative", withKeys(buy, "total", 1000, "items", []map[string]any{{"sku": "A", "amount": 2000}, {"sku": "B", "amount": -1000}}), invalid, "items[1].amount"),
			p("ItemAmountMissing", withKeys(buy, "items", []map[string]any{{"sku": "A"}}), invalid, "items[0].amount"),
			p("ItemAmountMaxInt64", `{"member_id":"`+victim+`","currency":"USD","total":1000,"items":[{"sku":"A","amount":9223372036854775807}]}`, invalid, "items"),
			p("ItemQuantityZero", withKeys(buy, "items", []map[string]any{{"sku": "A", "quantity": 0, "amount": 1000}}), invalid, "items[0].quantity"),
			// Ten lines of MaxTotal overflow int64 when summed.
			p("ItemsSumAboveMax", withKeys(buy, "total", loyalty.MaxTotal, "items", basketLines(10, loyalty.MaxTotal)), invalid, "items"),
			// Two lines of MaxInt64 overflow int64; with a third line of
			// 1002 the wrapped sum is exactly the total of 1000.
			p("ItemsSumOverflowsToTotal", `{"member_id":"`+victim+`","currency":"USD","total":1000,"items":[`+
				`{"sku":"A","amount":9223372036854775807},{"sku":"B","amount":9223372036854775807},{"sku":"C","amount":1002}]}`, invalid, "items"),
			p("ItemsSumOverflowsInt64", `{"member_id":"`+victim+`","currency":"USD","total":1000,"items":[`+
				`{"sku":"A","amount":9223372036854775807},{"sku":"B","amount":1}]}`, invalid, "items"),
			p("TooManyItems", withKeys(buy, "total", loyalty.MaxItems+1, "items", basketLines(loyalty.MaxItems+1, 1)), invalid, "items"),
			// References and rules.
			p("MissingMember", withKeys(buy, "member_id", nil), invalid, "member_id"),
			p("UnknownMember", withKeys(buy, "member_id", "no-such-member"), invalid, "member_id"),
			p("WrongCurrency", withKeys(buy, "currency", "EUR"), invalid, "currency"),
			p("LowercaseCurrency", withKeys(buy, "currency", "usd"), invalid, "currency"),
			p("OccurredInFuture", withKeys(buy, "occurred_at", now.Add(6*time.Minute).Format(time.RFC3339)), invalid, "occurred_at"),
			p("OccurredFarFuture", withKeys(buy, "occurred_at", "9999-12-31T23:59:59Z"), invalid, "occurred_at"),
			p("OccurredNotATime", withKeys(buy, "occurred_at", "yesterday"), invalid, "occurred_at"),
			p("OccurredDateOnly", withKeys(buy, "occurred_at", "2026-03-01"), invalid, "occurred_at"),
			p("OccurredNoOffset", withKeys(buy, "occurred_at", "2026-03-01T11:00:00"), invalid, "occurred_at"),
			p("OccurredYearZero", withKeys(buy, "occurred_at", "0000-01-01T00:00:00Z"), invalid, "occurred_at"),
			p("ExternalIDSpace", withKeys(buy, "external_id", "R 1"), invalid, "external_id"),
			p("ExternalIDTooLong", withKeys(buy, "external_id", strings.Repeat("R", 256)), invalid, "external_id"),
			p("ExternalIDNul", withKeys(buy, "external_id", "R\x001"), invalid, "external_id"),
			p("StoreIDNonASCII", withKeys(buy, "store_id", "störe"), invalid, "store_id"),
			p("ChannelBad", withKeys(buy, "channel", "POS!"), invalid, "channel"),
			// Size.
			{name: "purchase/TwoMiB", method: "POST", path: "/v1/purchases", body: padded(victim, 2<<20), status: tooLarge},
			{name: "purchase/JustOverLimit", method: "POST", path: "/v1/purchases", body: padded(victim, BodyLimit+1), status: tooLarge},
			{name: "purchase/TwoMiBChunked", method: "POST", path: "/v1/purchases", body: chunked(padded(victim, 2<<20)), status: tooLarge},
			{name: "member/TwoMiB", method: "POST", path: "/v1/members", body: padded(victim, 2<<20), status: tooLarge},
			// Idempotency-Key headers on an otherwise valid purchase.
			p("IdempotencyKeyTooLong", buy, invalid, "Idempotency-Key", "Idempotency-Key", strings.Repeat("k", 256)),
			p("IdempotencyKeyNonASCII", buy, invalid, "Idempotency-Key", "Idempotency-Key", "clé-1"),
			p("IdempotencyKeyControl", buy, invalid, "Idempotency-Key", "Idempotency-Key", "key\x7f1"),

			// Quotes share the purchase rules.
			{"quote/Malformed", "POST", "/v1/purchases/quote", `{"total":`, nil, malformed, ""},
			{"quote/Array", "POST", "/v1/purchases/quote", `[]`, nil, malformed, ""},
			{"quote/ZeroTotal", "POST", "/v1/purchases/quote", withKeys(buy, "total", 0), nil, invalid, "total"},
			{"quote/Total1e30", "POST", "/v1/purchases/quote", `{"member_id":"` + victim + `","total":1e30}`, nil, invalid, "total"},
			{"quote/UnknownMember", "POST", "/v1/purchases/quote", withKeys(buy, "member_id", "no-such-member"), nil, invalid, "member_id"},
			{"quote/WrongCurrency", "POST", "/v1/purchases/quote", withKeys(buy, "currency", "GBP"), nil, invalid, "currency"},
			{"quote/ItemsSumOverflowsToTotal", "POST", "/v1/purchases/quote", `{"member_id":"` + victim + `","currency":"USD","total":1000,"items":[{"amount":9223372036854775807},{"amount":9223372036854775807},{"amount":1002}]}`, nil, invalid, "items"},
			{"quote/OccurredInFuture", "POST", "/v1/purchases/quote", withKeys(buy, "occurred_at", now.Add(time.Hour).Format(time.RFC3339)), nil, invalid, "occurred_at"},

			// Ledger paging.
			{"ledger/LimitZero", "GET", ledger + "?limit=0", nil, nil, invalid, "limit"},
			{"ledger/Limit501", "GET", ledger + "?limit=501", nil, nil, invalid, "limit"},
			{"ledger/LimitNegative", "GET", ledger + "?limit=-1", nil, nil, invalid, "limit"},
			{"ledger/LimitNotANumber", "GET", ledger + "?limit=ten", nil, nil, invalid, "limit"},
			{"ledger/LimitHuge", "GET", ledger + "?limit=99999999999999999999", nil, nil, invalid, "limit"},
			{"ledger/CursorGarbage", "GET", ledger + "?cursor=%21%21not-a-cursor%21%21", nil, nil, invalid, "cursor"},
			{"ledger/CursorOnePart", "GET", ledger + "?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("x")), nil, nil, invalid, "cursor"},
			{"ledger/CursorBadTime", "GET", ledger + "?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("yesterday\x1fabc")), nil, nil, invalid, "cursor"},
			{"ledger/UnknownMember", "GET", "/v1/members/no-such-member/ledger", nil, nil, notFound, ""},
			{"members/LimitZero", "GET", "/v1/members?limit=0", nil, nil, invalid, "limit"},
			{"members/CursorGarbage", "GET", "/v1/members?cursor=%7E%7E", nil, nil, invalid, "cursor"},

			// Members.
			{"member/Array", "POST", "/v1/members", `[]`, nil, malformed, ""},
			{"member/String", "POST", "/v1/members", `"member"`, nil, malformed, ""},
			{"member/Empty", "POST", "/v1/members", "", nil, malformed, ""},
			{"member/Malformed", "POST", "/v1/members", `{"email":`, nil, malformed, ""},
			{"member/EmailNumber", "POST", "/v1/members", map[string]any{"email": 5}, nil, invalid, "email"},
			{"member/EmailInvalid", "POST", "/v1/members", map[string]any{"email": "not-an-email"}, nil, invalid, "email"},
			{"member/EmailDisplayName", "POST", "/v1/members", map[string]any{"email": "Eve <eve@example.com>"}, nil, invalid, "email"},
			{"member/EmailTooLong", "POST", "/v1/members", map[string]any{"email": strings.Repeat("a", 250) + "@example.com"}, nil, invalid, "email"},
			{"member/PhoneNotE164", "POST", "/v1/members", map[string]any{"phone": "4155550123"}, nil, invalid, "phone"},
			{"member/PhoneLeadingZero", "POST", "/v1/members", map[string]any{"phone": "+0123456789"}, nil, invalid, "phone"},
			{"member/PhoneLetters", "POST", "/v1/members", map[string]any{"phone": "+1415CALLNOW"}, nil, invalid, "phone"},
			{"member/BirthdayNotADate", "POST", "/v1/members", map[string]any{"birthday": "1990-02-30"}, nil, invalid, "birthday"},
			{"member/BirthdayFormat", "POST", "/v1/members", map[string]any{"birthday": "03/01/1990"}, nil, invalid, "birthday"},
			{"member/BirthdayFuture", "POST", "/v1/members", map[string]any{"birthday": "2027-01-01"}, nil, invalid, "birthday"},
			{"member/TimezoneUnknown", "POST", "/v1/members", map[string]any{"timezone": "Mars/Olympus_Mons"}, nil, invalid, "timezone"},
			{"member/TimezoneLocal", "POST", "/v1/members", map[string]any{"timezone": "Local"}, nil, invalid, "timezone"},
			{"member/TimezonePath", "POST", "/v1/members", map[string]any{"timezone": "../../../etc/passwd"}, nil, invalid, "timezone"},
			{"member/ExternalIDSpace", "POST", "/v1/members", map[string]any{"external_id": "C 1"}, nil, invalid, "external_id"},
			{"member/FirstNameTooLong", "POST", "/v1/members", map[string]any{"first_name": strings.Repeat("x", 201)}, nil, invalid, "first_name"},
			{"member/DuplicateExternalID", "POST", "/v1/members", map[string]any{"external_id": "DUP-1"}, nil, conflict, ""},
			{"member/DuplicateEmail", "POST", "/v1/members", map[string]any{"email": "DUP@Example.com"}, nil, conflict, ""},
			{"member/DuplicatePhone", "POST", "/v1/members", map[string]any{"phone": "+14155550123"}, nil, conflict, ""},
			{"member/PatchDuplicateEmail", "PATCH", "/v1/members/" + victim, map[string]any{"email": "dup@example.com"}, nil, conflict, ""},
			{"member/PatchDuplicateExternalID", "PATCH", "/v1/members/" + victim, map[string]any{"external_id": "DUP-1"}, nil, conflict, ""},
			{"member/PatchInvalidPhone", "PATCH", "/v1/members/" + victim, map[string]any{"phone": "call me"}, nil, invalid, "phone"},
			{"member/PatchUnknown", "PATCH", "/v1/members/no-such-member", map[string]any{"first_name": "X"}, nil, notFound, ""},
			{"member/IdempotencyKeyTooLong", "POST", "/v1/members", map[string]any{"external_id": "HB-NEW"},
				[]string{"Idempotency-Key", strings.Repeat("k", 256)}, invalid, "Idempotency-Key"},

			// Tiers.
			{"tier/Rank0WithSpend", "PUT", "/v1/tiers/insider", map[string]any{"name": "Insider", "rank": 0, "earn_multiplier": "1", "qualifying_spend": 500}, nil, invalid, "qualifying_spend"},
			{"tier/NewRank0WithSpend", "PUT", "/v1/tiers/base", map[string]any{"name": "Base", "rank": 0, "earn_multiplier": "1", "qualifying_spend": 100}, nil, conflict, ""},
			{"tier/MultiplierWord", "PUT", "/v1/tiers/gold", map[string]any{"name": "Gold", "rank": 3, "earn_multiplier": "abc", "qualifying_spend": 500000}, nil, invalid, "earn_multiplier"},
			{"tier/MultiplierSuffix", "PUT", "/v1/tiers/gold", map[string]any{"name": "Gold", "rank": 3, "earn_multiplier": "1.5x", "qualifying_spend": 500000}, nil, invalid, "earn_multiplier"},
			{"tier/MultiplierBool", "PUT", "/v1/tiers/gold", map[string]any{"name": "Gold", "rank": 3, "earn_multiplier": true, "qualifying_spend": 500000}, nil, invalid, "earn_multiplier"},
			{"tier/MultiplierNegative", "PUT", "/v1/tiers/gold", map[string]any{"name": "Gold", "rank": 3, "earn_multiplier": "-1", "qualifying_spend": 500000}, nil, invalid, "earn_multiplier"},
			{"tier/MultiplierTooPrecise", "PUT", "/v1/tiers/gold", map[string]any{"name": "Gold", "rank": 3, "earn_multiplier": "1.0000001", "qualifying_spend": 500000}, nil, invalid, "earn_multiplier"},
			{"tier/MultiplierHuge", "PUT", "/v1/tiers/gold", map[string]any{"name": "Gold", "rank": 3, "earn_multiplier": "1e400", "qualifying_spend": 500000}, nil, invalid, "earn_multiplier"},
			{"tier/RankString", "PUT", "/v1/tiers/gold", map[string]any{"name": "Gold", "rank": "3", "earn_multiplier": "2", "qualifying_spend": 500000}, nil, invalid, "rank"},
			{"tier/SpendNegative", "PUT", "/v1/tiers/gold", map[string]any{"name": "Gold", "rank": 3, "earn_multiplier": "2", "qualifying_spend": -1}, nil, invalid, "qualifying_spend"},
			{"tier/SpendBelowLowerRank", "PUT", "/v1/tiers/gold", map[string]any{"name": "Gold", "rank": 3, "earn_multiplier": "2", "qualifying_spend": 100}, nil, invalid, "qualifying_spend"},
			{"tier/MissingName", "PUT", "/v1/tiers/gold", map[string]any{"rank": 3, "earn_multiplier": "2", "qualifying_spend": 500000}, nil, invalid, "name"},
			{"tier/BadCode", "PUT", "/v1/tiers/Gold_Tier!", map[string]any{"name": "Gold", "rank": 3, "earn_multiplier": "2", "qualifying_spend": 500000}, nil, invalid, "code"},
			{"tier/CodeMismatch", "PUT", "/v1/tiers/gold", map[string]any{"code": "platinum", "name": "Gold", "rank": 3, "earn_multiplier": "2", "qualifying_spend": 500000}, nil, invalid, "code"},
			{"tier/Array", "PUT", "/v1/tiers/gold", `[]`, nil, malformed, ""},
			{"tier/DeleteHeld", "DELETE", "/v1/tiers/insider", nil, nil, conflict, ""},
			{"tier/DeleteUnknown", "DELETE", "/v1/tiers/no-such-tier", nil, nil, notFound, ""},

			// Program.
			{"program/UnknownCurrency", "PUT", "/v1/program", map[string]any{"currency": "XYZ"}, nil, invalid, "currency"},
			{"program/LowercaseCurrency", "PUT", "/v1/program", map[string]any{"currency": "usd"}, nil, invalid, "currency"},
			{"program/BadTimezone", "PUT", "/v1/program", map[string]any{"timezone": "Nowhere/Special"}, nil, invalid, "timezone"},
			{"program/LocalTimezone", "PUT", "/v1/program", map[string]any{"timezone": "Local"}, nil, invalid, "timezone"},
			{"program/NegativePendingDays", "PUT", "/v1/program", map[string]any{"pending_days": -1}, nil, invalid, "pending_days"},
			{"program/PendingDaysString", "PUT", "/v1/program", map[string]any{"pending_days": "3"}, nil, invalid, "pending_days"},
			{"program/PendingDaysHuge", "PUT", "/v1/program", `{"pending_days": 1e30}`, nil, invalid, "pending_days"},
			{"program/PointsPerUnitWord", "PUT", "/v1/program", map[string]any{"points_per_unit": "one"}, nil, invalid, "points_per_unit"},
			{"program/ExpiryPolicy", "PUT", "/v1/program", map[string]any{"expiry_policy": "forever"}, nil, invalid, "expiry_policy"},
			{"program/NestedType", "PUT", "/v1/program", map[string]any{"segments": map[string]any{"loyal_window_weeks": "8"}}, nil, invalid, "segments.loyal_window_weeks"},
			{"program/GiftNotObject", "PUT", "/v1/program", map[string]any{"birthday_gift": "yes"}, nil, invalid, "birthday_gift"},
			{"program/Array", "PUT", "/v1/program", `[{"currency":"USD"}]`, nil, malformed, ""},
			{"program/Malformed", "PUT", "/v1/program", `{"currency":"USD"`, nil, malformed, ""},

			// Returns.
			{"return/ExceedsTotal", "POST", "/v1/purchases/" + open + "/returns", map[string]any{"external_id": "HB-R-1", "amount": 5001}, nil, invalid, "amount"},
			{"return/SecondFullReturn", "POST", "/v1/purchases/" + refunded + "/returns", map[string]any{"external_id": "HB-RET-2", "amount": 3000}, nil, invalid, "amount"},
			{"return/AfterFullReturn", "POST", "/v1/purchases/" + refunded + "/returns", map[string]any{"amount": 1}, nil, invalid, "amount"},
			{"return/ZeroAmount", "POST", "/v1/purchases/" + open + "/returns", map[string]any{"amount": 0}, nil, invalid, "amount"},
			{"return/NegativeAmount", "POST", "/v1/purchases/" + open + "/returns", map[string]any{"amount": -100}, nil, invalid, "amount"},
			{"return/MissingAmount", "POST", "/v1/purchases/" + open + "/returns", map[string]any{"external_id": "HB-R-2"}, nil, invalid, "amount"},
			{"return/AmountString", "POST", "/v1/purchases/" + open + "/returns", map[string]any{"amount": "100"}, nil, invalid, "amount"},
			{"return/Amount1e30", "POST", "/v1/purchases/" + open + "/returns", `{"amount": 1e30}`, nil, invalid, "amount"},
			{"return/AmountMaxInt64", "POST", "/v1/purchases/" + open + "/returns", `{"amount": 9223372036854775807}`, nil, invalid, "amount"},
			{"return/BeforePurchase", "POST", "/v1/purchases/" + open + "/returns", map[string]any{"amount": 100, "occurred_at": "2026-02-01T00:00:00Z"}, nil, invalid, "occurred_at"},
			{"return/InFuture", "POST", "/v1/purchases/" + open + "/returns", map[string]any{"amount": 100, "occurred_at": now.Add(time.Hour).Format(time.RFC3339)}, nil, invalid, "occurred_at"},
			{"return/NotATime", "POST", "/v1/purchases/" + open + "/returns", map[string]any{"amount": 100, "occurred_at": "soon"}, nil, invalid, "occurred_at"},
			{"return/UnknownPurchase", "POST", "/v1/purchases/no-such-purchase/returns", map[string]any{"amount": 100}, nil, notFound, ""},
			{"return/Malformed", "POST", "/v1/purchases/" + open + "/returns", `{"amount": 1`, nil, malformed, ""},
			{"return/Array", "POST", "/v1/purchases/" + open + "/returns", `[100]`, nil, malformed, ""},
			{"purchase/GetUnknown", "GET", "/v1/purchases/no-such-purchase", nil, nil, notFound, ""},

			// Adjustments.
			{"adjust/ZeroPoints", "POST", "/v1/members/" + victim + "/adjustments", map[string]any{"points": 0, "reason": "test"}, nil, invalid, "points"},
			{"adjust/MissingPoints", "POST", "/v1/members/" + victim + "/adjustments", map[string]any{"reason": "test"}, nil, invalid, "points"},
			{"adjust/PointsString", "POST", "/v1/members/" + victim + "/adjustments", map[string]any{"points": "50", "reason": "test"}, nil, invalid, "points"},
			{"adjust/PointsFraction", "POST", "/v1/members/" + victim + "/adjustments", map[string]any{"points": 0.5, "reason": "test"}, nil, invalid, "points"},
			{"adjust/Points1e30", "POST", "/v1/members/" + victim + "/adjustments", `{"points": 1e30, "reason": "test"}`, nil, invalid, "points"},
			{"adjust/PointsMaxInt64", "POST", "/v1/members/" + victim + "/adjustments", `{"points": 9223372036854775807, "reason": "test"}`, nil, invalid, "points"},
			{"adjust/PointsMinInt64", "POST", "/v1/members/" + victim + "/adjustments", `{"points": -9223372036854775808, "reason": "test"}`, nil, invalid, "points"},
			{"adjust/MissingReason", "POST", "/v1/members/" + victim + "/adjustments", map[string]any{"points": 10}, nil, invalid, "reason"},
			{"adjust/ReasonTooLong", "POST", "/v1/members/" + victim + "/adjustments", map[string]any{"points": 10, "reason": strings.Repeat("r", 501)}, nil, invalid, "reason"},
			{"adjust/DebitBelowZero", "POST", "/v1/members/" + victim + "/adjustments", map[string]any{"points": -50, "reason": "test"}, nil, conflict, ""},
			{"adjust/UnknownMember", "POST", "/v1/members/no-such-member/adjustments", map[string]any{"points": 10, "reason": "test"}, nil, notFound, ""},
			{"adjust/Malformed", "POST", "/v1/members/" + victim + "/adjustments", `{"points": 10, "reason": }`, nil, malformed, ""},
			{"adjust/IdempotencyKeyNonASCII", "POST", "/v1/members/" + victim + "/adjustments", map[string]any{"points": 10, "reason": "test"},
				[]string{"Idempotency-Key", "ключ"}, invalid, "Idempotency-Key"},
		}

		tokenFor := func(r row) string {
			switch {
			case strings.HasPrefix(r.path, "/v1/tiers"), strings.HasPrefix(r.path, "/v1/program"):
				return marketer
			case strings.HasSuffix(r.path, "/adjustments"):
				return admin
			}
			return pos
		}
		addr := listen(t, e)
		for _, r := range rows {
			t.Run(r.name, func(t *testing.T) {
				var res resp
				if oversized(r.body) {
					res = overSocket(t, addr, r.method, r.path, tokenFor(r), r.body, r.headers...)
				} else {
					res = e.do(r.method, r.path, tokenFor(r), r.body, r.headers...)
				}
				assertProblem(t, res, r.status, r.field)
			})
		}

		t.Run("NothingWritten", func(t *testing.T) {
			b := e.balance(victim)
			if b.Available != 0 || b.Pending != 0 || b.LifetimeEarned != 0 || b.QualifyingSpend != 0 {
				t.Errorf("rejected requests moved the victim's balance: %+v", b)
			}
			l := e.do("GET", ledger, admin, nil).must(t, 200).JSON(t)
			if items := l["items"].([]any); len(items) != 0 {
				t.Errorf("rejected requests wrote %d ledger entries: %v", len(items), items)
			}
			var purchases, members int64
			db := e.store.DB()
			if err := db.Raw("SELECT COUNT(*) FROM purchases WHERE member_id = ?", victim).Scan(&purchases).Error; err != nil {
				t.Fatal(err)
			}
			if purchases != 0 {
				t.Errorf("rejected requests recorded %d purchases", purchases)
			}
			if err := db.Raw("SELECT COUNT(*) FROM members").Scan(&members).Error; err != nil {
				t.Fatal(err)
			}
			if members != membersBefore {
				t.Errorf("rejected enrolments created %d members", members-membersBefore)
			}
			o := e.do("GET", "/v1/purchases/"+open, admin, nil).must(t, 200).JSON(t)
			if o["returned_amount"].(float64) != 0 {
				t.Errorf("rejected returns were recorded: %v", o)
			}
			v := e.do("GET", "/v1/members/"+victim, admin, nil).must(t, 200).JSON(t)
			if v["email"] == "dup@example.com" || v["external_id"] == "DUP-1" || v["phone"] != nil {
				t.Errorf("a rejected patch changed the member: %v", v)
			}
			d := e.do("GET", "/v1/members/"+dup, admin, nil).must(t, 200).JSON(t)
			if d["email"] != "dup@example.com" {
				t.Errorf("the duplicate's owner changed: %v", d)
			}
			prog := e.do("GET", "/v1/program", admin, nil).must(t, 200).JSON(t)
			if prog["currency"] != "USD" || prog["timezone"] != "UTC" || prog["pending_days"].(float64) != 0 {
				t.Errorf("rejected program changes were applied: %v", prog)
			}
			tiers := e.do("GET", "/v1/tiers", admin, nil).must(t, 200).JSON(t)["items"].([]any)
			if len(tiers) != 3 {
				t.Errorf("rejected tier changes: %d tiers, want 3: %v", len(tiers), tiers)
			}
			e.checkLedger()
		})
	})
}

// TestHostileNulBytes sends U+0000 in free text, ids, lookups and cursors.
// PostgreSQL cannot store or compare a NUL in text, so the engine must
// refuse it (422) or handle it, never fail with a 5xx. A write may either be
// refused naming the field or accepted; a lookup finds nothing.
func TestHostileNulBytes(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		nulCursor := base64.RawURLEncoding.EncodeToString([]byte("a\x00b"))
		nulLedgerCursor := base64.RawURLEncoding.EncodeToString([]byte("2026-03-01T12:00:00Z\x1fa\x00b"))
		buy := map[string]any{"member_id": m, "store_id": "store-1", "currency": "USD", "total": 1000}
		// A member whose keys are the looked-up values without their NUL
		// (or cut at it): a lookup that strips or truncates would find it.
		e.do("POST", "/v1/members", e.pos(), map[string]any{"external_id": "ab", "email": "ab@example.com",
			"phone": "+15550001234"}).must(t, 201)
		for _, c := range []struct {
			name, method, path string
			body               any
			ok                 []int // acceptable statuses
			field              string
			lookup             bool // a 200 must find no member
		}{
			{"EnrolFirstName", "POST", "/v1/members", map[string]any{"first_name": "a\x00b"}, []int{422, 201}, "first_name", false},
			{"PatchLastName", "PATCH", "/v1/members/" + m, map[string]any{"last_name": "\x00"}, []int{422, 200}, "last_name", false},
			{"ItemSKU", "POST", "/v1/purchases", withKeys(buy, "external_id", "NUL-1", "items", []map[string]any{{"sku": "A\x00", "amount": 1000}}), []int{422, 201}, "items", false},
			{"ItemCategory", "POST", "/v1/purchases", withKeys(buy, "external_id", "NUL-2", "items", []map[string]any{{"sku": "A", "category": "\x00", "amount": 1000}}), []int{422, 201}, "items", false},
			{"AdjustmentReason", "POST", "/v1/members/" + m + "/adjustments", map[string]any{"points": 1, "reason": "a\x00"}, []int{422, 201}, "reason", false},
			{"TierName", "PUT", "/v1/tiers/nul", map[string]any{"name": "N\x00", "rank": 7, "earn_multiplier": "2", "qualifying_spend": 9_000_000}, []int{422, 201}, "name", false},
			{"ProgramName", "PUT", "/v1/program", map[string]any{"name": "P\x00"}, []int{422, 200}, "name", false},
			{"PurchaseMemberID", "POST", "/v1/purchases", withKeys(buy, "member_id", "a\x00b"), []int{422}, "member_id", false},
			{"QuoteMemberID", "POST", "/v1/purchases/quote", withKeys(buy, "member_id", "a\x00b"), []int{422}, "member_id", false},
			{"LookupEmail", "GET", "/v1/members?email=a%00b@example.com", nil, []int{200, 422}, "email", true},
			{"LookupEmailCut", "GET", "/v1/members?email=ab@example.com%00x", nil, []int{200, 422}, "email", true},
			{"LookupExternalID", "GET", "/v1/members?external_id=a%00b", nil, []int{200, 422}, "external_id", true},
			{"LookupPhone", "GET", "/v1/members?phone=%2B1555000%001234", nil, []int{200, 422}, "phone", true},
			{"MembersCursor", "GET", "/v1/members?cursor=" + nulCursor, nil, []int{200, 422}, "cursor", false},
			{"LedgerCursor", "GET", "/v1/members/" + m + "/ledger?cursor=" + nulLedgerCursor, nil, []int{200, 422}, "cursor", false},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := e.do(c.method, c.path, e.admin(), c.body)
				for _, s := range c.ok {
					if r.Status != s {
						continue
					}
					if s >= 400 {
						assertProblem(t, r, s, c.field)
					}
					if s == 200 && c.lookup {
						// No member's key holds a NUL: a lookup by one
						// finds nobody, whatever it does with the byte.
						l := r.JSON(t)
						if items, ok := l["items"].([]any); !ok || len(items) != 0 || l["next_cursor"] != nil {
							t.Errorf("lookup answered %s, want {\"items\": [], \"next_cursor\": null}", r.Body)
						}
					}
					return
				}
				t.Errorf("status %d, want one of %v: %s", r.Status, c.ok, r.Body)
			})
		}
		e.checkLedger()
	})
}

// TestHostileNullBodies sends the JSON value null where an object belongs:
// like an array or a string, it is a malformed body (400), not an empty
// object.
func TestHostileNullBodies(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		m := e.enrol()
		var before int64
		if err := e.store.DB().Raw("SELECT COUNT(*) FROM members").Scan(&before).Error; err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ method, path, token string }{
			{"POST", "/v1/purchases", e.pos()},
			{"POST", "/v1/purchases/quote", e.pos()},
			{"POST", "/v1/members", e.pos()},
			{"PATCH", "/v1/members/" + m, e.pos()},
			{"PUT", "/v1/program", e.marketer()},
			{"PUT", "/v1/tiers/vib", e.marketer()},
			{"POST", "/v1/members/" + m + "/adjustments", e.admin()},
		} {
			t.Run(c.method+" "+c.path, func(t *testing.T) {
				assertProblem(t, e.do(c.method, c.path, c.token, " null "), http.StatusBadRequest, "")
			})
		}
		var after int64
		if err := e.store.DB().Raw("SELECT COUNT(*) FROM members").Scan(&after).Error; err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Errorf("a null body enrolled %d members", after-before)
		}
	})
}
