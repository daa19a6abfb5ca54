package inventory_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2/ktesting"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

func scan(t *testing.T, h *sysfstest.Fixture, mod func(*inventory.Options)) *inventory.Inventory {
	t.Helper()
	opts := inventory.Options{Root: h.Root, Netlink: h.Netlink}
	if mod != nil {
		mod(&opts)
	}
	_, ctx := ktesting.NewTestContext(t)
	inv, err := inventory.Scan(ctx, opts)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if m := h.Netlink.MutatingCalls(); len(m) > 0 {
		t.Errorf("Scan changed netlink state: %v", m)
	}
	return inv
}

func ktCtx(t *testing.T) context.Context {
	_, ctx := ktesting.NewTestContext(t)
	return ctx
}

func mustFind(t *testing.T, inv *inventory.Inventory, pci string) inventory.Device {
	t.Helper()
	d, ok := inv.Find(inventory.DeviceName(pci))
	if !ok {
		t.Fatalf("device %s not in inventory (excluded: %v)", pci, inv.Excluded)
	}
	return *d
}

func linkType(arphrd int) inventory.LinkType {
	switch arphrd {
	case sysfstest.ARPHRDEther:
		return inventory.LinkTypeEthernet
	case sysfstest.ARPHRDInfiniBand:
		return inventory.LinkTypeInfiniBand
	}
	return inventory.LinkTypeUnknown
}

func nonZeroPKeys(ps []string) []string {
	var out []string
	for _, p := range ps {
		if p != "0x0000" {
			out = append(out, p)
		}
	}
	return out
}

// wantPF is the device a PF of the fixture must scan to, derived from the
// fixture's description (with its defaults filled in).
func wantPF(pf sysfstest.PF) inventory.Device {
	d := inventory.Device{
		Name: inventory.DeviceName(pf.PCIAddress), Kind: inventory.KindPF, PCIAddress: pf.PCIAddress,
		PFPCIAddress: pf.PCIAddress, PFName: pf.IfName, PFDriver: pf.Driver, VFIndex: -1,
		Vendor: pf.Vendor, DeviceID: pf.DeviceID, SubsystemVendor: pf.SubsystemVendor, SubsystemDevice: pf.SubsystemDevice,
		Driver: pf.Driver, NUMANode: pf.NUMANode, PCIeRoot: pf.PCIeRoot, IOMMUGroup: strconv.Itoa(pf.IOMMUGroup),
		LinkType: inventory.LinkTypeUnknown, TotalVFs: pf.TotalVFs, NumVFs: len(pf.VFs), EswitchMode: pf.EswitchMode,
	}
	if pf.IfName != "" {
		d.IfName, d.IfNames, d.LinkType = pf.IfName, []string{pf.IfName}, linkType(pf.LinkType)
		d.MTU, d.SpeedMbps, d.MAC = pf.MTU, pf.SpeedMbps, pf.MAC
	}
	if pf.RDMADevice != "" {
		d.RDMADevices, d.NodeGUID = []string{pf.RDMADevice}, pf.NodeGUID
		if pf.LinkType == sysfstest.ARPHRDInfiniBand {
			d.PortGUID, d.PKeys = pf.PortGUID, nonZeroPKeys(pf.PKeys)
		}
	}
	return d
}

func wantVF(pf sysfstest.PF, i int) inventory.Device {
	vf := pf.VFs[i]
	d := inventory.Device{
		Name: inventory.DeviceName(vf.PCIAddress), Kind: inventory.KindVF, PCIAddress: vf.PCIAddress,
		PFPCIAddress: pf.PCIAddress, PFName: pf.IfName, PFDriver: pf.Driver, VFIndex: i,
		Vendor: pf.Vendor, DeviceID: pf.VFDeviceID, Driver: vf.Driver, NUMANode: pf.NUMANode,
		PCIeRoot: pf.PCIeRoot, IOMMUGroup: strconv.Itoa(vf.IOMMUGroup), LinkType: linkType(pf.LinkType),
	}
	if vf.IfName != "" {
		d.IfName, d.IfNames, d.MAC = vf.IfName, []string{vf.IfName}, vf.MAC
	}
	if vf.RDMADevice != "" {
		d.RDMADevices = []string{vf.RDMADevice}
	}
	d.NodeGUID, d.PortGUID = vf.NodeGUID, vf.PortGUID
	if pf.IfName != "" {
		a := &inventory.VFAdminState{
			VLAN: vf.Admin.Vlan, QoS: vf.Admin.Qos, SpoofChk: vf.Admin.Spoofchk, Trust: vf.Admin.Trust == 1,
			MinTxRate: int(vf.Admin.MinTxRate), MaxTxRate: int(vf.Admin.MaxTxRate),
			LinkState: []string{"auto", "enable", "disable"}[vf.Admin.LinkState],
			NodeGUID:  vf.NodeGUID, PortGUID: vf.PortGUID,
		}
		if vf.Admin.Mac != nil && vf.Admin.Mac.String() != "00:00:00:00:00:00" {
			a.MAC = vf.Admin.Mac.String()
		}
		switch vf.Admin.VlanProto {
		case sysfstest.VLANProto8021Q:
			a.VLANProto = "802.1q"
		case sysfstest.VLANProto8021AD:
			a.VLANProto = "802.1ad"
		}
		d.Admin = a
	}
	return d
}

