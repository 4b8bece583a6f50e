package api

import (
	"crypto/subtle"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// Metrics are the engine's Prometheus metrics. It implements
// loyalty.Observer for the business counters.
type Metrics struct {
	reg       *prometheus.Registry
	latency   *prometheus.HistogramVec
	observers sync.Map // requestLabels → prometheus.Observer: latency's child per label set
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

// metricsAuth guards /metrics on the API's address: request volumes by
// route, business counters and process details are not for anyone who can
// reach the port. It takes an admin token, or token when one is set.
func (s *server) metricsAuth(token string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if token != "" && bearerIs(c, token) {
			return c.Next()
		}
		raw, ok := strings.CutPrefix(c.Get(fiber.HeaderAuthorization), "Bearer ")
		p, err := s.verifier.verify(strings.TrimSpace(raw))
		if !ok || err != nil {
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="loyalty"`)
			return loyalty.Errorf(loyalty.Unauthorized, "unauthorized", "send Authorization: Bearer <admin token or metrics token>")
		}
		if !p.Is(loyalty.RoleAdmin) {
			return loyalty.Errorf(loyalty.Forbidden, "forbidden", "role %q may not read metrics", p.Role)
		}
		return c.Next()
	}
}

// bearerIs reports whether the request carries token as its bearer token,
// compared in constant time.
func bearerIs(c *fiber.Ctx, token string) bool {
	got, ok := strings.CutPrefix(c.Get(fiber.HeaderAuthorization), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// MetricsApp serves /metrics alone, for a separate address such as one
// bound to a private interface (LOYALTY_METRICS_ADDR): open there, or,
// when token is set, only with that bearer token.
func MetricsApp(m *Metrics, token string) *fiber.App {
	app := fiber.New(fiber.Config{AppName: "loyalty-metrics", DisableStartupMessage: true,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorHandler: errorHandler(slog.Default())})
	app.Use(refuseAmbiguousLength)
	app.Get("/metrics", func(c *fiber.Ctx) error {
		if token != "" && !bearerIs(c, token) {
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="loyalty-metrics"`)
			return loyalty.Errorf(loyalty.Unauthorized, "unauthorized", "send Authorization: Bearer <metrics token>")
		}
		return c.Next()
	}, m.handler())
	app.Use(func(c *fiber.Ctx) error { return fiber.ErrNotFound })
	return app
}

// requestLabels are the labels of one request's latency. Routes are the
// app's templates and methods its own, so there are few label sets.
type requestLabels struct {
	method, route string
	status        int
}

// observeRequest records a request's latency. The histogram's child for
// its labels is looked up once and kept: WithLabelValues would hash and
// look up the three labels, and format the status, on every request.
func (m *Metrics) observeRequest(method, route string, status int, d time.Duration) {
	k := requestLabels{method, route, status}
	o, ok := m.observers.Load(k)
	if !ok {
		// The key outlives the request: it must not share its buffers.
		k = requestLabels{strings.Clone(method), strings.Clone(route), status}
		o, _ = m.observers.LoadOrStore(k, m.latency.WithLabelValues(k.method, k.route, strconv.Itoa(status)))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
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
