package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/rewards"
)

// ---- Dashboard

type dashboardData struct {
	From, To string
	Summary  *jobs.Summary
	Charts   *charts
	HasChurn bool
	HasRate  bool
}

// charts is what console.js hands to Chart.js.
type charts struct {
	Months   []string       `json:"months"`
	Issued   []loyalty.Sum  `json:"issued"`
	Redeemed []loyalty.Sum  `json:"redeemed"`
	Rate     []*json.Number `json:"rate"`
	Tiers    series         `json:"tiers"`
	Segments series         `json:"segments"`
	Churn    series         `json:"churn"`
}

type series struct {
	Labels []string `json:"labels"`
	Values []int64  `json:"values"`
}

// reportRange is the date range a report page shows: ?from= and ?to=, by
// default the twelve months up to today in loc. from and to receive the
// dates as given, for the page's form, also when they do not parse.
func (h *handler) reportRange(c *fiber.Ctx, loc *time.Location, from, to *string) (jobs.DayRange, error) {
	today := h.Loyalty.Now().In(loc)
	*from = time.Date(today.Year(), today.Month()-11, 1, 0, 0, 0, 0, loc).Format(time.DateOnly)
	*to = today.Format(time.DateOnly)
	if s := c.Query("from"); s != "" {
		*from = s
	}
	if s := c.Query("to"); s != "" {
		*to = s
	}
	return jobs.ParseDayRange(*from, *to, loc)
}

func (h *handler) dashboard(c *fiber.Ctx) error {
	ctx := c.UserContext()
	v := h.page(c, "dashboard", "Dashboard", nil)
	loc := location(v.Program)
	d := &dashboardData{}
	v.Data = d
	rng, err := h.reportRange(c, loc, &d.From, &d.To)
	if err != nil {
		return h.fail(c, "dashboard", v, err)
	}
	sum, err := h.Jobs.Summary(ctx, rng)
	if err != nil {
		return h.fail(c, "dashboard", v, err)
	}
	months, err := h.Jobs.RedemptionRateByMonth(ctx, rng)
	if err != nil {
		return h.fail(c, "dashboard", v, err)
	}
	tiers, err := h.Loyalty.Tiers(ctx)
	if err != nil {
		return h.fail(c, "dashboard", v, err)
	}
	segs, err := h.Jobs.SegmentList(ctx)
	if err != nil {
		return h.fail(c, "dashboard", v, err)
	}
	churn, err := h.Jobs.ChurnRiskDistribution(ctx)
	if err != nil {
		return h.fail(c, "dashboard", v, err)
	}
	ch := &charts{Months: []string{}, Issued: []loyalty.Sum{}, Redeemed: []loyalty.Sum{}, Rate: []*json.Number{},
		Tiers: series{Labels: []string{}, Values: []int64{}}, Segments: series{Labels: []string{}, Values: []int64{}},
		Churn: series{Labels: []string{}, Values: []int64{}}}
	for _, m := range months {
		ch.Months = append(ch.Months, m.From[:7])
		ch.Issued = append(ch.Issued, m.PointsIssued)
		ch.Redeemed = append(ch.Redeemed, m.PointsRedeemed)
		ch.Rate = append(ch.Rate, m.RatePercent)
		d.HasRate = d.HasRate || m.PointsIssued.Sign() > 0
	}
	for _, t := range tiers {
		ch.Tiers.Labels = append(ch.Tiers.Labels, t.Name)
		ch.Tiers.Values = append(ch.Tiers.Values, sum.Tiers[t.Code])
	}
	if n := sum.Tiers[""]; n > 0 {
		ch.Tiers.Labels = append(ch.Tiers.Labels, "No tier")
		ch.Tiers.Values = append(ch.Tiers.Values, n)
	}
	for _, s := range segs {
		ch.Segments.Labels = append(ch.Segments.Labels, s.Name)
		ch.Segments.Values = append(ch.Segments.Values, s.Members)
	}
	for _, b := range churn {
		ch.Churn.Labels = append(ch.Churn.Labels, b.From+"–"+b.To)
		ch.Churn.Values = append(ch.Churn.Values, b.Members)
		d.HasChurn = d.HasChurn || b.Members > 0
	}
	d.Summary, d.Charts = &sum, ch
	return h.render(c, http.StatusOK, "dashboard", v)
}