// TestScanFixtures checks every attribute of every device of each ready
// fixture, scanned alone and all together.
func TestScanFixtures(t *testing.T) {
	cases := []struct {
		name string
		topo sysfstest.Topology
	}{
		{"ConnectX6IB", sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.ConnectX6IB()}}},
		{"E810", sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.E810()}}},
		{"IGB", sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB()}}},
		{"SRIOVDisabled", sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.SRIOVDisabled()}}},
		{"Standard", sysfstest.Standard()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := sysfstest.New(t, tc.topo)
			inv := scan(t, h, nil)
			var want []inventory.Device
			for _, pf := range h.Topology.PFs {
				want = append(want, wantPF(pf))
				for i := range pf.VFs {
					want = append(want, wantVF(pf, i))
				}
			}
			if len(inv.Devices) != len(want) {
				t.Fatalf("got %d devices, want %d", len(inv.Devices), len(want))
			}
			for _, w := range want {
				got := mustFind(t, inv, w.PCIAddress)
				if !reflect.DeepEqual(got, w) {
					t.Errorf("device %s:\n got %+v\nwant %+v", w.PCIAddress, got, w)
					if got.Admin != nil && w.Admin != nil {
						t.Errorf("admin: got %+v want %+v", *got.Admin, *w.Admin)
					}
				}
			}
			for i := 1; i < len(inv.Devices); i++ {
				if inv.Devices[i-1].Name >= inv.Devices[i].Name {
					t.Errorf("devices not sorted by name: %s before %s", inv.Devices[i-1].Name, inv.Devices[i].Name)
				}
			}
			if len(inv.Excluded) != 0 || inv.Note != "" {
				t.Errorf("excluded %v note %q, want none", inv.Excluded, inv.Note)
			}
		})
	}
}

