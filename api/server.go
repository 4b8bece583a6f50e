// Package api is the engine's HTTP edge: routing, authentication, request
// decoding, problem documents, metrics and the OpenAPI description. Handlers
// decode, call one service method and encode; the rules live in loyalty.
package api

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/limiter"
	"github.com/gofiber/fiber/v2/middleware/pprof"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/google/uuid"

	"github.com/loyalty-engine/loyalty/api/console"
	"github.com/loyalty-engine/loyalty/api/problem"
	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/feedback"
	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
	"github.com/loyalty-engine/loyalty/rewards"
)

// BodyLimit is the largest request body accepted.
const BodyLimit = 1 << 20

// Config configures the HTTP app.
type Config struct {
	Auth   AuthConfig
	Logger *slog.Logger
	// RateLimit is how many requests one caller (role and sub) may make to
	// /v1 in each RateLimitWindow; 0 means unlimited.
	RateLimit int
	// RateLimitWindow is the limiter's fixed window; 0 means a minute.
	RateLimitWindow time.Duration
	// ReadTimeout bounds reading one request, headers and body, so a client
	// that trickles its request cannot hold a connection; 0 means 30s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response, so a client that never reads
	// cannot hold a connection; 0 means 30s.
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection with no request; 0 means 120s.
	IdleTimeout time.Duration
	// MaxHeaderBytes is the largest request line and headers accepted (431
	// beyond); 0 means 4 KiB.
	MaxHeaderBytes int
	// MetricsToken, when set, is a bearer token that may read /metrics
	// (compared in constant time), besides an admin token; without it
	// /metrics takes an admin token only.
	MetricsToken string
	// MetricsOff keeps /metrics off this app, for a deployment that serves
	// it on another address with MetricsApp.
	MetricsOff bool
	// StreamsPerCaller bounds the balance streams one principal keeps open
	// (429 beyond); 0 means DefaultStreamsPerCaller.
	StreamsPerCaller int
	// StreamHeartbeat is how often an idle balance stream sends a comment;
	// 0 means DefaultStreamHeartbeat.
	StreamHeartbeat time.Duration
	// StreamMaxAge, when set, ends a balance stream after this long; the
	// client reconnects with Last-Event-ID and resumes, maybe on another
	// process. 0 means streams last until the client or the server ends
	// them.
	StreamMaxAge time.Duration
	// Rewards and Jobs default to services built on the ledger service.
	Rewards *rewards.Service
	Jobs    *jobs.Runner
	// Webhooks defaults to a service on the ledger service; give the one
	// whose Dispatcher runs, so a change through the API reaches it at once.
	Webhooks *webhooks.Service
	// Imports runs the console's imports (§15); nil means the service's
	// own, as POST /v1/imports runs them.
	Imports console.Importer
}

type server struct {
	svc      *loyalty.Service
	rewards  *rewards.Service
	jobs     *jobs.Runner
	feedback *feedback.Service
	webhooks *webhooks.Service
	// verifier checks bearer tokens, remembering those it verified; a
	// new app, as after a secret's rotation, starts with an empty one.
	verifier *verifier
	log      *slog.Logger
	metrics  *Metrics
	// streams fans balance changes out to the open balance streams.
	streams         *balanceStreams
	streamHeartbeat time.Duration
	streamMaxAge    time.Duration
	writeTimeout    time.Duration
}

