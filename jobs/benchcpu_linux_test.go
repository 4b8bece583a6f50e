package jobs_test

import (
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// readCPU reads the CPU time so far of this process (the engine: the
// Service, pgx and the tills' goroutines) and of every process of this
// machine named postgres (the database server's, when it runs here), each
// in user and kernel time. A server process that exits between two reads takes
// its time with it, which the backends of the open pools do not; the
// backends of other clients of the same server count too, so the figure
// is the tills' only while nothing else uses the server.
func readCPU() cpuTimes {
	var c cpuTimes
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.engine = [2]time.Duration{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())}
	}
	procs, _ := procfs.AllProcs()
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil || !strings.HasPrefix(st.Comm, "postgres") {
			continue
		}
		c.server[0] += ticks(st.UTime)
		c.server[1] += ticks(st.STime)
		c.serverHere = true
	}
	return c
}

// ticks is a /proc/<pid>/stat time (procfs.ProcStat's UTime, STime): clock
// ticks of 1/100 s (USER_HZ).
func ticks(n uint) time.Duration { return time.Duration(n) * 10 * time.Millisecond }