// TestScanLiterals pins values straight from the fixtures' documentation,
// so a mistake shared by the fixture defaults and wantPF/wantVF still shows.
func TestScanLiterals(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Standard())
	inv := scan(t, h, nil)
	ib := mustFind(t, inv, "0000:3b:00.0")
	e810 := mustFind(t, inv, "0000:5e:00.0")
	igb := mustFind(t, inv, "0000:02:00.0")
	off := mustFind(t, inv, "0000:af:00.0")
	ibvf0 := mustFind(t, inv, "0000:3b:00.1")
	ibvf7 := mustFind(t, inv, "0000:3b:01.0")
	vf1 := mustFind(t, inv, "0000:5e:00.2")
	vf3 := mustFind(t, inv, "0000:5e:00.4")
	vf4 := mustFind(t, inv, "0000:5e:00.5")
	vf5 := mustFind(t, inv, "0000:5e:00.6")
	vf7 := mustFind(t, inv, "0000:5e:01.0")
	vfio := mustFind(t, inv, "0000:5e:01.5")
	igbvf := mustFind(t, inv, "0000:02:00.1")
	checks := []struct {
		what      string
		got, want any
	}{
		{"IB PF name", ib.Name, "pci-0000-3b-00-0"},
		{"IB PF link type", ib.LinkType, inventory.LinkTypeInfiniBand},
		{"IB PF vendor:device", ib.Vendor + ":" + ib.DeviceID, "15b3:101b"},
		{"IB PF subsystem", ib.SubsystemVendor + ":" + ib.SubsystemDevice, "15b3:0007"},
		{"IB PF pcie root", ib.PCIeRoot, "pci0000:3a"},
		{"IB PF RDMA", ib.RDMADevice(), "mlx5_0"},
		{"IB PF node GUID", ib.NodeGUID, "0c:42:a1:03:00:ab:cd:00"},
		{"IB PF port GUID", ib.PortGUID, "0c:42:a1:03:00:ab:cd:00"},
		{"IB PF pkeys", ib.PKeys, []string{"0xffff", "0x8001", "0x8002"}},
		{"IB PF MTU", ib.MTU, 4092},
		{"IB PF speed", ib.SpeedMbps, 200000},
		{"IB PF VFs", [2]int{ib.NumVFs, ib.TotalVFs}, [2]int{8, 16}},
		{"IB PF eswitch", ib.EswitchMode, "legacy"},
		{"IB VF0 device", ibvf0.DeviceID, "101c"},
		{"IB VF0 RDMA", ibvf0.RDMADevice(), "mlx5_1"},
		{"IB VF0 node GUID", ibvf0.NodeGUID, "0c:42:a1:03:00:ab:cd:10"},
		{"IB VF0 port GUID", ibvf0.PortGUID, "0c:42:a1:03:00:ab:ce:10"},
		{"IB VF0 link state", ibvf0.Admin.LinkState, "enable"},
		{"IB VF0 link type", ibvf0.LinkType, inventory.LinkTypeInfiniBand},
		{"IB VF7 index", ibvf7.VFIndex, 7},
		{"IB VF7 no GUID", ibvf7.NodeGUID + ibvf7.PortGUID, ""},
		{"E810 numa", e810.NUMANode, 1},
		{"E810 MTU", e810.MTU, 9000},
		{"E810 driver", e810.Driver, "ice"},
		{"E810 no RDMA", len(e810.RDMADevices), 0},
		{"E810 VF1 vlan/qos/proto", [3]any{vf1.Admin.VLAN, vf1.Admin.QoS, vf1.Admin.VLANProto}, [3]any{100, 3, "802.1ad"}},
		{"E810 VF1 admin MAC", vf1.Admin.MAC, "02:00:5e:00:00:01"},
		{"E810 VF1 driver/ifname", vf1.Driver + "/" + vf1.IfName, "iavf/ens2f0v1"},
		{"E810 VF3 trust", vf3.Admin.Trust, true},
		{"E810 VF4 spoofchk", vf4.Admin.SpoofChk, false},
		{"E810 VF1 spoofchk", vf1.Admin.SpoofChk, true},
		{"E810 VF5 link state", vf5.Admin.LinkState, "disable"},
		{"E810 VF7 rates", [2]int{vf7.Admin.MinTxRate, vf7.Admin.MaxTxRate}, [2]int{100, 1000}},
		{"E810 vfio VF driver", vfio.Driver, "vfio-pci"},
		{"E810 vfio VF no netdev", vfio.IfName, ""},
		{"E810 vfio VF link type from PF", vfio.LinkType, inventory.LinkTypeEthernet},
		{"E810 vfio VF iommu group", vfio.IOMMUGroup != "", true},
		{"E810 vfio VF index", vfio.VFIndex, 12},
		{"IGB numa unknown", igb.NUMANode, inventory.NUMAUnknown},
		{"IGB speed", igb.SpeedMbps, 1000},
		{"IGB no eswitch", igb.EswitchMode, ""},
		{"IGB VF device/driver", igbvf.DeviceID + "/" + igbvf.Driver, "1520/igbvf"},
		{"IGB VF numa unknown", igbvf.NUMANode, inventory.NUMAUnknown},
		{"IGB VF admin MAC unset", igbvf.Admin.MAC, ""},
		{"disabled PF VFs", [2]int{off.NumVFs, off.TotalVFs}, [2]int{0, 64}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(h.Root, "dev/vfio", vfio.IOMMUGroup)); err != nil {
		t.Errorf("vfio VF group %s has no /dev/vfio node: %v", vfio.IOMMUGroup, err)
	}
}

func TestScanCallerVFNames(t *testing.T) {
	pf := sysfstest.IGB().WithVFNames("sdtest0", "", "sdtest2")
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{pf}})
	inv := scan(t, h, nil)
	for pci, want := range map[string]string{"0000:02:00.1": "sdtest0", "0000:02:00.2": "", "0000:02:00.3": "sdtest2", "0000:02:00.4": "enp2s0f0v3"} {
		if got := mustFind(t, inv, pci).IfName; got != want {
			t.Errorf("%s ifName = %q, want %q", pci, got, want)
		}
	}
}

