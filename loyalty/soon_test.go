package loyalty

import (
	"encoding/json"
	"math/rand"
	"testing"
	"time"
)

// TestSoonCodecIsJSON checks that the hand-written codec of the kept
// expiring-soon list writes what encoding/json writes and reads back what
// it wrote, and that anything else still reads through encoding/json.
func TestSoonCodecIsJSON(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	loc := time.FixedZone("x", 3600)
	for n := 0; n < 50; n++ {
		m := map[time.Time]int64{}
		for i := 0; i < n; i++ {
			at := time.Unix(1_700_000_000+rng.Int63n(1e8), rng.Int63n(1e9)/1000*1000*int64(rng.Intn(2))).In(loc)
			m[at.UTC()] += rng.Int63n(1e6) - 1000
		}
		got := encodeSoon(m)
		back, err := decodeSoon(got)
		if err != nil || len(back) != len(m) {
			t.Fatalf("%d: %v, %d of %d back", n, err, len(back), len(m))
		}
		for k, v := range m {
			if back[k] != v {
				t.Fatalf("%d: %s: %d back, %d written", n, k, back[k], v)
			}
		}
		if _, ok := decodeSoonFast(got); !ok {
			t.Fatalf("%d: the fast path refused %s", n, got)
		}
		var viaJSON []keptSoon
		if err := json.Unmarshal([]byte(got), &viaJSON); err != nil || len(viaJSON) != len(m) {
			t.Fatalf("%d: %s is not the JSON list: %v", n, got, err)
		}
		if b, _ := json.Marshal(viaJSON); string(b) != got {
			t.Fatalf("%d: wrote\n%s\nencoding/json writes\n%s", n, got, b)
		}
	}
	for _, s := range []string{"", "[]", `[ {"points": 5, "expires_at": "2026-01-02T03:04:05+01:00"} ]`,
		`[{"expires_at":"2026-01-02T03:04:05Z","points":7}]`} {
		if _, err := decodeSoon(s); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
	}
	if m, _ := decodeSoon(`[{"expires_at":"2026-01-02T03:04:05Z","points":7}]`); m[time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)] != 7 {
		t.Fatalf("reordered fields: %v", m)
	}
	if _, err := decodeSoon(`[{"points":x}]`); err == nil {
		t.Fatal("garbage read without an error")
	}
}
