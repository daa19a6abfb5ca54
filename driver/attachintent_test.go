package driver

import (
	"context"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
)

// originalKernel is the fake host that can read a netdev's original, as the
// real one can: Prepare records the intent to attach.
type originalKernel struct {
	*fakeKernel
}

func (h originalKernel) ReadOriginal(_ context.Context, hostIfName, pciAddress string) (netattach.Original, error) {
	if err := h.j.add("host.ReadOriginal %s %s", hostIfName, pciAddress); err != nil {
		return netattach.Original{}, err
	}
	return netattach.Original{IfName: hostIfName, MAC: "02:00:5e:00:00:01", MTU: 1500, Identity: netattach.Identity{PCIAddress: pciAddress}}, nil
}

// withOriginalKernel rebuilds e's driver over a host that reads originals.
func withOriginalKernel(t *testing.T, e *env) {
	t.Helper()
	cfg := e.config()
	cfg.Kernel = originalKernel{e.kernel}
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	e.j.take()
}

func countSaves(entries []string) int {
	n := 0
	for _, s := range entries {
		if strings.HasPrefix(s, "store.Save") {
			n++
		}
	}
	return n
}

func TestAttachIntentAtPrepare(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	withOriginalKernel(t, e)
	dev := vfName(e, 1, 0)
	c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("eth", dev)},
		opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","ifName":"data0"}`))
	if err := prepare(t, e.d, c)["u1"].Err; err != nil {
		t.Fatal(err)
	}
	// On disk with PrepareCompleted: the original and the flag.
	cp, err := e.store.Load()
	if err != nil {
		t.Fatal(err)
	}
	rec := cp.Claims["u1"]
	if rec == nil || rec.Phase != PhasePrepareCompleted {
		t.Fatalf("record on disk: %+v", rec)
	}
	pod := rec.Devices[0].Pod
	if !pod.AttachStateFromKernel || pod.Original == nil || pod.Original.IfName != pod.Spec.HostIfName || pod.NetnsPath != "" {
		t.Fatalf("intent on disk: flag %v original %+v netns %q, want the flag and the original of %s, no netns", pod.AttachStateFromKernel, pod.Original, pod.NetnsPath, pod.Spec.HostIfName)
	}

	// The NRI records of such a device stay in memory: no save.
	st := e.d.State()
	e.j.take()
	if err := st.Attaching("u1", dev, "/proc/9/ns/net", *pod.Original); err != nil {
		t.Fatal(err)
	}
	if err := st.Attached("u1", dev, false); err != nil {
		t.Fatal(err)
	}
	if pd := st.ForPod("pod-uid-p1")[0]; !pd.Attached || pd.NetnsPath != "/proc/9/ns/net" {
		t.Errorf("in memory after attach: %+v", pd)
	}
	if got := e.status.get("u1"); len(got) != 1 || !got[0].Ready {
		t.Errorf("status after attach: %+v", got)
	}
	if err := st.Detached("u1", dev); err != nil {
		t.Fatal(err)
	}
	if pd := st.ForPod("pod-uid-p1")[0]; pd.Attached || pd.NetnsPath != "" || pd.Original == nil {
		t.Errorf("after detach: %+v, want no netns and the original kept", pd)
	}
	if n := countSaves(e.j.take()); n != 0 {
		t.Errorf("%d checkpoint saves for the attach records of a device whose attach state comes from the kernel, want 0", n)
	}
	// The netdev changed since Prepare: the new original is written.
	changed := *pod.Original
	changed.MAC = "02:00:5e:00:00:02"
	if err := st.Attaching("u1", dev, "/proc/9/ns/net", changed); err != nil {
		t.Fatal(err)
	}
	if n := countSaves(e.j.take()); n != 1 {
		t.Errorf("%d checkpoint saves for a changed original, want 1", n)
	}
	if err := st.Detached("u1", dev); err != nil {
		t.Fatal(err)
	}
	if pd := st.ForPod("pod-uid-p1")[0]; pd.Original == nil || pd.Original.MAC != changed.MAC {
		t.Errorf("after detach the original is %+v, want the changed one", pd.Original)
	}
	*pod.Original = changed

	// After a restart the record says nothing reliable of an attach (a
	// netns on disk is a hint, written with the changed original);
	// Unprepare has the plugin look for the device (and restore it if the kernel
	// returned it changed) before the VF is restored.
	if err := st.Attaching("u1", dev, "/proc/9/ns/net", *pod.Original); err != nil {
		t.Fatal(err)
	}
	withOriginalKernel(t, e)
	if pd := e.d.State().ForPod("pod-uid-p1")[0]; !pd.AttachStateFromKernel || pd.Original == nil {
		t.Fatalf("after a restart: %+v", pd)
	}
	if err := unprepare(t, e.d, c)["u1"]; err != nil {
		t.Fatal(err)
	}
	var detach, restore int
	for i, s := range e.j.take() {
		switch {
		case strings.HasPrefix(s, "host.Detach ") && strings.Contains(s, " data0->"):
			detach = i + 1
		case strings.HasPrefix(s, "host.RestoreVF"):
			restore = i + 1
		}
	}
	if detach == 0 || (restore != 0 && restore < detach) {
		t.Errorf("Unprepare: host.Detach with no netns at step %d, RestoreVF at %d: want the detach, before the VF is restored", detach, restore)
	}
}

func TestAttachIntentNotForRDMAIsolation(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	e.fix.Netlink.SetRdmaNetnsMode(rdma.ModeExclusive) // rdmaIsolation needs it
	withOriginalKernel(t, e)
	dev := vfName(e, 0, 3)
	c := newClaim("u2", "p2", []resourceapi.DeviceRequestAllocationResult{result("ib", dev)},
		opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","guid":"auto","rdmaIsolation":true}`))
	if err := prepare(t, e.d, c)["u2"].Err; err != nil {
		t.Fatal(err)
	}
	rec, _ := e.d.State().Claim("u2")
	if p := rec.Devices[0].Pod; p.AttachStateFromKernel || p.Original != nil {
		t.Errorf("a device with RDMA isolation got the intent (%v, %+v): its RDMA moves need the durable hook records", p.AttachStateFromKernel, p.Original)
	}
}
