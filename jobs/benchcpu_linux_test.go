package jobs_test

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// readCPU reads the CPU time so far of this process (the engine: the
// Service, pgx and the tills' goroutines) and of every process of this
// machine named postgres (the database server's, when it runs here), each
// in user and kernel time. /proc/<pid>/stat counts in clock ticks of
// 1/100 s (USER_HZ). A server process that exits between two reads takes
// its time with it, which the backends of the open pools do not; the
// backends of other clients of the same server count too, so the figure
// is the tills' only while nothing else uses the server.
func readCPU() cpuTimes {
	var c cpuTimes
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.engine = [2]time.Duration{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())}
	}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if n := d.Name(); n == "" || n[0] < '0' || n[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || !strings.HasPrefix(s[open+1:end], "postgres") {
			continue
		}
		// After the name: state, ppid, pgrp, session, tty, tpgid, flags,
		// four fault counts, then utime and stime.
		f := strings.Fields(s[end+1:])
		if len(f) < 13 {
			continue
		}
		user, err1 := strconv.ParseInt(f[11], 10, 64)
		kernel, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		c.server[0] += time.Duration(user) * 10 * time.Millisecond
		c.server[1] += time.Duration(kernel) * 10 * time.Millisecond
		c.serverHere = true
	}
	return c
}
