package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/shopspring/decimal"

	"github.com/loyalty-engine/loyalty/api"
	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// The browser tests drive the console in headless Chromium, as a marketer
// would, and save a screenshot of each page at 1280×800 and 390×844 into
// screenshots/ at the repository root. Without a Chromium binary they are
// skipped, unless LOYALTY_TEST_REQUIRE_BROWSER=1 (CI) makes that a failure.

// chromium finds a Chromium or Chrome binary: LOYALTY_TEST_CHROMIUM, or one
// of the usual names on PATH.
func chromium() string {
	if p := os.Getenv("LOYALTY_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser is one headless Chromium with a fresh profile, for one test.
type browser struct {
	t      *testing.T
	ctx    context.Context
	base   string
	mu     sync.Mutex
	errors []string
}

// needBrowser returns the Chromium binary, or skips the test (fails it
// under LOYALTY_TEST_REQUIRE_BROWSER=1) when there is none. Tests call it
// first, before any setup.
func needBrowser(t *testing.T) string {
	t.Helper()
	path := chromium()
	if path == "" {
		if os.Getenv("LOYALTY_TEST_REQUIRE_BROWSER") == "1" {
			t.Fatal("LOYALTY_TEST_REQUIRE_BROWSER=1 but no Chromium binary was found (set LOYALTY_TEST_CHROMIUM or install chromium)")
		}
		t.Skip("no Chromium binary found: browser test skipped (LOYALTY_TEST_REQUIRE_BROWSER=1 makes this a failure)")
	}
	return path
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path := needBrowser(t)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx, base: base}
	// Starting the browser binds it to this context, which has no deadline;
	// each step below has its own.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start Chromium (%s): %v", path, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errors = append(b.errors, fmt.Sprintf("%s (%s:%d)", m.Text, m.URL, m.Line+1))
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return b
}

// run runs steps with a deadline, failing the test on an error.
func (b *browser) run(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		b.t.Fatalf("browser at %s: %v", loc, err)
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits until a JavaScript expression is truthy. A navigation
// under way (a form submitted, a sign-in redirect) destroys the page's
// context, so errors are retried until the deadline.
func (b *browser) waitFor(expr string) {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`!!(%s)`, expr)))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 1500) : ""`))
	b.t.Fatalf("waiting for %s at %s (last error %v)\npage: %s", expr, loc, last, body)
}

// open navigates to a console path and waits for the page's title.
func (b *browser) open(path, title string) {
	b.t.Helper()
	b.run(chromedp.Navigate(b.base + path))
	b.waitTitle(title)
}

// waitTitle waits until the document's title starts with title (htmx
// swaps it in after a boosted navigation).
func (b *browser) waitTitle(title string) {
	b.t.Helper()
	b.waitFor(fmt.Sprintf(`document.title.startsWith(%q) && document.readyState === "complete"`, title))
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(eval[string](b, fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel)))
}

// fill sets the value of the form fields named, in the form sel.
func (b *browser) fill(sel string, fields map[string]string) {
	b.t.Helper()
	for name, v := range fields {
		b.run(chromedp.SetValue(chromedp.CSS(fmt.Sprintf(`%s [name=%q]`, sel, name)), v))
	}
}

// screenshotDir is screenshots/ at the repository root (git-ignored).
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
	out := filepath.Join(dir, "screenshots")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// shoot saves the whole page at the desktop and the phone size, then goes
// back to the desktop size.
func (b *browser) shoot(name string) {
	b.t.Helper()
	dir := screenshotDir(b.t)
	for _, size := range []struct {
		w, h   int64
		mobile bool
	}{{1280, 800, false}, {390, 844, true}} {
		if size.mobile {
			b.run(chromedp.EmulateViewport(size.w, size.h, chromedp.EmulateMobile, chromedp.EmulatePortrait))
		} else {
			b.run(chromedp.EmulateViewport(size.w, size.h))
		}
		// Let the layout and Chart.js's resize observer settle.
		eval[chromedp.Void](b, `new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 50))))`)
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			b.t.Fatalf("screenshot %s: %v", name, err)
		}
		file := filepath.Join(dir, fmt.Sprintf("%s-%s-%dx%d.png", b.t.Name(), name, size.w, size.h))
		file = strings.ReplaceAll(file, "/Test", "/")
		if err := os.WriteFile(file, png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	b.run(chromedp.EmulateViewport(1280, 800))
	// The layout must not be wider than a phone's screen: wide tables
	// scroll inside their own box.
	b.run(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulatePortrait))
	if w := eval[int](b, `document.documentElement.scrollWidth`); w > 390 {
		b.t.Errorf("page %s is %dpx wide on a 390px screen", name, w)
	}
	b.run(chromedp.EmulateViewport(1280, 800))
}

// checkConsole fails the test on any error the page logged (a script
// error, a resource that failed, a blocked inline script or style).
func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		// A form refused on purpose (422, 409, 403) is logged by the
		// browser as a failed load: that is the page showing its message.
		if strings.HasPrefix(e, "Failed to load resource: the server responded with a status of 4") &&
			strings.Contains(e, "/console/") && !strings.Contains(e, "/console/static/") &&
			!strings.Contains(e, "status of 404") {
			continue
		}
		b.t.Errorf("browser console: %s", e)
	}
}

// signIn pastes token into the sign-in form and waits for the dashboard.
func (b *browser) signIn(token string) {
	b.t.Helper()
	b.open("/console/login", "Sign in")
	b.fill("#login-form", map[string]string{"token": token})
	b.run(chromedp.Click(chromedp.ID("sign-in")))
	b.waitTitle("Dashboard")
}

func TestBrowserSignIn(t *testing.T) {
	needBrowser(t)
	e := newEnv(t, loyalty.SQLite)
	e.tiers()
	b := newBrowser(t, e.serve())

	// Nothing is shown without a session: every page leads to sign-in.
	b.open("/console/members", "Sign in")
	b.shoot("signin")

	// A till's token is refused with a message, and no session starts.
	b.fill("#login-form", map[string]string{"token": e.token(loyalty.RolePOS, "till-1")})
	b.run(chromedp.Click(chromedp.ID("sign-in")))
	b.waitFor(`document.querySelector("#login-error")`)
	if msg := b.text("#login-error"); !strings.Contains(msg, "A pos token cannot open the console") {
		t.Errorf("pos sign-in message: %q", msg)
	}
	b.shoot("signin-refused")
	b.open("/console/", "Sign in")

	// A marketer's pasted token opens the console.
	b.signIn(e.token(loyalty.RoleMarketer, "mk-1"))
	if who := b.text(".who span"); who != "mk-1 · marketer" {
		t.Errorf("signed in as %q", who)
	}
	// The cookie is not readable from scripts.
	if c := eval[string](b, `document.cookie`); strings.Contains(c, "loyalty_console") {
		t.Errorf("document.cookie shows the session: %q", c)
	}
	// On a phone the navigation folds behind the Menu button.
	b.run(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	if vis := eval[bool](b, `getComputedStyle(document.querySelector(".nav")).display !== "none"`); vis {
		t.Error("the navigation is open on a phone before Menu is pressed")
	}
	b.run(chromedp.Click(chromedp.CSS(".nav-button")))
	if vis := eval[bool](b, `getComputedStyle(document.querySelector(".nav")).display !== "none"`); !vis {
		t.Error("Menu does not open the navigation on a phone")
	}
	screenshot(b, "menu-open-390x844")
	b.run(chromedp.EmulateViewport(1280, 800))

	// Sign out, then the console is closed again.
	b.open("/console/tiers", "Tiers")
	b.run(chromedp.Click(chromedp.ID("sign-out")))
	b.waitTitle("Sign in")
	b.open("/console/tiers", "Sign in")

	// A link from `loyalty console-link` signs in by itself, and the token
	// leaves the address bar.
	link, err := api.SignToken(e.auth, loyalty.RoleAdmin, "console", "", 15*time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.run(chromedp.Navigate("about:blank"), chromedp.Navigate(b.base+"/console/login#token="+link))
	b.waitTitle("Dashboard")
	if loc := eval[string](b, `location.href`); strings.Contains(loc, "token") {
		t.Errorf("the token stays in the address: %s", loc)
	}
	if who := b.text(".who span"); who != "console · admin" {
		t.Errorf("signed in by link as %q", who)
	}
	b.checkConsole()
}

// screenshot saves the viewport as it is, at its current size.
func screenshot(b *browser, name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatal(err)
	}
	file := filepath.Join(screenshotDir(b.t), strings.TrimPrefix(b.t.Name(), "Test")+"-"+name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func TestBrowserTierMultiplier(t *testing.T) {
	needBrowser(t)
	e := newEnv(t, loyalty.SQLite)
	e.tiers()
	m := e.enrol()
	pos := e.token(loyalty.RolePOS, "till-1")
	buy := func(ext string) int64 {
		t.Helper()
		st, res := e.postJSON("/v1/purchases", pos, map[string]any{"member_id": m.ID, "external_id": ext,
			"store_id": "store-1", "currency": "USD", "total": 10000})
		if st != 201 {
			t.Fatalf("purchase: %d %v", st, res)
		}
		return int64(res["points_earned"].(float64))
	}
	if n := buy("R-1"); n != 100 {
		t.Fatalf("a 100 USD purchase at Insider ×1 earned %d", n)
	}

	b := newBrowser(t, e.serve())
	b.signIn(e.token(loyalty.RoleMarketer, "mk-1"))
	b.run(chromedp.Click(chromedp.CSS(`.nav a[href="/console/tiers"]`)))
	b.waitTitle("Tiers")
	b.shoot("tiers")

	// A bad multiplier is a message on the page, with what was typed.
	b.fill("#tier-insider", map[string]string{"earn_multiplier": "three"})
	b.run(chromedp.Click(chromedp.CSS(`#tier-insider button[type=submit]`)))
	b.waitFor(`document.querySelector("#problem")`)
	if p := b.text("#problem"); !strings.Contains(p, "Earn multiplier") {
		t.Errorf("problem shown: %q", p)
	}
	b.shoot("tiers-error")

	b.fill("#tier-insider", map[string]string{"earn_multiplier": "3"})
	b.run(chromedp.Click(chromedp.CSS(`#tier-insider button[type=submit]`)))
	b.waitFor(`document.querySelector("#flash") && document.querySelector("#flash").textContent.includes("insider")`)
	if v := eval[string](b, `document.querySelector("#tier-insider [name=earn_multiplier]").value`); v != "3" {
		t.Errorf("multiplier shown after saving: %q", v)
	}
	if loc := eval[string](b, `location.pathname`); loc != "/console/tiers" {
		t.Errorf("after saving the address is %s", loc)
	}

	// The next purchase through the JSON API earns at the new multiplier.
	if n := buy("R-2"); n != 300 {
		t.Errorf("a 100 USD purchase at Insider ×3 earned %d, want 300", n)
	}
	b.open("/console/members/"+m.ID, "Ada")
	if got := b.text("#balance-available"); got != "400" {
		t.Errorf("member page shows %s points, want 400", got)
	}
	b.shoot("member")
	b.checkConsole()
}

