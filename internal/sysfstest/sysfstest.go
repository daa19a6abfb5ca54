// Package sysfstest builds a fake host for tests: a sysfs/procfs/dev tree
// with the real kernel layout under a temporary root, plus the matching
// nlinktest.Fake that serves the PF links with their VFs' admin state.
//
// Usage:
//
//	pf := sysfstest.E810()                   // or ConnectX6IB(), IGB(), SRIOVDisabled()
//	pf = pf.WithVFNames("veth-a", "veth-b")  // optional: caller-chosen VF netdev names
//	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{pf}})
//	inv, err := inventory.Scan(ctx, inventory.Options{Root: h.Root, Netlink: h.Netlink})
//
// Write does the same outside a test (any directory). Everything the caller
// leaves zero gets a deterministic default (VF PCI addresses, ifindexes,
// IOMMU groups, IRQs, MACs), and the filled-in topology is returned in
// Fixture.Topology so tests can compare against it.
package sysfstest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// Link types as written to /sys/class/net/<if>/type (ARPHRD_*).
const (
	ARPHRDEther      = 1
	ARPHRDInfiniBand = 32
)

// Topology is the fake host: a list of SR-IOV PFs, and software RDMA
// devices bound to netdevs.
type Topology struct {
	PFs []PF
	// SoftRDMA are netdev-bound RDMA devices (rxe, siw), written after
	// the PFs and VFs, in order.
	SoftRDMA []SoftRDMA
}

// Software RDMA device types (rdma link add <name> type <type> netdev <if>).
const (
	SoftRDMARXE = "rxe" // soft-RoCE: has a parent attribute naming the netdev
	SoftRDMASIW = "siw" // soft-iWARP: no parent attribute, only GID 0's netdev
)

// SoftRDMA is a software RDMA device bound to a netdev, as the kernel
// makes it for "rdma link add": it has no PCI parent, so it lives at
// sys/devices/virtual/infiniband/<Name> (class link
// sys/class/infiniband/<Name>) with ports/1/gid_attrs/ndevs/0 naming the
// netdev (and, for rxe, a parent attribute), and its verbs device at
// sys/devices/virtual/infiniband_verbs/uverbsN with an ibdev attribute.
// No <pci>/infiniband/ entry points to it.
type SoftRDMA struct {
	Name   string // required, e.g. "rxe0"
	Netdev string // required: the netdev it is bound to, e.g. a VF's IfName
	Type   string // SoftRDMARXE (default) or SoftRDMASIW
}

// PF is one physical function and its enabled VFs (len(VFs) is written to
// sriov_numvfs).
type PF struct {
	PCIAddress string // required, e.g. "0000:3b:00.0"
	// PCIeRoot is the root complex directory under /sys/devices
	// ("pci0000:3a"); default "pci<domain>:00".
	PCIeRoot string

	Vendor, DeviceID                 string // "15b3", "101b" (no 0x)
	SubsystemVendor, SubsystemDevice string // default: Vendor, DeviceID
	VFDeviceID                       string // VF device ID; default DeviceID
	Driver                           string // "" = unbound
	NUMANode                         int    // written as is; -1 = no affinity

	IfName    string // "" = no netdev
	LinkType  int    // ARPHRD_*; default ARPHRDEther
	IfIndex   int    // 0 = assigned
	MTU       int    // default 1500 (2044 for InfiniBand)
	SpeedMbps int    // default 25000
	MAC       string // default derived from the PCI address

	TotalVFs int // sriov_totalvfs; default len(VFs), at least 1

	RDMADevice string   // "" = none; e.g. "mlx5_0"
	NodeGUID   string   // RDMA node GUID, canonical "xx:..:xx"
	PortGUID   string   // port 1 GUID; default NodeGUID
	PKeys      []string // port 1 pkeys ("0xffff"); padded with 0x0000 entries

	EswitchMode  string // what devlink reports; "" = devlink does not answer
	DefaultRoute bool   // the fake netlink has the node's default route on this PF
	IOMMUGroup   int    // 0 = assigned

	VFs []VF
}