// ---- Tiers

type tierForm struct {
	Code, Name, Rank, Multiplier, Spend, Benefits string
	Members                                       int64
}

type tiersData struct {
	Tiers []tierForm
	New   tierForm
}

func (h *handler) tiersData(c *fiber.Ctx, v view) (*tiersData, error) {
	ctx := c.UserContext()
	ts, err := h.Loyalty.Tiers(ctx)
	if err != nil {
		return nil, err
	}
	d := &tiersData{}
	for _, t := range ts {
		d.Tiers = append(d.Tiers, tierForm{Code: t.Code, Name: t.Name, Rank: strconv.Itoa(t.Rank),
			Multiplier: t.EarnMultiplier.String(), Spend: amount(t.QualifyingSpend, v.Program), Benefits: strings.Join(t.Benefits, ", ")})
	}
	next := 0
	if len(ts) > 0 {
		next = ts[len(ts)-1].Rank + 1
	}
	d.New = tierForm{Rank: strconv.Itoa(next), Multiplier: "1"}
	return d, nil
}

func (h *handler) tiersPage(c *fiber.Ctx) error {
	v := h.page(c, "tiers", "Tiers", nil)
	d, err := h.tiersData(c, v)
	if err != nil {
		return h.fail(c, "tiers", v, err)
	}
	v.Data = d
	return h.render(c, http.StatusOK, "tiers", v)
}

// saveTier creates (POST /tiers, code in the form) or changes
// (POST /tiers/:code) a tier through PutTier, which validates the ladder.
func (h *handler) saveTier(c *fiber.Ctx) error {
	v := h.page(c, "tiers", "Tiers", nil)
	code := c.Params("code")
	isNew := code == ""
	f := newForm(c)
	if isNew {
		code = f.str("code")
	}
	submitted := tierForm{Code: code, Name: f.str("name"), Rank: f.str("rank"), Multiplier: f.str("earn_multiplier"),
		Spend: f.str("qualifying_spend"), Benefits: f.str("benefits")}
	name := f.str("name")
	in := loyalty.TierInput{Name: &name, EarnMultiplier: f.decimal("earn_multiplier"),
		QualifyingSpend: f.money("qualifying_spend", exponent(v.Program)), Benefits: f.list("benefits")}
	if r := f.int("rank"); r != nil {
		rank := int(*r)
		in.Rank = &rank
	}
	err := f.err()
	if err == nil {
		_, _, err = h.Loyalty.PutTier(c.UserContext(), code, in)
	}
	if err != nil {
		d, derr := h.tiersData(c, v)
		if derr != nil {
			return h.fail(c, "tiers", v, derr)
		}
		if isNew {
			d.New = submitted
		} else {
			for i := range d.Tiers {
				if d.Tiers[i].Code == code {
					d.Tiers[i] = submitted
				}
			}
		}
		v.Data = d
		return h.fail(c, "tiers", v, err)
	}
	return redirect(c, Prefix+"/tiers?msg=tier_saved&x="+url.QueryEscape(code))
}

// ---- Rewards

type rewardForm struct {
	ID, Code, Name, Description, Cost, MinTier, Stock, Limit, From, Until string
	// StockShown is the stock the edit form was drawn with.
	StockShown string
	Active     bool
	Idem       string
}

type rewardsData struct {
	Rewards []rewards.MemberReward
	Tiers   []loyalty.Tier
	Form    rewardForm
	Next    string
}

func rewardFormOf(r rewards.Reward, p *loyalty.Program) rewardForm {
	return rewardForm{ID: r.ID, Code: r.Code, Name: r.Name, Description: r.Description, Cost: strconv.FormatInt(r.CostPoints, 10),
		MinTier: deref(r.MinTier), Stock: deref(r.Stock), StockShown: deref(r.Stock), Limit: deref(r.PerMemberLimit),
		From: dtlocal(r.ValidFrom, p), Until: dtlocal(r.ValidUntil, p), Active: r.Active}
}

