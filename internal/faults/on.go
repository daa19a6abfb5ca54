//go:build faultinject

package faults

import (
	"fmt"
	"os"
)

// Enabled reports whether this binary was built with the faultinject tag.
const Enabled = true

// Point exits the process at once with ExitCode when the environment
// variable Env names this point: no deferred call runs, nothing is
// flushed or rolled back, as if the process had been killed.
func Point(name string) {
	if os.Getenv(Env) != name {
		return
	}
	fmt.Fprintf(os.Stderr, "faultinject: dying at failure point %s\n", name)
	os.Exit(ExitCode)
}
