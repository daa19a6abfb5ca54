package claimstatus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	resourceac "k8s.io/client-go/applyconfigurations/resource/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2/ktesting"
)

var ref = ClaimRef{Namespace: "ns", Name: "claim", UID: "uid-1"}

func claim() *resourcev1.ResourceClaim {
	return &resourcev1.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name, UID: ref.UID},
	}
}

// start runs a Writer with fast retries and returns it with a stop func.
func start(t *testing.T, cs *fake.Clientset) *Writer {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	w := New(cs, Options{
		RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[types.UID](time.Millisecond, 10*time.Millisecond),
		Now:         func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
	})
	done := make(chan struct{})
	go func() { w.Run(ctx, 2); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func getClaim(t *testing.T, cs *fake.Clientset) *resourcev1.ResourceClaim {
	t.Helper()
	c, err := cs.ResourceV1().ResourceClaims(ref.Namespace).Get(context.Background(), ref.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func byDevice(c *resourcev1.ResourceClaim) map[string]resourcev1.AllocatedDeviceStatus {
	out := map[string]resourcev1.AllocatedDeviceStatus{}
	for _, d := range c.Status.Devices {
		out[d.Driver+"/"+d.Device] = d
	}
	return out
}

// applies records the status apply patches the client sent.
type applies struct {
	mu      sync.Mutex
	patches []k8stesting.PatchActionImpl
}

func (a *applies) reactor(action k8stesting.Action) (bool, runtime.Object, error) {
	if p, ok := action.(k8stesting.PatchActionImpl); ok && p.GetSubresource() == "status" {
		a.mu.Lock()
		a.patches = append(a.patches, p)
		a.mu.Unlock()
	}
	return false, nil, nil
}

func (a *applies) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.patches)
}

func (a *applies) last(t *testing.T) map[string]any {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.patches[len(a.patches)-1]
	if p.GetPatchType() != types.ApplyPatchType {
		t.Fatalf("patch type %s, want apply", p.GetPatchType())
	}
	if p.PatchOptions.FieldManager != FieldManager || p.PatchOptions.Force == nil || !*p.PatchOptions.Force {
		t.Fatalf("patch options %+v, want field manager %s, forced", p.PatchOptions, FieldManager)
	}
	var m map[string]any
	if err := json.Unmarshal(p.GetPatch(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSetSetDeviceClear(t *testing.T) {
	cs := fake.NewClientset(claim())
	// Another driver's entry, owned by another field manager, must survive.
	other := resourceac.ResourceClaim(ref.Name, ref.Namespace).WithStatus(resourceac.ResourceClaimStatus().WithDevices(
		resourceac.AllocatedDeviceStatus().WithDriver("gpu.example.com").WithPool("node-a").WithDevice("gpu-0")))
	if _, err := cs.ResourceV1().ResourceClaims(ref.Namespace).ApplyStatus(context.Background(), other,
		metav1.ApplyOptions{FieldManager: "gpu.example.com", Force: true}); err != nil {
		t.Fatalf("seed other driver's entry: %v", err)
	}
	rec := &applies{}
	cs.PrependReactor("patch", "resourceclaims", rec.reactor)
	w := start(t, cs)

	err := w.Set(ref, []DeviceStatus{
		{Pool: "node-a", Device: "0000-3b-00-2", InterfaceName: "net1", IPs: []string{"10.1.0.5/24", "FD00::0005/64"},
			HardwareAddress: "02:00:00:00:00:01", Ready: true, Data: json.RawMessage(`{"guid":"00:11:22:33:44:55:66:77"}`)},
		{Pool: "node-a", Device: "0000-3b-00-3", Ready: false, Message: "waiting for the pod sandbox"},
	})
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	waitFor(t, "two entries", func() bool { return len(getClaim(t, cs).Status.Devices) == 3 })
	got := byDevice(getClaim(t, cs))
	d := got[FieldManager+"/0000-3b-00-2"]
	if d.Pool != "node-a" || d.NetworkData == nil || d.NetworkData.InterfaceName != "net1" ||
		fmt.Sprint(d.NetworkData.IPs) != "[10.1.0.5/24 fd00::5/64]" || d.NetworkData.HardwareAddress != "02:00:00:00:00:01" {
		t.Errorf("entry = %+v / %+v", d, d.NetworkData)
	}
	if d.Data == nil || string(d.Data.Raw) != `{"guid":"00:11:22:33:44:55:66:77"}` {
		t.Errorf("data = %v", d.Data)
	}
	if len(d.Conditions) != 1 || d.Conditions[0].Type != ConditionReady || d.Conditions[0].Status != metav1.ConditionTrue ||
		d.Conditions[0].Reason != "Configured" || d.Conditions[0].LastTransitionTime.IsZero() {
		t.Errorf("conditions = %+v", d.Conditions)
	}
	d3 := got[FieldManager+"/0000-3b-00-3"]
	if d3.NetworkData != nil || len(d3.Conditions) != 1 || d3.Conditions[0].Status != metav1.ConditionFalse ||
		d3.Conditions[0].Message != "waiting for the pod sandbox" {
		t.Errorf("second entry = %+v", d3)
	}
	if _, ok := got["gpu.example.com/gpu-0"]; !ok {
		t.Errorf("other driver's entry lost: %v", got)
	}
	m := rec.last(t)
	md := m["metadata"].(map[string]any)
	if m["kind"] != "ResourceClaim" || m["apiVersion"] != "resource.k8s.io/v1" || md["uid"] != string(ref.UID) || md["name"] != ref.Name {
		t.Errorf("apply payload header = %v", m)
	}

	// One device changes; the other stays.
	n := rec.count()
	if err := w.SetDevice(ref, DeviceStatus{Pool: "node-a", Device: "0000-3b-00-3", InterfaceName: "net2", IPs: []string{"10.1.0.6/24"}, Ready: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Set applied", func() bool { return w.Pending() == 0 })
	waitFor(t, "SetDevice applied", func() bool {
		d := byDevice(getClaim(t, cs))[FieldManager+"/0000-3b-00-3"]
		return d.NetworkData != nil && d.NetworkData.InterfaceName == "net2"
	})
	if rec.count() <= n {
		t.Fatal("no apply for SetDevice")
	}
	status := rec.last(t)["status"].(map[string]any)
	if devs := status["devices"].([]any); len(devs) != 2 {
		t.Errorf("SetDevice apply carried %d entries, want the claim's whole set (2)", len(devs))
	}
	if len(getClaim(t, cs).Status.Devices) != 3 {
		t.Errorf("entries after SetDevice: %+v", getClaim(t, cs).Status.Devices)
	}

	if err := w.Clear(ref); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Clear applied", func() bool { return len(getClaim(t, cs).Status.Devices) == 1 })
	if _, ok := byDevice(getClaim(t, cs))["gpu.example.com/gpu-0"]; !ok {
		t.Errorf("Clear removed another driver's entry")
	}
	if st, ok := rec.last(t)["status"].(map[string]any); !ok || st["devices"] != nil {
		t.Errorf("Clear payload status = %v, want an empty status", rec.last(t)["status"])
	}
	waitFor(t, "nothing pending", func() bool { return w.Pending() == 0 })
}

func TestRetriesUntilApplied(t *testing.T) {
	cs := fake.NewClientset(claim())
	var fails atomic.Int32
	cs.PrependReactor("patch", "resourceclaims", func(k8stesting.Action) (bool, runtime.Object, error) {
		if fails.Add(1) <= 3 {
			return true, nil, apierrors.NewServiceUnavailable("API server is busy")
		}
		return false, nil, nil
	})
	w := start(t, cs)
	if err := w.Set(ref, []DeviceStatus{{Pool: "p", Device: "d", IPs: []string{"10.0.0.1/8"}, Ready: true}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "applied after failures", func() bool { return len(getClaim(t, cs).Status.Devices) == 1 })
	if fails.Load() < 4 {
		t.Errorf("apply calls = %d, want 3 failures then success", fails.Load())
	}
}

func TestGoneClaimIsDropped(t *testing.T) {
	cs := fake.NewClientset()
	var calls atomic.Int32
	cs.PrependReactor("patch", "resourceclaims", func(k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "resource.k8s.io", Resource: "resourceclaims"}, ref.Name)
	})
	w := start(t, cs)
	if err := w.Set(ref, []DeviceStatus{{Pool: "p", Device: "d", Ready: true}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dropped", func() bool { return w.Pending() == 0 && calls.Load() == 1 })
	time.Sleep(50 * time.Millisecond)
	if calls.Load() != 1 {
		t.Errorf("a gone claim was retried: %d calls", calls.Load())
	}
}

func TestRecreatedClaimIsDropped(t *testing.T) {
	cs := fake.NewClientset()
	var calls atomic.Int32
	cs.PrependReactor("patch", "resourceclaims", func(k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "resource.k8s.io", Resource: "resourceclaims"}, ref.Name,
			errors.New("Precondition failed: UID in precondition: uid-1, UID in object meta: uid-2"))
	})
	w := start(t, cs)
	if err := w.Clear(ref); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dropped", func() bool { return w.Pending() == 0 && calls.Load() == 1 })
}

func TestTransitionTimeKeptWhileReadyUnchanged(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := New(fake.NewClientset(), Options{Now: func() time.Time { return now }})
	d := DeviceStatus{Pool: "p", Device: "d", Ready: true}
	if err := w.SetDevice(ref, d); err != nil {
		t.Fatal(err)
	}
	first := w.state[ref.UID].since["d"]
	now = now.Add(time.Hour)
	d.IPs = []string{"10.0.0.1/8"}
	if err := w.SetDevice(ref, d); err != nil {
		t.Fatal(err)
	}
	if got := w.state[ref.UID].since["d"]; !got.Equal(&first) {
		t.Errorf("transition time moved without a Ready change: %v -> %v", first, got)
	}
	d.Ready = false
	if err := w.SetDevice(ref, d); err != nil {
		t.Fatal(err)
	}
	if got := w.state[ref.UID].since["d"]; got.Equal(&first) {
		t.Errorf("transition time did not move on a Ready change")
	}
	ac := w.applyConfig(w.state[ref.UID])
	if c := ac.Status.Devices[0].Conditions[0]; *c.Status != metav1.ConditionFalse || *c.Reason != "NotConfigured" {
		t.Errorf("condition = %+v", c)
	}
}

func TestBadInput(t *testing.T) {
	w := New(fake.NewClientset(), Options{})
	tests := []struct {
		name string
		ref  ClaimRef
		d    DeviceStatus
		want string
	}{
		{"no UID", ClaimRef{Namespace: "a", Name: "b"}, DeviceStatus{Pool: "p", Device: "d"}, "UID"},
		{"no pool", ref, DeviceStatus{Device: "d"}, "pool and device"},
		{"ip not CIDR", ref, DeviceStatus{Pool: "p", Device: "d", IPs: []string{"10.0.0.1"}}, "networkData.ips"},
		{"ip garbage", ref, DeviceStatus{Pool: "p", Device: "d", IPs: []string{"x/24"}}, "networkData.ips"},
		{"ip twice", ref, DeviceStatus{Pool: "p", Device: "d", IPs: []string{"10.0.0.1/8", "10.0.0.1/8"}}, "twice"},
		{"long ifname", ref, DeviceStatus{Pool: "p", Device: "d", InterfaceName: strings.Repeat("a", 257)}, "networkData.interfaceName"},
		{"long hw addr", ref, DeviceStatus{Pool: "p", Device: "d", HardwareAddress: strings.Repeat("a", 129)}, "networkData.hardwareAddress"},
		{"bad data", ref, DeviceStatus{Pool: "p", Device: "d", Data: json.RawMessage(`{`)}, "data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for name, call := range map[string]func() error{
				"Set":       func() error { return w.Set(tc.ref, []DeviceStatus{tc.d}) },
				"SetDevice": func() error { return w.SetDevice(tc.ref, tc.d) },
			} {
				if err := call(); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s = %v, want an error about %q", name, err, tc.want)
				}
			}
			if w.Pending() != 0 || w.queue.Len() != 0 {
				t.Errorf("a refused call queued work")
			}
		})
	}
	if err := w.Clear(ClaimRef{Name: "x"}); err == nil {
		t.Error("Clear with an incomplete reference succeeded")
	}
}

// TestNetworkData: the networkData other views of a device show is the
// status entry's, checked and canonical; an entry without network data
// has none.
func TestNetworkData(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in      DeviceStatus
		want    *resourcev1.NetworkDeviceData
		wantErr string
	}{
		{"all fields, IPv6 made canonical", DeviceStatus{Pool: "p", Device: "d", InterfaceName: "net1", IPs: []string{"10.0.0.5/24", "fd00::0a/64"}, HardwareAddress: "02:00:00:00:00:01"},
			&resourcev1.NetworkDeviceData{InterfaceName: "net1", IPs: []string{"10.0.0.5/24", "fd00::a/64"}, HardwareAddress: "02:00:00:00:00:01"}, ""},
		{"addresses only (vfio-pci)", DeviceStatus{Pool: "p", Device: "d", IPs: []string{"10.0.0.5/24"}},
			&resourcev1.NetworkDeviceData{IPs: []string{"10.0.0.5/24"}}, ""},
		{"nothing", DeviceStatus{Pool: "p", Device: "d", Ready: true}, nil, ""},
		{"bad address", DeviceStatus{Pool: "p", Device: "d", IPs: []string{"10.0.0.5"}}, nil, `device d: networkData.ips: "10.0.0.5" is not an address in CIDR form`},
		{"no device", DeviceStatus{Pool: "p", InterfaceName: "net1"}, nil, "pool and device are required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NetworkData(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NetworkData: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("NetworkData = %+v, want %+v", got, tt.want)
			}
		})
	}
}
