package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// TestImportKilledMidway kills `loyalty import` (SIGKILL) once its first
// chunks have committed: what is stored is whole chunks only (each
// purchase with its member, balance row, item and event), the import's
// counters say exactly that, and importing the same file again, once the
// dead import is failed, stores the rest and skips what was there.
func TestImportKilledMidway(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { importCrashTest(t, sqliteURL(t)) })
	t.Run("postgres", func(t *testing.T) {
		importCrashTest(t, createDatabase(t, postgresBase(t), "loyalty_import_crash"))
	})
}

func importCrashTest(t *testing.T, dbURL string) {
	const rows, chunk = 40000, 5000
	file := filepath.Join(t.TempDir(), "purchases.csv")
	var b strings.Builder
	b.WriteString("member_external_id,external_id,store_id,occurred_at,total,currency,category\n")
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < rows; i++ {
		cat := ""
		if i%2 == 0 {
			cat = "skincare"
		}
		fmt.Fprintf(&b, "K%d,P%d,s1,%s,%d,USD,%s\n", i%3000, i, start.Add(time.Duration(i)*time.Minute).Format(time.RFC3339), 100+i, cat)
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, dbURL)
	// The schema first, so that the test can watch the tables.
	if out, err := e.command("migrate", "up").CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	ctx := context.Background()
	store, err := loyalty.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	db := store.DB()
	count := func(q string) int64 {
		t.Helper()
		var n int64
		if err := db.Raw(q).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		return n
	}

	cmd := e.command("import", "purchases", file, "--quiet")
	cmd.Stdout, cmd.Stderr = e.logf, e.logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(2 * time.Minute)
	for count("SELECT COUNT(*) FROM purchases") == 0 {
		select {
		case <-exited:
			t.Fatal("the import ended before the test could kill it")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no chunk committed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited

	stored := count("SELECT COUNT(*) FROM purchases")
	if stored == rows || stored%chunk != 0 {
		t.Fatalf("%d purchases stored after the kill: want whole chunks of %d, short of %d", stored, chunk, rows)
	}
	for q, want := range map[string]int64{
		"SELECT COUNT(*) FROM events WHERE type = 'purchase.created'":                                                                     stored,
		"SELECT COUNT(*) FROM purchase_items":                                                                                             stored / 2,
		"SELECT COUNT(*) FROM purchases p LEFT JOIN member_balances b ON b.member_id = p.member_id WHERE b.member_id IS NULL":             0,
		"SELECT rows_created FROM imports":                                                                                                stored,
		"SELECT COUNT(*) FROM members m WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.member_id = m.id AND e.type = 'member.created')": 0,
	} {
		if got := count(q); got != want {
			t.Errorf("%s = %d, want %d", q, got, want)
		}
	}
	// The killed import still reads as running until its heartbeat is
	// old: age it, as a minute passing would.
	if err := db.Exec("UPDATE imports SET heartbeat_at = ?", time.Now().Add(-time.Hour).UTC()).Error; err != nil {
		t.Fatal(err)
	}
	out, err := e.command("import", "purchases", file, "--quiet").Output()
	if err != nil {
		t.Fatalf("re-import: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf(`"rows_created": %d`, rows-stored)) ||
		!strings.Contains(string(out), fmt.Sprintf(`"rows_skipped": %d`, stored)) {
		t.Errorf("re-import: %s", out)
	}
	if n := count("SELECT COUNT(*) FROM purchases"); n != rows {
		t.Errorf("%d purchases after the re-import, want %d", n, rows)
	}
	if n := count("SELECT COUNT(*) FROM events WHERE type = 'purchase.created'"); n != rows {
		t.Errorf("%d purchase.created events, want %d", n, rows)
	}
	if n := count("SELECT COUNT(*) FROM imports WHERE status = 'failed'"); n != 1 {
		t.Errorf("%d failed imports, want the killed one", n)
	}
}
