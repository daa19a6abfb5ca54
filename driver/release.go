package driver

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// Records of an earlier boot, the admin's drop requests and orphaned
// files: what the daemon tidies at start and in the background. None of
// it may stop the daemon: one claim whose release keeps failing must not
// take every other claim of the node down with it.

// defaultReleaseBackoff paces the retries of a failing stale release:
// 5 s, doubling, at most every 5 minutes from then on (with 10% jitter),
// for as long as it fails. A permanent failure (an IPAM plugin that was
// removed) is fixed by the admin (reinstall it, or drop the record with
// `sriov-dra checkpoint drop`), and the next retry then finishes.
var defaultReleaseBackoff = wait.Backoff{Duration: 5 * time.Second, Factor: 2, Jitter: 0.1, Steps: 100, Cap: 5 * time.Minute}

const (
	// defaultReleaseTimeout bounds one release attempt in the background.
	defaultReleaseTimeout = time.Minute
	// startReleaseTimeout bounds the first attempt, made before the
	// daemon registers with kubelet: a hanging IPAM plugin must not keep
	// the daemon from starting (or its probes from passing).
	startReleaseTimeout = 10 * time.Second
	defaultDropPoll     = 2 * time.Second
)

// releaseStale takes over the records of an earlier boot: it marks them
// stale together with the new boot ID (one durable change), then releases
// each on its own. A release that fails leaves its record pending (see
// StaleRelease) for the background retry; only a checkpoint that cannot
// be written is an error.
func (d *Driver) releaseStale(ctx context.Context) error {
	old := d.state.BootID()
	if old != d.cfg.BootID {
		if err := d.state.markStale(old, d.cfg.BootID); err != nil {
			return err
		}
	}
	d.releasePending(ctx, min(startReleaseTimeout, d.releaseTimeout()))
	return nil
}

func (d *Driver) releaseTimeout() time.Duration {
	if d.cfg.ReleaseTimeout > 0 {
		return d.cfg.ReleaseTimeout
	}
	return defaultReleaseTimeout
}

// releasePending tries the release of every stale record once, claims in
// parallel, each bounded by timeout, and returns how many are still
// pending.
func (d *Driver) releasePending(ctx context.Context, timeout time.Duration) int {
	var uids []string
	for _, rec := range d.state.Claims() {
		if rec.Stale != nil {
			uids = append(uids, rec.UID)
		}
	}
	if len(uids) > 0 {
		inParallel(len(uids), func(i int) { d.releaseOne(ctx, uids[i], timeout) })
	}
	d.updateStaleMetric()
	return d.state.staleCount()
}

// releaseOne releases one stale record under the claim's lock (kubelet
// may call Prepare or Unprepare for it at the same time).
func (d *Driver) releaseOne(ctx context.Context, uid string, timeout time.Duration) {
	defer d.lockClaim(uid)()
	rec, ok := d.state.Claim(uid)
	if !ok || rec.Stale == nil {
		return // released or dropped meanwhile
	}
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "claim", klog.KRef(rec.Namespace, rec.Name), "claimUID", rec.UID)
	ctx = klog.NewContext(ctx, logger)
	logger.Info("Releasing claim prepared before the node rebooted", "bootID", rec.Stale.BootID, "attempt", rec.Stale.Attempts+1)
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := d.undo(actx, rec, false); err != nil {
		d.staleReleaseFailed(ctx, rec, err)
		return
	}
	logger.Info("Released claim prepared before the node rebooted")
	d.TriggerRescan()
}

// staleReleaseFailed logs each failed step of a stale release (claim,
// device, step), counts it and records the failure in the record.
func (d *Driver) staleReleaseFailed(ctx context.Context, rec *ClaimRecord, err error) {
	logger := klog.FromContext(ctx)
	steps := stepErrors(err)
	for _, se := range steps {
		logger.Error(se.err, "Release of a claim prepared before the node rebooted failed; keeping its record pending and retrying in the background",
			"claim", klog.KRef(rec.Namespace, rec.Name), "claimUID", rec.UID, "device", se.device, "step", se.step, "bootID", rec.Stale.BootID)
		d.countStaleFailure(se.step)
	}
	if len(steps) == 0 {
		logger.Error(err, "Release of a claim prepared before the node rebooted failed; keeping its record pending and retrying in the background",
			"claim", klog.KRef(rec.Namespace, rec.Name), "claimUID", rec.UID, "step", "checkpoint", "bootID", rec.Stale.BootID)
		d.countStaleFailure("checkpoint")
	}
	if serr := d.state.staleFailed(rec.UID, err); serr != nil {
		logger.Error(serr, "Cannot record the failed release")
	}
	d.updateStaleMetric()
}