// rewardFields reads the reward form as the fields of a RewardInput: blank
// stock and limit are unlimited (null), a blank minimum tier is none. An
// edit sends the stock only when the operator changed the number the form
// was drawn with: redemptions take stock meanwhile, and saving the form
// must not put back what they took.
func rewardFields(f *form, p *loyalty.Program, edit bool) map[string]any {
	m := map[string]any{"code": f.str("code"), "name": f.str("name"), "description": f.str("description")}
	if cost := f.int("cost_points"); cost != nil {
		m["cost_points"] = *cost
	}
	m["min_tier"] = nil
	if t := f.str("min_tier"); t != "" {
		m["min_tier"] = t
	}
	if !edit || !f.has("stock_shown") || f.str("stock") != f.str("stock_shown") {
		m["stock"] = f.int("stock")
	}
	m["per_member_limit"] = f.int("per_member_limit")
	m["valid_from"] = f.instant("valid_from", location(p))
	m["valid_until"] = f.instant("valid_until", location(p))
	if edit {
		m["active"] = f.checked("active")
	}
	return m
}

func submittedReward(f *form) rewardForm {
	return rewardForm{Code: f.str("code"), Name: f.str("name"), Description: f.str("description"), Cost: f.str("cost_points"),
		MinTier: f.str("min_tier"), Stock: f.str("stock"), StockShown: f.str("stock_shown"), Limit: f.str("per_member_limit"),
		From: f.str("valid_from"), Until: f.str("valid_until"), Active: f.checked("active"), Idem: f.str("idem")}
}

func (h *handler) rewardsData(c *fiber.Ctx) (*rewardsData, error) {
	ctx := c.UserContext()
	l, err := h.Rewards.List(ctx, user(c), rewards.ListQuery{All: true, Page: loyalty.Page{Limit: 200, Cursor: c.Query("cursor")}})
	if err != nil {
		return nil, err
	}
	ts, err := h.Loyalty.Tiers(ctx)
	if err != nil {
		return nil, err
	}
	d := &rewardsData{Rewards: l.Items, Tiers: ts, Form: rewardForm{Idem: formKey()}}
	if l.NextCursor != nil {
		d.Next = *l.NextCursor
	}
	return d, nil
}

func (h *handler) rewardsPage(c *fiber.Ctx) error {
	v := h.page(c, "rewards", "Rewards", nil)
	d, err := h.rewardsData(c)
	if err != nil {
		return h.fail(c, "rewards", v, err)
	}
	v.Data = d
	return h.render(c, http.StatusOK, "rewards", v)
}

func (h *handler) createReward(c *fiber.Ctx) error {
	v := h.page(c, "rewards", "Rewards", nil)
	f := newForm(c)
	fields := rewardFields(f, v.Program, false)
	err := f.err()
	var in rewards.RewardInput
	if err == nil {
		err = decodeInto(fields, &in)
	}
	if err == nil {
		_, _, err = h.Rewards.Create(c.UserContext(), in, idemKey(c, fields))
	}
	if err != nil {
		d, derr := h.rewardsData(c)
		if derr != nil {
			return h.fail(c, "rewards", v, derr)
		}
		d.Form = submittedReward(f)
		v.Data = d
		return h.fail(c, "rewards", v, err)
	}
	return redirect(c, Prefix+"/rewards?msg=reward_created&x="+url.QueryEscape(f.str("code")))
}

type rewardData struct {
	Reward rewards.Reward
	Tiers  []loyalty.Tier
	Form   rewardForm
}

func (h *handler) rewardData(c *fiber.Ctx, v view) (*rewardData, error) {
	r, err := h.Rewards.Get(c.UserContext(), c.Params("id"))
	if err != nil {
		return nil, err
	}
	ts, err := h.Loyalty.Tiers(c.UserContext())
	if err != nil {
		return nil, err
	}
	return &rewardData{Reward: r, Tiers: ts, Form: rewardFormOf(r, v.Program)}, nil
}

func (h *handler) rewardPage(c *fiber.Ctx) error {
	v := h.page(c, "rewards", "Reward", nil)
	d, err := h.rewardData(c, v)
	if err != nil {
		return h.fail(c, "error", v, err)
	}
	v.Data, v.Title = d, "Reward "+d.Reward.Code
	return h.render(c, http.StatusOK, "reward", v)
}

