package nri

// The attach: one netdev into a pod's netns, each step recorded through
// Devices before the next and the device's "attached" marker last (fail
// closed: no container of the pod before it), and the hooks' loops over a
// pod's devices.

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/nri/pkg/api"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/internal/faults"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// attachSandbox attaches the pod's netdevs to the netns of its new
// sandbox. When one fails, the runtime deletes the netns of the failed
// sandbox: what is already in it is brought back first instead of being
// stranded there.
func (p *Plugin) attachSandbox(ctx context.Context, uid, netns string, devs []PodDevice) error {
	for _, d := range devs {
		if d.VFIO {
			continue
		}
		if _, err := p.attach(ctx, d, netns); err != nil {
			if rerr := p.detachPod(ctx, uid, netns); rerr != nil {
				klog.FromContext(ctx).Error(rerr, "Rolling back the attaches of a failed sandbox; will retry")
			}
			return err
		}
	}
	return nil
}

// requireAttached fails closed for CreateContainer: every netdev of the
// pod must be in the pod's netns (netns); one that is not is attached now
// (the plugin missed RunPodSandbox), and if that fails, or the pod runs
// in the host network namespace, the container is refused.
func (p *Plugin) requireAttached(ctx context.Context, pod *api.PodSandbox, ctr *api.Container, netns string, devs []PodDevice) error {
	if netns == "" {
		if err := hostNetworkError(pod, devs); err != nil {
			return fmt.Errorf("refuse container %s: %w", ctr.GetName(), err)
		}
	}
	for _, d := range devs {
		if d.VFIO {
			continue
		}
		attached, err := p.attach(ctx, d, netns)
		if err != nil {
			return fmt.Errorf("refuse container %s of pod %s: %s is not in the pod network namespace %s and attaching it failed: %w", ctr.GetName(), podRef(pod), devRef(d), netns, err)
		}
		if attached {
			klog.FromContext(ctx).Info("Attached a device at container creation (the plugin missed RunPodSandbox)", "device", d.Device, "claimUID", d.ClaimUID)
		}
	}
	return nil
}

// attach brings one netdev into netns and records each step. It returns
// whether it moved anything (false: it was there already).
func (p *Plugin) attach(ctx context.Context, d PodDevice, netns string) (bool, error) {
	ctx = p.stepContext(ctx)
	steps := netattach.NewStepTimer(ctx)
	p.holdNetns(ctx, d.PodUID, netns)
	if p.attachedAlready(ctx, d, netns) {
		// The marker may be missing after a crash between the record
		// and its creation.
		return false, p.markAttached(d)
	}
	if d.NetnsPath != "" && d.NetnsPath != netns {
		if err := p.leaveEarlierSandbox(ctx, &d); err != nil {
			return false, err
		}
	}
	rdma := d.RDMAIsolation
	if rdma && d.RDMADevice == "" {
		return false, fmt.Errorf("%s: rdmaIsolation is set but the device has no RDMA device", devRef(d))
	}
	derived, err := p.recordAttaching(ctx, &d, netns)
	if err != nil {
		return false, err
	}
	steps.Mark(StepRecordAttaching)
	ib := d.LinkType == inventory.LinkTypeInfiniBand
	if rdma && ib {
		if err := p.moveRDMA(ctx, d, netns); err != nil {
			return false, err
		}
	}
	if err := p.moveNetdev(ctx, d, netns, derived); err != nil {
		return false, err
	}
	steps.Mark(StepAttach)
	faults.Point(faults.AttachMoved)
	if rdma && !ib {
		if err := p.moveRDMA(ctx, d, netns); err != nil {
			return false, err
		}
	}
	if err := p.devs.Attached(d.ClaimUID, d.Device, rdma); err != nil {
		return false, fmt.Errorf("%s: record attach done: %w", devRef(d), err)
	}
	faults.Point(faults.AttachCompleted)
	steps.Mark(StepRecordAttached)
	if err := p.markAttached(d); err != nil {
		return false, err
	}
	steps.Mark(StepMarker)
	deviceLogger(ctx, d).V(3).Info("Attached", "netns", netns, "ifName", d.Spec.PodIfName, "rdma", rdma)
	return true, nil
}

// attachedAlready reports whether d, recorded as attached to netns, is
// there. One recorded so but not found there is logged and attached
// again.
func (p *Plugin) attachedAlready(ctx context.Context, d PodDevice, netns string) bool {
	if !d.Attached || d.NetnsPath != netns {
		return false
	}
	in, err := p.host.InNetns(ctx, netns, d.Spec.PodIfName, identity(d))
	if err == nil && in {
		return true
	}
	deviceLogger(ctx, d).Info("Device recorded as attached is not in the pod netns: attaching again", "netns", netns, "ifName", d.Spec.PodIfName, "err", err)
	return false
}

