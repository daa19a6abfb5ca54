//go:build vmtest

package vmtests

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

// TestVFIOBindRestore binds a real VF to vfio-pci, checks the device nodes
// reported for CDI exist and the inventory shows the VF without a netdev
// and with its IOMMU group, then gives it back to igbvf.
func TestVFIOBindRestore(t *testing.T) {
	ctx := newCtx(t)
	h := hostHandle(t)
	pf, vf := vfFor(t, 1, 0)
	if _, err := os.Stat(filepath.Join("/sys/bus/pci/devices", vf.PCI, "iommu_group")); err != nil {
		if _, err := os.Stat("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode"); err != nil {
			t.Skip("booted without an IOMMU (VMTEST_IOMMU=0) and this kernel has no vfio no-IOMMU mode (CONFIG_VFIO_NOIOMMU is off in Debian's 6.12): vfio-pci cannot bind")
		}
	}
	before := readRaw(t, h, pf, vf.Index)

	b, err := vfconfig.BindVFIO(ctx, "/", vf.PCI)
	if err != nil {
		t.Fatalf("bind %s to vfio-pci: %v", vf.PCI, err)
	}
	t.Cleanup(func() { _ = vfconfig.UnbindVFIO(ctx, "/", vf.PCI, b.OriginalDriver) })
	t.Logf("binding: %+v", b)
	if b.OriginalDriver != "igbvf" {
		t.Errorf("original driver %q, want igbvf", b.OriginalDriver)
	}
	if d := readLink(t, filepath.Join("/sys/bus/pci/devices", vf.PCI, "driver")); d != vfconfig.VFIODriver {
		t.Errorf("driver after bind %q, want %s", d, vfconfig.VFIODriver)
	}
	group := readLink(t, filepath.Join("/sys/bus/pci/devices", vf.PCI, "iommu_group"))
	if b.IOMMUGroup != group {
		t.Errorf("reported IOMMU group %q, sysfs has %q", b.IOMMUGroup, group)
	}
	if len(b.DeviceNodes) < 2 {
		t.Errorf("device nodes %v: want the group node and /dev/vfio/vfio", b.DeviceNodes)
	}
	for _, n := range b.DeviceNodes {
		fi, err := os.Stat(n)
		if err != nil {
			t.Errorf("reported device node: %v", err)
			continue
		}
		if fi.Mode()&os.ModeCharDevice == 0 {
			t.Errorf("%s is not a character device (%v)", n, fi.Mode())
		}
	}

	d := scanDevice(t, ctx, h, vf.PCI)
	if d.Driver != vfconfig.VFIODriver || d.IfName != "" || d.IOMMUGroup != group || d.VFIndex != vf.Index {
		t.Errorf("inventory of the vfio VF: driver %q ifName %q iommuGroup %q vfIndex %d; want %s, no netdev, group %q, %d",
			d.Driver, d.IfName, d.IOMMUGroup, d.VFIndex, vfconfig.VFIODriver, group, vf.Index)
	}

	if err := vfconfig.UnbindVFIO(ctx, "/", vf.PCI, b.OriginalDriver); err != nil {
		t.Fatalf("unbind from vfio-pci: %v", err)
	}
	// igbvf takes the PF's admin MAC at probe, or makes up a random one
	// when the PF has none: with no admin MAC the netdev MAC after a
	// rebind is new, whoever unbinds it. Everything else is as before.
	want := before
	if adminMAC(before.Admin.Mac) == "" {
		want.MAC = waitNetdev(t, h, pf, vf.Index)
		if want.MAC != before.MAC {
			t.Logf("netdev MAC after the rebind %s, before %s: the PF has no admin MAC for VF %d, so igbvf chose a random one at probe; vfconfig.RestoreNetdev (called by Unprepare, checked by TestNodeLifecycleVFIO) puts it back", want.MAC, before.MAC, vf.Index)
		}
	}
	waitRaw(t, h, pf, vf.Index, want, waitShort)
	// Idempotent.
	if err := vfconfig.UnbindVFIO(ctx, "/", vf.PCI, b.OriginalDriver); err != nil {
		t.Fatalf("second unbind: %v", err)
	}
	waitRaw(t, h, pf, vf.Index, want, waitShort)
}