func (h *handler) updateReward(c *fiber.Ctx) error {
	v := h.page(c, "rewards", "Reward", nil)
	d, err := h.rewardData(c, v)
	if err != nil {
		return h.fail(c, "error", v, err)
	}
	v.Data, v.Title = d, "Reward "+d.Reward.Code
	f := newForm(c)
	fields := rewardFields(f, v.Program, true)
	err = f.err()
	var in rewards.RewardInput
	if err == nil {
		err = decodeInto(fields, &in)
	}
	if err == nil {
		_, err = h.Rewards.Update(c.UserContext(), d.Reward.ID, in)
	}
	if err != nil {
		d.Form = submittedReward(f)
		d.Form.ID = d.Reward.ID
		return h.fail(c, "reward", v, err)
	}
	return redirect(c, Prefix+"/rewards?msg=reward_saved&x="+url.QueryEscape(f.str("code")))
}

func (h *handler) retireReward(c *fiber.Ctx) error {
	v := h.page(c, "rewards", "Rewards", nil)
	r, err := h.Rewards.Get(c.UserContext(), c.Params("id"))
	if err == nil {
		err = h.Rewards.Retire(c.UserContext(), r.ID)
	}
	if err != nil {
		d, derr := h.rewardsData(c)
		if derr != nil {
			return h.fail(c, "rewards", v, derr)
		}
		v.Data = d
		return h.fail(c, "rewards", v, err)
	}
	return redirect(c, Prefix+"/rewards?msg=reward_retired&x="+url.QueryEscape(r.Code))
}

// ---- Offers

type offerForm struct {
	Code, Name, Kind, Multiplier, Bonus string
	Target                              string // "all" or "segments"
	Segments                            []string
	MinSpend, Categories, Starts, Ends  string
	MaxUses                             string
	Activation                          bool
	Idem                                string
}

type offersData struct {
	Offers       []loyalty.Offer
	Segments     []jobs.Segment
	SegmentNames map[string]string
	Form         offerForm
	Reach        *reachData
	Next         string
}

type reachData struct {
	ID, Code, Name string
	Members        int64
}

func (h *handler) offersData(c *fiber.Ctx) (*offersData, error) {
	ctx := c.UserContext()
	l, err := h.Loyalty.ListOffers(ctx, loyalty.OfferQuery{Page: loyalty.Page{Limit: 200, Cursor: c.Query("cursor")}})
	if err != nil {
		return nil, err
	}
	segs, err := h.Jobs.SegmentList(ctx)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, s := range segs {
		names[s.Code] = s.Name
	}
	d := &offersData{Offers: l.Items, Segments: segs, SegmentNames: names, Form: offerForm{Kind: loyalty.OfferMultiplier, Multiplier: "2",
		Target: "segments", Idem: formKey()}}
	if l.NextCursor != nil {
		d.Next = *l.NextCursor
	}
	return d, nil
}

func (h *handler) offersPage(c *fiber.Ctx) error {
	v := h.page(c, "offers", "Offers", nil)
	d, err := h.offersData(c)
	if err != nil {
		return h.fail(c, "offers", v, err)
	}
	v.Data = d
	if id := c.Query("reach"); id != "" {
		o, err := h.Loyalty.GetOffer(c.UserContext(), id)
		if err != nil {
			return h.fail(c, "offers", v, err)
		}
		n, err := h.Loyalty.OfferReach(c.UserContext(), id)
		if err != nil {
			return h.fail(c, "offers", v, err)
		}
		d.Reach = &reachData{ID: o.ID, Code: o.Code, Name: o.Name, Members: n}
	}
	return h.render(c, http.StatusOK, "offers", v)
}

