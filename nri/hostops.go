package nri

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/irq"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// HostConfig is what the real host operations need: the two seams to the
// machine.
type HostConfig struct {
	// Root is the filesystem root under which sys/ and proc/ are found
	// ("/" on a node, a fixture tree in tests).
	Root string
	// Netlink is a handle in the host network namespace (the driver runs
	// with host networking): nlink.NewHost.
	Netlink nlink.Handle
}

// NewHostOps returns the HostOps of a node: pkg/netattach moves netdevs,
// pkg/rdma moves RDMA devices, pkg/irq pins IRQs.
func NewHostOps(cfg HostConfig) (HostOps, error) {
	if cfg.Root == "" {
		return nil, errors.New("NRI host operations: no filesystem root")
	}
	if cfg.Netlink == nil {
		return nil, errors.New("NRI host operations: no host netlink handle")
	}
	return &hostOps{root: cfg.Root, h: cfg.Netlink}, nil
}

type hostOps struct {
	root string
	h    nlink.Handle
}

func (o *hostOps) ReadOriginal(ctx context.Context, hostIfName, pciAddress string) (netattach.Original, error) {
	return netattach.ReadOriginal(ctx, o.h, hostIfName, pciAddress)
}

func (o *hostOps) Attach(ctx context.Context, netnsPath string, spec netattach.Spec, id netattach.Identity) error {
	// The plugin recorded the Original with ReadOriginal before the
	// first attempt (at Prepare, or before it moved anything).
	return netattach.AttachRecorded(ctx, o.h, netnsPath, spec, id)
}

func (o *hostOps) InNetns(ctx context.Context, netnsPath, podIfName string, id netattach.Identity) (bool, error) {
	return netattach.InNetns(ctx, netnsPath, podIfName, id)
}

func (o *hostOps) Detach(ctx context.Context, netnsPath, podIfName string, orig netattach.Original) error {
	return netattach.Detach(ctx, o.h, netnsPath, podIfName, orig)
}

func (o *hostOps) NetnsGone(path string) (bool, string, error) {
	return netattach.NetnsGone(path)
}

// PinIRQs pins the IRQs; kernel-managed IRQs, whose affinity cannot be
// set, are logged and do not fail the container.
func (o *hostOps) PinIRQs(ctx context.Context, pciAddress, cpus string) error {
	_, err := irq.Set(ctx, o.root, pciAddress, cpus)
	var managed *irq.ManagedError
	if errors.As(err, &managed) {
		klog.FromContext(ctx).Info("Some IRQs are kernel-managed and keep their affinity", "pci", pciAddress, "irqs", managed.IRQs)
		return nil
	}
	if err != nil {
		return fmt.Errorf("pin IRQs of %s to %s: %w", pciAddress, cpus, err)
	}
	return nil
}
