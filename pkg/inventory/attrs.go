package inventory

// This file reads one PCI function's attributes from sysfs: required and
// optional values, PCI IDs, netdevs, RDMA devices and their pkey tables.

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"

	"k8s.io/dynamic-resource-allocation/deviceattribute"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/hw"
	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
)

// required reads a file the device cannot do without; a failure turns into
// an exclusion that says whether the device vanished or the file is bad.
func (s *scanner) required(dir ref, file string, parse func(string) error) error {
	v, err := readValue(dir.join(file))
	if err == nil {
		if perr := parse(v); perr != nil {
			return exclude("garbled %s: %v", file, perr)
		}
		return nil
	}
	if isNotExist(err) {
		if exists(dir) != nil {
			return exclude(reasonVanished)
		}
		return exclude("missing %s", file)
	}
	return exclude("unreadable %s: %v", file, err)
}

// optional reads an attribute that may be left out. Absent files are
// normal (nothing logged); unreadable or garbled ones are logged.
func (s *scanner) optional(bdf string, dir ref, file string, parse func(string) error) bool {
	v, err := readValue(dir.join(file))
	if err != nil {
		if !isNotExist(err) {
			s.log.V(2).Info("Leaving attribute out: unreadable", "pci", bdf, "file", file, "err", err)
		}
		return false
	}
	if err := parse(v); err != nil {
		s.log.V(2).Info("Leaving attribute out: garbled", "pci", bdf, "file", file, "err", err)
		return false
	}
	return true
}

// readPCI fills what a PF has: IDs, driver, NUMA, PCIe root, IOMMU group.
func (s *scanner) readPCI(dir ref, bdf string) (Device, error) {
	d := Device{Name: DeviceName(bdf), PCIAddress: bdf, NUMANode: NUMAUnknown, LinkType: LinkTypeUnknown}
	var err error
	if err := s.required(dir, "vendor", func(v string) error { d.Vendor, err = parseHexID(v); return err }); err != nil {
		return d, err
	}
	if err := s.required(dir, "device", func(v string) error { d.DeviceID, err = parseHexID(v); return err }); err != nil {
		return d, err
	}
	s.optional(bdf, dir, "subsystem_vendor", func(v string) error { d.SubsystemVendor, err = parseHexID(v); return err })
	s.optional(bdf, dir, "subsystem_device", func(v string) error { d.SubsystemDevice, err = parseHexID(v); return err })
	s.optional(bdf, dir, "numa_node", func(v string) error { d.NUMANode, err = parseNUMA(v); return err })
	d.Driver = s.optionalLink(bdf, dir, "driver")
	d.IOMMUGroup = s.optionalLink(bdf, dir, "iommu_group")
	d.PCIeRoot = s.pcieRoot(bdf)
	return d, nil
}

// pcieRoot asks deviceattribute for the device's PCIe root complex; it
// resolves /sys/bus/pci/devices/<bdf> under the scan's root.
func (s *scanner) pcieRoot(bdf string) string {
	attr, err := deviceattribute.GetPCIeRootAttributeByPCIBusID(bdf, s.pcieRootFS)
	if err != nil || attr.Value.StringValue == nil {
		s.log.V(2).Info("Leaving attribute out: PCIe root", "pci", bdf, "err", err)
		return ""
	}
	return *attr.Value.StringValue
}

func (s *scanner) optionalLink(bdf string, dir ref, name string) string {
	v, err := readLinkBase(dir.join(name))
	if err != nil && !isNotExist(err) {
		s.log.V(2).Info("Leaving attribute out: unreadable link", "pci", bdf, "link", name, "err", err)
	}
	return v
}

// readNetdevs fills IfName/IfNames/MAC, and for a PF (or a VF whose PF's
// link type is unknown) LinkType, and for a PF MTU and speed, from
// <dev>/net/. With several netdevs (switchdev representors, IPoIB child
// interfaces) the uplink comes first: not a representor, lowest ifindex.
func (s *scanner) readNetdevs(devDir ref, d *Device, pf bool) {
	dir := devDir.join("net")
	names, err := s.children(dir, d.PCIAddress, s.classNet)
	if err != nil {
		if !isNotExist(err) {
			s.log.V(2).Info("Leaving netdevs out: unreadable", "pci", d.PCIAddress, "err", err)
		}
		return
	}
	if len(names) == 0 {
		return
	}
	nds := make([]pcidev.Netdev, len(names))
	for i, n := range names {
		nds[i] = pcidev.Netdev{Name: n}
		if len(names) > 1 {
			// Which one is the device's netdev: pcidev's rule.
			nd := dir.join(n)
			s.optional(d.PCIAddress, nd, "ifindex", func(v string) error {
				x, err := parseInt(v)
				if err == nil {
					nds[i].Ifindex = x
				}
				return err
			})
			if v, err := readValue(nd.join("phys_port_name")); err == nil {
				nds[i].Representor = pcidev.IsRepresentorPortName(v)
			}
		}
	}
	pcidev.SortPrimary(nds)
	d.IfNames = make([]string, len(nds))
	for i := range nds {
		d.IfNames[i] = nds[i].Name
	}
	d.IfName = d.IfNames[0]
	up := dir.join(d.IfName)
	s.optional(d.PCIAddress, up, "address", func(v string) (err error) { d.MAC, err = parseMAC(v); return err })
	if pf || d.LinkType == LinkTypeUnknown {
		s.optional(d.PCIAddress, up, "type", func(v string) (err error) { d.LinkType, err = parseLinkType(v); return err })
	}
	if pf {
		s.optional(d.PCIAddress, up, "mtu", func(v string) (err error) { d.MTU, err = parseInt(v); return err })
		s.optional(d.PCIAddress, up, "speed", func(v string) error {
			n, err := parseInt(v)
			if err == nil && n > 0 {
				d.SpeedMbps = n
			}
			return err
		})
	}
}

