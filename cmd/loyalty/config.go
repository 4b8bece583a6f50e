package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-engine/loyalty/api"
	"github.com/loyalty-engine/loyalty/loyalty/natsink"
	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
)

// config is read from the environment, once, in main.
type config struct {
	DatabaseURL string
	Addr        string
	Jobs        bool
	RateLimit   int
	// HTTP holds the server's limits and timeouts (LOYALTY_RATE_LIMIT_WINDOW,
	// LOYALTY_READ_TIMEOUT, LOYALTY_WRITE_TIMEOUT, LOYALTY_IDLE_TIMEOUT,
	// LOYALTY_MAX_HEADER_BYTES); zero values take the api package's defaults.
	HTTP     api.Config
	LogLevel slog.Level
	Auth     api.AuthConfig
	// SecretFile is where the generated secret of an embedded deployment
	// lives; empty when the secret came from the environment.
	SecretFile string
	// MetricsAddr, when set, is where /metrics is served instead of Addr
	// (LOYALTY_METRICS_ADDR); HTTP.MetricsToken (LOYALTY_METRICS_TOKEN) is
	// the bearer token a scraper sends.
	MetricsAddr string
	// NATS configures the JetStream sink (LOYALTY_NATS_URL,
	// LOYALTY_NATS_STREAM, LOYALTY_NATS_SUBJECT); off without a URL.
	NATS natsink.Config
	// Webhooks tunes the deliveries (LOYALTY_WEBHOOK_TIMEOUT,
	// LOYALTY_WEBHOOK_FIRST_RETRY); zero values take §14's defaults.
	Webhooks webhooks.Config
	// WriterNice is the nice value `serve` asks for the SQLite writer's
	// thread (LOYALTY_SQLITE_WRITER_NICE, -20 to 0; 0 leaves it alone).
	WriterNice int
	// JobsCgroup is the cgroup the nightly jobs' database backends run in
	// (LOYALTY_JOBS_CGROUP; loyalty.JobsCgroup), "" for none.
	JobsCgroup string
}

// defaultWriterNice is the SQLite writer's priority while it commits till
// writes, where the process may raise it (loyalty.WriterNice).
const defaultWriterNice = -20

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func loadConfig() (config, error) {
	c := config{
		DatabaseURL: env("LOYALTY_DATABASE_URL", "sqlite://loyalty.db"),
		Addr:        env("LOYALTY_ADDR", ":8080"),
		Jobs:        env("LOYALTY_JOBS", "on") != "off",
		Auth:        api.AuthConfig{Issuer: os.Getenv("LOYALTY_JWT_ISSUER"), Audience: os.Getenv("LOYALTY_JWT_AUDIENCE")},
	}
	if v := os.Getenv("LOYALTY_RATE_LIMIT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return c, errors.New("LOYALTY_RATE_LIMIT must be a number of requests a minute per caller (0: unlimited)")
		}
		c.RateLimit = n
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{
		{"LOYALTY_RATE_LIMIT_WINDOW", &c.HTTP.RateLimitWindow}, {"LOYALTY_READ_TIMEOUT", &c.HTTP.ReadTimeout},
		{"LOYALTY_WRITE_TIMEOUT", &c.HTTP.WriteTimeout}, {"LOYALTY_IDLE_TIMEOUT", &c.HTTP.IdleTimeout},
		{"LOYALTY_WEBHOOK_TIMEOUT", &c.Webhooks.Timeout}, {"LOYALTY_WEBHOOK_FIRST_RETRY", &c.Webhooks.FirstRetry},
	} {
		if v := os.Getenv(d.name); v != "" {
			t, err := time.ParseDuration(v)
			if err != nil || t <= 0 {
				return c, fmt.Errorf("%s must be a positive duration such as 30s", d.name)
			}
			*d.dst = t
		}
	}
	if v := os.Getenv("LOYALTY_MAX_HEADER_BYTES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1024 {
			return c, errors.New("LOYALTY_MAX_HEADER_BYTES must be a number of bytes, at least 1024")
		}
		c.HTTP.MaxHeaderBytes = n
	}
	if t := os.Getenv("LOYALTY_METRICS_TOKEN"); t != "" {
		if err := api.CheckSecret([]byte(t)); err != nil {
			return c, fmt.Errorf("LOYALTY_METRICS_TOKEN is too weak: %w", err)
		}
		c.HTTP.MetricsToken = t
	}
	c.MetricsAddr = os.Getenv("LOYALTY_METRICS_ADDR")
	c.NATS = natsink.Config{URL: os.Getenv("LOYALTY_NATS_URL"), Stream: env("LOYALTY_NATS_STREAM", natsink.DefaultStream),
		Subject: env("LOYALTY_NATS_SUBJECT", natsink.DefaultSubject)}
	if !natsName.MatchString(c.NATS.Stream) {
		return c, errors.New("LOYALTY_NATS_STREAM must be letters, digits, - and _")
	}
	if !natsSubject.MatchString(c.NATS.Subject) {
		return c, errors.New("LOYALTY_NATS_SUBJECT must be dot-separated tokens of letters, digits, - and _ (such as loyalty.events)")
	}
	c.WriterNice = defaultWriterNice
	if v := os.Getenv("LOYALTY_SQLITE_WRITER_NICE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < -20 || n > 0 {
			return c, errors.New("LOYALTY_SQLITE_WRITER_NICE must be a nice value from -20 to 0 (0: the process's own)")
		}
		c.WriterNice = n
	}
	c.JobsCgroup = os.Getenv("LOYALTY_JOBS_CGROUP")
	if v := os.Getenv("LOYALTY_STREAMS_PER_CALLER"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return c, errors.New("LOYALTY_STREAMS_PER_CALLER must be a number of streams, at least 1")
		}
		c.HTTP.StreamsPerCaller = n
	}
	c.HTTP.MetricsOff = c.MetricsAddr != ""
	if err := c.LogLevel.UnmarshalText([]byte(env("LOYALTY_LOG_LEVEL", "info"))); err != nil {
		return c, fmt.Errorf("LOYALTY_LOG_LEVEL: %w", err)
	}
	if s := os.Getenv("LOYALTY_JWT_SECRET"); s != "" {
		if err := api.CheckSecret([]byte(s)); err != nil {
			return c, fmt.Errorf("LOYALTY_JWT_SECRET is too weak: %w", err)
		}
		c.Auth.Secret = []byte(s)
		return c, nil
	}
	path, ok := strings.CutPrefix(c.DatabaseURL, "sqlite://")
	if !ok {
		return c, errors.New("LOYALTY_JWT_SECRET is required with PostgreSQL: set it to a random string of at least 32 characters")
	}
	c.SecretFile = filepath.Join(filepath.Dir(path), "loyalty.secret")
	secret, err := readOrCreateSecret(c.SecretFile)
	if err != nil {
		return c, err
	}
	c.Auth.Secret = secret
	return c, nil
}

var (
	natsName    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	natsSubject = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// readOrCreateSecret keeps the embedded deployment's signing secret in a
// file only its owner can read, made on first use.
func readOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if err := api.CheckSecret([]byte(s)); err != nil {
			return nil, fmt.Errorf("%s: the secret is too weak: %w", path, err)
		}
		return []byte(s), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("make secret: %w", err)
	}
	s := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("write secret: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readOrCreateSecret(path)
	}
	if err != nil {
		return nil, fmt.Errorf("write secret: %w", err)
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("write secret: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write secret: %w", err)
	}
	return []byte(s), nil
}
