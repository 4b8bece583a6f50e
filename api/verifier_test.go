package api

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// cacheEnv is a verifier that remembers tokens, with a clock of its own.
type cacheEnv struct {
	t     *testing.T
	clock *loyaltytest.Clock
	cfg   AuthConfig
	v     *verifier
}

func newCacheEnv(t *testing.T, size int) *cacheEnv {
	clock := loyaltytest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	cfg := AuthConfig{Secret: testSecret, Clock: clock.Now}
	return &cacheEnv{t: t, clock: clock, cfg: cfg, v: newVerifier(cfg, size)}
}

// sign signs a payload given as JSON text with the test secret.
func (e *cacheEnv) sign(payload string) string {
	return hmacJWT(map[string]any{"alg": "HS256", "typ": "JWT"}, payload, testSecret)
}

// fresh is the verdict of a verification that remembers nothing, at the
// same instant.
func (e *cacheEnv) fresh(tok string) (loyalty.Principal, error) {
	return newVerifier(e.cfg, 0).verify(tok)
}

func TestTokenCache(t *testing.T) {
	t.Run("HitReturnsTheVerifiedPrincipal", func(t *testing.T) {
		e := newCacheEnv(t, tokenCacheSize)
		tok, err := SignToken(e.cfg, loyalty.RolePOS, "till-1", "store-1", time.Hour, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		want := loyalty.Principal{Subject: "till-1", Role: loyalty.RolePOS, StoreID: "store-1"}
		for i := range 3 {
			p, err := e.v.verify(tok)
			if err != nil || p != want {
				t.Fatalf("verify %d: %+v, %v; want %+v", i, p, err, want)
			}
		}
		if n := e.v.cache.len(); n != 1 {
			t.Errorf("%d tokens remembered, want 1", n)
		}
	})

	t.Run("ExpiredWhileCached", func(t *testing.T) {
		e := newCacheEnv(t, tokenCacheSize)
		start := e.clock.Now()
		tok, err := SignToken(e.cfg, loyalty.RoleAdmin, "op-1", "", time.Hour, start)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.v.verify(tok); err != nil {
			t.Fatal(err)
		}
		// Within the leeway past exp the token still holds, from memory.
		e.clock.Set(start.Add(time.Hour + leeway - time.Second))
		if _, err := e.v.verify(tok); err != nil {
			t.Fatalf("within the leeway: %v", err)
		}
		if e.v.cache.len() != 1 {
			t.Fatal("the token was not served from the cache")
		}
		e.clock.Set(start.Add(time.Hour + leeway))
		if _, err := e.v.verify(tok); err == nil {
			t.Fatal("a remembered token past its exp was accepted")
		}
		if _, err := e.fresh(tok); err == nil {
			t.Fatal("a token past its exp was accepted")
		}
		if n := e.v.cache.len(); n != 0 {
			t.Errorf("the expired token is still remembered (%d)", n)
		}
		if _, err := e.v.verify(tok); err == nil {
			t.Fatal("an expired token was accepted on its second try")
		}
	})

	// A remembered token is judged at every instant as a fresh
	// verification judges it, the clock moving either way: exp, nbf and
	// iat with the same leeway.
	t.Run("TimesAgreeWithFreshVerification", func(t *testing.T) {
		base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		payload := fmt.Sprintf(`{"sub":"op-1","role":"admin","iat":%d,"nbf":%d,"exp":%d}`,
			base.Unix(), base.Add(time.Minute).Unix(), base.Add(time.Hour).Unix())
		for _, at := range []time.Duration{-time.Hour, -leeway, -leeway + time.Second, 0, time.Minute - leeway - time.Second,
			time.Minute - leeway, time.Minute, time.Hour - time.Second, time.Hour + leeway - time.Second, time.Hour + leeway,
			2 * time.Hour} {
			t.Run(at.String(), func(t *testing.T) {
				e := newCacheEnv(t, tokenCacheSize)
				tok := e.sign(payload)
				e.clock.Set(base.Add(10 * time.Minute))
				if _, err := e.v.verify(tok); err != nil {
					t.Fatal(err)
				}
				e.clock.Set(base.Add(at))
				_, cached := e.v.verify(tok)
				_, fresh := e.fresh(tok)
				if (cached == nil) != (fresh == nil) {
					t.Fatalf("remembered: %v; fresh: %v", cached, fresh)
				}
			})
		}
	})

	// A token that differs from a remembered one only in its signature,
	// or in its claims under the remembered signature, is verified in full
	// and refused.
	t.Run("ForgeriesNeverServed", func(t *testing.T) {
		e := newCacheEnv(t, tokenCacheSize)
		exp := e.clock.Now().Add(time.Hour).Unix()
		tok := e.sign(fmt.Sprintf(`{"sub":"till-1","role":"pos","store_id":"store-1","exp":%d}`, exp))
		if _, err := e.v.verify(tok); err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(tok, ".")
		other := hmacJWT(map[string]any{"alg": "HS256", "typ": "JWT"},
			fmt.Sprintf(`{"sub":"till-1","role":"pos","store_id":"store-1","exp":%d}`, exp), []byte("another-secret-another-secret-another"))
		lifted := b64(fmt.Sprintf(`{"sub":"till-1","role":"pos","exp":%d}`, exp))
		admin := b64(fmt.Sprintf(`{"sub":"till-1","role":"admin","store_id":"store-1","exp":%d}`, exp))
		for name, forged := range map[string]string{
			"OtherSecret":        other,
			"SignatureStripped":  parts[0] + "." + parts[1] + ".",
			"StoreLifted":        parts[0] + "." + lifted + "." + parts[2],
			"RoleRaised":         parts[0] + "." + admin + "." + parts[2],
			"AlgNone":            b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + ".",
			"TrailingSpace":      tok + " ",
			"SignatureTruncated": tok[:len(tok)-1],
		} {
			if p, err := e.v.verify(forged); err == nil {
				t.Errorf("%s: accepted as %+v", name, p)
			}
		}
		if p, err := e.v.verify(tok); err != nil || p.StoreID != "store-1" {
			t.Errorf("the genuine token after the forgeries: %+v, %v", p, err)
		}
	})

	t.Run("RefusedTokensNotRemembered", func(t *testing.T) {
		e := newCacheEnv(t, tokenCacheSize)
		exp := e.clock.Now().Add(time.Hour).Unix()
		for _, payload := range []string{
			fmt.Sprintf(`{"sub":"op-1","role":"admin","Role":"member","exp":%d}`, exp),
			fmt.Sprintf(`{"sub":"op-1","role":"admin","exp":%d,"nbf":%d}`, exp, exp-60),
			fmt.Sprintf(`{"sub":"op-1","role":"superuser","exp":%d}`, exp),
		} {
			tok := e.sign(payload)
			for range 2 {
				if _, err := e.v.verify(tok); err == nil {
					t.Errorf("accepted %s", payload)
				}
			}
		}
		if n := e.v.cache.len(); n != 0 {
			t.Errorf("%d refused tokens remembered", n)
		}
	})

	t.Run("Bounded", func(t *testing.T) {
		const size = 64
		e := newCacheEnv(t, size)
		toks := make([]string, 1000)
		for i := range toks {
			var err error
			if toks[i], err = SignToken(e.cfg, loyalty.RoleMember, fmt.Sprintf("m-%d", i), "", time.Hour, e.clock.Now()); err != nil {
				t.Fatal(err)
			}
			if _, err := e.v.verify(toks[i]); err != nil {
				t.Fatal(err)
			}
			if n := e.v.cache.len(); n > size {
				t.Fatalf("%d tokens remembered, at most %d allowed", n, size)
			}
		}
		// Evicted tokens are verified again in full, and still hold.
		for i, tok := range toks {
			if p, err := e.v.verify(tok); err != nil || p.Subject != fmt.Sprintf("m-%d", i) {
				t.Fatalf("token %d: %+v, %v", i, p, err)
			}
		}
	})

	// Many callers at once, each with its token, over a cache smaller
	// than their number: every answer is the caller's own principal.
	t.Run("Concurrent", func(t *testing.T) {
		const size = 32
		e := newCacheEnv(t, size)
		toks := make([]string, 100)
		for i := range toks {
			var err error
			if toks[i], err = SignToken(e.cfg, loyalty.RoleMember, fmt.Sprintf("m-%d", i), "", time.Hour, e.clock.Now()); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := range 8 {
			wg.Go(func() {
				for i := range 400 {
					n := (g*37 + i) % len(toks)
					p, err := e.v.verify(toks[n])
					if err != nil || p.Subject != fmt.Sprintf("m-%d", n) {
						errs <- fmt.Errorf("token %d: %+v, %v", n, p, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := e.v.cache.len(); n > size {
			t.Errorf("%d tokens remembered, at most %d allowed", n, size)
		}
	})

	// The cache belongs to one configuration: a token remembered under
	// one secret, issuer or audience means nothing under another.
	t.Run("ConfigurationChange", func(t *testing.T) {
		e := newCacheEnv(t, tokenCacheSize)
		tok, err := SignToken(e.cfg, loyalty.RoleAdmin, "op-1", "", time.Hour, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.v.verify(tok); err != nil {
			t.Fatal(err)
		}
		for name, cfg := range map[string]AuthConfig{
			"RotatedSecret": {Secret: []byte("the-next-secret-0123456789abcdefghij"), Clock: e.clock.Now},
			"Issuer":        {Secret: testSecret, Issuer: "https://auth.example.com", Clock: e.clock.Now},
			"Audience":      {Secret: testSecret, Audience: "loyalty-api", Clock: e.clock.Now},
			"WeakSecret":    {Secret: []byte(strings.Repeat("ab", 32)), Clock: e.clock.Now},
		} {
			if _, err := newVerifier(cfg, tokenCacheSize).verify(tok); err == nil {
				t.Errorf("%s: a token of the old configuration was accepted", name)
			}
		}
	})
}

// TestTokenCacheSecretRotation: an engine restarted with a new secret
// refuses the tokens its previous run accepted and remembered.
func TestTokenCacheSecretRotation(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		tok := e.admin()
		e.do("GET", "/v1/tiers", tok, nil).must(t, 200)
		e.do("GET", "/v1/tiers", tok, nil).must(t, 200)
		rotated := newAuthEnv(t, dialect, AuthConfig{Secret: []byte("the-next-secret-0123456789abcdefghij")})
		assertUnauthorized(t, rotated.do("GET", "/v1/tiers", tok, nil))
		rotated.do("GET", "/v1/tiers", rotated.admin(), nil).must(t, 200)
	})
}

// TestTokenCacheUsesTheLibraryValidator keeps the cache's recheck and the
// full verification on one definition of the time rules: jwt's validator
// with the same leeway, exp required and iat checked.
func TestTokenCacheUsesTheLibraryValidator(t *testing.T) {
	e := newCacheEnv(t, tokenCacheSize)
	now := e.clock.Now()
	for _, c := range []struct {
		name   string
		claims jwt.RegisteredClaims
		ok     bool
	}{
		{"NoExp", jwt.RegisteredClaims{}, false},
		{"Exp", jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute))}, true},
		{"IatAhead", jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now.Add(time.Minute))}, false},
		{"NbfAhead", jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(time.Minute))}, false},
	} {
		if err := e.v.times.Validate(&c.claims); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}
