package loyalty

import (
	"context"
	"fmt"
	"sync"
	"time"

	"gorm.io/gorm"
)

// An expiry run's batches (see expiryBatch), counted in members: the first
// takes the lapsed lots of expiryBatchMembers members, and each next one
// twice as many members while a batch takes less than half of
// expiryBatchTime, half as many once one takes longer, between
// expiryBatchMembers/4 and expiryBatchMax. A batch holds the locks of its
// members' balances until it commits, so a till buying for one of them
// waits for at most about expiryBatchTime, and bigger batches spread a
// batch's round trips and commit over more lots. (At 100 ms a batch
// locked up to 2,000 members; on a base of 100,000, 2% of them at a
// time.) (Variables for tests of runs over many batches.)
var (
	expiryBatchMembers = 250
	expiryBatchMax     = 2000
	expiryBatchTime    = 20 * time.Millisecond
)

// nextExpiryLimit is the members the next batch takes after a batch of
// limit members ran for took.
func nextExpiryLimit(limit int, took time.Duration) int {
	switch {
	case took < expiryBatchTime/2:
		return min(2*limit, max(expiryBatchMax, expiryBatchMembers))
	case took > expiryBatchTime:
		return max(limit/2, expiryBatchMembers/4, 1)
	}
	return limit
}

// ExpirySummary counts what an expiry run wrote.
type ExpirySummary struct {
	Policy  string `json:"policy"`
	Lots    int64  `json:"lots"`
	Members int64  `json:"members"`
	Points  Sum    `json:"points"`
}

// ExpirePoints writes one expire entry for the remainder of every lot
// whose points lapsed by asOf: the lots past their own expires_at and,
// under the inactivity policy, every lot of a member with no earn or redeem
// in the last expiry_days. Each entry is the one the ledger listing has
// shown since the lot lapsed (account.lapsedEntry): its id is derived from
// the lot, it is dated when the lot lapsed (its expires_at, or the
// inactivity deadline if that came first) and it takes what is left of the
// lot. It is a handful of set-based statements a batch, the batches taken
// from the index of open lots by expires_at (on PostgreSQL expiryWorkers of
// them at once), so a daily run costs the day's expiries, not the table.
// A lot's remainder drops to zero in the transaction of its batch, so a
// second run for the same asOf (or two runs racing) expires nothing twice.
// Lapsed lots were already left out of available points before this runs;
// the run makes the ledger store what it showed. A past asOf expires what
// had lapsed by then (a prefix of what a later run expires); a future one
// is refused.
func (s *Service) ExpirePoints(ctx context.Context, asOf time.Time) (ExpirySummary, error) {
	var sum ExpirySummary
	asOf, err := s.AsOf(asOf)
	if err != nil {
		return sum, err
	}
	run := expiryRun{sum: &sum, members: map[string]struct{}{}}
	var cursor expiryCursor
	for {
		// The pick, by index and without locks, in a snapshot of its own
		// taken once the batches of the pick before have committed.
		err = s.store.snapshot(ctx, func(db *gorm.DB) error {
			cfg, err := loadSettings(db)
			if err != nil {
				return err
			}
			sum.Policy = cfg.prog.ExpiryPolicy
			run.queue, err = pickLapsed(db, cfg.prog, asOf, &cursor)
			return err
		})
		if err != nil || len(run.queue) == 0 {
			break
		}
		if err = s.expireQueue(ctx, asOf, &run); err != nil || cursor.exhausted {
			break
		}
	}
	if err != nil {
		return sum, fmt.Errorf("expire points: %w", err)
	}
	return sum, nil
}

// expiryWorkers is how many batches of an expiry run PostgreSQL runs at
// once, each in a transaction of its own over members of its own (SQLite
// has one writer, so there it is one). One batch at a time leaves the
// server idle while the engine reads a batch's rows, builds its events and
// waits for its commit, and the engine idle while the server works: at a
// million members on two cores, alternated days of about 20,700 lots, one
// took 356-530 µs a lot, two side by side 264-346 µs, four 297-314 µs.
// Beside tills, though, each batch more takes a core from them: on such
// days the tills' p99 beside one batch at a time was 0.8-1.9 times what
// it was just before, beside two 1.1-4.0 times, and four reached 3.0. So
// the workers after the first take a batch only while no write for a
// caller has begun in this process for expiryServingQuiet (NoteServing):
// a run in a quiet night has every worker, one beside the tills has one.
// (Variables for tests.)
var (
	expiryWorkers      = 2
	expiryServingQuiet = time.Second
	// expiryBatchBegins, when set, is called as a batch begins, and what
	// it returns as the batch ends.
	expiryBatchBegins func() (ends func())
)

