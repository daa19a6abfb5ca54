package driver

// This file is Prepare's entry point: kubelet's call, one claim at a
// time in named steps (plan.go plans, apply.go applies, undo rolls back),
// and the started record that comes before the first change.

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/internal/faults"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/kubeletserver"
)

// PrepareResourceClaims implements kubeletserver.Plugin. Each claim is
// prepared on its own: one claim's failure does not fail the others.
func (d *Driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletserver.PrepareResult, error) {
	results := make([]kubeletserver.PrepareResult, len(claims))
	inParallel(len(claims), func(i int) {
		claim := claims[i]
		start := time.Now()
		logger := klog.LoggerWithValues(klog.FromContext(ctx), "claim", klog.KObj(claim), "claimUID", claim.UID)
		cctx := klog.NewContext(ctx, logger)
		devs, err := d.prepareClaim(cctx, claim)
		d.observe(true, start, err)
		if err != nil {
			logger.Error(err, "Prepare failed")
			d.warn(claim, "PrepareFailed", "Prepare", err)
			results[i] = kubeletserver.PrepareResult{Err: err}
			return
		}
		logger.V(2).Info("Prepared", "devices", len(devs), "duration", time.Since(start))
		results[i] = kubeletserver.PrepareResult{Devices: devs}
	})
	out := make(map[types.UID]kubeletserver.PrepareResult, len(claims))
	for i, c := range claims {
		out[c.UID] = results[i]
	}
	d.updateDeviceMetrics()
	return out, nil
}

func (d *Driver) observe(prepare bool, start time.Time, err error) {
	m := d.cfg.Metrics
	if m == nil {
		return
	}
	result := "success"
	if err != nil {
		result = "error"
	}
	if prepare {
		m.prepares.WithLabelValues(result).Inc()
		m.prepareDur.Observe(time.Since(start).Seconds())
	} else {
		m.unprepares.WithLabelValues(result).Inc()
		m.unprepareDur.Observe(time.Since(start).Seconds())
	}
}

// warn posts a Warning event on the claim.
func (d *Driver) warn(claim *resourceapi.ResourceClaim, reason, action string, err error) {
	if d.cfg.Events == nil {
		return
	}
	msg := err.Error()
	if len(msg) > 1000 {
		msg = msg[:1000] + "..."
	}
	d.cfg.Events.Eventf(claim, nil, corev1.EventTypeWarning, reason, action, "%s", msg)
}

// deviceError names the claim, request and device (and the config field,
// when one is to blame) of a Prepare failure.
func deviceError(claim *resourceapi.ResourceClaim, request, device, configField string, err error) error {
	where := fmt.Sprintf("claim %s/%s request %q device %s", claim.Namespace, claim.Name, request, device)
	if configField != "" {
		where += " config field " + configField
	}
	return fmt.Errorf("%s: %w", where, err)
}

// prepareClaim prepares one claim and returns its CDI devices, in named
// steps: release a record from before the node rebooted, return the
// recorded answer of a completed claim or roll back an unfinished
// attempt, then plan and start (reserve, snapshot, record started), apply
// the recorded steps, and on a failure roll back what this attempt
// reached.
func (d *Driver) prepareClaim(ctx context.Context, claim *resourceapi.ResourceClaim) ([]kubeletserver.Device, error) {
	defer d.lockClaim(string(claim.UID))()
	if err := d.releaseStaleRecord(ctx, claim); err != nil {
		return nil, err
	}
	if out, done, err := d.resumeEarlierAttempt(ctx, claim); done || err != nil {
		return out, err
	}
	rec, devs, err := d.start(ctx, claim)
	if err != nil || rec == nil {
		return []kubeletserver.Device{}, err
	}
	prog := &progress{steps: make([]DeviceSteps, len(rec.Devices)), nodes: map[string]deviceNodes{}}
	if err := d.apply(ctx, claim, rec, devs, prog); err != nil {
		return nil, d.rollBackAttempt(ctx, rec, prog, err)
	}
	out := resultOf(rec)
	d.withMetadata(ctx, rec, out, prog.nodes)
	return out, nil
}

// releaseStaleRecord releases the claim's record from before the node
// rebooted, if there is one: the same claim was prepared before the
// reboot (its pod survived it), and its old IPAM allocation uses the same
// container ID, so it must go before a new one is made.
func (d *Driver) releaseStaleRecord(ctx context.Context, claim *resourceapi.ResourceClaim) error {
	rec, ok := d.state.Claim(string(claim.UID))
	if !ok || rec.Stale == nil {
		return nil
	}
	klog.FromContext(ctx).Info("Releasing the claim's record from before the node rebooted before preparing it again", "bootID", rec.Stale.BootID)
	if err := d.undo(ctx, rec, false); err != nil {
		d.staleReleaseFailed(ctx, rec, err)
		return fmt.Errorf("claim %s/%s: release its record from before the node rebooted (boot %s) first: %w", claim.Namespace, claim.Name, rec.Stale.BootID, err)
	}
	d.updateStaleMetric()
	return nil
}

