package inventory_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// TestScanBrokenSysfs: a missing, garbled or unreadable file never fails
// the scan: the device is excluded with a reason, or the attribute is left
// out, and everything else is still listed.
func TestScanBrokenSysfs(t *testing.T) {
	const (
		pf  = "0000:02:00.0" // IGB, 7 VFs
		vf2 = "0000:02:00.3"
	)
	write := func(rel, content string) func(t *testing.T, h *sysfstest.Fixture) {
		return func(t *testing.T, h *sysfstest.Fixture) {
			t.Helper()
			if err := os.WriteFile(filepath.Join(h.Root, "sys", rel), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	remove := func(rel string) func(t *testing.T, h *sysfstest.Fixture) {
		return func(t *testing.T, h *sysfstest.Fixture) {
			t.Helper()
			if err := os.RemoveAll(filepath.Join(h.Root, "sys", rel)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// dirInstead replaces a file by a directory: open works, read fails (EISDIR).
	dirInstead := func(rel string) func(t *testing.T, h *sysfstest.Fixture) {
		return func(t *testing.T, h *sysfstest.Fixture) {
			t.Helper()
			remove(rel)(t, h)
			if err := os.Mkdir(filepath.Join(h.Root, "sys", rel), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	pfDir := "bus/pci/devices/" + pf
	vfDir := "bus/pci/devices/" + vf2
	type want struct {
		devices  int    // listed devices (IGB: 1 PF + 7 VFs + the X710 PF = 9)
		excluded string // PCI address excluded, "" for none
		reason   string
		check    func(t *testing.T, inv *inventory.Inventory)
	}
	cases := []struct {
		name   string
		break_ func(t *testing.T, h *sysfstest.Fixture)
		want   want
	}{
		{"PF vendor missing", remove(pfDir + "/vendor"), want{devices: 1, excluded: pf, reason: "missing vendor; its VFs are not scanned"}},
		{"PF vendor garbled", write(pfDir+"/vendor", "0xZZZZ\n"), want{devices: 1, excluded: pf, reason: "garbled vendor"}},
		{"PF device unreadable", dirInstead(pfDir + "/device"), want{devices: 1, excluded: pf, reason: "unreadable device"}},
		{"PF sriov_totalvfs garbled", write(pfDir+"/sriov_totalvfs", "lots\n"), want{devices: 1, excluded: pf, reason: "garbled sriov_totalvfs"}},
		{"PF sriov_totalvfs 0", write(pfDir+"/sriov_totalvfs", "0\n"), want{devices: 1, excluded: pf, reason: "disabled in the device's firmware"}},
		{"PF sriov_numvfs garbled: VFs counted from virtfn links", write(pfDir+"/sriov_numvfs", "\x00\x01"), want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if n := mustFind(t, inv, pf).NumVFs; n != 7 {
				t.Errorf("numVfs = %d, want 7 counted", n)
			}
		}}},
		// Hostile counts: refused at once (the scan must not spin over
		// them), with the file and value in the reason.
		{"PF sriov_numvfs 2000000000 with sriov_totalvfs 7", write(pfDir+"/sriov_numvfs", "2000000000\n"), want{devices: 1, excluded: pf, reason: "garbled sriov_numvfs: 2000000000 is more than sriov_totalvfs 7; the PF and its VFs are not scanned"}},
		{"PF sriov_numvfs 8 with sriov_totalvfs 7", write(pfDir+"/sriov_numvfs", "8\n"), want{devices: 1, excluded: pf, reason: "garbled sriov_numvfs: 8 is more than sriov_totalvfs 7"}},
		{"PF sriov_totalvfs and sriov_numvfs 2000000000", func(t *testing.T, h *sysfstest.Fixture) {
			write(pfDir+"/sriov_totalvfs", "2000000000\n")(t, h)
			write(pfDir+"/sriov_numvfs", "2000000000\n")(t, h)
		}, want{devices: 1, excluded: pf, reason: "garbled sriov_totalvfs: 2000000000 is more than an SR-IOV PF can have (65535)"}},
		{"PF sriov_numvfs garbled: virtfn links counted up to sriov_totalvfs", func(t *testing.T, h *sysfstest.Fixture) {
			write(pfDir+"/sriov_totalvfs", "3\n")(t, h)
			write(pfDir+"/sriov_numvfs", "many\n")(t, h)
		}, want{devices: 5, check: func(t *testing.T, inv *inventory.Inventory) {
			if n := mustFind(t, inv, pf).NumVFs; n != 3 {
				t.Errorf("numVfs = %d, want 3 (counting stops at sriov_totalvfs)", n)
			}
		}}},
		{"PF numa_node garbled", write(pfDir+"/numa_node", "zero\n"), want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if n := mustFind(t, inv, pf).NUMANode; n != inventory.NUMAUnknown {
				t.Errorf("numa = %d, want unknown", n)
			}
		}}},
		{"PF subsystem ids missing", remove(pfDir + "/subsystem_vendor"), want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, pf); d.SubsystemVendor != "" || d.SubsystemDevice != "1521" {
				t.Errorf("subsystem %q:%q, want vendor left out", d.SubsystemVendor, d.SubsystemDevice)
			}
		}}},
		{"PF netdev address garbled", write(pfDir+"/net/enp2s0f0/address", "not-a-mac\n"), want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, pf); d.MAC != "" || d.IfName != "enp2s0f0" || d.MTU != 1500 {
				t.Errorf("mac %q ifName %q mtu %d, want only the MAC left out", d.MAC, d.IfName, d.MTU)
			}
		}}},
		{"PF netdev type garbled", write(pfDir+"/net/enp2s0f0/type", "ether\n"), want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, pf); d.LinkType != inventory.LinkTypeUnknown {
				t.Errorf("link type %q, want unknown", d.LinkType)
			}
		}}},
		{"PF speed -1 (link down)", write(pfDir+"/net/enp2s0f0/speed", "-1\n"), want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, pf); d.SpeedMbps != 0 {
				t.Errorf("speed %d, want left out", d.SpeedMbps)
			}
		}}},
		{"PF net folder unreadable: netdev attributes left out", func(t *testing.T, h *sysfstest.Fixture) {
			remove(pfDir+"/net")(t, h)
			write(pfDir+"/net", "x")(t, h)
		}, want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, pf); d.IfName != "enp2s0f0" || d.MAC != "" || d.MTU != 0 {
				t.Errorf("ifName %q mac %q mtu %d, want the name from /sys/class/net and nothing else", d.IfName, d.MAC, d.MTU)
			}
		}}},
		{"no /sys/class: netdevs and RDMA devices from the device folders", func(t *testing.T, h *sysfstest.Fixture) {
			remove("class")(t, h)
		}, want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, vf2); d.IfName != "enp2s0f0v2" || d.MAC == "" {
				t.Errorf("VF ifName %q mac %q", d.IfName, d.MAC)
			}
		}}},
		{"no /sys/class, PF net is not a directory", func(t *testing.T, h *sysfstest.Fixture) {
			remove("class")(t, h)
			remove(pfDir+"/net")(t, h)
			write(pfDir+"/net", "x")(t, h)
		}, want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, pf); d.IfName != "" {
				t.Errorf("ifName %q, want none", d.IfName)
			}
		}}},
		{"class/net entries that are not PCI netdevs are ignored", func(t *testing.T, h *sysfstest.Fixture) {
			for name, target := range map[string]string{
				"lo":    "../../devices/virtual/net/lo",
				"weird": "../../devices/pci0000:00/0000:00:01.0/0000:02:00.1/nets/weird",
				"other": "../../devices/pci0000:00/0000:00:01.0/0000:02:00.1/net/not-other",
			} {
				if err := os.Symlink(target, filepath.Join(h.Root, "sys/class/net", name)); err != nil {
					t.Fatal(err)
				}
			}
			write("class/net/file", "x")(t, h)
		}, want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, "0000:02:00.1"); !reflect.DeepEqual(d.IfNames, []string{"enp2s0f0v0"}) {
				t.Errorf("VF 0 ifNames %v", d.IfNames)
			}
		}}},
		{"PF driver link dangling still names the driver", func(t *testing.T, h *sysfstest.Fixture) {
			remove("bus/pci/drivers/igb")(t, h)
		}, want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, pf); d.Driver != "igb" {
				t.Errorf("driver %q, want igb", d.Driver)
			}
		}}},
		{"PF unbound", remove(pfDir + "/driver"), want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, pf); d.Driver != "" {
				t.Errorf("driver %q, want none", d.Driver)
			}
		}}},
		{"PF removed before the scan", func(t *testing.T, h *sysfstest.Fixture) {
			remove(strings.TrimPrefix(h.DevicePath(pf), h.Root+"/sys/"))(t, h)
		}, want{devices: 1}},
		{"sriov_vf_device missing: VF IDs from the VFs", remove(pfDir + "/sriov_vf_device"), want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, vf2); d.DeviceID != "1520" {
				t.Errorf("VF device %q, want 1520", d.DeviceID)
			}
		}}},
		{"sriov_vf_device missing and VF device garbled", func(t *testing.T, h *sysfstest.Fixture) {
			remove(pfDir+"/sriov_vf_device")(t, h)
			write(vfDir+"/device", "0x\n")(t, h)
		}, want{devices: 8, excluded: vf2, reason: "garbled device"}},
		{"VF numa_node unreadable", dirInstead(vfDir + "/numa_node"), want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, vf2); d.NUMANode != inventory.NUMAUnknown || d.IfName != "enp2s0f0v2" {
				t.Errorf("numa %d ifName %q, want unknown NUMA and the rest", d.NUMANode, d.IfName)
			}
		}}},
		{"VF directory gone, virtfn link dangling", func(t *testing.T, h *sysfstest.Fixture) {
			remove(strings.TrimPrefix(h.DevicePath(vf2), h.Root+"/sys/"))(t, h)
		}, want{devices: 8, excluded: vf2, reason: "disappeared"}},
		{"VF gone with its virtfn link", func(t *testing.T, h *sysfstest.Fixture) {
			remove(strings.TrimPrefix(h.DevicePath(vf2), h.Root+"/sys/"))(t, h)
			remove(pfDir+"/virtfn2")(t, h)
		}, want{devices: 8, excluded: pf, reason: "VF 2: virtfn2: device disappeared"}},
		{"virtfn link to garbage", func(t *testing.T, h *sysfstest.Fixture) {
			remove(pfDir+"/virtfn2")(t, h)
			if err := os.Symlink("../not-a-device", filepath.Join(h.Root, "sys", pfDir, "virtfn2")); err != nil {
				t.Fatal(err)
			}
		}, want{devices: 8, excluded: pf, reason: "not a PCI device"}},
		{"VF bus link dangling: VF still read through virtfn", remove("bus/pci/devices/" + vf2), want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, vf2); d.PCIeRoot != "pci0000:00" || d.Driver != "igbvf" {
				t.Errorf("pcieRoot %q driver %q", d.PCIeRoot, d.Driver)
			}
		}}},
		{"VF iommu_group missing", remove(vfDir + "/iommu_group"), want{devices: 9, check: func(t *testing.T, inv *inventory.Inventory) {
			if d := mustFind(t, inv, vf2); d.IOMMUGroup != "" {
				t.Errorf("iommu group %q, want none", d.IOMMUGroup)
			}
		}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB(), sysfstest.SRIOVDisabled()}})
			tc.break_(t, h)
			start := time.Now()
			inv := scan(t, h, nil)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("scan took %v: a broken value made it spin", d)
			}
			if len(inv.Devices) != tc.want.devices {
				t.Errorf("%d devices listed, want %d (excluded %v)", len(inv.Devices), tc.want.devices, inv.Excluded)
			}
			if tc.want.excluded == "" {
				if len(inv.Excluded) != 0 {
					t.Errorf("excluded %v, want none", inv.Excluded)
				}
			} else if len(inv.Excluded) != 1 || inv.Excluded[0].PCIAddress != tc.want.excluded || !strings.Contains(inv.Excluded[0].Reason, tc.want.reason) {
				t.Errorf("excluded %v, want %s with a reason containing %q", inv.Excluded, tc.want.excluded, tc.want.reason)
			}
			if tc.want.check != nil {
				tc.want.check(t, inv)
			}
		})
	}
}

