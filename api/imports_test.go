package api

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// postImport sends body as an import over a real socket (the route reads
// its body off the connection, which app.Test does not model) and waits
// for the import to end. chunked sends it without a Content-Length.
func (e *env) postImport(t testing.TB, addr, query, body string, chunked bool) (int, loyalty.Import) {
	t.Helper()
	var rd io.Reader = strings.NewReader(body)
	if chunked {
		rd = io.MultiReader(strings.NewReader(body)) // hides the length
	}
	req, err := http.NewRequest("POST", "http://"+addr+"/v1/imports?"+query, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.admin())
	req.Header.Set("Content-Type", "text/csv")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		return res.StatusCode, loyalty.Import{}
	}
	var started map[string]string
	if err := json.Unmarshal(b, &started); err != nil || started["status"] != "running" || started["id"] == "" {
		t.Fatalf("202 body %s", b)
	}
	// The import runs in the background: wait for it to end (not a timed
	// assertion: the deadline only stops a hung test).
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var imp loyalty.Import
		e.do("GET", "/v1/imports/"+started["id"], e.admin(), nil).must(t, 200).Decode(t, &imp)
		if imp.Status != loyalty.ImportRunning {
			return res.StatusCode, imp
		}
		if time.Now().After(deadline) {
			t.Fatalf("import still running: %+v", imp)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestImportsAPI(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		addr := listen(t, e)
		body := "member_external_id,external_id,store_id,occurred_at,total,currency\n" +
			"m1,r1,s1,2026-02-01T10:00:00Z,1000,USD\n" +
			"m1,r2,s1,2026-02-02,12x,USD\n" +
			"m2,r3,s1,2026-02-03T10:00:00Z,2500,EUR\n" +
			"m2,r4,s1,2026-02-04T10:00:00Z,2500,USD\n"
		for _, chunked := range []bool{false, true} {
			status, imp := e.postImport(t, addr, "kind=purchases", body, chunked)
			if status != http.StatusAccepted || imp.Status != loyalty.ImportSucceeded || imp.RowsTotal != 4 || imp.RowsFailed != 2 {
				t.Fatalf("chunked=%v: %d %+v", chunked, status, imp)
			}
			if !chunked && imp.RowsCreated != 2 || chunked && (imp.RowsCreated != 0 || imp.RowsSkipped != 2) {
				t.Fatalf("chunked=%v: %+v", chunked, imp)
			}
			r := e.do("GET", "/v1/imports/"+imp.ID+"/errors", e.admin(), nil).must(t, 200)
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
				t.Errorf("errors content type %q", ct)
			}
			recs, err := csv.NewReader(strings.NewReader(string(r.Body))).ReadAll()
			if err != nil || len(recs) != 3 || recs[0][0] != "line" || recs[0][1] != "error" || recs[1][0] != "3" || recs[2][0] != "4" ||
				recs[1][2] != "m1" || recs[2][7] != "EUR" {
				t.Errorf("errors CSV %q (%v)", r.Body, err)
			}
		}
		// The events of the purchases imported, with the members enrolled.
		if _, _, err := e.svc.SequenceEvents(context.Background()); err != nil {
			t.Fatal(err)
		}
		ev := e.do("GET", "/v1/events?type=purchase.created", e.admin(), nil).must(t, 200).JSON(t)
		if n := len(ev["items"].([]any)); n != 2 {
			t.Errorf("purchase.created events: %d", n)
		}
		t.Run("Refusals", func(t *testing.T) {
			if status, _ := e.postImport(t, addr, "kind=coupons", body, false); status != http.StatusUnprocessableEntity {
				t.Errorf("unknown kind: %d", status)
			}
			if status, _ := e.postImport(t, addr, "kind=members&earn=true", "external_id\n", false); status != http.StatusUnprocessableEntity {
				t.Errorf("earn on members: %d", status)
			}
			req, _ := http.NewRequest("POST", "http://"+addr+"/v1/imports?kind=members", strings.NewReader("external_id\nx\n"))
			req.Header.Set("Authorization", "Bearer "+e.marketer())
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("marketer: %d", res.StatusCode)
			}
			e.do("GET", "/v1/imports/nope", e.admin(), nil).must(t, 404)
			e.do("GET", "/v1/imports/nope/errors", e.admin(), nil).must(t, 404)
			e.do("GET", "/v1/imports/nope", e.marketer(), nil).must(t, 403)
			assertProblem(t, overSocket(t, addr, "POST", "/v1/imports?kind=members", e.admin(), make([]byte, 2<<30)),
				http.StatusRequestEntityTooLarge, "")
		})
		t.Run("MembersDryRun", func(t *testing.T) {
			status, imp := e.postImport(t, addr, "kind=members&dry_run=true", "external_id,opening_points\nz1,10\nz2,x\n", false)
			if status != http.StatusAccepted || !imp.DryRun || imp.RowsCreated != 1 || imp.RowsFailed != 1 {
				t.Fatalf("%d %+v", status, imp)
			}
			e.do("GET", "/v1/members?external_id=z1", e.admin(), nil).must(t, 200)
			var n int64
			e.store.DB().Raw("SELECT COUNT(*) FROM members WHERE external_id = 'z1'").Scan(&n)
			if n != 0 {
				t.Errorf("dry run enrolled z1")
			}
		})
	})
}
