package api

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/api/console"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// consoleImports gives the console's Imports page the import service of
// §15: an uploaded file goes, as the body of POST /v1/imports does, to a
// temporary file, and is imported from it in the background.
type consoleImports struct {
	svc *loyalty.Service
	log *slog.Logger
}

func consoleImport(i loyalty.Import) console.Import {
	out := console.Import{ID: i.ID, Kind: i.Kind, Status: i.Status, DryRun: i.DryRun, Earn: i.Earn, RowsTotal: i.RowsTotal,
		RowsDone: i.RowsDone, RowsCreated: i.RowsCreated, RowsSkipped: i.RowsSkipped, RowsFailed: i.RowsFailed,
		StartedAt: i.StartedAt, FinishedAt: i.FinishedAt}
	if i.Error != nil {
		out.Error = *i.Error
	}
	return out
}

func (ci consoleImports) StartImport(ctx context.Context, o console.ImportOptions, r io.Reader) (console.Import, error) {
	imp, err := ci.svc.BeginImport(ctx, loyalty.ImportOptions{Kind: o.Kind, DryRun: o.DryRun, Earn: o.Earn})
	if err != nil {
		return console.Import{}, err
	}
	bg := context.Background()
	f, err := os.CreateTemp("", "loyalty-import-*.csv")
	if err != nil {
		_ = ci.svc.FailImport(bg, imp.ID, "the engine could not store the file")
		return console.Import{}, err
	}
	cleanup := func() { f.Close(); os.Remove(f.Name()) }
	lines := &lineCounter{}
	if _, err := io.Copy(io.MultiWriter(f, lines), r); err != nil {
		cleanup()
		_ = ci.svc.FailImport(bg, imp.ID, "the file did not arrive whole")
		return console.Import{}, err
	}
	if rows := lines.rows(); rows > 0 {
		_ = ci.svc.SetImportTotal(ctx, imp.ID, rows)
	}
	go func() {
		defer cleanup()
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			_ = ci.svc.FailImport(bg, imp.ID, "the engine could not read the stored file")
			return
		}
		if _, err := ci.svc.RunImport(bg, imp.ID, bufio.NewReaderSize(f, 64<<10)); err != nil {
			ci.log.Error("import failed", "import", imp.ID, "error", err.Error())
		}
	}()
	return ci.GetImport(ctx, imp.ID)
}

func (ci consoleImports) GetImport(ctx context.Context, id string) (console.Import, error) {
	i, err := ci.svc.GetImport(ctx, id)
	if err != nil {
		return console.Import{}, err
	}
	return consoleImport(i), nil
}

func (ci consoleImports) WriteImportErrors(ctx context.Context, id string, w io.Writer) error {
	return ci.svc.WriteImportErrors(ctx, id, w)
}

func (ci consoleImports) RecentImports(ctx context.Context, limit int) ([]console.Import, error) {
	var ids []string
	err := loyalty.Read(ctx, ci.svc, func(db *gorm.DB) error {
		return db.Raw("SELECT id FROM imports ORDER BY started_at DESC, id DESC LIMIT ?", limit).Scan(&ids).Error
	})
	if err != nil {
		return nil, err
	}
	out := make([]console.Import, 0, len(ids))
	for _, id := range ids {
		i, err := ci.GetImport(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, nil
}
