package claimstatus

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2/ktesting"

	"github.com/sriov-dra/sriov-dra/internal/apitest"
	"github.com/sriov-dra/sriov-dra/pkg/kubeapi"
)

var ref = ClaimRef{Namespace: "ns", Name: "claim", UID: "uid-1"}

func claim() *resourcev1.ResourceClaim {
	return &resourcev1.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name, UID: ref.UID},
	}
}

// newAPI is an in-memory API server with objs and a real client of it.
func newAPI(t *testing.T, objs ...*resourcev1.ResourceClaim) (*apitest.Server, *kubeapi.Client) {
	t.Helper()
	srv := apitest.New(t)
	for _, o := range objs {
		srv.Add(o)
	}
	c, err := kubeapi.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

// start runs a Writer with fast retries and returns it with a stop func.
func start(t *testing.T, c API) *Writer {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	w := New(c, Options{
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

func getClaim(t *testing.T, srv *apitest.Server) *resourcev1.ResourceClaim {
	t.Helper()
	c := &resourcev1.ResourceClaim{}
	if !srv.Get("resource.k8s.io", "resourceclaims", ref.Namespace, ref.Name, c) {
		t.Fatalf("claim %s not there", ref)
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

// applies are the status applies the server got.
func applies(srv *apitest.Server) []apitest.Request {
	var out []apitest.Request
	for _, r := range srv.Requests() {
		if r.Verb == "patch" && r.Resource == "resourceclaims" && r.Subresource == "status" {
			out = append(out, r)
		}
	}
	return out
}

// lastApply checks the last apply's type and options and returns its body.
func lastApply(t *testing.T, srv *apitest.Server) map[string]any {
	t.Helper()
	all := applies(srv)
	if len(all) == 0 {
		t.Fatal("no status apply")
	}
	p := all[len(all)-1]
	if p.ContentType != string(types.ApplyPatchType) {
		t.Fatalf("patch type %s, want apply", p.ContentType)
	}
	if p.Query.Get("fieldManager") != FieldManager || p.Query.Get("force") != "true" {
		t.Fatalf("patch options %v, want field manager %s, forced", p.Query, FieldManager)
	}
	var m map[string]any
	if err := json.Unmarshal(p.Body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSetSetDeviceClear(t *testing.T) {
	srv, cs := newAPI(t, claim())
	// Another driver's entry, owned by another field manager, must survive.
	other := `{"apiVersion":"resource.k8s.io/v1","kind":"ResourceClaim","metadata":{"name":"claim","namespace":"ns"},
		"status":{"devices":[{"driver":"gpu.example.com","pool":"node-a","device":"gpu-0"}]}}`
	force := true
	if _, err := cs.ApplyClaimStatus(context.Background(), ref.Namespace, ref.Name, []byte(other),
		metav1.PatchOptions{FieldManager: "gpu.example.com", Force: &force}); err != nil {
		t.Fatalf("seed other driver's entry: %v", err)
	}
	w := start(t, cs)

	err := w.Set(ref, []DeviceStatus{
		{Pool: "node-a", Device: "0000-3b-00-2", InterfaceName: "net1", IPs: []string{"10.1.0.5/24", "FD00::0005/64"},
			HardwareAddress: "02:00:00:00:00:01", Ready: true, Data: json.RawMessage(`{"guid":"00:11:22:33:44:55:66:77"}`)},
		{Pool: "node-a", Device: "0000-3b-00-3", Ready: false, Message: "waiting for the pod sandbox"},
	})
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	waitFor(t, "two entries", func() bool { return len(getClaim(t, srv).Status.Devices) == 3 })
	got := byDevice(getClaim(t, srv))
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
	m := lastApply(t, srv)
	md := m["metadata"].(map[string]any)
	if m["kind"] != "ResourceClaim" || m["apiVersion"] != "resource.k8s.io/v1" || md["uid"] != string(ref.UID) || md["name"] != ref.Name {
		t.Errorf("apply payload header = %v", m)
	}
	if _, ok := m["spec"]; ok || len(m) != 4 {
		t.Errorf("apply payload has fields beyond apiVersion, kind, metadata, status: %v", m)
	}

	// One device changes; the other stays.
	n := len(applies(srv))
	if err := w.SetDevice(ref, DeviceStatus{Pool: "node-a", Device: "0000-3b-00-3", InterfaceName: "net2", IPs: []string{"10.1.0.6/24"}, Ready: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Set applied", func() bool { return w.Pending() == 0 })
	waitFor(t, "SetDevice applied", func() bool {
		d := byDevice(getClaim(t, srv))[FieldManager+"/0000-3b-00-3"]
		return d.NetworkData != nil && d.NetworkData.InterfaceName == "net2"
	})
	if len(applies(srv)) <= n {
		t.Fatal("no apply for SetDevice")
	}
	status := lastApply(t, srv)["status"].(map[string]any)
	if devs := status["devices"].([]any); len(devs) != 2 {
		t.Errorf("SetDevice apply carried %d entries, want the claim's whole set (2)", len(devs))
	}
	if len(getClaim(t, srv).Status.Devices) != 3 {
		t.Errorf("entries after SetDevice: %+v", getClaim(t, srv).Status.Devices)
	}

	if err := w.Clear(ref); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Clear applied", func() bool { return len(getClaim(t, srv).Status.Devices) == 1 })
	if _, ok := byDevice(getClaim(t, srv))["gpu.example.com/gpu-0"]; !ok {
		t.Errorf("Clear removed another driver's entry")
	}
	if st, ok := lastApply(t, srv)["status"].(map[string]any); !ok || st["devices"] != nil {
		t.Errorf("Clear payload status = %v, want an empty status", lastApply(t, srv)["status"])
	}
	waitFor(t, "nothing pending", func() bool { return w.Pending() == 0 })
}

func TestRetriesUntilApplied(t *testing.T) {
	srv, cs := newAPI(t, claim())
	var fails atomic.Int32
	srv.React(func(r apitest.Request) *metav1.Status {
		if r.Verb == "patch" && fails.Add(1) <= 3 {
			st := apierrors.NewServiceUnavailable("API server is busy").Status()
			return &st
		}
		return nil
	})
	w := start(t, cs)
	if err := w.Set(ref, []DeviceStatus{{Pool: "p", Device: "d", IPs: []string{"10.0.0.1/8"}, Ready: true}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "applied after failures", func() bool { return len(getClaim(t, srv).Status.Devices) == 1 })
	if fails.Load() < 4 {
		t.Errorf("apply calls = %d, want 3 failures then success", fails.Load())
	}
}

func TestGoneClaimIsDropped(t *testing.T) {
	srv, cs := newAPI(t)
	w := start(t, cs)
	if err := w.Set(ref, []DeviceStatus{{Pool: "p", Device: "d", Ready: true}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dropped", func() bool { return w.Pending() == 0 && len(applies(srv)) == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := len(applies(srv)); n != 1 {
		t.Errorf("a gone claim was retried: %d calls", n)
	}
}

func TestRecreatedClaimIsDropped(t *testing.T) {
	// The claim of that name now has another UID.
	recreated := claim()
	recreated.UID = "uid-2"
	srv, cs := newAPI(t, recreated)
	w := start(t, cs)
	if err := w.Clear(ref); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dropped", func() bool { return w.Pending() == 0 && len(applies(srv)) == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := len(applies(srv)); n != 1 {
		t.Errorf("a recreated claim was retried: %d calls", n)
	}
}

func TestTransitionTimeKeptWhileReadyUnchanged(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := New(nil, Options{Now: func() time.Time { return now }})
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
	if c := ac.Status.Devices[0].Conditions[0]; c.Status != metav1.ConditionFalse || c.Reason != "NotConfigured" {
		t.Errorf("condition = %+v", c)
	}
}

func TestBadInput(t *testing.T) {
	w := New(nil, Options{})
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