// expiryRun is a run's queue of picked members that no batch has taken
// yet, in member order, and what it has expired so far, shared by its
// workers.
type expiryRun struct {
	mu      sync.Mutex
	queue   []string
	sum     *ExpirySummary
	members map[string]struct{}
}

// next takes the queue's next limit members (none once it is empty).
func (r *expiryRun) next(limit int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(limit, len(r.queue))
	batch := r.queue[:n:n]
	r.queue = r.queue[n:]
	return batch
}

// empty reports whether every member of the queue has been taken.
func (r *expiryRun) empty() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue) == 0
}

// add counts one committed batch's lots, points and members.
func (r *expiryRun) add(lots int64, points Sum, members []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sum.Lots += lots
	for _, id := range members {
		r.members[id] = struct{}{}
	}
	r.sum.Members = int64(len(r.members))
	r.sum.Points = r.sum.Points.Add(points)
}

// expireQueue expires the lapsed lots of the members in run's queue, a
// batch a transaction, each committed on its own: the balances a batch
// locks are held for one batch, not the whole run, and a run that stops
// part way leaves closed lots that the next run skips. Workers take
// the queue's next members a batch at a time, each sizing its own batches
// (nextExpiryLimit); their batches hold disjoint members, so they neither
// wait for nor conflict with each other, and those after the first give
// way while the tills are busy (expiryServingQuiet). The first error stops
// them all.
func (s *Service) expireQueue(ctx context.Context, asOf time.Time, run *expiryRun) error {
	workers := 1
	if s.store.Dialect == Postgres {
		workers = max(expiryWorkers, 1)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := func(worker int) error {
		limit := expiryBatchMembers
		for ctx.Err() == nil {
			if worker > 0 && s.store.busyServing(expiryServingQuiet) {
				// The tills are busy: leave them this core while the
				// first worker goes on, and look again a batch later.
				if run.empty() {
					return nil
				}
				select {
				case <-ctx.Done():
				case <-time.After(expiryBatchTime):
				}
				continue
			}
			batch := run.next(limit)
			if len(batch) == 0 {
				return nil
			}
			var lots int64
			var ids []string
			var points Sum
			began := time.Now()
			ends := func() {}
			if expiryBatchBegins != nil {
				ends = expiryBatchBegins()
			}
			err := s.store.writeSerial(ctx, func(tx *gorm.DB) error {
				cfg, err := loadSettings(tx)
				if err != nil {
					return err
				}
				lots, ids, points, err = bulkExpire(tx, cfg.prog, cfg.ladder, asOf, ts(s.now()), batch)
				return err
			})
			ends()
			if err != nil {
				return err
			}
			run.add(lots, points, ids)
			limit = nextExpiryLimit(limit, time.Since(began))
		}
		return nil
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			if err := work(w); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// TierReviewSummary counts what a tier review changed.
type TierReviewSummary struct {
	Downgraded int64 `json:"downgraded"`
	// Judged counts the members below their tier's threshold that the
	// review locked and judged (the others were passed over by index).
	Judged int64 `json:"judged"`
	// BroughtForward reports a run that looked only at the members whose
	// tier could have become movable since the last run (tierTouchedSQL),
	// not at every member above the lowest tier.
	BroughtForward bool `json:"brought_forward"`
}

// ReviewTiers moves down every member whose tier is no longer protected
// (tier_window_days after it was reached; for calendar years, the end of
// the year after) to the highest tier its qualifying spend at asOf
// justifies. Upgrades are not its business: they happen at purchase time.
// Candidates are found by index and judged a chunk a transaction; running
// it twice changes nothing more.
//
// A future asOf is refused. A past one reviews the members unprotected at
// asOf on their spend up to asOf, as a review run then would have; but as
// a purchase since then would have lifted such a member back, none is moved
// below the tier its spend justifies now, and a member whose tier changed
// after asOf is left alone (its tier_since is after the cutoff).
func (s *Service) ReviewTiers(ctx context.Context, asOf time.Time) (TierReviewSummary, error) {
	var sum TierReviewSummary
	asOf, err := s.AsOf(asOf)
	if err != nil {
		return sum, err
	}
	now := ts(s.now())
	// The candidates, by the index on (tier_code, tier_since): the active
	// members above the lowest tier whose tier is no longer protected. A
	// member at the lowest tier has nowhere to go down to, so the spend of
	// most members is never summed. A run for the present under the
	// settings of the last such run, for the same as-of or a later one,
	// looks only at the members tierTouchedSQL finds: the others were
	// passed over then and still would be.
	var ids []string
	var next *tierRun
	err = s.store.snapshot(ctx, func(db *gorm.DB) error {
		next, sum.BroughtForward = nil, false
		// On one core, as the job's writes are (bulkSettle).
		if err := OneCore(db); err != nil {
			return err
		}
		cfg, err := loadSettings(db)
		if err != nil {
			return err
		}
		period := cfg.prog.Period()
		cutoff := period.ReviewCutoff(asOf)
		touched, touchedArgs := "", []any(nil)
		// A run for a past as-of judges on the spend now too (see
		// reviewTiers), so it neither starts from nor leaves a mark.
		if now.Sub(asOf) <= ClockSkew {
			next = &tierRun{AsOf: asOf, ConfigVersion: cfg.version}
			prev, ok, err := lastTierRun(db)
			if err != nil {
				return err
			}
			if ok && !asOf.Before(prev.AsOf) && prev.ConfigVersion == cfg.version {
				sql, args := tierTouchedSQL(period, prev, asOf)
				touched, touchedArgs = ` AND m.id IN (`+sql+`)`, args
				sum.BroughtForward = true
			}
		}
		// A member whose balance row keeps its qualifying spend at asOf
		// (kept under the current qualifying period, period_version, as
		// of asOf or before, with no change due by asOf: a row kept
		// under other settings measured the spend as now, and its next
		// change comes no later than the spend's) and keeps it at or
		// above its tier's threshold is not due, and is left out without
		// summing its purchases. Of the others, those whose spend at asOf, summed from their
		// purchases by index (purchases_member_cover carries the columns),
		// still reaches the threshold are not due either: a purchase that
		// left the period or a lot that changed state moved their kept
		// row's next change, not their tier. Only the members below their
		// tier's threshold are judged and locked below, so a night's review
		// costs an index probe for each member whose kept row is due, and
		// the work of a move for each member that can move.
		spend := s.store.QualifyingSpendSQL("m.id")
		args := append([]any{ts(cutoff), ts(asOf), ts(asOf)}, touchedArgs...)
		args = append(args, QualifyingSpendArgs(period, asOf)...)
		return db.Raw(`SELECT m.id FROM members m JOIN tiers t ON t.code = m.tier_code
			JOIN member_balances b ON b.member_id = m.id
			WHERE m.status = 'active' AND m.tier_since <= ? AND t.rank > (SELECT MIN(rank) FROM tiers)
			AND NOT (b.config_version >= (SELECT period_version FROM program WHERE id = 1) AND b.as_of <= ?
				AND (b.next_change_at IS NULL OR b.next_change_at > ?) AND b.qualifying_spend >= t.qualifying_spend)`+touched+`
			AND `+spend+` < t.qualifying_spend
			ORDER BY m.id`, args...).Scan(&ids).Error
	})
	if err != nil {
		return sum, fmt.Errorf("review tiers: %w", err)
	}
	sum.Judged = int64(len(ids))
	// Then tierReviewChunk candidates a transaction, so the rows a chunk
	// locks are held for one chunk: a till waits for one at most.
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), tierReviewChunk)]
		ids = ids[len(chunk):]
		var n int64
		err = s.store.writeLockingJob(ctx, func(tx *gorm.DB) error {
			var err error
			n, err = s.reviewTiers(tx, asOf, now, chunk)
			return err
		})
		if err != nil {
			return sum, fmt.Errorf("review tiers: %w", err)
		}
		sum.Downgraded += n
	}
	// Every candidate judged: the next run may start from here.
	if next != nil {
		if err := s.store.write(ctx, func(tx *gorm.DB) error { return saveTierRun(tx, *next) }); err != nil {
			return sum, fmt.Errorf("review tiers: %w", err)
		}
	}
	return sum, nil
}

