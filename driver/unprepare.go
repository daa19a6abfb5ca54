package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/internal/faults"
	"github.com/sriov-dra/sriov-dra/pkg/kubeletserver"
)

// UnprepareResourceClaims implements kubeletserver.Plugin. It works
// from the checkpoint alone; an unknown claim is already unprepared.
func (d *Driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletserver.NamespacedObject) (map[types.UID]error, error) {
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
	u := newUndoRun(d, rec, restoreHost)

	// 1. The devices out of the pod.
	u.removeAttachMarkers()
	if restoreHost && len(u.errs) == 0 {
		u.returnNetdevs(ctx)
	}
	if len(u.errs) > 0 {
		// Nothing else may change while a netdev is still in a pod.
		return u.err()
	}

	// 2. Addresses.
	u.releaseAddresses(ctx)
	faults.Point(faults.UnprepareIPAMReleased)

	// 3. The device itself, from its snapshot.
	if restoreHost {
		u.restoreDevices(ctx)
	}
	faults.Point(faults.UnprepareHostRestored)

	// 4. The CDI spec and the status entries.
	u.removeClaimOutputs(ctx)
	if len(u.errs) > 0 {
		return u.err()
	}
	faults.Point(faults.UnprepareCDIRemoved)

	// 5. Forget the claim.
	if err := d.state.Delete(rec.UID); err != nil {
		return err
	}
	faults.Point(faults.UnprepareForgotten)
	return nil
}

// undoRun is one run of undo over a record: its devices in reverse
// allocation order and the steps that failed so far.
type undoRun struct {
	d           *Driver
	rec         *ClaimRecord
	restoreHost bool
	devs        []*DeviceRecord
	errs        []error
}

func newUndoRun(d *Driver, rec *ClaimRecord, restoreHost bool) *undoRun {
	devs := slices.Clone(rec.Devices)
	slices.Reverse(devs)
	return &undoRun{d: d, rec: rec, restoreHost: restoreHost, devs: devs}
}

// fail records a failed step of a device, or of the claim (dr nil).
func (u *undoRun) fail(dr *DeviceRecord, step string, err error) {
	se := &stepError{rec: u.rec, step: step, err: err}
	if dr != nil {
		se.request, se.device = dr.Request, dr.Device
	}
	u.errs = append(u.errs, se)
}

func (u *undoRun) err() error { return errors.Join(u.errs...) }

// inPod reports whether the device may be in a pod netns. A device whose
// attach state is derived from the kernel may be in a pod (or back on the
// host changed) whatever the record says: the NRI plugin looks for it.
// The netns of a stale record (an earlier boot's) are gone.
func (u *undoRun) inPod(dr *DeviceRecord) bool {
	return u.restoreHost && (dr.Pod.NetnsPath != "" || (dr.Pod.AttachStateFromKernel && dr.Pod.Original != nil))
}

// lost reports whether the device was released as lost (lost.go: gone
// for LostDeviceTimeout): the rest of the claim is undone without it.
func (u *undoRun) lost(dr *DeviceRecord) bool {
	l, ok := u.d.state.Lost(dr.Device)
	return ok && l.ClaimUID == u.rec.UID
}

// removeAttachMarkers removes the "attached" markers first (no container
// of the pod may start from now on). Only the markers of devices in no
// netns are removed here (all of them for a stale record); those of
// devices in a pod go with their detach (returnNetdevs).
func (u *undoRun) removeAttachMarkers() {
	m := u.d.cfg.AttachMarks
	if m == nil {
		return
	}
	for _, dr := range u.devs {
		if dr.Pod.VFIO || u.inPod(dr) {
			continue
		}
		if err := m.Remove(u.rec.UID, dr.Device); err != nil {
			u.fail(dr, "remove attach marker", err)
		}
	}
}

// returnNetdevs brings back the netdevs the runtime never returned from
// the pod. A netdev recorded in a pod netns has one owner for its
// detach, the NRI plugin (the Detacher): under the pod's lock it removes
// the marker, returns the netdev and records Detached, or does nothing
// when a teardown of the pod got there first.
func (u *undoRun) returnNetdevs(ctx context.Context) {
	logger := klog.FromContext(ctx)
	for _, dr := range u.devs {
		if dr.Pod.VFIO || !u.inPod(dr) || u.lost(dr) {
			continue
		}
		logger.Info("Returning netdev the runtime did not detach", "device", dr.Device, "netns", dr.Pod.NetnsPath)
		if u.d.cfg.Detacher == nil {
			u.fail(dr, "detach from pod netns", errors.New("no NRI plugin to detach the device with"))
			continue
		}
		if err := u.d.cfg.Detacher.DetachDevice(ctx, dr.podDevice(u.rec)); err != nil {
			if err := u.d.detachFailed(ctx, u.rec, dr, err); err != nil {
				u.fail(dr, "detach from pod netns", err)
			}
		}
	}
}

// releaseAddresses releases the devices' IPAM allocations.
func (u *undoRun) releaseAddresses(ctx context.Context) {
	for _, dr := range u.devs {
		if dr.IPAM == nil {
			continue
		}
		if err := u.d.cfg.IPAM.Release(ctx, dr.IPAM); err != nil {
			u.fail(dr, "release IPAM allocation", err)
		}
	}
}

// restoreDevices puts every device back as its snapshot has it, in the
// reverse order of apply: IRQ affinities, driver, GUID, VF settings.
func (u *undoRun) restoreDevices(ctx context.Context) {
	kernel := u.d.cfg.Kernel
	for _, dr := range u.devs {
		if u.lost(dr) {
			continue // nothing of it is left to restore
		}
		snap := &dr.Snapshot
		if dr.Pod.IRQAffinity && len(snap.IRQAffinity) > 0 {
			if err := kernel.RestoreIRQs(ctx, snap); err != nil {
				u.fail(dr, "restore IRQ affinity", err)
			}
		}
		if dr.Steps.VFIO {
			if err := kernel.RestoreDriver(ctx, snap); err != nil {
				u.fail(dr, fmt.Sprintf("restore driver %q", snap.Driver), err)
				continue
			}
		}
		if dr.Steps.GUID {
			if err := kernel.RestoreGUID(ctx, snap); err != nil {
				u.fail(dr, "restore GUID", err)
			}
		}
		if dr.Steps.VFSettings {
			if err := kernel.RestoreVF(ctx, snap, dr.Settings); err != nil {
				u.fail(dr, "restore VF settings", err)
			}
		}
	}
}

// removeClaimOutputs removes what Prepare gave out for the claim as a
// whole: the CDI spec and the claim's status entries.
func (u *undoRun) removeClaimOutputs(ctx context.Context) {
	if u.rec.Steps.CDI {
		if err := u.d.cfg.CDI.Remove(ctx, u.rec.UID); err != nil {
			u.fail(nil, "remove CDI spec", err)
		}
	}
	if u.rec.Phase == PhasePrepareCompleted {
		if err := u.d.cfg.Status.Clear(claimRef(u.rec)); err != nil {
			u.fail(nil, "clear status", err)
		}
	}
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
