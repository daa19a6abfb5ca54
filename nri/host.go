package nri

import (
	"context"

	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// HostOps are the kernel operations the plugin orchestrates. The plugin
// holds no netlink or sysfs code: the driver passes NewHostOps (over
// pkg/netattach, pkg/rdma and pkg/irq); unit tests pass a recording fake.
//
// Every method must be idempotent: the plugin retries after a crash or a
// lost connection without knowing how far the previous attempt got.
type HostOps interface {
	// ReadOriginal reads what Detach must restore for the host netdev
	// hostIfName (name, MAC, MTU), before anything is changed.
	ReadOriginal(ctx context.Context, hostIfName string) (netattach.Original, error)
	// Attach moves the netdev into the network namespace at netnsPath and
	// configures it as spec says (name, MTU, MAC, addresses, routes, up).
	// A netdev already there under spec.PodIfName is configured in place.
	Attach(ctx context.Context, netnsPath string, spec netattach.Spec) error
	// InNetns reports whether a link named podIfName is in the network
	// namespace at netnsPath. A netns path that no longer exists is
	// reported as false without an error.
	InNetns(ctx context.Context, netnsPath, podIfName string) (bool, error)
	// Detach returns the netdev from the netns to the host under
	// orig.IfName with orig's MAC and MTU. When the netns is gone, it
	// looks for the link on the host (the kernel returns physical netdevs
	// there) and restores it. A netdev already restored is success.
	Detach(ctx context.Context, netnsPath, podIfName string, orig netattach.Original) error
	// MoveRDMA moves the RDMA device into the netns (exclusive RDMA netns
	// mode). Already there is success.
	MoveRDMA(ctx context.Context, rdmaDevice, netnsPath string) error
	// ReturnRDMA moves the RDMA device back to the host netns. Already on
	// the host is success.
	ReturnRDMA(ctx context.Context, rdmaDevice, netnsPath string) error
	// PinIRQs pins the MSI IRQs of the PCI function to the CPU list. The
	// affinities before are in the device's vfconfig.Snapshot, taken at
	// Prepare; Unprepare restores them.
	PinIRQs(ctx context.Context, pciAddress, cpus string) error
}