// tierReviewChunk is the most candidates one transaction of a tier review
// judges: a till buying for one of them waits for the chunk's
// transaction, so a chunk is kept small.
const tierReviewChunk = 50

// reviewTiers moves down those of the members ids that are due (see
// ReviewTiers) and returns how many it moved.
func (s *Service) reviewTiers(tx *gorm.DB, asOf, now time.Time, ids []string) (int64, error) {
	prog, err := loadProgram(tx)
	if err != nil {
		return 0, err
	}
	period := prog.Period()
	// A tier reached at or before cutoff is no longer protected at asOf.
	cutoff := period.ReviewCutoff(asOf)
	// The rule is tiers.Ladder.Review: the tier the highest of the
	// qualifying spends justifies, when it is lower than the tier held.
	spend := s.store.QualifyingSpendSQL("members.id")
	cond, spendArgs := `t.qualifying_spend <= `+spend, QualifyingSpendArgs(period, asOf)
	// A scheduled run is as of its minute, seconds ago: only an as_of
	// further back than a clock's skew is judged on today's spend too,
	// which costs a second sum.
	if now.Sub(asOf) > ClockSkew {
		cond += ` OR t.qualifying_spend <= ` + spend
		spendArgs = append(spendArgs, QualifyingSpendArgs(period, now)...)
	}
	justified := `(SELECT t.code FROM tiers t WHERE ` + cond + ` ORDER BY t.rank DESC LIMIT 1)`
	due := `id IN ? AND status = 'active' AND tier_code IS NOT NULL AND tier_since <= ?
		AND (SELECT rank FROM tiers WHERE code = members.tier_code) >
			(SELECT rank FROM tiers WHERE code = ` + justified + `)`
	dueArgs := append([]any{ids, ts(cutoff)}, spendArgs...)
	// The candidates' balances are locked first, in the order a purchase
	// locks a balance before its member, so that no purchase of theirs is
	// under way while their spend is summed below.
	if err := lockBalances(tx, `SELECT id FROM members WHERE id IN @ids`, map[string]any{"ids": ids}); err != nil {
		return 0, err
	}
	// The moves, the spend summed once: one statement over the members
	// due, whose rows it locks (on PostgreSQL; SQLite's writer is alone).
	var moves []struct {
		ID   string
		From *string
		To   *string
	}
	lock := ""
	if tx.Dialector.Name() == Postgres {
		lock = " FOR NO KEY UPDATE"
	}
	if err := tx.Raw(`SELECT id, tier_code AS "from", `+justified+` AS "to" FROM members WHERE `+due+` ORDER BY id`+lock,
		append(append([]any{}, spendArgs...), dueArgs...)...).Scan(&moves).Error; err != nil {
		return 0, err
	}
	// The members judged and left where they are keep their state as of
	// now (its qualifying spend, and when it next changes): the next
	// review's candidates leave them out until their spend can drop, so a
	// night's review judges the members whose tier can change, not every
	// member above the lowest tier.
	goes := make(map[string]bool, len(moves))
	for _, m := range moves {
		goes[m.ID] = true
	}
	stay := make([]string, 0, len(ids))
	for _, id := range ids {
		if !goes[id] {
			stay = append(stay, id)
		}
	}
	if err := keepQuietly(tx, prog, stay, now); err != nil {
		return 0, err
	}
	if len(moves) == 0 {
		return 0, nil
	}
	moved := make([]string, len(moves))
	byTier := map[string][]string{}
	evs := make([]newEvent, 0, len(moves))
	for i, m := range moves {
		moved[i] = m.ID
		byTier[*m.To] = append(byTier[*m.To], m.ID)
		evs = append(evs, tierEvent(m.ID, m.From, m.To, now))
	}
	// The balance shows the tier: its version moves with the downgrade,
	// so a client's ETag of the balance before it no longer matches.
	if err := touchBalances(tx, `id IN ?`, moved); err != nil {
		return 0, err
	}
	for to, ms := range byTier {
		if err := tx.Exec(`UPDATE members SET tier_code = ?, tier_since = ?, updated_at = ? WHERE id IN ?`,
			to, asOf, now, ms).Error; err != nil {
			return 0, err
		}
	}
	for len(evs) > 0 {
		n := min(len(evs), eventChunk)
		if err := appendEvents(tx, evs[:n]...); err != nil {
			return 0, err
		}
		evs = evs[n:]
	}
	// Their balances show the new tier.
	return int64(len(moves)), balanceEvents(tx, prog, moved, now)
}
