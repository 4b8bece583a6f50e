package webhooks

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the dispatcher's Prometheus series: attempts by outcome
// (delivered; failed, to be retried; dead, given up) and their latency.
type metrics struct {
	attempts *prometheus.CounterVec
	latency  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loyalty_webhook_attempts_total",
			Help: "Webhook delivery attempts by outcome: delivered, failed (retried later) or dead (given up)."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "loyalty_webhook_attempt_duration_seconds",
			Help: "Duration of webhook delivery attempts.", Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
	}
	if reg != nil {
		m.attempts = register(reg, m.attempts)
		m.latency = register(reg, m.latency)
	}
	return m
}

// register registers c, or returns the collector already registered under
// its name (several dispatchers on one registry share the series).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if prev, ok := are.ExistingCollector.(C); ok {
				return prev
			}
		}
	}
	return c
}

func (m *metrics) observe(status string, latency time.Duration) {
	outcome := "failed"
	switch status {
	case Delivered:
		outcome = "delivered"
	case Failed:
		outcome = "dead"
	}
	m.attempts.WithLabelValues(outcome).Inc()
	m.latency.Observe(latency.Seconds())
}
