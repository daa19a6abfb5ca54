package driver

import (
	"context"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/cdi"
	"github.com/sriov-dra/sriov-dra/pkg/claimstatus"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
	"github.com/sriov-dra/sriov-dra/pkg/slicepub"
	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

// The driver orchestrates; these narrow interfaces are what it needs from
// the packages that touch the machine or the API server. Each has one
// production implementation (wired in New from Config) and fakes in tests.

// Scanner lists the node's devices (pkg/inventory).
type Scanner interface {
	Scan(ctx context.Context) (*inventory.Inventory, error)
}

// PFScanner is a Scanner that can also rescan part of the node: the PFs
// that device events concern (inventory.Scanner). Without it every event
// costs a full scan.
type PFScanner interface {
	Scanner
	// AffectedPFs maps the PCI functions and netdevs events named to the
	// PFs to rescan; none when the events concern no SR-IOV device.
	AffectedPFs(prev *inventory.Inventory, pciAddresses, ifNames []string) []string
	// ScanPFs rescans those PFs and returns prev with their devices
	// replaced.
	ScanPFs(ctx context.Context, prev *inventory.Inventory, pfs []string) (*inventory.Inventory, error)
}

// AttributesFunc gives the ResourceSlice attributes of a device
// (pkg/inventory's Attributes).
type AttributesFunc func(dev inventory.Device) map[resourceapi.QualifiedName]resourceapi.DeviceAttribute

// Kernel is the driver's view of the node's kernel and sysfs: it reads
// devices, changes them and undoes the changes (pkg/vfconfig, pkg/irq,
// pkg/rdma); moving a netdev out of a pod is the Detacher's. Every method
// takes the snapshot taken before the first change, so the restore
// methods work from a checkpoint alone.
type Kernel interface {
	// Snapshot records the device's state before any change.
	Snapshot(ctx context.Context, dev *inventory.Device) (vfconfig.Snapshot, error)
	// ApplyVF sets the VF knobs through the PF (the GUID is SetGUID's).
	ApplyVF(ctx context.Context, snap *vfconfig.Snapshot, s vfconfig.Settings) error
	// RestoreVF puts the knobs of s (and always the MAC) back as in snap.
	RestoreVF(ctx context.Context, snap *vfconfig.Snapshot, s vfconfig.Settings) error
	// SetGUID sets the VF's IB node/port GUID and rebinds so it takes it.
	// It returns the VF's netdev name after the rebind ("" when it has
	// none): a rebind may rename it.
	SetGUID(ctx context.Context, snap *vfconfig.Snapshot, guid string) (string, error)
	// PKeys reads the pkey table of the VF's own port as it is now (after
	// SetGUID: the table of the new GUID).
	PKeys(ctx context.Context, snap *vfconfig.Snapshot) ([]string, error)
	// RestoreGUID puts the GUIDs of snap back.
	RestoreGUID(ctx context.Context, snap *vfconfig.Snapshot) error
	// BindVFIO binds the device to vfio-pci.
	BindVFIO(ctx context.Context, snap *vfconfig.Snapshot) error
	// RestoreDriver binds the device back to snap.Driver.
	RestoreDriver(ctx context.Context, snap *vfconfig.Snapshot) error
	// RestoreIRQs restores the IRQ affinities of snap.
	RestoreIRQs(ctx context.Context, snap *vfconfig.Snapshot) error
	// CheckVFIO reports whether vfio-pci would give a container this
	// device alone (an IOMMU in use, an IOMMU group of its own); it
	// changes nothing.
	CheckVFIO(ctx context.Context, dev *inventory.Device) error
	// CDIInfo reports what the CDI spec needs from the host: the RDMA
	// character devices, or the vfio IOMMU group.
	CDIInfo(ctx context.Context, dev *inventory.Device, vfio bool) (rdmaCharDevices []string, vfioGroup string, err error)
	// RDMAGUIDs reads the node and port GUIDs every RDMA device of the
	// host carries, ours or not (pkg/rdma GUIDs); it changes nothing.
	RDMAGUIDs(ctx context.Context) ([]rdma.GUIDUse, error)
}

// Detacher returns a device's netdev (and RDMA device) from a pod netns to
// the host under its original name, MAC and MTU, and records it detached.
// The NRI plugin (nri.Plugin) is its one implementation: it owns every
// detach, whether a runtime hook, its retries or Unprepare asks, so a
// device is detached and recorded once. A netns that is gone means the
// kernel already returned the link, which DetachDevice then finds on the
// host; a device no longer recorded in a netns is left alone.
type Detacher interface {
	DetachDevice(ctx context.Context, d nri.PodDevice) error
}

// IPAM allocates and releases addresses (pkg/ipam).
type IPAM interface {
	// Intent is the allocation Allocate would make, without addresses:
	// recorded before Allocate, so a restart can release an ADD that
	// happened but was never recorded.
	Intent(req ipam.Request) (*ipam.Result, error)
	Allocate(ctx context.Context, req ipam.Request) (*ipam.Result, error)
	Release(ctx context.Context, res *ipam.Result) error
}

// CDI writes and removes per-claim CDI spec files (*cdi.Writer).
type CDI interface {
	// Write writes the claim's spec and returns the qualified CDI device
	// ID of each device, in order.
	Write(ctx context.Context, claimUID string, devs []cdi.Device) ([]string, error)
	// Remove deletes the claim's spec; removing a missing one succeeds.
	Remove(ctx context.Context, claimUID string) error
	// Claims lists the claims whose spec this driver wrote (checked by
	// name and content), to find orphans.
	Claims() ([]string, error)
	// SpecPath is the file of the claim's spec.
	SpecPath(claimUID string) string
}

// ClaimStatus records the claim's status.devices entries of this driver
// (*claimstatus.Writer): neither call blocks on the API server; a worker
// applies them with retries.
type ClaimStatus interface {
	Set(ref claimstatus.ClaimRef, devs []claimstatus.DeviceStatus) error
	Clear(ref claimstatus.ClaimRef) error
}

// Publisher publishes the node's pool (*slicepub.Publisher): Publish
// hands the pool over and returns; the publisher writes it, retries, and
// calls Republish when the server's slices need the pool again.
type Publisher interface {
	Publish(ctx context.Context, pool slicepub.Pool) error
}
