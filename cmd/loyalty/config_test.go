package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigRefusesWeakSecrets: the server does not start with a signing
// secret anyone could guess, whether it comes from the environment or from
// the embedded deployment's secret file.
func TestConfigRefusesWeakSecrets(t *testing.T) {
	t.Setenv("LOYALTY_DATABASE_URL", "sqlite://"+filepath.Join(t.TempDir(), "loyalty.db"))
	for _, s := range []string{strings.Repeat(" ", 40), strings.Repeat("a", 64), strings.Repeat("ab", 20), "  short secret, long padding      "} {
		t.Setenv("LOYALTY_JWT_SECRET", s)
		if _, err := loadConfig(); err == nil {
			t.Errorf("LOYALTY_JWT_SECRET=%q was accepted", s)
		}
	}
	t.Setenv("LOYALTY_JWT_SECRET", testSecret)
	if _, err := loadConfig(); err != nil {
		t.Errorf("a strong secret was refused: %v", err)
	}
}

// TestConfigMetrics: LOYALTY_METRICS_TOKEN must be as strong as a signing
// secret, and LOYALTY_METRICS_ADDR moves /metrics off the API's address.
func TestConfigMetrics(t *testing.T) {
	t.Setenv("LOYALTY_DATABASE_URL", "sqlite://"+filepath.Join(t.TempDir(), "loyalty.db"))
	t.Setenv("LOYALTY_JWT_SECRET", testSecret)
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.MetricsToken != "" || c.HTTP.MetricsOff || c.MetricsAddr != "" {
		t.Errorf("metrics configured by default: %+v", c.HTTP)
	}
	t.Setenv("LOYALTY_METRICS_TOKEN", "scrape")
	if _, err := loadConfig(); err == nil {
		t.Error("a weak LOYALTY_METRICS_TOKEN was accepted")
	}
	t.Setenv("LOYALTY_METRICS_TOKEN", "scrape-token-0123456789abcdef-0123456789")
	t.Setenv("LOYALTY_METRICS_ADDR", "127.0.0.1:9090")
	if c, err = loadConfig(); err != nil {
		t.Fatal(err)
	}
	if c.HTTP.MetricsToken != "scrape-token-0123456789abcdef-0123456789" || !c.HTTP.MetricsOff || c.MetricsAddr != "127.0.0.1:9090" {
		t.Errorf("metrics configuration: token %q off %v addr %q", c.HTTP.MetricsToken, c.HTTP.MetricsOff, c.MetricsAddr)
	}
}

// TestConfigWriterNice: the SQLite writer's nice value defaults to -20,
// 0 turns it off, and anything outside -20..0 stops the engine at start.
func TestConfigWriterNice(t *testing.T) {
	t.Setenv("LOYALTY_DATABASE_URL", "sqlite://"+filepath.Join(t.TempDir(), "loyalty.db"))
	t.Setenv("LOYALTY_JWT_SECRET", testSecret)
	c, err := loadConfig()
	if err != nil || c.WriterNice != -20 {
		t.Fatalf("default: WriterNice %d, %v; want -20", c.WriterNice, err)
	}
	for v, want := range map[string]int{"0": 0, "-5": -5, "-20": -20} {
		t.Setenv("LOYALTY_SQLITE_WRITER_NICE", v)
		if c, err := loadConfig(); err != nil || c.WriterNice != want {
			t.Errorf("LOYALTY_SQLITE_WRITER_NICE=%s: %d, %v; want %d", v, c.WriterNice, err, want)
		}
	}
	for _, v := range []string{"-21", "1", "19", "high"} {
		t.Setenv("LOYALTY_SQLITE_WRITER_NICE", v)
		if _, err := loadConfig(); err == nil {
			t.Errorf("LOYALTY_SQLITE_WRITER_NICE=%s was accepted", v)
		}
	}
}
