package console

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	statuses "github.com/loyalty-engine/loyalty/api/problem"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
)

// adminOnly keeps a page to admins, as the API keeps webhooks and the event
// log: a marketer sees a 403 page.
func (h *handler) adminOnly(c *fiber.Ctx) error {
	if user(c).Role != loyalty.RoleAdmin {
		return h.errorPage(c, http.StatusForbidden, "Not allowed", "Only an admin may see this page.")
	}
	return c.Next()
}

// ---- Webhooks

type webhooksData struct {
	Hooks []webhooks.Webhook
	Next  string
	Form  webhookForm
	Types []string
}

type webhookForm struct {
	URL, Events, Description, Idem string
}

func (h *handler) webhooksData(c *fiber.Ctx) (*webhooksData, error) {
	l, err := h.Webhooks.List(c.UserContext(), loyalty.Page{Cursor: c.Query("cursor"), Limit: 100})
	if err != nil {
		return nil, err
	}
	d := &webhooksData{Hooks: l.Items, Form: webhookForm{Events: "*", Idem: formKey()}, Types: loyalty.EventTypes}
	if l.NextCursor != nil {
		d.Next = *l.NextCursor
	}
	return d, nil
}

func (h *handler) webhooksPage(c *fiber.Ctx) error {
	v := h.page(c, "webhooks", "Webhooks", nil)
	d, err := h.webhooksData(c)
	if err != nil {
		return h.fail(c, "webhooks", v, err)
	}
	v.Data = d
	return h.render(c, http.StatusOK, "webhooks", v)
}

// createWebhook registers an endpoint and shows its page with the secret,
// the only time the console shows it: the answer is rendered, not
// redirected to, so the secret never travels in a URL.
func (h *handler) createWebhook(c *fiber.Ctx) error {
	v := h.page(c, "webhooks", "Webhooks", nil)
	f := newForm(c)
	u, desc := f.str("url"), f.str("description")
	events := f.list("events")
	in := webhooks.Input{URL: &u, Events: events, Description: &desc}
	fields := map[string]any{"url": u, "events": events, "description": desc}
	w, _, err := h.Webhooks.Create(c.UserContext(), in, idemKey(c, fields))
	if err != nil {
		d, derr := h.webhooksData(c)
		if derr != nil {
			return h.fail(c, "webhooks", v, derr)
		}
		d.Form = webhookForm{URL: u, Events: f.str("events"), Description: desc, Idem: f.str("idem")}
		v.Data = d
		return h.fail(c, "webhooks", v, err)
	}
	return h.showWebhook(c, w.ID, w.Secret, "Webhook created.")
}

type webhookData struct {
	Hook       webhooks.Webhook
	Secret     string
	Deliveries []webhooks.Delivery
	Next       string
	Status     string
	Statuses   []string
}

func (h *handler) webhookPage(c *fiber.Ctx) error {
	return h.showWebhook(c, c.Params("id"), "", "")
}

func (h *handler) showWebhook(c *fiber.Ctx, id, secret, note string) error {
	v := h.page(c, "webhooks", "Webhook", nil)
	if note != "" {
		v.Flash = note
	}
	w, err := h.Webhooks.Get(c.UserContext(), id)
	if err != nil {
		return h.fail(c, "error", v, err)
	}
	status := c.Query("status")
	if !slices.Contains(webhooks.Statuses, status) {
		status = ""
	}
	l, err := h.Webhooks.Deliveries(c.UserContext(), id, webhooks.DeliveryQuery{Status: status,
		Page: loyalty.Page{Cursor: c.Query("cursor"), Limit: 50}})
	if err != nil {
		return h.fail(c, "error", v, err)
	}
	d := &webhookData{Hook: w, Secret: secret, Deliveries: l.Items, Status: status, Statuses: webhooks.Statuses}
	if l.NextCursor != nil {
		d.Next = *l.NextCursor
	}
	v.Data, v.Title = d, "Webhook "+w.URL
	return h.render(c, http.StatusOK, "webhook", v)
}

func (h *handler) rotateWebhook(c *fiber.Ctx) error {
	w, err := h.Webhooks.RotateSecret(c.UserContext(), c.Params("id"))
	if err != nil {
		return h.fail(c, "error", h.page(c, "webhooks", "Webhook", nil), err)
	}
	return h.showWebhook(c, w.ID, w.Secret, "New secret made; the old one no longer signs.")
}

