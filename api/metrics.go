package api

import (
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the engine's Prometheus metrics. It implements
// loyalty.Observer for the business counters.
type Metrics struct {
	reg       *prometheus.Registry
	latency   *prometheus.HistogramVec
	purchases prometheus.Counter
	issued    prometheus.Counter
	redeemed  prometheus.Counter
}

// NewMetrics registers the engine's metrics, with the Go runtime and
// process collectors, on a registry of its own.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "loyalty_http_request_duration_seconds", Help: "HTTP request latency by route and status.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"method", "route", "status"})
	m.purchases = prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_purchases_total", Help: "Purchases posted."})
	m.issued = prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_points_issued_total", Help: "Points credited to members."})
	m.redeemed = prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_points_redeemed_total", Help: "Points spent on rewards."})
	m.reg.MustRegister(m.latency, m.purchases, m.issued, m.redeemed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the metrics are registered, for other parts to add theirs.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) handler() fiber.Handler {
	return adaptor.HTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
}

func (m *Metrics) observeRequest(method, route string, status int, d time.Duration) {
	m.latency.WithLabelValues(method, route, strconv.Itoa(status)).Observe(d.Seconds())
}

// PurchasePosted counts a purchase.
func (m *Metrics) PurchasePosted(int64) { m.purchases.Inc() }

// PointsIssued counts credited points.
func (m *Metrics) PointsIssued(n int64) {
	if n > 0 {
		m.issued.Add(float64(n))
	}
}

// PointsRedeemed counts spent points.
func (m *Metrics) PointsRedeemed(n int64) {
	if n > 0 {
		m.redeemed.Add(float64(n))
	}
}
