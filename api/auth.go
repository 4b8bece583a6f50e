package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// AuthConfig says how tokens are verified and signed.
type AuthConfig struct {
	Secret   []byte // HS256 key
	Issuer   string // enforced when set
	Audience string // enforced when set
	// Clock is the time exp, nbf and iat are checked against; nil means
	// time.Now. The engine's own clock (loyalty.WithClock) may be set in
	// the past or future for jobs; tokens are judged by this one.
	Clock func() time.Time
}

// Claims are the token claims the engine reads (§2).
type Claims struct {
	Role    string `json:"role"`
	StoreID string `json:"store_id,omitempty"`
	jwt.RegisteredClaims

	// storeIDSet records that the token named store_id, even as "".
	storeIDSet bool
}

// claimsWire is how Claims arrive. RFC 7519 claim names are case-sensitive,
// and encoding/json matches them case-insensitively, letting a later
// "Role" or "Store_Id" override the claim; so Claims are decoded only after
// checkNames has refused every name given twice and every spelling of these
// names other than the exact one.
type claimsWire struct {
	Subject  *string          `json:"sub"`
	Role     *string          `json:"role"`
	StoreID  *string          `json:"store_id"`
	Issuer   *string          `json:"iss"`
	Audience jwt.ClaimStrings `json:"aud"`
	ID       *string          `json:"jti"`
	Expires  numericDate      `json:"exp"`
	Before   numericDate      `json:"nbf"`
	IssuedAt numericDate      `json:"iat"`
}

var claimsWireType = reflect.TypeOf(claimsWire{})

// UnmarshalJSON decodes claims strictly: one JSON object in UTF-8, each
// name at most once and the engine's claims spelled exactly, times as JSON
// numbers.
func (c *Claims) UnmarshalJSON(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("claims are not UTF-8")
	}
	if err := checkNames(b, claimsWireType, foldKnown); err != nil {
		return fmt.Errorf("claims: %w", err)
	}
	var w claimsWire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("claims: %w", err)
	}
	*c = Claims{RegisteredClaims: jwt.RegisteredClaims{Audience: w.Audience, ExpiresAt: w.Expires.t,
		NotBefore: w.Before.t, IssuedAt: w.IssuedAt.t}}
	for _, f := range []struct {
		src *string
		dst *string
	}{{w.Subject, &c.Subject}, {w.Role, &c.Role}, {w.StoreID, &c.StoreID}, {w.Issuer, &c.Issuer}, {w.ID, &c.ID}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	c.storeIDSet = w.StoreID != nil
	return nil
}

// numericDate is a NumericDate claim (RFC 7519 §2) that must be a JSON
// number of seconds from 1970 to 9999: golang-jwt also accepts a number
// in a string, and null.
type numericDate struct{ t *jwt.NumericDate }

// maxNumericDate is 9999-12-31T23:59:59Z.
const maxNumericDate = 253402300799

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errors.New("a time claim must be a JSON number")
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil || secs < 0 || secs > maxNumericDate {
		return errors.New("a time claim must be seconds from 1970 to 9999")
	}
	var n jwt.NumericDate
	if err := n.UnmarshalJSON(b); err != nil {
		return err
	}
	d.t = &n
	return nil
}

// maxClaimLen bounds sub and store_id.
const maxClaimLen = 255

// storeIDExpr is what a purchase's store_id may be, so a store-bound
// token names a store a purchase can have.
var storeIDExpr = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)

