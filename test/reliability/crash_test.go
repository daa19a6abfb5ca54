package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/internal/faults"
)

// childEnv carries the node (JSON) to the crashing child process.
const childEnv = "SRIOV_DRA_RELIABILITY_NODE"

// TestCrashChild is the daemon that crashes: it is this test binary, run
// again by TestCrashConsistency with the node in childEnv and a failure
// point in SRIOV_DRA_FAULT. It runs pod 0's whole life; the point, when
// reached, ends the process with status 137.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("run by TestCrashConsistency only")
	}
	var n node
	if err := json.Unmarshal([]byte(spec), &n); err != nil {
		t.Fatal(err)
	}
	ctx := logCtx(t)
	c := n.claim(0, "")
	dm := startPrepared(t, ctx, &n, newAPI(c), c)
	pod := n.sandbox(0)
	if err := dm.plugin.RunPodSandbox(ctx, pod); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	if err := dm.plugin.StopPodSandbox(ctx, pod); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if !dm.waitDetached(pod.Uid, 10*time.Second) {
		t.Fatal("not detached")
	}
	if err := dm.plugin.RemovePodSandbox(ctx, pod); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if msg, err := dm.unprepare(ctx, c); err != nil || msg != "" {
		t.Fatalf("unprepare: %v %s", err, msg)
	}
}

// ethernetSkips are the points an Ethernet VF with VF settings and IPAM
// does not pass (InfiniBand GUIDs, vfio-pci).
var ethernetSkips = map[string]bool{faults.PrepareGUIDSet: true, faults.PrepareVFIOBound: true}

// stage is where in the pod's life a failure point is.
func stage(point string) string {
	s, _, _ := strings.Cut(point, "-")
	return s
}

// runChild runs the crashing daemon; it returns whether it died at the
// point (137), or an error for any other ending but a clean one.
func runChild(t *testing.T, n *node, point string) (bool, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+mustJSON(n), faults.Env+"="+point)
	out, err := cmd.CombinedOutput()
	code := cmd.ProcessState.ExitCode()
	switch {
	case code == faults.ExitCode:
		return true, nil
	case err == nil:
		return false, nil
	}
	return false, fmt.Errorf("child exited %d: %v\n%s", code, err, tail(out))
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// TestCrashConsistency kills the daemon at every failure point and checks
// that a restarted daemon, with kubelet and the runtime retrying, leaves
// the host exactly as it was.
func TestCrashConsistency(t *testing.T) {
	needRoot(t)
	if !faults.Enabled {
		t.Skip("needs the failure points: go test -tags faultinject ./test/reliability/")
	}
	if os.Getenv(childEnv) != "" {
		t.Skip("in the child")
	}
	for i, point := range faults.All() {
		thens := []string{"retry"}
		if stage(point) == "prepare" {
			thens = append(thens, "pod-gone")
		}
		for _, then := range thens {
			t.Run(point+"/"+then, func(t *testing.T) {
				crashed, msg := crashScenario(t, point, then)
				if !crashed && !ethernetSkips[point] {
					// A point an Ethernet VF passes must fire: a missing
					// faults.Point call line would otherwise go unnoticed.
					t.Errorf("failure point %s never reached: is its faults.Point call missing?", point)
					msg = "FAIL: never reached"
				}
				key := fmt.Sprintf("%02d-%s", i, then)
				results.add("crash", key, "`"+point+"`", then, map[bool]string{true: "yes", false: "not reached by an Ethernet VF"}[crashed], msg)
			})
		}
	}
	results.complete("crash")
}