func (h *handler) createOffer(c *fiber.Ctx) error {
	v := h.page(c, "offers", "Offers", nil)
	f := newForm(c)
	exp := exponent(v.Program)
	submitted := offerForm{Code: f.str("code"), Name: f.str("name"), Kind: f.str("kind"), Multiplier: f.str("multiplier"),
		Bonus: f.str("bonus_points"), Target: f.str("target"), Segments: f.all("segments"), MinSpend: f.str("min_spend"),
		Categories: f.str("categories"), Starts: f.str("starts_at"), Ends: f.str("ends_at"), MaxUses: f.str("max_uses_per_member"),
		Activation: f.checked("requires_activation"), Idem: f.str("idem")}
	fields := map[string]any{"code": submitted.Code, "name": submitted.Name, "kind": submitted.Kind,
		"requires_activation": submitted.Activation}
	switch submitted.Kind {
	case loyalty.OfferMultiplier:
		if m := f.decimal("multiplier"); m != nil {
			fields["multiplier"] = m.String()
		}
	case loyalty.OfferBonus:
		if b := f.int("bonus_points"); b != nil {
			fields["bonus_points"] = *b
		}
	}
	target := map[string]any{"all": submitted.Target == "all", "segments": []string{}}
	if submitted.Target != "all" {
		target["segments"] = submitted.Segments
	}
	fields["target"] = target
	cond := map[string]any{"categories": f.list("categories")}
	if ms := f.money("min_spend", exp); ms != nil {
		cond["min_spend"] = *ms
	}
	fields["conditions"] = cond
	fields["starts_at"] = f.instant("starts_at", location(v.Program))
	fields["ends_at"] = f.instant("ends_at", location(v.Program))
	fields["max_uses_per_member"] = f.int("max_uses_per_member")
	err := f.err()
	var in loyalty.OfferInput
	if err == nil {
		err = decodeInto(fields, &in)
	}
	var o loyalty.Offer
	var rep *loyalty.Replay
	if err == nil {
		o, rep, err = h.Loyalty.CreateOffer(c.UserContext(), in, idemKey(c, fields))
	}
	if err == nil && rep != nil {
		// The same form sent again: the offer its first sending created.
		err = json.Unmarshal(rep.Body, &o)
	}
	if err != nil {
		d, derr := h.offersData(c)
		if derr != nil {
			return h.fail(c, "offers", v, derr)
		}
		d.Form = submitted
		v.Data = d
		return h.fail(c, "offers", v, err)
	}
	return redirect(c, Prefix+"/offers?reach="+url.QueryEscape(o.ID)+"&msg=offer_created&x="+url.QueryEscape(o.Code))
}

// offerReach answers an htmx request with the count alone; a plain
// request gets the offers page with the count on top.
func (h *handler) offerReach(c *fiber.Ctx) error {
	id := c.Params("id")
	if !isHTMX(c) || c.Get("HX-Boosted") == "true" {
		return redirect(c, Prefix+"/offers?reach="+url.QueryEscape(id))
	}
	n, err := h.Loyalty.OfferReach(c.UserContext(), id)
	if err != nil {
		e := loyalty.ErrorOf(err)
		return h.fragment(c, http.StatusOK, "offers", "reach-error", titleOf(e))
	}
	return h.fragment(c, http.StatusOK, "offers", "reach", reachData{ID: id, Members: n})
}

// ---- Birthday gift

type birthdayData struct {
	Gift    loyalty.BirthdayGift
	MinTier string
	Tiers   []loyalty.Tier
	Rewards []rewards.MemberReward
}

func (h *handler) birthdayData(c *fiber.Ctx, v view) (*birthdayData, error) {
	ts, err := h.Loyalty.Tiers(c.UserContext())
	if err != nil {
		return nil, err
	}
	l, err := h.Rewards.List(c.UserContext(), user(c), rewards.ListQuery{All: true, Page: loyalty.Page{Limit: 500}})
	if err != nil {
		return nil, err
	}
	d := &birthdayData{Tiers: ts, Rewards: []rewards.MemberReward{}}
	if v.Program != nil {
		d.Gift = v.Program.BirthdayGift
		d.MinTier = deref(d.Gift.MinTier)
	}
	// Active rewards, and retired ones still chosen (so saving the form
	// does not drop them unseen).
	for _, r := range l.Items {
		if r.Active || contains(d.Gift.RewardIDs, r.ID) {
			d.Rewards = append(d.Rewards, r)
		}
	}
	return d, nil
}

func (h *handler) birthdayPage(c *fiber.Ctx) error {
	v := h.page(c, "birthday", "Birthday gift", nil)
	d, err := h.birthdayData(c, v)
	if err != nil {
		return h.fail(c, "birthday", v, err)
	}
	v.Data = d
	return h.render(c, http.StatusOK, "birthday", v)
}

