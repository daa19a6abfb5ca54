// Package v1alpha1 is the opaque device configuration API of sriov-dra,
// `sriov.dra.dev/v1alpha1`: the VfConfig and PfConfig objects that admins
// put in a DeviceClass and users in a ResourceClaim
// (`spec.devices.config[].opaque` with `driver: sriov.dra.dev`).
//
// The package decodes such objects strictly (Decode), validates them with
// field paths a user can act on, merges the configs of an allocation result
// for one request (Resolve), assigns default interface names within a pod
// (AssignIfNames) and checks whole manifests (CheckManifests, used by
// `sriov-dra validate`). docs/config.md is the user-facing reference.
package v1alpha1

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sriov-dra/sriov-dra/pkg/hw"
)

const (
	// DriverName is the DRA driver name configs must name in
	// `opaque.driver`; it is also the API group.
	DriverName = "sriov.dra.dev"
	// GroupName is the API group of the config objects.
	GroupName = "sriov.dra.dev"
	// Version is the only API version this package understands.
	Version = "v1alpha1"
	// APIVersion is the apiVersion every config object carries.
	APIVersion = GroupName + "/" + Version

	// KindVfConfig configures a virtual function (Ethernet or InfiniBand).
	KindVfConfig = "VfConfig"
	// KindPfConfig configures a whole physical function given to a pod.
	KindPfConfig = "PfConfig"
)

// Values of the `driver` field: which kernel driver the device is bound to
// while the pod has it.
const (
	DriverNetdevice = "netdevice" // the vendor's network driver: a netdev moves into the pod
	DriverVFIOPCI   = "vfio-pci"  // vfio-pci for DPDK: no netdev in the pod
)

// Values of the `vlanProto` field.
const (
	VLANProto8021Q  = "802.1q"
	VLANProto8021AD = "802.1ad"
)

// Values of the `linkState` field.
const (
	LinkStateAuto    = "auto"
	LinkStateEnable  = "enable"
	LinkStateDisable = "disable"
)

// Values of the `irqAffinity` field.
const (
	IRQAffinityNone      = "none"
	IRQAffinityContainer = "container"
)

// GUIDAuto asks the driver to pick the VF's InfiniBand GUID.
const GUIDAuto = "auto"

// MACAuto asks the driver to pick the VF's MAC: one per claim and device,
// locally administered, unique on the node (docs/config.md).
const MACAuto = "auto"

// Limits of numeric fields. See docs/config.md for why.
const (
	MinMTU       = 68            // the IPv4 minimum; devices may refuse more (the kernel says so at prepare time)
	MaxMTU       = 65535         // the largest MTU the kernel's netlink API carries for these devices
	MaxVLAN      = hw.MaxVLAN    // 4095 is reserved by 802.1Q
	MaxVLANQoS   = hw.MaxVLANQoS // 802.1p priority
	MaxTxRate    = 1000000
	MaxIfNameLen = 15 // IFNAMSIZ - 1
	MinPKey      = 0x0001
	MaxPKey      = 0xffff
	// MaxParametersSize is the largest parameters blob accepted, the same
	// limit the API server enforces (resource.k8s.io OpaqueParametersMaxLength).
	MaxParametersSize = 10 * 1024
)

// Config is a decoded config object: *VfConfig or *PfConfig.
type Config interface {
	// GetKind returns KindVfConfig or KindPfConfig.
	GetKind() string
	isConfig()
}

// PKey is an InfiniBand partition key. In JSON/YAML it is written either as a
// hex string with 0x ("0x8001") or as a number (32769; unquoted YAML 0x8001
// is a number too). The high bit (0x8000) is the full-membership bit.
type PKey int

// String formats the pkey as "0x8001" (hw.PKey's form; a value out of
// the 16-bit range, which validation refuses, as plain hex).
func (p PKey) String() string {
	if p < 0 || p > MaxPKey {
		return fmt.Sprintf("%#x", int(p))
	}
	return hw.PKey(p).String()
}

// Route is one extra route for the device's interface in the pod.
type Route struct {
	// Dst is the destination network in CIDR form ("10.20.0.0/16", "0.0.0.0/0").
	Dst string `json:"dst"`
	// GW is the next hop; empty for a link-scope route.
	GW string `json:"gw,omitempty"`
}

// VfConfig configures an Ethernet or InfiniBand virtual function. Every
// setting is optional: a nil pointer (or nil slice) means "not set here", so
// merging can tell unset from zero. Use Decode to build one from user input.
type VfConfig struct {
	metav1.TypeMeta `json:",inline"`

	// IfName is the interface name in the pod (default net1, net2, ... in
	// request order).
	IfName *string `json:"ifName,omitempty"`
	// MTU of the VF netdev in the pod.
	MTU *int `json:"mtu,omitempty"`
	// MAC is set as the VF's administrative MAC through the PF (and so is the
	// netdev's MAC); with vfio-pci it is the MAC the DPDK application sees.
	// MACAuto lets the driver make one per claim.
	MAC *string `json:"mac,omitempty"`

	// VF settings applied through the PF.
	VLAN      *int    `json:"vlan,omitempty"`
	VLANQoS   *int    `json:"vlanQoS,omitempty"`
	VLANProto *string `json:"vlanProto,omitempty"`
	SpoofChk  *bool   `json:"spoofChk,omitempty"`
	Trust     *bool   `json:"trust,omitempty"`
	LinkState *string `json:"linkState,omitempty"`
	MinTxRate *int    `json:"minTxRate,omitempty"` // Mbps
	MaxTxRate *int    `json:"maxTxRate,omitempty"` // Mbps

	// InfiniBand.
	GUID          *string `json:"guid,omitempty"`
	PKey          *PKey   `json:"pkey,omitempty"`
	RDMAIsolation *bool   `json:"rdmaIsolation,omitempty"`

	Driver *string `json:"driver,omitempty"`
	// IPAM is a CNI IPAM configuration object, kept as raw JSON and handed
	// to the plugin named by its "type".
	IPAM   json.RawMessage `json:"ipam,omitzero"`
	Routes []Route         `json:"routes,omitzero"`

	IRQAffinity *string `json:"irqAffinity,omitempty"`

	// Policy says what claims of the class may set. Only a DeviceClass's
	// config may carry it (see policy.go).
	Policy *Policy `json:"policy,omitempty"`
}

// PfConfig configures a whole physical function given to one pod.
type PfConfig struct {
	metav1.TypeMeta `json:",inline"`

	IfName *string         `json:"ifName,omitempty"`
	MTU    *int            `json:"mtu,omitempty"`
	Driver *string         `json:"driver,omitempty"`
	IPAM   json.RawMessage `json:"ipam,omitzero"`
	Routes []Route         `json:"routes,omitzero"`

	// Policy says what claims of the class may set (DeviceClass only).
	Policy *Policy `json:"policy,omitempty"`
}

// GetKind implements Config.
func (*VfConfig) GetKind() string { return KindVfConfig }

// GetKind implements Config.
func (*PfConfig) GetKind() string { return KindPfConfig }

func (*VfConfig) isConfig() {}
func (*PfConfig) isConfig() {}
