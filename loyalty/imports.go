package loyalty

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/csv"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
	"gorm.io/gorm"
)

// Imports of members and purchase history from CSV (§15). The file is read
// as a stream, record by record, in constant memory (the 8-byte hashes of
// the keys seen, which tell a key repeated within the file, go to a
// temporary file a million at a time: keySet); valid rows gather into
// chunks of importChunk rows, each written set-based in
// one transaction with the import's counters and the errors of its rows,
// so an import stopped anywhere has committed whole chunks and never half
// a row, and its counters say what was committed. A re-import skips what
// exists by natural key (members.external_id, a purchase's (store_id,
// external_id)), so an import that failed midway is resumed by importing
// the same file again.

// Import kinds and statuses.
const (
	ImportMembers   = "members"
	ImportPurchases = "purchases"

	ImportRunning   = "running"
	ImportSucceeded = "succeeded"
	ImportFailed    = "failed"
)

const (
	// importChunk is the rows of one chunk's transaction.
	importChunk = 5000
	// importErrorsKept bounds the error rows kept for one import; the
	// counters count every failed row.
	importErrorsKept = 10000
	// importStale is how old a running import's heartbeat (moved by every
	// chunk) may be before the import is taken for one whose process died.
	importStale = time.Minute
	// maxImportParams bounds the bound values of one statement (SQLite
	// allows 32,766).
	maxImportParams = 30000
)

// Columns of the CSV files (§15); the required ones must be in the header,
// the others may be.
var (
	memberImportColumns   = []string{"external_id", "email", "phone", "first_name", "last_name", "birthday", "timezone", "enrolled_at", "opening_points"}
	memberImportRequired  = []string{"external_id"}
	purchaseImportColumns = []string{"member_external_id", "external_id", "store_id", "occurred_at", "total", "currency", "channel", "category"}
	purchaseImportRequire = []string{"member_external_id", "external_id", "occurred_at", "total"}
)

// ImportOptions is what an import is asked to do.
type ImportOptions struct {
	Kind string
	// DryRun validates every row and writes nothing but the import's
	// record and its errors.
	DryRun bool
	// Earn posts each purchase through §8 (earning points), in
	// occurred_at order within each chunk, instead of as history.
	Earn bool
}