// readRDMA fills RDMADevices from <dev>/infiniband/, followed by the
// RDMA devices without a PCI parent bound to one of the device's netdevs
// (an rxe on a VF), and, for a PF with a device of its own, the node
// GUID, port 1 GUID and the non-zero pkeys of port 1. It returns how many
// of RDMADevices are the PCI function's own (they come first).
func (s *scanner) readRDMA(devDir ref, d *Device, pf bool) int {
	dir := devDir.join("infiniband")
	names, err := s.children(dir, d.PCIAddress, s.classIB)
	if err != nil && !isNotExist(err) {
		s.log.V(2).Info("Leaving RDMA devices out: unreadable", "pci", d.PCIAddress, "err", err)
	}
	own := len(names)
	for _, nd := range d.IfNames {
		if bound := s.ibByNetdev[nd]; len(bound) > 0 {
			names = append(names[:len(names):len(names)], bound...) // never into the index's array
		}
	}
	if len(names) == 0 {
		return 0
	}
	d.RDMADevices = names
	if !pf || own == 0 {
		return own
	}
	ib := dir.join(names[0])
	s.optional(d.PCIAddress, ib, "node_guid", func(v string) error {
		g, err := hw.ParseGUID(v)
		if err == nil && !g.IsZero() {
			d.NodeGUID = g.String()
		}
		return err
	})
	if d.LinkType != LinkTypeInfiniBand {
		return own // RoCE: GIDs are IP based, pkeys meaningless
	}
	s.optional(d.PCIAddress, ib, "ports/1/gids/0", func(v string) error {
		g, err := hw.GUIDFromGID(v)
		if err == nil && !g.IsZero() {
			d.PortGUID = g.String()
		}
		return err
	})
	d.PKeys = s.readPKeys(d.PCIAddress, ib.join("ports", "1", "pkeys"))
	return own
}

// rdmaNetnsMode reads the RDMA netns mode when a device has an RDMA
// device, "" otherwise or when the kernel does not report it (a kernel
// without RDMA netns support shares every RDMA device).
func (s *scanner) rdmaNetnsMode(devs []Device) string {
	if !slices.ContainsFunc(devs, func(d Device) bool { return len(d.RDMADevices) > 0 }) {
		return ""
	}
	mode, err := rdma.NetnsMode(s.nl)
	if err != nil {
		s.log.V(2).Info("RDMA netns mode unknown", "err", err)
		return ""
	}
	return mode
}

// PortPKeys reads the pkey table of port 1 of the PCI function's own
// RDMA device (the first under <root>/sys/bus/pci/devices/<pci>/infiniband),
// non-zero entries in table order, formatted like Device.PKeys. The
// table belongs to the port's GUID: after a VF's GUID changes, this is
// where the partitions the subnet manager gives the new GUID show.
func PortPKeys(ctx context.Context, root, pciAddress string) ([]string, error) {
	if root == "" {
		root = "/"
	}
	s := &scanner{sys: filepath.Join(root, "sys"), log: klog.FromContext(ctx)}
	dir := pathRef(filepath.Join(s.sys, "bus", "pci", "devices", pciAddress, "infiniband"))
	names, err := listDir(dir)
	if err != nil {
		return nil, fmt.Errorf("RDMA device of %s: %w", pciAddress, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("RDMA device of %s: %s is empty", pciAddress, dir)
	}
	pkeys := dir.join(names[0], "ports", "1", "pkeys")
	if err := exists(pkeys); err != nil {
		return nil, fmt.Errorf("pkey table of %s (%s): %w", pciAddress, names[0], err)
	}
	return s.readPKeys(pciAddress, pkeys), nil
}

func (s *scanner) readPKeys(bdf string, dir ref) []string {
	entries, err := listDir(dir)
	if err != nil {
		if !isNotExist(err) {
			s.log.V(2).Info("Leaving pkeys out: unreadable", "pci", bdf, "err", err)
		}
		return nil
	}
	// Keep pkey table order (entries are numbered), not name order.
	idx := make([]int, 0, len(entries))
	for _, e := range entries {
		if n, err := strconv.Atoi(e); err == nil && n >= 0 {
			idx = append(idx, n)
		}
	}
	sort.Ints(idx)
	var out []string
	seen := map[hw.PKey]bool{}
	for _, n := range idx {
		var p hw.PKey
		if s.optional(bdf, dir, strconv.Itoa(n), func(v string) (err error) { p, err = hw.ParsePKey(v); return err }) && p != 0 && !seen[p] {
			seen[p] = true
			out = append(out, p.String())
		}
	}
	return out
}
