//go:build vmtest

package vmtests

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// The VM's test bed, read straight from sysfs (independently of
// pkg/inventory, so the inventory test has something to compare with).

type bedVF struct {
	PCI    string
	Index  int
	Driver string
	IfName string // "" when the VF has no netdev (vfio-pci)
}

type bedPF struct {
	IfName string
	PCI    string
	VFs    []bedVF
}

func readLink(t *testing.T, p string) string {
	t.Helper()
	s, err := os.Readlink(p)
	if err != nil {
		if os.IsNotExist(err) {
			return ""
		}
		t.Fatalf("readlink %s: %v", p, err)
	}
	return filepath.Base(s)
}

func pciNetdev(t *testing.T, pci string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("/sys/bus/pci/devices", pci, "net"))
	if err != nil || len(ents) == 0 {
		return ""
	}
	return ents[0].Name()
}

// testbed returns the igb PFs sorted by PCI address, each with its VFs by index.
func testbed(t *testing.T) []bedPF {
	t.Helper()
	devs, err := os.ReadDir("/sys/bus/pci/devices")
	if err != nil {
		t.Fatalf("list PCI devices: %v", err)
	}
	var pfs []bedPF
	for _, d := range devs {
		dir := filepath.Join("/sys/bus/pci/devices", d.Name())
		if _, err := os.Stat(filepath.Join(dir, "sriov_totalvfs")); err != nil {
			continue
		}
		if readLink(t, filepath.Join(dir, "driver")) != "igb" {
			continue
		}
		pf := bedPF{PCI: d.Name(), IfName: pciNetdev(t, d.Name())}
		links, _ := filepath.Glob(filepath.Join(dir, "virtfn*"))
		for _, l := range links {
			idx, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(l), "virtfn"))
			if err != nil {
				t.Fatalf("bad virtfn link %s", l)
			}
			vfPCI := readLink(t, l)
			pf.VFs = append(pf.VFs, bedVF{
				PCI:    vfPCI,
				Index:  idx,
				Driver: readLink(t, filepath.Join("/sys/bus/pci/devices", vfPCI, "driver")),
				IfName: pciNetdev(t, vfPCI),
			})
		}
		sort.Slice(pf.VFs, func(i, j int) bool { return pf.VFs[i].Index < pf.VFs[j].Index })
		pfs = append(pfs, pf)
	}
	sort.Slice(pfs, func(i, j int) bool { return pfs[i].PCI < pfs[j].PCI })
	if len(pfs) != 2 {
		t.Fatalf("test bed: want 2 igb PFs, found %d: %+v", len(pfs), pfs)
	}
	return pfs
}

// vfFor returns VF index idx of PF number pfNum (0 or 1). Each test uses
// its own VF so that one test's leftovers cannot mask another's result.
func vfFor(t *testing.T, pfNum, idx int) (bedPF, bedVF) {
	t.Helper()
	pfs := testbed(t)
	pf := pfs[pfNum]
	if idx >= len(pf.VFs) {
		t.Fatalf("PF %s has %d VFs, test wants VF %d", pf.IfName, len(pf.VFs), idx)
	}
	return pf, pf.VFs[idx]
}

// TestTestbed checks the VM is what every other test assumes: two igb PFs,
// six igbvf VFs each with a netdev, and the PFs reporting the VFs over
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
		if len(pf.VFs) != 6 {
			t.Errorf("PF %s: %d VFs, want 6", pf.IfName, len(pf.VFs))
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
