package nri

// The detach: one device back to the host (marker first, RDMA device,
// then the netdev under its original name, MAC and MTU, then the record),
// done once whoever asks (the teardown, RetryPending, the reconcile, the
// driver's Unprepare), and the loops over a pod's devices that call it.

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/internal/faults"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// detachGone returns the pod's netdevs recorded in network namespaces
// that no longer exist (the kernel gave physical ones back to the host).
func (p *Plugin) detachGone(ctx context.Context, uid string) error {
	seen := map[string]bool{}
	var errs []error
	for _, d := range p.devs.ForPod(uid) {
		ns := d.NetnsPath
		if d.VFIO || ns == "" || seen[ns] || p.netnsExists(ns) {
			continue
		}
		seen[ns] = true
		errs = append(errs, p.detachPod(ctx, uid, ns))
	}
	return errors.Join(errs...)
}

// detachPod returns the pod's netdevs recorded in the netns at netns (in
// any netns when netns is ""). When one could not be returned, that netns
// stays pending for a retry.
func (p *Plugin) detachPod(ctx context.Context, uid, netns string) error {
	p.locate(ctx, uid, netns)
	var errs []error
	failed := map[string]bool{}
	for _, d := range p.devs.ForPod(uid) {
		if d.VFIO || d.NetnsPath == "" || (netns != "" && d.NetnsPath != netns) {
			continue
		}
		if err := p.detachDevice(ctx, d); err != nil {
			errs = append(errs, err)
			failed[d.NetnsPath] = true
		}
	}
	p.setPending(uid, netns, failed)
	return errors.Join(errs...)
}

// DetachDevice returns one device to the host for the driver's Unprepare
// when the runtime never stopped the pod: RDMA device first, then the
// netdev under its original name, then the record. It is one more caller
// of the one detach (detachDevice) and takes the pod's lock like the
// others (the background teardown, RetryPending, the reconcile), then
// reads the device's record again: when another caller returned the
// device meanwhile, it does nothing. So a device is detached once, its
// marker removed once and Detached recorded once, whoever gets there
// first. A device not recorded in a netns is left alone. When ctx ends
// while another detach of the pod is still running it returns ctx's error
// (Unprepare is retried).
func (p *Plugin) DetachDevice(ctx context.Context, d PodDevice) error {
	if d.VFIO || (d.NetnsPath == "" && !fromKernel(d)) {
		return nil
	}
	unlock, err := p.lockPodCtx(ctx, d.PodUID)
	if err != nil {
		return fmt.Errorf("%s: wait for the other detach of pod %s to finish: %w", devRef(d), d.PodUID, err)
	}
	defer unlock()
	cur, ok := p.recorded(d)
	if !ok {
		// Not (or no longer) a completed claim of the pod: no hook can
		// reach it, so nothing else detaches it; use what the caller has.
		cur = d
	}
	if !cur.VFIO && cur.NetnsPath == "" && fromKernel(cur) {
		return p.restoreUnlocated(ctx, cur)
	}
	if cur.VFIO || cur.NetnsPath == "" {
		klog.FromContext(ctx).V(3).Info("Device already back on the host", "device", d.Device, "claimUID", d.ClaimUID, "netns", d.NetnsPath)
		return nil
	}
	return p.detachDevice(ctx, cur)
}

// restoreUnlocated is the detach of a device whose attach state is
// derived from the kernel when no netns is known for it (after a restart,
// no sandbox of the pod had it): the marker goes, and the device is put
// back as recorded at Prepare when it is on the host changed (the kernel
// returns a physical netdev from a netns that is gone under its pod
// name). A device on the host as recorded is left as it is; one found
// nowhere is logged: with no sandbox left to look in, there is nothing
// more to do for it. Caller holds the pod's lock.
func (p *Plugin) restoreUnlocated(ctx context.Context, d PodDevice) error {
	if err := p.removeMarker(d); err != nil {
		return err
	}
	orig := *d.Original
	orig.Identity = identity(d)
	err := p.host.Detach(ctx, "", d.Spec.PodIfName, orig)
	if errors.Is(err, netattach.ErrDeviceGone) {
		klog.FromContext(ctx).Info("Device not on the host and in no known netns: nothing to restore", "device", d.Device, "claimUID", d.ClaimUID, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: restore netdev %s on the host: %w", devRef(d), orig.IfName, err)
	}
	return nil
}

// recorded returns d's current record among its pod's devices. Caller
// holds the pod's lock.
func (p *Plugin) recorded(d PodDevice) (PodDevice, bool) {
	for _, c := range p.devs.ForPod(d.PodUID) {
		if c.ClaimUID == d.ClaimUID && c.Device == d.Device {
			return c, true
		}
	}
	return PodDevice{}, false
}

// detachDevice is the one detach of a device. Every caller holds the
// pod's lock and passes the record as read under it.
func (p *Plugin) detachDevice(ctx context.Context, d PodDevice) error {
	if d.VFIO || d.NetnsPath == "" {
		return nil
	}
	// The marker goes first: no container of the pod may be created from
	// now on (the runtime fails those that bind-mount it).
	if err := p.removeMarker(d); err != nil {
		return err
	}
	if d.Original == nil {
		return fmt.Errorf("%s: recorded in netns %s without its original host name: cannot restore it", devRef(d), d.NetnsPath)
	}
	// RDMA may have moved even when the record says not (a crash between
	// the move and Attached): returning an RDMA device that is on the host
	// already is a no-op.
	nsPath := p.reachNetns(ctx, d.NetnsPath)
	if d.RDMAIsolation && d.RDMADevice != "" {
		if err := p.host.ReturnRDMA(ctx, d.RDMADevice, nsPath); err != nil {
			return fmt.Errorf("%s: return RDMA device %s from netns %s: %w", devRef(d), d.RDMADevice, d.NetnsPath, err)
		}
	}
	orig := *d.Original
	orig.Identity = identity(d)
	if err := p.host.Detach(ctx, nsPath, d.Spec.PodIfName, orig); err != nil {
		return fmt.Errorf("%s: return netdev %s from netns %s to the host as %s: %w", devRef(d), d.Spec.PodIfName, d.NetnsPath, d.Original.IfName, err)
	}
	faults.Point(faults.DetachMoved)
	if err := p.devs.Detached(d.ClaimUID, d.Device); err != nil {
		return fmt.Errorf("%s: record detach: %w", devRef(d), err)
	}
	faults.Point(faults.DetachCompleted)
	p.releaseNetns(ctx, d.PodUID, d.NetnsPath)
	klog.FromContext(ctx).V(3).Info("Detached", "device", d.Device, "claimUID", d.ClaimUID, "netns", d.NetnsPath, "hostIfName", d.Original.IfName)
	return nil
}

// removeMarker removes the device's "attached" marker (see markAttached).
func (p *Plugin) removeMarker(d PodDevice) error {
	if p.marks == nil {
		return nil
	}
	if err := p.marks.Remove(d.ClaimUID, d.Device); err != nil {
		return fmt.Errorf("%s: %w", devRef(d), err)
	}
	return nil
}
