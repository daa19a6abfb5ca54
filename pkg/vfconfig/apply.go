package vfconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/hw"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// A MAC set that returns EBUSY (the VF driver is mid-reset) is retried
// macBusyRetries times, waiting macBusyFirstWait, then twice as long each
// time (about 310 ms in all), then given up.
const (
	macBusyRetries   = 5
	macBusyFirstWait = 10 * time.Millisecond
)

// target is one VF's wanted admin state, validated.
type target struct {
	mac       net.HardwareAddr
	vlan, qos int
	proto     int
	spoofChk  bool
	trust     bool
	linkState uint32
	minRate   int
	maxRate   int
}

// resolve validates settings and merges them over base (the snapshot's
// admin state), so a knob given partially (VLAN without QoS) keeps the
// rest as it was. Errors name the field.
func resolve(base inventory.VFAdminState, s Settings) (target, error) {
	var t target
	var err error
	macStr := setOr(s.MAC, base.MAC)
	if macStr == "" {
		macStr = "00:00:00:00:00:00" // unset: restoring it clears the admin MAC
	}
	if t.mac, err = net.ParseMAC(macStr); err != nil || len(t.mac) != 6 {
		return t, fmt.Errorf("mac %q: not an Ethernet MAC address", macStr)
	}
	t.vlan, t.qos = setOr(s.VLAN, base.VLAN), setOr(s.QoS, base.QoS)
	if t.vlan < 0 || t.vlan > hw.MaxVLAN {
		return t, fmt.Errorf("vlan %d: want 0..%d", t.vlan, hw.MaxVLAN)
	}
	if t.qos < 0 || t.qos > hw.MaxVLANQoS {
		return t, fmt.Errorf("qos %d: want 0..7", t.qos)
	}
	if t.proto, err = hw.VLANProtoNumber(setOr(s.VLANProto, base.VLANProto)); err != nil {
		return t, err
	}
	t.spoofChk, t.trust = setOr(s.SpoofChk, base.SpoofChk), setOr(s.Trust, base.Trust)
	ls := setOr(s.LinkState, base.LinkState)
	if ls == "" {
		ls = "auto"
	}
	if t.linkState, err = hw.LinkStateNumber(ls); err != nil {
		return t, err
	}
	t.minRate, t.maxRate = setOr(s.MinTxRate, base.MinTxRate), setOr(s.MaxTxRate, base.MaxTxRate)
	if t.minRate < 0 {
		return t, fmt.Errorf("minTxRate %d: must not be negative", t.minRate)
	}
	if t.maxRate < 0 {
		return t, fmt.Errorf("maxTxRate %d: must not be negative", t.maxRate)
	}
	if t.maxRate != 0 && t.minRate > t.maxRate {
		return t, fmt.Errorf("minTxRate %d is above maxTxRate %d", t.minRate, t.maxRate)
	}
	return t, nil
}

// setOr is the value a setting gives a knob: *p when it is set, else what
// the knob was (base).
func setOr[T any](p *T, base T) T {
	if p != nil {
		return *p
	}
	return base
}

// vfOp applies one knob's value through the PF.
type vfOp struct {
	h      nlink.Handle
	pf     netlink.Link
	snap   Snapshot
	root   string
	ifName string // VF netdev name, updated by a GUID rebind
}

func (o *vfOp) fail(what string, err error) error {
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("PF %s (driver %s) does not support setting %s of VF %d: %w",
			o.snap.PFName, o.snap.PFDriver, what, o.snap.VFIndex, err)
	}
	return fmt.Errorf("set %s of VF %d on PF %s (driver %s): %w", what, o.snap.VFIndex, o.snap.PFName, o.snap.PFDriver, err)
}

func (o *vfOp) setMAC(ctx context.Context, mac net.HardwareAddr) error {
	for i := 0; ; i++ {
		err := o.h.LinkSetVfHardwareAddr(o.pf, o.snap.VFIndex, mac)
		if !errors.Is(err, unix.EBUSY) || i == macBusyRetries {
			if err != nil {
				return o.fail("mac", err)
			}
			return nil
		}
		klog.FromContext(ctx).V(2).Info("VF MAC set busy, retrying", "pf", o.snap.PFName, "vf", o.snap.VFIndex, "attempt", i+1)
		select {
		case <-ctx.Done():
			return o.fail("mac", errors.Join(err, ctx.Err()))
		case <-time.After(macBusyFirstWait << i):
		}
	}
}

// set applies knob k with the values of t.
func (o *vfOp) set(ctx context.Context, k Knob, t target) error {
	vf := o.snap.VFIndex
	switch k {
	case KnobMAC:
		return o.setMAC(ctx, t.mac)
	case KnobVLAN:
		if err := o.h.LinkSetVfVlanQosProto(o.pf, vf, t.vlan, t.qos, t.proto); err != nil {
			return o.fail("vlan/qos/proto", err)
		}
	case KnobSpoofChk:
		if err := o.h.LinkSetVfSpoofchk(o.pf, vf, t.spoofChk); err != nil {
			return o.fail("spoofChk", err)
		}
	case KnobTrust:
		if err := o.h.LinkSetVfTrust(o.pf, vf, t.trust); err != nil {
			return o.fail("trust", err)
		}
	case KnobLinkState:
		if err := o.h.LinkSetVfState(o.pf, vf, t.linkState); err != nil {
			return o.fail("linkState", err)
		}
	case KnobRate:
		if err := o.h.LinkSetVfRate(o.pf, vf, t.minRate, t.maxRate); err != nil {
			return o.fail("min/max tx rate", err)
		}
	default:
		return fmt.Errorf("unknown knob %q", k)
	}
	return nil
}