func TestScanNoSRIOV(t *testing.T) {
	root := t.TempDir()
	// A plain NIC without SR-IOV: no sriov_totalvfs.
	dev := filepath.Join(root, "sys/devices/pci0000:00/0000:00:03.0")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dev, "vendor"), []byte("0x1af4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "sys/bus/pci/devices"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../devices/pci0000:00/0000:00:03.0", filepath.Join(root, "sys/bus/pci/devices/0000:00:03.0")); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Scan(ktCtx(t), inventory.Options{Root: root, Netlink: nlinktest.New()})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Devices) != 0 || !strings.Contains(inv.Note, inventory.NoteNoSRIOV) {
		t.Errorf("devices %v note %q, want none and %q", inv.Devices, inv.Note, inventory.NoteNoSRIOV)
	}
}

func TestScanOptionErrors(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB()}})
	cases := []struct {
		name string
		opts inventory.Options
		want string
	}{
		{"nil netlink", inventory.Options{Root: h.Root}, "Options.Netlink"},
		{"bad pci filter", inventory.Options{Root: h.Root, Netlink: h.Netlink, Filter: inventory.Filter{PCIAddresses: []string{"3b:00.0"}}}, "filter.pciAddresses[0]"},
		{"bad vendor filter", inventory.Options{Root: h.Root, Netlink: h.Netlink, Filter: inventory.Filter{Vendors: []string{"8086", "mellanox"}}}, "filter.vendors[1]"},
		{"bad link type filter", inventory.Options{Root: h.Root, Netlink: h.Netlink, Filter: inventory.Filter{LinkTypes: []string{"wifi"}}}, "filter.linkTypes[0]"},
		{"empty pf name filter", inventory.Options{Root: h.Root, Netlink: h.Netlink, Filter: inventory.Filter{PFNames: []string{" "}}}, "filter.pfNames[0]"},
		{"empty driver filter", inventory.Options{Root: h.Root, Netlink: h.Netlink, Filter: inventory.Filter{Drivers: []string{""}}}, "filter.drivers[0]"},
		{"no sysfs", inventory.Options{Root: t.TempDir(), Netlink: h.Netlink}, "list PCI devices"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := inventory.Scan(ktCtx(t), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Scan = %v, %v; want error containing %q", inv, err, tc.want)
			}
		})
	}
	if m := h.Netlink.MutatingCalls(); len(m) > 0 {
		t.Errorf("mutating calls: %v", m)
	}
}

func TestScanCanceled(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Standard())
	ctx, cancel := context.WithCancel(ktCtx(t))
	cancel()
	if _, err := inventory.Scan(ctx, inventory.Options{Root: h.Root, Netlink: h.Netlink}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Scan with canceled context = %v, want context.Canceled", err)
	}
}

func TestScanFilter(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Standard())
	count := func(inv *inventory.Inventory) (pfs, vfs int) {
		for _, d := range inv.Devices {
			if d.Kind == inventory.KindPF {
				pfs++
			} else {
				vfs++
			}
		}
		return
	}
	cases := []struct {
		name     string
		filter   inventory.Filter
		pfs, vfs int
		note     bool
	}{
		{"empty", inventory.Filter{}, 4, 31, false},
		{"pfName", inventory.Filter{PFNames: []string{"ens2f0"}}, 1, 16, false},
		{"two pfNames", inventory.Filter{PFNames: []string{"ens2f0", "enp2s0f0"}}, 2, 23, false},
		{"PF pci address selects its VFs", inventory.Filter{PCIAddresses: []string{"0000:3b:00.0"}}, 1, 8, false},
		{"VF pci address, upper case", inventory.Filter{PCIAddresses: []string{"0000:5E:01.5"}}, 0, 1, false},
		{"vendor with 0x", inventory.Filter{Vendors: []string{"0x15B3"}}, 1, 8, false},
		{"vendor intel", inventory.Filter{Vendors: []string{"8086"}}, 3, 23, false},
		{"PF driver", inventory.Filter{Drivers: []string{"ice"}}, 1, 16, false},
		{"VF driver", inventory.Filter{Drivers: []string{"vfio-pci"}}, 0, 4, false},
		{"link type", inventory.Filter{LinkTypes: []string{"InfiniBand"}}, 1, 8, false},
		{"all lists must match", inventory.Filter{Vendors: []string{"8086"}, LinkTypes: []string{"ethernet"}, Drivers: []string{"igb"}}, 1, 7, false},
		{"nothing matches", inventory.Filter{PFNames: []string{"nope"}}, 0, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inv := scan(t, h, func(o *inventory.Options) { o.Filter = tc.filter })
			pfs, vfs := count(inv)
			if pfs != tc.pfs || vfs != tc.vfs {
				t.Errorf("got %d PFs %d VFs, want %d and %d", pfs, vfs, tc.pfs, tc.vfs)
			}
			for _, d := range inv.Devices {
				if !tc.filter.Matches(d) {
					t.Errorf("device %s listed but Filter.Matches says no", d.Name)
				}
			}
			if (inv.Note != "") != tc.note {
				t.Errorf("note %q, want note: %v", inv.Note, tc.note)
			}
		})
	}
}

