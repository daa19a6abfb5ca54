// Package vfconfig changes a VF through its PF (netlink VF attributes, IB
// GUIDs, driver binding) and restores it from a snapshot taken before.
package vfconfig

import "github.com/sriov-dra/sriov-dra/pkg/inventory"

// Settings are the VF knobs to apply through the PF. A nil field is left
// as it is.
type Settings struct {
	MAC       *string `json:"mac,omitempty"`
	VLAN      *int    `json:"vlan,omitempty"`
	QoS       *int    `json:"qos,omitempty"`
	VLANProto *string `json:"vlanProto,omitempty"` // "802.1q" | "802.1ad"
	SpoofChk  *bool   `json:"spoofChk,omitempty"`
	Trust     *bool   `json:"trust,omitempty"`
	LinkState *string `json:"linkState,omitempty"` // "auto" | "enable" | "disable"
	MinTxRate *int    `json:"minTxRate,omitempty"` // Mbps
	MaxTxRate *int    `json:"maxTxRate,omitempty"` // Mbps
	// GUID sets the VF's IB node and port GUID (canonical "xx:..:xx"),
	// followed by a driver unbind/rebind so the VF takes it.
	GUID *string `json:"guid,omitempty"`
}

// Snapshot is a VF's state before any change: plain data, checkpointed.
type Snapshot struct {
	PCIAddress   string                 `json:"pciAddress"`
	PFName       string                 `json:"pfName"`
	PFPCIAddress string                 `json:"pfPciAddress"`
	VFIndex      int                    `json:"vfIndex"`
	PFDriver     string                 `json:"pfDriver,omitempty"`
	Admin        inventory.VFAdminState `json:"admin"`
	Driver       string                 `json:"driver,omitempty"` // VF driver ("" unbound)
	IfName       string                 `json:"ifName,omitempty"`
	MAC          string                 `json:"mac,omitempty"`
	MTU          int                    `json:"mtu,omitempty"`
	// IRQAffinity maps IRQ number to its smp_affinity_list before any change.
	IRQAffinity map[int]string `json:"irqAffinity,omitempty"`
}
