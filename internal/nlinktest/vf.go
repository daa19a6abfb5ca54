package nlinktest

// The VF requests made through the PF: MAC, VLAN/QoS, spoofchk, trust,
// link state, rate, and the InfiniBand node/port GUIDs.

import (
	"net"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

func (f *Fake) LinkSetVfHardwareAddr(l netlink.Link, vf int, hw net.HardwareAddr) error {
	return f.mutateVF("LinkSetVfHardwareAddr", l, vf, []any{hw}, func(v *netlink.VfInfo) {
		v.Mac = append(net.HardwareAddr(nil), hw...)
	})
}

func (f *Fake) LinkSetVfVlanQosProto(l netlink.Link, vf, vlan, qos, proto int) error {
	return f.mutateVF("LinkSetVfVlanQosProto", l, vf, []any{vlan, qos, proto}, func(v *netlink.VfInfo) {
		v.Vlan, v.Qos, v.VlanProto = vlan, qos, proto
	})
}

func (f *Fake) LinkSetVfSpoofchk(l netlink.Link, vf int, check bool) error {
	return f.mutateVF("LinkSetVfSpoofchk", l, vf, []any{check}, func(v *netlink.VfInfo) {
		v.Spoofchk = check
	})
}

func (f *Fake) LinkSetVfTrust(l netlink.Link, vf int, state bool) error {
	return f.mutateVF("LinkSetVfTrust", l, vf, []any{state}, func(v *netlink.VfInfo) {
		v.Trust = 0
		if state {
			v.Trust = 1
		}
	})
}

func (f *Fake) LinkSetVfState(l netlink.Link, vf int, state uint32) error {
	return f.mutateVF("LinkSetVfState", l, vf, []any{state}, func(v *netlink.VfInfo) {
		v.LinkState = state
	})
}

func (f *Fake) LinkSetVfRate(l netlink.Link, vf, minRate, maxRate int) error {
	return f.mutateVF("LinkSetVfRate", l, vf, []any{minRate, maxRate}, func(v *netlink.VfInfo) {
		v.MinTxRate, v.MaxTxRate = uint32(minRate), uint32(maxRate)
	})
}

// LinkSetVfGUID sets a VF's node (nl.IFLA_VF_IB_NODE_GUID) or port GUID.
func (f *Fake) LinkSetVfGUID(l netlink.Link, vf int, guid net.HardwareAddr, guidType int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("LinkSetVfGUID", l, vf, guid, guidType); err != nil {
		return err
	}
	if _, err := f.vf(l, vf); err != nil {
		return err
	}
	pf := l.Attrs().Name
	g := append(net.HardwareAddr(nil), guid...)
	for i := range f.guids[pf] {
		if f.guids[pf][i].VF == vf {
			setGUID(&f.guids[pf][i], g, guidType)
			return nil
		}
	}
	e := nlink.VFGUID{VF: vf}
	setGUID(&e, g, guidType)
	f.guids[pf] = append(f.guids[pf], e)
	return nil
}

func setGUID(e *nlink.VFGUID, g net.HardwareAddr, guidType int) {
	if guidType == nlIBNodeGUID {
		e.NodeGUID = g
	} else {
		e.PortGUID = g
	}
}

// nlIBNodeGUID mirrors nl.IFLA_VF_IB_NODE_GUID without importing nl here.
const nlIBNodeGUID = 10

func (f *Fake) VFGUIDs(pf netlink.Link) ([]nlink.VFGUID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("VFGUIDs", pf); err != nil {
		return nil, err
	}
	if _, err := f.target(pf); err != nil {
		return nil, err
	}
	out := make([]nlink.VFGUID, len(f.guids[pf.Attrs().Name]))
	copy(out, f.guids[pf.Attrs().Name])
	return out, nil
}
