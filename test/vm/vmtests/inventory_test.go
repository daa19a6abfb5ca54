//go:build vmtest

package vmtests

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// TestInventory scans the VM and compares every PF and VF with what sysfs
// and the PF's netlink VF info say, after giving one VF a non-default admin
// state so the scan has to read it back from the kernel.
func TestInventory(t *testing.T) {
	ctx := newCtx(t)
	h := hostHandle(t)
	pf, vf := vfFor(t, 0, 0)
	before := readRaw(t, h, pf, vf.Index)

	// Admin state the kernel must report back: MAC, VLAN+QoS, trust.
	pfl, err := h.LinkByName(pf.IfName)
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("02:5a:00:00:00:01")
	t.Cleanup(func() {
		_ = h.LinkSetVfVlanQosProto(pfl, vf.Index, before.Admin.Vlan, before.Admin.Qos, 0x8100)
		_ = h.LinkSetVfTrust(pfl, vf.Index, before.Admin.Trust != 0)
		_ = h.LinkSetVfHardwareAddr(pfl, vf.Index, before.Admin.Mac)
		waitRaw(t, h, pf, vf.Index, before, waitShort)
	})
	if err := h.LinkSetVfHardwareAddr(pfl, vf.Index, mac); err != nil {
		t.Fatalf("set VF MAC: %v", err)
	}
	if err := h.LinkSetVfVlanQosProto(pfl, vf.Index, 42, 5, 0x8100); err != nil {
		t.Fatalf("set VF vlan: %v", err)
	}
	if err := h.LinkSetVfTrust(pfl, vf.Index, true); err != nil {
		t.Fatalf("set VF trust: %v", err)
	}

	inv, err := inventory.Scan(ctx, inventory.Options{Root: "/", Netlink: h, AllowDefaultRoutePF: true})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	if len(inv.Excluded) > 0 {
		t.Errorf("scan excluded devices: %+v", inv.Excluded)
	}
	wantDevices := 0
	for _, bpf := range testbed(t) {
		wantDevices += 1 + len(bpf.VFs)
		d, ok := inv.Find(inventory.DeviceName(bpf.PCI))
		if !ok {
			t.Errorf("PF %s (%s) missing from the scan", bpf.IfName, bpf.PCI)
			continue
		}
		checkPF(t, d, bpf)
		pl, err := h.LinkByName(bpf.IfName)
		if err != nil {
			t.Fatal(err)
		}
		for _, bvf := range bpf.VFs {
			d, ok := inv.Find(inventory.DeviceName(bvf.PCI))
			if !ok {
				t.Errorf("VF %d of %s (%s) missing from the scan", bvf.Index, bpf.IfName, bvf.PCI)
				continue
			}
			checkVF(t, d, bpf, bvf)
			// Admin state as the PF reports it right now.
			for _, vi := range pl.Attrs().Vfs {
				if vi.ID != bvf.Index {
					continue
				}
				if d.Admin == nil {
					t.Errorf("%s: no admin state", d.Name)
					break
				}
				if d.Admin.MAC != adminMAC(vi.Mac) || d.Admin.VLAN != vi.Vlan || d.Admin.QoS != vi.Qos ||
					d.Admin.SpoofChk != vi.Spoofchk || d.Admin.Trust != (vi.Trust != 0) {
					t.Errorf("%s: admin state %+v, PF reports %+v", d.Name, *d.Admin, vi)
				}
			}
		}
	}
	if len(inv.Devices) != wantDevices {
		t.Errorf("scan found %d devices, want %d (2 PFs and their VFs)", len(inv.Devices), wantDevices)
	}

	d, _ := inv.Find(inventory.DeviceName(vf.PCI))
	if d != nil && d.Admin != nil {
		got := *d.Admin
		if got.MAC != mac.String() || got.VLAN != 42 || got.QoS != 5 || !got.Trust {
			t.Errorf("VF %s admin state %+v, want mac %s vlan 42 qos 5 trust on", vf.PCI, got, mac)
		}
	}
}

func checkPF(t *testing.T, d *inventory.Device, pf bedPF) {
	t.Helper()
	want := map[string][2]string{
		"kind":      {string(d.Kind), string(inventory.KindPF)},
		"pci":       {d.PCIAddress, pf.PCI},
		"pfPci":     {d.PFPCIAddress, pf.PCI},
		"ifName":    {d.IfName, pf.IfName},
		"driver":    {d.Driver, "igb"},
		"vendor":    {d.Vendor, "8086"},
		"deviceID":  {d.DeviceID, "10c9"}, // 82576
		"linkType":  {string(d.LinkType), string(inventory.LinkTypeEthernet)},
		"numVfs":    {itoa(d.NumVFs), itoa(len(pf.VFs))},
		"totalVfs":  {itoa(d.TotalVFs), "7"},
		"vfIndex":   {itoa(d.VFIndex), "-1"},
		"mac":       {d.MAC, sysfsString(t, "/sys/class/net/"+pf.IfName+"/address")},
		"iommuGrp":  {d.IOMMUGroup, readLink(t, filepath.Join("/sys/bus/pci/devices", pf.PCI, "iommu_group"))},
		"mtu>0":     {boolStr(d.MTU > 0), "true"},
		"name":      {d.Name, inventory.DeviceName(pf.PCI)},
		"nodeGUID":  {d.NodeGUID, ""},
		"rdmaCount": {itoa(len(d.RDMADevices)), "0"},
	}
	for k, v := range want {
		if v[0] != v[1] {
			t.Errorf("PF %s %s = %q, want %q", pf.IfName, k, v[0], v[1])
		}
	}
}

func checkVF(t *testing.T, d *inventory.Device, pf bedPF, vf bedVF) {
	t.Helper()
	want := map[string][2]string{
		"kind":     {string(d.Kind), string(inventory.KindVF)},
		"pci":      {d.PCIAddress, vf.PCI},
		"pfPci":    {d.PFPCIAddress, pf.PCI},
		"pfName":   {d.PFName, pf.IfName},
		"vfIndex":  {itoa(d.VFIndex), itoa(vf.Index)},
		"driver":   {d.Driver, vf.Driver},
		"ifName":   {d.IfName, vf.IfName},
		"vendor":   {d.Vendor, "8086"},
		"deviceID": {d.DeviceID, "10ca"}, // 82576 VF
		"linkType": {string(d.LinkType), string(inventory.LinkTypeEthernet)},
		"iommuGrp": {d.IOMMUGroup, readLink(t, filepath.Join("/sys/bus/pci/devices", vf.PCI, "iommu_group"))},
	}
	if vf.IfName != "" {
		want["mac"] = [2]string{d.MAC, sysfsString(t, "/sys/class/net/"+vf.IfName+"/address")}
	}
	for k, v := range want {
		if v[0] != v[1] {
			t.Errorf("VF %d of %s: %s = %q, want %q", vf.Index, pf.IfName, k, v[0], v[1])
		}
	}
}

func sysfsString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return strings.TrimSpace(string(b))
}

// adminMAC is the inventory's convention for a VF admin MAC: "" when the PF
// reports none (all zeros).
func adminMAC(m net.HardwareAddr) string {
	for _, b := range m {
		if b != 0 {
			return m.String()
		}
	}
	return ""
}
