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
	// hostIfName (name, MAC, MTU) and its identity, before anything is
	// changed. A netdev whose PCI parent is not pciAddress (the device's
	// address in the driver's record) is refused.
	ReadOriginal(ctx context.Context, hostIfName, pciAddress string) (netattach.Original, error)
	// Attach moves the device id, on the host as spec.HostIfName, into the
	// network namespace at netnsPath and configures it as spec says (name,
	// MTU, MAC, addresses, routes, up). The device already there is
	// configured in place. A link that is not the device is never moved.
	Attach(ctx context.Context, netnsPath string, spec netattach.Spec, id netattach.Identity) error
	// InNetns reports whether the device id is in the network namespace
	// at netnsPath (podIfName is where it is looked for first). A netns
	// that is gone (netattach.NetnsGone) is reported as false without an
	// error.
	InNetns(ctx context.Context, netnsPath, podIfName string, id netattach.Identity) (bool, error)
	// Detach returns the device orig.Identity from the netns to the host
	// under orig.IfName with orig's MAC and MTU. When the netns is gone,
	// it looks for the device on the host by its identity (the kernel
	// returns physical netdevs there) and restores it. A device already
	// restored is success; links that are not the device are never
	// changed.
	Detach(ctx context.Context, netnsPath, podIfName string, orig netattach.Original) error
	// NetnsGone reports whether path is no longer a network namespace
	// (netattach.NetnsGone: missing, or not a netns), with why.
	NetnsGone(path string) (bool, string, error)
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
