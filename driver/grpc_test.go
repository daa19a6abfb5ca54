package driver

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/sriov-dra/sriov-dra/internal/apitest"
	"github.com/sriov-dra/sriov-dra/internal/kubelettest"
	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/kubeapi"
	"github.com/sriov-dra/sriov-dra/pkg/kubeletserver"
)

// clientsetClaims reads claims through a clientset.
type clientsetClaims struct{ cs *fake.Clientset }

func (c clientsetClaims) GetClaim(ctx context.Context, ns, name string) (*resourceapi.ResourceClaim, error) {
	return c.cs.ResourceV1().ResourceClaims(ns).Get(ctx, name, metav1.GetOptions{})
}

// sliceWrites counts ResourceSlice writes the fake API server received.
func sliceWrites(cs *fake.Clientset) int {
	n := 0
	for _, a := range cs.Actions() {
		if a.GetResource().Resource == "resourceslices" && (a.GetVerb() == "create" || a.GetVerb() == "update" || a.GetVerb() == "patch" || a.GetVerb() == "delete") {
			n++
		}
	}
	return n
}

// TestKubeletGRPC acts as kubelet: it registers the plugin through the
// registration socket and prepares and unprepares a claim over the DRA
// socket, with a fake API server holding the claim.
func TestKubeletGRPC(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	dev := vfName(e, 1, 2)
	claim := newClaim("4a4d5c3e-0000-4000-8000-000000000001", "p1", []resourceapi.DeviceRequestAllocationResult{result("eth", dev)},
		opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":42}`))
	claim.Name = "net"
	cs := fake.NewClientset(claim, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode, UID: "node-uid"}})

	// Short dirs: unix socket paths are limited to 107 bytes.
	base, err := os.MkdirTemp("", "dra")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	regDir, pluginDir := filepath.Join(base, "reg"), filepath.Join(base, "plug")
	for _, d := range []string{regDir, pluginDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	sockets := PluginSockets(regDir, pluginDir, "sriov.dra.dev", "")
	if err := sockets.Check(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	reg := NewRegistration()
	srv, err := kubeletserver.Start(ctx, e.d, kubeletserver.Config{
		DriverName: "sriov.dra.dev", NodeName: testNode, RegistryDir: regDir, PluginDir: pluginDir,
		Interceptor: reg.Interceptor(), Claims: clientsetClaims{cs},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	pub := startPublisher(ctx, t, cs, e.d)
	go func() { defer wg.Done(); _ = e.d.Run(ctx, pub) }()
	t.Cleanup(func() { cancel(); srv.Stop(); wg.Wait() })

	// Not registered yet: Wait explains.
	if err := reg.Wait(ctx, 50*time.Millisecond, sockets); err == nil || !strings.Contains(err.Error(), "kubelet never called") {
		t.Errorf("Wait before kubelet = %v", err)
	}

	// Kubelet's plugin watcher: GetInfo, then NotifyRegistrationStatus.
	info, dra := kubelettest.Register(ctx, t, sockets.Registrar)
	if info.Type != registerapi.DRAPlugin || info.Name != "sriov.dra.dev" || info.Endpoint != sockets.Plugin {
		t.Fatalf("GetInfo = %+v", info)
	}
	if err := reg.Wait(ctx, 5*time.Second, sockets); err != nil {
		t.Fatal(err)
	}

	req := &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: "ns", Name: "net", Uid: string(claim.UID)}}}
	resp, err := dra.NodePrepareResources(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	r := resp.Claims[string(claim.UID)]
	if r == nil || r.Error != "" || len(r.Devices) != 1 || r.Devices[0].DeviceName != dev || r.Devices[0].PoolName != testNode || len(r.Devices[0].CdiDeviceIds) != 1 {
		t.Fatalf("NodePrepareResources = %+v", resp)
	}
	// kubelet retries after a restart: same answer.
	again, err := dra.NodePrepareResources(ctx, req)
	if err != nil || again.Claims[string(claim.UID)].Devices[0].CdiDeviceIds[0] != r.Devices[0].CdiDeviceIds[0] {
		t.Fatalf("retry = %+v, %v", again, err)
	}

	// A claim this node cannot serve: a per-claim error, not a gRPC failure.
	bad := newClaim("4a4d5c3e-0000-4000-8000-000000000002", "p2", []resourceapi.DeviceRequestAllocationResult{result("eth", dev)})
	bad.Name = "bad"
	if _, err := cs.ResourceV1().ResourceClaims("ns").Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	resp, err = dra.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: "ns", Name: "bad", Uid: string(bad.UID)}}})
	if err != nil {
		t.Fatal(err)
	}
	if msg := resp.Claims[string(bad.UID)].Error; !strings.Contains(msg, "already prepared for claim "+string(claim.UID)) {
		t.Errorf("conflicting claim error = %q", msg)
	}

	un, err := dra.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: "ns", Name: "net", Uid: string(claim.UID)}}})
	if err != nil || un.Claims[string(claim.UID)].Error != "" {
		t.Fatalf("NodeUnprepareResources = %+v, %v", un, err)
	}
	if len(e.d.State().Claims()) != 0 {
		t.Error("claim still recorded after unprepare")
	}

	// ResourceSlices: written once, then no API write while nothing changes.
	deadline := time.Now().Add(10 * time.Second)
	for sliceWrites(cs) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	list, err := cs.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("slices = %v, %v", list, err)
	}
	s := list.Items[0]
	if s.Spec.Pool.Name != testNode || s.Spec.NodeName == nil || *s.Spec.NodeName != testNode || len(s.Spec.Devices) != 32 {
		t.Errorf("slice pool %s node %v devices %d", s.Spec.Pool.Name, s.Spec.NodeName, len(s.Spec.Devices))
	}
	writes := sliceWrites(cs)
	for i := 0; i < 3; i++ {
		e.d.TriggerRescan()
		time.Sleep(300 * time.Millisecond)
	}
	if w := sliceWrites(cs); w != writes {
		t.Errorf("%d ResourceSlice writes with nothing changed", w-writes)
	}
}

// events: the Warning event goes to the API server, through the
// daemon's recorder (kubeapi) and a real client.
func TestPrepareFailurePostsEvent(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	srv := apitest.New(t)
	api, err := kubeapi.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec, stop := api.NewEventRecorder(ctx, "sriov.dra.dev", "sriov.dra.dev/"+testNode)
	defer stop()
	cfg := e.config()
	cfg.Events = rec
	d, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", "pci-0000-99-00-1")})
	if err := prepare(t, d, c)["u1"].Err; err == nil {
		t.Fatal("prepare succeeded")
	}
	var got []map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		got = srv.List("events.k8s.io", "events", "")
	}
	if len(got) != 1 {
		t.Fatalf("%d events", len(got))
	}
	b, _ := json.Marshal(got[0])
	s := strings.ToLower(string(b))
	for _, want := range []string{"warning", "preparefailed", "claim-u1", "pci-0000-99-00-1"} {
		if !strings.Contains(s, want) {
			t.Errorf("event %s lacks %q", s, want)
		}
	}
}
