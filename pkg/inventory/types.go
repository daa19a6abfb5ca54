// Package inventory finds the node's SR-IOV physical functions (PFs) and
// virtual functions (VFs). It reads the host through two seams only: a
// filesystem root (sysfs under <Root>/sys) and an nlink.Handle.
package inventory

import (
	"strings"
)

// Kind is what a device is: a VF, or a whole PF offered for passthrough.
type Kind string

const (
	KindVF Kind = "vf"
	KindPF Kind = "pf"
)

// LinkType is the link layer of a netdev, from /sys/class/net/<if>/type.
type LinkType string

const (
	LinkTypeEthernet   LinkType = "ethernet"   // ARPHRD_ETHER (1)
	LinkTypeInfiniBand LinkType = "infiniband" // ARPHRD_INFINIBAND (32)
	LinkTypeUnknown    LinkType = "unknown"
)

// NUMAUnknown is the NUMANode of a device whose numa_node is -1 or unreadable.
const NUMAUnknown = -1

// VFAdminState is what the PF reports for one VF over netlink (IFLA_VF_INFO)
// plus, for InfiniBand, the VF's node and port GUIDs.
type VFAdminState struct {
	MAC       string `json:"mac,omitempty"` // lower-case, colon separated
	VLAN      int    `json:"vlan"`
	QoS       int    `json:"qos"`
	VLANProto string `json:"vlanProto,omitempty"` // "802.1q" | "802.1ad"
	SpoofChk  bool   `json:"spoofChk"`
	Trust     bool   `json:"trust"`
	LinkState string `json:"linkState,omitempty"` // "auto" | "enable" | "disable"
	MinTxRate int    `json:"minTxRate"`           // Mbps
	MaxTxRate int    `json:"maxTxRate"`           // Mbps
	NodeGUID  string `json:"nodeGUID,omitempty"`  // xx:xx:xx:xx:xx:xx:xx:xx
	PortGUID  string `json:"portGUID,omitempty"`
}

// Device is one PF or VF as the driver sees and publishes it.
type Device struct {
	// Name is the ResourceSlice device name: derived from the PCI address,
	// a DNS label, stable across reboots (see DeviceName).
	Name       string `json:"name"`
	Kind       Kind   `json:"kind"`
	PCIAddress string `json:"pciAddress"` // 0000:3b:00.2

	// PF side. For a VF these name its parent; for a PF itself.
	PFPCIAddress string `json:"pfPciAddress"`
	PFName       string `json:"pfName,omitempty"`   // PF netdev name
	PFDriver     string `json:"pfDriver,omitempty"` // PF driver (a PF's own driver for a PF)
	VFIndex      int    `json:"vfIndex"`            // -1 for a PF

	Vendor          string `json:"vendor"`   // "15b3" (no 0x)
	DeviceID        string `json:"deviceID"` // "101e"
	SubsystemVendor string `json:"subsystemVendor,omitempty"`
	SubsystemDevice string `json:"subsystemDevice,omitempty"`
	Driver          string `json:"driver,omitempty"` // "" when unbound
	NUMANode        int    `json:"numaNode"`         // NUMAUnknown when -1
	PCIeRoot        string `json:"pcieRoot,omitempty"`
	IOMMUGroup      string `json:"iommuGroup,omitempty"`

	// Netdev: IfName is the first netdev name ("" when bound to vfio-pci/uio).
	IfName    string   `json:"ifName,omitempty"`
	IfNames   []string `json:"ifNames,omitempty"`
	LinkType  LinkType `json:"linkType"`
	MTU       int      `json:"mtu,omitempty"`
	SpeedMbps int      `json:"speedMbps,omitempty"`
	MAC       string   `json:"mac,omitempty"` // the netdev's current MAC

	// PF only.
	TotalVFs    int    `json:"totalVfs,omitempty"`
	NumVFs      int    `json:"numVfs,omitempty"`
	EswitchMode string `json:"eswitchMode,omitempty"` // "legacy" | "switchdev"
	// HostUse says why the host uses the PF's netdev (global addresses,
	// routes in any table, a master or upper links), "" when it does not
	// or the PF has no netdev here. A PF in use is never offered whole.
	HostUse string `json:"hostUse,omitempty"`

	// RDMA / InfiniBand.
	// RDMADevices are the PCI function's own RDMA devices (mlx5_3), then
	// software ones bound to its netdevs (rdma link add ... type rxe
	// netdev <IfName>).
	RDMADevices []string `json:"rdmaDevices,omitempty"`
	NodeGUID    string   `json:"nodeGUID,omitempty"` // IB node GUID (VF: from the PF's VF info)
	PortGUID    string   `json:"portGUID,omitempty"` // IB port 1 GUID
	PKeys       []string `json:"pkeys,omitempty"`    // non-zero pkeys of port 1, "0x8001"

	// VF only: the admin state the PF reports for this VF.
	Admin *VFAdminState `json:"admin,omitempty"`
}

// RDMADevice returns the first RDMA device name or "".
func (d *Device) RDMADevice() string {
	if len(d.RDMADevices) == 0 {
		return ""
	}
	return d.RDMADevices[0]
}

// Exclusion is a device the scan left out, and why.
type Exclusion struct {
	PCIAddress string `json:"pciAddress"`
	Reason     string `json:"reason"`
}

// Inventory is the result of one scan, devices sorted by Name.
type Inventory struct {
	Devices  []Device    `json:"devices"`
	Excluded []Exclusion `json:"excluded,omitempty"`
	// Note explains an empty result (e.g. no PF with sriov_totalvfs found).
	Note string `json:"note,omitempty"`
	// RDMANetnsMode is the RDMA subsystem's netns mode (rdma.ModeShared or
	// rdma.ModeExclusive), read with every scan that finds an RDMA device;
	// "" when no device has one or the kernel did not say. Only in
	// exclusive mode can an RDMA device follow its netdev into a pod.
	RDMANetnsMode string `json:"rdmaNetnsMode,omitempty"`
}

// Find returns the device with the given name.
func (inv *Inventory) Find(name string) (*Device, bool) {
	for i := range inv.Devices {
		if inv.Devices[i].Name == name {
			return &inv.Devices[i], true
		}
	}
	return nil, false
}

// Filter is the admin's device filter. Empty lists match everything; a
// device must match every non-empty list.
type Filter struct {
	PFNames      []string `json:"pfNames,omitempty"`
	PCIAddresses []string `json:"pciAddresses,omitempty"` // VF or PF addresses
	Vendors      []string `json:"vendors,omitempty"`
	Drivers      []string `json:"drivers,omitempty"` // PF driver
	LinkTypes    []string `json:"linkTypes,omitempty"`
}

// DeviceName turns a PCI address into a ResourceSlice device name:
// "0000:3b:00.2" -> "pci-0000-3b-00-2". Lower-case, DNS-label safe.
func DeviceName(pciAddress string) string {
	r := strings.NewReplacer(":", "-", ".", "-")
	return "pci-" + r.Replace(strings.ToLower(pciAddress))
}