// New builds the app over svc. The Metrics it returns must be given to the
// service as its observer for business counters to move.
func New(svc *loyalty.Service, cfg Config, metrics *Metrics) *fiber.App {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Rewards == nil {
		cfg.Rewards = rewards.NewService(svc)
	}
	if cfg.Jobs == nil {
		cfg.Jobs = jobs.NewRunner(svc, cfg.Rewards)
	}
	if cfg.Webhooks == nil {
		cfg.Webhooks = webhooks.NewService(svc)
	}
	if cfg.Imports == nil {
		cfg.Imports = consoleImports{svc: svc, log: cfg.Logger}
	}
	s := &server{svc: svc, rewards: cfg.Rewards, jobs: cfg.Jobs, feedback: feedback.NewService(svc), webhooks: cfg.Webhooks,
		verifier: newVerifier(cfg.Auth, tokenCacheSize), log: cfg.Logger, metrics: metrics,
		streams:         newBalanceStreams(svc, cfg.Logger, cfg.StreamsPerCaller),
		streamHeartbeat: orDefault(cfg.StreamHeartbeat, DefaultStreamHeartbeat), streamMaxAge: cfg.StreamMaxAge,
		writeTimeout: orDefault(cfg.WriteTimeout, 30*time.Second)}
	app := s.newApp(cfg)

	app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	app.Get("/readyz", s.ready)
	if !cfg.MetricsOff {
		app.Get("/metrics", s.metricsAuth(cfg.MetricsToken), metrics.handler())
	}
	app.Get("/openapi.json", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(OpenAPI)
	})

	const (
		admin    = loyalty.RoleAdmin
		marketer = loyalty.RoleMarketer
		pos      = loyalty.RolePOS
		member   = loyalty.RoleMember
	)
	all := []loyalty.Role{admin, marketer, pos, member}
	v1 := s.v1(app, cfg)

	v1.Get("/program", allow(marketer, admin), s.getProgram)
	v1.Put("/program", allow(marketer, admin), s.putProgram)

	v1.Get("/tiers", allow(all...), s.listTiers)
	v1.Put("/tiers/:code", allow(marketer, admin), s.putTier)
	v1.Delete("/tiers/:code", allow(marketer, admin), s.deleteTier)

	v1.Post("/members", allow(pos, marketer, admin), s.enrolMember)
	v1.Get("/members", allow(pos, marketer, admin), s.findMembers)

	// Streamed CSV exports (§15); before /members/:id, which would take "export" for an id.
	v1.Get("/members/export", allow(admin), s.exportMembers)
	v1.Get("/ledger/export", allow(admin), s.exportLedger)

	v1.Get("/members/:id", allow(all...), s.getMember)
	v1.Patch("/members/:id", allow(all...), s.patchMember)
	v1.Delete("/members/:id", allow(admin), s.eraseMember)
	v1.Get("/members/:id/balance", allow(all...), s.getBalance)
	v1.Get("/members/:id/balance/stream", allow(member, pos, admin), s.balanceStream)
	v1.Get("/members/:id/ledger", allow(all...), s.getLedger)
	v1.Post("/members/:id/adjustments", allow(admin), s.postAdjustment)

	v1.Post("/purchases/quote", allow(pos, admin), s.quotePurchase)
	v1.Post("/purchases", allow(pos, admin), s.postPurchase)
	v1.Post("/purchases/batch", allow(pos, admin), s.postPurchaseBatch)
	v1.Get("/purchases/:id", allow(all...), s.getPurchase)
	v1.Post("/purchases/:id/returns", allow(pos, admin), s.postReturn)

	v1.Post("/rewards", allow(marketer, admin), s.createReward)
	v1.Get("/rewards", allow(all...), s.listRewards)
	v1.Get("/rewards/:id", allow(all...), s.getReward)
	v1.Patch("/rewards/:id", allow(marketer, admin), s.patchReward)
	v1.Delete("/rewards/:id", allow(marketer, admin), s.retireReward)
	v1.Post("/members/:id/redemptions", allow(member, pos, admin), s.redeem)
	v1.Get("/members/:id/redemptions", allow(all...), s.listRedemptions)
	v1.Get("/redemptions/:id", allow(all...), s.getRedemption)
	v1.Post("/redemptions/:id/cancel", allow(member, pos, admin), s.cancelRedemption)
	v1.Get("/coupons/:code", allow(pos, admin), s.getCoupon)
	v1.Post("/coupons/:code/use", allow(pos, admin), s.useCoupon)

	v1.Post("/offers", allow(marketer, admin), s.createOffer)
	v1.Get("/offers", allow(marketer, admin), s.listOffers)
	v1.Get("/offers/:id", allow(marketer, admin), s.getOffer)
	v1.Patch("/offers/:id", allow(marketer, admin), s.patchOffer)
	v1.Get("/offers/:id/reach", allow(marketer, admin), s.offerReach)
	v1.Post("/offer-templates", allow(marketer, admin), s.createTemplate)
	v1.Get("/offer-templates", allow(marketer, admin), s.listTemplates)
	v1.Patch("/offer-templates/:id", allow(marketer, admin), s.patchTemplate)
	v1.Get("/members/:id/offers", allow(all...), s.memberOffers)
	v1.Post("/members/:id/offers/:offer_id/activate", allow(member, pos, admin), s.activateOffer)
	v1.Get("/members/:id/gifts", allow(all...), s.listGifts)
	v1.Post("/members/:id/gifts/:gift_id/claim", allow(member, pos, admin), s.claimGift)

	v1.Get("/analytics/redemption-rate", allow(marketer, admin), s.redemptionRate)
	v1.Get("/analytics/summary", allow(marketer, admin), s.summary)
	v1.Get("/analytics/churn-model", allow(marketer, admin), s.churnModel)
	v1.Get("/analytics/churn-risk", allow(marketer, admin), s.churnRisk)
	v1.Get("/analytics/cx", allow(marketer, admin), s.cxReport)
	v1.Get("/analytics/clv-model", allow(marketer, admin), s.clvModel)
	v1.Get("/analytics/clv", allow(marketer, admin), s.clvList)
	v1.Get("/analytics/store-categories", allow(marketer, admin), s.storeCategories)
	v1.Get("/analytics/category-lapse", allow(marketer, admin), s.categoryLapse)
	v1.Post("/feedback", allow(member, pos, admin), s.postFeedback)
	v1.Get("/segments", allow(marketer, admin), s.listSegments)
	v1.Get("/segments/:code/members", allow(marketer, admin), s.segmentMembers)

	v1.Get("/jobs", allow(marketer, admin), s.listJobs)
	v1.Post("/jobs/:name/run", allow(marketer, admin), s.runJob)

	v1.Get("/audit", allow(admin), s.listAudit)
	v1.Get("/events", allow(admin), s.listEvents)

	// Imports (§15).
	v1.Post("/imports", allow(admin), s.postImport)
	v1.Get("/imports/:id", allow(admin), s.getImport)
	v1.Get("/imports/:id/errors", allow(admin), s.importErrors)

	v1.Post("/webhooks", allow(admin), s.createWebhook)
	v1.Get("/webhooks", allow(admin), s.listWebhooks)
	v1.Get("/webhooks/:id", allow(admin), s.getWebhook)
	v1.Patch("/webhooks/:id", allow(admin), s.patchWebhook)
	v1.Delete("/webhooks/:id", allow(admin), s.deleteWebhook)
	v1.Post("/webhooks/:id/rotate-secret", allow(admin), s.rotateWebhookSecret)
	v1.Get("/webhooks/:id/deliveries", allow(admin), s.listDeliveries)
	v1.Post("/webhooks/:id/deliveries/:delivery_id/retry", allow(admin), s.retryDelivery)

	// Go's profiler, for admins only: /debug/pprof/profile?seconds=30 and the rest.
	app.Group("/debug", s.authenticate, allow(admin)).Use(pprof.New())

	console.Mount(app, console.Deps{Loyalty: svc, Rewards: cfg.Rewards, Jobs: cfg.Jobs, Webhooks: cfg.Webhooks, Verify: s.verifier.verify,
		Imports: cfg.Imports, WriteTimeout: s.writeTimeout,
		Secret: cfg.Auth.Secret, Logger: cfg.Logger})

	app.Use(func(c *fiber.Ctx) error { return fiber.ErrNotFound })
	return app
}

