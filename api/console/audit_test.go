package console_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestConsoleChangesAreAudited checks that a change made in the console is
// recorded in the audit trail under the signed-in user, as through the API.
func TestConsoleChangesAreAudited(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.tiers()
		mk := e.client()
		csrf := mk.signIn(e.token(loyalty.RoleMarketer, "mk-9"))
		mk.post("/console/tiers/vib", csrf, url.Values{"name": {"VIB"}, "rank": {"1"}, "earn_multiplier": {"1.75"},
			"qualifying_spend": {"400"}}).must(t, 303)
		l, err := e.svc.AuditLog(context.Background(), loyalty.Principal{Subject: "op", Role: loyalty.RoleAdmin},
			loyalty.AuditQuery{ActorSub: "mk-9"})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) != 1 {
			t.Fatalf("audit rows by mk-9: %+v, want 1", l.Items)
		}
		if r := l.Items[0]; r.ActorRole != "marketer" || r.TargetKind != "tier" || r.TargetID != "vib" ||
			(r.Action != "tier.update" && r.Action != "tier.create") {
			t.Errorf("console tier change recorded as %+v", r)
		}
	})
}
