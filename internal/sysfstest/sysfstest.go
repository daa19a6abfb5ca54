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
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/checkpoint"
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
	// BootID, when set, is written where the kernel shows the boot's ID
	// (checkpoint.BootIDPath), as the daemon reads it.
	BootID string
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
	if topo.BootID != "" {
		if err := b.file(checkpoint.BootIDPath, topo.BootID+"\n"); err != nil {
			return nil, fmt.Errorf("boot ID: %w", err)
		}
		out.BootID = topo.BootID
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
