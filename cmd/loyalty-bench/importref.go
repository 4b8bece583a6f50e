package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// The import reference bounds what an import of purchases as history can
// reach on PostgreSQL: the database work of the engine's import, on the
// engine's schema (its migrations), without the engine. Its rows are those
// of the import phase's file, made in memory before it starts (no file, no
// CSV, no checks of a row, no key set); its members exist before it starts (the engine
// enrols them in its first chunks); and it writes what an engine chunk
// writes, as the engine writes it, on two connections as the engine's two
// writers:
//
//   - COPY of the chunk's 5,000 purchases into a temporary table, and one
//     INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING id into purchases
//     (the engine's path for a chunk that finds purchases stored already;
//     a chunk of new purchases is copied straight into purchases);
//   - COPY of their lines (one for each row with a category) and of their
//     purchase.created events (the purchase's JSON, as the API returns it);
//   - one at a time, as the engine's tail: the members' balance rows moved
//     past the chunk (unnest of the members and their latest purchase), and
//     the commit;
//
// while a third connection runs the engine's sequencer statement
// (loyalty.PGSequenceSQL) every 100 ms, or at once after a full pass, and
// vacuums event_queue every 50,000 ids, as the engine does. That is the
// staged mode; the direct mode writes less than any import may: COPY
// straight into purchases, purchase_items and events, as the engine's
// chunk of new purchases, but with no savepoint and no balance rows, the
// sequencer still positioning the events.

// refChunk is the rows of one chunk of the reference.
type refChunk struct {
	purchases [][]any // loyalty.PurchaseCopyColumns
	items     [][]any
	events    [][]any
	member    map[string]time.Time // the latest purchase of each member
}

const refChunkRows = 5000

// importRef runs the reference in mode (staged or direct) on a database of
// its own, with the rows of the import phase, and reports its rows/s beside
// the engine's.
func (b *bench) importRef(ctx context.Context, pg *pgAdmin, label, mode string) error {
	opt := b.opt
	direct := mode == "direct"
	name := fmt.Sprintf("loyalty_bench_%d_ref_%s", os.Getpid(), mode)
	if err := pg.create(ctx, name); err != nil {
		return err
	}
	defer func() {
		if opt.keep {
			b.logf("kept database %s", name)
			return
		}
		c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := pg.drop(c, name); err != nil {
			b.logf("%v", err)
		}
	}()
	dbURL := pg.urlFor(name)
	st, err := loyalty.Open(ctx, dbURL)
	if err != nil {
		return err
	}
	err = st.Migrate(ctx)
	st.Close()
	if err != nil {
		return fmt.Errorf("import reference: migrate: %w", err)
	}
	conns := make([]*pgx.Conn, 3)
	for i := range conns {
		if conns[i], err = pgx.Connect(ctx, dbURL); err != nil {
			return err
		}
		defer conns[i].Close(context.Background())
	}
	// The members, as the engine enrols them: an id, the file's key, a
	// balance row.
	ids := make([]string, opt.importMembers)
	keys := make([]string, opt.importMembers)
	for i := range ids {
		ids[i], keys[i] = loyalty.NewID(), "M"+strconv.Itoa(i)
	}
	now := time.Now().UTC()
	if _, err := conns[0].Exec(ctx, `INSERT INTO members (id, external_id, status, enrolled_at, updated_at)
		SELECT id, ext, 'active', $3, $3 FROM unnest($1::text[], $2::text[]) AS m (id, ext)`, ids, keys, now); err != nil {
		return fmt.Errorf("import reference: members: %w", err)
	}
	if _, err := conns[0].Exec(ctx, `INSERT INTO member_balances (member_id, points, debt, lifetime_earned, lifetime_redeemed,
		version, updated_at, as_of) SELECT id, 0, 0, 0, 0, 1, $1, $1 FROM members`, now); err != nil {
		return fmt.Errorf("import reference: balances: %w", err)
	}
	if _, err := conns[0].Exec(ctx, "VACUUM ANALYZE"); err != nil {
		return err
	}

	// The rows are all made before the clock starts, so that making them
	// takes none of the database's cores.
	var all []refChunk
	made := make(chan refChunk)
	go func() {
		defer close(made)
		refRows(ctx, opt.importRows, opt.importMembers, ids, time.Now().Add(-time.Hour), made)
	}()
	for c := range made {
		all = append(all, c)
	}
	b.logf("%s: import reference (%s): %d purchase rows of %d members without the engine", label, mode, opt.importRows, opt.importMembers)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	chunks := make(chan refChunk)
	go func() {
		defer close(chunks)
		for i, c := range all {
			select {
			case chunks <- c:
				all[i] = refChunk{}
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		tail    sync.Mutex
		done    atomic.Int64
		wg      sync.WaitGroup
		seqDone = make(chan struct{})
	)
	go func() {
		defer close(seqDone)
		if err := refSequencer(ctx, conns[2]); err != nil && ctx.Err() == nil {
			cancel(err)
		}
	}()
	t0 := time.Now()
	for _, conn := range conns[:2] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range chunks {
				if err := refWrite(ctx, conn, c, &tail, now, direct); err != nil {
					cancel(err)
					return
				}
				done.Add(int64(len(c.purchases)))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("import reference: %w", err)
	}
	cancel(nil)
	<-seqDone
	rate := float64(done.Load()) / elapsed.Seconds()
	b.logf("%s: import reference (%s): %d rows in %s: %.0f rows/s", label, mode, done.Load(), elapsed.Round(time.Millisecond), rate)
	b.rep.notes = append(b.rep.notes, fmt.Sprintf("Import reference on %s, %s (the database work of the import without the engine, "+
		"importref.go): %d purchase rows in %s: **%.0f rows/s**.", label, mode, done.Load(), elapsed.Round(time.Millisecond), rate))
	return nil
}

// refRows sends the import phase's rows (synthCSV's), in chunks.
func refRows(ctx context.Context, n, members int, ids []string, end time.Time, out chan<- refChunk) {
	span := int64(2 * 365 * 24 * time.Hour / time.Second)
	start := end.Add(-2 * 365 * 24 * time.Hour)
	cats := []string{"skincare", "makeup", "fragrance", "hair", ""}
	now := time.Now().UTC()
	c := refChunk{member: map[string]time.Time{}}
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(span*int64(i)/int64(n)) * time.Second).UTC().Truncate(time.Second)
		member, ext, store := ids[(i*7919)%members], "R"+strconv.Itoa(i), "store-"+strconv.Itoa(i%8)
		total, cat := int64(500+(i*37)%20000), cats[i%len(cats)]
		id := loyalty.NewID()
		date := at.Format(time.DateOnly)
		c.purchases = append(c.purchases, []any{id, member, store, ext, "import", at, date, int32(at.Unix() / 86400), "USD", total,
			int64(0), int64(0), int64(0), now})
		view := loyalty.Purchase{ID: id, MemberID: member, ExternalID: &ext, StoreID: store, Channel: "import", OccurredAt: at,
			LocalDate: date, Currency: "USD", Total: total, Items: []loyalty.Item{}, Returns: []loyalty.Return{}}
		if cat != "" {
			c.items = append(c.items, []any{id, int32(1), "import", cat, int64(1), total, total})
			view.Items = append(view.Items, loyalty.Item{SKU: "import", Category: cat, Quantity: 1, UnitPrice: total, Amount: total})
		}
		data, err := json.Marshal(view)
		if err != nil {
			panic(err)
		}
		c.events = append(c.events, []any{loyalty.EventPurchaseCreated, member, now, string(data)})
		if t, ok := c.member[member]; !ok || at.After(t) {
			c.member[member] = at
		}
		if len(c.purchases) == refChunkRows || i == n-1 {
			select {
			case out <- c:
			case <-ctx.Done():
				return
			}
			c = refChunk{member: map[string]time.Time{}}
		}
	}
}

