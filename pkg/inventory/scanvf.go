package inventory

// This file reads the VFs of one PF: their sysfs attributes and the
// admin state and GUIDs the PF reports over netlink.

import (
	"path/filepath"
	"strconv"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/pkg/hw"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
)

// pfContext is what the VFs of one PF share.
type pfContext struct {
	pf         *Device
	dir        ref    // the PF's directory
	realDir    string // its path under <sys>/devices
	vfDeviceID string // sriov_vf_device, "" when unreadable
	admin      map[int]netlink.VfInfo
	guids      map[int]nlink.VFGUID
}

// adminState asks the PF link for its VFs' admin state and, on
// InfiniBand, their GUIDs.
func (s *scanner) adminState(pf *Device, link netlink.Link) (map[int]netlink.VfInfo, map[int]nlink.VFGUID) {
	if link == nil || pf.NumVFs == 0 {
		return nil, nil
	}
	admin := make(map[int]netlink.VfInfo, len(link.Attrs().Vfs))
	for _, v := range link.Attrs().Vfs {
		admin[v.ID] = v
	}
	if pf.LinkType != LinkTypeInfiniBand {
		return admin, nil
	}
	gs, err := s.nl.VFGUIDs(link)
	if err != nil {
		s.log.V(2).Info("No VF GUIDs from the PF", "pf", pf.IfName, "err", err)
		return admin, nil
	}
	guids := make(map[int]nlink.VFGUID, len(gs))
	for _, g := range gs {
		guids[g.VF] = g
	}
	return admin, guids
}

// scanVF reads VF i of a PF. The kernel gives every VF its PF's vendor
// ID and the PF's sriov_vf_device as device ID (drivers/pci/iov.c), so
// those come from the PF; a VF that is a sibling of its PF (virtfn ->
// "../<bdf>", the normal layout) shares the PF's PCIe root and is read
// relative to the PF's parent folder. Everything else is read from the
// VF's own directory.
func (s *scanner) scanVF(pc *pfContext, i int) (Device, error) {
	pf := pc.pf
	fn := "virtfn" + strconv.Itoa(i)
	target, err := readLink(pc.dir.join(fn))
	if err != nil {
		if isNotExist(err) {
			return Device{}, exclude("%s: %s", fn, reasonVanished)
		}
		return Device{}, exclude("unreadable %s: %v", fn, err)
	}
	vfBDF := filepath.Base(target)
	if !pcidev.IsBDF(vfBDF) {
		return Device{}, exclude("%s points to %q, not a PCI device", fn, target)
	}
	sibling := target == "../"+vfBDF
	var dir ref
	switch {
	case sibling:
		dir = pc.dir.join("..", vfBDF)
	case filepath.IsAbs(target):
		dir = pathRef(s.realDir(vfBDF))
	default:
		dir = pathRef(filepath.Join(pc.realDir, target))
	}
	vf := Device{
		Name: DeviceName(vfBDF), Kind: KindVF, PCIAddress: vfBDF, VFIndex: i,
		PFPCIAddress: pf.PCIAddress, PFName: pf.IfName, PFDriver: pf.Driver,
		Vendor: pf.Vendor, DeviceID: pc.vfDeviceID, NUMANode: NUMAUnknown, LinkType: pf.LinkType,
	}
	if vf.DeviceID == "" {
		if err := s.required(dir, "device", func(v string) (err error) { vf.DeviceID, err = parseHexID(v); return err }); err != nil {
			return vf, err
		}
	}
	// numa_node doubles as the check that the VF is still there.
	if v, err := readValue(dir.join("numa_node")); err != nil {
		if exists(dir) != nil {
			return vf, exclude(reasonVanished)
		}
		s.log.V(2).Info("Leaving attribute out: unreadable", "pci", vfBDF, "file", "numa_node", "err", err)
	} else if vf.NUMANode, err = parseNUMA(v); err != nil {
		s.log.V(2).Info("Leaving attribute out: garbled", "pci", vfBDF, "file", "numa_node", "err", err)
	}
	vf.Driver = s.optionalLink(vfBDF, dir, "driver")
	vf.IOMMUGroup = s.optionalLink(vfBDF, dir, "iommu_group")
	if sibling {
		vf.PCIeRoot = pf.PCIeRoot
	} else {
		vf.PCIeRoot = s.pcieRoot(vfBDF)
	}
	s.readNetdevs(dir, &vf, false)
	ownRDMA := s.readRDMA(dir, &vf, false)
	g, hasGUIDs := pc.guids[i]
	if info, ok := pc.admin[i]; ok {
		var guids *nlink.VFGUID
		if hasGUIDs {
			guids = &g
		}
		a := AdminFromVfInfo(info, guids)
		vf.Admin = &a
	}
	if hasGUIDs {
		// As identity, an unset (all-zero) GUID is no GUID.
		vf.NodeGUID, vf.PortGUID = setGUID(g.NodeGUID), setGUID(g.PortGUID)
	}
	if vf.NodeGUID == "" && vf.LinkType == LinkTypeInfiniBand && ownRDMA > 0 {
		// The PF did not report it; the VF's own RDMA device knows.
		s.optional(vfBDF, dir.join("infiniband", vf.RDMADevices[0]), "node_guid", func(v string) error {
			g, err := hw.ParseGUID(v)
			if err == nil && !g.IsZero() {
				vf.NodeGUID = g.String()
			}
			return err
		})
	}
	return vf, nil
}