// newApp is the Fiber app with the middleware every request passes
// through, before any route.
func (s *server) newApp(cfg Config) *fiber.App {
	app := fiber.New(fiber.Config{
		AppName:               "loyalty",
		BodyLimit:             BodyLimit,
		ErrorHandler:          errorHandler(cfg.Logger),
		Immutable:             true,
		DisableStartupMessage: true,
		ReadTimeout:           orDefault(cfg.ReadTimeout, 30*time.Second),
		WriteTimeout:          orDefault(cfg.WriteTimeout, 30*time.Second),
		IdleTimeout:           orDefault(cfg.IdleTimeout, 120*time.Second),
		ReadBufferSize:        orDefault(cfg.MaxHeaderBytes, DefaultMaxHeaderBytes),
	})
	// The body of an import stays on the connection for its handler
	// (imports_handlers.go).
	app.Server().HeaderReceived = importBodyHeader
	app.Use(refuseAmbiguousLength)
	app.Use(recover.New())
	app.Use(assignRequestID)
	app.Use(s.observe)

	return app
}

// v1 is the /v1 group: authenticated and, when configured, rate limited
// per caller.
func (s *server) v1(app *fiber.App, cfg Config) fiber.Router {
	v1 := app.Group("/v1", s.authenticate, s.noteServing)
	if cfg.RateLimit > 0 {
		v1.Use(limiter.New(limiter.Config{
			Max:          cfg.RateLimit,
			Expiration:   orDefault(cfg.RateLimitWindow, time.Minute),
			KeyGenerator: func(c *fiber.Ctx) string { p := principal(c); return string(p.Role) + ":" + p.Subject },
			LimitReached: rateLimited,
		}))
	}
	return v1
}

// noteServing tells the store that a caller's write begins (every /v1
// request but a read or a job's run), so that a nightly job that can
// leave cores to the tills does so (loyalty.Store.NoteServing).
func (s *server) noteServing(c *fiber.Ctx) error {
	switch c.Method() {
	case fiber.MethodGet, fiber.MethodHead, fiber.MethodOptions:
	default:
		if !strings.HasPrefix(c.Path(), "/v1/jobs/") {
			s.svc.Store().NoteServing()
		}
	}
	return c.Next()
}

