package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/loyalty-engine/loyalty/loyalty"
)

const importUsage = "usage: loyalty import members|purchases FILE [--dry-run] [--earn]"

// importCmd imports a CSV file (§15) straight into the database through
// the service, as POST /v1/imports does, with a progress bar over the
// bytes read on stderr and the import's record as JSON on stdout.
func importCmd(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dry := fs.Bool("dry-run", false, "validate every row and write nothing but the import's record and errors")
	earn := fs.Bool("earn", false, "purchases: post each row through the earning rules, in occurred_at order")
	quiet := fs.Bool("quiet", false, "no progress bar")
	// Flags may come before or after KIND and FILE.
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) != 2 {
		return errors.New(importUsage)
	}
	f, err := os.Open(pos[1])
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	store, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	svc := loyalty.NewService(store)
	imp, err := svc.BeginImport(ctx, loyalty.ImportOptions{Kind: pos[0], DryRun: *dry, Earn: *earn})
	if err != nil {
		return err
	}
	var r io.Reader = f
	var bar *progressbar.ProgressBar
	if !*quiet {
		bar = progressbar.NewOptions64(st.Size(), progressbar.OptionSetWriter(stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("importing "+pos[0]), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowCount(), progressbar.OptionSetWidth(30), progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }))
		pr := progressbar.NewReader(f, bar)
		r = &pr
	}
	done, err := svc.RunImport(ctx, imp.ID, bufio.NewReaderSize(r, 64<<10))
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(done); err != nil {
		return err
	}
	if done.RowsFailed > 0 {
		fmt.Fprintf(stderr, "%d rows failed; their lines and errors: GET /v1/imports/%s/errors\n", done.RowsFailed, done.ID)
	}
	if done.Status != loyalty.ImportSucceeded {
		return fmt.Errorf("import %s failed: %s", done.ID, deref(done.Error))
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
