//go:build vmtest

package vmtests

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sriov-dra/sriov-dra/internal/faults"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/irq"
)

// crashEnv carries a crashCase (JSON) to the crashing child process.
const crashEnv = "SRIOV_DRA_VM_CRASH"

// crashCase is one pod's life on one real VF, as the child runs it and the
// parent finishes it.
type crashCase struct {
	Base   string // the daemon's state, CDI, IPAM and socket dirs (kept across the crash)
	PFNum  int
	VFIdx  int
	Netns  string // the pod's netns path (made by the parent, outlives the child)
	VFIO   bool   // a driver: vfio-pci claim instead of a netdev one
	Params string // the claim's class config
}

var (
	crashPodUID   = types.UID("5a1e0c9d-7b2f-4e3a-8d6c-0f1e2d3c4b5a")
	crashClaimUID = "9c8b7a6f-5e4d-4c3b-8a2f-1e0d9c8b7a6f"
)

func (c crashCase) claim(devName string) *resourceapi.ResourceClaim {
	return vfClaim("crash", crashClaimUID, crashPodUID, devName, c.Params)
}

func (c crashCase) sandbox(id string) *api.PodSandbox {
	return &api.PodSandbox{
		Id: id, Uid: string(crashPodUID), Name: "pod", Namespace: "default",
		Linux: &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: c.Netns}}},
	}
}

// TestCrashChildVF is the daemon that crashes: this test binary, built
// with -tags faultinject and run again by TestCrashMatrixVF with a case
// in crashEnv and a failure point in SRIOV_DRA_FAULT. It runs the pod's
// whole life on the real VF; the point, when reached, ends the process
// with status 137 and no cleanup.
func TestCrashChildVF(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("run by TestCrashMatrixVF only")
	}
	var c crashCase
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	h := hostHandle(t)
	_, vf := vfFor(t, c.PFNum, c.VFIdx)
	devName := inventory.DeviceName(vf.PCI)
	claim := c.claim(devName)
	n := startNodeAt(t, h, claim, c.Base)
	n.published(devName)
	_, prepared := n.prepare(claim)
	c.runPod(t, n, "sandbox-child")
	if err := n.unprepare(claim); err != nil {
		t.Fatal(err)
	}
	*prepared = false
}

