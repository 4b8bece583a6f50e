package main

import (
	mrand "math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupSQLiteOnlineRestore runs `loyalty backup` while purchases are
// being posted, starts a server on the copy, and checks that the copy is
// consistent: every purchase acknowledged before the backup began is in
// it, nothing in it was never acknowledged, nothing is half-written, and
// every ledger sums to its balance.
func TestBackupSQLiteOnlineRestore(t *testing.T) {
	src := sqliteURL(t)
	dest := filepath.Join(t.TempDir(), "backup.db")
	backupRestoreTest(t, src, dest, nil, func(t *testing.T) string {
		return "sqlite://" + dest
	})
}

// TestBackupPostgresDumpRestore does the same on PostgreSQL: `loyalty
// backup` runs pg_dump -Fc on the live database, pg_restore loads the dump
// into a new database, and a server started on it passes the same checks.
func TestBackupPostgresDumpRestore(t *testing.T) {
	base := postgresBase(t)
	dir := ""
	if _, err := exec.LookPath("pg_dump"); err != nil {
		dir = postgresBinDir(t, "pg_dump", "pg_restore")
	}
	pgRestore := "pg_restore"
	if dir != "" {
		pgRestore = filepath.Join(dir, "pg_restore")
	} else if _, err := exec.LookPath(pgRestore); err != nil {
		pgRestore = filepath.Join(postgresBinDir(t, "pg_restore"), "pg_restore")
	}
	src := createDatabase(t, base, "loyalty_backup")
	dump := filepath.Join(t.TempDir(), "loyalty.dump")
	var env []string
	if dir != "" {
		env = []string{"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")}
	}
	backupRestoreTest(t, src, dump, env, func(t *testing.T) string {
		dst := createDatabase(t, base, "loyalty_restored")
		out, err := exec.Command(pgRestore, "--no-owner", "--exit-on-error", "--dbname="+dst, dump).CombinedOutput()
		if err != nil {
			t.Fatalf("pg_restore: %v\n%s", err, out)
		}
		return dst
	})
}

// backupRestoreTest drives load on a server over srcURL, runs `loyalty
// backup dest` mid-load, lets the load finish, restores with restore and
// checks a server on the restored database.
func backupRestoreTest(t *testing.T, srcURL, dest string, env []string, restore func(t *testing.T) string) {
	requests, members, workers := 300, 10, 4
	if fullRun() {
		requests, members, workers = 3000, 40, 8
	}
	e := newEngine(t, srcURL)
	e.start()
	w := newWorkload(t, e)
	w.setup(members)

	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(workers, requests, nil)
	}()
	if !w.waitAcked(w.acked.Load()+int64(requests/3), done) {
		t.Fatal("the load ended before the backup")
	}
	before := w.acknowledged()
	cmd := e.command("backup", dest)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	// Writes first sent after this cannot be in the copy.
	sentByEnd := w.sent.Load()
	if err != nil {
		t.Fatalf("loyalty backup: %v\n%s", err, out)
	}
	during := w.acknowledged()[len(before):]
	t.Logf("loyalty backup: %s", strings.TrimSpace(string(out)))
	<-done
	all := w.acknowledged()
	t.Logf("%d writes acknowledged before the backup began, %d while it ran, %d in all", len(before), len(during), len(all))
	if t.Failed() {
		t.FailNow()
	}
	// The backup lost none of the writes acknowledged while it ran: each
	// is in the live database (looked up before verify repeats them), and
	// the source holds every acknowledged write once and is sound.
	live := storedIDs(t, srcURL)
	for _, o := range during {
		if !live[o.id] {
			t.Errorf("%s %s, acknowledged while the backup ran, is missing from the live database", o.kind, o.id)
		}
	}
	w.verify()
	w.checkExactlyOnce(srcURL)
	e.stop()

	restored := restore(t)
	e2 := newEngine(t, restored)
	e2.start()
	w2 := newWorkload(t, e2)
	w2.members, w2.rewardID, w2.cost = w.members, w.rewardID, w.cost

	copied := storedIDs(t, restored)
	// Every member, and every write acknowledged before the backup began,
	// is in the copy.
	for _, m := range w.members {
		if !copied[m] {
			t.Errorf("member %s, enrolled before the backup, is missing from the copy", m)
		}
	}
	for _, o := range before {
		if !copied[o.id] {
			t.Errorf("%s %s, acknowledged before the backup, is missing from the copy", o.kind, o.id)
		}
	}
	// The copy is a state the source went through: nothing in it was never
	// acknowledged or first sent after the backup ended, and as each
	// member's writes are sequential, the copy holds a prefix of them, so
	// its books are the sum of what that prefix's answers reported.
	acked := map[string]bool{}
	for _, m := range w.members {
		acked[m] = true
	}
	books := make([]int64, len(w.members))
	gap := make([]string, len(w.members))
	for _, o := range all {
		acked[o.id] = true
		switch {
		case !copied[o.id]:
			if gap[o.member] == "" {
				gap[o.member] = o.id
			}
		case o.sent > sentByEnd:
			t.Errorf("%s %s, first sent after the backup ended, is in the copy", o.kind, o.id)
		case gap[o.member] != "":
			t.Errorf("member %s: the copy holds %s %s but not %s acknowledged before it", w.members[o.member], o.kind, o.id, gap[o.member])
		default:
			books[o.member] += o.points
		}
	}
	for id := range copied {
		if !acked[id] {
			t.Errorf("%s in the copy was never acknowledged", id)
		}
	}
	t.Logf("the copy holds %d of the %d acknowledged writes", len(copied)-len(w.members), len(all))
	checkDB(t, restored)
	w2.checkLedgers(books)

	// The restored engine takes writes.
	w2.expected = make([]int64, len(w2.members))
	o := w2.next(mrand.New(mrand.NewSource(1)), 0, nil)
	w2.send(o)
	if o.status != http.StatusCreated {
		t.Fatalf("a purchase on the restored engine: %d %s", o.status, o.resp)
	}
}

