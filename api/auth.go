package api

import (
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// AuthConfig says how tokens are verified and signed.
type AuthConfig struct {
	Secret   []byte // HS256 key
	Issuer   string // enforced when set
	Audience string // enforced when set
}

// Claims are the token claims the engine reads (§2).
type Claims struct {
	Role    string `json:"role"`
	StoreID string `json:"store_id,omitempty"`
	jwt.RegisteredClaims
}

// SignToken issues an HS256 token for role and sub, valid for ttl.
func SignToken(cfg AuthConfig, role loyalty.Role, sub, storeID string, ttl time.Duration, now time.Time) (string, error) {
	if !role.Valid() {
		return "", errors.New("role must be admin, marketer, pos or member")
	}
	if sub == "" {
		return "", errors.New("sub is required")
	}
	if len(cfg.Secret) == 0 {
		return "", errors.New("no signing secret configured")
	}
	c := Claims{Role: string(role), StoreID: storeID, RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), Issuer: cfg.Issuer,
	}}
	if cfg.Audience != "" {
		c.Audience = jwt.ClaimStrings{cfg.Audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(cfg.Secret)
}

// verify checks a bearer token: HS256 only (so "none" and every other
// algorithm fail), a valid signature (compared in constant time by the
// library's HMAC verification), an exp in the future, no nbf or iat in the
// future, and the configured issuer and audience.
func (cfg AuthConfig) verify(raw string) (loyalty.Principal, error) {
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithLeeway(5 * time.Second)}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	var c Claims
	_, err := jwt.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return cfg.Secret, nil }, opts...)
	if err != nil {
		return loyalty.Principal{}, err
	}
	role := loyalty.Role(c.Role)
	if !role.Valid() || c.Subject == "" {
		return loyalty.Principal{}, errors.New("token lacks a known role or a sub")
	}
	return loyalty.Principal{Subject: c.Subject, Role: role, StoreID: c.StoreID}, nil
}

const principalLocal = "principal"

// authenticate verifies the bearer token and stores the principal.
func (s *server) authenticate(c *fiber.Ctx) error {
	h := c.Get(fiber.HeaderAuthorization)
	raw, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(raw) == "" {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="loyalty"`)
		return loyalty.Errorf(loyalty.Unauthorized, "unauthorized", "send Authorization: Bearer <token>")
	}
	p, err := s.auth.verify(strings.TrimSpace(raw))
	if err != nil {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="loyalty", error="invalid_token"`)
		return loyalty.Errorf(loyalty.Unauthorized, "invalid_token", "the token is invalid or expired")
	}
	c.Locals(principalLocal, p)
	c.SetUserContext(loyalty.WithPrincipal(c.UserContext(), p))
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
	p, _ := c.Locals(principalLocal).(loyalty.Principal)
	return p
}