// validSubject reports whether sub may name a caller: 1 to 255 bytes of
// printable UTF-8, so it can be logged and stored as it is.
func validSubject(sub string) bool {
	if sub == "" || len(sub) > maxClaimLen || !utf8.ValidString(sub) {
		return false
	}
	for _, r := range sub {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// MinSecretLen is the shortest HS256 secret the engine accepts.
const MinSecretLen = 32

// CheckSecret refuses a signing secret that is weak: shorter than
// MinSecretLen bytes once surrounding white space is trimmed (so a blank
// secret of spaces fails), or made of fewer than 8 distinct bytes (so
// "aaaa…" and "abab…" fail). A secret from `openssl rand -hex 32` passes.
func CheckSecret(secret []byte) error {
	if len(bytes.TrimSpace(secret)) < MinSecretLen {
		return fmt.Errorf("the secret must hold at least %d characters besides surrounding white space", MinSecretLen)
	}
	var seen [256]bool
	distinct := 0
	for _, b := range secret {
		if !seen[b] {
			seen[b] = true
			distinct++
		}
	}
	if distinct < 8 {
		return errors.New("the secret repeats too few characters; use a random string such as the output of openssl rand -hex 32")
	}
	return nil
}

// SignToken issues an HS256 token for role and sub, valid for ttl.
func SignToken(cfg AuthConfig, role loyalty.Role, sub, storeID string, ttl time.Duration, now time.Time) (string, error) {
	if !role.Valid() {
		return "", errors.New("role must be admin, marketer, pos or member")
	}
	if sub == "" {
		return "", errors.New("sub is required")
	}
	if !validSubject(sub) {
		return "", errors.New("sub must be 1 to 255 bytes of printable characters")
	}
	if storeID != "" && !storeIDExpr.MatchString(storeID) {
		return "", errors.New("store id must be 1 to 255 printable ASCII characters without spaces")
	}
	if len(cfg.Secret) == 0 {
		return "", errors.New("no signing secret configured")
	}
	if err := CheckSecret(cfg.Secret); err != nil {
		return "", fmt.Errorf("signing secret: %w", err)
	}
	c := Claims{Role: string(role), StoreID: storeID, RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), Issuer: cfg.Issuer,
	}}
	if cfg.Audience != "" {
		c.Audience = jwt.ClaimStrings{cfg.Audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(cfg.Secret)
}

// verify checks a bearer token once, without remembering it; the app
// verifies through a verifier, which does.
func (cfg AuthConfig) verify(raw string) (loyalty.Principal, error) {
	return newVerifier(cfg, 0).verify(raw)
}

// leeway is how far a token's times may be off the engine's clock: a
// signer whose clock runs a second or two ahead issues tokens whose iat is
// in the engine's future.
const leeway = 5 * time.Second

// check verifies a bearer token: HS256 only (so "none" and every other
// algorithm fail), a valid signature (compared in constant time by the
// library's HMAC verification) under a secret CheckSecret accepts, a header
// and claims decoded strictly (Claims.UnmarshalJSON), an exp in the future,
// no nbf or iat in the future, the configured issuer and audience, a known
// role, a printable sub and, when present, a store_id a purchase may have.
// It returns the claims with the principal, for the cache to recheck
// their times.
func (v *verifier) check(raw string) (loyalty.Principal, *Claims, error) {
	if v.secretErr != nil {
		return loyalty.Principal{}, nil, v.secretErr
	}
	if err := checkHeader(raw); err != nil {
		return loyalty.Principal{}, nil, err
	}
	c := new(Claims)
	if _, err := v.parser.ParseWithClaims(raw, c, v.key); err != nil {
		return loyalty.Principal{}, nil, err
	}
	role := loyalty.Role(c.Role)
	if !role.Valid() || !validSubject(c.Subject) {
		return loyalty.Principal{}, nil, errors.New("token lacks a known role or a printable sub")
	}
	if c.storeIDSet && !storeIDExpr.MatchString(c.StoreID) {
		return loyalty.Principal{}, nil, errors.New("token has a store_id no store can have")
	}
	return loyalty.Principal{Subject: c.Subject, Role: role, StoreID: c.StoreID}, c, nil
}

// checkHeader refuses a token whose header names a parameter twice, in any
// case: the library reads the last "alg" of several.
func checkHeader(raw string) error {
	seg, _, ok := strings.Cut(raw, ".")
	if !ok {
		return errors.New("token is malformed")
	}
	h, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil || !utf8.Valid(h) {
		return errors.New("token header is malformed")
	}
	if err := checkNames(h, nil, foldAll); err != nil {
		return fmt.Errorf("token header: %w", err)
	}
	return nil
}

const principalLocal = "principal"

// authenticate verifies the bearer token and stores the principal. It
// reads the header in place: a remembered token costs no copy.
func (s *server) authenticate(c *fiber.Ctx) error {
	raw, ok := bytes.CutPrefix(c.Request().Header.Peek(fiber.HeaderAuthorization), []byte("Bearer "))
	raw = bytes.TrimSpace(raw)
	if !ok || len(raw) == 0 {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="loyalty"`)
		return loyalty.Errorf(loyalty.Unauthorized, "unauthorized", "send Authorization: Bearer <token>")
	}
	p, err := s.verifier.principalOf(raw)
	if err != nil {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="loyalty", error="invalid_token"`)
		return loyalty.Errorf(loyalty.Unauthorized, "invalid_token", "the token is invalid or expired")
	}
	c.Locals(principalLocal, p)
	c.SetUserContext(loyalty.WithPrincipal(c.UserContext(), *p))
	return c.Next()
}

// allow lets only the given roles through.
func allow(roles ...loyalty.Role) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if !principal(c).Is(roles...) {
			return loyalty.Errorf(loyalty.Forbidden, "forbidden", "role %q may not do this", principal(c).Role)
		}
		return c.Next()
	}
}

func principal(c *fiber.Ctx) loyalty.Principal {
	if p, ok := c.Locals(principalLocal).(*loyalty.Principal); ok && p != nil {
		return *p
	}
	return loyalty.Principal{}
}
