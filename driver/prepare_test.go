package driver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/kubeletserver"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

func vfName(e *env, pf, vf int) string {
	return inventory.DeviceName(e.fix.Topology.PFs[pf].VFs[vf].PCIAddress)
}

func result(req, dev string) resourceapi.DeviceRequestAllocationResult {
	return resourceapi.DeviceRequestAllocationResult{Driver: "sriov.dra.dev", Pool: testNode, Device: dev, Request: req}
}

// opaque is a config from the DeviceClass: the admin's, which the claim
// policy does not bound (claimOpaque is the tenant's).
func opaque(params string, requests ...string) resourceapi.DeviceAllocationConfiguration {
	return resourceapi.DeviceAllocationConfiguration{
		Source:   resourceapi.AllocationConfigSourceClass,
		Requests: requests,
		DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
			Driver: "sriov.dra.dev", Parameters: runtime.RawExtension{Raw: []byte(params)},
		}},
	}
}

func newClaim(uid, pod string, results []resourceapi.DeviceRequestAllocationResult, cfg ...resourceapi.DeviceAllocationConfiguration) *resourceapi.ResourceClaim {
	return &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "claim-" + uid, UID: types.UID(uid)},
		Status: resourceapi.ResourceClaimStatus{
			Allocation:  &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{Results: results, Config: cfg}},
			ReservedFor: []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: "pod-" + pod, UID: types.UID("pod-uid-" + pod)}},
		},
	}
}

func prepare(t testing.TB, d *Driver, claims ...*resourceapi.ResourceClaim) map[types.UID]kubeletserver.PrepareResult {
	t.Helper()
	res, err := d.PrepareResourceClaims(context.Background(), claims)
	if err != nil {
		t.Fatalf("PrepareResourceClaims: %v", err)
	}
	return res
}

func unprepare(t testing.TB, d *Driver, claims ...*resourceapi.ResourceClaim) map[types.UID]error {
	t.Helper()
	var objs []kubeletserver.NamespacedObject
	for _, c := range claims {
		objs = append(objs, kubeletserver.NamespacedObject{NamespacedName: types.NamespacedName{Namespace: c.Namespace, Name: c.Name}, UID: c.UID})
	}
	res, err := d.UnprepareResourceClaims(context.Background(), objs)
	if err != nil {
		t.Fatalf("UnprepareResourceClaims: %v", err)
	}
	return res
}