// Import is an import's record (§15 GET /v1/imports/{id}).
type Import struct {
	ID          string     `json:"id"`
	Kind        string     `json:"kind"`
	Status      string     `json:"status"`
	DryRun      bool       `json:"dry_run"`
	Earn        bool       `json:"earn"`
	RowsTotal   int64      `json:"rows_total"`
	RowsDone    int64      `json:"rows_done"`
	RowsCreated int64      `json:"rows_created"`
	RowsSkipped int64      `json:"rows_skipped"`
	RowsFailed  int64      `json:"rows_failed"`
	Error       *string    `json:"error"`
	StartedAt   time.Time  `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
}

type importRow struct {
	ID          string `gorm:"primaryKey"`
	Kind        string
	Status      string
	DryRun      bool
	Earn        bool
	Columns     string
	RowsTotal   int64
	RowsDone    int64
	RowsCreated int64
	RowsSkipped int64
	RowsFailed  int64
	Error       *string
	StartedAt   time.Time
	FinishedAt  *time.Time
	HeartbeatAt time.Time
}

func (importRow) TableName() string { return "imports" }

func (r importRow) view() Import {
	return Import{ID: r.ID, Kind: r.Kind, Status: r.Status, DryRun: r.DryRun, Earn: r.Earn, RowsTotal: r.RowsTotal,
		RowsDone: r.RowsDone, RowsCreated: r.RowsCreated, RowsSkipped: r.RowsSkipped, RowsFailed: r.RowsFailed,
		Error: r.Error, StartedAt: r.StartedAt.UTC(), FinishedAt: utcp(r.FinishedAt)}
}

// BeginImport records a running import of opts.Kind: 409 while another
// import of that kind runs. A running import whose process died (its
// heartbeat is older than importStale) is failed first.
func (s *Service) BeginImport(ctx context.Context, opts ImportOptions) (Import, error) {
	var v Validation
	switch opts.Kind {
	case ImportMembers:
		if opts.Earn {
			v.Add("earn", "applies to purchases imports only")
		}
	case ImportPurchases:
	default:
		v.Add("kind", "must be members or purchases")
	}
	if err := v.Err(); err != nil {
		return Import{}, err
	}
	if _, err := s.FailAbandonedImports(ctx); err != nil {
		return Import{}, err
	}
	now := ts(s.now())
	row := importRow{ID: newID(), Kind: opts.Kind, Status: ImportRunning, DryRun: opts.DryRun, Earn: opts.Earn, StartedAt: now, HeartbeatAt: now}
	err := s.store.write(ctx, func(tx *gorm.DB) error { return tx.Create(&row).Error })
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return Import{}, Errorf(Conflict, "import_running", "an import of %s is running; one import of a kind runs at a time", opts.Kind)
	}
	if err != nil {
		return Import{}, fmt.Errorf("begin import: %w", err)
	}
	return row.view(), nil
}

// FailAbandonedImports fails the running imports whose heartbeat is older
// than importStale: their process stopped. What they committed stays (whole
// chunks); importing the same file again skips it and imports the rest.
func (s *Service) FailAbandonedImports(ctx context.Context) (int64, error) {
	now := ts(s.now())
	var n int64
	err := s.store.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&importRow{}).Where("status = ? AND heartbeat_at < ?", ImportRunning, now.Add(-importStale)).
			Updates(map[string]any{"status": ImportFailed, "finished_at": now,
				"error": "the engine stopped during the import; import the same file again: rows already imported are skipped"})
		n = res.RowsAffected
		return res.Error
	})
	if err != nil {
		return 0, fmt.Errorf("fail abandoned imports: %w", err)
	}
	return n, nil
}

// SetImportTotal records how many rows the file is expected to hold, for
// progress, before the import reads it.
func (s *Service) SetImportTotal(ctx context.Context, id string, rows int64) error {
	return s.store.write(ctx, func(tx *gorm.DB) error {
		return tx.Model(&importRow{}).Where("id = ? AND status = ?", id, ImportRunning).Update("rows_total", rows).Error
	})
}

// TouchImport moves a running import's heartbeat, for a process busy with
// it between chunks (receiving its file, posting a chunk with earn).
func (s *Service) TouchImport(ctx context.Context, id string) error {
	now := ts(s.now())
	return s.store.write(ctx, func(tx *gorm.DB) error {
		return tx.Model(&importRow{}).Where("id = ? AND status = ?", id, ImportRunning).Update("heartbeat_at", now).Error
	})
}

// FailImport ends a running import as failed with message, as when its
// file could not be received.
func (s *Service) FailImport(ctx context.Context, id, message string) error {
	now := ts(s.now())
	return s.store.write(ctx, func(tx *gorm.DB) error {
		return tx.Model(&importRow{}).Where("id = ? AND status = ?", id, ImportRunning).
			Updates(map[string]any{"status": ImportFailed, "finished_at": now, "error": message}).Error
	})
}

// GetImport returns an import's record.
func (s *Service) GetImport(ctx context.Context, id string) (Import, error) {
	var r importRow
	if err := s.store.read(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return Import{}, Errorf(NotFound, "not_found", "no import has id %q", id)
		}
		return Import{}, fmt.Errorf("get import: %w", err)
	}
	if r.Status == ImportRunning && r.HeartbeatAt.Before(ts(s.now()).Add(-importStale)) {
		// Its process stopped: say so now rather than at the next start.
		if _, err := s.FailAbandonedImports(ctx); err != nil {
			return Import{}, err
		}
		return s.GetImport(ctx, id)
	}
	return r.view(), nil
}

// WriteImportErrors writes the rows an import refused as CSV: line, error,
// then the file's own columns with the row's fields as they were read.
func (s *Service) WriteImportErrors(ctx context.Context, id string, w io.Writer) error {
	var r importRow
	if err := s.store.read(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return Errorf(NotFound, "not_found", "no import has id %q", id)
		}
		return fmt.Errorf("import errors: %w", err)
	}
	cw := csv.NewWriter(w)
	head := []string{"line", "error"}
	var cols []string
	if r.Columns != "" {
		cols = strings.Split(r.Columns, ",")
		head = append(head, cols...)
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	rows, err := s.store.read(ctx).Raw(`SELECT line, message, record FROM import_errors WHERE import_id = ? ORDER BY line`, id).Rows()
	if err != nil {
		return fmt.Errorf("import errors: %w", err)
	}
	defer rows.Close()
	out := make([]string, 0, len(head))
	for rows.Next() {
		var line int64
		var msg, rec string
		if err := rows.Scan(&line, &msg, &rec); err != nil {
			return fmt.Errorf("import errors: %w", err)
		}
		out = append(out[:0], strconv.FormatInt(line, 10), msg)
		var fields []string
		if rec != "" {
			fields, _ = csv.NewReader(strings.NewReader(rec)).Read()
		}
		for i := range cols {
			f := ""
			if i < len(fields) {
				f = fields[i]
			}
			out = append(out, f)
		}
		if err := cw.Write(out); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return rows.Err()
}

// RunImport reads the CSV file of the running import id from r and imports
// it, chunk by chunk, then ends the import: succeeded when the file was
// read to its end (rows may have failed: they are in its errors), failed
// with a message when the header is wrong or the file cannot be read. The
// error is for the database failing; the import is then failed too, when
// that can still be recorded.
func (s *Service) RunImport(ctx context.Context, id string, r io.Reader) (Import, error) {
	var row importRow
	if err := s.store.read(ctx).Where("id = ?", id).Take(&row).Error; err != nil {
		return Import{}, fmt.Errorf("run import: %w", err)
	}
	if row.Status != ImportRunning {
		return row.view(), Errorf(Conflict, "import_ended", "import %s has ended", id)
	}
	prog, err := s.Program(ctx)
	if err != nil {
		return Import{}, fmt.Errorf("run import: %w", err)
	}
	im := &importer{s: s, row: row, prog: prog, seed: maphash.MakeSeed(), shared: newImportShared()}
	msg, err := im.run(ctx, r)
	if err != nil {
		_ = s.FailImport(context.WithoutCancel(ctx), id, "the import stopped: the database failed; import the same file again to finish it")
		return Import{}, fmt.Errorf("run import: %w", err)
	}
	if err := im.finish(ctx, msg); err != nil {
		return Import{}, fmt.Errorf("run import: %w", err)
	}
	return s.GetImport(ctx, id)
}

// importer is one run of an import.
type importer struct {
	s    *Service
	row  importRow
	prog *Program
	// cols maps the file's columns to their index in a record.
	cols  map[string]int
	ncols int
	seed  maphash.Seed
	seen  keySet
	// The chunk gathering: valid rows, refused rows.
	members   []memberLine
	purchases []purchaseLine
	failed    []importError
	// What earnPurchases posted of the chunk, added to the row's counts
	// when the chunk's counters commit.
	created, skipped int64
	shared           *importShared
	// lockTail takes the chunk's end (flush).
	lockTail func()
	// seq is the number of the chunk being written, from 1.
	seq int64
}

// importShared is what the writers of one import share.
type importShared struct {
	mu sync.Mutex
	// errorsKept is the error rows stored, or taken by a chunk being
	// written, so far.
	errorsKept int64
	// tail is held from a chunk's locks on shared rows to its commit.
	tail sync.Mutex
	// Chunks enrol their unknown members in file order (waitTurn,
	// passTurn): a member of two chunks written at once is enrolled by
	// the earlier, as one writer would, at its first purchase there.
	turn     sync.Cond
	turnMu   sync.Mutex
	enrolled int64          // every chunk up to this one has enrolled
	early    map[int64]bool // chunks past it that have
	// directSkip is how many more chunks go through the stage rather
	// than straight into purchases (copyNew).
	directSkip atomic.Int64
}

// importBeforeEnrol, when a test sets it, runs as a chunk comes to enrol
// its members, to delay one chunk behind the next.
var importBeforeEnrol func(seq int64)

func newImportShared() *importShared {
	sh := &importShared{early: map[int64]bool{}}
	sh.turn.L = &sh.turnMu
	return sh
}

// waitTurn waits until every chunk before seq has enrolled its members.
func (sh *importShared) waitTurn(seq int64) {
	sh.turnMu.Lock()
	for sh.enrolled < seq-1 {
		sh.turn.Wait()
	}
	sh.turnMu.Unlock()
}

// passTurn records that chunk seq has enrolled its members (or will not:
// it was skipped), letting the next chunk enrol. Passing twice is harmless.
func (sh *importShared) passTurn(seq int64) {
	sh.turnMu.Lock()
	defer sh.turnMu.Unlock()
	if seq <= sh.enrolled {
		return
	}
	sh.early[seq] = true
	for sh.early[sh.enrolled+1] {
		delete(sh.early, sh.enrolled+1)
		sh.enrolled++
	}
	sh.turn.Broadcast()
}

// keepErrors takes room for up to n error rows of a chunk, within
// importErrorsKept for the import; a chunk whose write fails gives its
// room back (giveBack).
func (sh *importShared) keepErrors(n int) int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	k := min(int64(n), max(0, importErrorsKept-sh.errorsKept))
	sh.errorsKept += k
	return int(k)
}

func (sh *importShared) giveBack(n int) {
	sh.mu.Lock()
	sh.errorsKept -= int64(n)
	sh.mu.Unlock()
}

type importError struct {
	line   int64
	msg    string
	record string
}

type memberLine struct {
	line       int64
	in         MemberInput
	enrolledAt time.Time
	opening    int64
	fields     []string
}

type purchaseLine struct {
	line                                            int64
	member, ext, store, channel, currency, category string
	at                                              time.Time
	total                                           int64
	fields                                          []string
}

// run reads the file; it returns the message of an import that fails as
// a whole (a wrong header, an unreadable file), or "".
func (im *importer) run(ctx context.Context, r io.Reader) (string, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "the file is empty: it needs a header row", nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return "the header row cannot be read: " + pe.Err.Error(), nil
		}
		return "the file cannot be read: " + err.Error(), nil
	}
	if msg := im.header(header); msg != "" {
		return msg, nil
	}
	if err := im.s.store.write(ctx, func(tx *gorm.DB) error {
		return tx.Model(&importRow{}).Where("id = ?", im.row.ID).Update("columns", im.row.Columns).Error
	}); err != nil {
		return "", err
	}
	// The file is read and checked a chunk ahead of the writes: one
	// goroutine reads the next chunk while the writers write the last.
	rd := &importer{s: im.s, row: im.row, prog: im.prog, cols: im.cols, ncols: im.ncols, seed: im.seed}
	// Every return below comes after the writers have drained chunks,
	// which the reader closes when it is done with its key set.
	defer rd.seen.release()
	chunks := make(chan chunk, 1)
	stop := make(chan struct{})
	var msg string
	go func() {
		defer close(chunks)
		msg = rd.read(cr, chunks, stop)
	}()
	var (
		wg       sync.WaitGroup
		failOnce sync.Once
		werr     error
	)
	for range im.writers() {
		w := &importer{s: im.s, row: im.row, prog: im.prog, shared: im.shared}
		wg.Go(func() {
			for c := range chunks {
				select {
				case <-stop:
					im.shared.passTurn(c.seq)
					continue // a writer failed: the rest are read to no end
				default:
				}
				w.members, w.purchases, w.failed, w.seq = c.members, c.purchases, c.failed, c.seq
				err := w.flush(ctx)
				im.shared.passTurn(c.seq)
				if err != nil {
					failOnce.Do(func() { werr = err; close(stop) })
					continue
				}
				// On SQLite the chunk's pages are checkpointed before the
				// next chunk writes: chunks committed back to back would
				// otherwise never leave the WAL wholly copied when a write
				// begins, the only moment it starts over, and it would grow
				// with the file (8 GB at 2.5 million rows, and its index
				// mapped into memory).
				if c := im.s.store.ckpt; c != nil {
					c.checkpoint()
				}
			}
		})
	}
	wg.Wait()
	if werr != nil {
		return "", werr
	}
	return msg, nil
}

// writers is how many chunks of the import are written at once. History
// on PostgreSQL goes by COPY and INSERT … SELECT, each chunk's work done by
// one server process: two chunks on two connections keep two cores busy
// (one process was the bound, at 70–90% of a core, with the engine at a
// quarter of one). Chunks commit in any order: a re-import, not a resume
// point, finishes a stopped import, the counters are added by each commit,
// and the end of a chunk, where it locks rows other chunks share (the
// members' balance rows, the import's row), is taken one writer at a time
// (importShared.tail) so that two chunks never wait for each other in a
// cycle. Everything else, SQLite's one writer, members, and purchases
// replayed through the earning rules in file order, is written one chunk
// after another.
func (im *importer) writers() int {
	if im.s.store.Dialect == Postgres && im.row.Kind == ImportPurchases && !im.row.Earn && !im.row.DryRun {
		return 2
	}
	return 1
}

// chunk is the rows of one chunk, as read.
type chunk struct {
	seq       int64 // its number in the file, from 1
	members   []memberLine
	purchases []purchaseLine
	failed    []importError
}

// read reads the records after the header and sends them in chunks of
// importChunk rows, until the file ends or stop closes; it returns the
// message of a file that could not be read to its end, or "".
func (im *importer) read(cr *csv.Reader, chunks chan<- chunk, stop <-chan struct{}) string {
	var seq int64
	send := func() bool {
		seq++
		c := chunk{seq: seq, members: im.members, purchases: im.purchases, failed: im.failed}
		im.members, im.purchases, im.failed = nil, nil, nil
		select {
		case chunks <- c:
			return true
		case <-stop:
			return false
		}
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		var pe *csv.ParseError
		switch {
		case err == nil:
			im.record(int64(line), rec)
		case errors.As(err, &pe) && errors.Is(err, csv.ErrFieldCount):
			msg := fmt.Sprintf("has %d fields where the header has %d", len(rec), im.ncols)
			if len(rec) < im.ncols {
				msg += ": the line is cut short"
			}
			im.fail(int64(pe.StartLine), msg, rec)
		case errors.As(err, &pe):
			im.fail(int64(pe.StartLine), "cannot be read as CSV: "+pe.Err.Error(), nil)
		default:
			send()
			return "the file could not be read to its end: " + err.Error()
		}
		if err := im.seen.err; err != nil {
			send()
			return "the file's keys could not be kept for the check of keys repeated in it: " + err.Error()
		}
		if len(im.members)+len(im.purchases)+len(im.failed) >= importChunk && !send() {
			return ""
		}
	}
	send()
	return ""
}

// header checks the header row and maps its columns.
func (im *importer) header(h []string) string {
	known, required := memberImportColumns, memberImportRequired
	if im.row.Kind == ImportPurchases {
		known, required = purchaseImportColumns, purchaseImportRequire
	}
	im.cols, im.ncols = map[string]int{}, len(h)
	names := make([]string, len(h))
	for i, c := range h {
		if i == 0 {
			c = strings.TrimPrefix(c, "\ufeff")
		}
		c = strings.ToLower(strings.TrimSpace(c))
		if !utf8.ValidString(c) {
			return "the header row is not UTF-8 text"
		}
		if !slices.Contains(known, c) {
			return fmt.Sprintf("wrong header: unknown column %q; the columns of a %s file are %s", c, im.row.Kind, strings.Join(known, ", "))
		}
		if _, dup := im.cols[c]; dup {
			return fmt.Sprintf("wrong header: column %q is named twice", c)
		}
		im.cols[c], names[i] = i, c
	}
	for _, c := range required {
		if _, ok := im.cols[c]; !ok {
			return fmt.Sprintf("wrong header: column %q is missing; a %s file needs %s", c, im.row.Kind, strings.Join(required, ", "))
		}
	}
	im.row.Columns = strings.Join(names, ",")
	return ""
}

func (im *importer) field(rec []string, col string) string {
	if i, ok := im.cols[col]; ok && i < len(rec) {
		return strings.TrimSpace(rec[i])
	}
	return ""
}

// record validates one record and adds it to the chunk, valid or not.
func (im *importer) record(line int64, rec []string) {
	for i, f := range rec {
		if !utf8.ValidString(f) {
			col := ""
			if i < im.ncols {
				col = strings.Split(im.row.Columns, ",")[i]
			}
			im.fail(line, fmt.Sprintf("%s: is not UTF-8 text", col), rec)
			return
		}
	}
	if im.row.Kind == ImportMembers {
		im.memberRecord(line, rec)
	} else {
		im.purchaseRecord(line, rec)
	}
}

// seenBefore reports whether key was seen earlier in the file, and
// remembers it.
func (im *importer) seenBefore(key string) bool {
	return im.seen.add(maphash.String(im.seed, key))
}

func (im *importer) memberRecord(line int64, rec []string) {
	now := ts(im.s.now())
	opt := func(col string) *string {
		if v := im.field(rec, col); v != "" {
			return &v
		}
		return nil
	}
	m := memberLine{line: line, enrolledAt: now, fields: slices.Clone(rec)}
	m.in = MemberInput{ExternalID: opt("external_id"), Email: opt("email"), Phone: opt("phone"), FirstName: opt("first_name"),
		LastName: opt("last_name"), Birthday: opt("birthday"), Timezone: opt("timezone")}
	var v Validation
	if m.in.ExternalID == nil {
		v.Add("external_id", "is required")
	}
	if err := m.in.normalize(now); err != nil {
		var e *Error
		if errors.As(err, &e) {
			v.fields = append(v.fields, e.Fields...)
		}
	}
	if s := im.field(rec, "enrolled_at"); s != "" {
		t, err := parseImportTime(s, im.prog.Location())
		switch {
		case err != nil:
			v.Add("enrolled_at", "must be an RFC 3339 time or a date YYYY-MM-DD, not %q", s)
		case t.After(now.Add(ClockSkew)):
			v.Add("enrolled_at", "must not be in the future")
		default:
			m.enrolledAt = t
		}
	}
	if s := im.field(rec, "opening_points"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || n > MaxTotal {
			v.Add("opening_points", "must be a whole number of points from 0 to %d, not %q", MaxTotal, s)
		}
		m.opening = n
	}
	if err := v.Err(); err != nil {
		im.fail(line, err.(*Error).Message, rec)
		return
	}
	if im.seenBefore(*m.in.ExternalID) {
		im.fail(line, fmt.Sprintf("external_id: %q is on an earlier line of this file", *m.in.ExternalID), rec)
		return
	}
	im.members = append(im.members, m)
}

func (im *importer) purchaseRecord(line int64, rec []string) {
	now := ts(im.s.now())
	p := purchaseLine{line: line, member: im.field(rec, "member_external_id"), ext: im.field(rec, "external_id"),
		store: im.field(rec, "store_id"), channel: im.field(rec, "channel"), currency: im.field(rec, "currency"),
		category: im.field(rec, "category"), fields: slices.Clone(rec)}
	var v Validation
	if !extIDExpr.MatchString(p.member) {
		v.Add("member_external_id", "is required: 1 to 255 printable ASCII characters without spaces")
	}
	if !tokenExpr.MatchString(p.ext) {
		v.Add("external_id", "is required: 1 to 255 printable ASCII characters without spaces")
	}
	if p.store != "" && !tokenExpr.MatchString(p.store) {
		v.Add("store_id", "must be 1 to 255 printable ASCII characters without spaces")
	}
	if p.channel == "" {
		p.channel = "import"
	} else if !channelExpr.MatchString(p.channel) {
		v.Add("channel", "must be 1 to 32 lowercase letters, digits, _ or -")
	}
	if len(p.category) > 255 {
		v.Add("category", "at most 255 characters")
	}
	s := im.field(rec, "occurred_at")
	t, err := parseImportTime(s, im.prog.Location())
	switch {
	case err != nil:
		v.Add("occurred_at", "must be an RFC 3339 time or a date YYYY-MM-DD, not %q", s)
	case t.After(now.Add(ClockSkew)):
		v.Add("occurred_at", "must not be in the future")
	case t.Year() < 1970:
		v.Add("occurred_at", "must be after 1970")
	default:
		p.at = t
	}
	s = im.field(rec, "total")
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil:
		v.Add("total", "must be a whole amount in minor units (1050 = 10.50), not %q", s)
	case n <= 0:
		v.Add("total", "must be above 0")
	case n > MaxTotal:
		v.Add("total", "must be at most %d", MaxTotal)
	default:
		p.total = n
	}
	if p.currency == "" {
		p.currency = im.prog.Currency
	} else if p.currency != im.prog.Currency {
		v.Add("currency", "%q is not the program currency %s", p.currency, im.prog.Currency)
	}
	if err := v.Err(); err != nil {
		im.fail(line, err.(*Error).Message, rec)
		return
	}
	if im.seenBefore(p.store + "\x00" + p.ext) {
		im.fail(line, fmt.Sprintf("external_id: %q of store %q is on an earlier line of this file", p.ext, p.store), rec)
		return
	}
	im.purchases = append(im.purchases, p)
}

// parseImportTime reads an RFC 3339 time, or a date as midnight in loc.
func parseImportTime(s string, loc *time.Location) (time.Time, error) {
	if len(s) == len(time.DateOnly) {
		t, err := time.ParseInLocation(time.DateOnly, s, loc)
		return ts(t), err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return ts(t), err
}

// fail adds a refused row of the chunk; rec may be nil when the record
// could not be read.
func (im *importer) fail(line int64, msg string, rec []string) {
	e := importError{line: line, msg: msg}
	if rec != nil {
		var b bytes.Buffer
		cw := csv.NewWriter(&b)
		_ = cw.Write(rec)
		cw.Flush()
		e.record = strings.ToValidUTF8(strings.TrimRight(b.String(), "\r\n"), "\ufffd")
	}
	im.failed = append(im.failed, e)
}

// flush writes the chunk gathered and moves the counters. Purchases
// posted with earn=true go one transaction each through §8; everything
// else of a chunk is one transaction.
func (im *importer) flush(ctx context.Context) error {
	if len(im.members)+len(im.purchases)+len(im.failed) == 0 {
		return nil
	}
	if im.row.Kind == ImportPurchases && im.row.Earn && !im.row.DryRun && len(im.purchases) > 0 {
		if err := im.earnPurchases(ctx); err != nil {
			return err
		}
	}
	// Purchases as history on PostgreSQL go by COPY, which needs the
	// transaction's own connection.
	bulk := im.s.store.bulk
	copyRows := copyFunc(nil)
	if im.s.store.Dialect == Postgres && im.row.Kind == ImportPurchases && !im.row.Earn && !im.row.DryRun {
		bulk = func(ctx context.Context, fn func(tx *gorm.DB) error) error {
			return im.s.store.bulkCopy(ctx, func(tx *gorm.DB, cp copyFunc) error {
				copyRows = cp
				return fn(tx)
			})
		}
	}
	// The chunk's end, from its locks on rows other chunks share to its
	// commit, is taken one writer at a time (writers); a retried
	// transaction keeps it.
	held := false
	im.lockTail = func() {
		if !held {
			im.shared.tail.Lock()
			held = true
		}
	}
	defer func() {
		if held {
			im.shared.tail.Unlock()
		}
	}()
	room, kept := -1, 0
	err := bulk(ctx, func(tx *gorm.DB) error {
		now := ts(im.s.now())
		var created, skipped int64
		var failed []importError
		var err error
		switch {
		case im.row.Kind == ImportMembers:
			created, skipped, failed, err = im.writeMembers(tx, now)
		case im.row.Earn && !im.row.DryRun:
			// posted above, the counts moved there.
		case copyRows != nil:
			created, skipped, err = im.copyPurchases(tx, copyRows, now)
		default:
			created, skipped, err = im.writePurchases(tx, now)
		}
		if err != nil {
			return err
		}
		im.lockTail()
		failed = append(failed, im.failed...)
		if room < 0 {
			room = im.shared.keepErrors(len(failed))
		}
		if kept, err = im.writeErrors(tx, failed, room); err != nil {
			return err
		}
		// Column-only updates: the writers of one import add to its
		// counters in whatever order their chunks commit.
		done := int64(len(im.members) + len(im.purchases) + len(im.failed))
		return tx.Model(&importRow{}).Where("id = ?", im.row.ID).Updates(map[string]any{
			"rows_done":    gorm.Expr("rows_done + ?", done),
			"rows_created": gorm.Expr("rows_created + ?", created+im.created),
			"rows_skipped": gorm.Expr("rows_skipped + ?", skipped+im.skipped),
			"rows_failed":  gorm.Expr("rows_failed + ?", len(failed)),
			"rows_total":   gorm.Expr("CASE WHEN rows_total < rows_done + ? THEN rows_done + ? ELSE rows_total END", done, done),
			"heartbeat_at": now}).Error
	})
	if err != nil {
		kept = 0 // nothing of the chunk was stored
	}
	if room > kept {
		im.shared.giveBack(room - kept)
	}
	if err != nil {
		return err
	}
	im.members, im.purchases, im.failed = im.members[:0], im.purchases[:0], im.failed[:0]
	im.created, im.skipped = 0, 0
	return nil
}

// writeErrors stores the first room of the refused rows (room is the
// chunk's share of importErrorsKept) and returns how many it stored.
func (im *importer) writeErrors(tx *gorm.DB, failed []importError, room int) (int, error) {
	if room <= 0 || len(failed) == 0 {
		return 0, nil
	}
	slices.SortFunc(failed, func(a, b importError) int { return int(a.line - b.line) })
	failed = failed[:min(len(failed), room)]
	rows := make([][]any, len(failed))
	for i, f := range failed {
		rows[i] = []any{im.row.ID, f.line, f.msg, f.record}
	}
	return len(rows), insertValues(tx, "INSERT INTO import_errors (import_id, line, message, record)", rows, " ON CONFLICT DO NOTHING", nil)
}

// finish ends the import: failed with msg, or succeeded.
func (im *importer) finish(ctx context.Context, msg string) error {
	now := ts(im.s.now())
	set := map[string]any{"status": ImportSucceeded, "finished_at": now, "heartbeat_at": now,
		"rows_total": gorm.Expr("rows_done")}
	if msg != "" {
		set["status"], set["error"] = ImportFailed, msg
		delete(set, "rows_total")
	}
	return im.s.store.write(ctx, func(tx *gorm.DB) error {
		return tx.Model(&importRow{}).Where("id = ?", im.row.ID).Updates(set).Error
	})
}

// writeMembers enrols the chunk's members that do not exist yet, with
// their balance rows, member.created events and opening balances.
func (im *importer) writeMembers(tx *gorm.DB, now time.Time) (created, skipped int64, failed []importError, err error) {
	if len(im.members) == 0 {
		return 0, 0, nil, nil
	}
	ext := make([]string, len(im.members))
	for i, m := range im.members {
		ext[i] = *m.in.ExternalID
	}
	if im.row.DryRun {
		exists, err := existing(tx, "SELECT external_id FROM members WHERE", "external_id", ext)
		if err != nil {
			return 0, 0, nil, err
		}
		return int64(len(ext) - len(exists)), int64(len(exists)), nil, nil
	}
	_, ladder, err := loadTiers(tx)
	if err != nil {
		return 0, 0, nil, err
	}
	var tier *string
	if entry, ok := ladder.Entry(); ok {
		tier = &entry.Code
	}
	rows := make([][]any, len(im.members))
	byExt := make(map[string]memberRow, len(im.members))
	for i, m := range im.members {
		r := memberRow{ID: newID(), ExternalID: m.in.ExternalID, Email: m.in.Email, Phone: m.in.Phone, FirstName: m.in.FirstName,
			LastName: m.in.LastName, Birthday: m.in.Birthday, Timezone: m.in.Timezone, Status: StatusActive,
			EnrolledAt: m.enrolledAt, UpdatedAt: now}
		if tier != nil {
			r.TierCode, r.TierSince = tier, &now
		}
		byExt[*r.ExternalID] = r
		rows[i] = []any{r.ID, r.ExternalID, r.Email, r.Phone, r.FirstName, r.LastName, r.Birthday, r.Timezone, r.Status,
			r.TierCode, r.TierSince, r.EnrolledAt, r.UpdatedAt}
	}
	inserted := map[string]bool{}
	if err := insertValues(tx, `INSERT INTO members (id, external_id, email, phone, first_name, last_name, birthday, timezone, status,
		tier_code, tier_since, enrolled_at, updated_at)`, rows, " ON CONFLICT DO NOTHING RETURNING external_id", func(r *sql.Rows) error {
		var e string
		if err := r.Scan(&e); err != nil {
			return err
		}
		inserted[e] = true
		return nil
	}); err != nil {
		return 0, 0, nil, err
	}
	var rest []string
	for _, e := range ext {
		if !inserted[e] {
			rest = append(rest, e)
		}
	}
	exists, err := existing(tx, "SELECT external_id FROM members WHERE", "external_id", rest)
	if err != nil {
		return 0, 0, nil, err
	}
	ids := make([]string, 0, len(inserted))
	evs := make([]newEvent, 0, len(inserted))
	var credits []OpeningCredit
	for _, m := range im.members {
		e := *m.in.ExternalID
		switch {
		case inserted[e]:
			r := byExt[e]
			ids = append(ids, r.ID)
			ev, err := eventOf(EventMemberCreated, &r.ID, now, memberFromRow(r))
			if err != nil {
				return 0, 0, nil, err
			}
			evs = append(evs, ev)
			if m.opening > 0 {
				credits = append(credits, OpeningCredit{MemberID: r.ID, Points: m.opening, Description: "opening balance imported"})
			}
		case exists[e]:
			skipped++
		default:
			failed = append(failed, importError{line: m.line, msg: "email or phone: already used by another member",
				record: csvLine(m.fields)})
		}
	}
	if err := openBalances(tx, ids, now); err != nil {
		return 0, 0, nil, err
	}
	if err := appendImportEvents(tx, evs); err != nil {
		return 0, 0, nil, err
	}
	if err := creditOpenings(tx, im.prog, now, credits); err != nil {
		return 0, 0, nil, err
	}
	return int64(len(ids)), skipped, failed, nil
}

// enrolUnknown enrols, set-based, the members of the chunk's purchases
// that are not known yet, each enrolled at its earliest purchase of the
// chunk, and returns the member id of every member_external_id. The known
// ones are read first: most chunks of a file enrol no one.
func (im *importer) enrolUnknown(tx *gorm.DB, now time.Time) (map[string]string, error) {
	first := map[string]time.Time{}
	for _, p := range im.purchases {
		if t, ok := first[p.member]; !ok || p.at.Before(t) {
			first[p.member] = p.at
		}
	}
	ext := make([]string, 0, len(first))
	for e := range first {
		ext = append(ext, e)
	}
	slices.Sort(ext)
	out := make(map[string]string, len(ext))
	if importBeforeEnrol != nil {
		importBeforeEnrol(im.seq)
	}
	im.shared.waitTurn(im.seq)
	if err := memberIDs(tx, ext, out); err != nil {
		return nil, err
	}
	ext = slices.DeleteFunc(ext, func(e string) bool { _, ok := out[e]; return ok })
	if len(ext) == 0 {
		im.shared.passTurn(im.seq)
		return out, nil
	}
	_, ladder, err := loadTiers(tx)
	if err != nil {
		return nil, err
	}
	var tier *string
	var since *time.Time
	if entry, ok := ladder.Entry(); ok {
		tier, since = &entry.Code, &now
	}
	rows := make([][]any, len(ext))
	byExt := make(map[string]memberRow, len(ext))
	for i, e := range ext {
		r := memberRow{ID: newID(), ExternalID: &e, Status: StatusActive, TierCode: tier, TierSince: since, EnrolledAt: first[e], UpdatedAt: now}
		byExt[e] = r
		rows[i] = []any{r.ID, e, r.Status, r.TierCode, r.TierSince, r.EnrolledAt, r.UpdatedAt}
	}
	var ids []string
	var evs []newEvent
	if err := insertValues(tx, "INSERT INTO members (id, external_id, status, tier_code, tier_since, enrolled_at, updated_at)",
		rows, " ON CONFLICT DO NOTHING RETURNING external_id", func(r *sql.Rows) error {
			var e string
			if err := r.Scan(&e); err != nil {
				return err
			}
			m := byExt[e]
			ids = append(ids, m.ID)
			out[e] = m.ID
			ev, err := eventOf(EventMemberCreated, &m.ID, now, memberFromRow(m))
			evs = append(evs, ev)
			return err
		}); err != nil {
		return nil, err
	}
	// The members are inserted: a later chunk that has any of them waits
	// on their rows for this chunk's commit.
	im.shared.passTurn(im.seq)
	if err := openBalances(tx, ids, now); err != nil {
		return nil, err
	}
	if err := appendImportEvents(tx, evs); err != nil {
		return nil, err
	}
	// Those another writer enrolled meanwhile.
	ext = slices.DeleteFunc(ext, func(e string) bool { _, ok := out[e]; return ok })
	if err := memberIDs(tx, ext, out); err != nil {
		return nil, err
	}
	return out, nil
}

// memberIDs adds to out the member id of each of ext that is known.
func memberIDs(tx *gorm.DB, ext []string, out map[string]string) error {
	for part := range slices.Chunk(ext, maxImportParams) {
		var found []struct {
			ID         string
			ExternalID string
		}
		cond, arg := anyOf(tx, "external_id", part)
		if err := tx.Raw("SELECT id, external_id FROM members WHERE "+cond, arg).Scan(&found).Error; err != nil {
			return err
		}
		for _, f := range found {
			out[f.ExternalID] = f.ID
		}
	}
	return nil
}

// purchaseRows is a row of values for each of the chunk's purchases, each
// under a new id: id, member_id, store_id, external_id, channel,
// occurred_at, local_date, local_day, currency and total, then extra; and
// the purchases' indexes by id. members maps the chunk's member keys to
// ids (enrolUnknown).
func (im *importer) purchaseRows(members map[string]string, extra ...any) (rows [][]any, byID map[string]int) {
	loc := im.prog.Location()
	rows = make([][]any, len(im.purchases))
	byID = make(map[string]int, len(im.purchases))
	for i, p := range im.purchases {
		id := newID()
		byID[id] = i
		rows[i] = append([]any{id, members[p.member], p.store, p.ext, p.channel, p.at, p.at.In(loc).Format(time.DateOnly),
			int32(LocalDay(p.at, loc)), p.currency, p.total}, extra...)
	}
	return rows, byID
}

// writePurchases writes the chunk's purchases as history: enrols unknown
// members, inserts the purchases that do not exist (by (store_id,
// external_id)) with their items, emits purchase.created, and brings the
// members' balance rows along (historyChanged).
func (im *importer) writePurchases(tx *gorm.DB, now time.Time) (created, skipped int64, err error) {
	if len(im.purchases) == 0 {
		return 0, 0, nil
	}
	if im.row.DryRun {
		n, err := im.existingPurchases(tx)
		return int64(len(im.purchases)) - n, n, err
	}
	members, err := im.enrolUnknown(tx, now)
	if err != nil {
		return 0, 0, err
	}
	rows, byID := im.purchaseRows(members, 0, 0, 0, now)
	var ids []string
	if err := insertValues(tx, `INSERT INTO purchases (id, member_id, store_id, external_id, channel, occurred_at, local_date, local_day,
		currency, total, returned_amount, points_earned, points_reversed, created_at)`, rows,
		" ON CONFLICT (store_id, external_id) DO NOTHING RETURNING id", func(r *sql.Rows) error {
			var id string
			if err := r.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
			return nil
		}); err != nil {
		return 0, 0, err
	}
	items, evs, err := im.createdRows(ids, rows, byID, now)
	if err != nil {
		return 0, 0, err
	}
	if err := insertValues(tx, "INSERT INTO purchase_items (purchase_id, line, sku, category, quantity, unit_price, amount)", items, "", nil); err != nil {
		return 0, 0, err
	}
	if err := appendImportEvents(tx, evs); err != nil {
		return 0, 0, err
	}
	im.lockTail()
	if err := historyChanged(tx, ids, now); err != nil {
		return 0, 0, err
	}
	return int64(len(ids)), int64(len(im.purchases) - len(ids)), nil
}

// createdRows is, for the purchases of the chunk that ids says were
// created (rows and byID from purchaseRows), the rows of their items
// (purchase_id, line, sku, category, quantity, unit_price, amount: the
// import's one line of the row's category, if any) and their
// purchase.created events.
func (im *importer) createdRows(ids []string, rows [][]any, byID map[string]int, now time.Time) (items [][]any, evs []newEvent, err error) {
	evs = make([]newEvent, 0, len(ids))
	for _, id := range ids {
		i := byID[id]
		p, r := im.purchases[i], rows[i]
		view := Purchase{ID: id, MemberID: r[1].(string), ExternalID: &p.ext, StoreID: p.store, Channel: p.channel, OccurredAt: p.at,
			LocalDate: r[6].(string), Currency: p.currency, Total: p.total, Items: []Item{}, Returns: []Return{}}
		if p.category != "" {
			items = append(items, []any{id, int32(1), "import", p.category, int64(1), p.total, p.total})
			view.Items = append(view.Items, Item{SKU: "import", Category: p.category, Quantity: 1, UnitPrice: p.total, Amount: p.total})
		}
		m := view.MemberID
		ev, err := eventOf(EventPurchaseCreated, &m, now, view)
		if err != nil {
			return nil, nil, err
		}
		evs = append(evs, ev)
	}
	return items, evs, nil
}

// existingPurchases counts the chunk's purchases already stored.
func (im *importer) existingPurchases(tx *gorm.DB) (int64, error) {
	exts := make([]string, len(im.purchases))
	for i, p := range im.purchases {
		exts[i] = p.ext
	}
	var n int64
	for part := range slices.Chunk(im.purchases, maxImportParams) {
		exts = exts[:0]
		for _, p := range part {
			exts = append(exts, p.ext)
		}
		var found []struct{ StoreID, ExternalID string }
		cond, arg := anyOf(tx, "external_id", exts)
		if err := tx.Raw("SELECT store_id, external_id FROM purchases WHERE "+cond, arg).Scan(&found).Error; err != nil {
			return 0, err
		}
		have := make(map[string]bool, len(found))
		for _, f := range found {
			have[f.StoreID+"\x00"+f.ExternalID] = true
		}
		for _, p := range part {
			if have[p.store+"\x00"+p.ext] {
				n++
			}
		}
	}
	return n, nil
}

// earnPurchases posts the chunk's purchases through §8, in occurred_at
// order, each in its own transaction (PostPurchase): unknown members are
// enrolled first, purchases already stored are skipped, a purchase §8
// refuses is a failed row.
func (im *importer) earnPurchases(ctx context.Context) error {
	var members map[string]string
	var have map[string]bool
	err := im.s.store.bulk(ctx, func(tx *gorm.DB) error {
		var err error
		if members, err = im.enrolUnknown(tx, ts(im.s.now())); err != nil {
			return err
		}
		have = map[string]bool{}
		for part := range slices.Chunk(im.purchases, maxImportParams) {
			exts := make([]string, len(part))
			for i, p := range part {
				exts[i] = p.ext
			}
			var found []struct{ StoreID, ExternalID string }
			cond, arg := anyOf(tx, "external_id", exts)
			if err := tx.Raw("SELECT store_id, external_id FROM purchases WHERE "+cond, arg).Scan(&found).Error; err != nil {
				return err
			}
			for _, f := range found {
				have[f.StoreID+"\x00"+f.ExternalID] = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	ps := slices.Clone(im.purchases)
	slices.SortStableFunc(ps, func(a, b purchaseLine) int { return a.at.Compare(b.at) })
	admin := Principal{Subject: "import:" + im.row.ID, Role: RoleAdmin}
	for i, p := range ps {
		if i > 0 && i%500 == 0 {
			if err := im.s.TouchImport(ctx, im.row.ID); err != nil {
				return err
			}
		}
		if have[p.store+"\x00"+p.ext] {
			im.skipped++
			continue
		}
		total := p.total
		in := PurchaseInput{MemberID: members[p.member], ExternalID: p.ext, StoreID: p.store, Channel: p.channel,
			OccurredAt: p.at.Format(time.RFC3339Nano), Currency: p.currency, Total: &total}
		if p.category != "" {
			in.Items = []PurchaseItem{{SKU: "import", Category: p.category, Amount: &total}}
		}
		_, rep, err := im.s.PostPurchase(ctx, admin, in, IdempotencyKey{})
		var e *Error
		switch {
		case err == nil && rep != nil:
			im.skipped++
		case err == nil:
			im.created++
		case errors.As(err, &e) && e.Code != Internal && e.Code != Unavailable:
			im.failed = append(im.failed, importError{line: p.line, msg: e.Message, record: csvLine(p.fields)})
		default:
			return err
		}
	}
	return nil
}

// existing returns which of vals the query (a SELECT of col ending in
// WHERE) finds with col among them.
func existing(tx *gorm.DB, query, col string, vals []string) (map[string]bool, error) {
	out := map[string]bool{}
	for part := range slices.Chunk(vals, maxImportParams) {
		var found []string
		cond, arg := anyOf(tx, col, part)
		if err := tx.Raw(query+" "+cond, arg).Scan(&found).Error; err != nil {
			return nil, err
		}
		for _, f := range found {
			out[f] = true
		}
	}
	return out, nil
}

func csvLine(fields []string) string {
	var b bytes.Buffer
	cw := csv.NewWriter(&b)
	_ = cw.Write(fields)
	cw.Flush()
	return strings.ToValidUTF8(strings.TrimRight(b.String(), "\r\n"), "\ufffd")
}

// insertValues runs head VALUES (…), … suffix over rows, as many rows to a
// statement as maxImportParams allows; scan, when given, reads each row a
// RETURNING suffix returns. On PostgreSQL the rows go as one array a
// column, unnested: a statement of a few parameters however many rows,
// rather than one of tens of thousands to parse and plan.
func insertValues(tx *gorm.DB, head string, rows [][]any, suffix string, scan func(*sql.Rows) error) error {
	if len(rows) == 0 {
		return nil
	}
	if tx.Dialector.Name() == Postgres {
		return insertUnnest(tx, head, rows, suffix, scan)
	}
	ncols := len(rows[0])
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?,", ncols), ",") + ")"
	for part := range slices.Chunk(rows, max(1, maxImportParams/ncols)) {
		var q strings.Builder
		q.Grow(len(head) + len(suffix) + len(part)*(len(tuple)+1) + 8)
		q.WriteString(head)
		q.WriteString(" VALUES ")
		args := make([]any, 0, len(part)*ncols)
		for i, r := range part {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString(tuple)
			args = append(args, r...)
		}
		q.WriteString(suffix)
		if scan == nil {
			if err := tx.Exec(q.String(), args...).Error; err != nil {
				return err
			}
			continue
		}
		rs, err := tx.Raw(q.String(), args...).Rows()
		if err != nil {
			return err
		}
		if err := scanAll(rs, scan); err != nil {
			return err
		}
	}
	return nil
}

// ScanEach runs the query q with args in db and calls scan on each of its
// rows, which scans the row's columns itself: the driver's scan, without
// GORM's into a slice of structs by reflection (a set-based job's reads of
// hundreds of thousands of rows).
func ScanEach(db *gorm.DB, scan func(*sql.Rows) error, q string, args ...any) error {
	rs, err := db.Raw(q, args...).Rows()
	if err != nil {
		return err
	}
	return scanAll(rs, scan)
}

// scanAll calls scan on each row of rs, then closes it.
func scanAll(rs *sql.Rows, scan func(*sql.Rows) error) error {
	for rs.Next() {
		if err := scan(rs); err != nil {
			rs.Close()
			return err
		}
	}
	if err := rs.Close(); err != nil {
		return err
	}
	return rs.Err()
}

// pgColumnTypes are the types of the columns insertUnnest fills that are
// not text.
var pgColumnTypes = map[string]string{
	"occurred_at": "timestamptz", "available_at": "timestamptz", "expires_at": "timestamptz", "created_at": "timestamptz",
	"updated_at": "timestamptz", "enrolled_at": "timestamptz", "tier_since": "timestamptz",
	"local_day": "integer", "line": "bigint", "total": "bigint", "returned_amount": "bigint", "points_earned": "bigint",
	"points_reversed": "bigint", "points": "bigint", "remaining": "bigint", "quantity": "bigint", "unit_price": "bigint",
	"amount": "bigint",
}

// insertUnnest is insertValues on PostgreSQL: each column a text array,
// cast to the column's type.
func insertUnnest(tx *gorm.DB, head string, rows [][]any, suffix string, scan func(*sql.Rows) error) error {
	open, close := strings.IndexByte(head, '('), strings.LastIndexByte(head, ')')
	cols := strings.Split(head[open+1:close], ",")
	if len(cols) != len(rows[0]) {
		return fmt.Errorf("insert: %d columns, %d values", len(cols), len(rows[0]))
	}
	var sel, from strings.Builder
	args := make([]any, len(cols))
	for i, c := range cols {
		c = strings.TrimSpace(c)
		if i > 0 {
			sel.WriteString(", ")
			from.WriteString(", ")
		}
		fmt.Fprintf(&from, "$%d::text[]", i+1)
		fmt.Fprintf(&sel, "c%d", i)
		if t, ok := pgColumnTypes[c]; ok {
			sel.WriteString("::" + t)
		}
		vals := make([]*string, len(rows))
		for j, r := range rows {
			vals[j] = pgText(r[i])
		}
		args[i] = vals
	}
	names := make([]string, len(cols))
	for i := range cols {
		names[i] = fmt.Sprintf("c%d", i)
	}
	q := head + " SELECT " + sel.String() + " FROM unnest(" + from.String() + ") AS u(" + strings.Join(names, ", ") + ")" + suffix
	ctx := tx.Statement.Context
	translate := func(err error) error {
		if t, ok := tx.Dialector.(gorm.ErrorTranslator); ok {
			return t.Translate(err)
		}
		return err
	}
	if scan == nil {
		_, err := tx.Statement.ConnPool.ExecContext(ctx, q, args...)
		return translate(err)
	}
	rs, err := tx.Statement.ConnPool.QueryContext(ctx, q, args...)
	if err != nil {
		return translate(err)
	}
	return scanAll(rs, scan)
}

// pgText is a value as PostgreSQL's text input reads it; nil for NULL.
func pgText(v any) *string {
	var s string
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		s = x
	case *string:
		return x
	case int:
		s = strconv.Itoa(x)
	case int64:
		s = strconv.FormatInt(x, 10)
	case bool:
		s = strconv.FormatBool(x)
	case time.Time:
		s = x.UTC().Format(time.RFC3339Nano)
	case *time.Time:
		if x == nil {
			return nil
		}
		s = x.UTC().Format(time.RFC3339Nano)
	default:
		s = fmt.Sprint(x)
	}
	return &s
}

// pgTextArray is a PostgreSQL text[] parameter, which GORM passes as one
// value (it would expand a slice into a list of parameters).
//
// pgx encodes it as an array itself (pgtype.ArrayGetter), in the binary
// format, element by element. Through Value alone it wrote the array's
// text form, then parsed that back rune by rune to encode it: 13 ms of
// the engine's CPU for the two 5,000-element arrays of an import chunk.
type pgTextArray []string

// Dimensions, Index and IndexType make the array a pgtype.ArrayGetter.
func (a pgTextArray) Dimensions() []pgtype.ArrayDimension {
	return []pgtype.ArrayDimension{{Length: int32(len(a)), LowerBound: 1}}
}

func (a pgTextArray) Index(i int) any { return a[i] }

func (a pgTextArray) IndexType() any { return "" }

// Value is the array's text form, for drivers other than pgx.
func (a pgTextArray) Value() (driver.Value, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range a {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for _, r := range v {
			if r == '"' || r == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}

// anyOf is the condition that col is one of vals, and its argument: on
// PostgreSQL one array parameter, on SQLite an IN list.
func anyOf(tx *gorm.DB, col string, vals []string) (string, any) {
	if tx.Dialector.Name() == Postgres {
		return col + " = ANY(?::text[])", pgTextArray(vals)
	}
	return col + " IN ?", vals
}

// appendImportEvents appends evs: on PostgreSQL in one unnested insert, on
// SQLite through appendEvents.
func appendImportEvents(tx *gorm.DB, evs []newEvent) error {
	if len(evs) == 0 {
		return nil
	}
	if tx.Dialector.Name() != Postgres {
		return appendEvents(tx, evs...)
	}
	rows := make([][]any, len(evs))
	for i, e := range evs {
		rows[i] = []any{e.typ, e.member, ts(e.at), string(e.data)}
	}
	if err := insertValues(tx, "INSERT INTO events (type, member_id, occurred_at, data)", rows, "", nil); err != nil {
		return fmt.Errorf("append events: %w", err)
	}
	afterCommit(tx, hubOf(tx).committed)
	return nil
}
