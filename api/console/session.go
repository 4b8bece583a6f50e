package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// The session is the signed-in user's token itself, kept in an HttpOnly,
// SameSite=Strict cookie scoped to /console: it ends when the token
// expires, and the console verifies it on every request exactly as the API
// verifies a bearer token. Every form and htmx request that changes
// anything carries a CSRF token, the HMAC of the cookie under the JWT
// secret, compared in constant time. The sign-in form, which has no
// session yet, is protected the same way by a random cookie of its own.
const (
	sessionCookie = "loyalty_console"
	loginCookie   = "loyalty_console_login"
	csrfField     = "_csrf"
	csrfHeader    = "X-CSRF-Token"

	localUser = "console.user"
	localCSRF = "console.csrf"
)

func (h *handler) mac(purpose, value string) string {
	m := hmac.New(sha256.New, h.Secret)
	m.Write([]byte("loyalty-console:" + purpose + "\x00" + value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (h *handler) csrfFor(session string) string { return h.mac("csrf", session) }

func user(c *fiber.Ctx) loyalty.Principal {
	p, _ := c.Locals(localUser).(loyalty.Principal)
	return p
}

func csrfOf(c *fiber.Ctx) string {
	s, _ := c.Locals(localCSRF).(string)
	return s
}

func isHTMX(c *fiber.Ctx) bool { return c.Get("HX-Request") == "true" }

// consoleRole reports whether a principal may use the console.
func consoleRole(p loyalty.Principal) bool { return p.Is(loyalty.RoleMarketer, loyalty.RoleAdmin) }

func (h *handler) setCookie(c *fiber.Ctx, name, value string, maxAge time.Duration) {
	ck := &fiber.Cookie{Name: name, Value: value, Path: Prefix, HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode,
		Secure: c.Protocol() == "https"}
	switch {
	case maxAge < 0:
		ck.Expires = time.Unix(0, 0)
	case maxAge == 0:
		ck.SessionOnly = true
	default:
		ck.MaxAge = int(maxAge.Seconds())
	}
	c.Cookie(ck)
}

// authenticate lets a request through only with a valid session of a
// marketer or an admin: without one the browser goes to the sign-in page
// (htmx is told to load it as a whole page); another role gets a 403 page.
func (h *handler) authenticate(c *fiber.Ctx) error {
	raw := c.Cookies(sessionCookie)
	p, err := h.verify(raw)
	if err != nil {
		if raw != "" {
			h.setCookie(c, sessionCookie, "", -1)
		}
		if isHTMX(c) {
			c.Set("HX-Redirect", Prefix+"/login")
			return c.SendStatus(http.StatusUnauthorized)
		}
		return c.Redirect(Prefix+"/login", fiber.StatusSeeOther)
	}
	c.Locals(localCSRF, h.csrfFor(raw))
	if !consoleRole(p) {
		return h.errorPage(c, http.StatusForbidden, "Not allowed",
			"The console is for marketers and admins; a "+string(p.Role)+" token cannot use it. Sign out and sign in with another token.")
	}
	c.Locals(localUser, p)
	c.SetUserContext(loyalty.WithPrincipal(c.UserContext(), p))
	return c.Next()
}

func (h *handler) verify(raw string) (loyalty.Principal, error) {
	if raw == "" || h.Verify == nil {
		return loyalty.Principal{}, loyalty.Errorf(loyalty.Unauthorized, "unauthorized", "no session")
	}
	return h.Verify(raw)
}

// checkCSRF refuses a state-changing request whose CSRF token, from the
// X-CSRF-Token header (htmx) or the _csrf field of the form body, is not
// the one of the session. A token in the query string does not count: URLs
// end up in logs, history and Referer headers.
func (h *handler) checkCSRF(c *fiber.Ctx) error {
	if !validCSRF(c, csrfOf(c)) {
		return h.errorPage(c, http.StatusForbidden, "Form expired",
			"This request did not carry the console's security token, so it was refused. Reload the page and try again.")
	}
	return c.Next()
}

func validCSRF(c *fiber.Ctx, want string) bool {
	got := c.Get(csrfHeader)
	if got == "" {
		got = bodyField(c, csrfField)
	}
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// bodyField reads a field of a form body, urlencoded or multipart, and
// never the query string, which fasthttp's FormValue reads first.
func bodyField(c *fiber.Ctx, name string) string {
	if v := c.Request().PostArgs().Peek(name); len(v) > 0 {
		return string(v)
	}
	if mf, err := c.MultipartForm(); err == nil {
		if vs := mf.Value[name]; len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

type loginData struct {
	Message string
}

// loginPage shows the sign-in form. A link from `loyalty console-link`
// carries its token in the URL fragment, which browsers never send: the
// page's script moves it into the form and submits it.
func (h *handler) loginPage(c *fiber.Ctx) error {
	if p, err := h.verify(c.Cookies(sessionCookie)); err == nil && consoleRole(p) {
		return c.Redirect(Prefix+"/", fiber.StatusSeeOther)
	}
	return h.showLogin(c, http.StatusOK, "")
}

func (h *handler) showLogin(c *fiber.Ctx, status int, message string) error {
	nonce := c.Cookies(loginCookie)
	if len(nonce) != 43 {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		nonce = base64.RawURLEncoding.EncodeToString(b)
		h.setCookie(c, loginCookie, nonce, time.Hour)
	}
	v := view{Title: "Sign in", CSRF: h.mac("login", nonce), Data: loginData{Message: message}}
	return h.render(c, status, "login", v)
}

// login starts a session from a pasted token (or a console link).
func (h *handler) login(c *fiber.Ctx) error {
	nonce := c.Cookies(loginCookie)
	if nonce == "" || !validCSRF(c, h.mac("login", nonce)) {
		return h.showLogin(c, http.StatusForbidden, "The sign-in form had expired. Please try again.")
	}
	// The token comes from the form body only, never the URL.
	raw := strings.TrimSpace(bodyField(c, "token"))
	raw = strings.TrimSpace(strings.TrimPrefix(raw, "Bearer "))
	p, err := h.verify(raw)
	if err != nil {
		return h.showLogin(c, http.StatusUnauthorized, "That token is not valid or has expired.")
	}
	if !consoleRole(p) {
		return h.showLogin(c, http.StatusForbidden,
			"A "+string(p.Role)+" token cannot open the console. Use a marketer or admin token.")
	}
	h.setCookie(c, sessionCookie, raw, 0)
	h.setCookie(c, loginCookie, "", -1)
	return c.Redirect(Prefix+"/", fiber.StatusSeeOther)
}

// logout ends the session: it clears the cookie. The form carries the
// session's CSRF token, so another site cannot sign the user out.
func (h *handler) logout(c *fiber.Ctx) error {
	raw := c.Cookies(sessionCookie)
	if raw != "" {
		if !validCSRF(c, h.csrfFor(raw)) {
			return h.errorPage(c, http.StatusForbidden, "Form expired",
				"This request did not carry the console's security token, so it was refused. Reload the page and try again.")
		}
		h.setCookie(c, sessionCookie, "", -1)
	}
	if isHTMX(c) {
		c.Set("HX-Redirect", Prefix+"/login")
		return c.SendStatus(http.StatusNoContent)
	}
	return c.Redirect(Prefix+"/login", fiber.StatusSeeOther)
}