// retryStaleReleases retries the pending releases with backoff until none
// is left or ctx ends.
func (d *Driver) retryStaleReleases(ctx context.Context) {
	if d.state.staleCount() == 0 {
		return
	}
	b := d.cfg.ReleaseBackoff
	if b.Duration <= 0 {
		b = defaultReleaseBackoff
	}
	_ = b.DelayFunc().Until(ctx, false, true, func(ctx context.Context) (bool, error) {
		return d.releasePending(ctx, d.releaseTimeout()) == 0, nil
	})
}

// applyDropRequests drops the records the admin asked to forget
// (`sriov-dra checkpoint drop`). Nothing is undone: the admin was shown
// what stays behind. The claim's lock keeps it from racing a kubelet call
// or a release of the same claim.
func (d *Driver) applyDropRequests(ctx context.Context) {
	src, ok := d.state.store.(dropRequester)
	if !ok {
		return
	}
	logger := klog.FromContext(ctx)
	reqs, err := src.DropRequests()
	if err != nil {
		logger.V(2).Info("Cannot read drop requests from the checkpoint", "err", err)
		return
	}
	if len(reqs) == 0 {
		return
	}
	for _, r := range reqs {
		d.dropOne(ctx, r)
	}
	// Requests whose claim was already gone are cleared by a save.
	if err := d.state.save(); err != nil {
		logger.Error(err, "Cannot clear the served drop requests from the checkpoint")
	}
	d.updateStaleMetric()
	d.updateDeviceMetrics()
	d.TriggerRescan()
}

func (d *Driver) dropOne(ctx context.Context, r DropRequest) {
	logger := klog.FromContext(ctx)
	defer d.lockClaim(r.ClaimUID)()
	rec, ok := d.state.Claim(r.ClaimUID)
	if !ok {
		return
	}
	var devices []string
	for _, dr := range rec.Devices {
		devices = append(devices, dr.Device)
	}
	if err := d.state.Delete(r.ClaimUID); err != nil {
		logger.Error(err, "Cannot drop a claim record at the admin's request; will retry", "claimUID", r.ClaimUID)
		return
	}
	logger.Info("Dropped a claim's record at the admin's request (sriov-dra checkpoint drop); nothing was undone, its devices are offered again",
		"claim", klog.KRef(rec.Namespace, rec.Name), "claimUID", rec.UID, "devices", devices, "stale", rec.Stale != nil, "requestedBy", r.By, "requestedAt", r.At)
}

// collectOrphans removes CDI specs and attach markers this driver wrote
// that no record refers to: left when a checkpoint was moved aside (the
// recovery for a corrupt one) or a record was dropped. Only files the
// writers recognize as their own are considered; nothing else in their
// dirs is touched. Failures are logged: an orphan is harmless enough
// not to stop the daemon.
func (d *Driver) collectOrphans(ctx context.Context) {
	logger := klog.FromContext(ctx)
	claims := map[string]bool{}
	devices := map[string]bool{}
	for _, rec := range d.state.Claims() {
		claims[rec.UID] = true
		for _, dr := range rec.Devices {
			devices[rec.UID+"/"+dr.Device] = true
		}
	}
	uids, err := d.cfg.CDI.Claims()
	if err != nil {
		logger.Error(err, "Cannot look for orphaned CDI specs; leaving them")
	}
	for _, uid := range uids {
		if claims[uid] {
			continue
		}
		if err := d.cfg.CDI.Remove(ctx, uid); err != nil {
			logger.Error(err, "Cannot remove an orphaned CDI spec", "path", d.cfg.CDI.SpecPath(uid))
			continue
		}
		logger.Info("Removed a CDI spec no claim record refers to", "path", d.cfg.CDI.SpecPath(uid), "claimUID", uid)
	}
	m := d.cfg.AttachMarks
	if m == nil {
		return
	}
	marks, err := m.List()
	if err != nil {
		logger.Error(err, "Cannot look for orphaned attach markers; leaving them")
		return
	}
	for _, mk := range marks {
		if devices[mk.ClaimUID+"/"+mk.Device] {
			continue
		}
		if err := m.Remove(mk.ClaimUID, mk.Device); err != nil {
			logger.Error(err, "Cannot remove an orphaned attach marker", "path", mk.Path)
			continue
		}
		logger.Info("Removed an attach marker no claim record refers to", "path", mk.Path, "claimUID", mk.ClaimUID, "device", mk.Device)
	}
}

// updateStaleMetric sets the pending releases gauge.
func (d *Driver) updateStaleMetric() {
	if m := d.cfg.Metrics; m != nil {
		m.staleReleasesPending.Set(float64(d.state.staleCount()))
	}
}

func (d *Driver) countStaleFailure(step string) {
	if m := d.cfg.Metrics; m != nil {
		m.staleReleaseFailures.WithLabelValues(step).Inc()
	}
}
