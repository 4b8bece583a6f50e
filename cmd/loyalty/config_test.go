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