func TestScanBrokenInfiniBand(t *testing.T) {
	const pf = "0000:3b:00.0"
	ib := func(h *sysfstest.Fixture) string { return filepath.Join(h.DevicePath(pf), "infiniband", "mlx5_0") }
	cases := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		check  func(t *testing.T, d inventory.Device)
	}{
		{"node_guid garbled", func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "node_guid"), "0c42:a103\n") },
			func(t *testing.T, d inventory.Device) {
				if d.NodeGUID != "" || d.PortGUID == "" {
					t.Errorf("node GUID %q port GUID %q, want only the node GUID left out", d.NodeGUID, d.PortGUID)
				}
			}},
		{"gid garbled", func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "ports/1/gids/0"), "fe80::1\n") },
			func(t *testing.T, d inventory.Device) {
				if d.PortGUID != "" || d.NodeGUID == "" {
					t.Errorf("port GUID %q node GUID %q, want only the port GUID left out", d.PortGUID, d.NodeGUID)
				}
			}},
		{"one pkey garbled, one duplicate", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "ports/1/pkeys/1"), "ffff\n")
			writeFile(t, filepath.Join(dir, "ports/1/pkeys/12"), "0xFFFF\n")
		}, func(t *testing.T, d inventory.Device) {
			if strings.Join(d.PKeys, ",") != "0xffff,0x8002" {
				t.Errorf("pkeys %v, want 0xffff,0x8002", d.PKeys)
			}
		}},
		{"pkey table missing", func(t *testing.T, dir string) { removeAll(t, filepath.Join(dir, "ports/1/pkeys")) },
			func(t *testing.T, d inventory.Device) {
				if d.PKeys != nil || d.RDMADevice() != "mlx5_0" {
					t.Errorf("pkeys %v rdma %q, want no pkeys, RDMA kept", d.PKeys, d.RDMADevice())
				}
			}},
		{"pkey table order is numeric", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "ports/1/pkeys/10"), "0x8010\n")
			writeFile(t, filepath.Join(dir, "ports/1/pkeys/2"), "0x8003\n")
		}, func(t *testing.T, d inventory.Device) {
			if strings.Join(d.PKeys, ",") != "0xffff,0x8001,0x8003,0x8010" {
				t.Errorf("pkeys %v, want table order", d.PKeys)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.ConnectX6IB()}})
			tc.break_(t, ib(h))
			inv := scan(t, h, nil)
			if len(inv.Devices) != 9 || len(inv.Excluded) != 0 {
				t.Fatalf("%d devices, excluded %v", len(inv.Devices), inv.Excluded)
			}
			tc.check(t, mustFind(t, inv, pf))
		})
	}
}

