// Package console is the marketers' web console served at /console: the
// program's dashboard and its settings (tiers, rewards, offers, birthday
// gifts, points as payment), members and jobs, and for admins the webhooks
// and a live tail of the event log, as server-rendered pages
// enhanced with htmx and charts drawn by Chart.js. It calls the same services as the JSON API and
// holds no business rule of its own; everything it shows and serves is
// embedded in the binary.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	statuses "github.com/loyalty-engine/loyalty/api/problem"
	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
	"github.com/loyalty-engine/loyalty/rewards"
)

// Prefix is where the console is mounted.
const Prefix = "/console"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/*.js static/*.css
var staticFS embed.FS

// Deps are the services and secrets the console works with.
type Deps struct {
	Loyalty *loyalty.Service
	Rewards *rewards.Service
	Jobs    *jobs.Runner
	// Webhooks configures the endpoints events are delivered to (admins).
	Webhooks *webhooks.Service
	// Imports runs the imports of §15 for the Imports page (admins); nil
	// when the engine has none, and the page offers only the exports.
	Imports Importer
	// WriteTimeout is the server's write timeout, renewed for each chunk
	// of an export so that a large download is not cut off.
	WriteTimeout time.Duration
	// Verify checks a token exactly as the API does and returns its
	// principal: the console accepts the same tokens.
	Verify func(token string) (loyalty.Principal, error)
	// Secret keys the CSRF tokens (the JWT signing secret).
	Secret []byte
	Logger *slog.Logger
}

type handler struct {
	Deps
	pages  map[string]*template.Template
	static map[string]asset
}

type asset struct {
	body        []byte
	contentType string
	version     string // a digest of body, appended to its URL to bust caches
}

// Mount registers the console's routes on app under /console. Call it
// before any catch-all handler.
func Mount(app *fiber.App, d Deps) {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	h := &handler{Deps: d, static: loadStatic()}
	h.pages = h.parsePages()

	g := app.Group(Prefix, h.headers)
	g.Get("/static/:file", h.serveStatic)
	g.Get("/login", h.loginPage)
	g.Post("/login", h.login)
	g.Post("/logout", h.logout)

	auth, csrf := h.authenticate, h.checkCSRF
	g.Get("/", auth, h.dashboard)
	g.Get("/tiers", auth, h.tiersPage)
	g.Post("/tiers", auth, csrf, h.saveTier)
	g.Post("/tiers/:code", auth, csrf, h.saveTier)
	g.Get("/rewards", auth, h.rewardsPage)
	g.Post("/rewards", auth, csrf, h.createReward)
	g.Get("/rewards/:id", auth, h.rewardPage)
	g.Post("/rewards/:id", auth, csrf, h.updateReward)
	g.Post("/rewards/:id/retire", auth, csrf, h.retireReward)
	g.Get("/offers", auth, h.offersPage)
	g.Post("/offers", auth, csrf, h.createOffer)
	g.Get("/offers/:id/reach", auth, h.offerReach)
	g.Get("/birthday", auth, h.birthdayPage)
	g.Post("/birthday", auth, csrf, h.saveBirthday)
	g.Get("/payment", auth, h.paymentPage)
	g.Post("/payment", auth, csrf, h.savePayment)
	g.Get("/payment/example", auth, h.paymentPreview)
	g.Get("/members", auth, h.membersPage)
	g.Get("/members/:id", auth, h.memberPage)
	g.Post("/members/:id/adjust", auth, csrf, h.adjust)
	g.Get("/jobs", auth, h.jobsPage)
	g.Get("/cx", auth, h.cxPage)
	g.Get("/clv", auth, h.clvPage)
	g.Post("/jobs/:name/run", auth, csrf, h.runJob)
	admin := h.adminOnly
	g.Get("/webhooks", auth, admin, h.webhooksPage)
	g.Post("/webhooks", auth, csrf, admin, h.createWebhook)
	g.Get("/webhooks/:id", auth, admin, h.webhookPage)
	g.Post("/webhooks/:id/rotate", auth, csrf, admin, h.rotateWebhook)
	g.Post("/webhooks/:id/active", auth, csrf, admin, h.toggleWebhook)
	g.Post("/webhooks/:id/delete", auth, csrf, admin, h.deleteWebhook)
	g.Post("/webhooks/:id/deliveries/:delivery_id/retry", auth, csrf, admin, h.retryDelivery)
	g.Get("/events", auth, admin, h.eventsPage)
	g.Get("/events/tail", auth, admin, h.eventsTail)
	// Imports and exports (§15).
	g.Get("/imports", auth, admin, h.importsPage)
	g.Post("/imports", auth, csrf, admin, h.startImport)
	g.Get("/imports/:id", auth, admin, h.importPage)
	g.Get("/imports/:id/progress", auth, admin, h.importProgress)
	g.Get("/imports/:id/errors", auth, admin, h.importErrors)
	g.Get("/exports/members", auth, admin, h.exportMembers)
	g.Get("/exports/ledger", auth, admin, h.exportLedger)
	g.All("/*", auth, h.notFound)
}

// headers sets what every console response carries: a strict content
// security policy (scripts only from /console/static, no inline code),
// no framing, no sniffing, no referrer and no caching of pages.
func (h *handler) headers(c *fiber.Ctx) error {
	c.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set("X-Frame-Options", "DENY")
	c.Set("Referrer-Policy", "no-referrer")
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderVary, "HX-Request")
	return c.Next()
}

func loadStatic() map[string]asset {
	out := map[string]asset{}
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		b, err := staticFS.ReadFile("static/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(b)
		ct := "text/javascript; charset=utf-8"
		if path.Ext(e.Name()) == ".css" {
			ct = "text/css; charset=utf-8"
		}
		out[e.Name()] = asset{body: b, contentType: ct, version: hex.EncodeToString(sum[:6])}
	}
	return out
}

func (h *handler) serveStatic(c *fiber.Ctx) error {
	a, ok := h.static[c.Params("file")]
	if !ok {
		return c.Status(fiber.StatusNotFound).SendString("not found")
	}
	c.Set(fiber.HeaderContentType, a.contentType)
	if c.Query("v") == a.version {
		c.Set(fiber.HeaderCacheControl, "public, max-age=31536000, immutable")
	} else {
		c.Set(fiber.HeaderCacheControl, "no-cache")
	}
	return c.Send(a.body)
}

// view is what every page template receives.
type view struct {
	Title   string
	Nav     string // the section highlighted in the navigation
	User    loyalty.Principal
	CSRF    string
	Program *loyalty.Program
	Flash   string
	Err     *problem
	Data    any
}

// Admin reports whether the signed-in user is an admin.
func (v view) Admin() bool { return v.User.Role == loyalty.RoleAdmin }

// problem is an error as a page shows it.
type problem struct {
	Title  string
	Detail string
	Fields []loyalty.FieldError
}

var pageNames = []string{"login", "error", "dashboard", "tiers", "rewards", "reward", "offers", "birthday", "payment", "members", "member", "jobs", "cx", "clv", "webhooks", "webhook", "events", "imports", "import"}

func (h *handler) parsePages() map[string]*template.Template {
	base := template.Must(template.New("layout.html").Funcs(h.funcs()).ParseFS(templateFS, "templates/layout.html", "templates/partials.html"))
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		out[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html"))
	}
	return out
}

// render writes a whole page (or, for a fragment name, one template of it).
func (h *handler) render(c *fiber.Ctx, status int, page string, v view) error {
	return h.execute(c, status, page, "layout.html", v)
}

func (h *handler) fragment(c *fiber.Ctx, status int, page, name string, data any) error {
	return h.execute(c, status, page, name, data)
}

func (h *handler) execute(c *fiber.Ctx, status int, page, name string, data any) error {
	t, ok := h.pages[page]
	if !ok {
		return errors.New("console: no page " + page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		h.Logger.Error("console render", "page", page, "error", err.Error())
		return c.Status(fiber.StatusInternalServerError).SendString("the page could not be drawn")
	}
	if c.Method() != fiber.MethodGet && c.Get("HX-Request") == "true" && status != http.StatusOK {
		// A form shown again with its error: stay on the page's URL.
		c.Set("HX-Push-Url", "false")
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.Status(status).Send(buf.Bytes())
}

// page builds the view of a signed-in request.
func (h *handler) page(c *fiber.Ctx, nav, title string, data any) view {
	v := view{Title: title, Nav: nav, User: user(c), CSRF: csrfOf(c), Data: data, Flash: flash(c)}
	if p, err := h.Loyalty.Program(c.UserContext()); err == nil {
		v.Program = p
	}
	return v
}

// fail shows err on page v (the page the form was on) with the status its
// code maps to. A service's business error is a message on the page, never
// a 500; only an internal fault is, and it is logged without details of
// the request.
func (h *handler) fail(c *fiber.Ctx, page string, v view, err error) error {
	e := loyalty.ErrorOf(err)
	status := statuses.Status(e.Code)
	p := &problem{Title: titleOf(e), Detail: e.Message, Fields: e.Fields}
	switch e.Code {
	case loyalty.Internal:
		h.Logger.Error("console request failed", "route", c.Route().Path, "method", c.Method(), "error", err.Error())
		p.Detail = "Something went wrong on our side. It has been logged; please try again."
	case loyalty.Unavailable:
		p.Detail = "The database is not answering. Please try again in a moment."
		c.Set(fiber.HeaderRetryAfter, "5")
	case loyalty.Invalid:
		if len(e.Fields) > 0 {
			p.Detail = "Please correct the following:"
		}
	}
	v.Err = p
	return h.render(c, status, page, v)
}

func titleOf(e *loyalty.Error) string {
	switch e.Code {
	case loyalty.Invalid, loyalty.Malformed:
		return "That did not work"
	case loyalty.Conflict:
		return "Not possible right now"
	case loyalty.NotFound:
		return "Not found"
	case loyalty.Forbidden:
		return "Not allowed"
	case loyalty.Unavailable:
		return "Temporarily unavailable"
	}
	return "Something went wrong"
}

// errorPage shows a page with only an error on it.
func (h *handler) errorPage(c *fiber.Ctx, status int, title, detail string) error {
	v := view{Title: title, User: user(c), CSRF: csrfOf(c), Err: &problem{Title: title, Detail: detail}}
	return h.render(c, status, "error", v)
}

func (h *handler) notFound(c *fiber.Ctx) error {
	return h.errorPage(c, http.StatusNotFound, "Not found", "There is no console page at this address.")
}

// redirect sends the browser to a console page after a successful form:
// htmx follows the 303 itself and shows the page it leads to.
func redirect(c *fiber.Ctx, to string) error {
	if !strings.HasPrefix(to, Prefix) {
		to = Prefix
	}
	return c.Redirect(to, fiber.StatusSeeOther)
}
