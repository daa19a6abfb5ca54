package driver

import (
	"context"

	"github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// checkVFIO refuses, before anything on the host changes, a device the
// claim wants on vfio-pci that vfio could not isolate: no IOMMU, vfio's
// unsafe no-IOMMU mode, or an IOMMU group shared with another PCI
// function (every claim given a device of that group would get the
// group's /dev/vfio node and so every device in it). Devices kept on
// their netdev driver need no check.
func (d *Driver) checkVFIO(ctx context.Context, dev *inventory.Device, res *v1alpha1.Resolved) error {
	if !res.VFIO() {
		return nil
	}
	return d.cfg.Kernel.CheckVFIO(ctx, dev)
}
