//go:build vmtest

package vmtests

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sriov-dra/sriov-dra/pkg/rdma"
)

// TestRXEOnVF creates a soft-RoCE (rxe) RDMA device on a real VF netdev
// and wants it found as that VF's RDMA device — by pkg/rdma and by the
// inventory — with character devices that exist for CDI.
func TestRXEOnVF(t *testing.T) {
	ctx := newCtx(t)
	h := hostHandle(t)
	pf, vf := vfFor(t, 1, 1)
	before := readRaw(t, h, pf, vf.Index)
	t.Cleanup(func() { waitRaw(t, h, pf, vf.Index, before, waitShort) }) // runs last
	setVFUp(t, h, vf.IfName)

	const name = "rxe_vmt"
	if err := h.RdmaLinkAdd(name, "rxe", vf.IfName); err != nil {
		t.Fatalf("rdma link add %s type rxe netdev %s: %v", name, vf.IfName, err)
	}
	t.Cleanup(func() {
		if err := h.RdmaLinkDel(name); err != nil {
			t.Errorf("rdma link del %s: %v", name, err)
		}
	})

	// What the kernel made: the RDMA device, bound to the VF's netdev,
	// and its verbs character device.
	if got := sysfsString(t, filepath.Join("/sys/class/infiniband", name, "parent")); got != vf.IfName {
		t.Errorf("%s's parent netdev is %q, want %s", name, got, vf.IfName)
	}
	verbs := ""
	ents, _ := os.ReadDir("/sys/class/infiniband_verbs")
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join("/sys/class/infiniband_verbs", e.Name(), "ibdev")); err == nil && strings.TrimSpace(string(b)) == name {
			verbs = "/dev/infiniband/" + e.Name()
		}
	}
	if fi, err := os.Stat(verbs); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("no uverbs character device for %s (%q): %v", name, verbs, err)
	}
	_, pciParent := os.Stat(filepath.Join("/sys/bus/pci/devices", vf.PCI, "infiniband", name))

	devs, err := rdma.Devices("/", vf.PCI)
	if err != nil {
		t.Fatal(err)
	}
	d := scanDevice(t, ctx, h, vf.PCI)
	chars, err := rdma.CharDevices("/", vf.PCI)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rdma.Devices %v, inventory %v, rdma.CharDevices %v, kernel verbs node %s", devs, d.RDMADevices, chars, verbs)
	if pciParent != nil && len(devs) == 0 && len(d.RDMADevices) == 0 {
		// rxe hangs off the netdev, not the PCI function: there is no
		// <vf>/infiniband/ entry, and pkg/rdma and pkg/inventory look only
		// there (as they should for mlx5, whose RDMA devices are PCI
		// children). Mapping netdev-bound RDMA devices is not built yet.
		t.Skipf("GAP: rxe device %s on %s has no PCI parent and pkg/rdma/pkg/inventory only list <pci>/infiniband/: netdev-bound (soft) RDMA devices are not mapped to their VF yet", name, vf.IfName)
	}
	if !slices.Contains(devs, name) {
		t.Errorf("rdma.Devices(%s) = %v, want %s in it", vf.PCI, devs, name)
	}
	if !slices.Contains(d.RDMADevices, name) {
		t.Errorf("inventory: VF %s RDMA devices %v, want %s in it", vf.PCI, d.RDMADevices, name)
	}
	if !slices.Contains(chars, verbs) {
		t.Errorf("rdma.CharDevices(%s) = %v, want %s in it", vf.PCI, chars, verbs)
	}
	for _, c := range chars {
		if fi, err := os.Stat(c); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			t.Errorf("reported char device %s: not a character device (%v)", c, err)
		}
	}
}