func TestBrowserOfferReach(t *testing.T) {
	needBrowser(t)
	e := newEnv(t, loyalty.SQLite)
	e.demo(30)
	segs, err := e.runner.SegmentList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var seg jobs.Segment
	for _, s := range segs {
		if s.Members > seg.Members {
			seg = s
		}
	}
	if seg.Members == 0 {
		t.Fatal("the demo has no segment with members")
	}

	b := newBrowser(t, e.serve())
	b.signIn(e.token(loyalty.RoleMarketer, "mk-1"))
	b.open("/console/offers", "Offers")
	b.fill("#offer-new", map[string]string{"code": "spring-x2", "name": "Spring double points", "multiplier": "2",
		"min_spend": "25"})
	b.run(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#offer-new input[name=segments][value=%q]`, seg.Code))))
	b.shoot("offers-form")
	b.run(chromedp.Click(chromedp.ID("create-offer")))
	b.waitFor(`document.querySelector("#reach-count")`)
	want := fmt.Sprint(seg.Members)
	if got := b.text("#reach-count"); got != want {
		t.Errorf("reach shown %s, want the %d members of %s", got, seg.Members, seg.Code)
	}
	if f := b.text("#flash"); !strings.Contains(f, "spring-x2") {
		t.Errorf("flash: %q", f)
	}
	// The Reach button of the row asks again, through htmx.
	b.open("/console/offers", "Offers")
	b.run(chromedp.Click(chromedp.CSS(`#offer-spring-x2 a.button`)))
	b.waitFor(`document.querySelector("#offer-spring-x2 .reach")`)
	if got := b.text("#offer-spring-x2 .reach"); got != want+" members" {
		t.Errorf("row reach %q, want %s members", got, want)
	}
	if loc := eval[string](b, `location.pathname + location.search`); loc != "/console/offers" {
		t.Errorf("the reach button changed the address to %s", loc)
	}
	b.shoot("offers")
	b.checkConsole()
}

func TestBrowserMemberAdjust(t *testing.T) {
	needBrowser(t)
	e := newEnv(t, loyalty.SQLite)
	e.tiers()
	m := e.enrol()
	b := newBrowser(t, e.serve())
	b.signIn(e.token(loyalty.RoleAdmin, "op-1"))
	b.open("/console/members", "Members")
	b.fill("#member-search", map[string]string{"q": *m.Email})
	b.run(chromedp.Click(chromedp.CSS(`#member-search button`)))
	b.waitFor(`document.querySelector("#results .member-link")`)
	b.shoot("search")
	b.run(chromedp.Click(chromedp.CSS(`#results .member-link`)))
	b.waitTitle("Ada")
	if got := b.text("#balance-available"); got != "0" {
		t.Fatalf("balance before: %s", got)
	}

	b.fill("#adjust-form", map[string]string{"points": "250", "reason": "Goodwill for a late parcel"})
	b.run(chromedp.Click(chromedp.ID("adjust-submit")))
	b.waitFor(`document.querySelector("#flash")`)
	if got := b.text("#balance-available"); got != "250" {
		t.Errorf("balance after +250: %s", got)
	}
	if !strings.Contains(b.text("#ledger"), "Goodwill for a late parcel") {
		t.Error("the adjustment is not in the ledger shown")
	}
	b.shoot("member-adjusted")

	// Taking more than is available is refused with a message, not a 500.
	b.fill("#adjust-form", map[string]string{"points": "-1000", "reason": "Too much"})
	b.run(chromedp.Click(chromedp.ID("adjust-submit")))
	b.waitFor(`document.querySelector("#problem")`)
	if p := b.text("#problem"); !strings.Contains(strings.ToLower(p), "points") {
		t.Errorf("problem shown: %q", p)
	}
	b.shoot("member-refused")
	bal, err := e.svc.Balance(context.Background(), loyalty.Principal{Subject: "t", Role: loyalty.RoleAdmin}, m.ID)
	if err != nil || bal.Available != 250 {
		t.Errorf("balance in the engine: %+v %v", bal, err)
	}
	b.checkConsole()
}

func TestBrowserDashboardCharts(t *testing.T) {
	needBrowser(t)
	e := newEnv(t, loyalty.SQLite)
	e.demo(40)
	b := newBrowser(t, e.serve())
	b.signIn(e.token(loyalty.RoleMarketer, "mk-1"))
	b.waitFor(`typeof Chart !== "undefined" && document.querySelectorAll("canvas").length === 4`)
	for _, id := range []string{"chart-points", "chart-tiers", "chart-segments", "chart-churn"} {
		ok := eval[bool](b, fmt.Sprintf(`(() => {
			const c = Chart.getChart(document.getElementById(%q));
			return !!c && c.data.datasets[0].data.length > 0 && c.data.datasets[0].data.some(v => v > 0) && c.width > 0;
		})()`, id))
		if !ok {
			t.Errorf("chart %s is not drawn with data", id)
		}
	}
	if n := b.text("#kpi-members"); n != "40" {
		t.Errorf("members shown %s, want 40", n)
	}
	// What Chart.js drew is what the JSON API answers over the same range.
	var drawn map[string]struct {
		Labels []string         `json:"labels"`
		Data   [][]*json.Number `json:"data"`
	}
	if err := json.Unmarshal([]byte(eval[string](b, `JSON.stringify(Object.fromEntries(
		["chart-points", "chart-tiers", "chart-segments", "chart-churn"].map(id => {
			const c = Chart.getChart(document.getElementById(id));
			return [id, {labels: c.data.labels, data: c.data.datasets.map(s => s.data)}];
		})))`)), &drawn); err != nil {
		t.Fatal(err)
	}
	today := e.clock.Now().UTC()
	from := time.Date(today.Year(), today.Month()-11, 1, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
	f := e.analytics(e.token(loyalty.RoleAdmin, "op-1"), from, today.Format(time.DateOnly))
	num := func(v int64) *json.Number { n := json.Number(strconv.FormatInt(v, 10)); return &n }
	var months []string
	var issued, redeemed, rates []*json.Number
	for _, m := range f.months {
		months = append(months, m.From[:7])
		issued, redeemed, rates = append(issued, num(m.PointsIssued)), append(redeemed, num(m.PointsRedeemed)), append(rates, m.RatePercent)
	}
	var tierLabels []string
	var tierValues []*json.Number
	for _, tr := range f.tiers {
		tierLabels, tierValues = append(tierLabels, tr.Name), append(tierValues, num(f.summary.Tiers[tr.Code]))
	}
	var segLabels []string
	var segValues []*json.Number
	for _, sg := range f.segments {
		segLabels, segValues = append(segLabels, sg.Name), append(segValues, num(sg.Members))
	}
	scored, err := e.runner.ChurnRiskList(context.Background(), "0.0000", loyalty.Page{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	churn := make([]int64, 10)
	for _, s := range scored.Items {
		i := int(s.ChurnRisk[2] - '0')
		if s.ChurnRisk[0] == '1' {
			i = 9
		}
		churn[i]++
	}
	var churnValues []*json.Number
	for _, n := range churn {
		churnValues = append(churnValues, num(n))
	}
	for _, c := range []struct {
		id     string
		labels []string
		data   [][]*json.Number
	}{
		{"chart-points", months, [][]*json.Number{issued, redeemed, rates}},
		{"chart-tiers", tierLabels, [][]*json.Number{tierValues}},
		{"chart-segments", segLabels, [][]*json.Number{segValues}},
		{"chart-churn", nil, [][]*json.Number{churnValues}},
	} {
		got := drawn[c.id]
		if c.labels != nil && !reflect.DeepEqual(got.Labels, c.labels) {
			t.Errorf("%s is drawn with labels %v, want %v", c.id, got.Labels, c.labels)
		}
		if !sameNumbers(got.Data, c.data) {
			t.Errorf("%s is drawn with %s, want %s", c.id, numbers(got.Data), numbers(c.data))
		}
	}
	b.shoot("dashboard")

	// The other pages, for the record.
	for _, p := range []struct{ path, title, name string }{
		{"/console/rewards", "Rewards", "rewards"}, {"/console/birthday", "Birthday gift", "birthday"},
		{"/console/jobs", "Jobs", "jobs"},
	} {
		b.open(p.path, p.title)
		b.shoot(p.name)
	}
	// Run now replaces the job's row through htmx.
	b.run(chromedp.Click(chromedp.CSS(`#job-redemption-rate button`)))
	b.waitFor(`document.querySelector("#job-redemption-rate .status-succeeded")`)
	b.checkConsole()
}

func TestBrowserCSRF(t *testing.T) {
	needBrowser(t)
	e := newEnv(t, loyalty.SQLite)
	e.tiers()
	b := newBrowser(t, e.serve())
	b.signIn(e.token(loyalty.RoleMarketer, "mk-1"))
	b.open("/console/tiers", "Tiers")
	// A POST from the page itself, with the session cookie but without the
	// token, is refused; the same with the token goes through.
	post := func(withToken bool) int {
		return eval[int](b, fmt.Sprintf(`(async () => {
			const body = new URLSearchParams({name: "Insider", rank: "0", earn_multiplier: "5", qualifying_spend: "0"});
			if (%t) body.set("_csrf", document.querySelector("input[name=_csrf]").value);
			const r = await fetch("/console/tiers/insider", {method: "POST", body, redirect: "manual"});
			return r.type === "opaqueredirect" ? 303 : r.status;
		})()`, withToken))
	}
	if st := post(false); st != 403 {
		t.Errorf("POST without the CSRF token: %d", st)
	}
	ts, _ := e.svc.Tiers(context.Background())
	if ts[0].EarnMultiplier.String() != "1" {
		t.Errorf("the tier changed without a CSRF token: %s", ts[0].EarnMultiplier)
	}
	if st := post(true); st != 303 {
		t.Errorf("POST with the CSRF token: %d", st)
	}
	ts, _ = e.svc.Tiers(context.Background())
	if ts[0].EarnMultiplier.String() != "5" {
		t.Errorf("the tier did not change with the CSRF token: %s", ts[0].EarnMultiplier)
	}
	b.mu.Lock()
	b.errors = nil // the refused POST logs its 403 on purpose
	b.mu.Unlock()
}

// sameNumbers compares series of numbers (null for a gap) by value, so that
// "12.50" from the API equals 12.5 drawn by Chart.js.
func sameNumbers(a, b [][]*json.Number) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			x, y := a[i][j], b[i][j]
			if x == nil || y == nil {
				if x != y {
					return false
				}
				continue
			}
			dx, errx := decimal.NewFromString(x.String())
			dy, erry := decimal.NewFromString(y.String())
			if errx != nil || erry != nil || !dx.Equal(dy) {
				return false
			}
		}
	}
	return true
}

func numbers(l [][]*json.Number) string {
	var out []string
	for _, s := range l {
		var vs []string
		for _, v := range s {
			if v == nil {
				vs = append(vs, "null")
			} else {
				vs = append(vs, v.String())
			}
		}
		out = append(out, "["+strings.Join(vs, " ")+"]")
	}
	return strings.Join(out, " ")
}
