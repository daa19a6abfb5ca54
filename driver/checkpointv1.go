package driver

import (
	"fmt"
	"slices"

	cpv1 "github.com/sriov-dra/sriov-dra/api/checkpoint/v1"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/ethtool"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

// This file is the one place the driver's runtime Checkpoint meets the
// on-disk schema (api/checkpoint/v1): every field goes through a
// conversion here, so a field or tag renamed in a runtime package never
// changes the file. A field added to a runtime record type must be added
// to the schema and to both directions below
// (TestCheckpointConversionCoversEveryField fails until it is). Each
// type's ToV1 and FromV1 have the same shape on purpose: both directions
// are written out field by field, as a generic or reflective copy would
// follow a renamed field into the file silently.

// CheckpointToV1 renders the runtime checkpoint as the v1 document.
func CheckpointToV1(cp *Checkpoint) *cpv1.Checkpoint {
	out := &cpv1.Checkpoint{Version: cpv1.Version, BootID: cp.BootID, Owner: cp.Owner}
	if cp.Claims != nil {
		out.Claims = make(map[string]*cpv1.Claim, len(cp.Claims))
		for uid, rec := range cp.Claims {
			out.Claims[uid] = claimToV1(rec)
		}
	}
	for _, r := range cp.DropRequests {
		out.DropRequests = append(out.DropRequests, cpv1.DropRequest{ClaimUID: r.ClaimUID, By: r.By, At: r.At})
	}
	for name, l := range cp.Lost {
		if out.Lost == nil {
			out.Lost = make(map[string]*cpv1.LostDevice, len(cp.Lost))
		}
		out.Lost[name] = &cpv1.LostDevice{
			Device: l.Device, PCIAddress: l.PCIAddress,
			Identity: identityToV1(l.Identity),
			ClaimUID: l.ClaimUID, ClaimNamespace: l.ClaimNamespace, ClaimName: l.ClaimName,
			Since: l.Since, Reason: l.Reason,
		}
	}
	return out
}

// CheckpointFromV1 reads a v1 document into the runtime checkpoint. A
// document of another version, without a boot ID, or with a record that
// is missing or filed under another UID is refused: nothing it describes
// can be undone safely.
func CheckpointFromV1(doc *cpv1.Checkpoint) (*Checkpoint, error) {
	if doc.Version != cpv1.Version {
		return nil, fmt.Errorf("checkpoint has version %q, this driver reads %q only (written by a newer release?)", doc.Version, cpv1.Version)
	}
	if doc.BootID == "" {
		return nil, fmt.Errorf("checkpoint (%s) has no bootID: cannot tell whether its records are of this boot", cpv1.Version)
	}
	cp := &Checkpoint{BootID: doc.BootID, Owner: doc.Owner, Claims: make(map[string]*ClaimRecord, len(doc.Claims))}
	for uid, c := range doc.Claims {
		if c == nil || c.UID != uid {
			return nil, fmt.Errorf("checkpoint entry %q is malformed (missing or mismatched uid)", uid)
		}
		rec, err := claimFromV1(c)
		if err != nil {
			return nil, fmt.Errorf("checkpoint entry %q: %w", uid, err)
		}
		cp.Claims[uid] = rec
	}
	for _, r := range doc.DropRequests {
		cp.DropRequests = append(cp.DropRequests, DropRequest{ClaimUID: r.ClaimUID, By: r.By, At: r.At})
	}
	for name, l := range doc.Lost {
		if l == nil {
			return nil, fmt.Errorf("checkpoint lost device %q is null", name)
		}
		if cp.Lost == nil {
			cp.Lost = make(map[string]*LostDevice, len(doc.Lost))
		}
		cp.Lost[name] = &LostDevice{
			Device: l.Device, PCIAddress: l.PCIAddress,
			Identity: identityFromV1(l.Identity),
			ClaimUID: l.ClaimUID, ClaimNamespace: l.ClaimNamespace, ClaimName: l.ClaimName,
			Since: l.Since, Reason: l.Reason,
		}
	}
	return cp, nil
}

func claimToV1(r *ClaimRecord) *cpv1.Claim {
	c := &cpv1.Claim{
		UID: r.UID, Namespace: r.Namespace, Name: r.Name,
		PodUID: r.PodUID, PodName: r.PodName, PodNamespace: r.PodNamespace,
		Phase: string(r.Phase),
		Steps: cpv1.ClaimSteps{CDI: r.Steps.CDI, Status: r.Steps.Status},
	}
	if r.Devices != nil {
		c.Devices = make([]*cpv1.Device, 0, len(r.Devices))
		for _, d := range r.Devices {
			c.Devices = append(c.Devices, deviceToV1(d))
		}
	}
	if r.Stale != nil {
		c.Stale = &cpv1.Stale{BootID: r.Stale.BootID, Attempts: r.Stale.Attempts, LastError: r.Stale.LastError}
	}
	return c
}

func claimFromV1(c *cpv1.Claim) (*ClaimRecord, error) {
	switch c.Phase {
	case cpv1.PhasePrepareStarted, cpv1.PhasePrepareCompleted:
	default:
		return nil, fmt.Errorf("phase %q is not one of %s, %s", c.Phase, cpv1.PhasePrepareStarted, cpv1.PhasePrepareCompleted)
	}
	r := &ClaimRecord{
		UID: c.UID, Namespace: c.Namespace, Name: c.Name,
		PodUID: c.PodUID, PodName: c.PodName, PodNamespace: c.PodNamespace,
		Phase: Phase(c.Phase),
		Steps: ClaimSteps{CDI: c.Steps.CDI, Status: c.Steps.Status},
	}
	if c.Devices != nil {
		r.Devices = make([]*DeviceRecord, 0, len(c.Devices))
		for i, d := range c.Devices {
			if d == nil {
				return nil, fmt.Errorf("devices[%d] is null", i)
			}
			if o := d.Pod.Original; o != nil {
				if err := checkFeaturesV1(o.Features); err != nil {
					return nil, fmt.Errorf("devices[%d] (%s): original features: %w", i, d.Device, err)
				}
			}
			r.Devices = append(r.Devices, deviceFromV1(d))
		}
	}
	if c.Stale != nil {
		r.Stale = &StaleRelease{BootID: c.Stale.BootID, Attempts: c.Stale.Attempts, LastError: c.Stale.LastError}
	}
	return r, nil
}

func deviceToV1(d *DeviceRecord) *cpv1.Device {
	out := &cpv1.Device{
		Request: d.Request, Pool: d.Pool, Device: d.Device, PCIAddress: d.PCIAddress, Kind: string(d.Kind),
		Config:   d.Config,
		Settings: settingsToV1(d.Settings, d.GUID),
		Driver:   d.Driver,
		Snapshot: snapshotToV1(d.Snapshot),
		Steps: cpv1.DeviceSteps{
			VFSettings: d.Steps.VFSettings, GUID: d.Steps.GUID, VFIO: d.Steps.VFIO, IPAM: d.Steps.IPAM,
		},
		RDMAManagement: d.RDMAManagement,
		IPAMConfig:     d.IPAMConfig,
		CDIDeviceIDs:   d.CDIDeviceIDs,
		Pod:            podToV1(d.Pod),
	}
	if d.IPAM != nil {
		out.IPAM = ipamToV1(d.IPAM)
	}
	if d.Published != nil {
		out.Published = publishedToV1(d.Published)
	}
	return out
}

func deviceFromV1(d *cpv1.Device) *DeviceRecord {
	out := &DeviceRecord{
		Request: d.Request, Pool: d.Pool, Device: d.Device, PCIAddress: d.PCIAddress, Kind: inventory.Kind(d.Kind),
		Config:   d.Config,
		Settings: settingsFromV1(d.Settings),
		GUID:     d.Settings.GUID,
		Driver:   d.Driver,
		Snapshot: snapshotFromV1(d.Snapshot),
		Steps: DeviceSteps{
			VFSettings: d.Steps.VFSettings, GUID: d.Steps.GUID, VFIO: d.Steps.VFIO, IPAM: d.Steps.IPAM,
		},
		RDMAManagement: d.RDMAManagement,
		IPAMConfig:     d.IPAMConfig,
		CDIDeviceIDs:   d.CDIDeviceIDs,
		Pod:            podFromV1(d.Pod),
	}
	if d.IPAM != nil {
		out.IPAM = ipamFromV1(d.IPAM)
	}
	if d.Published != nil {
		out.Published = publishedFromV1(d.Published)
	}
	return out
}

// settingsToV1 writes the VF knobs and the device's GUID: v1 keeps the
// GUID among the settings, the runtime record beside them.
func settingsToV1(s vfconfig.Settings, guid *string) cpv1.VFSettings {
	return cpv1.VFSettings{
		MAC: s.MAC, VLAN: s.VLAN, QoS: s.QoS, VLANProto: s.VLANProto, SpoofChk: s.SpoofChk, Trust: s.Trust,
		LinkState: s.LinkState, MinTxRate: s.MinTxRate, MaxTxRate: s.MaxTxRate, GUID: guid,
	}
}

// settingsFromV1 reads the VF knobs; the GUID is deviceFromV1's.
func settingsFromV1(s cpv1.VFSettings) vfconfig.Settings {
	return vfconfig.Settings{
		MAC: s.MAC, VLAN: s.VLAN, QoS: s.QoS, VLANProto: s.VLANProto, SpoofChk: s.SpoofChk, Trust: s.Trust,
		LinkState: s.LinkState, MinTxRate: s.MinTxRate, MaxTxRate: s.MaxTxRate,
	}
}

func snapshotToV1(s vfconfig.Snapshot) cpv1.Snapshot {
	return cpv1.Snapshot{
		PCIAddress: s.PCIAddress, PFName: s.PFName, PFPCIAddress: s.PFPCIAddress, VFIndex: s.VFIndex, PFDriver: s.PFDriver,
		AdminKnown: s.AdminKnown, Admin: adminToV1(s.Admin),
		Driver: s.Driver, IfName: s.IfName, MAC: s.MAC, MTU: s.MTU, IRQAffinity: s.IRQAffinity,
	}
}

func snapshotFromV1(s cpv1.Snapshot) vfconfig.Snapshot {
	return vfconfig.Snapshot{
		PCIAddress: s.PCIAddress, PFName: s.PFName, PFPCIAddress: s.PFPCIAddress, VFIndex: s.VFIndex, PFDriver: s.PFDriver,
		AdminKnown: s.AdminKnown, Admin: adminFromV1(s.Admin),
		Driver: s.Driver, IfName: s.IfName, MAC: s.MAC, MTU: s.MTU, IRQAffinity: s.IRQAffinity,
	}
}

func adminToV1(a inventory.VFAdminState) cpv1.VFAdmin {
	return cpv1.VFAdmin{
		MAC: a.MAC, VLAN: a.VLAN, QoS: a.QoS, VLANProto: a.VLANProto, SpoofChk: a.SpoofChk, Trust: a.Trust,
		LinkState: a.LinkState, MinTxRate: a.MinTxRate, MaxTxRate: a.MaxTxRate, NodeGUID: a.NodeGUID, PortGUID: a.PortGUID,
	}
}

func adminFromV1(a cpv1.VFAdmin) inventory.VFAdminState {
	return inventory.VFAdminState{
		MAC: a.MAC, VLAN: a.VLAN, QoS: a.QoS, VLANProto: a.VLANProto, SpoofChk: a.SpoofChk, Trust: a.Trust,
		LinkState: a.LinkState, MinTxRate: a.MinTxRate, MaxTxRate: a.MaxTxRate, NodeGUID: a.NodeGUID, PortGUID: a.PortGUID,
	}
}

func ipamToV1(r *ipam.Result) *cpv1.IPAMResult {
	out := &cpv1.IPAMResult{
		Plugin: r.Plugin, Network: r.Network, ContainerID: r.ContainerID, IfName: r.IfName,
		Routes: routesToV1(r.Routes),
		DNS:    cpv1.DNS{Nameservers: r.DNS.Nameservers, Domain: r.DNS.Domain, Search: r.DNS.Search, Options: r.DNS.Options},
		Args:   r.Args, NetConf: r.NetConf, Raw: r.Raw,
	}
	if r.IPs != nil {
		out.IPs = make([]cpv1.IPConfig, 0, len(r.IPs))
		for _, ip := range r.IPs {
			out.IPs = append(out.IPs, cpv1.IPConfig{Address: ip.Address, Gateway: ip.Gateway})
		}
	}
	return out
}

func ipamFromV1(r *cpv1.IPAMResult) *ipam.Result {
	out := &ipam.Result{
		Plugin: r.Plugin, Network: r.Network, ContainerID: r.ContainerID, IfName: r.IfName,
		Routes: routesFromV1(r.Routes),
		DNS:    ipam.DNS{Nameservers: r.DNS.Nameservers, Domain: r.DNS.Domain, Search: r.DNS.Search, Options: r.DNS.Options},
		Args:   r.Args, NetConf: r.NetConf, Raw: r.Raw,
	}
	if r.IPs != nil {
		out.IPs = make([]ipam.IPConfig, 0, len(r.IPs))
		for _, ip := range r.IPs {
			out.IPs = append(out.IPs, ipam.IPConfig{Address: ip.Address, Gateway: ip.Gateway})
		}
	}
	return out
}

func routesToV1(rs []netattach.Route) []cpv1.Route {
	if rs == nil {
		return nil
	}
	out := make([]cpv1.Route, 0, len(rs))
	for _, r := range rs {
		out = append(out, cpv1.Route{Dst: r.Dst, GW: r.GW})
	}
	return out
}

func routesFromV1(rs []cpv1.Route) []netattach.Route {
	if rs == nil {
		return nil
	}
	out := make([]netattach.Route, 0, len(rs))
	for _, r := range rs {
		out = append(out, netattach.Route{Dst: r.Dst, GW: r.GW})
	}
	return out
}

func publishedToV1(d *inventory.Device) *cpv1.PublishedDevice {
	out := &cpv1.PublishedDevice{
		Name: d.Name, Kind: string(d.Kind), PCIAddress: d.PCIAddress,
		PFPCIAddress: d.PFPCIAddress, PFName: d.PFName, PFDriver: d.PFDriver, VFIndex: d.VFIndex,
		Vendor: d.Vendor, DeviceID: d.DeviceID, SubsystemVendor: d.SubsystemVendor, SubsystemDevice: d.SubsystemDevice,
		Driver: d.Driver, NUMANode: d.NUMANode, PCIeRoot: d.PCIeRoot, IOMMUGroup: d.IOMMUGroup,
		IfName: d.IfName, IfNames: d.IfNames, LinkType: string(d.LinkType), MTU: d.MTU, SpeedMbps: d.SpeedMbps, MAC: d.MAC,
		TotalVFs: d.TotalVFs, NumVFs: d.NumVFs, EswitchMode: d.EswitchMode, HostUse: d.HostUse,
		RDMADevices: d.RDMADevices, NodeGUID: d.NodeGUID, PortGUID: d.PortGUID, PKeys: d.PKeys,
	}
	if d.Admin != nil {
		a := adminToV1(*d.Admin)
		out.Admin = &a
	}
	return out
}

func publishedFromV1(d *cpv1.PublishedDevice) *inventory.Device {
	out := &inventory.Device{
		Name: d.Name, Kind: inventory.Kind(d.Kind), PCIAddress: d.PCIAddress,
		PFPCIAddress: d.PFPCIAddress, PFName: d.PFName, PFDriver: d.PFDriver, VFIndex: d.VFIndex,
		Vendor: d.Vendor, DeviceID: d.DeviceID, SubsystemVendor: d.SubsystemVendor, SubsystemDevice: d.SubsystemDevice,
		Driver: d.Driver, NUMANode: d.NUMANode, PCIeRoot: d.PCIeRoot, IOMMUGroup: d.IOMMUGroup,
		IfName: d.IfName, IfNames: d.IfNames, LinkType: inventory.LinkType(d.LinkType), MTU: d.MTU, SpeedMbps: d.SpeedMbps, MAC: d.MAC,
		TotalVFs: d.TotalVFs, NumVFs: d.NumVFs, EswitchMode: d.EswitchMode, HostUse: d.HostUse,
		RDMADevices: d.RDMADevices, NodeGUID: d.NodeGUID, PortGUID: d.PortGUID, PKeys: d.PKeys,
	}
	if d.Admin != nil {
		a := adminFromV1(*d.Admin)
		out.Admin = &a
	}
	return out
}

// podToV1 keeps the NRI view's own fields; the claim, request, device
// and PCI address it is handed with are the records' (see podDevice).
func podToV1(p nri.PodDevice) cpv1.PodDevice {
	out := cpv1.PodDevice{
		VFIO: p.VFIO,
		Spec: cpv1.AttachSpec{
			HostIfName: p.Spec.HostIfName, PodIfName: p.Spec.PodIfName, MTU: p.Spec.MTU, MAC: p.Spec.MAC,
			Addresses: p.Spec.Addresses, Routes: routesToV1(p.Spec.Routes),
		},
		LinkType: string(p.LinkType), RDMADevice: p.RDMADevice, RDMAIsolation: p.RDMAIsolation, IRQAffinity: p.IRQAffinity,
		NetnsPath: p.NetnsPath, Attached: p.Attached, RDMAMoved: p.RDMAMoved,
		AttachStateFromKernel: p.AttachStateFromKernel,
	}
	if o := p.Original; o != nil {
		out.Original = &cpv1.Original{
			IfName: o.IfName, MAC: o.MAC, MTU: o.MTU, Up: o.Up, IfIndex: o.IfIndex,
			Identity: identityToV1(o.Identity), Flags: linkFlagsToV1(o.Flags), Features: featuresToV1(o.Features),
			Rings: ringsToV1(o.Rings), Channels: channelsToV1(o.Channels),
		}
	}
	return out
}

func podFromV1(p cpv1.PodDevice) nri.PodDevice {
	out := nri.PodDevice{
		VFIO: p.VFIO,
		Spec: netattach.Spec{
			HostIfName: p.Spec.HostIfName, PodIfName: p.Spec.PodIfName, MTU: p.Spec.MTU, MAC: p.Spec.MAC,
			Addresses: p.Spec.Addresses, Routes: routesFromV1(p.Spec.Routes),
		},
		LinkType: inventory.LinkType(p.LinkType), RDMADevice: p.RDMADevice, RDMAIsolation: p.RDMAIsolation, IRQAffinity: p.IRQAffinity,
		NetnsPath: p.NetnsPath, Attached: p.Attached, RDMAMoved: p.RDMAMoved,
		AttachStateFromKernel: p.AttachStateFromKernel,
	}
	if o := p.Original; o != nil {
		out.Original = &netattach.Original{
			IfName: o.IfName, MAC: o.MAC, MTU: o.MTU, Up: o.Up, IfIndex: o.IfIndex,
			Identity: identityFromV1(o.Identity), Flags: linkFlagsFromV1(o.Flags), Features: featuresFromV1(o.Features),
			Rings: ringsFromV1(o.Rings), Channels: channelsFromV1(o.Channels),
		}
	}
	return out
}

// identityToV1 and identityFromV1 convert a netdev's identity (of an
// attach's original, of a lost device).
func identityToV1(id netattach.Identity) cpv1.Identity {
	return cpv1.Identity{PCIAddress: id.PCIAddress, PermAddr: id.PermAddr, HostPeerIndex: id.HostPeerIndex, Kind: id.Kind}
}

func identityFromV1(id cpv1.Identity) netattach.Identity {
	return netattach.Identity{PCIAddress: id.PCIAddress, PermAddr: id.PermAddr, HostPeerIndex: id.HostPeerIndex, Kind: id.Kind}
}

// linkFlagsToV1 and linkFlagsFromV1 convert an attach original's link
// flags: flags not recorded (Known false) are absent from the file.
func linkFlagsToV1(f netattach.LinkFlags) *cpv1.LinkFlags {
	if !f.Known {
		return nil
	}
	return &cpv1.LinkFlags{Promisc: f.Promisc, AllMulti: f.AllMulti, NoARP: f.NoARP, Alias: f.Alias, TxQLen: f.TxQLen, Group: f.Group}
}

func linkFlagsFromV1(f *cpv1.LinkFlags) netattach.LinkFlags {
	if f == nil {
		return netattach.LinkFlags{}
	}
	return netattach.LinkFlags{Known: true, Promisc: f.Promisc, AllMulti: f.AllMulti, NoARP: f.NoARP, Alias: f.Alias, TxQLen: f.TxQLen, Group: f.Group}
}

// featuresToV1 and featuresFromV1 convert an attach original's offload
// features: not recorded (Count 0) is absent from the file; recorded ones
// are written with as many words as their count takes.
func featuresToV1(f netattach.Features) *cpv1.Features {
	w := ethtool.Words(f.Count)
	if f.Count <= 0 || w > ethtool.MaxWords {
		return nil // none recorded; readFeatures records no more than MaxWords
	}
	return &cpv1.Features{Count: f.Count, Changeable: slices.Clone(f.Changeable[:w]), Requested: slices.Clone(f.Requested[:w])}
}

// featuresFromV1 reads features checkFeaturesV1 accepted.
func featuresFromV1(f *cpv1.Features) netattach.Features {
	if f == nil {
		return netattach.Features{}
	}
	out := netattach.Features{Count: f.Count}
	copy(out.Changeable[:], f.Changeable)
	copy(out.Requested[:], f.Requested)
	return out
}

// checkFeaturesV1 refuses recorded features whose words do not fit their
// count: restoring them would set features nobody recorded.
func checkFeaturesV1(f *cpv1.Features) error {
	if f == nil {
		return nil
	}
	w := ethtool.Words(f.Count)
	switch {
	case f.Count <= 0 || w > ethtool.MaxWords:
		return fmt.Errorf("count %d is not between 1 and %d", f.Count, 32*ethtool.MaxWords)
	case len(f.Changeable) != w:
		return fmt.Errorf("changeable has %d words, %d features take %d", len(f.Changeable), f.Count, w)
	case len(f.Requested) != w:
		return fmt.Errorf("requested has %d words, %d features take %d", len(f.Requested), f.Count, w)
	}
	return nil
}

// ringsToV1, ringsFromV1, channelsToV1 and channelsFromV1 convert an
// attach original's ring sizes and channel counts: not recorded (Known
// false) is absent from the file.
func ringsToV1(r netattach.Rings) *cpv1.Rings {
	if !r.Known {
		return nil
	}
	return &cpv1.Rings{RX: r.RX, RXMini: r.RXMini, RXJumbo: r.RXJumbo, TX: r.TX}
}

func ringsFromV1(r *cpv1.Rings) netattach.Rings {
	if r == nil {
		return netattach.Rings{}
	}
	return netattach.Rings{Known: true, RX: r.RX, RXMini: r.RXMini, RXJumbo: r.RXJumbo, TX: r.TX}
}

func channelsToV1(c netattach.Channels) *cpv1.Channels {
	if !c.Known {
		return nil
	}
	return &cpv1.Channels{RX: c.RX, TX: c.TX, Other: c.Other, Combined: c.Combined}
}

func channelsFromV1(c *cpv1.Channels) netattach.Channels {
	if c == nil {
		return netattach.Channels{}
	}
	return netattach.Channels{Known: true, RX: c.RX, TX: c.TX, Other: c.Other, Combined: c.Combined}
}
