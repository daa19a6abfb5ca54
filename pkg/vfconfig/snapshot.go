package vfconfig

import (
	"context"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/irq"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// VLAN protocol numbers as netlink carries them (host order here).
const (
	protoDot1Q  = 0x8100
	protoDot1AD = 0x88a8
)

var linkStateNames = map[uint32]string{
	nl.IFLA_VF_LINK_STATE_AUTO:    "auto",
	nl.IFLA_VF_LINK_STATE_ENABLE:  "enable",
	nl.IFLA_VF_LINK_STATE_DISABLE: "disable",
}

// protoName names a VLAN protocol as the inventory does: "" when the PF
// did not report one (no IFLA_VF_VLAN_LIST), which means 802.1Q.
func protoName(p int) string {
	switch p {
	case protoDot1Q:
		return "802.1q"
	case protoDot1AD:
		return "802.1ad"
	}
	return ""
}

func protoNumber(s string) (int, error) {
	switch s {
	case "", "802.1q", "802.1Q":
		return protoDot1Q, nil
	case "802.1ad", "802.1AD":
		return protoDot1AD, nil
	}
	return 0, fmt.Errorf("vlanProto %q: want 802.1q or 802.1ad", s)
}

func linkStateNumber(s string) (uint32, error) {
	for n, name := range linkStateNames {
		if name == s {
			return n, nil
		}
	}
	return 0, fmt.Errorf("linkState %q: want auto, enable or disable", s)
}

func adminFromVfInfo(v netlink.VfInfo) inventory.VFAdminState {
	// Same conventions as the inventory: an unset (zero) MAC is "".
	a := inventory.VFAdminState{
		VLAN:      v.Vlan,
		QoS:       v.Qos,
		VLANProto: protoName(v.VlanProto),
		SpoofChk:  v.Spoofchk,
		Trust:     v.Trust != 0,
		LinkState: linkStateNames[v.LinkState],
		MinTxRate: int(v.MinTxRate),
		MaxTxRate: int(v.MaxTxRate),
	}
	for _, b := range v.Mac {
		if b != 0 {
			a.MAC = v.Mac.String()
			break
		}
	}
	return a
}

func pfVF(pf netlink.Link, vf int) (netlink.VfInfo, bool) {
	for _, v := range pf.Attrs().Vfs {
		if v.ID == vf {
			return v, true
		}
	}
	return netlink.VfInfo{}, false
}

func guidString(g net.HardwareAddr) string {
	if len(g) == 0 {
		return ""
	}
	return g.String()
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
		s.AdminKnown = true
		s.Admin = adminFromVfInfo(v)
		guids, err := h.VFGUIDs(pf)
		if err != nil {
			return Snapshot{}, fmt.Errorf("snapshot VF %d of %s: %w", dev.VFIndex, dev.PFName, err)
		}
		for _, g := range guids {
			if g.VF == dev.VFIndex {
				s.Admin.NodeGUID = guidString(g.NodeGUID)
				s.Admin.PortGUID = guidString(g.PortGUID)
			}
		}
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
	if s.IfName, err = NetdevName(root, dev.PCIAddress); err != nil {
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
