package vfconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
)

// VFIODriver is the kernel driver for device passthrough.
const VFIODriver = "vfio-pci"

// VFIOBinding is the result of binding a PCI function to vfio-pci.
type VFIOBinding struct {
	// OriginalDriver is what it was bound to before ("" unbound); give it
	// to UnbindVFIO.
	OriginalDriver string `json:"originalDriver,omitempty"`
	// IOMMUGroup is the function's IOMMU group number.
	IOMMUGroup string `json:"iommuGroup"`
	// NoIOMMU is true when vfio runs in unsafe no-IOMMU mode: the group
	// node is /dev/vfio/noiommu-<group>.
	NoIOMMU bool `json:"noIOMMU,omitempty"`
	// DeviceNodes are the host paths a container needs (CDI): the group
	// node and the vfio container node /dev/vfio/vfio.
	DeviceNodes []string `json:"deviceNodes"`
}

// VFIODeviceNodes reports the vfio device nodes of a PCI function bound to
// vfio-pci. The kernel names the group node after the IOMMU group number,
// and in no-IOMMU mode (vfio's enable_unsafe_noiommu_mode) it creates a
// group named "vfio-noiommu" whose node is /dev/vfio/noiommu-<group>. The
// group's name file is checked first; the module parameter is the
// fallback for kernels without it.
func VFIODeviceNodes(root, pci string) (VFIOBinding, error) {
	target, err := os.Readlink(filepath.Join(pciDir(root, pci), "iommu_group"))
	if err != nil {
		return VFIOBinding{}, fmt.Errorf("IOMMU group of %s: %w", pci, err)
	}
	b := VFIOBinding{IOMMUGroup: filepath.Base(target)}
	name, err := readTrim(filepath.Join(root, "sys/kernel/iommu_groups", b.IOMMUGroup, "name"))
	switch {
	case err == nil:
		b.NoIOMMU = name == "vfio-noiommu"
	case errors.Is(err, os.ErrNotExist):
		mode, _ := readTrim(filepath.Join(root, "sys/module/vfio/parameters/enable_unsafe_noiommu_mode"))
		b.NoIOMMU = mode == "Y" || mode == "1"
	default:
		return VFIOBinding{}, fmt.Errorf("read name of IOMMU group %s of %s: %w", b.IOMMUGroup, pci, err)
	}
	group := "/dev/vfio/" + b.IOMMUGroup
	if b.NoIOMMU {
		group = "/dev/vfio/noiommu-" + b.IOMMUGroup
	}
	b.DeviceNodes = []string{group, "/dev/vfio/vfio"}
	return b, nil
}

// BindVFIO binds the PCI function to vfio-pci: driver_override, unbind
// from its driver, drivers_probe; then waits (bounded) for the kernel to
// bind it and reports the vfio device nodes. Binding a function already on
// vfio-pci only reports. A failure puts the original driver back.
func BindVFIO(ctx context.Context, root, pci string) (VFIOBinding, error) {
	log := klog.FromContext(ctx)
	orig, err := DriverOf(root, pci)
	if err != nil {
		return VFIOBinding{}, err
	}
	if orig == VFIODriver {
		b, err := VFIODeviceNodes(root, pci)
		b.OriginalDriver = ""
		return b, err
	}
	dir := pciDir(root, pci)
	if err := writeSysfs(filepath.Join(dir, "driver_override"), VFIODriver); err != nil {
		return VFIOBinding{}, fmt.Errorf("set driver_override of %s to %s: %w", pci, VFIODriver, err)
	}
	fail := func(err error) (VFIOBinding, error) {
		return VFIOBinding{}, errors.Join(err, UnbindVFIO(ctx, root, pci, orig))
	}
	if orig != "" {
		if err := writeSysfs(filepath.Join(driversDir(root), orig, "unbind"), pci); err != nil {
			return fail(fmt.Errorf("unbind %s from %s: %w", pci, orig, err))
		}
		if err := waitDriver(ctx, root, pci, ""); err != nil {
			return fail(err)
		}
	}
	if err := writeSysfs(filepath.Join(root, "sys/bus/pci/drivers_probe"), pci); err != nil {
		return fail(fmt.Errorf("probe %s for %s (is the vfio-pci module loaded?): %w", pci, VFIODriver, err))
	}
	if err := waitDriver(ctx, root, pci, VFIODriver); err != nil {
		return fail(err)
	}
	b, err := VFIODeviceNodes(root, pci)
	if err != nil {
		return fail(err)
	}
	b.OriginalDriver = orig
	log.V(2).Info("Bound to vfio-pci", "pci", pci, "from", orig, "group", b.IOMMUGroup, "noIOMMU", b.NoIOMMU)
	return b, nil
}

