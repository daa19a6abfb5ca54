package inventory

import (
	"fmt"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/dynamic-resource-allocation/deviceattribute"
)

// AttributeDomain is the domain of the driver's own device attributes.
const AttributeDomain = "sriov.dra.dev"

// Publishable returns the devices the driver publishes, in inventory
// order: every VF, and a PF only when it is offered whole (see
// WholePFVerdict): the admin lists it in passthroughPFs, SR-IOV is off on
// it and the host does not use its netdev. A PF offered whole is published
// instead of its VFs: a PF is never offered together with its own VFs.
func (inv *Inventory) Publishable(passthroughPFs []string) []Device {
	pass := passthroughSet(passthroughPFs)
	wholePF := map[string]bool{} // PF PCI address -> PF is published
	for i := range inv.Devices {
		d := &inv.Devices[i]
		if d.Kind == KindPF && wholePFVerdict(d, pass) == "" {
			wholePF[d.PCIAddress] = true
		}
	}
	out := []Device{}
	for _, d := range inv.Devices {
		switch d.Kind {
		case KindPF:
			if wholePF[d.PCIAddress] {
				out = append(out, d)
			}
		case KindVF:
			if !wholePF[d.PFPCIAddress] {
				out = append(out, d)
			}
		}
	}
	return out
}

// Reasons a PF is not offered whole.
const (
	// ReasonPFNotListed: PF passthrough is opt-in.
	ReasonPFNotListed = "not offered whole: not listed for passthrough (--passthrough-pfs)"
	// reasonPFInUse prefixes the PF's HostUse.
	reasonPFInUse = "listed for passthrough but refused: "
)

// WholePFVerdicts returns, by device name, why each PF of the inventory
// that is not offered whole is not: it is not listed in passthroughPFs
// (by netdev name or PCI address), or it is listed but the host uses its
// netdev (Device.HostUse). PFs offered whole are not in the map.
func (inv *Inventory) WholePFVerdicts(passthroughPFs []string) map[string]string {
	pass := passthroughSet(passthroughPFs)
	out := map[string]string{}
	for i := range inv.Devices {
		d := &inv.Devices[i]
		if d.Kind != KindPF {
			continue
		}
		if v := wholePFVerdict(d, pass); v != "" {
			out[d.Name] = v
		}
	}
	return out
}

// IsPFRefusal reports whether a WholePFVerdicts reason is a listed PF
// refused (rather than one simply not listed).
func IsPFRefusal(reason string) bool { return strings.HasPrefix(reason, reasonPFInUse) }

func passthroughSet(passthroughPFs []string) map[string]bool {
	pass := map[string]bool{}
	for _, p := range passthroughPFs {
		if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
			pass[p] = true
		}
	}
	return pass
}

// wholePFVerdict is "" when PF d is offered whole, else why not.
func wholePFVerdict(d *Device, pass map[string]bool) string {
	if !pass[d.PCIAddress] && (d.IfName == "" || !pass[strings.ToLower(d.IfName)]) {
		return ReasonPFNotListed
	}
	if d.HostUse != "" {
		return reasonPFInUse + d.HostUse
	}
	if d.NumVFs > 0 {
		// Its VFs stay on the host, and whoever holds the PF sets their
		// MAC, VLAN, trust and spoof check through it; the next claim of
		// a VF would inherit what a tenant left there.
		return reasonPFInUse + fmt.Sprintf("SR-IOV is on (%d VFs), and a pod holding the PF could change its VFs' settings through it: set sriov_numvfs to 0 to offer the PF whole", d.NumVFs)
	}
	return ""
}

// Attribute names under AttributeDomain.
const (
	AttrKind         resourceapi.QualifiedName = AttributeDomain + "/kind"
	AttrPFName       resourceapi.QualifiedName = AttributeDomain + "/pfName"
	AttrPFPCIAddress resourceapi.QualifiedName = AttributeDomain + "/pfPciAddress"
	AttrVFIndex      resourceapi.QualifiedName = AttributeDomain + "/vfIndex"
	AttrPCIAddress   resourceapi.QualifiedName = AttributeDomain + "/pciAddress"
	AttrVendor       resourceapi.QualifiedName = AttributeDomain + "/vendor"
	AttrDeviceID     resourceapi.QualifiedName = AttributeDomain + "/deviceID"
	AttrDriver       resourceapi.QualifiedName = AttributeDomain + "/driver"
	AttrLinkType     resourceapi.QualifiedName = AttributeDomain + "/linkType"
	AttrNUMANode     resourceapi.QualifiedName = AttributeDomain + "/numaNode"
	AttrIfName       resourceapi.QualifiedName = AttributeDomain + "/ifName"
	AttrMAC          resourceapi.QualifiedName = AttributeDomain + "/mac"
	AttrVLAN         resourceapi.QualifiedName = AttributeDomain + "/vlan"
	AttrGUID         resourceapi.QualifiedName = AttributeDomain + "/guid"
	AttrPKeys        resourceapi.QualifiedName = AttributeDomain + "/pkeys"
	AttrRDMA         resourceapi.QualifiedName = AttributeDomain + "/rdma"
	AttrRDMADevice   resourceapi.QualifiedName = AttributeDomain + "/rdmaDevice"
	AttrEswitchMode  resourceapi.QualifiedName = AttributeDomain + "/eswitchMode"
	AttrTotalVFs     resourceapi.QualifiedName = AttributeDomain + "/totalVfs"
)

