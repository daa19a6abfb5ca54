// Package vfconfig changes a VF through its PF (netlink VF attributes, IB
// GUIDs, driver binding) and restores it from a snapshot taken before.
package vfconfig

import "github.com/sriov-dra/sriov-dra/pkg/inventory"

// Settings are the VF knobs Apply sets through the PF. A nil field is left
// as it is. The IB GUID is not among them: it needs a driver rebind and
// has its own step (SetGUID).
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
}

// Snapshot is a VF's state before any change: plain data, checkpointed.
type Snapshot struct {
	PCIAddress   string `json:"pciAddress"`
	PFName       string `json:"pfName"`
	PFPCIAddress string `json:"pfPciAddress"`
	VFIndex      int    `json:"vfIndex"`
	PFDriver     string `json:"pfDriver,omitempty"`
	// AdminKnown is false when the PF reported no VF info for this VF
	// (a simulated node whose "PF" is a plain veth): Admin is then empty,
	// Apply refuses every PF-side knob and Restore skips the PF side.
	AdminKnown bool                   `json:"adminKnown"`
	Admin      inventory.VFAdminState `json:"admin"`
	Driver     string                 `json:"driver,omitempty"` // VF driver ("" unbound)
	IfName     string                 `json:"ifName,omitempty"`
	MAC        string                 `json:"mac,omitempty"`
	MTU        int                    `json:"mtu,omitempty"`
	// IRQAffinity maps IRQ number to its smp_affinity_list before any change.
	IRQAffinity map[int]string `json:"irqAffinity,omitempty"`
}

// Knob names one thing Apply (or, for KnobGUID, SetGUID) can change
// through the PF; Restore takes the knobs that were changed. VLAN covers
// vlan, qos and proto; Rate covers min and max rate; GUID covers node and
// port GUID and the rebind.
type Knob string

const (
	KnobMAC       Knob = "mac"
	KnobVLAN      Knob = "vlan"
	KnobSpoofChk  Knob = "spoofChk"
	KnobTrust     Knob = "trust"
	KnobLinkState Knob = "linkState"
	KnobRate      Knob = "rate"
	KnobGUID      Knob = "guid"
)

// Knobs returns the knobs the settings change, in the order Apply applies
// them.
func (s Settings) Knobs() []Knob {
	var out []Knob
	if s.MAC != nil {
		out = append(out, KnobMAC)
	}
	if s.VLAN != nil || s.QoS != nil || s.VLANProto != nil {
		out = append(out, KnobVLAN)
	}
	if s.SpoofChk != nil {
		out = append(out, KnobSpoofChk)
	}
	if s.Trust != nil {
		out = append(out, KnobTrust)
	}
	if s.LinkState != nil {
		out = append(out, KnobLinkState)
	}
	if s.MinTxRate != nil || s.MaxTxRate != nil {
		out = append(out, KnobRate)
	}
	return out
}
