package api

import (
	"io"
	"log/slog"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestRequestLatencyObserved: every request lands in the latency
// histogram under its method, route template and status, also once its
// observer is kept.
func TestRequestLatencyObserved(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := NewMetrics()
		e.app = New(e.svc, Config{Auth: e.auth, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}, m)
		tok := e.admin()
		for range 3 {
			e.do("GET", "/v1/tiers", tok, nil).must(t, 200)
		}
		for range 2 {
			e.do("GET", "/v1/tiers", "", nil).must(t, 401)
		}
		e.do("GET", "/v1/members/x/balance", tok, nil).must(t, 404)
		want := map[[3]string]uint64{
			{"GET", "/v1/tiers", "200"}: 3,
			// Refused by the group's authentication, before any route.
			{"GET", "/v1", "401"}:                     2,
			{"GET", "/v1/members/:id/balance", "404"}: 1,
		}
		fams, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[[3]string]uint64{}
		for _, f := range fams {
			if f.GetName() != "loyalty_http_request_duration_seconds" {
				continue
			}
			for _, s := range f.GetMetric() {
				got[labels(s)] = s.GetHistogram().GetSampleCount()
			}
		}
		for k, n := range want {
			if got[k] != n {
				t.Errorf("%v: %d observations, want %d (all: %v)", k, got[k], n, got)
			}
		}
	})
}

func labels(m *dto.Metric) [3]string {
	var l [3]string
	for _, p := range m.GetLabel() {
		switch p.GetName() {
		case "method":
			l[0] = p.GetValue()
		case "route":
			l[1] = p.GetValue()
		case "status":
			l[2] = p.GetValue()
		}
	}
	return l
}
