package loyalty_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// TestWALStaysBoundedUnderOverlappingReads writes sixteen times the WAL's
// restart length while readers overlap one another without pause, as
// requests do under load: SQLite never starts such a WAL over by itself,
// so without the writer's restart its file grows with every write (to
// the sixteen lengths). The WAL file must end within half of that. The
// restart follows the checkpoint that finds the WAL long, one every 100 ms
// by the store's ticker; the test also runs one after each restart
// length it writes, as the ticker would between them on a machine with
// a core to spare, so that how far the writes go past the restart length
// is not the machine's (101 MiB once, with other packages' tests taking
// both cores, against 15–45 MiB alone).
func TestWALStaysBoundedUnderOverlappingReads(t *testing.T) {
	s := probeStore(t, loyalty.SQLite)
	const restartFrames = 2048
	loyalty.SetRestartFrames(s, restartFrames)
	ctx := context.Background()
	if err := s.DB().Exec("CREATE TABLE wal_probe (id INTEGER PRIMARY KEY, body BLOB NOT NULL)").Error; err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				// A read transaction that reads the WAL's latest pages.
				err := loyalty.ReadDB(s).Transaction(func(tx *gorm.DB) error {
					var n int64
					return tx.Raw("SELECT COUNT(*) FROM (SELECT id FROM wal_probe ORDER BY id DESC LIMIT 50)").Scan(&n).Error
				})
				if err != nil {
					t.Error(err)
					return
				}
				reads.Add(1)
			}
		}()
	}
	// Each write adds about 64 KiB: 16 pages of blob, in 16 rows.
	const pageSize = 4096
	writes := 16 * restartFrames / 16
	body := []byte(strings.Repeat("x", pageSize-200))
	for i := range writes {
		err := loyalty.WriteGroup(ctx, s, func(tx *gorm.DB) error {
			for j := range 16 {
				if err := tx.Exec("INSERT INTO wal_probe (id, body) VALUES (?, ?)", i*16+j, body).Error; err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if (i+1)%(restartFrames/16) == 0 {
			loyalty.Checkpoint(s)
		}
	}
	stop.Store(true)
	wg.Wait()
	fi, err := os.Stat(s.Path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	written := int64(writes) * 16 * pageSize
	t.Logf("%d writes (%d MiB of pages) beside %d reads: WAL file %d MiB", writes, written>>20, reads.Load(), fi.Size()>>20)
	if limit := written / 2; fi.Size() > limit {
		t.Errorf("WAL file is %d MiB after %d MiB written, past %d MiB: the writer did not start it over",
			fi.Size()>>20, written>>20, limit>>20)
	}
}
