//go:build !linux

package jobs_test

// readCPU reads nothing where there is no /proc: the benchmark then prints
// no CPU a purchase.
func readCPU() cpuTimes { return cpuTimes{} }