// resumeEarlierAttempt handles a record an earlier Prepare of the claim
// left: a completed one is the answer (done), an unfinished one (the
// attempt died half-way) is undone so the claim starts over from a clean
// device.
func (d *Driver) resumeEarlierAttempt(ctx context.Context, claim *resourceapi.ResourceClaim) (out []kubeletserver.Device, done bool, err error) {
	logger := klog.FromContext(ctx)
	rec, ok := d.state.Claim(string(claim.UID))
	if !ok {
		return nil, false, nil
	}
	if rec.Phase == PhasePrepareCompleted {
		logger.V(3).Info("Claim already prepared; returning the recorded devices")
		out := resultOf(rec)
		d.withMetadata(ctx, rec, out, nil)
		return out, true, nil
	}
	logger.Info("Rolling back an earlier unfinished prepare of the claim")
	if err := d.undo(ctx, rec, true); err != nil {
		return nil, false, fmt.Errorf("claim %s/%s: roll back earlier unfinished prepare: %w", claim.Namespace, claim.Name, err)
	}
	// The rollback changed the devices (a VF back from vfio-pci on its
	// network driver, say): plan from what they are now, not from the
	// scan before it, which would skip the bind the plan needs.
	if _, err := d.scan(ctx); err != nil {
		return nil, false, fmt.Errorf("claim %s/%s: rescan after rolling back: %w", claim.Namespace, claim.Name, err)
	}
	return nil, false, nil
}

// rollBackAttempt undoes what this attempt ran (the failed step included:
// it may have half-happened) after apply failed with cause, and returns
// the error Prepare reports. The record's intents stay as they are for
// the case that undo fails too and a later Unprepare has to finish.
func (d *Driver) rollBackAttempt(ctx context.Context, rec *ClaimRecord, prog *progress, cause error) error {
	cur, ok := d.state.Claim(rec.UID)
	if !ok {
		cur = rec.clone()
	}
	for i, dr := range cur.Devices {
		ipamDone := dr.Steps.IPAM
		dr.Steps = prog.steps[i]
		dr.Steps.IPAM = ipamDone
	}
	cur.Steps.CDI = prog.cdi
	if uerr := d.undo(ctx, cur, true); uerr != nil {
		//nolint:errorlint // the Prepare error is the cause callers match; the rollback failure is told, not matched (its step errors are Unprepare's)
		return fmt.Errorf("%w; rolling back also failed (the claim stays recorded and is undone at Unprepare): %v", cause, uerr)
	}
	return cause
}

// progress is what one apply attempt ran (or tried to run).
type progress struct {
	steps []DeviceSteps
	cdi   bool
	// nodes are the device nodes the CDI spec gives each device, by
	// device name (for the device metadata).
	nodes map[string]deviceNodes
}

// start plans the claim, reserves its devices, snapshots them and records
// "prepare started". A nil record means the claim has no device of this
// driver.
func (d *Driver) start(ctx context.Context, claim *resourceapi.ResourceClaim) (*ClaimRecord, []inventory.Device, error) {
	rec, devs, err := d.reserve(ctx, claim)
	if err != nil || rec == nil {
		return nil, nil, err
	}
	// Snapshot every device before anything changes, then record
	// "prepare started" with the snapshots and the steps to come. Both
	// run outside planMu: saves of concurrent claims share fsyncs.
	for i, dr := range rec.Devices {
		snap, err := d.cfg.Kernel.Snapshot(ctx, &devs[i])
		if err == nil {
			dr.Snapshot = snap
			continue
		}
		err = deviceError(claim, dr.Request, dr.Device, "", fmt.Errorf("snapshot: %w", err))
		if derr := d.state.Delete(rec.UID); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, nil, err
	}
	if err := d.state.Put(rec); err != nil {
		if derr := d.state.Delete(rec.UID); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, nil, err
	}
	faults.Point(faults.PrepareStartedRecorded)
	return rec, devs, nil
}

// reserve plans the claim and, under planMu, takes its devices in memory
// (a record without step intents) so no other claim can take them. A nil
// record means the claim has no device of this driver.
func (d *Driver) reserve(ctx context.Context, claim *resourceapi.ResourceClaim) (*ClaimRecord, []inventory.Device, error) {
	d.planMu.Lock()
	defer d.planMu.Unlock()
	rec, devs, err := d.plan(ctx, claim)
	if err != nil {
		return nil, nil, err
	}
	if len(rec.Devices) == 0 {
		return nil, nil, nil
	}
	held := rec.clone()
	held.Steps = ClaimSteps{}
	for _, dr := range held.Devices {
		dr.Steps = DeviceSteps{}
	}
	d.state.reserve(held)
	return rec, devs, nil
}

// resultOf is the answer kubelet gets for a completed claim.
func resultOf(rec *ClaimRecord) []kubeletserver.Device {
	out := make([]kubeletserver.Device, 0, len(rec.Devices))
	for _, dr := range rec.Devices {
		out = append(out, kubeletserver.Device{
			Requests:     []string{dr.Request},
			PoolName:     dr.Pool,
			DeviceName:   dr.Device,
			CDIDeviceIDs: append([]string(nil), dr.CDIDeviceIDs...),
		})
	}
	return out
}