// storedIDs lists the ids of the members, purchases, returns and
// redemptions a database holds.
func storedIDs(t *testing.T, dbURL string) map[string]bool {
	t.Helper()
	db := openDB(t, dbURL).DB()
	ids := map[string]bool{}
	for _, table := range []string{"members", "purchases", "returns", "redemptions"} {
		var got []string
		if err := db.Raw("SELECT id FROM " + table).Scan(&got).Error; err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		for _, id := range got {
			ids[id] = true
		}
	}
	return ids
}

// TestBackupCommandEdges: an existing file is never overwritten, and on
// PostgreSQL without pg_dump the command explains pg_dump / pg_restore and
// fails.
func TestBackupCommandEdges(t *testing.T) {
	t.Setenv("LOYALTY_JWT_SECRET", testSecret)
	t.Run("ExistingFile", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv("LOYALTY_DATABASE_URL", "sqlite://"+filepath.Join(dir, "loyalty.db"))
		if err := os.WriteFile(filepath.Join(dir, "loyalty.db"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(dir, "keep.db")
		if err := os.WriteFile(dest, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		err := run([]string{"backup", dest}, &out, &out)
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("backup onto an existing file: %v", err)
		}
		if b, _ := os.ReadFile(dest); string(b) != "keep" {
			t.Fatal("the existing file was changed")
		}
	})
	t.Run("PostgresWithoutPgDump", func(t *testing.T) {
		t.Setenv("LOYALTY_DATABASE_URL", "postgres://loyalty:secret@127.0.0.1:1/loyalty?sslmode=disable")
		t.Setenv("PATH", t.TempDir())
		var out strings.Builder
		err := run([]string{"backup", filepath.Join(t.TempDir(), "x.dump")}, &out, &out)
		if err == nil || !strings.Contains(out.String(), "pg_restore") || !strings.Contains(out.String(), "pg_dump --format=custom") {
			t.Fatalf("err %v, output %q", err, out.String())
		}
		if strings.Contains(out.String(), "secret") {
			t.Fatal("the guidance shows the database password")
		}
	})
}
