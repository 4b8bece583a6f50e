package api

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// tokenCacheSize is how many verified tokens an app remembers. A client
// sends the same token until it expires, so a hit skips the header check,
// the signature and the strict claim decoding; 10,000 covers every till
// and operator of a large retailer and the members active in one token
// lifetime, in a few megabytes.
const tokenCacheSize = 10_000

// verifier checks bearer tokens against one AuthConfig. It remembers the
// principal of each token it verified, keyed by the SHA-256 of the whole
// token, so only a token byte for byte equal to one that passed every
// check is served from memory; a token that differs anywhere, its
// signature included, is verified in full. A hit still rechecks the
// token's exp, nbf and iat against the clock with the same validator the
// full check uses. The cache lives and dies with its verifier: an app built
// with another secret, issuer or audience starts with an empty one.
type verifier struct {
	secret    []byte
	secretErr error // CheckSecret's verdict on secret: when set, every token fails
	parser    *jwt.Parser
	times     *jwt.Validator // exp, nbf and iat only, for cache hits
	cache     *tokenCache    // nil: nothing is remembered
}

// newVerifier builds a verifier for cfg remembering up to size tokens (0:
// none).
func newVerifier(cfg AuthConfig, size int) *verifier {
	v := &verifier{secret: bytes.Clone(cfg.Secret)}
	if err := CheckSecret(v.secret); err != nil {
		v.secretErr = fmt.Errorf("signing secret: %w", err)
	}
	now := cfg.Clock
	if now == nil {
		now = time.Now
	}
	timeOpts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(leeway), jwt.WithTimeFunc(now)}
	opts := append([]jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"})}, timeOpts...)
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	v.times = jwt.NewValidator(timeOpts...)
	if size > 0 {
		v.cache = newTokenCache(size)
	}
	return v
}

func (v *verifier) key(*jwt.Token) (any, error) { return v.secret, nil }

// verify returns the principal of a valid token.
func (v *verifier) verify(raw string) (loyalty.Principal, error) {
	p, err := v.principalOf([]byte(raw))
	if err != nil {
		return loyalty.Principal{}, err
	}
	return *p, nil
}

// principalOf returns the principal of a valid token, from the cache when
// the token was verified before and its times still hold. The principal
// may be shared with other requests: it must not be changed. raw is only
// read during the call.
func (v *verifier) principalOf(raw []byte) (*loyalty.Principal, error) {
	if v.cache == nil {
		p, _, err := v.check(string(raw))
		if err != nil {
			return nil, err
		}
		return &p, nil
	}
	k := sha256.Sum256(raw)
	if e := v.cache.get(k); e != nil {
		if err := v.times.Validate(&e.claims); err != nil {
			v.cache.remove(k)
			return nil, err
		}
		return &e.p, nil
	}
	p, c, err := v.check(string(raw))
	if err != nil {
		return nil, err
	}
	e := &cachedToken{p: p, claims: c.RegisteredClaims}
	v.cache.put(k, e)
	return &e.p, nil
}

// cachedToken is a verified token's principal and the claims whose
// verdict changes with time.
type cachedToken struct {
	p      loyalty.Principal
	claims jwt.RegisteredClaims
}

// tokenShards spreads the cache over locks so concurrent requests rarely
// wait on one another.
const tokenShards = 16

// tokenCache is a bounded map from a token's digest to its verification.
// A full shard drops an entry at random (Go's map iteration starts at a
// random place) to make room: no bookkeeping on hits, and no order an
// attacker holding many valid tokens could exploit beyond evicting entries,
// which only costs a full verification later.
type tokenCache struct {
	perShard int
	shards   [tokenShards]tokenShard
}

type tokenShard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]*cachedToken
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{perShard: max(1, size/tokenShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]*cachedToken)
	}
	return c
}

func (c *tokenCache) shard(k [sha256.Size]byte) *tokenShard { return &c.shards[k[0]%tokenShards] }

func (c *tokenCache) get(k [sha256.Size]byte) *cachedToken {
	s := c.shard(k)
	s.mu.RLock()
	e := s.m[k]
	s.mu.RUnlock()
	return e
}

func (c *tokenCache) put(k [sha256.Size]byte, e *cachedToken) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; !ok && len(s.m) >= c.perShard {
		for old := range s.m {
			delete(s.m, old)
			break
		}
	}
	s.m[k] = e
}

func (c *tokenCache) remove(k [sha256.Size]byte) {
	s := c.shard(k)
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

// len counts the tokens remembered.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
