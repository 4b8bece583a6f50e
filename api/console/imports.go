package console

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	statuses "github.com/loyalty-engine/loyalty/api/problem"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// Import is an import of §15 as GET /v1/imports/{id} describes it.
type Import struct {
	ID          string
	Kind        string // members or purchases
	Status      string // running, succeeded or failed
	DryRun      bool
	Earn        bool
	RowsTotal   int64 // 0 while the file is still being counted
	RowsDone    int64
	RowsCreated int64
	RowsSkipped int64
	RowsFailed  int64
	Error       string // why a failed import failed, when it says
	StartedAt   time.Time
	FinishedAt  *time.Time
}

// Running reports whether the import has not finished.
func (i Import) Running() bool { return i.Status == "running" }

// Percent is how far the import is, 0 to 100, while its total is known.
func (i Import) Percent() int64 {
	if i.RowsTotal <= 0 {
		return 0
	}
	return min(100, i.RowsDone*100/i.RowsTotal)
}

// ImportOptions are POST /v1/imports's query: kind=members|purchases,
// dry_run, earn.
type ImportOptions struct {
	Kind   string
	DryRun bool
	Earn   bool
}

// Importer is the import service of §15 as the Imports page drives it: the
// engine gives the console the one the API runs imports with. Its errors
// are loyalty errors (a *loyalty.Error with its code), shown on the page.
type Importer interface {
	// StartImport stores the CSV file csv and begins importing it in the
	// background, as POST /v1/imports does: it returns the running import.
	StartImport(ctx context.Context, opts ImportOptions, csv io.Reader) (Import, error)
	// GetImport is GET /v1/imports/{id}.
	GetImport(ctx context.Context, id string) (Import, error)
	// WriteImportErrors writes GET /v1/imports/{id}/errors: the CSV of the
	// failed rows with their line and error.
	WriteImportErrors(ctx context.Context, id string, w io.Writer) error
	// RecentImports lists the latest imports, newest first.
	RecentImports(ctx context.Context, limit int) ([]Import, error)
}

// ---- Imports and exports (admins)

type importsData struct {
	// Available is whether this engine runs imports (Deps.Imports).
	Available bool
	Imports   []Import
	Form      importForm
	From, To  string // the ledger export's range as typed
}

type importForm struct {
	Kind         string
	DryRun, Earn bool
}

func (h *handler) importsData(c *fiber.Ctx) (*importsData, error) {
	d := &importsData{Available: h.Imports != nil, Form: importForm{Kind: "members"}, From: c.Query("from"), To: c.Query("to")}
	if d.From == "" && d.To == "" {
		// Last month, the usual accounting period.
		now := h.Loyalty.Now()
		if p, err := h.Loyalty.Program(c.UserContext()); err == nil {
			now = now.In(p.Location())
		}
		first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, now.Location())
		d.From, d.To = first.AddDate(0, -1, 0).Format(time.DateOnly), first.AddDate(0, 0, -1).Format(time.DateOnly)
	}
	if h.Imports == nil {
		return d, nil
	}
	l, err := h.Imports.RecentImports(c.UserContext(), 20)
	if err != nil {
		return d, err
	}
	d.Imports = l
	return d, nil
}

func (h *handler) importsPage(c *fiber.Ctx) error {
	v := h.page(c, "imports", "Imports and exports", nil)
	d, err := h.importsData(c)
	v.Data = d
	if err != nil {
		return h.fail(c, "imports", v, err)
	}
	return h.render(c, http.StatusOK, "imports", v)
}

// startImport takes the uploaded file to the import service and shows the
// import's page, which follows its progress.
func (h *handler) startImport(c *fiber.Ctx) error {
	v := h.page(c, "imports", "Imports and exports", nil)
	d, err := h.importsData(c)
	v.Data = d
	if err != nil {
		return h.fail(c, "imports", v, err)
	}
	if h.Imports == nil {
		return h.errorPage(c, http.StatusNotFound, "Not available", "This engine does not run imports.")
	}
	opts := ImportOptions{Kind: bodyField(c, "kind"), DryRun: bodyField(c, "dry_run") != "", Earn: bodyField(c, "earn") != ""}
	d.Form = importForm(opts)
	var vv loyalty.Validation
	if opts.Kind != "members" && opts.Kind != "purchases" {
		vv.Add("kind", "must be members or purchases")
	}
	if opts.Earn && opts.Kind != "purchases" {
		vv.Add("earn", "applies to purchases only")
	}
	fh, ferr := c.FormFile("file")
	if ferr != nil || fh.Size == 0 {
		vv.Add("file", "choose a CSV file with a header row")
	}
	if err := vv.Err(); err != nil {
		return h.fail(c, "imports", v, err)
	}
	file, err := fh.Open()
	if err != nil {
		return h.fail(c, "imports", v, loyalty.Errorf(loyalty.Malformed, "malformed", "the file could not be read"))
	}
	defer file.Close()
	imp, err := h.Imports.StartImport(c.UserContext(), opts, file)
	if err != nil {
		return h.fail(c, "imports", v, err)
	}
	return redirect(c, Prefix+"/imports/"+imp.ID)
}

