package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/internal/faults"
)

// UnprepareResourceClaims implements kubeletplugin.DRAPlugin. It works
// from the checkpoint alone; an unknown claim is already unprepared.
func (d *Driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	errs := make([]error, len(claims))
	inParallel(len(claims), func(i int) {
		c := claims[i]
		start := time.Now()
		logger := klog.LoggerWithValues(klog.FromContext(ctx), "claim", c.NamespacedName, "claimUID", c.UID)
		cctx := klog.NewContext(ctx, logger)
		defer d.lockClaim(string(c.UID))()
		rec, ok := d.state.Claim(string(c.UID))
		if !ok {
			logger.V(3).Info("Claim is not prepared on this node; nothing to undo")
			return
		}
		// A stale record (an earlier boot's) is only released: its
		// devices came up fresh and must not get its snapshot back.
		err := d.undo(cctx, rec, rec.Stale == nil)
		d.observe(false, start, err)
		if err != nil && rec.Stale != nil {
			d.staleReleaseFailed(cctx, rec, err)
		}
		if err != nil {
			logger.Error(err, "Unprepare failed; kubelet retries")
		} else {
			logger.V(2).Info("Unprepared", "duration", time.Since(start))
		}
		errs[i] = err
	})
	out := make(map[types.UID]error, len(claims))
	for i, c := range claims {
		out[c.UID] = errs[i]
	}
	d.updateDeviceMetrics()
	d.updateStaleMetric()
	return out, nil
}