// Attributes turns a device into its ResourceSlice attributes: the
// sriov.dra.dev/ attributes above plus the standard ones under
// resource.kubernetes.io/ (StandardAttributes).
// Empty values are left out (a VF's vfIndex, numaNode and rdma are always
// meaningful and kept: vfIndex 0 is a real index, numaNode is left out
// only when unknown). Nothing that changes by the second (speed, link
// state, counters) is included. String values longer than the API's 64
// characters (a long pkey list) are left out rather than cut.
func Attributes(d Device) map[resourceapi.QualifiedName]resourceapi.DeviceAttribute {
	m := make(map[resourceapi.QualifiedName]resourceapi.DeviceAttribute, 20)
	str := func(k resourceapi.QualifiedName, v string) {
		if v != "" && len(v) <= resourceapi.DeviceAttributeMaxValueLength {
			m[k] = resourceapi.DeviceAttribute{StringValue: &v}
		}
	}
	num := func(k resourceapi.QualifiedName, v int) {
		n := int64(v)
		m[k] = resourceapi.DeviceAttribute{IntValue: &n}
	}
	str(AttrKind, string(d.Kind))
	str(AttrPFName, d.PFName)
	str(AttrPFPCIAddress, d.PFPCIAddress)
	if d.Kind == KindVF && d.VFIndex >= 0 {
		num(AttrVFIndex, d.VFIndex)
	}
	str(AttrPCIAddress, d.PCIAddress)
	str(AttrVendor, d.Vendor)
	str(AttrDeviceID, d.DeviceID)
	str(AttrDriver, d.Driver)
	if d.LinkType != LinkTypeUnknown {
		str(AttrLinkType, string(d.LinkType))
	}
	if d.NUMANode != NUMAUnknown && d.NUMANode >= 0 {
		num(AttrNUMANode, d.NUMANode)
	}
	str(AttrIfName, d.IfName)
	mac := d.MAC
	if mac == "" && d.Admin != nil {
		mac = d.Admin.MAC
	}
	str(AttrMAC, mac)
	if d.Admin != nil && d.Admin.VLAN > 0 {
		num(AttrVLAN, d.Admin.VLAN)
	}
	str(AttrGUID, d.NodeGUID)
	str(AttrPKeys, strings.Join(d.PKeys, ","))
	rdma := len(d.RDMADevices) > 0
	m[AttrRDMA] = resourceapi.DeviceAttribute{BoolValue: &rdma}
	str(AttrRDMADevice, d.RDMADevice())
	str(AttrEswitchMode, d.EswitchMode)
	if d.Kind == KindPF && d.TotalVFs > 0 {
		num(AttrTotalVFs, d.TotalVFs)
	}
	for _, a := range StandardAttributes(d) {
		m[a.Name] = a.Value
	}
	return m
}

// StandardAttributes returns the device's attributes under
// resource.kubernetes.io/ that other DRA drivers publish too, so that one
// claim can matchAttribute devices of different drivers: pcieRoot (the PCIe
// root complex), pciBusID (the device's own PCI address) and numaNode
// (scalar form, the kernel's numa_node). The values come from the
// deviceattribute helpers, which also validate them: a PCI address not in
// the extended BDF form the helpers accept gets no pciBusID, and a device
// without NUMA affinity gets no numaNode (a -1 would match every other
// device without one).
func StandardAttributes(d Device) []deviceattribute.DeviceAttribute {
	var out []deviceattribute.DeviceAttribute
	if d.PCIeRoot != "" && len(d.PCIeRoot) <= resourceapi.DeviceAttributeMaxValueLength {
		root := d.PCIeRoot
		out = append(out, deviceattribute.DeviceAttribute{
			Name: deviceattribute.StandardDeviceAttributePCIeRoot, Value: resourceapi.DeviceAttribute{StringValue: &root},
		})
	}
	if d.PCIAddress != "" {
		if a, err := deviceattribute.GetPCIBusIDAttribute(d.PCIAddress); err == nil {
			out = append(out, a)
		}
	}
	if d.NUMANode != NUMAUnknown && d.NUMANode >= 0 {
		if a, err := deviceattribute.GetNUMANodeAttribute(d.NUMANode, deviceattribute.ScalarAttribute); err == nil {
			out = append(out, a)
		}
	}
	return out
}
