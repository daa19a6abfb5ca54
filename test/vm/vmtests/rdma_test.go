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
	// without a PCI parent, and its verbs character device. This is the
	// layout sysfstest.SoftRDMA writes for the unit tests.
	if got := sysfsString(t, filepath.Join("/sys/class/infiniband", name, "parent")); got != vf.IfName {
		t.Errorf("%s's parent netdev is %q, want %s", name, got, vf.IfName)
	}
	if got := sysfsString(t, filepath.Join("/sys/class/infiniband", name, "ports/1/gid_attrs/ndevs/0")); got != vf.IfName {
		t.Errorf("%s's GID 0 netdev is %q, want %s", name, got, vf.IfName)
	}
	if got, err := filepath.EvalSymlinks(filepath.Join("/sys/class/infiniband", name)); err != nil || got != filepath.Join("/sys/devices/virtual/infiniband", name) {
		t.Errorf("/sys/class/infiniband/%s resolves to %q (%v), want it under /sys/devices/virtual/infiniband", name, got, err)
	}
	if _, err := os.Stat(filepath.Join("/sys/bus/pci/devices", vf.PCI, "infiniband", name)); err == nil {
		t.Errorf("%s is listed under the VF's infiniband/ folder too: the netdev-bound path is not what found it", name)
	}
	verbs := ""
	ents, _ := os.ReadDir("/sys/class/infiniband_verbs")
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join("/sys/class/infiniband_verbs", e.Name(), "ibdev")); err == nil && strings.TrimSpace(string(b)) == name {
			verbs = "/dev/infiniband/" + e.Name()
			real, err := filepath.EvalSymlinks(filepath.Join("/sys/class/infiniband_verbs", e.Name()))
			if want := filepath.Join("/sys/devices/virtual/infiniband_verbs", e.Name()); err != nil || real != want {
				t.Errorf("/sys/class/infiniband_verbs/%s resolves to %q (%v), want %s", e.Name(), real, err, want)
			}
		}
	}
	if fi, err := os.Stat(verbs); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("no uverbs character device for %s (%q): %v", name, verbs, err)
	}

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
	if !slices.Equal(devs, []string{name}) {
		t.Errorf("rdma.Devices(%s) = %v, want [%s]", vf.PCI, devs, name)
	}
	if !slices.Equal(d.RDMADevices, []string{name}) {
		t.Errorf("inventory: VF %s RDMA devices %v, want [%s]", vf.PCI, d.RDMADevices, name)
	}
	if !slices.Contains(chars, verbs) {
		t.Errorf("rdma.CharDevices(%s) = %v, want %s in it", vf.PCI, chars, verbs)
	}
	for _, c := range chars {
		if fi, err := os.Stat(c); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			t.Errorf("reported char device %s: not a character device (%v)", c, err)
		}
	}
	// Another VF of the same PF does not get it.
	_, other := vfFor(t, 1, 2)
	if o, err := rdma.Devices("/", other.PCI); err != nil || len(o) != 0 {
		t.Errorf("rdma.Devices of the other VF %s = %v, %v; want none", other.PCI, o, err)
	}
}