// runPod is the runtime's side of the pod: RunPodSandbox, a container on
// CPU 1 (irqAffinity: container pins the VF's IRQs there),
// StopPodSandbox, the detach, RemovePodSandbox.
func (c crashCase) runPod(t *testing.T, n *node, id string) {
	t.Helper()
	pod := c.sandbox(id)
	if err := n.rt.r.RunPodSandbox(n.ctx, &api.RunPodSandboxRequest{Pod: pod}); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	n.rt.add(pod)
	if !c.VFIO {
		ctr := &api.Container{Id: id + "-ctr", PodSandboxId: pod.Id, Name: "app",
			Linux: &api.LinuxContainer{Resources: &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: "1"}}}}
		if _, err := n.rt.r.CreateContainer(n.ctx, &api.CreateContainerRequest{Pod: pod, Container: ctr}); err != nil {
			t.Fatalf("CreateContainer: %v", err)
		}
	}
	if err := n.rt.r.StopPodSandbox(n.ctx, &api.StopPodSandboxRequest{Pod: pod}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	n.waitDetached(t)
	if err := n.rt.r.RemovePodSandbox(n.ctx, &api.RemovePodSandboxRequest{Pod: pod}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	n.rt.remove(pod)
}

// waitDetached waits until no device of the crash pod is recorded in a
// netns.
func (n *node) waitDetached(t *testing.T) {
	t.Helper()
	waitFor(t, "the pod's device to be back on the host", func() bool {
		for _, d := range n.drv.State().ForPod(string(crashPodUID)) {
			if d.NetnsPath != "" {
				return false
			}
		}
		return true
	})
}

// TestCrashMatrixVF runs test/reliability's crash matrix on a real igbvf
// VF: for each failure point a child daemon runs a pod's life and dies
// there (exit 137); the daemon restarts from the same state dir, the
// runtime reconnects (Synchronize without the pod, as the runtime failed
// the sandbox), kubelet retries Prepare (for a crash before the pod ran)
// and the pod runs its life again, then kubelet unprepares (twice). The
// VF's real kernel state must then be byte for byte what it was: the PF's
// VF info (MAC, VLAN, QoS, spoof check, trust, link state, rates), the
// driver binding, netdev name, MAC, MTU and up flag, and the IRQ
// affinities; no claim recorded, no CDI spec.
func TestCrashMatrixVF(t *testing.T) {
	if !faults.Enabled {
		t.Skip("needs the faultinject build tag (test/vm/run.sh builds with it)")
	}
	netdev := crashCase{PFNum: 1, VFIdx: 4, Params: `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig",
		"ifName":"net1","mtu":1400,"mac":"02:5a:00:00:0c:01","vlan":30,"vlanQoS":1,"spoofChk":false,"trust":true,
		"ipam":{"type":"host-local","ranges":[[{"subnet":"10.68.0.0/24"}]]},"irqAffinity":"container"}`}
	vfio := crashCase{PFNum: 0, VFIdx: 4, VFIO: true, Params: `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig",
		"driver":"vfio-pci","mac":"02:5a:00:00:0d:01","vlan":40}`}
	_, vfioVF := vfFor(t, vfio.PFNum, vfio.VFIdx)
	_, err := os.Stat(filepath.Join("/sys/bus/pci/devices", vfioVF.PCI, "iommu_group"))
	iommu := err == nil // booted with VMTEST_IOMMU=0: no vfio-pci
	var summary []string
	for _, point := range faults.All() {
		for _, kind := range []string{"netdev", "vfio"} {
			c := netdev
			if kind == "vfio" {
				c = vfio
			}
			switch {
			case point == faults.PrepareGUIDSet:
				continue // Ethernet VFs have no GUID (InfiniBand: driver/ and pkg/vfconfig tests)
			case kind == "netdev" && point == faults.PrepareVFIOBound:
				continue
			case kind == "vfio" && (strings.HasPrefix(point, "attach-") || strings.HasPrefix(point, "detach-")):
				continue // no netdev to move
			case kind == "vfio" && strings.HasPrefix(point, "prepare-ipam-"):
				continue // no IPAM for a vfio-pci device
			case kind == "vfio" && !iommu:
				continue
			}
			t.Run(kind+"/"+point, func(t *testing.T) {
				start := time.Now()
				crashed := crashScenarioVF(t, c, point)
				summary = append(summary, fmt.Sprintf("%s/%s crashed=%v %v", kind, point, crashed, time.Since(start).Round(100*time.Millisecond)))
			})
		}
	}
	t.Logf("crash matrix on a real VF:\n%s", strings.Join(summary, "\n"))
}

// crashScenarioVF runs one point; it reports whether the child died there.
func crashScenarioVF(t *testing.T, c crashCase, point string) bool {
	h := hostHandle(t)
	pf, vf := vfFor(t, c.PFNum, c.VFIdx)
	if !c.VFIO {
		setVFUp(t, h, vf.IfName)
	}
	before := readRaw(t, h, pf, vf.Index)
	irqBefore, err := irq.Affinities("/", vf.PCI)
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.MkdirTemp("", "crash")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	c.Base = base
	c.Netns = newNetns(t, "vmc-pod")

	b, _ := json.Marshal(c)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChildVF$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), crashEnv+"="+string(b), faults.Env+"="+point)
	out, _ := cmd.CombinedOutput()
	crashed := false
	switch code := cmd.ProcessState.ExitCode(); code {
	case faults.ExitCode:
		crashed = true
	case 0:
		t.Logf("the child's pod life did not pass %s", point)
	default:
		t.Fatalf("child exited %d, not at the point:\n%s", code, tailOf(out))
	}

	// The restarted daemon, same state dir; the runtime (its NRI side is
	// this process's) no longer has the sandbox.
	devName := inventory.DeviceName(vf.PCI)
	claim := c.claim(devName)
	n := startNodeAt(t, h, claim, base)
	n.waitDetached(t)
	stage, _, _ := strings.Cut(point, "-")
	var prepared *bool
	if stage == "prepare" || stage == "attach" {
		// kubelet retries Prepare; the pod runs its life again.
		_, prepared = n.prepare(claim)
		c.runPod(t, n, "sandbox-after")
	}
	var errs []error
	deadline := time.Now().Add(waitLong)
	for {
		err := n.unprepare(claim)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			errs = append(errs, err)
			break
		}
		time.Sleep(time.Second)
	}
	if prepared != nil {
		*prepared = false
	}
	if err := n.unprepare(claim); err != nil {
		errs = append(errs, fmt.Errorf("second Unprepare: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	waitRaw(t, h, pf, vf.Index, before, waitShort)
	if after, err := irq.Affinities("/", vf.PCI); err != nil || !maps.Equal(after, irqBefore) {
		t.Errorf("IRQ affinity after recovery %v (%v), want %v", after, err, irqBefore)
	}
	if cs := n.drv.State().Claims(); len(cs) != 0 {
		t.Errorf("%d claims still recorded", len(cs))
	}
	if ents, _ := os.ReadDir(n.cdiDir); len(ents) != 0 {
		t.Errorf("CDI specs left: %v", ents)
	}
	return crashed
}

func tailOf(b []byte) string {
	const n = 4000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