// DefaultMaxHeaderBytes is the default bound on a request's line and
// headers, Fiber's own default: room for a bearer token and the usual
// browser headers.
const DefaultMaxHeaderBytes = 4 << 10

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// rateLimited answers a caller over its allowance. The limiter has set
// Retry-After to the seconds left in the caller's window; the problem's
// detail repeats it.
func rateLimited(c *fiber.Ctx) error {
	wait := string(c.Response().Header.Peek(fiber.HeaderRetryAfter))
	if wait == "" {
		wait = "60"
		c.Set(fiber.HeaderRetryAfter, wait)
	}
	return &loyalty.Error{Code: problem.RateLimited, Reason: "rate_limited",
		Message: "too many requests from this caller; retry after " + wait + " seconds"}
}

func (s *server) ready(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	if err := s.svc.Store().Ping(ctx); err != nil {
		return loyalty.Errorf(loyalty.Unavailable, "database_unavailable", "the database does not answer")
	}
	return c.JSON(fiber.Map{"status": "ready"})
}

// requestIDLocal is where assignRequestID keeps the request's id.
const requestIDLocal = "requestid"

// maxRequestID bounds a client's X-Request-ID.
const maxRequestID = 128

// assignRequestID gives every request an id, answered in X-Request-ID and
// written on its log lines: the client's own when it is 1 to 128
// characters of letters, digits and - _ . : / + = (enough for UUIDs, trace
// ids and base64), else a fresh UUID, so a header can neither forge log
// lines nor carry markup or control bytes into a log viewer.
func assignRequestID(c *fiber.Ctx) error {
	id := c.Get(fiber.HeaderXRequestID)
	if !safeRequestID(id) {
		id = uuid.NewString()
	}
	c.Set(fiber.HeaderXRequestID, id)
	c.Locals(requestIDLocal, id)
	return c.Next()
}

func safeRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch b := id[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case strings.IndexByte("-_.:/+=", b) >= 0:
		default:
			return false
		}
	}
	return true
}

func requestID(c *fiber.Ctx) string {
	id, _ := c.Locals(requestIDLocal).(string)
	return id
}

// refuseAmbiguousLength answers 400, and closes the connection, for a
// request whose body length is ambiguous: Content-Length given more than
// once, or together with Transfer-Encoding (RFC 9112 §6.3). fasthttp keeps
// the last Content-Length and lets Transfer-Encoding win, so a proxy that
// reads the message another way would see one request where the engine
// reads two: the bytes after the body the engine read are request
// smuggling, and closing the connection discards them.
func refuseAmbiguousLength(c *fiber.Ctx) error {
	lengths, chunked := 0, false
	raw := c.Request().Header.RawHeaders()
	for len(raw) > 0 {
		var line []byte
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			line, raw = raw, nil
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		switch {
		case bytes.EqualFold(name, []byte(fiber.HeaderContentLength)):
			lengths++
		case bytes.EqualFold(name, []byte(fiber.HeaderTransferEncoding)):
			chunked = true
		}
	}
	if lengths > 1 || (lengths == 1 && chunked) {
		c.Context().SetConnectionClose()
		return loyalty.Errorf(loyalty.Malformed, "ambiguous_length",
			"the request has several Content-Length headers, or Content-Length with Transfer-Encoding")
	}
	return c.Next()
}

// routePath is the matched route's template, such as /v1/members/:id: it
// names the endpoint without the ids or query strings in the URL.
func routePath(c *fiber.Ctx) string {
	if r := c.Route(); r != nil && r.Path != "" && r.Path != "/" {
		return r.Path
	}
	return "unmatched"
}

// observe logs one line per request and records its latency. It logs the
// route template, never the URL (which may hold an e-mail address in a
// query) nor any header.
func (s *server) observe(c *fiber.Ctx) error {
	start := time.Now()
	err := c.Next()
	if err != nil {
		if herr := c.App().ErrorHandler(c, err); herr != nil {
			_ = c.SendStatus(fiber.StatusInternalServerError)
		}
	}
	status := c.Response().StatusCode()
	route := routePath(c)
	elapsed := time.Since(start)
	s.metrics.observeRequest(c.Method(), route, status, elapsed)
	// LogAttrs, unlike Info, boxes none of the values.
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "request", slog.String("request_id", requestID(c)),
		slog.String("method", c.Method()), slog.String("route", route), slog.Int("status", status),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000), slog.String("role", string(principal(c).Role)))
	return nil
}
