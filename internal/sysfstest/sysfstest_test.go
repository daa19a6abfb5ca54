package sysfstest_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"k8s.io/dynamic-resource-allocation/deviceattribute"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
)

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return strings.TrimSpace(string(b))
}

// resolve checks that p is a symlink and returns where it really points.
func resolve(t *testing.T, p string) string {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("%s is not a symlink: %v", p, err)
	}
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatalf("%s dangles: %v", p, err)
	}
	return r
}

// TestLayout checks the tree against the real sysfs layout, entry by entry.
func TestLayout(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Standard())
	sys := func(rel string) string { return filepath.Join(h.Root, "sys", rel) }
	real := func(rel string) string { r, _ := filepath.EvalSymlinks(sys(rel)); return r }

	pf := real("bus/pci/devices/0000:3b:00.0")
	if want := sys("devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0"); pf != want {
		t.Fatalf("PF at %s, want %s", pf, want)
	}
	if h.DevicePath("0000:3b:00.0") != pf {
		t.Errorf("DevicePath = %s", h.DevicePath("0000:3b:00.0"))
	}
	vf := h.Topology.PFs[0].VFs[3]
	checks := map[string]string{
		"vendor":                             "0x15b3",
		"device":                             "0x101b",
		"subsystem_vendor":                   "0x15b3",
		"subsystem_device":                   "0x0007",
		"numa_node":                          "0",
		"sriov_totalvfs":                     "16",
		"sriov_numvfs":                       "8",
		"sriov_vf_device":                    "101c",
		"driver_override":                    "(null)",
		"net/ibp59s0f0/type":                 "32",
		"net/ibp59s0f0/mtu":                  "4092",
		"net/ibp59s0f0/speed":                "200000",
		"infiniband/mlx5_0/node_guid":        "0c42:a103:00ab:cd00",
		"infiniband/mlx5_0/ports/1/gids/0":   "fe80:0000:0000:0000:0c42:a103:00ab:cd00",
		"infiniband/mlx5_0/ports/1/pkeys/0":  "0xffff",
		"infiniband/mlx5_0/ports/1/pkeys/1":  "0x8001",
		"infiniband/mlx5_0/ports/1/pkeys/15": "0x0000",
		"infiniband_verbs/uverbs0/ibdev":     "mlx5_0",
	}
	for rel, want := range checks {
		if got := readFile(t, filepath.Join(pf, rel)); got != want {
			t.Errorf("PF %s = %q, want %q", rel, got, want)
		}
	}
	for link, want := range map[string]string{
		filepath.Join(pf, "driver"):                                         sys("bus/pci/drivers/mlx5_core"),
		filepath.Join(pf, "iommu_group"):                                    sys("kernel/iommu_groups/20"),
		filepath.Join(pf, "virtfn3"):                                        sys("devices/pci0000:3a/0000:3a:00.0/" + vf.PCIAddress),
		sys("devices/pci0000:3a/0000:3a:00.0/" + vf.PCIAddress + "/physfn"): pf,
		sys("class/net/ibp59s0f0"):                                          filepath.Join(pf, "net/ibp59s0f0"),
		sys("class/net/ibp59s0f0v3"):                                        sys("devices/pci0000:3a/0000:3a:00.0/" + vf.PCIAddress + "/net/ibp59s0f0v3"),
		sys("class/infiniband/mlx5_0"):                                      filepath.Join(pf, "infiniband/mlx5_0"),
		sys("class/infiniband/mlx5_4"):                                      sys("devices/pci0000:3a/0000:3a:00.0/" + vf.PCIAddress + "/infiniband/mlx5_4"),
		filepath.Join(pf, "net/ibp59s0f0/device"):                           pf,
		sys("bus/pci/drivers/mlx5_core/0000:3b:00.0"):                       pf,
		sys("kernel/iommu_groups/20/devices/0000:3b:00.0"):                  pf,
	} {
		if got := resolve(t, link); got != want {
			t.Errorf("%s -> %s, want %s", link, got, want)
		}
	}
	for _, f := range []string{"sys/bus/pci/drivers_probe", "sys/bus/pci/drivers/mlx5_core/bind", "sys/bus/pci/drivers/mlx5_core/unbind",
		"sys/bus/pci/drivers/vfio-pci/bind", "dev/infiniband/uverbs0", "dev/infiniband/rdma_cm", "dev/vfio/vfio"} {
		if fi, err := os.Stat(filepath.Join(h.Root, f)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: not a plain file: %v", f, err)
		}
	}
	// vfio-bound E810 VFs: no netdev, a /dev/vfio/<group> node.
	e810 := h.Topology.PFs[1]
	vfio := e810.VFs[12]
	vdir := h.DevicePath(vfio.PCIAddress)
	if _, err := os.Stat(filepath.Join(vdir, "net")); !os.IsNotExist(err) {
		t.Errorf("vfio VF has a net/ folder: %v", err)
	}
	if g := filepath.Base(resolve(t, filepath.Join(vdir, "iommu_group"))); g != itoa(vfio.IOMMUGroup) {
		t.Errorf("vfio VF group %s, want %d", g, vfio.IOMMUGroup)
	}
	if _, err := os.Stat(filepath.Join(h.Root, "dev/vfio", itoa(vfio.IOMMUGroup))); err != nil {
		t.Errorf("no /dev/vfio node: %v", err)
	}
	// IRQs: msi_irqs/N and /proc/irq/N/smp_affinity_list.
	irq := vfio.IRQs[0]
	if got := readFile(t, filepath.Join(vdir, "msi_irqs", itoa(irq))); got != "msix" {
		t.Errorf("msi_irqs/%d = %q", irq, got)
	}
	if got := readFile(t, filepath.Join(h.Root, "proc/irq", itoa(irq), "smp_affinity_list")); got != "0-3" {
		t.Errorf("smp_affinity_list = %q", got)
	}
	// The SR-IOV disabled PF: numvfs 0, no virtfn links.
	off := h.DevicePath("0000:af:00.0")
	if readFile(t, filepath.Join(off, "sriov_numvfs")) != "0" || readFile(t, filepath.Join(off, "sriov_totalvfs")) != "64" {
		t.Error("SR-IOV disabled PF has VFs")
	}
	if _, err := os.Lstat(filepath.Join(off, "virtfn0")); !os.IsNotExist(err) {
		t.Errorf("virtfn0 on a PF without VFs: %v", err)
	}
	// deviceattribute resolves the PCIe root through the fixture.
	a, err := deviceattribute.GetPCIeRootAttributeByPCIBusID(vf.PCIAddress, deviceattribute.WithFSFromRoot(filepath.Join(h.Root, "sys")))
	if err != nil || *a.Value.StringValue != "pci0000:3a" {
		t.Errorf("deviceattribute pcieRoot = %v, %v", a.Value.StringValue, err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestNetlinkFake(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Standard())
	pf, ok := h.Netlink.Link("ens2f0")
	if !ok {
		t.Fatal("no PF link in the fake")
	}
	ifindex := readFile(t, filepath.Join(h.Root, "sys/class/net/ens2f0/ifindex"))
	if itoa(pf.Attrs().Index) != ifindex {
		t.Errorf("fake ifindex %d, sysfs %s", pf.Attrs().Index, ifindex)
	}
	if len(pf.Attrs().Vfs) != 16 {
		t.Fatalf("%d VFs in the PF link, want 16", len(pf.Attrs().Vfs))
	}
	v1, _ := h.Netlink.VF("ens2f0", 1)
	if v1.ID != 1 || v1.Vlan != 100 || v1.Qos != 3 || v1.VlanProto != sysfstest.VLANProto8021AD {
		t.Errorf("VF1 admin %+v", v1)
	}
	if _, ok := h.Netlink.Link("ens2f0v0"); !ok {
		t.Error("VF netdev not in the fake")
	}
	ib, _ := h.Netlink.Link("ibp59s0f0")
	gs, err := h.Netlink.VFGUIDs(ib)
	if err != nil || len(gs) != 6 || gs[2].VF != 2 || gs[2].NodeGUID.String() != "0c:42:a1:03:00:ab:cd:12" {
		t.Errorf("VFGUIDs = %v, %v", gs, err)
	}
	if dl, err := h.Netlink.DevLinkGetDeviceByName("pci", "0000:3b:00.0"); err != nil || dl.Attrs.Eswitch.Mode != "legacy" {
		t.Errorf("devlink = %v, %v", dl, err)
	}
	if _, err := h.Netlink.RdmaLinkByName("mlx5_3"); err != nil {
		t.Errorf("RDMA link: %v", err)
	}
	if rs, _ := h.Netlink.RouteList(nil, 0); len(rs) != 0 {
		t.Errorf("routes %v, want none unless DefaultRoute", rs)
	}
}

func TestOptions(t *testing.T) {
	t.Run("caller VF names", func(t *testing.T) {
		pf := sysfstest.E810().WithVFNames("a0", "", "a2")
		h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{pf}})
		if _, err := os.Lstat(filepath.Join(h.Root, "sys/class/net/a0")); err != nil {
			t.Error(err)
		}
		if _, err := os.Lstat(filepath.Join(h.Root, "sys/class/net/ens2f0v1")); !os.IsNotExist(err) {
			t.Errorf("VF 1 kept its netdev: %v", err)
		}
		if _, err := os.Stat(filepath.Join(h.Root, "sys/class/net/ens2f0v3")); err != nil {
			t.Error(err)
		}
		if sysfstest.E810().VFs[0].IfName != "ens2f0v0" {
			t.Error("WithVFNames changed the original")
		}
	})
	t.Run("default route", func(t *testing.T) {
		pf := sysfstest.IGB()
		pf.DefaultRoute = true
		h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{pf}})
		rs, _ := h.Netlink.RouteList(nil, 0)
		if len(rs) != 1 || rs[0].LinkIndex != h.Topology.PFs[0].IfIndex {
			t.Errorf("routes %v", rs)
		}
	})
	t.Run("scale", func(t *testing.T) {
		topo := sysfstest.Scale(3, 40)
		h := sysfstest.New(t, topo)
		n := 0
		entries, _ := os.ReadDir(filepath.Join(h.Root, "sys/bus/pci/devices"))
		n = len(entries)
		if n != 3*41 {
			t.Errorf("%d PCI devices, want %d", n, 3*41)
		}
		last := h.Topology.PFs[2].VFs[39]
		if last.PCIAddress != "0000:30:05.0" {
			t.Errorf("VF 39 of PF 2 at %s", last.PCIAddress)
		}
	})
	for name, topo := range map[string]sysfstest.Topology{
		"bad address":         {PFs: []sysfstest.PF{{PCIAddress: "3b:00.0", Vendor: "15b3", DeviceID: "1017"}}},
		"upper-case":          {PFs: []sysfstest.PF{{PCIAddress: "0000:AF:00.0", Vendor: "15b3", DeviceID: "1017"}}},
		"no vendor":           {PFs: []sysfstest.PF{{PCIAddress: "0000:af:00.0"}}},
		"duplicate address":   {PFs: []sysfstest.PF{sysfstest.IGB(), sysfstest.IGB()}},
		"more VFs than total": {PFs: []sysfstest.PF{func() sysfstest.PF { p := sysfstest.IGB(); p.TotalVFs = 2; return p }()}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := sysfstest.Write(t.TempDir(), topo); err == nil {
				t.Error("Write succeeded")
			}
		})
	}
}

