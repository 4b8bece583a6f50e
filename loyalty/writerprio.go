package loyalty

// The SQLite writer's scheduling priority.
//
// On SQLite every write of the engine runs on one goroutine (the group
// committer), so the rate of purchases is the rate of that one thread of
// work. It needs a core at the moment a group is ready, and on a small
// machine it often finds both taken: by the webhook deliveries and the
// NATS publishing, by the receivers and the broker they wake, by the
// tills' connections. Measured on 2 cores with a webhook and the NATS
// sink configured, the writer's thread waited for a core 139 ms of every
// second (47 ms without the sinks), and a purchase cost 391 µs of its CPU
// against 312–324. Everything else the engine does can lag by a few
// milliseconds without slowing a till; the writer cannot. At nice -20 its
// waits with the sinks fell to 42–48 ms a second, and the purchases with
// the sinks rose from 73–80% of plain ones to 84% and 88% (the benchmark's
// medians of three rounds; docs/BENCH.md, 3 December 2026).
//
// So WriterNice has the writer run on a thread of its own at a higher
// priority (a lower nice value) while it commits groups of till writes.
// A write that runs alone in its transaction (an import's chunk, a
// nightly job) runs at the process's own priority: it may take seconds,
// and the rest of the engine must not wait behind it. Lowering a thread's
// nice value needs CAP_SYS_NICE (or RLIMIT_NICE); without it the writer
// keeps the process's priority and the store reports why.

// WriterNice asks Open to run a SQLite store's writer at this nice value
// (-20 to -1) while it commits till writes. It does nothing on PostgreSQL,
// whose backends do the writing, or with 0.
func WriterNice(n int) OpenOption {
	return func(o *openOptions) { o.writerNice = max(-20, min(n, 0)) }
}

// WriterPriority reports the nice value the SQLite writer's thread runs
// till writes at, and why it could not be raised (nil when it was, or when
// it was not asked for). It is 0 on PostgreSQL.
func (s *Store) WriterPriority() (nice int, err error) {
	if s.group == nil {
		return 0, nil
	}
	<-s.group.ready
	return s.group.prio.nice, s.group.prio.err
}

// writerPrio is the committer's thread priority: nice while it commits
// groups, the process's own (base) for a write alone.
type writerPrio struct {
	tid        int   // the writer's thread, locked to its goroutine; 0: none
	nice, base int   // the priorities it switches between
	err        error // why nice could not be set
	raised     bool  // the thread runs at nice now
}

// set sets the thread's priority for till writes (or back to the base
// for a write alone).
func (p *writerPrio) set(raised bool) {
	if p.tid == 0 || p.raised == raised {
		return
	}
	n := p.base
	if raised {
		n = p.nice
	}
	if setThreadNice(p.tid, n) == nil {
		p.raised = raised
	}
}
