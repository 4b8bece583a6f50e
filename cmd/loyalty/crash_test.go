package main

import (
	"testing"
)

// TestCrashLosesNothing SIGKILLs `loyalty serve` several times while
// workers post purchases, redemptions and returns with Idempotency-Key and
// retry every request that got no answer, with the same key and body, once
// the engine is back on the same database. Afterwards every acknowledged
// write exists exactly once, every repeat replays the first answer,
// nothing is half-written, and every member's ledger sums to its balance
// and to what the answers reported.
func TestCrashLosesNothing(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		crashTest(t, sqliteURL(t))
	})
	t.Run("postgres", func(t *testing.T) {
		base := postgresBase(t)
		crashTest(t, createDatabase(t, base, "loyalty_crash"))
	})
}

func crashTest(t *testing.T, dbURL string) {
	kills, requests, members, workers := 3, 300, 12, 6
	if fullRun() {
		kills, requests, members, workers = 12, 3000, 40, 12
	}
	e := newEngine(t, dbURL)
	e.start()
	w := newWorkload(t, e)
	w.setup(members)

	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(workers, requests, nil)
	}()
	killed := killDuring(e, w, kills, requests, done)
	<-done
	if killed < kills {
		t.Fatalf("the load ended after %d of %d kills", killed, kills)
	}
	t.Logf("SIGKILLed the engine %d times mid-load; %s", killed, w.stats())
	if w.noAnswer.Load() == 0 {
		t.Errorf("no request went unanswered: the kills did not land mid-load")
	}

	w.verify()
	w.checkExactlyOnce(dbURL)
	checkDB(t, dbURL)

	// One more restart: what the API reads back survives it too.
	e.kill()
	e.start()
	w.checkLedgers(w.expected)
}

// killDuring SIGKILLs and restarts the engine kills times at evenly spaced
// points of a load of requests, while requests are in flight (the workers
// never pause), and answers how many kills it made before the load ended.
func killDuring(e *engine, w *workload, kills, requests int, done <-chan struct{}) int {
	killed := 0
	base := w.acked.Load()
	for k := 1; k <= kills; k++ {
		if !w.waitAcked(base+int64(k*requests/(kills+1)), done) {
			break
		}
		e.kill()
		killed++
		e.start()
	}
	return killed
}