// undo reverses everything rec records, in the reverse order of Prepare,
// and drops the record when all of it succeeded. Every step is idempotent,
// so a failed undo is simply run again (by kubelet's retry of Unprepare
// or the next Prepare of the claim).
//
// With restoreHost false (the node rebooted since the record was made)
// only what outlives a reboot is released: IPAM allocations, the CDI spec
// and the claim's status entries. The devices already came up fresh.
func (d *Driver) undo(ctx context.Context, rec *ClaimRecord, restoreHost bool) error {
	logger := klog.FromContext(ctx)
	host := d.cfg.Kernel
	var errs []error
	fail := func(dr *DeviceRecord, step string, err error) {
		errs = append(errs, &stepError{rec: rec, request: dr.Request, device: dr.Device, step: step, err: err})
	}
	devs := slices.Clone(rec.Devices)
	slices.Reverse(devs)

	// 1. The "attached" markers first (no container of the pod may start
	// from now on), then the netdev back from the pod, if the runtime
	// never returned it. A netdev recorded in a pod netns has one owner
	// for its detach, the NRI plugin (the Detacher):
	// under the pod's lock it removes the marker, returns the netdev and
	// records Detached, or does nothing when a teardown of the pod got
	// there first. Here only the markers of devices in no netns are
	// removed (all of them for a stale record, whose netns are gone).
	// A device whose attach state is derived from the kernel may be in
	// a pod (or back on the host changed) whatever the record says: the
	// plugin looks for it.
	inPod := func(dr *DeviceRecord) bool {
		return restoreHost && (dr.Pod.NetnsPath != "" || (dr.Pod.AttachStateFromKernel && dr.Pod.Original != nil))
	}
	if m := d.cfg.AttachMarks; m != nil {
		for _, dr := range devs {
			if dr.Pod.VFIO || inPod(dr) {
				continue
			}
			if err := m.Remove(rec.UID, dr.Device); err != nil {
				fail(dr, "remove attach marker", err)
			}
		}
	}
	// A device gone for LostDeviceTimeout is released as lost (lost.go):
	// the rest of the claim is undone without it.
	lost := func(dr *DeviceRecord) bool {
		l, ok := d.state.Lost(dr.Device)
		return ok && l.ClaimUID == rec.UID
	}
	if restoreHost && len(errs) == 0 {
		for _, dr := range devs {
			if dr.Pod.VFIO || !inPod(dr) || lost(dr) {
				continue
			}
			logger.Info("Returning netdev the runtime did not detach", "device", dr.Device, "netns", dr.Pod.NetnsPath)
			if d.cfg.Detacher == nil {
				fail(dr, "detach from pod netns", errors.New("no NRI plugin to detach the device with"))
				continue
			}
			if err := d.cfg.Detacher.DetachDevice(ctx, dr.podDevice(rec)); err != nil {
				if err := d.detachFailed(ctx, rec, dr, err); err != nil {
					fail(dr, "detach from pod netns", err)
				}
			}
		}
	}
	if len(errs) > 0 {
		// Nothing else may change while a netdev is still in a pod.
		return errors.Join(errs...)
	}

	// 2. Addresses.
	for _, dr := range devs {
		if dr.IPAM == nil {
			continue
		}
		if err := d.cfg.IPAM.Release(ctx, dr.IPAM); err != nil {
			fail(dr, "release IPAM allocation", err)
		}
	}
	faults.Point(faults.UnprepareIPAMReleased)

	// 3. The device itself, from its snapshot.
	if restoreHost {
		for _, dr := range devs {
			if lost(dr) {
				continue // nothing of it is left to restore
			}
			snap := &dr.Snapshot
			if dr.Pod.IRQAffinity && len(snap.IRQAffinity) > 0 {
				if err := host.RestoreIRQs(ctx, snap); err != nil {
					fail(dr, "restore IRQ affinity", err)
				}
			}
			if dr.Steps.VFIO {
				if err := host.RestoreDriver(ctx, snap); err != nil {
					fail(dr, fmt.Sprintf("restore driver %q", snap.Driver), err)
					continue
				}
			}
			if dr.Steps.GUID {
				if err := host.RestoreGUID(ctx, snap); err != nil {
					fail(dr, "restore GUID", err)
				}
			}
			if dr.Steps.VFSettings {
				if err := host.RestoreVF(ctx, snap, dr.Settings); err != nil {
					fail(dr, "restore VF settings", err)
				}
			}
		}
	}

	faults.Point(faults.UnprepareHostRestored)

	// 4. The CDI spec and the status entries.
	if rec.Steps.CDI {
		if err := d.cfg.CDI.Remove(ctx, rec.UID); err != nil {
			errs = append(errs, &stepError{rec: rec, step: "remove CDI spec", err: err})
		}
	}
	if rec.Phase == PhasePrepareCompleted {
		if err := d.cfg.Status.Clear(claimRef(rec)); err != nil {
			errs = append(errs, &stepError{rec: rec, step: "clear status", err: err})
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	faults.Point(faults.UnprepareCDIRemoved)
	// 5. Forget the claim.
	if err := d.state.Delete(rec.UID); err != nil {
		return err
	}
	faults.Point(faults.UnprepareForgotten)
	return nil
}

// stepError is one failed step of undo: which claim, device (none for a
// claim-wide step) and step.
type stepError struct {
	rec             *ClaimRecord
	request, device string
	step            string
	err             error
}

func (e *stepError) Error() string {
	if e.device == "" {
		return fmt.Sprintf("claim %s/%s (%s): %s: %v", e.rec.Namespace, e.rec.Name, e.rec.UID, e.step, e.err)
	}
	return fmt.Sprintf("claim %s/%s (%s) request %q device %s: %s: %v", e.rec.Namespace, e.rec.Name, e.rec.UID, e.request, e.device, e.step, e.err)
}

func (e *stepError) Unwrap() error { return e.err }

// stepErrors lists the failed steps in err (an undo error).
func stepErrors(err error) []*stepError {
	var out []*stepError
	var walk func(error)
	walk = func(err error) {
		var se *stepError
		switch x := err.(type) { //nolint:errorlint // walks the tree of joined errors itself, errors.As takes only the first match
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		default:
			if errors.As(err, &se) {
				out = append(out, se)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}
