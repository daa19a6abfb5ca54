// Package report is the outcome of a `make chaos` run: the summary the
// churn command (test/cluster/chaos) prints and writes as its results
// file, and that test/reliability reads back to render docs/reliability.md
// (testdata/chaos.json). One type, so the writer and the reader cannot
// disagree on a field.
package report

import (
	"fmt"
	"strings"
)

// The fault kinds, as they appear in Summary.Faults.
const (
	FaultDriverKill    = "driver-kill"
	FaultDriverRollout = "driver-rollout"
	FaultRuntime       = "runtime-restart"
	FaultKubelet       = "kubelet-restart"
	FaultAPIServer     = "apiserver-stop"
	FaultDiskFull      = "disk-full"
)

// FaultKinds lists the kinds in the order the summary prints them.
func FaultKinds() []string {
	return []string{FaultDriverKill, FaultDriverRollout, FaultRuntime, FaultKubelet, FaultAPIServer, FaultDiskFull}
}

// Summary is the run's outcome; it is also the results file.
type Summary struct {
	Seed    uint64 `json:"seed"`
	Command string `json:"command"`
	// Commit is the source the driver was built from (git describe).
	Commit      string         `json:"commit,omitempty"`
	Duration    string         `json:"duration"`
	Slots       int            `json:"slots"`
	VFs         int            `json:"vfs"`
	PodsRun     int64          `json:"podsRun"`
	PodsOK      int64          `json:"podsOK"`
	Faults      map[string]int `json:"faults"`
	Leaks       []string       `json:"leaks"`
	WrongDevice []string       `json:"wrongDevice"`
	// StatusMissing counts pods whose claim had no network status when
	// checked (informational: the status writer retries).
	StatusMissing int64 `json:"statusMissing"`
	// PodsFailedOther failed outside their check (admission, a kill) or
	// never finished.
	PodsFailedOther int64 `json:"podsFailedOther"`
	// PodsQueued were still waiting for a VF at the end (deleted, not
	// counted as run). Absent from results of runs before it was counted:
	// there a pod queued for more than 4 min counted as failed-other.
	PodsQueued  int64  `json:"podsQueued"`
	RSSStartKiB int64  `json:"rssStartKiB"`
	RSSEndKiB   int64  `json:"rssEndKiB"`
	RSSMaxKiB   int64  `json:"rssMaxKiB"`
	Finished    string `json:"finished"`
}

// Line is the one summary line.
func (s *Summary) Line() string {
	var fs []string
	for _, k := range FaultKinds() {
		fs = append(fs, fmt.Sprintf("%s=%d", k, s.Faults[k]))
	}
	return fmt.Sprintf("CHAOS seed=%d duration=%s pods-run=%d pods-ok=%d pods-failed-other=%d faults[%s] leaks=%d wrong-device=%d rss-start=%.1fMiB rss-end=%.1fMiB rss-max=%.1fMiB",
		s.Seed, s.Duration, s.PodsRun, s.PodsOK, s.PodsFailedOther, strings.Join(fs, " "), len(s.Leaks), len(s.WrongDevice),
		float64(s.RSSStartKiB)/1024, float64(s.RSSEndKiB)/1024, float64(s.RSSMaxKiB)/1024)
}
