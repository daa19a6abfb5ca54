package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// memLimitRatio is the share of the container's memory limit the Go
// runtime is told to stay under (GOMEMLIMIT): the rest is for what the
// runtime does not count (thread stacks outside the heap's accounting,
// the binary's text) and a margin before the OOM killer.
const memLimitRatio = 0.8

// gcPercent is the daemon's GC goal (GOGC) unless the environment sets
// one. Most of the daemon's heap is long-lived (the inventory, the claim
// records) and it allocates in bursts (a rescan builds the pool, a burst
// of Prepares), so the default 100 lets the heap grow to twice what it
// keeps for nothing. At 50 the heap goal of a node with 1,032 devices and
// 256 claims (~9 MB live) is ~4 MB lower; a collection of a heap that
// size costs a few ms of CPU, and an idle daemon allocates too little for
// it to show (docs/performance.md).
const gcPercent = 50

// setMemoryLimit sets the Go runtime's soft memory limit to memLimitRatio
// of limit (a quantity such as "268435456" or "256Mi", the container's
// memory limit from the downward API), unless GOMEMLIMIT is set or limit
// is empty. It returns the limit set, 0 for none.
func setMemoryLimit(limit string) (int64, error) {
	if limit == "" || os.Getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(limit)
	if err != nil {
		return 0, fmt.Errorf("--memory-limit %q: %w", limit, err)
	}
	v, ok := q.AsInt64()
	if !ok || v <= 0 {
		return 0, fmt.Errorf("--memory-limit %q: want a positive number of bytes", limit)
	}
	soft := int64(float64(v) * memLimitRatio)
	debug.SetMemoryLimit(soft)
	return soft, nil
}

// tuneGC sets the daemon's GC goal to gcPercent unless GOGC is set, and
// turns off the runtime's heap profiling unless GODEBUG asks for a
// memprofilerate: nothing in the daemon serves or writes a heap profile,
// and the sampled stacks and their hash table are resident memory. It
// returns the GC percent set, 0 when GOGC decides.
func tuneGC() int {
	if !strings.Contains(os.Getenv("GODEBUG"), "memprofilerate=") {
		runtime.MemProfileRate = 0
	}
	if os.Getenv("GOGC") != "" {
		return 0
	}
	debug.SetGCPercent(gcPercent)
	return gcPercent
}