func (h *handler) importPage(c *fiber.Ctx) error {
	v := h.page(c, "imports", "Import", nil)
	if h.Imports == nil {
		return h.errorPage(c, http.StatusNotFound, "Not available", "This engine does not run imports.")
	}
	imp, err := h.Imports.GetImport(c.UserContext(), c.Params("id"))
	if err != nil {
		return h.fail(c, "error", v, err)
	}
	v.Data, v.Title = imp, "Import of "+imp.Kind
	return h.render(c, http.StatusOK, "import", v)
}

// importProgress is the progress card the import's page polls every
// second while the import runs; the card of a finished import no longer
// asks to be polled, which ends the polling.
func (h *handler) importProgress(c *fiber.Ctx) error {
	if h.Imports == nil {
		return c.Status(http.StatusNotFound).SendString("Not available")
	}
	imp, err := h.Imports.GetImport(c.UserContext(), c.Params("id"))
	if err != nil {
		e := loyalty.ErrorOf(err)
		return c.Status(statuses.Status(e.Code)).SendString(titleOf(e))
	}
	return h.fragment(c, http.StatusOK, "import", "import-progress", map[string]any{"Import": imp, "Program": h.page(c, "imports", "", nil).Program})
}

// importErrors downloads the import's failed rows as CSV.
func (h *handler) importErrors(c *fiber.Ctx) error {
	if h.Imports == nil {
		return h.errorPage(c, http.StatusNotFound, "Not available", "This engine does not run imports.")
	}
	id := c.Params("id")
	imp, err := h.Imports.GetImport(c.UserContext(), id)
	if err != nil {
		return h.fail(c, "error", h.page(c, "imports", "Import", nil), err)
	}
	return h.streamCSV(c, "import-"+imp.ID+"-errors.csv", func(ctx context.Context, w *csvRows) error {
		return h.Imports.WriteImportErrors(ctx, imp.ID, w.bw)
	})
}

// exportMembers downloads every member with balance and tier (§15).
func (h *handler) exportMembers(c *fiber.Ctx) error {
	p := user(c)
	return h.streamCSV(c, "members.csv", func(ctx context.Context, w *csvRows) error {
		return h.Loyalty.ExportMembers(ctx, p, w)
	})
}

// exportLedger downloads the ledger of the range the form gives; a range
// that does not parse shows the Imports page again with the error.
func (h *handler) exportLedger(c *fiber.Ctx) error {
	v := h.page(c, "imports", "Imports and exports", nil)
	d, err := h.importsData(c)
	v.Data = d
	if err != nil {
		return h.fail(c, "imports", v, err)
	}
	loc := time.UTC
	if v.Program != nil {
		loc = v.Program.Location()
	}
	r, err := loyalty.ParseLedgerRange(c.Query("from"), c.Query("to"), loc)
	if err != nil {
		return h.fail(c, "imports", v, err)
	}
	p := user(c)
	name := "ledger-" + c.Query("from") + "-" + c.Query("to") + ".csv"
	if _, ok := isPlainName(name); !ok {
		name = "ledger.csv"
	}
	return h.streamCSV(c, name, func(ctx context.Context, w *csvRows) error {
		return h.Loyalty.ExportLedger(ctx, p, r, w)
	})
}

// isPlainName reports whether a download's file name needs no quoting.
func isPlainName(s string) (string, bool) {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' || r == ':' || r == '+') {
			return s, false
		}
	}
	return s, true
}

// csvRows is a loyalty.RowWriter onto a streamed answer: each Flush pushes
// the rows to the browser.
type csvRows struct {
	cw      *csv.Writer
	bw      *bufio.Writer
	conn    net.Conn
	timeout time.Duration
}

func (r *csvRows) Write(row []string) error { return r.cw.Write(row) }

func (r *csvRows) Flush() error {
	r.cw.Flush()
	if err := r.cw.Error(); err != nil {
		return err
	}
	// The server set its write deadline once for the whole answer, which
	// a large export outlasts: each flush gets its own.
	if r.conn != nil && r.timeout > 0 {
		_ = r.conn.SetWriteDeadline(time.Now().Add(r.timeout))
	}
	return r.bw.Flush()
}

// streamCSV answers with a CSV download written by export as it reads, as
// the API's exports do. What can be refused must be checked before: once
// streaming, the status is 200, and a failure ends the file with a line
// that says so.
func (h *handler) streamCSV(c *fiber.Ctx, filename string, export func(ctx context.Context, w *csvRows) error) error {
	ctx := c.UserContext()
	route := c.Route().Path
	c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+filename+`"`)
	conn, timeout := c.Context().Conn(), h.WriteTimeout
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		rows := &csvRows{cw: csv.NewWriter(w), bw: w, conn: conn, timeout: timeout}
		if err := export(ctx, rows); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			h.Logger.Error("console export failed", "route", route, "error", err.Error())
			_ = rows.Write([]string{"#export incomplete: the engine failed while reading; see its log"})
		}
		_ = rows.Flush()
	})
	return nil
}
