// Package nri is the NRI side of sriov-dra: it moves prepared netdevs into
// pod network namespaces when the runtime creates a sandbox, refuses
// containers whose devices are not in place, and returns the netdevs to the
// host when the sandbox stops.
package nri

import (
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// PodDevice is one device prepared for a pod, as the NRI side needs it.
type PodDevice struct {
	// PodUID is the pod the claim is reserved for: the key of the lock
	// every detach of the device takes.
	PodUID         string `json:"podUID,omitempty"`
	ClaimUID       string `json:"claimUID"`
	ClaimNamespace string `json:"claimNamespace"`
	ClaimName      string `json:"claimName"`
	Request        string `json:"request"`
	Device         string `json:"device"` // ResourceSlice device name
	PCIAddress     string `json:"pciAddress"`

	// VFIO is true for vfio-pci devices: there is no netdev to move.
	VFIO bool `json:"vfio,omitempty"`
	// Spec is how the netdev must look in the pod (from config + IPAM).
	Spec netattach.Spec `json:"spec"`
	// LinkType decides the move order with RDMAIsolation: for InfiniBand
	// the RDMA device moves before the netdev (the kernel recreates IPoIB
	// netdevs when their RDMA device changes netns), for Ethernet after.
	LinkType inventory.LinkType `json:"linkType,omitempty"`
	// RDMADevice is moved into the pod netns when RDMAIsolation is set.
	RDMADevice    string `json:"rdmaDevice,omitempty"`
	RDMAIsolation bool   `json:"rdmaIsolation,omitempty"`
	// IRQAffinity pins the VF's IRQs to the containers' CPUs.
	IRQAffinity bool `json:"irqAffinity,omitempty"`

	// Current attach state, as recorded.
	NetnsPath string              `json:"netnsPath,omitempty"` // set when attaching began
	Attached  bool                `json:"attached,omitempty"`
	Original  *netattach.Original `json:"original,omitempty"` // recorded before the move
	RDMAMoved bool                `json:"rdmaMoved,omitempty"`

	// AttachStateFromKernel is set at Prepare, together with Original
	// (read from the host then), for a netdev without RDMA isolation: the
	// intent to attach is durable before any hook. Attaching, Attached and
	// Detached then change only the daemon's memory, so RunPodSandbox
	// writes nothing to disk, and after a restart NetnsPath and Attached
	// are derived from the kernel: the device found by its identity in
	// the netns of one of the pod's sandboxes, or on the host. false (the
	// default, and every record written before the field existed): the
	// hook records the attach durably, as before.
	AttachStateFromKernel bool `json:"attachStateFromKernel,omitempty"`
}

// Devices is what the NRI plugin needs from the node's prepared state. The
// driver's state implements it over the checkpoint; each record call is
// durable (checkpointed) before it returns, except for a device with
// AttachStateFromKernel, whose attach state lives in memory only.
type Devices interface {
	// ForPod returns the devices prepared for the pod with this UID.
	ForPod(podUID string) []PodDevice
	// Pods returns the UIDs of all pods with prepared devices.
	Pods() []string
	// Attaching records, before any move, that the device is about to go
	// into netnsPath and what to restore on the host afterwards.
	Attaching(claimUID, device, netnsPath string, orig netattach.Original) error
	// Attached records a finished attach (RDMA moved or not); the driver
	// then queues the claim's status update outside the hook.
	Attached(claimUID, device string, rdmaMoved bool) error
	// Detached records that the device is back on the host: afterwards
	// ForPod reports it with NetnsPath "", Attached and RDMAMoved false.
	Detached(claimUID, device string) error
}

// identity is the device's identity as recorded: the one read before the
// move, or for a record written before identities were recorded, the
// device's PCI address from the driver's record (a link whose PCI parent
// is not that address is then never touched).
func identity(d PodDevice) netattach.Identity {
	if d.Original != nil && d.Original.Identity.Known() {
		return d.Original.Identity
	}
	return netattach.Identity{PCIAddress: d.PCIAddress}
}

// fromKernel reports whether d's attach state is derived from the kernel
// (see PodDevice.AttachStateFromKernel) rather than recorded durably.
func fromKernel(d PodDevice) bool {
	return d.AttachStateFromKernel && d.Original != nil
}
