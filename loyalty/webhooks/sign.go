package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"strconv"
	"strings"
	"time"
)

// Headers of a delivery (§14).
const (
	HeaderEventID   = "Loyalty-Event-Id"
	HeaderEventType = "Loyalty-Event-Type"
	HeaderSignature = "Loyalty-Signature"
)

// Sign is the Loyalty-Signature header of body sent at t:
// t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>, the scheme
// Stripe uses, so integrators can reuse their verification code.
func Sign(secret string, t time.Time, body []byte) string {
	return string(newSigner(secret).header(t, body))
}

// signer makes the Loyalty-Signature headers of one secret, keeping its
// HMAC state and buffers from one to the next: a delivery worker signs
// hundreds of events a second, and hmac.New hashes the key's pads and
// allocates each time. It is not for concurrent use.
type signer struct {
	mac hash.Hash
	sum []byte
	out []byte
}

func newSigner(secret string) *signer {
	return &signer{mac: hmac.New(sha256.New, []byte(secret))}
}

// header is Sign's header, valid until the next call.
func (s *signer) header(t time.Time, body []byte) []byte {
	s.out = append(s.out[:0], "t="...)
	s.out = strconv.AppendInt(s.out, t.Unix(), 10)
	sum := s.digest(s.out[2:], body)
	s.out = append(s.out, ",v1="...)
	s.out = hex.AppendEncode(s.out, sum)
	return s.out
}

// digest is the HMAC-SHA256 of "<ts>.<body>", the scheme's one formula,
// valid until the next call.
func (s *signer) digest(ts, body []byte) []byte {
	s.mac.Reset()
	s.mac.Write(ts)
	s.mac.Write([]byte{'.'})
	s.mac.Write(body)
	s.sum = s.mac.Sum(s.sum[:0])
	return s.sum
}

// Errors of Verify.
var (
	ErrBadHeader    = errors.New("webhook signature: header is not t=<unix>,v1=<hex>")
	ErrNoMatch      = errors.New("webhook signature: no v1 signature matches")
	ErrOutOfTimeout = errors.New("webhook signature: timestamp outside the tolerance")
)

// Verify checks a Loyalty-Signature header against the raw body as
// received, as a receiver does: some v1 must be the HMAC of "<t>.<body>"
// (compared in constant time), and t within tolerance of now (0: no check),
// which bounds how long a captured request can be replayed.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrBadHeader
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil {
				return ErrBadHeader
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrBadHeader
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return ErrOutOfTimeout
		}
	}
	want := newSigner(secret).digest([]byte(ts), body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrNoMatch
}
