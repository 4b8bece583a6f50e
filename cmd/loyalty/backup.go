package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
)

const backupUsage = "usage: loyalty backup FILE"

const postgresBackupGuidance = `PostgreSQL is backed up with its own tools, online and consistent (pg_dump
reads one snapshot while the engine keeps writing):

  pg_dump --format=custom --file=loyalty.dump "$LOYALTY_DATABASE_URL"

and restored into a new, empty database:

  createdb loyalty_restored
  pg_restore --no-owner --exit-on-error --dbname=postgres://…/loyalty_restored loyalty.dump

then point LOYALTY_DATABASE_URL at it. loyalty backup runs pg_dump itself when it is on PATH.`

// backup writes a consistent copy of the database to a file while the
// engine keeps serving: SQLite's VACUUM INTO, or pg_dump for PostgreSQL.
// The copy appears under its name only once it is complete.
func backup(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New(backupUsage)
	}
	dest, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := os.Stat(dest); err == nil {
		return fmt.Errorf("backup: %s already exists", dest)
	}
	raw := cfg.DatabaseURL
	switch {
	case strings.HasPrefix(raw, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//")
		return backupSQLite(ctx, path, dest, stdout)
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		return backupPostgres(ctx, raw, dest, stdout)
	}
	return errors.New("backup: LOYALTY_DATABASE_URL must start with sqlite:// or postgres://")
}

// partialName is where a copy is written before it is complete.
func partialName(dest string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return dest + ".partial-" + hex.EncodeToString(b)
}

// backupSQLite copies the database with VACUUM INTO: one read transaction,
// so the copy is the state of one instant, taken while writers carry on
// through the WAL. The copy is checked before it takes its name.
func backupSQLite(ctx context.Context, path, dest string, stdout io.Writer) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("backup: the database %s: %w", path, err)
	}
	store, err := loyalty.Open(ctx, "sqlite://"+path)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer store.Close()
	tmp := partialName(dest)
	defer os.Remove(tmp)
	start := time.Now()
	if err := store.DB().WithContext(ctx).Exec("VACUUM INTO ?", tmp).Error; err != nil {
		return fmt.Errorf("backup: VACUUM INTO: %w", err)
	}
	if err := checkSQLiteCopy(ctx, tmp); err != nil {
		return fmt.Errorf("backup: the copy fails its check: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := syncFile(filepath.Dir(dest)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	st, err := os.Stat(dest)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stdout, "backed up %s to %s (%d bytes, as of %s)\n", path, dest, st.Size(), start.UTC().Format(time.RFC3339))
	return nil
}

// checkSQLiteCopy opens the copy read-only and runs SQLite's integrity check.
func checkSQLiteCopy(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return err
	}
	if res != "ok" {
		return errors.New(res)
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return err
	}
	return nil
}

// backupPostgres runs pg_dump in its custom format, which pg_restore reads.
// pg_dump reads one snapshot, so the dump is consistent while the engine
// writes. A search_path in the URL (a deployment in its own schema) becomes
// pg_dump's --schema, as libpq does not know the parameter.
func backupPostgres(ctx context.Context, rawURL, dest string, stdout io.Writer) error {
	pgDump, err := exec.LookPath("pg_dump")
	if err != nil {
		fmt.Fprintln(stdout, postgresBackupGuidance)
		return errors.New("backup: pg_dump is not on PATH; install the PostgreSQL client tools (the same major version as the server or newer)")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return errors.New("backup: LOYALTY_DATABASE_URL is not a valid URL")
	}
	q := u.Query()
	args := []string{"--format=custom"}
	if sp := q.Get("search_path"); sp != "" {
		for _, s := range strings.Split(sp, ",") {
			args = append(args, "--schema="+strings.TrimSpace(s))
		}
		q.Del("search_path")
	}
	for k := range q {
		if strings.HasPrefix(k, "pool_") {
			q.Del(k)
		}
	}
	u.RawQuery = q.Encode()
	env := os.Environ()
	if pw, ok := u.User.Password(); ok {
		// The password travels in the environment, not on a command line
		// other users of the host can read.
		env = append(env, "PGPASSWORD="+pw)
		u.User = url.User(u.User.Username())
	}
	tmp := partialName(dest)
	defer os.Remove(tmp)
	args = append(args, "--file="+tmp, "--dbname="+u.String())
	cmd := exec.CommandContext(ctx, pgDump, args...)
	cmd.Env = env
	cmd.Stdout = stdout
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("backup: pg_dump: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	st, err := os.Stat(dest)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stdout, "backed up the PostgreSQL database to %s (pg_dump custom format, %d bytes, as of %s); restore with pg_restore --no-owner --dbname=URL %s\n",
		dest, st.Size(), start.UTC().Format(time.RFC3339), dest)
	return nil
}