func writeFile(t *testing.T, p, c string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
}

func removeAll(t *testing.T, p string) {
	t.Helper()
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
}

// TestScanDeviceRemovedMidScan removes a VF while the scan is between
// reading its PF and reading the VFs (the netlink lookup of the PF link is
// the hook), the way a driver reset or sriov_numvfs change races a scan.
func TestScanDeviceRemovedMidScan(t *testing.T) {
	for _, withLink := range []bool{false, true} {
		h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.E810()}})
		vf := h.Topology.PFs[0].VFs[5].PCIAddress
		vfDir := h.DevicePath(vf)
		virtfn := filepath.Join(h.DevicePath(h.Topology.PFs[0].PCIAddress), "virtfn5")
		removed := false
		h.Netlink.FailWith(func(c nlinktest.Call) error {
			if c.Method == "LinkByName" && !removed {
				removed = true
				if err := os.RemoveAll(vfDir); err != nil {
					t.Error(err)
				}
				if withLink {
					if err := os.Remove(virtfn); err != nil {
						t.Error(err)
					}
				}
			}
			return nil
		})
		inv := scan(t, h, nil)
		if !removed {
			t.Fatal("the scan never looked up the PF link")
		}
		if _, ok := inv.Find(inventory.DeviceName(vf)); ok {
			t.Errorf("removed VF %s still listed", vf)
		}
		if len(inv.Devices) != 16 || len(inv.Excluded) != 1 || !strings.Contains(inv.Excluded[0].Reason, "disappeared") {
			t.Errorf("withLink=%v: %d devices, excluded %v; want 16 and the VF as disappeared", withLink, len(inv.Devices), inv.Excluded)
		}
	}
}

