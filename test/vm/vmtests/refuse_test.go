//go:build vmtest

package vmtests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

// TestNodeRefusesNetdeviceOnVFIOBoundVF: a real VF bound to vfio-pci
// (outside any claim) requested with the default config (driver
// netdevice) fails NodePrepareResources with the device and the config
// field named, and nothing on the VF changes; before, Prepare succeeded
// and the pod failed later at sandbox creation with no netdev to move.
func TestNodeRefusesNetdeviceOnVFIOBoundVF(t *testing.T) {
	h := hostHandle(t)
	ctx := newCtx(t)
	pf, vf := vfFor(t, 0, 4)
	if _, err := os.Stat(filepath.Join("/sys/bus/pci/devices", vf.PCI, "iommu_group")); err != nil {
		t.Skip("booted without an IOMMU (VMTEST_IOMMU=0): vfio-pci cannot bind with this kernel")
	}
	before := readRaw(t, h, pf, vf.Index)
	inv, err := inventory.Scan(ctx, inventory.Options{Root: "/", Netlink: h, AllowDefaultRoutePF: true})
	if err != nil {
		t.Fatal(err)
	}
	dev, ok := inv.Find(inventory.DeviceName(vf.PCI))
	if !ok {
		t.Fatalf("VF %s not in the inventory", vf.PCI)
	}
	snap, err := vfconfig.TakeSnapshot(ctx, h, "/", *dev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vfconfig.BindVFIO(ctx, "/", vf.PCI); err != nil {
		t.Fatalf("bind %s to vfio-pci: %v", vf.PCI, err)
	}
	t.Cleanup(func() {
		if err := vfconfig.UnbindVFIO(ctx, "/", vf.PCI, snap.Driver); err != nil {
			t.Errorf("give %s back to %s: %v", vf.PCI, snap.Driver, err)
			return
		}
		if err := vfconfig.RestoreNetdev(ctx, h, "/", snap); err != nil {
			t.Errorf("restore the netdev of %s: %v", vf.PCI, err)
		}
		waitRaw(t, h, pf, vf.Index, before, waitShort)
	})
	bound := readRaw(t, h, pf, vf.Index)

	devName := inventory.DeviceName(vf.PCI)
	claim := vfClaim("netdev-on-vfio", "5b7d9f1a-3c5e-4a7b-8d9f-1a3c5e7b9d0f", types.UID("8e0a2c4e-6f8a-4b0c-9e1a-3c5e7a9b1d2f"), devName,
		`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":30}`)
	n := startNode(t, h, claim)
	n.published(devName)

	ref := []*drapb.Claim{{Namespace: claim.Namespace, Name: claim.Name, Uid: string(claim.UID)}}
	resp, err := n.dra.NodePrepareResources(n.ctx, &drapb.NodePrepareResourcesRequest{Claims: ref})
	if err != nil {
		t.Fatalf("NodePrepareResources: %v", err)
	}
	msg := resp.Claims[string(claim.UID)].GetError()
	t.Logf("NodePrepareResources error: %s", msg)
	for _, want := range []string{"device " + devName, "config field driver", "it is bound to vfio-pci"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if c := len(n.drv.State().Claims()); c != 0 {
		t.Errorf("%d claims recorded after the refusal", c)
	}
	// Nothing changed: still vfio-pci, the PF's VF info (no VLAN 30) as it was.
	waitRaw(t, h, pf, vf.Index, bound, waitShort)
}
