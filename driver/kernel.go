package driver

import (
	"context"
	"fmt"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/irq"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

// NewKernel returns the production Kernel: pkg/vfconfig changes VFs,
// pkg/irq restores IRQ affinities, pkg/rdma finds RDMA character devices.
// root is the host filesystem root, h a netlink handle in the host netns.
func NewKernel(root string, h nlink.Handle) Kernel {
	return &nodeKernel{root: root, h: h}
}

type nodeKernel struct {
	root string
	h    nlink.Handle
}

func (r *nodeKernel) Snapshot(ctx context.Context, dev *inventory.Device) (vfconfig.Snapshot, error) {
	if dev.Kind == inventory.KindVF {
		return vfconfig.TakeSnapshot(ctx, r.h, r.root, *dev)
	}
	// A whole PF: nothing is changed through a parent; only its driver
	// binding and netdev identity matter. The host must not use it now
	// (the scan that offered it may be a second old): what it has beyond
	// name, MAC, MTU and state would not come back.
	if use := inventory.PFHostUse(ctx, r.h, r.root, dev.IfName); use != "" {
		return vfconfig.Snapshot{}, fmt.Errorf("PF %s is not taken: %s", dev.PCIAddress, use)
	}
	drv, err := vfconfig.DriverOf(r.root, dev.PCIAddress)
	if err != nil {
		return vfconfig.Snapshot{}, err
	}
	return vfconfig.Snapshot{
		PCIAddress: dev.PCIAddress, PFName: dev.IfName, PFPCIAddress: dev.PCIAddress, VFIndex: -1,
		PFDriver: drv, Driver: drv, IfName: dev.IfName, MAC: dev.MAC, MTU: dev.MTU,
	}, nil
}

func (r *nodeKernel) ApplyVF(ctx context.Context, snap *vfconfig.Snapshot, s vfconfig.Settings) error {
	return vfconfig.Apply(ctx, r.h, r.root, *snap, s)
}

func (r *nodeKernel) RestoreVF(ctx context.Context, snap *vfconfig.Snapshot, s vfconfig.Settings) error {
	return vfconfig.Restore(ctx, r.h, r.root, *snap, s.Knobs())
}

func (r *nodeKernel) SetGUID(ctx context.Context, snap *vfconfig.Snapshot, guid string) (string, error) {
	if err := vfconfig.SetGUID(ctx, r.h, r.root, *snap, guid); err != nil {
		return "", err
	}
	return pcidev.PrimaryNetdev(r.root, snap.PCIAddress)
}

func (r *nodeKernel) PKeys(ctx context.Context, snap *vfconfig.Snapshot) ([]string, error) {
	return inventory.PortPKeys(ctx, r.root, snap.PCIAddress)
}

func (r *nodeKernel) RestoreGUID(ctx context.Context, snap *vfconfig.Snapshot) error {
	if err := vfconfig.Restore(ctx, r.h, r.root, *snap, []vfconfig.Knob{vfconfig.KnobGUID}); err != nil {
		return err
	}
	// The rebind named the netdev afresh.
	return vfconfig.RestoreNetdev(ctx, r.h, r.root, *snap)
}

func (r *nodeKernel) BindVFIO(ctx context.Context, snap *vfconfig.Snapshot) error {
	_, err := vfconfig.BindVFIO(ctx, r.root, snap.PCIAddress)
	return err
}

func (r *nodeKernel) RestoreDriver(ctx context.Context, snap *vfconfig.Snapshot) error {
	if err := vfconfig.UnbindVFIO(ctx, r.root, snap.PCIAddress, snap.Driver); err != nil {
		return err
	}
	// The vendor driver probed the VF again: a new netdev name, and a
	// random MAC when the PF holds no admin MAC for it.
	return vfconfig.RestoreNetdev(ctx, r.h, r.root, *snap)
}

func (r *nodeKernel) RestoreIRQs(ctx context.Context, snap *vfconfig.Snapshot) error {
	return irq.Restore(ctx, r.root, snap.IRQAffinity)
}

// ReadOriginal implements originalReader: the netdev as the NRI plugin's
// detach restores it.
func (r *nodeKernel) ReadOriginal(ctx context.Context, hostIfName, pciAddress string) (netattach.Original, error) {
	return netattach.ReadOriginal(ctx, r.h, hostIfName, pciAddress)
}

func (r *nodeKernel) CheckVFIO(_ context.Context, dev *inventory.Device) error {
	return vfconfig.CheckVFIOIsolation(r.root, dev.PCIAddress)
}

func (r *nodeKernel) CDIInfo(_ context.Context, dev *inventory.Device, vfio bool) ([]string, string, error) {
	if vfio {
		b, err := vfconfig.VFIODeviceNodes(r.root, dev.PCIAddress)
		if err != nil {
			return nil, "", err
		}
		return nil, b.IOMMUGroup, nil
	}
	if dev.RDMADevice() == "" {
		return nil, "", nil
	}
	nodes, err := rdma.CharDevices(r.root, dev.PCIAddress)
	if err != nil {
		return nil, "", fmt.Errorf("RDMA character devices of %s: %w", dev.PCIAddress, err)
	}
	return nodes, "", nil
}

func (r *nodeKernel) RDMAGUIDs(context.Context) ([]rdma.GUIDUse, error) {
	return rdma.GUIDs(r.root)
}