func TestLoadFilter(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "pfNames: [ens2f0]\nvendors: [\"8086\"]\nlinkTypes: [ethernet]\n")
	f, err := inventory.LoadFilter(good)
	if err != nil {
		t.Fatalf("LoadFilter: %v", err)
	}
	if want := (inventory.Filter{PFNames: []string{"ens2f0"}, Vendors: []string{"8086"}, LinkTypes: []string{"ethernet"}}); !reflect.DeepEqual(f, want) {
		t.Errorf("got %+v, want %+v", f, want)
	}
	for name, tc := range map[string]struct{ content, want string }{
		"unknown field": {"pfName: [x]\n", "unknown field"},
		"bad entry":     {"pciAddresses: [\"0000:zz:00.0\"]\n", "filter.pciAddresses[0]"},
		"not yaml":      {"pfNames: [\n", "parse filter file"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := inventory.LoadFilter(write(strings.ReplaceAll(name, " ", "_")+".yaml", tc.content))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadFilter = %v, want error containing %q", err, tc.want)
			}
		})
	}
	if _, err := inventory.LoadFilter(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("LoadFilter of a missing file succeeded")
	}
}

// relink replaces the fake's copy of a link with a modified one.
func relink(t *testing.T, f *nlinktest.Fake, name string, mod func(*netlink.LinkAttrs)) {
	t.Helper()
	l, ok := f.Link(name)
	if !ok {
		t.Fatalf("no link %s in the fake", name)
	}
	a := *l.Attrs()
	mod(&a)
	f.AddLink(a)
}

func defaultRoute(idx int) netlink.Route {
	return netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: net.IPv4(192, 0, 2, 1)}
}