// VF is one virtual function. Its index is its position in PF.VFs.
type VF struct {
	PCIAddress string // default: PF devfn + 1 + index (carrying into the next bus)
	Driver     string // "iavf", "mlx5_core", "vfio-pci", "" = unbound
	IfName     string // "" = no netdev (vfio-pci, unbound)
	IfIndex    int    // 0 = assigned
	MAC        string // netdev MAC; default Admin.Mac or derived
	RDMADevice string // "" = none
	IOMMUGroup int    // 0 = assigned
	IRQs       []int  // MSI-X IRQs; nil = two assigned

	// Admin is what the PF reports for this VF over netlink (ID is set
	// to the VF index).
	Admin netlink.VfInfo
	// NodeGUID/PortGUID are what the PF reports through VFGUIDs (IB).
	NodeGUID, PortGUID string
}

// Fixture is a built fixture: a fake host filesystem root and the fake
// netlink that goes with it (not a host of any kind the driver talks to).
type Fixture struct {
	Root     string          // pass as inventory.Options.Root
	Netlink  *nlinktest.Fake // PF and VF netdev links, VF GUIDs, eswitch, RDMA, routes
	Topology Topology        // the topology with every default filled in
}

// SysPath returns a path under <Root>/sys, e.g. h.SysPath("bus/pci/devices", bdf).
func (h *Fixture) SysPath(elem ...string) string {
	return filepath.Join(append([]string{h.Root, "sys"}, elem...)...)
}

// DevicePath is the real directory of a PCI device under <Root>/sys/devices.
func (h *Fixture) DevicePath(bdf string) string {
	for _, pf := range h.Topology.PFs {
		if pf.PCIAddress == bdf {
			return filepath.Join(h.Root, "sys", devicesRel(pf, bdf))
		}
		for _, vf := range pf.VFs {
			if vf.PCIAddress == bdf {
				return filepath.Join(h.Root, "sys", devicesRel(pf, bdf))
			}
		}
	}
	return ""
}

// New builds the topology under t.TempDir() and fails the test on error.
func New(t testing.TB, topo Topology) *Fixture {
	t.Helper()
	h, err := Write(t.TempDir(), topo)
	if err != nil {
		t.Fatalf("build sysfs fixture: %v", err)
	}
	return h
}

// WithVFNames returns a copy of pf whose first len(names) VFs have the
// given netdev names ("" leaves that VF without a netdev).
func (pf PF) WithVFNames(names ...string) PF {
	pf.VFs = append([]VF(nil), pf.VFs...)
	for i, n := range names {
		if i < len(pf.VFs) {
			pf.VFs[i].IfName = n
		}
	}
	return pf
}

// Write builds the topology under root (which should be empty) and
// returns the host. The tree holds:
//
//	sys/devices/<root>/<rootport>/<bdf>/{vendor,device,subsystem_*,class,numa_node,
//	    driver_override,driver@,iommu_group@,msi_irqs/N,physfn@|virtfnN@,sriov_*,
//	    net/<if>/{type,mtu,address,speed,ifindex,operstate,device@},
//	    infiniband/<dev>/{node_guid,node_type,device@,ports/1/{gids/0,pkeys/N,link_layer,state}},
//	    infiniband_verbs/uverbsN/{ibdev,dev}}
//	sys/bus/pci/devices/<bdf>@, sys/bus/pci/drivers/<drv>/{bind,unbind,new_id,remove_id,<bdf>@},
//	sys/bus/pci/drivers_probe, sys/class/net/<if>@, sys/class/infiniband/<dev>@,
//	sys/class/infiniband_verbs/uverbsN@, sys/kernel/iommu_groups/N/devices/<bdf>@,
//	dev/infiniband/{uverbsN,rdma_cm}, dev/vfio/{vfio,N}, proc/irq/N/smp_affinity_list
//
// and for each SoftRDMA:
//
//	sys/devices/virtual/infiniband/<name>/{parent (rxe),node_guid,node_type,
//	    ports/1/{gids/0,gid_attrs/ndevs/0,gid_attrs/types/0 (rxe),link_layer,state}},
//	sys/devices/virtual/infiniband_verbs/uverbsN/{ibdev,dev},
//	sys/class/infiniband/<name>@, sys/class/infiniband_verbs/uverbsN@,
//	dev/infiniband/{uverbsN,rdma_cm}
//
// (@ = symlink). Files the kernel makes writable are plain files here.
func Write(root string, topo Topology) (*Fixture, error) {
	b := &builder{root: root, fake: nlinktest.New(), ifindex: 10, group: 20, irq: 100}
	out := Topology{PFs: make([]PF, len(topo.PFs))}
	seen := map[string]bool{}
	for i, pf := range topo.PFs {
		pf, err := b.defaults(pf)
		if err != nil {
			return nil, err
		}
		for _, a := range append([]string{pf.PCIAddress}, vfAddrs(pf)...) {
			if seen[a] {
				return nil, fmt.Errorf("PCI address %s used twice in the topology", a)
			}
			seen[a] = true
		}
		out.PFs[i] = pf
	}
	if err := b.common(); err != nil {
		return nil, err
	}
	for _, pf := range out.PFs {
		if err := b.writePF(pf); err != nil {
			return nil, fmt.Errorf("write PF %s: %w", pf.PCIAddress, err)
		}
	}
	for i, sr := range topo.SoftRDMA {
		sr, err := b.writeSoftRDMA(sr)
		if err != nil {
			return nil, fmt.Errorf("soft RDMA device %d (%q): %w", i, sr.Name, err)
		}
		out.SoftRDMA = append(out.SoftRDMA, sr)
	}
	return &Fixture{Root: root, Netlink: b.fake, Topology: out}, nil
}

