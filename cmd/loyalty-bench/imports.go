package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-engine/loyalty/api"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// The import phase (-import-rows N): a synthetic purchases CSV of N rows
// over -import-members members, generated as it is sent (chunked, never
// held whole) to POST /v1/imports of the engine, which is then followed
// to its end. It reports rows per second over the whole import (upload
// and import, from the request to the succeeded status) and the engine's
// peak RSS (VmHWM), against issue 15's targets. It runs alone: the other
// phases do not run with it.

// importTargets are issue 15's: rows/s by database, and the RSS bound.
var importTargets = map[string]float64{"PostgreSQL": 20000, "SQLite": 10000}

const importRSSTargetMB = 200

// synthCSV writes n purchase rows of members members, in time order over
// the two years before end.
func synthCSV(w io.Writer, n, members int, end time.Time) error {
	bw := make([]byte, 0, 64<<10)
	bw = append(bw, "member_external_id,external_id,store_id,occurred_at,total,currency,category\n"...)
	span := int64(2 * 365 * 24 * time.Hour / time.Second)
	start := end.Add(-2 * 365 * 24 * time.Hour)
	cats := []string{"skincare", "makeup", "fragrance", "hair", ""}
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(span*int64(i)/int64(n)) * time.Second)
		bw = append(bw, 'M')
		bw = strconv.AppendInt(bw, int64((i*7919)%members), 10)
		bw = append(bw, ",R"...)
		bw = strconv.AppendInt(bw, int64(i), 10)
		bw = append(bw, ",store-"...)
		bw = strconv.AppendInt(bw, int64(i%8), 10)
		bw = append(bw, ',')
		bw = at.UTC().AppendFormat(bw, time.RFC3339)
		bw = append(bw, ',')
		bw = strconv.AppendInt(bw, int64(500+(i*37)%20000), 10)
		bw = append(bw, ",USD,"...)
		bw = append(bw, cats[i%len(cats)]...)
		bw = append(bw, '\n')
		if len(bw) > 60<<10 {
			if _, err := w.Write(bw); err != nil {
				return err
			}
			bw = bw[:0]
		}
	}
	_, err := w.Write(bw)
	return err
}

// importPhase runs the import phase on the engine srv serves.
func (b *bench) importPhase(ctx context.Context, srv *server, label, secret string) error {
	opt := b.opt
	tok, err := api.SignToken(api.AuthConfig{Secret: []byte(secret)}, loyalty.RoleAdmin, "bench-admin", "", 6*time.Hour, time.Now())
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(synthCSV(pw, opt.importRows, opt.importMembers, time.Now().Add(-time.Hour))) }()
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+srv.addr+"/v1/imports?kind=purchases", pr)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "text/csv")
	b.logf("%s: importing %d purchase rows of %d members", label, opt.importRows, opt.importMembers)
	t0 := time.Now()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		return fmt.Errorf("import: %d %s", res.StatusCode, body)
	}
	uploaded := time.Since(t0)
	stopProfile := b.importProfile(ctx, srv, label, tok)
	defer stopProfile()
	var started struct{ ID string }
	if err := json.Unmarshal(body, &started); err != nil {
		return err
	}
	var imp loyalty.Import
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+srv.addr+"/v1/imports/"+started.ID, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		err = json.NewDecoder(res.Body).Decode(&imp)
		res.Body.Close()
		if err != nil {
			return err
		}
		if imp.Status != loyalty.ImportRunning {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	elapsed := time.Since(t0)
	hwm := procStatusKB(srv.pid(), "VmHWM")
	if imp.Status != loyalty.ImportSucceeded || imp.RowsCreated != int64(opt.importRows) {
		return fmt.Errorf("import ended %+v", imp)
	}
	rate := float64(opt.importRows) / elapsed.Seconds()
	b.logf("%s: %d rows in %s (upload %s): %.0f rows/s, engine peak RSS %d MB", label, opt.importRows,
		elapsed.Round(time.Millisecond), uploaded.Round(time.Millisecond), rate, hwm/1024)
	b.rep.notes = append(b.rep.notes, fmt.Sprintf("Import (§15) on %s: %d purchase rows of %d members in %s (file received in %s): "+
		"**%.0f rows/s** (target ≥ %.0f), engine peak RSS **%d MB** (target ≤ %d MB at 5M rows).", label, opt.importRows, opt.importMembers,
		elapsed.Round(time.Millisecond), uploaded.Round(time.Millisecond), rate, importTargets[label], hwm/1024, importRSSTargetMB))
	return nil
}

// importProfile saves a CPU profile of the engine's first minute of the
// import (at most) in -profile's folder as <database>-import.pprof; the
// returned func waits for it. It does nothing without -profile.
func (b *bench) importProfile(ctx context.Context, srv *server, label, tok string) func() {
	if b.opt.profileDir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		path := filepath.Join(b.opt.profileDir, strings.ToLower(label)+"-import.pprof")
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+srv.addr+"/debug/pprof/profile?seconds=60", nil)
		if err != nil {
			b.logf("  profile %s: %v", path, err)
			return
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			b.logf("  profile %s: %v", path, err)
			return
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err == nil && res.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", res.StatusCode)
		}
		if err == nil {
			err = os.MkdirAll(b.opt.profileDir, 0o755)
		}
		if err == nil {
			err = os.WriteFile(path, body, 0o644)
		}
		if err != nil {
			b.logf("  profile %s: %v", path, err)
			return
		}
		b.logf("  CPU profile: %s", path)
	}()
	return func() { <-done }
}
