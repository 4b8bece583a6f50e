//go:build !unix

package api

import "time"

// cpuTime is unknown here; benchmarks report cpu-ns/op as 0.
func cpuTime() time.Duration { return 0 }