type builder struct {
	root    string
	fake    *nlinktest.Fake
	ifindex int
	group   int
	irq     int
	uverbs  int
}

func vfAddrs(pf PF) []string {
	out := make([]string, len(pf.VFs))
	for i, vf := range pf.VFs {
		out[i] = vf.PCIAddress
	}
	return out
}

type bdf struct{ domain, bus, dev, fn int }

func parseBDF(s string) (bdf, error) {
	var a bdf
	if _, err := fmt.Sscanf(s, "%04x:%02x:%02x.%1x", &a.domain, &a.bus, &a.dev, &a.fn); err != nil || a.String() != s {
		return a, fmt.Errorf("PCI address %q is not dddd:bb:dd.f (lower-case hex)", s)
	}
	return a, nil
}

func (a bdf) String() string { return fmt.Sprintf("%04x:%02x:%02x.%x", a.domain, a.bus, a.dev, a.fn) }

// plus returns the address n functions after a (devfn carries into the bus).
func (a bdf) plus(n int) bdf {
	devfn := a.dev<<3 | a.fn + n
	return bdf{domain: a.domain, bus: a.bus + devfn/256, dev: (devfn % 256) >> 3, fn: devfn & 7}
}

func (b *builder) nextIfIndex(want int) int {
	if want != 0 {
		if want >= b.ifindex {
			b.ifindex = want + 1
		}
		return want
	}
	b.ifindex++
	return b.ifindex - 1
}

func (b *builder) nextGroup(want int) int {
	if want != 0 {
		return want
	}
	b.group++
	return b.group - 1
}