func (h *handler) saveBirthday(c *fiber.Ctx) error {
	v := h.page(c, "birthday", "Birthday gift", nil)
	d, err := h.birthdayData(c, v)
	if err != nil {
		return h.fail(c, "birthday", v, err)
	}
	v.Data = d
	f := newForm(c)
	g := loyalty.BirthdayGift{Enabled: f.checked("enabled"), RewardIDs: f.all("reward_ids"),
		BonusPoints: d.Gift.BonusPoints, ClaimDays: d.Gift.ClaimDays}
	if b := f.int("bonus_points"); b != nil {
		g.BonusPoints = *b
	}
	if n := f.int("claim_days"); n != nil {
		g.ClaimDays = int(*n)
	}
	if t := f.str("min_tier"); t != "" {
		g.MinTier = &t
	}
	err = f.err()
	if err == nil {
		_, err = h.Loyalty.UpdateProgram(c.UserContext(), loyalty.ProgramPatch{BirthdayGift: &g})
	}
	if err != nil {
		d.Gift, d.MinTier = g, deref(g.MinTier)
		return h.fail(c, "birthday", v, err)
	}
	return redirect(c, Prefix+"/birthday?msg=gift_saved")
}

// ---- Members

type membersData struct {
	Q, By    string
	Members  []loyalty.Member
	Searched bool
}

// membersPage looks members up by an exact email, phone or external id.
// With "any", a query with an @ is an email; otherwise both the phone and
// the external id are tried.
func (h *handler) membersPage(c *fiber.Ctx) error {
	v := h.page(c, "members", "Members", nil)
	d := &membersData{Q: strings.TrimSpace(c.Query("q")), By: c.Query("by", "any"), Members: []loyalty.Member{}}
	v.Data = d
	if d.Q == "" {
		return h.render(c, http.StatusOK, "members", v)
	}
	d.Searched = true
	var queries []loyalty.MemberQuery
	switch d.By {
	case "email":
		queries = append(queries, loyalty.MemberQuery{Email: d.Q})
	case "phone":
		queries = append(queries, loyalty.MemberQuery{Phone: d.Q})
	case "external_id":
		queries = append(queries, loyalty.MemberQuery{ExternalID: d.Q})
	default:
		d.By = "any"
		if strings.Contains(d.Q, "@") {
			queries = append(queries, loyalty.MemberQuery{Email: d.Q})
		} else {
			queries = append(queries, loyalty.MemberQuery{Phone: d.Q}, loyalty.MemberQuery{ExternalID: d.Q})
		}
	}
	seen := map[string]bool{}
	for _, q := range queries {
		q.Page = loyalty.Page{Limit: 50}
		l, err := h.Loyalty.FindMembers(c.UserContext(), user(c), q)
		if err != nil {
			return h.fail(c, "members", v, err)
		}
		for _, m := range l.Items {
			if !seen[m.ID] {
				seen[m.ID] = true
				d.Members = append(d.Members, m)
			}
		}
	}
	sort.Slice(d.Members, func(i, j int) bool { return d.Members[i].ID < d.Members[j].ID })
	return h.render(c, http.StatusOK, "members", v)
}

type memberData struct {
	Member      loyalty.Member
	Balance     loyalty.Balance
	Ledger      []loyalty.Entry
	LedgerNext  string
	Redemptions []rewards.Redemption
	Gifts       []rewards.Gift
	Progress    int // percent of the way to the next tier
	Threshold   int64
	Points      string
	Reason      string
	Idem        string
}

func (h *handler) memberData(c *fiber.Ctx) (*memberData, error) {
	ctx, p, id := c.UserContext(), user(c), c.Params("id")
	m, err := h.Loyalty.Member(ctx, p, id)
	if err != nil {
		return nil, err
	}
	b, err := h.Loyalty.Balance(ctx, p, id)
	if err != nil {
		return nil, err
	}
	led, err := h.Loyalty.Ledger(ctx, p, id, loyalty.Page{Limit: 50, Cursor: c.Query("ledger")})
	if err != nil {
		return nil, err
	}
	red, err := h.Rewards.Redemptions(ctx, p, id, loyalty.Page{Limit: 50})
	if err != nil {
		return nil, err
	}
	gifts, err := h.Rewards.Gifts(ctx, p, id)
	if err != nil {
		return nil, err
	}
	d := &memberData{Member: m, Balance: b, Ledger: led.Items, Redemptions: red.Items, Gifts: gifts.Items, Idem: formKey()}
	if led.NextCursor != nil {
		d.LedgerNext = *led.NextCursor
	}
	if b.NextTier != nil {
		d.Threshold = b.QualifyingSpend + b.NextTier.SpendNeeded
		if d.Threshold > 0 {
			d.Progress = int(b.QualifyingSpend * 100 / d.Threshold)
		}
	} else if b.Tier != nil {
		d.Progress = 100
	}
	return d, nil
}

