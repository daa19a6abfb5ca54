package claimstatus

// This file is the worker side: it takes claims off the queue, builds the
// server-side apply of their status entries and applies it, retrying
// failures and dropping claims that are gone.

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
		ac  *applyClaim
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

func (w *Writer) apply(ctx context.Context, ref ClaimRef, ac *applyClaim) error {
	body, err := json.Marshal(ac)
	if err != nil {
		return fmt.Errorf("apply status of claim %s: encode: %w", ref, err)
	}
	force := true
	if _, err := w.client.ApplyClaimStatus(ctx, ref.Namespace, ref.Name, body,
		metav1.PatchOptions{FieldManager: FieldManager, Force: &force}); err != nil {
		return fmt.Errorf("apply status of claim %s: %w", ref, err)
	}
	return nil
}

// applyClaim is the body of a server-side apply of a claim's status:
// only the fields this driver owns, nothing empty that would claim a
// field it does not set (the typed API structs would send empty spec
// fields).
type applyClaim struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Metadata   applyMeta   `json:"metadata"`
	Status     applyStatus `json:"status"`
}

type applyMeta struct {
	Name      string    `json:"name"`
	Namespace string    `json:"namespace"`
	UID       types.UID `json:"uid,omitempty"`
}

type applyStatus struct {
	Devices []applyDevice `json:"devices,omitempty"`
}

type applyDevice struct {
	Driver      string           `json:"driver"`
	Pool        string           `json:"pool"`
	Device      string           `json:"device"`
	Conditions  []applyCondition `json:"conditions,omitempty"`
	Data        json.RawMessage  `json:"data,omitempty"`
	NetworkData *applyNetwork    `json:"networkData,omitempty"`
}

type applyCondition struct {
	Type               string                 `json:"type"`
	Status             metav1.ConditionStatus `json:"status"`
	LastTransitionTime metav1.Time            `json:"lastTransitionTime"`
	Reason             string                 `json:"reason"`
	Message            string                 `json:"message"`
}

type applyNetwork struct {
	InterfaceName   string   `json:"interfaceName,omitempty"`
	IPs             []string `json:"ips,omitempty"`
	HardwareAddress string   `json:"hardwareAddress,omitempty"`
}

// applyConfig builds the apply request; w.mu is held.
func (w *Writer) applyConfig(st *desired) *applyClaim {
	names := make([]string, 0, len(st.devices))
	for n := range st.devices {
		names = append(names, n)
	}
	sort.Strings(names)
	// With no devices the request is "status: {}": the API server then
	// removes every entry this field manager owned.
	ac := &applyClaim{
		APIVersion: resourceapi.SchemeGroupVersion.String(), Kind: "ResourceClaim",
		Metadata: applyMeta{Name: st.ref.Name, Namespace: st.ref.Namespace, UID: st.ref.UID},
	}
	for _, n := range names {
		ac.Status.Devices = append(ac.Status.Devices, w.deviceConfig(st.devices[n], st.since[n]))
	}
	return ac
}

func (w *Writer) deviceConfig(d DeviceStatus, since metav1.Time) applyDevice {
	cond := applyCondition{Type: ConditionReady, LastTransitionTime: since, Message: d.Message,
		Status: metav1.ConditionFalse, Reason: orDefault(d.Reason, "NotConfigured")}
	if d.Ready {
		cond.Status, cond.Reason = metav1.ConditionTrue, orDefault(d.Reason, "Configured")
	}
	ds := applyDevice{Driver: w.driver, Pool: d.Pool, Device: d.Device, Conditions: []applyCondition{cond}}
	if d.InterfaceName != "" || len(d.IPs) > 0 || d.HardwareAddress != "" {
		ds.NetworkData = &applyNetwork{InterfaceName: d.InterfaceName, IPs: d.IPs, HardwareAddress: d.HardwareAddress}
	}
	if len(d.Data) > 0 {
		ds.Data = d.Data
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
