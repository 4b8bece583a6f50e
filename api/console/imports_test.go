package console_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/loyalty-engine/loyalty/api"
	"github.com/loyalty-engine/loyalty/api/console"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// fakeImports stands in for the import service of §15 (built on another
// branch): an import counts the file's rows, fails those whose first field
// is "bad", and advances by one row each time its progress is read, so a
// test sees it run and finish.
type fakeImports struct {
	mu      sync.Mutex
	imports []*fakeImport
}

type fakeImport struct {
	console.Import
	failed []string // the lines of the failed rows
}

func (f *fakeImports) StartImport(_ context.Context, opts console.ImportOptions, r io.Reader) (console.Import, error) {
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return console.Import{}, loyalty.Invalidf("file", "is not CSV: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	im := &fakeImport{Import: console.Import{ID: fmt.Sprintf("imp-%d", len(f.imports)+1), Kind: opts.Kind, Status: "running",
		DryRun: opts.DryRun, Earn: opts.Earn, RowsTotal: int64(len(rows) - 1), StartedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	for i, row := range rows[1:] {
		if row[0] == "bad" {
			im.failed = append(im.failed, fmt.Sprint(i+2))
		}
	}
	f.imports = append(f.imports, im)
	return im.Import, nil
}

func (f *fakeImports) GetImport(_ context.Context, id string) (console.Import, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, im := range f.imports {
		if im.ID != id {
			continue
		}
		if im.Status == "running" {
			im.RowsDone++
			im.RowsFailed = min(int64(len(im.failed)), im.RowsDone)
			im.RowsCreated = im.RowsDone - im.RowsFailed
			if im.RowsDone >= im.RowsTotal {
				im.Status, im.FinishedAt = "succeeded", &im.StartedAt
			}
		}
		return im.Import, nil
	}
	return console.Import{}, loyalty.Errorf(loyalty.NotFound, "not_found", "no import %s", id)
}

func (f *fakeImports) WriteImportErrors(_ context.Context, id string, w io.Writer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cw := csv.NewWriter(w)
	cw.Write([]string{"line", "error"})
	for _, im := range f.imports {
		if im.ID == id {
			for _, l := range im.failed {
				cw.Write([]string{l, "external_id: is required, not \"bad\""})
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

func (f *fakeImports) RecentImports(context.Context, int) ([]console.Import, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []console.Import
	for i := len(f.imports) - 1; i >= 0; i-- {
		out = append(out, f.imports[i].Import)
	}
	return out, nil
}

// upload posts a multipart form with a file, as the browser sends the
// Imports page's form.
func (cl *client) upload(path, csrf string, fields map[string]string, file string) page {
	cl.e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	mw.WriteField("_csrf", csrf)
	if file != "" {
		fw, _ := mw.CreateFormFile("file", "import.csv")
		io.WriteString(fw, file)
	}
	mw.Close()
	req := httptest.NewRequest("POST", path, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	for name, v := range cl.cookies {
		req.AddCookie(&http.Cookie{Name: name, Value: v})
	}
	res, err := cl.e.app.Test(req, -1)
	if err != nil {
		cl.e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return page{Status: res.StatusCode, Header: res.Header, Body: string(b)}
}

// TestConsoleImports: an admin uploads a file, follows the import's
// progress until it finishes (the polling stops), and downloads its failed
// rows; bad forms stay on the page. Marketers see none of it.
func TestConsoleImports(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		imports := &fakeImports{}
		e := newEnv(t, dialect, func(c *api.Config) { c.Imports = imports })
		mk := e.client()
		mk.signIn(e.token(loyalty.RoleMarketer, "mk-1"))
		if p := mk.get("/console/").must(t, 200); strings.Contains(p.Body, `href="/console/imports"`) {
			t.Error("a marketer's menu shows Imports")
		}
		mk.get("/console/imports").must(t, 403)
		mk.get("/console/imports/imp-1").must(t, 403)
		mk.get("/console/imports/imp-1/progress").must(t, 403)
		mk.get("/console/imports/imp-1/errors").must(t, 403)

		ad := e.client()
		csrf := ad.signIn(e.token(loyalty.RoleAdmin, "op-1"))
		ad.get("/console/imports").must(t, 200).contains(t, `href="/console/imports" aria-current="page"`, `id="import-new"`,
			`enctype="multipart/form-data"`, "No imports yet.", `id="export-members-link"`, `id="export-ledger"`)

		file := "external_id,email\nC-1,a@example.com\nbad,b@example.com\nC-3,c@example.com\n"
		ad.upload("/console/imports", "", map[string]string{"kind": "members"}, file).must(t, 403)
		ad.upload("/console/imports", csrf, map[string]string{"kind": "members", "earn": "true"}, file).
			must(t, 422).contains(t, `id="problem"`, "applies to purchases only")
		ad.upload("/console/imports", csrf, map[string]string{"kind": "everything"}, file).must(t, 422).contains(t, "must be members or purchases")
		ad.upload("/console/imports", csrf, map[string]string{"kind": "members"}, "").must(t, 422).contains(t, "choose a CSV file")

		r := ad.upload("/console/imports", csrf, map[string]string{"kind": "purchases", "earn": "true", "dry_run": "true"}, file).must(t, 303)
		if loc := r.Header.Get("Location"); loc != "/console/imports/imp-1" {
			t.Fatalf("after the upload: Location %q", loc)
		}
		ad.get("/console/imports/imp-1").must(t, 200).contains(t, "Import of purchases", "dry run", "earning points",
			`hx-get="/console/imports/imp-1/progress" hx-trigger="every 1s"`, `data-status="running"`, "<progress")
		var last page
		for i := 0; i < 10; i++ {
			last = ad.get("/console/imports/imp-1/progress").must(t, 200)
			if strings.Contains(last.Body, `data-status="succeeded"`) {
				break
			}
			last.contains(t, `hx-trigger="every 1s"`)
		}
		last.contains(t, `data-status="succeeded"`, "3 of 3 rows: 2 created, 0 skipped, 1 failed", `href="/console/imports/imp-1/errors"`)
		if strings.Contains(last.Body, "hx-trigger") || strings.Contains(last.Body, "<html") {
			t.Errorf("a finished import's card still polls, or is a whole page: %s", last.Body)
		}
		errs := ad.get("/console/imports/imp-1/errors").must(t, 200)
		if ct := errs.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") || !strings.Contains(errs.Header.Get("Content-Disposition"), "attachment") {
			t.Errorf("errors download: %s / %s", ct, errs.Header.Get("Content-Disposition"))
		}
		if errs.Body != "line,error\n3,\"external_id: is required, not \"\"bad\"\"\"\n" {
			t.Errorf("errors CSV %q", errs.Body)
		}
		ad.get("/console/imports").must(t, 200).contains(t, `id="import-row-imp-1"`, "purchases (dry run) (earning)", `data-status="succeeded"`)
		ad.get("/console/imports/imp-9").must(t, 404)
	})
}

// TestConsoleExports: the members export button (Members page, admins)
// and the ledger export form download the API's CSV; a bad range shows
// the page again with the error.
func TestConsoleExports(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		m := e.enrol()
		e.buy(m.ID, "EXP-C-1")
		mk := e.client()
		mk.signIn(e.token(loyalty.RoleMarketer, "mk-1"))
		if p := mk.get("/console/members").must(t, 200); strings.Contains(p.Body, "members-export") {
			t.Error("a marketer sees the members export")
		}
		mk.get("/console/exports/members").must(t, 403)
		mk.get("/console/exports/ledger?from=2026-01-01&to=2026-12-31").must(t, 403)

		ad := e.client()
		ad.signIn(e.token(loyalty.RoleAdmin, "op-1"))
		ad.get("/console/members").must(t, 200).contains(t, `href="/console/exports/members" hx-boost="false" download id="members-export"`)
		ad.get("/console/imports").must(t, 200).contains(t, `id="export-members-link"`, `id="export-ledger"`)
		ad.get("/console/imports/x").must(t, 404)

		members := ad.get("/console/exports/members").must(t, 200)
		rows := csvRows(t, members)
		if !slices.Equal(rows[0], loyalty.MemberExportHeader) || len(rows) != 2 || rows[1][0] != m.ID {
			t.Fatalf("members export %q", rows)
		}
		ledger := ad.get("/console/exports/ledger?from=2026-03-01&to=2026-03-01").must(t, 200)
		rows = csvRows(t, ledger)
		if !slices.Equal(rows[0], loyalty.LedgerExportHeader) || len(rows) != 2 || rows[1][1] != m.ID || rows[1][3] != "earn" {
			t.Fatalf("ledger export %q", rows)
		}
		if cd := ledger.Header.Get("Content-Disposition"); cd != `attachment; filename="ledger-2026-03-01-2026-03-01.csv"` {
			t.Errorf("Content-Disposition %q", cd)
		}
		ad.get("/console/exports/ledger?from=2026-03-02&to=2026-03-01").must(t, 422).
			contains(t, `id="problem"`, "must not be before from", `value="2026-03-02"`)
		ad.get("/console/exports/ledger?from="+url.QueryEscape("\"><script>")).must(t, 422).contains(t, "is required")
	})
}

func csvRows(t *testing.T, p page) [][]string {
	t.Helper()
	if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Fatalf("Content-Type %q", ct)
	}
	rows, err := csv.NewReader(strings.NewReader(p.Body)).ReadAll()
	if err != nil {
		t.Fatalf("not CSV: %v: %s", err, p.Body)
	}
	return rows
}

// TestBrowserImport uploads a members file through the Imports page of an
// engine with the import API and watches its progress to the end.
func TestBrowserImport(t *testing.T) {
	needBrowser(t)
	e := newEnv(t, loyalty.SQLite)
	b := newBrowser(t, e.serve())
	b.signIn(e.token(loyalty.RoleAdmin, "op-1"))
	b.run(chromedp.Click(chromedp.CSS(`.nav a[href="/console/imports"]`)))
	b.waitTitle("Imports and exports")
	b.shoot("imports")
	file := filepath.Join(t.TempDir(), "members.csv")
	if err := os.WriteFile(file, []byte("external_id,email,first_name\nIMP-1,one@example.com,Ann\n,missing@example.com,Bob\nIMP-3,three@example.com,Cy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.run(chromedp.SetUploadFiles(chromedp.CSS(`#import-new input[type=file]`), []string{file}))
	b.run(chromedp.Click(chromedp.CSS(`#import-new button[type=submit]`)))
	b.waitTitle("Import of members")
	b.waitFor(`document.querySelector(".import-progress[data-status=succeeded]")`)
	if s := b.text(".import-progress .rows"); !strings.Contains(s, "3 of 3 rows: 2 created, 0 skipped, 1 failed") {
		t.Errorf("progress %q", s)
	}
	if n := eval[int](b, `document.querySelectorAll(".import-progress .errors-link").length`); n != 1 {
		t.Errorf("%d links to the failed rows, want 1", n)
	}
	if got := eval[string](b, `fetch(document.querySelector(".errors-link").href).then(r => r.text())`); !strings.HasPrefix(got, "line,") || !strings.Contains(got, "\n3,") {
		t.Errorf("the failed rows download %q, want line 3 in a CSV with a line column", got)
	}
	b.shoot("import-finished")
	b.checkConsole()
}

// TestBrowserExports: the export controls download without htmx taking
// them over (the page stays), and a bad ledger range shows its error.
func TestBrowserExports(t *testing.T) {
	needBrowser(t)
	e := newEnv(t, loyalty.SQLite)
	b := newBrowser(t, e.serve())
	b.signIn(e.token(loyalty.RoleAdmin, "op-1"))
	b.open("/console/members", "Members")
	if n := eval[int](b, `document.querySelectorAll('#members-export[download][hx-boost=false]').length`); n != 1 {
		t.Errorf("members export link: %d", n)
	}
	b.open("/console/imports", "Imports and exports")
	b.shoot("exports")
	b.fill("#export-ledger", map[string]string{"from": "2026-03-05", "to": "2026-03-01"})
	b.run(chromedp.Click(chromedp.CSS(`#export-ledger button[type=submit]`)))
	b.waitFor(`document.querySelector("#problem") && document.querySelector("#problem").textContent.includes("must not be before from")`)
	b.checkConsole()
}
