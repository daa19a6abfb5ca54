package reliability

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/sriov-dra/sriov-dra/test/cluster/chaos/report"
)

// chaosResults is what `make chaos` wrote with CHAOS_RECORD=1: the summary
// of test/cluster/chaos (report.Summary).
const chaosResults = "testdata/chaos.json"

// chaosSection renders the recorded churn run (docs/reliability.md).
func chaosSection() string {
	var b strings.Builder
	b.WriteString("## Churn with faults on the cluster\n\n")
	b.WriteString("`make chaos` (test/cluster/chaos.sh) runs on the local one-node cluster (test/cluster) with the driver deployed from deployments/. " +
		"It keeps N pods, more than the simulated node's VFs so that pods queue for devices, created and deleted for T minutes; each pod has its own claim " +
		"(net1, a random MTU, host-local IPAM) and checks from inside that net1 is there with the claim's MTU and an address of its range (exit 3 otherwise), " +
		"and the run compares the MAC and addresses it reports with the allocated device and the claim's status (a mismatch is a wrong-device observation). " +
		"Meanwhile, one at a time, 5-15 s apart, in a seeded random order (every kind once per round): kill -9 of the driver's process, a rolling update of its DaemonSet, " +
		"a restart of the runtime, a restart of kubelet, the API server stopped for 20 s, the checkpoint's file system (a 16 MiB tmpfs) full for 10-25 s. " +
		"A netdev whose pod netns dies comes back to the host as the kernel returns a physical VF (simnode watch). At the end, with everything deleted: " +
		"every VF on the host with its name, MAC, MTU, link state, ifindex and driver as before, no IPAM allocation, CDI spec or attach marker, an empty checkpoint, " +
		"and the driver's RSS not grown by more than half. CI runs the 3-minute form; the documented long form is `CHAOS_MINUTES=30`. The figures below are " +
		"those of the last recorded run (its duration and command are in the table), written by the run itself (`CHAOS_RECORD=1`).\n\n")
	raw, err := os.ReadFile(chaosResults)
	if err != nil {
		b.WriteString("Not recorded yet: run `CHAOS_RECORD=1 CHAOS_MINUTES=30 make chaos`.\n\n")
		return b.String()
	}
	var s report.Summary
	if err := json.Unmarshal(raw, &s); err != nil {
		fmt.Fprintf(&b, "The recorded results (%s) cannot be read: %v.\n\n", chaosResults, err)
		return b.String()
	}
	var faults []string
	total := 0
	for _, k := range report.FaultKinds() {
		faults = append(faults, fmt.Sprintf("%s %d", k, s.Faults[k]))
		total += s.Faults[k]
	}
	b.WriteString("| seed | reproduce | duration | pods (VFs) | pods run / checked OK / failed outside the check | faults injected | leaks | wrong device | driver RSS start → end (max) |\n|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| %d | `%s` | %s | %d (%d) | %d / %d / %d | %d: %s | %d | %d | %.1f → %.1f MiB (%.1f) |\n\n",
		s.Seed, s.Command, s.Duration, s.Slots, s.VFs, s.PodsRun, s.PodsOK, s.PodsFailedOther, total, strings.Join(faults, ", "),
		len(s.Leaks), len(s.WrongDevice), float64(s.RSSStartKiB)/1024, float64(s.RSSEndKiB)/1024, float64(s.RSSMaxKiB)/1024)
	if s.Commit != "" {
		fmt.Fprintf(&b, "The driver of that run was built from commit `%s`.\n\n", s.Commit)
	}
	if s.PodsQueued > 0 {
		fmt.Fprintf(&b, "%d pods were still waiting for a VF when the run ended; they were deleted and are not counted as run.\n\n", s.PodsQueued)
	}
	if s.StatusMissing > 0 {
		fmt.Fprintf(&b, "Pods that finished before the driver's claim status (MAC, IPs) reached the API server, so their MAC was checked against the allocated device only: %d.\n\n", s.StatusMissing)
	}
	return b.String()
}