func (h *handler) memberPage(c *fiber.Ctx) error {
	v := h.page(c, "members", "Member", nil)
	d, err := h.memberData(c)
	if err != nil {
		return h.fail(c, "error", v, err)
	}
	v.Data, v.Title = d, memberTitle(d.Member)
	return h.render(c, http.StatusOK, "member", v)
}

func memberTitle(m loyalty.Member) string {
	name := strings.TrimSpace(deref(m.FirstName) + " " + deref(m.LastName))
	switch {
	case name != "":
		return name
	case m.Email != nil:
		return *m.Email
	case m.ExternalID != nil:
		return *m.ExternalID
	}
	return "Member " + m.ID
}

// adjust credits or debits points by hand with a reason; the service lets
// only admins do it.
func (h *handler) adjust(c *fiber.Ctx) error {
	v := h.page(c, "members", "Member", nil)
	d, err := h.memberData(c)
	if err != nil {
		return h.fail(c, "error", v, err)
	}
	v.Data, v.Title = d, memberTitle(d.Member)
	f := newForm(c)
	d.Points, d.Reason, d.Idem = f.str("points"), f.str("reason"), f.str("idem")
	in := loyalty.AdjustmentInput{Points: f.int("points"), Reason: f.str("reason")}
	err = f.err()
	if err == nil {
		fields := map[string]any{"points": in.Points, "reason": in.Reason}
		_, _, err = h.Loyalty.Adjust(c.UserContext(), v.User, d.Member.ID, in, idemKey(c, fields))
	}
	if err != nil {
		return h.fail(c, "member", v, err)
	}
	return redirect(c, fmt.Sprintf("%s/members/%s?msg=adjusted&x=%s", Prefix, url.PathEscape(d.Member.ID), url.QueryEscape(signed(*in.Points))))
}

// ---- Jobs

type jobsData struct {
	Jobs []jobs.Status
}

type jobRow struct {
	Job     jobs.Status
	CSRF    string
	Program *loyalty.Program
}

func (h *handler) jobsPage(c *fiber.Ctx) error {
	v := h.page(c, "jobs", "Jobs", nil)
	l, err := h.Jobs.List(c.UserContext())
	if err != nil {
		return h.fail(c, "jobs", v, err)
	}
	v.Data = &jobsData{Jobs: l}
	return h.render(c, http.StatusOK, "jobs", v)
}

// runJob runs a job now, as of the engine's clock, like
// POST /v1/jobs/{name}/run. htmx gets the job's row back; a plain form
// goes back to the jobs page.
func (h *handler) runJob(c *fiber.Ctx) error {
	v := h.page(c, "jobs", "Jobs", nil)
	p, name := user(c), c.Params("name")
	rec, err := h.Jobs.Run(c.UserContext(), name, h.Loyalty.Now(), string(p.Role)+":"+p.Subject)
	if err != nil {
		l, lerr := h.Jobs.List(c.UserContext())
		if lerr != nil {
			return h.fail(c, "jobs", v, lerr)
		}
		v.Data = &jobsData{Jobs: l}
		return h.fail(c, "jobs", v, err)
	}
	if isHTMX(c) && c.Get("HX-Boosted") != "true" {
		l, err := h.Jobs.List(c.UserContext())
		if err != nil {
			return h.fail(c, "jobs", v, err)
		}
		for _, j := range l {
			if j.Name == name {
				return h.fragment(c, http.StatusOK, "jobs", "job-row", jobRow{Job: j, CSRF: v.CSRF, Program: v.Program})
			}
		}
	}
	msg := "job_ran"
	if rec.Status != jobs.Succeeded {
		msg = "job_failed"
	}
	return redirect(c, Prefix+"/jobs?msg="+msg+"&x="+url.QueryEscape(name))
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