func (b *builder) defaults(pf PF) (PF, error) {
	a, err := parseBDF(pf.PCIAddress)
	if err != nil {
		return pf, err
	}
	if pf.PCIeRoot == "" {
		pf.PCIeRoot = fmt.Sprintf("pci%04x:00", a.domain)
	}
	if pf.Vendor == "" || pf.DeviceID == "" {
		return pf, fmt.Errorf("PF %s: Vendor and DeviceID are required", pf.PCIAddress)
	}
	if pf.SubsystemVendor == "" {
		pf.SubsystemVendor = pf.Vendor
	}
	if pf.SubsystemDevice == "" {
		pf.SubsystemDevice = pf.DeviceID
	}
	if pf.VFDeviceID == "" {
		pf.VFDeviceID = pf.DeviceID
	}
	if pf.LinkType == 0 {
		pf.LinkType = ARPHRDEther
	}
	if pf.MTU == 0 {
		pf.MTU = 1500
		if pf.LinkType == ARPHRDInfiniBand {
			pf.MTU = 2044
		}
	}
	if pf.SpeedMbps == 0 {
		pf.SpeedMbps = 25000
	}
	if pf.TotalVFs == 0 {
		pf.TotalVFs = max(len(pf.VFs), 1)
	}
	if pf.TotalVFs < len(pf.VFs) {
		return pf, fmt.Errorf("PF %s: %d VFs but TotalVFs %d", pf.PCIAddress, len(pf.VFs), pf.TotalVFs)
	}
	if pf.PortGUID == "" {
		pf.PortGUID = pf.NodeGUID
	}
	pf.IOMMUGroup = b.nextGroup(pf.IOMMUGroup)
	if pf.IfName != "" {
		pf.IfIndex = b.nextIfIndex(pf.IfIndex)
		if pf.MAC == "" {
			pf.MAC = derivedMAC(a, pf.LinkType, pf.PortGUID)
		}
	}
	pf.VFs = append([]VF(nil), pf.VFs...)
	for i := range pf.VFs {
		vf := &pf.VFs[i]
		if vf.PCIAddress == "" {
			vf.PCIAddress = a.plus(1 + i).String()
		}
		va, err := parseBDF(vf.PCIAddress)
		if err != nil {
			return pf, fmt.Errorf("VF %d of %s: %w", i, pf.PCIAddress, err)
		}
		vf.IOMMUGroup = b.nextGroup(vf.IOMMUGroup)
		if vf.IRQs == nil {
			vf.IRQs = []int{b.irq, b.irq + 1}
			b.irq += 2
		}
		vf.Admin.ID = i
		if vf.IfName != "" {
			vf.IfIndex = b.nextIfIndex(vf.IfIndex)
			if vf.MAC == "" {
				if len(vf.Admin.Mac) == 6 && pf.LinkType == ARPHRDEther && !isZero(vf.Admin.Mac) {
					vf.MAC = vf.Admin.Mac.String()
				} else {
					vf.MAC = derivedMAC(va, pf.LinkType, vf.PortGUID)
				}
			}
		}
	}
	return pf, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// derivedMAC is a stable locally administered MAC (Ethernet) or a 20-byte
// IPoIB hardware address ending in the port GUID (InfiniBand).
func derivedMAC(a bdf, linkType int, portGUID string) string {
	if linkType == ARPHRDInfiniBand {
		g := portGUID
		if g == "" {
			g = fmt.Sprintf("00:00:00:%02x:%02x:%02x:%02x:%02x", a.domain&0xff, a.bus, a.dev, a.fn, 0)
		}
		return "00:00:10:87:fe:80:00:00:00:00:00:00:" + g
	}
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", a.domain&0xff, a.bus, a.dev, a.fn, 0x5a)
}

func (b *builder) common() error {
	if err := b.file("sys/bus/pci/drivers_probe", ""); err != nil {
		return err
	}
	return b.mkdir("sys/bus/pci/devices", "sys/class/net", "dev", "proc/irq")
}

func (b *builder) mkdir(rels ...string) error {
	for _, r := range rels {
		if err := os.MkdirAll(filepath.Join(b.root, r), 0o755); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) file(rel, content string) error {
	p := filepath.Join(b.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(content), 0o644)
}

// link makes rel a symlink to target (a path relative to the root), written
// relative to rel's directory, as sysfs does.
func (b *builder) link(rel, target string) error {
	p := filepath.Join(b.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	t, err := filepath.Rel(filepath.Dir(rel), target)
	if err != nil {
		return err
	}
	if err := os.Symlink(t, p); err != nil && !os.IsExist(err) {
		return err
	}
	return nil
}

// devicesRel is a device's directory relative to <root>/sys.
func devicesRel(pf PF, addr string) string {
	port := strings.TrimPrefix(pf.PCIeRoot, "pci") + ":00.0"
	return filepath.Join("devices", pf.PCIeRoot, port, addr)
}

func hex4(s string) string { return "0x" + strings.TrimPrefix(strings.ToLower(s), "0x") }

// sysGUID renders a canonical GUID the way sysfs prints node_guid.
func sysGUID(g string) string {
	h := strings.ReplaceAll(g, ":", "")
	if len(h) != 16 {
		h = strings.Repeat("0", 16)
	}
	return h[0:4] + ":" + h[4:8] + ":" + h[8:12] + ":" + h[12:16]
}

type pciDev struct {
	addr, vendor, device, subVendor, subDevice, driver string
	numa, group                                        int
	irqs                                               []int
}

func (b *builder) writePCI(pf PF, d pciDev) (string, error) {
	dir := filepath.Join("sys", devicesRel(pf, d.addr))
	files := map[string]string{
		"vendor":           hex4(d.vendor) + "\n",
		"device":           hex4(d.device) + "\n",
		"subsystem_vendor": hex4(d.subVendor) + "\n",
		"subsystem_device": hex4(d.subDevice) + "\n",
		"class":            "0x020000\n",
		"numa_node":        strconv.Itoa(d.numa) + "\n",
		"driver_override":  "(null)\n",
		"enable":           "1\n",
	}
	for name, c := range files {
		if err := b.file(filepath.Join(dir, name), c); err != nil {
			return "", err
		}
	}
	if err := b.link(filepath.Join("sys/bus/pci/devices", d.addr), dir); err != nil {
		return "", err
	}
	if d.driver != "" {
		drv := filepath.Join("sys/bus/pci/drivers", d.driver)
		for _, f := range []string{"bind", "unbind", "new_id", "remove_id"} {
			if err := b.file(filepath.Join(drv, f), ""); err != nil {
				return "", err
			}
		}
		if err := b.link(filepath.Join(dir, "driver"), drv); err != nil {
			return "", err
		}
		if err := b.link(filepath.Join(drv, d.addr), dir); err != nil {
			return "", err
		}
	}
	g := filepath.Join("sys/kernel/iommu_groups", strconv.Itoa(d.group))
	if err := b.link(filepath.Join(dir, "iommu_group"), g); err != nil {
		return "", err
	}
	if err := b.link(filepath.Join(g, "devices", d.addr), dir); err != nil {
		return "", err
	}
	if d.driver == "vfio-pci" {
		if err := b.file(filepath.Join("dev/vfio", strconv.Itoa(d.group)), ""); err != nil {
			return "", err
		}
		if err := b.file("dev/vfio/vfio", ""); err != nil {
			return "", err
		}
	}
	for _, irq := range d.irqs {
		if err := b.file(filepath.Join(dir, "msi_irqs", strconv.Itoa(irq)), "msix\n"); err != nil {
			return "", err
		}
		if err := b.file(filepath.Join("proc/irq", strconv.Itoa(irq), "smp_affinity_list"), "0-3\n"); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func (b *builder) writeNetdev(dir, name string, linkType, ifindex, mtu, speed int, mac string) error {
	nd := filepath.Join(dir, "net", name)
	files := map[string]string{
		"type":      strconv.Itoa(linkType) + "\n",
		"mtu":       strconv.Itoa(mtu) + "\n",
		"address":   mac + "\n",
		"speed":     strconv.Itoa(speed) + "\n",
		"ifindex":   strconv.Itoa(ifindex) + "\n",
		"operstate": "up\n",
	}
	for f, c := range files {
		if err := b.file(filepath.Join(nd, f), c); err != nil {
			return err
		}
	}
	if err := b.link(filepath.Join(nd, "device"), dir); err != nil {
		return err
	}
	return b.link(filepath.Join("sys/class/net", name), nd)
}

func (b *builder) writeRDMA(dir, name string, linkType int, nodeGUID, portGUID string, pkeys []string) error {
	ib := filepath.Join(dir, "infiniband", name)
	layer := "Ethernet"
	if linkType == ARPHRDInfiniBand {
		layer = "InfiniBand"
	}
	files := map[string]string{
		"node_guid":          sysGUID(nodeGUID) + "\n",
		"node_type":          "1: CA\n",
		"ports/1/gids/0":     "fe80:0000:0000:0000:" + sysGUID(portGUID) + "\n",
		"ports/1/link_layer": layer + "\n",
		"ports/1/state":      "4: ACTIVE\n",
		"ports/1/lid":        "0x1\n",
		"ports/1/phys_state": "5: LinkUp\n",
	}
	n := 0 // a VF without pkeys given gets no pkey table
	if len(pkeys) > 0 {
		n = max(16, len(pkeys))
	}
	for i := 0; i < n; i++ {
		v := "0x0000"
		if i < len(pkeys) {
			v = pkeys[i]
		}
		files["ports/1/pkeys/"+strconv.Itoa(i)] = v + "\n"
	}
	for f, c := range files {
		if err := b.file(filepath.Join(ib, f), c); err != nil {
			return err
		}
	}
	if err := b.link(filepath.Join(ib, "device"), dir); err != nil {
		return err
	}
	if err := b.link(filepath.Join("sys/class/infiniband", name), ib); err != nil {
		return err
	}
	uv := "uverbs" + strconv.Itoa(b.uverbs)
	if err := b.writeVerbs(filepath.Join(dir, "infiniband_verbs", uv), uv, name); err != nil {
		return err
	}
	return b.file("dev/infiniband/rdma_cm", "")
}

// writeSoftRDMA writes a netdev-bound RDMA device. Its GIDs and GUIDs are
// derived from the netdev's MAC (EUI-64) when the netdev is in the tree,
// as rxe and siw do.
func (b *builder) writeSoftRDMA(sr SoftRDMA) (SoftRDMA, error) {
	if sr.Type == "" {
		sr.Type = SoftRDMARXE
	}
	switch {
	case sr.Name == "" || strings.ContainsAny(sr.Name, "/ "):
		return sr, fmt.Errorf("soft RDMA device: Name %q is not an RDMA device name", sr.Name)
	case sr.Netdev == "" || strings.ContainsAny(sr.Netdev, "/ "):
		return sr, fmt.Errorf("soft RDMA device %s: Netdev %q is not a netdev name", sr.Name, sr.Netdev)
	case sr.Type != SoftRDMARXE && sr.Type != SoftRDMASIW:
		return sr, fmt.Errorf("soft RDMA device %s: Type %q is neither %q nor %q", sr.Name, sr.Type, SoftRDMARXE, SoftRDMASIW)
	}
	ib := filepath.Join("sys/devices/virtual/infiniband", sr.Name)
	if _, err := os.Lstat(filepath.Join(b.root, "sys/class/infiniband", sr.Name)); err == nil {
		return sr, fmt.Errorf("RDMA device %s exists already", sr.Name)
	}
	guid := "0000:0000:0000:0000"
	if mac, err := os.ReadFile(filepath.Join(b.root, "sys/class/net", sr.Netdev, "address")); err == nil {
		if hw, err := net.ParseMAC(strings.TrimSpace(string(mac))); err == nil && len(hw) == 6 {
			guid = fmt.Sprintf("%02x%02x:%02xff:fe%02x:%02x%02x", hw[0]^2, hw[1], hw[2], hw[3], hw[4], hw[5])
		}
	}
	nodeType := "1: CA"
	if sr.Type == SoftRDMASIW {
		nodeType = "4: RNIC"
	}
	files := map[string]string{
		"node_guid":                 guid + "\n",
		"node_type":                 nodeType + "\n",
		"ports/1/gids/0":            "fe80:0000:0000:0000:" + guid + "\n",
		"ports/1/gid_attrs/ndevs/0": sr.Netdev + "\n",
		"ports/1/link_layer":        "Ethernet\n",
		"ports/1/state":             "4: ACTIVE\n",
		"ports/1/phys_state":        "5: LinkUp\n",
		"ports/1/lid":               "0x0\n",
	}
	if sr.Type == SoftRDMARXE {
		files["parent"] = sr.Netdev + "\n"
		files["ports/1/gid_attrs/types/0"] = "IB/RoCE v1\n" // the default GID, RoCE v1 first
	}
	for f, c := range files {
		if err := b.file(filepath.Join(ib, f), c); err != nil {
			return sr, err
		}
	}
	if err := b.link(filepath.Join("sys/class/infiniband", sr.Name), ib); err != nil {
		return sr, err
	}
	uv := "uverbs" + strconv.Itoa(b.uverbs)
	vd := filepath.Join("sys/devices/virtual/infiniband_verbs", uv)
	if err := b.writeVerbs(vd, uv, sr.Name); err != nil {
		return sr, err
	}
	b.fake.AddRdmaLink(sr.Name, uint32(b.uverbs))
	return sr, b.file("dev/infiniband/rdma_cm", "")
}

// writeVerbs writes the verbs character device uv of the RDMA device name
// at vd, its class link and its /dev node, and takes the next number.
func (b *builder) writeVerbs(vd, uv, name string) error {
	if err := b.file(filepath.Join(vd, "ibdev"), name+"\n"); err != nil {
		return err
	}
	if err := b.file(filepath.Join(vd, "dev"), "231:"+strconv.Itoa(192+b.uverbs)+"\n"); err != nil {
		return err
	}
	if err := b.link(filepath.Join("sys/class/infiniband_verbs", uv), vd); err != nil {
		return err
	}
	if err := b.file(filepath.Join("dev/infiniband", uv), ""); err != nil {
		return err
	}
	b.uverbs++
	return nil
}

func (b *builder) writePF(pf PF) error {
	dir, err := b.writePCI(pf, pciDev{
		addr: pf.PCIAddress, vendor: pf.Vendor, device: pf.DeviceID,
		subVendor: pf.SubsystemVendor, subDevice: pf.SubsystemDevice,
		driver: pf.Driver, numa: pf.NUMANode, group: pf.IOMMUGroup,
	})
	if err != nil {
		return err
	}
	sriov := map[string]string{
		"sriov_totalvfs":          strconv.Itoa(pf.TotalVFs) + "\n",
		"sriov_numvfs":            strconv.Itoa(len(pf.VFs)) + "\n",
		"sriov_offset":            "1\n",
		"sriov_stride":            "1\n",
		"sriov_vf_device":         pf.VFDeviceID + "\n",
		"sriov_drivers_autoprobe": "1\n",
	}
	for f, c := range sriov {
		if err := b.file(filepath.Join(dir, f), c); err != nil {
			return err
		}
	}
	if pf.IfName != "" {
		if err := b.writeNetdev(dir, pf.IfName, pf.LinkType, pf.IfIndex, pf.MTU, pf.SpeedMbps, pf.MAC); err != nil {
			return err
		}
	}
	if pf.RDMADevice != "" {
		if err := b.writeRDMA(dir, pf.RDMADevice, pf.LinkType, pf.NodeGUID, pf.PortGUID, pf.PKeys); err != nil {
			return err
		}
		b.fake.AddRdmaLink(pf.RDMADevice, uint32(b.uverbs))
	}
	if pf.EswitchMode != "" {
		b.fake.SetEswitchMode(pf.PCIAddress, pf.EswitchMode)
	}

	var vfInfos []netlink.VfInfo
	var guids []nlink.VFGUID
	for i, vf := range pf.VFs {
		vdir, err := b.writePCI(pf, pciDev{
			addr: vf.PCIAddress, vendor: pf.Vendor, device: pf.VFDeviceID,
			subVendor: pf.SubsystemVendor, subDevice: pf.VFDeviceID,
			driver: vf.Driver, numa: pf.NUMANode, group: vf.IOMMUGroup, irqs: vf.IRQs,
		})
		if err != nil {
			return fmt.Errorf("VF %d: %w", i, err)
		}
		if err := b.link(filepath.Join(dir, "virtfn"+strconv.Itoa(i)), vdir); err != nil {
			return err
		}
		if err := b.link(filepath.Join(vdir, "physfn"), dir); err != nil {
			return err
		}
		if vf.IfName != "" {
			if err := b.writeNetdev(vdir, vf.IfName, pf.LinkType, vf.IfIndex, pf.MTU, pf.SpeedMbps, vf.MAC); err != nil {
				return fmt.Errorf("VF %d: %w", i, err)
			}
			attrs := netlink.LinkAttrs{Name: vf.IfName, Index: vf.IfIndex, MTU: pf.MTU, EncapType: encap(pf.LinkType)}
			if hw, err := net.ParseMAC(vf.MAC); err == nil {
				attrs.HardwareAddr = hw
			}
			b.fake.AddLink(attrs)
		}
		if vf.RDMADevice != "" {
			pg := vf.PortGUID
			if pg == "" {
				pg = vf.NodeGUID
			}
			if err := b.writeRDMA(vdir, vf.RDMADevice, pf.LinkType, vf.NodeGUID, pg, nil); err != nil {
				return fmt.Errorf("VF %d: %w", i, err)
			}
			b.fake.AddRdmaLink(vf.RDMADevice, uint32(b.uverbs))
		}
		info := vf.Admin
		if info.Mac == nil {
			info.Mac = make(net.HardwareAddr, 6)
		}
		vfInfos = append(vfInfos, info)
		if vf.NodeGUID != "" || vf.PortGUID != "" {
			g := nlink.VFGUID{VF: i}
			g.NodeGUID, _ = net.ParseMAC(vf.NodeGUID)
			g.PortGUID, _ = net.ParseMAC(vf.PortGUID)
			guids = append(guids, g)
		}
	}
	if pf.IfName != "" {
		attrs := netlink.LinkAttrs{
			Name: pf.IfName, Index: pf.IfIndex, MTU: pf.MTU, EncapType: encap(pf.LinkType),
			Flags: net.FlagUp, OperState: netlink.OperUp, Vfs: vfInfos,
		}
		if hw, err := net.ParseMAC(pf.MAC); err == nil {
			attrs.HardwareAddr = hw
		}
		b.fake.AddLink(attrs)
		if len(guids) > 0 {
			b.fake.SetVFGUIDs(pf.IfName, guids)
		}
		if pf.DefaultRoute {
			b.fake.AddRoute(netlink.Route{
				LinkIndex: pf.IfIndex, Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN,
				Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
				Gw:  net.IPv4(192, 0, 2, 1),
			})
		}
	}
	return nil
}

func encap(linkType int) string {
	if linkType == ARPHRDInfiniBand {
		return "infiniband"
	}
	return "ether"
}
