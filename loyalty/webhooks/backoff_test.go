package webhooks

import (
	"testing"
	"time"
)

// TestBackoffSchedule: the first retry comes within 5 s, each wait about
// doubles the last, none exceeds an hour, and a delivery is given up only
// once it has failed for the whole retry window (72 h).
func TestBackoffSchedule(t *testing.T) {
	d := NewDispatcher(&Service{}, Config{})
	for range 200 {
		if w := d.backoff(0); w < 2*time.Second || w > 4*time.Second {
			t.Fatalf("first wait %s, want 2 s to 4 s", w)
		}
		if w := d.backoff(100 * time.Hour); w < 30*time.Minute || w > time.Hour {
			t.Fatalf("late wait %s, want 30 min to 1 h", w)
		}
	}
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := deliveryRow{}
	now := start
	attempts := 0
	var waits []time.Duration
	for r.Status != Failed {
		d.apply(&r, result{code: 500, err: "the endpoint answered 500"}, now)
		attempts++
		if r.Status == Pending {
			w := r.NextAttemptAt.Sub(now)
			waits = append(waits, w)
			now = *r.NextAttemptAt
		}
		if attempts > 1000 {
			t.Fatal("never given up")
		}
	}
	if given := now.Sub(start); given < 72*time.Hour || given > 73*time.Hour {
		t.Fatalf("given up after %s, want 72 h (and within the last wait)", given)
	}
	for i := 1; i < len(waits) && waits[i-1] < 20*time.Minute; i++ {
		if waits[i] < waits[i-1] {
			t.Fatalf("wait %d (%s) shorter than the one before (%s): %v", i, waits[i], waits[i-1], waits[:i+1])
		}
	}
	if r.Attempts != attempts || r.NextAttemptAt != nil || r.Error == nil || *r.StatusCode != 500 {
		t.Fatalf("dead letter %+v", r)
	}
	// Success clears the error and the schedule.
	d.apply(&r, result{code: 204}, now)
	if r.Status != Delivered || r.Error != nil || r.DeliveredAt == nil {
		t.Fatalf("after success %+v", r)
	}
}

// TestSignVerify: the signature is Stripe's scheme, which a receiver's
// code recomputes from the secret, the timestamp and the raw body.
func TestSignVerify(t *testing.T) {
	at := time.Unix(1767225600, 0)
	body := []byte(`{"id":"evt_1","type":"member.created","occurred_at":"2026-01-01T00:00:00Z","member_id":"m1","data":{}}`)
	h := Sign("whsec_test", at, body)
	// HMAC-SHA256("whsec_test", "1767225600." + body), computed with Python's hmac.
	if want := "t=1767225600,v1=3a18b51d887fd37ed5f3fee07a45e6db6a4c6c229fa76af39df91129f0f442ae"; h != want {
		t.Fatalf("Sign = %s, want %s", h, want)
	}
	if err := Verify("whsec_test", h, body, at.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("verify own signature: %v", err)
	}
	for name, c := range map[string]struct {
		secret, header string
		body           []byte
		now            time.Time
		err            error
	}{
		"OtherSecret":   {"whsec_other", h, body, at, ErrNoMatch},
		"OtherBody":     {"whsec_test", h, append([]byte(" "), body...), at, ErrNoMatch},
		"Stale":         {"whsec_test", h, body, at.Add(time.Hour), ErrOutOfTimeout},
		"NoSignature":   {"whsec_test", "t=1767225600", body, at, ErrBadHeader},
		"NotHex":        {"whsec_test", "t=1767225600,v1=zz", body, at, ErrBadHeader},
		"Garbage":       {"whsec_test", "nonsense", body, at, ErrBadHeader},
		"TwoOneMatches": {"whsec_test", h + ",v1=00", body, at, nil},
	} {
		if err := Verify(c.secret, c.header, c.body, c.now, 5*time.Minute); err != c.err {
			t.Errorf("%s: %v, want %v", name, err, c.err)
		}
	}
}
