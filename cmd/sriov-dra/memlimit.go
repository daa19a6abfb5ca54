package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"k8s.io/apimachinery/pkg/api/resource"
)

// memLimitRatio is the share of the container's memory limit the Go
// runtime is told to stay under (GOMEMLIMIT): the rest is for what the
// runtime does not count (thread stacks outside the heap's accounting,
// the binary's text) and a margin before the OOM killer.
const memLimitRatio = 0.8

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