// leaveEarlierSandbox returns d, still recorded in the netns of an
// earlier sandbox of its pod, to the host, and clears that record from d.
func (p *Plugin) leaveEarlierSandbox(ctx context.Context, d *PodDevice) error {
	deviceLogger(ctx, *d).Info("Device still recorded in an earlier sandbox's netns: returning it first", "oldNetns", d.NetnsPath)
	if err := p.detachDevice(ctx, *d); err != nil {
		return fmt.Errorf("%s: return it from the earlier sandbox's netns %s: %w", devRef(*d), d.NetnsPath, err)
	}
	d.NetnsPath, d.Attached, d.RDMAMoved = "", false, false
	return nil
}

// recordAttaching records, before anything moves, that d goes into netns
// and what to restore on the host afterwards, and sets d.Original to
// that. An attach recorded already (a retry into the same netns) records
// nothing. derived is true when nothing says where the device is and the
// kernel does: the host netdev could not be read, so the original is the
// one recorded at Prepare.
func (p *Plugin) recordAttaching(ctx context.Context, d *PodDevice, netns string) (bool, error) {
	var orig netattach.Original
	var err error
	derived := false
	switch {
	case d.NetnsPath == "" && fromKernel(*d):
		// The original was recorded durably at Prepare. Read as it is
		// now (one RTM_GETLINK): when unchanged, the netns goes into
		// memory only and nothing is written inside the runtime's hook;
		// when it changed since (a VF driver adopts the MAC set through
		// its PF after a reset of its own), Devices records the new one
		// durably, as the hook did before. Not on the host under its
		// name: after a restart it may be in this netns already or back
		// on the host changed; the kernel says (moveNetdev).
		if orig, err = p.host.ReadOriginal(ctx, d.Spec.HostIfName, d.PCIAddress); err != nil {
			orig, derived = *d.Original, true
		}
		// Whether it was up is Prepare's word: a detach cut short by a
		// crash leaves it on the host down, before it is up again. So
		// are its link flags and alias: such a detach may leave the
		// last pod's (promisc, arp off) on it. Not recorded at Prepare
		// (an earlier release's record): Detach restores the defaults.
		// Its offload features, ring sizes and channel counts likewise
		// (not recorded: left as they are).
		orig.Up = d.Original.Up
		orig.Flags = d.Original.Flags
		orig.Features = d.Original.Features
		orig.Rings, orig.Channels = d.Original.Rings, d.Original.Channels
	case d.NetnsPath == "" || d.Original == nil:
		// Nothing moved yet (or nothing to restore was recorded): record
		// the original before any change.
		if orig, err = p.host.ReadOriginal(ctx, d.Spec.HostIfName, d.PCIAddress); err != nil {
			return false, fmt.Errorf("%s: read host netdev %s: %w", devRef(*d), d.Spec.HostIfName, err)
		}
	default:
		return false, nil
	}
	if err := p.devs.Attaching(d.ClaimUID, d.Device, netns, orig); err != nil {
		return false, fmt.Errorf("%s: record attach start: %w", devRef(*d), err)
	}
	faults.Point(faults.AttachRecorded)
	d.Original = &orig
	return derived, nil
}

// moveRDMA moves d's RDMA device into netns (rdmaIsolation).
func (p *Plugin) moveRDMA(ctx context.Context, d PodDevice, netns string) error {
	if err := p.host.MoveRDMA(ctx, d.RDMADevice, netns); err != nil {
		return fmt.Errorf("%s: move RDMA device %s into netns %s: %w", devRef(d), d.RDMADevice, netns, err)
	}
	return nil
}

// moveNetdev moves d's netdev into netns and configures it there
// (HostOps.Attach). With a derived original a failure is retried once,
// after putting the device back on the host as recorded at Prepare.
func (p *Plugin) moveNetdev(ctx context.Context, d PodDevice, netns string, derived bool) error {
	id := identity(d)
	err := p.host.Attach(ctx, netns, d.Spec, id)
	if err != nil && derived {
		// Neither on the host under its name nor in this netns: after a
		// restart it may be on the host as the kernel returned it from a
		// pod netns that is gone (under its pod name or dev<ifindex>).
		// Put it back as recorded at Prepare and attach again.
		if rerr := p.host.Detach(ctx, "", d.Spec.PodIfName, *d.Original); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restore it on the host: %w", rerr))
		} else {
			deviceLogger(ctx, d).Info("Restored the device on the host before attaching it", "firstErr", err)
			err = p.host.Attach(ctx, netns, d.Spec, id)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: attach netdev %s to netns %s as %s: %w", devRef(d), d.Spec.HostIfName, netns, d.Spec.PodIfName, err)
	}
	return nil
}

// markAttached creates the device's "attached" marker: from now on the
// runtime can create the pod's containers, which bind-mount it.
func (p *Plugin) markAttached(d PodDevice) error {
	if p.marks == nil {
		return nil
	}
	if err := p.marks.Create(d.ClaimUID, d.Device); err != nil {
		return fmt.Errorf("%s: %w", devRef(d), err)
	}
	return nil
}