func (h *handler) toggleWebhook(c *fiber.Ctx) error {
	active := newForm(c).str("active") == "true"
	w, err := h.Webhooks.Update(c.UserContext(), c.Params("id"), webhooks.Input{Active: &active})
	if err != nil {
		return h.fail(c, "error", h.page(c, "webhooks", "Webhook", nil), err)
	}
	msg := "webhook_paused"
	if w.Active {
		msg = "webhook_resumed"
	}
	return redirect(c, Prefix+"/webhooks/"+url.PathEscape(w.ID)+"?msg="+msg)
}

func (h *handler) deleteWebhook(c *fiber.Ctx) error {
	w, err := h.Webhooks.Get(c.UserContext(), c.Params("id"))
	if err == nil {
		err = h.Webhooks.Delete(c.UserContext(), w.ID)
	}
	if err != nil {
		return h.fail(c, "error", h.page(c, "webhooks", "Webhook", nil), err)
	}
	return redirect(c, Prefix+"/webhooks?msg=webhook_deleted&x="+url.QueryEscape(w.URL))
}

func (h *handler) retryDelivery(c *fiber.Ctx) error {
	id := c.Params("id")
	d, err := h.Webhooks.Retry(c.UserContext(), id, c.Params("delivery_id"))
	if err != nil {
		return h.fail(c, "error", h.page(c, "webhooks", "Webhook", nil), err)
	}
	return redirect(c, Prefix+"/webhooks/"+url.PathEscape(id)+"?msg=delivery_retried&x="+url.QueryEscape(d.EventID))
}

// ---- Events

type eventsData struct {
	Type, Member string
	Types        []string
	Events       []loyalty.Event
}

// tailSize is how many of the newest events the live tail shows.
const tailSize = 50

func (h *handler) eventsData(c *fiber.Ctx) (*eventsData, error) {
	d := &eventsData{Type: strings.TrimSpace(c.Query("type")), Member: strings.TrimSpace(c.Query("member_id")), Types: loyalty.EventTypes}
	if d.Type != "" && !loyalty.ValidEventFilter(d.Type) {
		return d, loyalty.Invalidf("type", "must be an event type, \"prefix.*\" or \"*\"")
	}
	f := loyalty.EventFilter{MemberID: d.Member}
	if d.Type != "" {
		f.Types = []string{d.Type}
	}
	head, err := h.Loyalty.EventsHead(c.UserContext())
	if err != nil {
		return d, err
	}
	// The newest events: a filtered tail looks further back, a page at a
	// time, until it has enough or reaches the start of the log.
	var evs []loyalty.Event
	for i, to, step := 0, head, int64(tailSize); i < 8 && to > 0 && len(evs) < tailSize; i, to, step = i+1, to-step, min(step*4, 100_000) {
		from := max(to-step, 0)
		page, err := h.Loyalty.EventsAfter(c.UserContext(), from, f, int(step))
		if err != nil {
			return d, err
		}
		var in []loyalty.Event
		for _, e := range page {
			if e.Position <= to {
				in = append(in, e)
			}
		}
		evs = append(in, evs...)
	}
	if len(evs) > tailSize {
		evs = evs[len(evs)-tailSize:]
	}
	slices.Reverse(evs)
	d.Events = evs
	return d, nil
}

func (h *handler) eventsPage(c *fiber.Ctx) error {
	v := h.page(c, "events", "Events", nil)
	d, err := h.eventsData(c)
	v.Data = d
	if err != nil {
		return h.fail(c, "events", v, err)
	}
	return h.render(c, http.StatusOK, "events", v)
}

// eventsTail is the table the events page polls for.
func (h *handler) eventsTail(c *fiber.Ctx) error {
	d, err := h.eventsData(c)
	if err != nil {
		e := loyalty.ErrorOf(err)
		return c.Status(statuses.Status(e.Code)).SendString(titleOf(e))
	}
	return h.fragment(c, http.StatusOK, "events", "events-rows", map[string]any{"Data": d, "Program": h.page(c, "events", "", nil).Program})
}