func assertEntries(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("steps:\n got  %s\n want %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

func TestPrepareUnprepareOrder(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	ib := vfName(e, 0, 1) // ConnectX-6 VF 1
	eth := vfName(e, 1, 0)
	vfio := vfName(e, 1, 12) // already bound to vfio-pci
	c := newClaim("u1", "p1",
		[]resourceapi.DeviceRequestAllocationResult{result("ib", ib), result("eth", eth), result("dpdk", vfio)},
		opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","guid":"auto","trust":true}`, "ib"),
		opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":100,"mac":"02:11:22:33:44:55","ipam":{"type":"host-local"}}`, "eth"),
		opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","driver":"vfio-pci"}`, "dpdk"),
	)
	res := prepare(t, e.d, c)
	if err := res["u1"].Err; err != nil {
		t.Fatalf("prepare: %v", err)
	}
	guid, err := AutoGUID("", pfOf(e.d.inventory(), mustFind(t, e, ib)), mustFind(t, e, ib), "u1", 0)
	if err != nil {
		t.Fatal(err)
	}
	assertEntries(t, e.j.take(), []string{
		"host.Snapshot " + ib, "host.Snapshot " + eth, "host.Snapshot " + vfio,
		"store.Save u1=PrepareStarted",
		"host.ApplyVF " + pci(ib) + " trust",
		"host.SetGUID " + pci(ib) + " " + guid,
		"host.ApplyVF " + pci(eth) + " mac,vlan,vlanQoS,vlanProto",
		"store.Save u1=PrepareStarted", // the IPAM intent, before the plugin's ADD
		"ipam.Allocate " + eth + " net2",
		"store.Save u1=PrepareStarted",
		"host.CDIInfo " + ib, "host.CDIInfo " + eth, "host.CDIInfo " + vfio,
		"cdi.Write u1",
		"store.Save u1=PrepareCompleted",
		"status.Set u1", // the vfio-pci device: nothing to attach, status now
	})
	devs := res["u1"].Devices
	if len(devs) != 3 || devs[0].DeviceName != ib || devs[0].PoolName != testNode || len(devs[0].CDIDeviceIDs) != 1 {
		t.Errorf("devices = %+v", devs)
	}

	// The NRI side sees the pod's devices with names and addresses.
	pd := e.d.State().ForPod("pod-uid-p1")
	if len(pd) != 3 {
		t.Fatalf("ForPod: %d devices", len(pd))
	}
	if pd[0].Spec.HostIfName != "ibp59s0f0v1r" {
		t.Errorf("host netdev after the GUID rebind = %q, want the renamed ibp59s0f0v1r", pd[0].Spec.HostIfName)
	}
	if pd[0].Spec.PodIfName != "net1" || pd[1].Spec.PodIfName != "net2" || !pd[2].VFIO || pd[2].Spec.PodIfName != "" {
		t.Errorf("ifNames: %q %q vfio=%v", pd[0].Spec.PodIfName, pd[1].Spec.PodIfName, pd[2].VFIO)
	}
	if !slices.Equal(pd[1].Spec.Addresses, []string{"10.0.0.1/24"}) || pd[1].Spec.MAC != "02:11:22:33:44:55" {
		t.Errorf("eth spec = %+v", pd[1].Spec)
	}

	// The runtime attached eth, then never detached it (StopPodSandbox lost).
	if err := e.d.State().Attaching("u1", eth, "/proc/42/ns/net", netattach.Original{IfName: "ens2f0v0", MAC: "02:00:5e:00:00:00", MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	if err := e.d.State().Attached("u1", eth, false); err != nil {
		t.Fatal(err)
	}
	e.j.take()

	// Unprepare after a restart: from the checkpoint alone.
	e.restart()
	if err := unprepare(t, e.d, c)["u1"]; err != nil {
		t.Fatalf("unprepare: %v", err)
	}
	// host.Detach is the NRI plugin's DetachDevice, the one owner of a
	// detach: it records Detached itself, so Unprepare saves nothing for it.
	assertEntries(t, e.j.take(), []string{
		"host.Detach /proc/42/ns/net net2->ens2f0v0",
		"ipam.Release u1-" + eth,
		"host.RestoreVF " + pci(eth),
		"host.RestoreGUID " + pci(ib),
		"host.RestoreVF " + pci(ib),
		"cdi.Remove u1",
		"status.Clear u1",
		"store.Save empty",
	})
	if e.ipam.allocated() != 0 || e.cdi.count() != 0 || len(e.d.State().Claims()) != 0 {
		t.Errorf("left behind: ipam %d cdi %d claims %d", e.ipam.allocated(), e.cdi.count(), len(e.d.State().Claims()))
	}
	// Idempotent: a second Unprepare and one for an unknown claim do nothing.
	if err := unprepare(t, e.d, c, newClaim("unknown", "x", nil))["u1"]; err != nil {
		t.Fatal(err)
	}
	if got := e.j.take(); len(got) != 0 {
		t.Errorf("second unprepare did %v", got)
	}
}

func pci(dev string) string {
	// pci-0000-3b-00-2 -> 0000:3b:00.2
	s := strings.TrimPrefix(dev, "pci-")
	p := strings.Split(s, "-")
	return p[0] + ":" + p[1] + ":" + p[2] + "." + p[3]
}

func mustFind(t testing.TB, e *env, name string) *inventory.Device {
	t.Helper()
	d, ok := e.d.inventory().Find(name)
	if !ok {
		t.Fatalf("device %s not in inventory", name)
	}
	return d
}

func TestPrepareRetryTouchesNothing(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("eth", vfName(e, 1, 0))},
		opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":7}`))
	first := prepare(t, e.d, c)["u1"]
	if first.Err != nil {
		t.Fatal(first.Err)
	}
	e.j.take()
	for _, d := range []*Driver{e.d, func() *Driver { e.restart(); return e.d }()} {
		again := prepare(t, d, c)["u1"]
		if again.Err != nil || !slices.EqualFunc(again.Devices, first.Devices, func(a, b kubeletserver.Device) bool {
			return a.DeviceName == b.DeviceName && slices.Equal(a.CDIDeviceIDs, b.CDIDeviceIDs)
		}) {
			t.Errorf("retry = %+v, want %+v", again, first)
		}
		if got := e.j.take(); len(got) != 0 {
			t.Errorf("retry touched: %v", got)
		}
	}
}

func TestPrepareRollback(t *testing.T) {
	for _, tc := range []struct {
		failAt    string
		wantField string
		wantUndo  []string
	}{
		{failAt: "host.Snapshot", wantUndo: nil},
		{failAt: "store.Save u1=PrepareStarted", wantUndo: nil},
		{failAt: "host.ApplyVF", wantField: "config field mac,vlan", wantUndo: []string{"restoreVF"}},
		{failAt: "host.SetGUID", wantField: "config field guid", wantUndo: []string{"restoreGUID", "restoreVF"}},
		// The recorded intent is released too: the ADD may have half-run.
		{failAt: "ipam.Allocate", wantField: "config field ipam", wantUndo: []string{"release", "restoreGUID", "restoreVF"}},
		{failAt: "host.CDIInfo", wantUndo: []string{"release", "restoreGUID", "restoreVF"}},
		{failAt: "cdi.Write", wantUndo: []string{"release", "restoreGUID", "restoreVF"}},
		{failAt: "store.Save u1=PrepareCompleted", wantUndo: []string{"release", "restoreGUID", "restoreVF"}},
	} {
		t.Run(tc.failAt, func(t *testing.T) {
			e := newEnv(t, sysfstest.Standard())
			rec := withEvents(t, e)
			d := e.d
			dev := vfName(e, 0, 2)
			c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("net", dev)},
				opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":5,"mac":"02:00:00:00:00:09","guid":"auto","ipam":{"type":"static"}}`))
			e.j.take()
			e.j.failOn(tc.failAt, errInjected)
			err := prepare(t, d, c)["u1"].Err
			if err == nil {
				t.Fatal("prepare succeeded")
			}
			msg := err.Error()
			for _, want := range []string{"injected failure"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q lacks %q", msg, want)
				}
			}
			if strings.HasPrefix(tc.failAt, "host.") || strings.HasPrefix(tc.failAt, "ipam.") {
				for _, want := range []string{"claim ns/claim-u1", `request "net"`, "device " + dev, tc.wantField} {
					if !strings.Contains(msg, want) {
						t.Errorf("error %q lacks %q", msg, want)
					}
				}
			}
			steps := e.j.take()
			var undo []string
			for _, s := range steps {
				switch {
				case strings.HasPrefix(s, "ipam.Release"):
					undo = append(undo, "release")
				case strings.HasPrefix(s, "host.RestoreGUID"):
					undo = append(undo, "restoreGUID")
				case strings.HasPrefix(s, "host.RestoreVF"):
					undo = append(undo, "restoreVF")
				}
			}
			if !slices.Equal(undo, tc.wantUndo) {
				t.Errorf("undo = %v, want %v (steps %v)", undo, tc.wantUndo, steps)
			}
			if e.ipam.allocated() != 0 || e.cdi.count() != 0 {
				t.Errorf("left behind: ipam %d cdi %d", e.ipam.allocated(), e.cdi.count())
			}
			if tc.failAt != "store.Save u1=PrepareCompleted" && len(d.State().Claims()) != 0 {
				t.Errorf("claims left: %d", len(d.State().Claims()))
			}
			select {
			case ev := <-rec.Events:
				if !strings.HasPrefix(ev, "Warning PrepareFailed") || !strings.Contains(ev, "injected failure") {
					t.Errorf("event %q", ev)
				}
			default:
				t.Error("no Warning event on the claim")
			}
			// After the fault clears, kubelet's retry succeeds.
			e.j.clearFail()
			if err := prepare(t, d, c)["u1"].Err; err != nil {
				t.Errorf("retry after fault: %v", err)
			}
		})
	}
}

func TestPrepareRefuses(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	busy := vfName(e, 1, 3)
	if err := prepare(t, e.d, newClaim("owner", "p0", []resourceapi.DeviceRequestAllocationResult{result("a", busy)}))["owner"].Err; err != nil {
		t.Fatal(err)
	}
	e.j.take()
	otherNode := result("a", vfName(e, 1, 4))
	otherNode.Pool = "node-b"
	ib := sysfstest.Standard().PFs[0]
	_ = ib
	twoPods := newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", vfName(e, 1, 4))})
	twoPods.Status.ReservedFor = append(twoPods.Status.ReservedFor, resourceapi.ResourceClaimConsumerReference{Resource: "pods", Name: "other", UID: "x"})
	noPod := newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", vfName(e, 1, 4))})
	noPod.Status.ReservedFor = nil
	for _, tc := range []struct {
		name  string
		claim *resourceapi.ResourceClaim
		want  string
	}{
		{"other node", newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{otherNode}), `pool "node-b" is not this node's pool`},
		{"not in inventory", newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", "pci-0000-99-00-1")}), "not in this node's inventory"},
		{"PF with VFs", newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", inventory.DeviceName("0000:5e:00.0"))}), "not in this node's inventory"},
		{"prepared for another claim", newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", busy)}), "already prepared for claim owner"},
		{"two pods", twoPods, "exactly one pod"},
		{"no pod", noPod, "exactly one pod"},
		{"vlan out of range", newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", vfName(e, 1, 4))},
			opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":4095}`)), "vlan"},
		{"ifName twice", newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", vfName(e, 1, 4)), result("b", vfName(e, 1, 5))},
			opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","ifName":"data"}`)), "ifName"},
		{"ifName of a host link", newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", vfName(e, 1, 4))},
			opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","ifName":"ibp59s0f0"}`)), `config field ifName: ifName "ibp59s0f0" is the name of host link ibp59s0f0`},
		{"guid auto on Ethernet", newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", vfName(e, 1, 4))},
			opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","guid":"auto"}`)), "config field guid"},
		{"guid held by a device", newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", vfName(e, 0, 7))},
			opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","guid":"0c:42:a1:03:00:ab:cd:10"}`)), "is held by device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := prepare(t, e.d, tc.claim)["u"].Err
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			for _, s := range e.j.take() {
				if !strings.HasPrefix(s, "host.Snapshot") {
					t.Errorf("refused claim changed something: %s", s)
				}
			}
			if _, ok := e.d.State().Claim("u"); ok {
				t.Error("refused claim recorded")
			}
		})
	}
}

// preparedVLAN is an env with claim u1 prepared on VF 1/0 with VF
// settings and IPAM (ipamVLAN); it returns the env and the VF.
func preparedVLAN(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t, sysfstest.Standard())
	dev := vfName(e, 1, 0)
	c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("eth", dev)}, opaque(ipamVLAN))
	if err := prepare(t, e.d, c)["u1"].Err; err != nil {
		t.Fatal(err)
	}
	return e, dev
}

func TestBootIDChangeReleasesWithoutRestoring(t *testing.T) {
	e, dev := preparedVLAN(t)
	if err := e.d.State().Attaching("u1", dev, "/proc/1/ns/net", netattach.Original{IfName: "ens2f0v0"}); err != nil {
		t.Fatal(err)
	}
	e.j.take()
	e.bootID = "boot-2"
	e.restart() // restart clears the journal; check the effects instead
	if e.ipam.allocated() != 0 || e.cdi.count() != 0 || len(e.d.State().Claims()) != 0 || e.d.State().BootID() != "boot-2" {
		t.Errorf("after reboot: ipam %d cdi %d claims %d boot %s", e.ipam.allocated(), e.cdi.count(), len(e.d.State().Claims()), e.d.State().BootID())
	}
}

func TestBootIDChangeSteps(t *testing.T) {
	e, dev := preparedVLAN(t)
	e.j.take()
	cfg := e.config()
	cfg.BootID = "boot-2"
	if _, err := New(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	// The record is marked stale with the new boot ID before anything is
	// released, so a crash half-way never takes it for this boot's.
	assertEntries(t, e.j.take(), []string{"store.Save u1=PrepareCompleted", "ipam.Release u1-" + dev, "cdi.Remove u1", "status.Clear u1", "store.Save empty"})
}

func TestUnprepareFailureKeepsRecordAndRetries(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	dev := vfName(e, 1, 0)
	c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("eth", dev)},
		opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":9}`))
	if err := prepare(t, e.d, c)["u1"].Err; err != nil {
		t.Fatal(err)
	}
	e.j.failOn("host.RestoreVF", errInjected)
	err := unprepare(t, e.d, c)["u1"]
	if err == nil || !strings.Contains(err.Error(), "restore VF settings") || !strings.Contains(err.Error(), dev) {
		t.Fatalf("err = %v", err)
	}
	if _, ok := e.d.State().Claim("u1"); !ok {
		t.Fatal("record dropped although the VF was not restored")
	}
	e.j.clearFail()
	if err := unprepare(t, e.d, c)["u1"]; err != nil {
		t.Fatal(err)
	}
	if _, ok := e.d.State().Claim("u1"); ok {
		t.Fatal("record kept after a successful retry")
	}
}

func TestTwoClaimsOnePodGetDistinctIfNames(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	a := newClaim("ua", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", vfName(e, 1, 0))})
	b := newClaim("ub", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", vfName(e, 1, 1))})
	if err := prepare(t, e.d, a)["ua"].Err; err != nil {
		t.Fatal(err)
	}
	if err := prepare(t, e.d, b)["ub"].Err; err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, pd := range e.d.State().ForPod("pod-uid-p1") {
		names = append(names, pd.Spec.PodIfName)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"net1", "net2"}) {
		t.Errorf("ifNames = %v", names)
	}
}

// TestPrepareRefusesVFIOWithoutIsolation: vfio-pci is refused at Prepare,
// before anything changes, for a VF whose IOMMU group it shares with
// another function or when vfio could not isolate it at all; the error
// names the config field, the device and the group's members.
func TestPrepareRefusesVFIOWithoutIsolation(t *testing.T) {
	const vfioCfg = `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","driver":"vfio-pci"}`
	for _, tc := range []struct {
		name  string
		vf    int // E810 VF (VF 2 and 3 share IOMMU group 90)
		setup func(t *testing.T, e *env)
		cfg   string
		want  string // "" = prepared
	}{
		{name: "own group", vf: 4, cfg: vfioCfg},
		{name: "shared group, netdev driver: no vfio, no check", vf: 2, cfg: `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":5}`},
		{name: "shared group", vf: 2, cfg: vfioCfg, want: "config field driver: vfio-pci for 0000:5e:00.3: IOMMU group 90 also holds 0000:5e:00.4"},
		{name: "no-IOMMU mode", vf: 4, cfg: vfioCfg, want: "config field driver: vfio-pci for 0000:5e:00.5: vfio runs in unsafe no-IOMMU mode",
			setup: func(t *testing.T, e *env) {
				p := filepath.Join(e.fix.Root, "sys/module/vfio/parameters/enable_unsafe_noiommu_mode")
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("Y\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e810 := sysfstest.E810()
			e810.VFs[2].IOMMUGroup, e810.VFs[3].IOMMUGroup = 90, 90
			e := newEnv(t, sysfstest.Topology{PFs: []sysfstest.PF{e810}})
			if tc.setup != nil {
				tc.setup(t, e)
			}
			dev := vfName(e, 0, tc.vf)
			err := prepare(t, e.d, newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", dev)}, opaque(tc.cfg)))["u"].Err
			if tc.want == "" {
				if err != nil {
					t.Fatalf("prepare: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "device "+dev) {
				t.Fatalf("err = %v, want one naming device %s and containing %q", err, dev, tc.want)
			}
			if steps := e.j.take(); len(steps) != 0 {
				t.Errorf("refused claim took steps: %v", steps)
			}
			if _, ok := e.d.State().Claim("u"); ok {
				t.Error("refused claim recorded")
			}
		})
	}
}