// setGUID sets the node and port GUID and rebinds the VF driver so the VF
// takes them. A failure after the node GUID was set puts the snapshot's
// GUIDs back (and, if the rebind was what failed, rebinds again) unless
// this call is itself that restore.
func (o *vfOp) setGUID(ctx context.Context, node, port net.HardwareAddr) error {
	return o.setGUIDs(ctx, node, port, true)
}

func (o *vfOp) setGUIDs(ctx context.Context, node, port net.HardwareAddr, revert bool) error {
	vf := o.snap.VFIndex
	oldNode, oldPort := snapGUID(o.snap.Admin.NodeGUID), snapGUID(o.snap.Admin.PortGUID)
	if err := o.h.LinkSetVfGUID(o.pf, vf, node, nl.IFLA_VF_IB_NODE_GUID); err != nil {
		return o.fail("node GUID", err)
	}
	if err := o.h.LinkSetVfGUID(o.pf, vf, port, nl.IFLA_VF_IB_PORT_GUID); err != nil {
		err = o.fail("port GUID", err)
		if revert && oldNode != nil {
			if uerr := o.h.LinkSetVfGUID(o.pf, vf, oldNode, nl.IFLA_VF_IB_NODE_GUID); uerr != nil {
				err = errors.Join(err, fmt.Errorf("undo node GUID of VF %d on %s: %w", vf, o.snap.PFName, uerr))
			}
		}
		return err
	}
	name, err := Rebind(ctx, o.root, o.snap.PCIAddress, o.snap.Driver, o.snap.IfName != "")
	if err != nil {
		err = fmt.Errorf("rebind VF %d (%s) after setting its GUID: %w", vf, o.snap.PCIAddress, err)
		if revert && oldNode != nil && oldPort != nil {
			if uerr := o.setGUIDs(ctx, oldNode, oldPort, false); uerr != nil {
				err = errors.Join(err, fmt.Errorf("undo GUIDs: %w", uerr))
			}
		}
		return err
	}
	if name != o.ifName {
		klog.FromContext(ctx).Info("VF netdev renamed by rebind", "pci", o.snap.PCIAddress, "old", o.ifName, "new", name)
	}
	o.ifName = name
	return nil
}

// Apply changes the VF's admin state through its PF as settings say, in
// the order Settings.Knobs gives. Bad settings are refused before anything
// changes, naming the field. If a knob fails (EOPNOTSUPP / EINVAL: the PF
// driver does not support it), the knobs this call already applied are put
// back to the snapshot's values and the error names the knob, the PF and
// its driver. The GUID is not a knob of Apply: SetGUID sets it.
func Apply(ctx context.Context, h nlink.Handle, root string, snap Snapshot, settings Settings) error {
	log := klog.FromContext(ctx)
	knobs := settings.Knobs()
	if len(knobs) == 0 {
		return nil
	}
	t, err := resolve(snap.Admin, settings)
	if err != nil {
		return fmt.Errorf("VF settings of %s: %w", snap.PCIAddress, err)
	}
	o, err := openVF(h, root, snap, fmt.Sprintf("VF settings %v", knobs))
	if err != nil {
		return err
	}
	before, err := resolve(snap.Admin, Settings{})
	if err != nil {
		return fmt.Errorf("snapshot of %s: %w", snap.PCIAddress, err)
	}
	for i, k := range knobs {
		if err := o.set(ctx, k, t); err != nil {
			undo := o.undo(ctx, knobs[:i], before)
			return errors.Join(err, undo)
		}
	}
	log.V(2).Info("Applied VF settings", "pci", snap.PCIAddress, "pf", snap.PFName, "vf", snap.VFIndex, "knobs", knobs)
	return nil
}

// openVF checks that what can be changed through the PF is known for the
// VF of snap and returns the operation over its PF link; what names the
// change in the errors.
func openVF(h nlink.Handle, root string, snap Snapshot, what string) (*vfOp, error) {
	if snap.VFIndex < 0 {
		return nil, fmt.Errorf("%s of %s: it is a whole PF, VF settings do not apply", what, snap.PCIAddress)
	}
	if !snap.AdminKnown { // every knob goes through the PF
		return nil, fmt.Errorf("%s of %s: PF %s reports no VF info for VF %d (not a real SR-IOV PF?), so nothing can be set through it",
			what, snap.PCIAddress, snap.PFName, snap.VFIndex)
	}
	pf, err := h.LinkByName(snap.PFName)
	if err != nil {
		return nil, fmt.Errorf("apply %s to VF %d of %s: get PF link: %w", what, snap.VFIndex, snap.PFName, err)
	}
	return &vfOp{h: h, pf: pf, snap: snap, root: root, ifName: snap.IfName}, nil
}