func TestScanDefaultRoute(t *testing.T) {
	withRoute := func(pf sysfstest.PF) sysfstest.PF { pf.DefaultRoute = true; return pf }
	cases := []struct {
		name       string
		pf         sysfstest.PF
		setup      func(t *testing.T, h *sysfstest.Fixture)
		allow      bool
		wantPF     bool
		wantReason string
	}{
		{name: "no default route", pf: sysfstest.SRIOVDisabled(), wantPF: true},
		{name: "default route on the PF", pf: withRoute(sysfstest.SRIOVDisabled()), wantReason: "default route"},
		{name: "allowed", pf: withRoute(sysfstest.SRIOVDisabled()), allow: true, wantPF: true},
		{name: "default route on a VLAN of the PF", pf: sysfstest.SRIOVDisabled(), wantReason: "default route",
			setup: func(t *testing.T, h *sysfstest.Fixture) {
				pf, _ := h.Netlink.Link("ens5f0")
				v := h.Netlink.AddLink(netlink.LinkAttrs{Name: "ens5f0.100", ParentIndex: pf.Attrs().Index})
				h.Netlink.AddRoute(defaultRoute(v.Attrs().Index))
			}},
		{name: "PF enslaved to the default-route bond", pf: sysfstest.SRIOVDisabled(), wantReason: "through its master",
			setup: func(t *testing.T, h *sysfstest.Fixture) {
				b := h.Netlink.AddLink(netlink.LinkAttrs{Name: "bond0"})
				relink(t, h.Netlink, "ens5f0", func(a *netlink.LinkAttrs) { a.MasterIndex = b.Attrs().Index })
				h.Netlink.AddRoute(defaultRoute(b.Attrs().Index))
			}},
		{name: "ECMP default route with the PF as one next hop", pf: sysfstest.SRIOVDisabled(), wantReason: "default route",
			setup: func(t *testing.T, h *sysfstest.Fixture) {
				pf, _ := h.Netlink.Link("ens5f0")
				r := defaultRoute(0)
				r.MultiPath = []*netlink.NexthopInfo{{LinkIndex: 999}, {LinkIndex: pf.Attrs().Index}}
				h.Netlink.AddRoute(r)
			}},
		{name: "non-default route on the PF", pf: sysfstest.SRIOVDisabled(), wantPF: true,
			setup: func(t *testing.T, h *sysfstest.Fixture) {
				pf, _ := h.Netlink.Link("ens5f0")
				h.Netlink.AddRoute(netlink.Route{LinkIndex: pf.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4(10, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)}})
			}},
		{name: "routes unreadable", pf: sysfstest.SRIOVDisabled(), wantReason: "cannot tell",
			setup: func(t *testing.T, h *sysfstest.Fixture) {
				h.Netlink.FailMethod("RouteListFiltered", "", unix.EPERM)
			}},
		{name: "routes unreadable, allowed", pf: sysfstest.SRIOVDisabled(), allow: true, wantPF: true,
			setup: func(t *testing.T, h *sysfstest.Fixture) {
				h.Netlink.FailMethod("RouteListFiltered", "", unix.EPERM)
			}},
		{name: "VFs of the default-route PF stay", pf: withRoute(sysfstest.IGB()), wantReason: "default route"},
		// A route dump interrupted by a concurrent change is sent again:
		// the scan sees the whole table, not a partial one, and a PF is
		// not excluded because one dump raced a route change.
		{name: "route dump interrupted, then whole: PF without default route listed", pf: sysfstest.SRIOVDisabled(), wantPF: true,
			setup: func(t *testing.T, h *sysfstest.Fixture) {
				h.Netlink.AddRoute(netlink.Route{LinkIndex: 999, Dst: &net.IPNet{IP: net.IPv4(10, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)}})
				h.Netlink.InterruptDumps("RouteListFiltered", nlink.DumpTries-1)
			}},
		{name: "route dump interrupted, then whole: default route still seen", pf: withRoute(sysfstest.SRIOVDisabled()), wantReason: "default route",
			setup: func(t *testing.T, h *sysfstest.Fixture) {
				h.Netlink.InterruptDumps("RouteListFiltered", nlink.DumpTries-1)
			}},
		{name: "route dump interrupted on every try", pf: sysfstest.SRIOVDisabled(), wantReason: "interrupted by concurrent changes",
			setup: func(t *testing.T, h *sysfstest.Fixture) {
				h.Netlink.InterruptDumps("RouteListFiltered", nlink.DumpTries)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{tc.pf}})
			if tc.setup != nil {
				tc.setup(t, h)
			}
			inv := scan(t, h, func(o *inventory.Options) { o.AllowDefaultRoutePF = tc.allow })
			_, gotPF := inv.Find(inventory.DeviceName(tc.pf.PCIAddress))
			if gotPF != tc.wantPF {
				t.Errorf("PF listed = %v, want %v (excluded %v)", gotPF, tc.wantPF, inv.Excluded)
			}
			if tc.wantReason != "" {
				if len(inv.Excluded) != 1 || inv.Excluded[0].PCIAddress != tc.pf.PCIAddress || !strings.Contains(inv.Excluded[0].Reason, tc.wantReason) {
					t.Errorf("excluded = %v, want the PF with a reason containing %q", inv.Excluded, tc.wantReason)
				}
			} else if len(inv.Excluded) != 0 {
				t.Errorf("excluded = %v, want none", inv.Excluded)
			}
			if got := len(inv.Devices) - btoi(gotPF); got != len(tc.pf.VFs) {
				t.Errorf("%d VFs listed, want %d", got, len(tc.pf.VFs))
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestScanNetlinkFailures(t *testing.T) {
	cases := []struct {
		name   string
		method string
		check  func(t *testing.T, inv *inventory.Inventory)
	}{
		{"PF link lookup fails: no admin state, VFs still listed", "LinkByName", func(t *testing.T, inv *inventory.Inventory) {
			vf := mustFind(t, inv, "0000:3b:00.1")
			if vf.Admin != nil || vf.PortGUID != "" {
				t.Errorf("admin %+v port GUID %q, want none", vf.Admin, vf.PortGUID)
			}
			if vf.NodeGUID != "0c:42:a1:03:00:ab:cd:10" {
				t.Errorf("node GUID %q, want the VF's node_guid from sysfs", vf.NodeGUID)
			}
		}},
		{"VFGUIDs fails: admin state without GUIDs", "VFGUIDs", func(t *testing.T, inv *inventory.Inventory) {
			vf := mustFind(t, inv, "0000:3b:00.1")
			if vf.Admin == nil || vf.Admin.LinkState != "enable" || vf.PortGUID != "" {
				t.Errorf("admin %+v port GUID %q, want admin state without GUIDs", vf.Admin, vf.PortGUID)
			}
		}},
		{"devlink fails: no eswitch mode", "DevLinkGetDeviceByName", func(t *testing.T, inv *inventory.Inventory) {
			if m := mustFind(t, inv, "0000:3b:00.0").EswitchMode; m != "" {
				t.Errorf("eswitch mode %q, want none", m)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.ConnectX6IB()}})
			h.Netlink.FailMethod(tc.method, "", unix.EOPNOTSUPP)
			inv := scan(t, h, nil)
			if len(inv.Devices) != 9 || len(inv.Excluded) != 0 {
				t.Fatalf("%d devices, excluded %v; want 9 and none", len(inv.Devices), inv.Excluded)
			}
			tc.check(t, inv)
		})
	}
}