// UnbindVFIO undoes BindVFIO: unbinds the function from vfio-pci, clears
// driver_override and binds it back to origDriver (left unbound when ""),
// waiting (bounded) for the kernel. It is idempotent.
func UnbindVFIO(ctx context.Context, root, pci, origDriver string) error {
	cur, err := DriverOf(root, pci)
	if err != nil {
		return err
	}
	dir := pciDir(root, pci)
	if cur == VFIODriver {
		if err := writeSysfs(filepath.Join(driversDir(root), VFIODriver, "unbind"), pci); err != nil {
			return fmt.Errorf("unbind %s from %s: %w", pci, VFIODriver, err)
		}
		if err := waitDriver(ctx, root, pci, ""); err != nil {
			return err
		}
	}
	// An empty write (newline) clears the override.
	if err := writeSysfs(filepath.Join(dir, "driver_override"), "\n"); err != nil {
		return fmt.Errorf("clear driver_override of %s: %w", pci, err)
	}
	if origDriver == "" || origDriver == VFIODriver {
		return nil
	}
	if cur, err = DriverOf(root, pci); err != nil {
		return err
	}
	if cur == origDriver {
		return nil
	}
	if err := writeSysfs(filepath.Join(driversDir(root), origDriver, "bind"), pci); err != nil {
		return fmt.Errorf("bind %s back to %s: %w", pci, origDriver, err)
	}
	if err := waitDriver(ctx, root, pci, origDriver); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Unbound from vfio-pci", "pci", pci, "driver", origDriver)
	return nil
}

// waitDriver waits (bounded) until the function's driver is driver ("" =
// unbound). The kernel binds and unbinds inside the sysfs write, so this
// returns at once there; it matters for slow bus notifiers and fixtures.
func waitDriver(ctx context.Context, root, pci, driver string) error {
	what := pci + " bound to " + driver
	if driver == "" {
		what = pci + " unbound"
	}
	return waitFor(ctx, rebindWait, what, func() (bool, error) {
		d, err := DriverOf(root, pci)
		return d == driver, err
	})
}

// RestoreNetdev gives the VF's netdev the name, MAC and MTU the snapshot
// recorded, after its driver was bound again (vfio-pci undone, or a GUID
// rebind): a new probe names the netdev afresh and, when the PF holds no
// admin MAC for the VF, makes up a random MAC. It waits (bounded) for the
// netdev to appear and changes only what differs. A snapshot without a
// netdev needs nothing.
func RestoreNetdev(ctx context.Context, h nlink.Handle, root string, snap Snapshot) error {
	if snap.IfName == "" {
		return nil
	}
	var name string
	if err := waitFor(ctx, rebindWait, "a netdev of "+snap.PCIAddress, func() (bool, error) {
		n, err := pcidev.PrimaryNetdev(root, snap.PCIAddress)
		name = n
		return n != "", err
	}); err != nil {
		return fmt.Errorf("restore netdev %s of %s: %w", snap.IfName, snap.PCIAddress, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("restore netdev %s of %s: get link %s: %w", snap.IfName, snap.PCIAddress, name, err)
	}
	log := klog.FromContext(ctx)
	if snap.MAC != "" && !strings.EqualFold(l.Attrs().HardwareAddr.String(), snap.MAC) {
		mac, err := net.ParseMAC(snap.MAC)
		if err != nil {
			return fmt.Errorf("restore netdev %s of %s: snapshot MAC %q: %w", snap.IfName, snap.PCIAddress, snap.MAC, err)
		}
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("restore MAC %s of netdev %s (%s): %w", snap.MAC, name, snap.PCIAddress, err)
		}
		log.V(2).Info("Restored netdev MAC after rebind", "pci", snap.PCIAddress, "ifName", name, "mac", snap.MAC)
	}
	if snap.MTU > 0 && l.Attrs().MTU != snap.MTU {
		if err := h.LinkSetMTU(l, snap.MTU); err != nil {
			return fmt.Errorf("restore MTU %d of netdev %s (%s): %w", snap.MTU, name, snap.PCIAddress, err)
		}
	}
	if name != snap.IfName {
		if err := h.LinkSetName(l, snap.IfName); err != nil {
			return fmt.Errorf("rename netdev %s of %s back to %s: %w", name, snap.PCIAddress, snap.IfName, err)
		}
		log.V(2).Info("Renamed netdev back after rebind", "pci", snap.PCIAddress, "from", name, "to", snap.IfName)
	}
	return nil
}
