package vfconfig

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/irq"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
)

func pfVF(pf netlink.Link, vf int) (netlink.VfInfo, bool) {
	for _, v := range pf.Attrs().Vfs {
		if v.ID == vf {
			return v, true
		}
	}
	return netlink.VfInfo{}, false
}

// TakeSnapshot records a VF's state before any change: what its PF reports for
// it (admin MAC, VLAN, QoS, proto, spoofchk, trust, link state, rates, IB
// GUIDs), its driver, its netdev's name, MAC and MTU, and its IRQ
// affinities. A PF that reports no VF info for the VF (a simulated node)
// gives AdminKnown=false rather than an error.
func TakeSnapshot(ctx context.Context, h nlink.Handle, root string, dev inventory.Device) (Snapshot, error) {
	log := klog.FromContext(ctx)
	if dev.Kind != inventory.KindVF && dev.Kind != inventory.KindPF {
		return Snapshot{}, fmt.Errorf("snapshot %s: unknown device kind %q", dev.PCIAddress, dev.Kind)
	}
	if dev.Kind == inventory.KindVF && dev.PFName == "" {
		return Snapshot{}, fmt.Errorf("snapshot VF %d (%s): its PF has no netdev name", dev.VFIndex, dev.PCIAddress)
	}
	s := Snapshot{
		PCIAddress:   dev.PCIAddress,
		PFName:       dev.PFName,
		PFPCIAddress: dev.PFPCIAddress,
		VFIndex:      dev.VFIndex,
	}
	var err error
	if s.PFDriver, err = DriverOf(root, dev.PFPCIAddress); err != nil {
		return Snapshot{}, err
	}
	if s.Driver, err = DriverOf(root, dev.PCIAddress); err != nil {
		return Snapshot{}, err
	}
	if dev.Kind == inventory.KindPF {
		// A whole PF (passthrough): driver, netdev and IRQs only.
		s.VFIndex = -1
		return snapshotLocal(s, root, dev)
	}
	pf, err := h.LinkByName(dev.PFName)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot VF %d of %s: get PF link: %w", dev.VFIndex, dev.PFName, err)
	}
	if v, ok := pfVF(pf, dev.VFIndex); ok {
		guids, err := h.VFGUIDs(pf)
		if err != nil {
			return Snapshot{}, fmt.Errorf("snapshot VF %d of %s: %w", dev.VFIndex, dev.PFName, err)
		}
		var mine *nlink.VFGUID
		for i := range guids {
			if guids[i].VF == dev.VFIndex {
				mine = &guids[i]
			}
		}
		s.AdminKnown = true
		s.Admin = inventory.AdminFromVfInfo(v, mine)
	} else {
		log.Info("PF reports no VF info for this VF (simulated PF?); PF-side settings will be refused",
			"pf", dev.PFName, "vf", dev.VFIndex, "pci", dev.PCIAddress)
	}
	return snapshotLocal(s, root, dev)
}

// snapshotLocal adds what sysfs and procfs say about the function itself:
// netdev name, MAC and MTU, and IRQ affinities.
func snapshotLocal(s Snapshot, root string, dev inventory.Device) (Snapshot, error) {
	var err error
	if s.IfName, err = pcidev.PrimaryNetdev(root, dev.PCIAddress); err != nil {
		return Snapshot{}, err
	}
	if s.IfName != "" {
		if s.MAC, s.MTU, err = netdevMACMTU(root, dev.PCIAddress, s.IfName); err != nil {
			return Snapshot{}, err
		}
	}
	if s.IRQAffinity, err = irq.Affinities(root, dev.PCIAddress); err != nil {
		return Snapshot{}, err
	}
	if len(s.IRQAffinity) == 0 {
		s.IRQAffinity = nil
	}
	return s, nil
}