// TestScanVFNodeGUIDFromSysfs: when the PF reports no GUIDs, an IB VF's
// node GUID comes from its own RDMA device.
func TestScanVFNodeGUIDFromSysfs(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.ConnectX6IB()}})
	h.Netlink.SetVFGUIDs("ibp59s0f0", nil)
	inv := scan(t, h, nil)
	if g := mustFind(t, inv, "0000:3b:00.2").NodeGUID; g != "0c:42:a1:03:00:ab:cd:11" {
		t.Errorf("VF1 node GUID %q, want the one in its node_guid file", g)
	}
	if g := mustFind(t, inv, "0000:3b:00.7").NodeGUID; g != "" {
		t.Errorf("VF6 (zero node_guid) node GUID %q, want none", g)
	}
}

// TestScanUplinkFirst: a switchdev PF lists its representors under net/;
// the uplink (not a representor) must be IfName.
func TestScanUplinkFirst(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.SRIOVDisabled()}})
	net := filepath.Join(h.DevicePath("0000:af:00.0"), "net")
	for name, files := range map[string]map[string]string{
		"eth0":   {"ifindex": "3", "phys_port_name": "pf0vf0", "type": "1"},
		"eth1":   {"ifindex": "4", "phys_port_name": "c1pf0vf1", "type": "1"},
		"ens5f0": {"phys_port_name": "p0"},
	} {
		for f, c := range files {
			if err := os.WriteFile(filepath.Join(net, name, f), []byte(c+"\n"), 0o644); err != nil {
				if err := os.MkdirAll(filepath.Join(net, name), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(net, name, f), []byte(c+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, n := range []string{"eth0", "eth1"} {
		if err := os.Symlink(filepath.Join(net, n), filepath.Join(h.Root, "sys/class/net", n)); err != nil {
			t.Fatal(err)
		}
	}
	pf := mustFind(t, scan(t, h, nil), "0000:af:00.0")
	if pf.IfName != "ens5f0" || !reflect.DeepEqual(pf.IfNames, []string{"ens5f0", "eth0", "eth1"}) {
		t.Errorf("ifName %q ifNames %v, want ens5f0 first", pf.IfName, pf.IfNames)
	}
}

func TestScanRealHost(t *testing.T) {
	nl, err := nlink.NewHost()
	if err != nil {
		t.Skipf("no netlink here: %v", err)
	}
	defer nl.Close()
	if _, err := os.Stat("/sys/bus/pci/devices"); err != nil {
		t.Skipf("no PCI sysfs: %v", err)
	}
	inv, err := inventory.Scan(ktCtx(t), inventory.Options{Netlink: nl})
	if err != nil {
		t.Fatalf("Scan of this host: %v", err)
	}
	if len(inv.Devices) == 0 && inv.Note == "" {
		t.Error("no devices and no note")
	}
	t.Logf("this host: %d devices, %d excluded, note %q", len(inv.Devices), len(inv.Excluded), inv.Note)
}

// TestScanNetdevBoundRDMA: RDMA devices without a PCI parent (rxe, siw)
// belong to the device whose netdev they are bound to, after the PCI
// function's own RDMA devices; nothing else about any device changes.
func TestScanNetdevBoundRDMA(t *testing.T) {
	pfs := []sysfstest.PF{sysfstest.E810(), sysfstest.ConnectX6IB()}
	for _, tc := range []struct {
		name string
		soft []sysfstest.SoftRDMA
		mod  func(t *testing.T, h *sysfstest.Fixture) // after the fixture is built
		want map[string][]string                      // IfName of a device -> RDMA devices added to it
	}{
		{name: "none"},
		{
			name: "rxe on an iavf VF",
			soft: []sysfstest.SoftRDMA{{Name: "rxe0", Netdev: "ens2f0v2"}},
			want: map[string][]string{"ens2f0v2": {"rxe0"}},
		},
		{
			name: "siw on an iavf VF: found through GID 0's netdev",
			soft: []sysfstest.SoftRDMA{{Name: "siw0", Netdev: "ens2f0v3", Type: sysfstest.SoftRDMASIW}},
			want: map[string][]string{"ens2f0v3": {"siw0"}},
		},
		{
			name: "rxe whose parent attribute is gone: GID 0's netdev still maps it",
			soft: []sysfstest.SoftRDMA{{Name: "rxe0", Netdev: "ens2f0v4"}},
			mod: func(t *testing.T, h *sysfstest.Fixture) {
				removeAll(t, h.SysPath("devices/virtual/infiniband/rxe0/parent"))
			},
			want: map[string][]string{"ens2f0v4": {"rxe0"}},
		},
		{
			name: "two on one VF, one on another, one on the PF",
			soft: []sysfstest.SoftRDMA{
				{Name: "rxe_b", Netdev: "ens2f0v1"}, {Name: "rxe_a", Netdev: "ens2f0v1"},
				{Name: "siw1", Netdev: "ens2f0v5", Type: sysfstest.SoftRDMASIW},
				{Name: "rxe_pf", Netdev: "ens2f0"},
			},
			want: map[string][]string{"ens2f0v1": {"rxe_a", "rxe_b"}, "ens2f0v5": {"siw1"}, "ens2f0": {"rxe_pf"}},
		},
		{
			name: "after the VF's own mlx5 device; the PF's GUIDs and pkeys stay its own device's",
			soft: []sysfstest.SoftRDMA{
				{Name: "siw2", Netdev: "ibp59s0f0v1", Type: sysfstest.SoftRDMASIW},
				{Name: "siw3", Netdev: "ibp59s0f0", Type: sysfstest.SoftRDMASIW},
			},
			want: map[string][]string{"ibp59s0f0v1": {"siw2"}, "ibp59s0f0": {"siw3"}},
		},
		{
			name: "bound to a netdev that is no scanned device's",
			soft: []sysfstest.SoftRDMA{{Name: "rxe0", Netdev: "veth0"}},
		},
		{
			name: "no parent and no GID netdev: not mapped",
			soft: []sysfstest.SoftRDMA{{Name: "rxe0", Netdev: "ens2f0v6"}},
			mod: func(t *testing.T, h *sysfstest.Fixture) {
				removeAll(t, h.SysPath("devices/virtual/infiniband/rxe0/parent"))
				removeAll(t, h.SysPath("devices/virtual/infiniband/rxe0/ports/1/gid_attrs"))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := scan(t, sysfstest.New(t, sysfstest.Topology{PFs: pfs}), nil)
			h := sysfstest.New(t, sysfstest.Topology{PFs: pfs, SoftRDMA: tc.soft})
			if tc.mod != nil {
				tc.mod(t, h)
			}
			inv := scan(t, h, nil)
			if len(inv.Devices) != len(base.Devices) || len(inv.Excluded) != len(base.Excluded) {
				t.Fatalf("%d devices, %d excluded; want %d, %d", len(inv.Devices), len(inv.Excluded), len(base.Devices), len(base.Excluded))
			}
			added := 0
			for i, d := range inv.Devices {
				want := base.Devices[i]
				if extra := tc.want[want.IfName]; extra != nil && want.IfName != "" {
					want.RDMADevices = append(append([]string(nil), want.RDMADevices...), extra...)
					added++
				}
				if !reflect.DeepEqual(d, want) {
					t.Errorf("%s:\n got %+v\nwant %+v", d.PCIAddress, d, want)
				}
			}
			if added != len(tc.want) {
				t.Errorf("%d of the devices in the want table were scanned", added)
			}
		})
	}
}
