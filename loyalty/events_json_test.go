package loyalty_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// TestEventJSONMatchesEncodingJSON holds Event.JSON, built by hand, to the
// bytes encoding/json writes of the §14 wire form: the same escaping, the
// data compacted, and null data for a row whose data is not JSON.
func TestEventJSONMatchesEncodingJSON(t *testing.T) {
	type wire struct {
		ID         string          `json:"id"`
		Type       string          `json:"type"`
		OccurredAt string          `json:"occurred_at"`
		MemberID   *string         `json:"member_id"`
		Data       json.RawMessage `json:"data"`
	}
	str := func(s string) *string { return &s }
	at := time.Date(2026, 3, 1, 9, 30, 0, 123456000, time.FixedZone("CET", 3600))
	cases := []struct {
		name   string
		member *string
		typ    string
		data   string
	}{
		{"plain purchase", str("mem_01J9Z"), "purchase.created", `{"id":"pur_1","points_earned":125,"amount_minor":10000}`},
		{"no member", nil, "points.expired", `{"points":5}`},
		{"array data", str("m"), "offer.assigned", `[1,2,3]`},
		{"spaces in a string", str("m"), "member.updated", `{"name":"Ada Lovelace"}`},
		{"white space between tokens", str("m"), "member.updated", "{ \"a\" : [1, 2],\n\"b\":{}}"},
		{"HTML characters", str("m"), "feedback.received", `{"comment":"<b>fish & chips</b>"}`},
		{"line separator", str("m"), "feedback.received", "{\"comment\":\"a\u2028b\"}"},
		{"euro sign", str("m"), "feedback.received", `{"comment":"5 €"}`},
		{"member id to escape", str(`a"b\c<d>`), "member.created", `{"x":1}`},
		{"member id beyond ASCII", str("mémbre"), "member.created", `{"x":1}`},
		{"data not JSON", str("m"), "member.created", `{"x":`},
		{"data empty", str("m"), "member.created", ``},
		{"scalar data", str("m"), "member.created", `42`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := loyalty.Event{ID: loyalty.EventID(7), Type: c.typ, OccurredAt: at, MemberID: c.member, Data: json.RawMessage(c.data)}
			w := wire{ID: "evt_7", Type: c.typ, OccurredAt: at.UTC().Format(time.RFC3339Nano), MemberID: c.member, Data: json.RawMessage(c.data)}
			want, err := json.Marshal(w)
			if err != nil {
				w.Data = json.RawMessage("null")
				want, _ = json.Marshal(w)
			}
			got := ev.JSON()
			if !bytes.Equal(got, want) {
				t.Fatalf("JSON()\n got %s\nwant %s", got, want)
			}
			if !json.Valid(got) {
				t.Fatalf("JSON() is not JSON: %s", got)
			}
		})
	}
}

func BenchmarkEventJSON(b *testing.B) {
	m := "mem_01J9ZQ4W7X8Y"
	ev := loyalty.Event{ID: loyalty.EventID(123456), Type: loyalty.EventBalanceChanged, OccurredAt: time.Now(), MemberID: &m,
		Data: json.RawMessage(`{"member_id":"mem_01J9ZQ4W7X8Y","available":12345,"pending":250,"lifetime_earned":99999,"tier":{"code":"vib","name":"VIB"},"as_of":"2026-12-02T10:00:00.123456Z"}`)}
	b.ReportAllocs()
	for b.Loop() {
		_ = ev.JSON()
	}
}
