//go:build vmtest

package vmtests

import (
	"testing"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// TestTestbed checks the VM is what every other test assumes: two igb PFs,
// four igbvf VFs each with a netdev, and the PFs reporting the VFs over
// netlink.
func TestTestbed(t *testing.T) {
	h, err := nlink.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, pf := range testbed(t) {
		if pf.IfName == "" {
			t.Errorf("PF %s has no netdev", pf.PCI)
			continue
		}
		if len(pf.VFs) != 4 {
			t.Errorf("PF %s: %d VFs, want 4", pf.IfName, len(pf.VFs))
		}
		for _, vf := range pf.VFs {
			if vf.Driver != "igbvf" || vf.IfName == "" {
				t.Errorf("PF %s VF %d (%s): driver %q netdev %q, want igbvf with a netdev", pf.IfName, vf.Index, vf.PCI, vf.Driver, vf.IfName)
			}
		}
		l, err := h.LinkByName(pf.IfName)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(l.Attrs().Vfs); got != len(pf.VFs) {
			t.Errorf("PF %s reports %d VFs over netlink, sysfs has %d", pf.IfName, got, len(pf.VFs))
		}
		t.Logf("PF %s (%s): %+v", pf.IfName, pf.PCI, pf.VFs)
	}
}
