package jobs_test

import (
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// TestJobsSummarizeRanges: on PostgreSQL every BRIN index asks autovacuum
// to summarize its ranges as they fill, and a job run leaves none of them
// with a page range unsummarized, which any search through the index would
// read whole (migration 00019, Store.SummarizeRanges). The purchases are
// written straight in, enough to span several ranges.
func TestJobsSummarizeRanges(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		if dialect != loyalty.Postgres {
			t.Skip("BRIN indexes are PostgreSQL's")
		}
		now := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, now)
		member := e.enrol("")
		db := e.store.DB()
		var options []struct {
			Name       string
			Reloptions *string
		}
		if err := db.Raw(`SELECT c.relname AS name, array_to_string(c.reloptions, ',') AS reloptions FROM pg_class c JOIN pg_am am ON am.oid = c.relam
			WHERE am.amname = 'brin' AND c.relnamespace = to_regnamespace(current_schema()) ORDER BY 1`).Scan(&options).Error; err != nil {
			t.Fatal(err)
		}
		if len(options) < 5 {
			t.Fatalf("%d BRIN indexes: %+v", len(options), options)
		}
		for _, o := range options {
			if o.Reloptions == nil || *o.Reloptions != "autosummarize=on" {
				t.Errorf("%s: options %v, want autosummarize=on", o.Name, o.Reloptions)
			}
		}
		// About 5,000 such rows fill a 128-page range: 30,000 span six.
		if err := db.Exec(`INSERT INTO purchases (id, member_id, store_id, external_id, channel, occurred_at, local_date, local_day,
				currency, total, returned_amount, points_earned, points_reversed, created_at)
			SELECT 'brin-' || g, ?, 'store-brin', 'R-' || g, 'pos', ?::timestamptz - g * interval '1 minute', '2026-03-01', 20513,
				'USD', 1000, 0, 0, 0, ?::timestamptz - g * interval '1 minute'
			FROM generate_series(1, 30000) g`, member, now, now).Error; err != nil {
			t.Fatal(err)
		}
		unsummarized := func() int64 {
			var n int64
			if err := db.Raw(`SELECT brin_summarize_new_values('purchases_created_brin'::regclass)`).Scan(&n).Error; err != nil {
				t.Fatal(err)
			}
			return n
		}
		e.run(t, "redemption-rate", now)
		if n := unsummarized(); n != 0 {
			t.Errorf("after a job, %d ranges of purchases_created_brin were left unsummarized", n)
		}
	})
}

// TestJobsRunBesideAVacuum: a job does not wait for the lock a VACUUM holds
// on a table (here taken by hand, as VACUUM takes it) to summarize ranges
// first; it runs, and the ranges are left to autovacuum. Were it to wait,
// the lock below would be released only after the run, and the test would
// hang.
func TestJobsRunBesideAVacuum(t *testing.T) {
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		if dialect != loyalty.Postgres {
			t.Skip("BRIN indexes are PostgreSQL's")
		}
		now := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
		e := newEnv(t, dialect, now)
		e.buy(e.enrol(""), 5000)
		vacuum := e.store.DB().Begin()
		if err := vacuum.Exec(`LOCK TABLE purchases IN SHARE UPDATE EXCLUSIVE MODE`).Error; err != nil {
			t.Fatal(err)
		}
		defer vacuum.Rollback()
		e.run(t, "redemption-rate", now)
	})
}