// SetGUID sets the VF's IB node and port GUID to guid (canonical
// "xx:..:xx") through its PF and rebinds the VF driver so the VF takes
// it; a failure puts the snapshot's GUIDs back. It is refused before
// anything changes when guid is not an assignable GUID or when the PF
// does not report the VF's current GUIDs (they could not be restored).
// After it the VF's netdev may have a new name; read it with
// pcidev.PrimaryNetdev. Restore with KnobGUID undoes it.
func SetGUID(ctx context.Context, h nlink.Handle, root string, snap Snapshot, guid string) error {
	g, err := hw.ParseGUID(guid)
	if err != nil {
		return fmt.Errorf("VF settings of %s: guid: %w", snap.PCIAddress, err)
	}
	o, err := openVF(h, root, snap, "guid")
	if err != nil {
		return err
	}
	if snap.Admin.NodeGUID == "" || snap.Admin.PortGUID == "" {
		return fmt.Errorf("guid of %s: PF %s (driver %s) does not report the VF's current GUIDs, so they could not be restored; refusing to change them",
			snap.PCIAddress, snap.PFName, snap.PFDriver)
	}
	if err := o.setGUID(ctx, g.HardwareAddr(), g.HardwareAddr()); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Set VF GUID", "pci", snap.PCIAddress, "pf", snap.PFName, "vf", snap.VFIndex, "guid", g.String())
	return nil
}

// undo puts knobs (already applied) back to before, last first.
func (o *vfOp) undo(ctx context.Context, knobs []Knob, before target) error {
	var errs []error
	for i := len(knobs) - 1; i >= 0; i-- {
		k := knobs[i]
		if err := o.set(ctx, k, before); err != nil {
			errs = append(errs, fmt.Errorf("undo: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Restore puts the VF back as the snapshot recorded it: exactly the knobs
// in changed, and always the admin MAC (the pod's driver may have changed
// it on a trusted VF). It goes on past a failing knob and reports all
// failures. Restoring twice, or restoring an untouched VF, is fine; the
// GUID is only set (and the VF rebound) when it differs. When the snapshot
// has no PF-side state (AdminKnown false) it does nothing PF-side.
func Restore(ctx context.Context, h nlink.Handle, root string, snap Snapshot, changed []Knob) error {
	log := klog.FromContext(ctx)
	if !snap.AdminKnown {
		log.V(2).Info("No PF-side VF state recorded; nothing to restore through the PF", "pci", snap.PCIAddress, "pf", snap.PFName)
		return nil
	}
	before, err := resolve(snap.Admin, Settings{})
	if err != nil {
		return fmt.Errorf("restore %s: bad snapshot: %w", snap.PCIAddress, err)
	}
	pf, err := h.LinkByName(snap.PFName)
	if err != nil {
		return fmt.Errorf("restore VF %d of %s: get PF link: %w", snap.VFIndex, snap.PFName, err)
	}
	o := &vfOp{h: h, pf: pf, snap: snap, root: root, ifName: snap.IfName}
	var errs []error
	if err := o.setMAC(ctx, before.mac); err != nil {
		errs = append(errs, err)
	}
	for _, k := range changed {
		switch k {
		case KnobMAC:
			continue // done above
		case KnobGUID:
			if err := o.restoreGUID(ctx); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := o.set(ctx, k, before); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restore VF %d (%s): %w", snap.VFIndex, snap.PCIAddress, err)
	}
	log.V(2).Info("Restored VF", "pci", snap.PCIAddress, "pf", snap.PFName, "vf", snap.VFIndex, "knobs", changed)
	return nil
}

func (o *vfOp) restoreGUID(ctx context.Context) error {
	nodeG, err1 := hw.ParseGUID(o.snap.Admin.NodeGUID)
	portG, err2 := hw.ParseGUID(o.snap.Admin.PortGUID)
	node, port := nodeG.HardwareAddr(), portG.HardwareAddr()
	if err1 != nil || err2 != nil {
		return fmt.Errorf("restore GUID of VF %d on %s: snapshot has no valid GUIDs (%q, %q)",
			o.snap.VFIndex, o.snap.PFName, o.snap.Admin.NodeGUID, o.snap.Admin.PortGUID)
	}
	guids, err := o.h.VFGUIDs(o.pf)
	if err != nil {
		return fmt.Errorf("restore GUID of VF %d on %s: %w", o.snap.VFIndex, o.snap.PFName, err)
	}
	for _, g := range guids {
		if g.VF == o.snap.VFIndex && g.NodeGUID.String() == node.String() && g.PortGUID.String() == port.String() {
			return nil // already as recorded: no rebind
		}
	}
	return o.setGUID(ctx, node, port)
}

// snapGUID is a GUID of the snapshot as netlink takes it; nil when the
// snapshot has none (the setters then fail rather than set garbage).
func snapGUID(s string) net.HardwareAddr {
	g, err := hw.ParseGUID(s)
	if err != nil {
		return nil
	}
	return g.HardwareAddr()
}