// TestSoftRDMALayout checks netdev-bound RDMA devices against the layout
// the kernel gives rxe and siw: no PCI parent, the netdev named by parent
// (rxe only) and by GID 0, a verbs device found through its ibdev.
func TestSoftRDMALayout(t *testing.T) {
	for _, tc := range []struct {
		name, typ, netdev string
		parent            bool
		nodeType, guid    string
	}{
		{name: "rxe0", typ: "", netdev: "ens2f0v1", parent: true, nodeType: "1: CA", guid: "0000:5eff:fe00:0001"},
		{name: "siw0", typ: sysfstest.SoftRDMASIW, netdev: "ens2f0v2", nodeType: "4: RNIC", guid: "0000:5eff:fe00:0002"},
		{name: "rxe1", typ: sysfstest.SoftRDMARXE, netdev: "veth9", parent: true, nodeType: "1: CA", guid: "0000:0000:0000:0000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.E810()},
				SoftRDMA: []sysfstest.SoftRDMA{{Name: tc.name, Netdev: tc.netdev, Type: tc.typ}}})
			if got := h.Topology.SoftRDMA; len(got) != 1 || got[0].Type == "" {
				t.Errorf("Topology.SoftRDMA = %+v, want the type filled in", got)
			}
			dir := h.SysPath("devices/virtual/infiniband", tc.name)
			if got := resolve(t, h.SysPath("class/infiniband", tc.name)); got != dir {
				t.Errorf("class link -> %s, want %s", got, dir)
			}
			for rel, want := range map[string]string{
				"ports/1/gid_attrs/ndevs/0": tc.netdev,
				"ports/1/link_layer":        "Ethernet",
				"node_type":                 tc.nodeType,
				"node_guid":                 tc.guid,
				"ports/1/gids/0":            "fe80:0000:0000:0000:" + tc.guid,
			} {
				if got := readFile(t, filepath.Join(dir, rel)); got != want {
					t.Errorf("%s = %q, want %q", rel, got, want)
				}
			}
			p, err := os.ReadFile(filepath.Join(dir, "parent"))
			if tc.parent && strings.TrimSpace(string(p)) != tc.netdev || !tc.parent && !os.IsNotExist(err) {
				t.Errorf("parent = %q, %v (want it: %v)", p, err, tc.parent)
			}
			// E810 has no RDMA: the soft device has the first verbs number.
			vd := resolve(t, h.SysPath("class/infiniband_verbs/uverbs0"))
			if vd != h.SysPath("devices/virtual/infiniband_verbs/uverbs0") || readFile(t, filepath.Join(vd, "ibdev")) != tc.name {
				t.Errorf("uverbs0 at %s for %s", vd, readFile(t, filepath.Join(vd, "ibdev")))
			}
			for _, f := range []string{"dev/infiniband/uverbs0", "dev/infiniband/rdma_cm"} {
				if _, err := os.Stat(filepath.Join(h.Root, f)); err != nil {
					t.Error(err)
				}
			}
			if _, err := h.Netlink.RdmaLinkByName(tc.name); err != nil {
				t.Errorf("netlink fake: %v", err)
			}
			// No PCI function lists it.
			if m, _ := filepath.Glob(h.SysPath("devices/pci*/*/*/infiniband", tc.name)); len(m) > 0 {
				t.Errorf("a PCI function lists %s: %v", tc.name, m)
			}
		})
	}
	for _, bad := range []struct {
		sr   sysfstest.SoftRDMA
		want string
	}{
		{sysfstest.SoftRDMA{Netdev: "ens2f0v1"}, "Name"},
		{sysfstest.SoftRDMA{Name: "rxe0"}, "Netdev"},
		{sysfstest.SoftRDMA{Name: "rxe0", Netdev: "a/b"}, "Netdev"},
		{sysfstest.SoftRDMA{Name: "rxe0", Netdev: "ens2f0v1", Type: "mlx5"}, "Type"},
		{sysfstest.SoftRDMA{Name: "mlx5_1", Netdev: "ibp59s0f0v1"}, "exists"},
	} {
		_, err := sysfstest.Write(t.TempDir(), sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.ConnectX6IB()},
			SoftRDMA: []sysfstest.SoftRDMA{bad.sr}})
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: err = %v, want one naming %s", bad.sr, err, bad.want)
		}
	}
}