// crashScenario returns whether the child crashed and the result cell.
func crashScenario(t *testing.T, point, then string) (bool, string) {
	n := newNode(t, 1)
	before := n.initialView(t)
	crashed, err := runChild(t, n, point)
	if err != nil {
		t.Error(err)
		return crashed, "FAIL: " + firstLine(err)
	}
	ctx := logCtx(t)
	c := n.claim(0, "")
	dm, err := startDaemon(t, n, newAPI(c))
	if err != nil {
		t.Errorf("restart: %v", err)
		return crashed, "FAIL: restart: " + firstLine(err)
	}
	var errs []error
	check := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	pod := n.sandbox(0)
	// The runtime reconnects: the sandbox is gone in every case but a
	// crash inside RunPodSandbox's retry (the runtime failed that sandbox
	// when the plugin died; kubelet makes a new one).
	_, err = dm.plugin.Synchronize(ctx, nil, nil)
	check("Synchronize", err)
	if !dm.waitDetached(pod.Uid, 10*time.Second) {
		check("reconcile", errors.New("pod's device still recorded in a netns after Synchronize without the pod"))
	}
	switch {
	case then == "pod-gone":
		// The pod was deleted while Prepare was failing: kubelet only
		// unprepares.
	case stage(point) == "prepare" || stage(point) == "attach":
		msg, _, err := dm.prepare(ctx, c)
		check("retried Prepare", err)
		if msg != "" {
			check("retried Prepare", errors.New(msg))
		}
		if len(errs) == 0 {
			check("RunPodSandbox", dm.plugin.RunPodSandbox(ctx, pod))
			dm.checkInPod(t, 0)
			check("StopPodSandbox", dm.plugin.StopPodSandbox(ctx, pod))
			if !dm.waitDetached(pod.Uid, 10*time.Second) {
				check("StopPodSandbox", errors.New("device not detached"))
			}
			check("RemovePodSandbox", dm.plugin.RemovePodSandbox(ctx, pod))
		}
	}
	msg, err := dm.unprepare(ctx, c)
	check("Unprepare", err)
	if msg != "" {
		check("Unprepare", errors.New(msg))
	}
	// kubelet may call it again; it must stay a no-op.
	if msg, err := dm.unprepare(ctx, c); err != nil || msg != "" {
		check("second Unprepare", fmt.Errorf("%v %s", err, msg))
	}
	errs = append(errs, n.cleanErrors(t, dm, before)...)
	if len(errs) > 0 {
		err := errors.Join(errs...)
		t.Error(err)
		return crashed, "FAIL: " + firstLine(err)
	}
	return crashed, "recovered; host as before"
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return cut300(s)
}

// cut300 cuts a report cell to 300 bytes.
func cut300(s string) string {
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// initialView opens the PF state once (writing the initial file) and
// returns the host as the test found it.
func (n *node) initialView(t testing.TB) hostView {
	t.Helper()
	fh, err := n.fakePF()
	if err != nil {
		t.Fatal(err)
	}
	h, err := openPFHandle(fh.Netlink, n.pfName(), n.VFs, n.pfFile())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	return n.view(t, h)
}

// cleanErrors compares the host with before and lists what was left.
func (n *node) cleanErrors(t testing.TB, dm *daemon, before hostView) []error {
	t.Helper()
	var errs []error
	if after := n.view(t, dm.pf); mustJSON(after) != mustJSON(before) {
		errs = append(errs, fmt.Errorf("host changed:\nbefore %s\nafter  %s", mustJSON(before), mustJSON(after)))
	}
	for _, l := range n.leftovers(t) {
		errs = append(errs, errors.New(l+" left"))
	}
	if cs := dm.d.State().Claims(); len(cs) != 0 {
		errs = append(errs, fmt.Errorf("checkpoint still has %d claims", len(cs)))
	}
	store, _, err := driver.NewFileStore(n.stateDir(), n.root())
	if err == nil {
		cp, err := store.Load()
		if err != nil {
			errs = append(errs, fmt.Errorf("checkpoint: %w", err))
		} else if cp != nil && len(cp.Claims) != 0 {
			errs = append(errs, fmt.Errorf("checkpoint file still has %d claims", len(cp.Claims)))
		}
	}
	return errs
}

var _ = api.PodSandbox{}
var _ = context.Background