// TestScanNeverFails garbles every file and dangles every symlink of a
// fixture, one at a time: the scan must neither fail nor panic, and the
// other PF must stay fully listed.
func TestScanNeverFails(t *testing.T) {
	pf := sysfstest.ConnectX6IB()
	pf.VFs = pf.VFs[:2]
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{pf, sysfstest.SRIOVDisabled()}})
	var paths []string
	devRoot := filepath.Join(h.Root, "sys/devices", pf.PCIeRoot)
	err := filepath.WalkDir(devRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 50 {
		t.Fatalf("only %d files in the fixture", len(paths))
	}
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		var restore func()
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			removeAll(t, p)
			if err := os.Symlink("../nowhere/"+filepath.Base(target)+"x", p); err != nil {
				t.Fatal(err)
			}
			restore = func() { removeAll(t, p); _ = os.Symlink(target, p) }
		} else {
			old, _ := os.ReadFile(p)
			writeFile(t, p, "\xff\xfe garbage \x00\n:::")
			restore = func() { writeFile(t, p, string(old)) }
		}
		inv, err := inventory.Scan(ktCtx(t), inventory.Options{Root: h.Root, Netlink: h.Netlink})
		if err != nil {
			t.Errorf("%s broken: Scan failed: %v", p, err)
		} else if _, ok := inv.Find(inventory.DeviceName("0000:af:00.0")); !ok {
			t.Errorf("%s broken: the other PF is gone", p)
		}
		restore()
	}
}
