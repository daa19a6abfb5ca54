package inventory

import (
	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/pkg/hw"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// AdminFromVfInfo is the admin state a PF reports for one of its VFs:
// netlink's VF info and, on InfiniBand, the VF's GUIDs (nil when the PF
// reported none). It is the one conversion: the inventory and the VF
// snapshot (pkg/vfconfig) both use it. An all-zero MAC is "" (unset). GUIDs
// are kept as reported, all-zero included, because a snapshot must put
// back exactly what the VF had; as a device's identity (Device.NodeGUID)
// an all-zero GUID is no GUID.
func AdminFromVfInfo(v netlink.VfInfo, g *nlink.VFGUID) VFAdminState {
	a := VFAdminState{
		VLAN:      v.Vlan,
		QoS:       v.Qos,
		VLANProto: hw.VLANProtoName(v.VlanProto),
		SpoofChk:  v.Spoofchk,
		Trust:     v.Trust != 0,
		LinkState: hw.LinkStateName(v.LinkState),
		MinTxRate: int(v.MinTxRate),
		MaxTxRate: int(v.MaxTxRate),
	}
	for _, b := range v.Mac {
		if b != 0 {
			a.MAC = v.Mac.String()
			break
		}
	}
	if g != nil {
		a.NodeGUID, a.PortGUID = reportedGUID(g.NodeGUID), reportedGUID(g.PortGUID)
	}
	return a
}

// reportedGUID is a GUID as netlink reported it, "" when it is not 8 bytes.
func reportedGUID(b []byte) string {
	if g, ok := hw.GUIDFromBytes(b); ok {
		return g.String()
	}
	return ""
}

// setGUID is a reported GUID as a device's identity: "" when it is not 8
// bytes or all zero (unset).
func setGUID(b []byte) string {
	if g, ok := hw.GUIDFromBytes(b); ok && !g.IsZero() {
		return g.String()
	}
	return ""
}
