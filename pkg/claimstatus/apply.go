package claimstatus

// This file is the worker side: it takes claims off the queue, builds the
// server-side apply of their status entries and applies it, retrying
// failures and dropping claims that are gone.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	resourceac "k8s.io/client-go/applyconfigurations/resource/v1"
	"k8s.io/klog/v2"
)

// Run applies queued status with the given number of workers until ctx is
// done.
func (w *Writer) Run(ctx context.Context, workers int) {
	if workers < 1 {
		workers = 1
	}
	logger := klog.FromContext(ctx)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	w.queue.ShutDown()
	wg.Wait()
	logger.V(2).Info("Claim status writer stopped", "pending", w.Pending())
}

func (w *Writer) processNext(ctx context.Context) bool {
	uid, shutdown := w.queue.Get()
	if shutdown {
		return false
	}
	defer w.queue.Done(uid)
	logger := klog.FromContext(ctx)

	w.mu.Lock()
	st := w.state[uid]
	var (
		ref ClaimRef
		ac  *resourceac.ResourceClaimApplyConfiguration
		gen uint64
	)
	if st != nil {
		ref, gen = st.ref, st.gen
		ac = w.applyConfig(st)
	}
	w.mu.Unlock()
	if st == nil {
		w.queue.Forget(uid)
		return true
	}

	err := w.apply(ctx, ref, ac)
	switch {
	case err == nil:
		w.queue.Forget(uid)
		w.done(uid, gen, false)
		logger.V(3).Info("Applied claim status", "claim", klog.KRef(ref.Namespace, ref.Name), "uid", ref.UID,
			"devices", len(ac.Status.Devices))
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err) && isUIDMismatch(err):
		// Gone, or a new claim under the old name: nothing to write.
		w.queue.Forget(uid)
		w.done(uid, gen, true)
		logger.V(2).Info("Claim gone; dropping its status", "claim", klog.KRef(ref.Namespace, ref.Name), "uid", ref.UID, "reason", err.Error())
	default:
		logger.Error(err, "Apply claim status failed; will retry", "claim", klog.KRef(ref.Namespace, ref.Name), "uid", ref.UID,
			"retries", w.queue.NumRequeues(uid))
		w.queue.AddRateLimited(uid)
	}
	return true
}

// done forgets an applied state unless it changed meanwhile. An applied
// non-empty state is kept (until Clear) so SetDevice can add to it and
// transition times survive; an applied Clear, or any state of a claim that
// is gone (gone), is dropped.
func (w *Writer) done(uid types.UID, gen uint64, gone bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.state[uid]
	if st == nil || st.gen != gen {
		return
	}
	st.applied = gen
	if gone || len(st.devices) == 0 {
		delete(w.state, uid)
	}
}

func (w *Writer) apply(ctx context.Context, ref ClaimRef, ac *resourceac.ResourceClaimApplyConfiguration) error {
	_, err := w.client.ResourceV1().ResourceClaims(ref.Namespace).ApplyStatus(ctx, ac,
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply status of claim %s: %w", ref, err)
	}
	return nil
}

// applyConfig builds the apply request; w.mu is held.
func (w *Writer) applyConfig(st *desired) *resourceac.ResourceClaimApplyConfiguration {
	names := make([]string, 0, len(st.devices))
	for n := range st.devices {
		names = append(names, n)
	}
	sort.Strings(names)
	status := resourceac.ResourceClaimStatus()
	for _, n := range names {
		status.WithDevices(w.deviceConfig(st.devices[n], st.since[n]))
	}
	// With no devices the request is "status: {}": the API server then
	// removes every entry this field manager owned.
	return resourceac.ResourceClaim(st.ref.Name, st.ref.Namespace).WithUID(st.ref.UID).WithStatus(status)
}

func (w *Writer) deviceConfig(d DeviceStatus, since metav1.Time) *resourceac.AllocatedDeviceStatusApplyConfiguration {
	cond := metav1ac.Condition().WithType(ConditionReady).WithLastTransitionTime(since).WithMessage(d.Message)
	if d.Ready {
		cond.WithStatus(metav1.ConditionTrue).WithReason(orDefault(d.Reason, "Configured"))
	} else {
		cond.WithStatus(metav1.ConditionFalse).WithReason(orDefault(d.Reason, "NotConfigured"))
	}
	ds := resourceac.AllocatedDeviceStatus().WithDriver(w.driver).WithPool(d.Pool).WithDevice(d.Device).WithConditions(cond)
	if d.InterfaceName != "" || len(d.IPs) > 0 || d.HardwareAddress != "" {
		nd := resourceac.NetworkDeviceData()
		if d.InterfaceName != "" {
			nd.WithInterfaceName(d.InterfaceName)
		}
		if len(d.IPs) > 0 {
			nd.WithIPs(d.IPs...)
		}
		if d.HardwareAddress != "" {
			nd.WithHardwareAddress(d.HardwareAddress)
		}
		ds.WithNetworkData(nd)
	}
	if len(d.Data) > 0 {
		ds.WithData(runtime.RawExtension{Raw: d.Data})
	}
	return ds
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// isUIDMismatch tells a failed UID precondition (the claim was recreated
// under the same name) from other conflicts.
func isUIDMismatch(err error) bool {
	return strings.Contains(err.Error(), "Precondition failed: UID")
}