// refWrite writes one chunk as an engine chunk does, or, direct, by COPY
// alone into the three tables.
func refWrite(ctx context.Context, conn *pgx.Conn, c refChunk, tail *sync.Mutex, now time.Time, direct bool) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if direct {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"purchases"}, loyalty.PurchaseCopyColumns, pgx.CopyFromRows(c.purchases)); err != nil {
			return err
		}
		if err := refCopyRest(ctx, tx, c); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	if _, err := tx.Exec(ctx, loyalty.ImportStageSQL); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"import_purchases"}, loyalty.PurchaseCopyColumns, pgx.CopyFromRows(c.purchases)); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, loyalty.ImportUnstageSQL)
	if err != nil {
		return err
	}
	created, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	if len(created) != len(c.purchases) {
		return errors.New("a purchase of the reference existed")
	}
	if err := refCopyRest(ctx, tx, c); err != nil {
		return err
	}
	members, ats := make([]string, 0, len(c.member)), make([]time.Time, 0, len(c.member))
	for m, at := range c.member {
		members, ats = append(members, m), append(ats, at)
	}
	tail.Lock()
	defer tail.Unlock()
	if _, err := tx.Exec(ctx, `UPDATE member_balances SET version = member_balances.version + 1, updated_at = $1,
			next_change_at = member_balances.as_of,
			last_activity_at = CASE WHEN member_balances.last_activity_at IS NULL OR member_balances.last_activity_at < x.at
				THEN x.at ELSE member_balances.last_activity_at END
		FROM unnest($2::text[], $3::timestamptz[]) AS x (member_id, at)
		WHERE member_balances.member_id = x.member_id`, now, members, ats); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// refCopyRest copies the chunk's lines and events.
func refCopyRest(ctx context.Context, tx pgx.Tx, c refChunk) error {
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"purchase_items"}, []string{"purchase_id", "line", "sku", "category", "quantity",
		"unit_price", "amount"}, pgx.CopyFromRows(c.items)); err != nil {
		return err
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"type", "member_id", "occurred_at", "data"}, pgx.CopyFromRows(c.events))
	return err
}

// refSequencer is the engine's sequencer on conn until ctx ends.
func refSequencer(ctx context.Context, conn *pgx.Conn) error {
	taken := 0
	for ctx.Err() == nil {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		var n, head int64
		if _, err = tx.Exec(ctx, "SELECT pg_advisory_xact_lock(1)"); err == nil {
			err = tx.QueryRow(ctx, loyalty.PGSequenceSQL).Scan(&n, &head)
		}
		if err == nil {
			err = tx.Commit(ctx)
		}
		if err != nil {
			_ = tx.Rollback(context.Background())
			return err
		}
		if taken += int(n); taken >= 50000 {
			if _, err := conn.Exec(ctx, "VACUUM (SKIP_LOCKED) event_queue"); err != nil {
				return err
			}
			taken = 0
		}
		if n < 10000 {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}
