package console

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/jobs"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// ---- Customer experience

type cxData struct {
	From, To   string
	Overall    *jobs.CXItem
	Stores     []jobs.CXItem
	StoreIDs   []string
	StoreID    string
	Categories []jobs.StoreCategory
	Charts     *cxCharts
}

// cxCharts is what console.js hands to Chart.js on the CX page.
type cxCharts struct {
	Months []string       `json:"months"`
	NPS    []*json.Number `json:"nps"`
	CSAT   []*json.Number `json:"csat"`
	CES    []*json.Number `json:"ces"`
	Stores []string       `json:"stores"`
	Store  []*json.Number `json:"store_nps"`
}

func (h *handler) cxPage(c *fiber.Ctx) error {
	ctx := c.UserContext()
	v := h.page(c, "cx", "Customer experience", nil)
	loc := location(v.Program)
	d := &cxData{StoreID: c.Query("store_id")}
	v.Data = d
	rng, err := h.reportRange(c, loc, &d.From, &d.To)
	if err != nil {
		return h.fail(c, "cx", v, err)
	}
	all, err := h.Jobs.CX(ctx, jobs.CXQuery{Range: &rng})
	if err != nil {
		return h.fail(c, "cx", v, err)
	}
	d.Overall = &all[0]
	if d.Stores, err = h.Jobs.CX(ctx, jobs.CXQuery{Range: &rng, GroupBy: "store"}); err != nil {
		return h.fail(c, "cx", v, err)
	}
	ch := &cxCharts{Months: []string{}, NPS: []*json.Number{}, CSAT: []*json.Number{}, CES: []*json.Number{}, Stores: []string{}, Store: []*json.Number{}}
	for start := rng.From; !start.After(rng.To); start = time.Date(start.Year(), start.Month()+1, 1, 0, 0, 0, 0, loc) {
		last := time.Date(start.Year(), start.Month()+1, 0, 0, 0, 0, 0, loc)
		if last.After(rng.To) {
			last = rng.To
		}
		m, err := h.Jobs.CX(ctx, jobs.CXQuery{Range: &jobs.DayRange{From: start, To: last, Loc: loc}})
		if err != nil {
			return h.fail(c, "cx", v, err)
		}
		ch.Months = append(ch.Months, start.Format("2006-01"))
		ch.NPS, ch.CSAT, ch.CES = append(ch.NPS, m[0].NPS.Score), append(ch.CSAT, m[0].CSAT.Average), append(ch.CES, m[0].CES.Average)
	}
	for _, s := range d.Stores {
		if s.Group == nil {
			continue
		}
		ch.Stores = append(ch.Stores, *s.Group)
		ch.Store = append(ch.Store, s.NPS.Score)
	}
	d.Charts = ch
	// The store-categories table: the stores with purchases.
	err = loyalty.Read(ctx, h.Loyalty, func(db *gorm.DB) error {
		return db.Raw("SELECT DISTINCT store_id FROM purchases ORDER BY store_id LIMIT 200").Scan(&d.StoreIDs).Error
	})
	if err != nil {
		return h.fail(c, "cx", v, err)
	}
	if d.StoreID == "" && len(d.StoreIDs) > 0 {
		d.StoreID = d.StoreIDs[0]
	}
	if d.StoreID != "" {
		if d.Categories, err = h.Jobs.StoreCategories(ctx, d.StoreID, "loyal", nil); err != nil {
			return h.fail(c, "cx", v, err)
		}
	}
	return h.render(c, http.StatusOK, "cx", v)
}

// ---- Lifetime value

type clvData struct {
	Model   *jobs.ClvModel
	Top     []jobs.ClvEntry
	Bands   []jobs.ClvBand
	Charts  *clvCharts
	HasData bool
}

type clvCharts struct {
	Labels []string `json:"labels"`
	Values []int64  `json:"values"`
}

func (h *handler) clvPage(c *fiber.Ctx) error {
	ctx := c.UserContext()
	v := h.page(c, "clv", "Lifetime value", nil)
	d := &clvData{Charts: &clvCharts{Labels: []string{}, Values: []int64{}}}
	v.Data = d
	m, err := h.Jobs.LatestClvModel(ctx)
	if err != nil {
		if e, ok := err.(*loyalty.Error); !ok || e.Code != loyalty.NotFound {
			return h.fail(c, "clv", v, err)
		}
	} else {
		d.Model = &m
	}
	top, err := h.Jobs.ClvList(ctx, loyalty.Page{Limit: 10})
	if err != nil {
		return h.fail(c, "clv", v, err)
	}
	d.Top = top.Items
	if d.Bands, err = h.Jobs.ClvDistribution(ctx); err != nil {
		return h.fail(c, "clv", v, err)
	}
	for _, b := range d.Bands {
		d.Charts.Labels = append(d.Charts.Labels, amount(b.From, v.Program)+"–"+amount(b.To, v.Program))
		d.Charts.Values = append(d.Charts.Values, b.Members)
		d.HasData = d.HasData || b.Members > 0
	}
	return h.render(c, http.StatusOK, "clv", v)
}
