package kubeletserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2/ktesting"
	drahealthv1 "k8s.io/kubelet/pkg/apis/dra-health/v1"
	drahealthv1alpha1 "k8s.io/kubelet/pkg/apis/dra-health/v1alpha1"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/sriov-dra/sriov-dra/internal/kubelettest"
)

const testDriver = "sriov.dra.dev"

// fakeClaims is the API server: claims by namespace/name.
type fakeClaims struct {
	mu     sync.Mutex
	claims map[string]*resourceapi.ResourceClaim
}

func (f *fakeClaims) GetClaim(_ context.Context, ns, name string) (*resourceapi.ResourceClaim, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.claims[ns+"/"+name]
	if !ok {
		return nil, apierrors.NewNotFound(resourceapi.Resource("resourceclaims"), name)
	}
	return c.DeepCopy(), nil
}

func newFakeClaims(claims ...*resourceapi.ResourceClaim) *fakeClaims {
	f := &fakeClaims{claims: map[string]*resourceapi.ResourceClaim{}}
	for _, c := range claims {
		f.claims[c.Namespace+"/"+c.Name] = c
	}
	return f
}

// testClaim is an allocated claim with one device per request name.
func testClaim(name, uid string, requests ...string) *resourceapi.ResourceClaim {
	c := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(uid)}}
	c.Status.Allocation = &resourceapi.AllocationResult{}
	for i, r := range requests {
		c.Status.Allocation.Devices.Results = append(c.Status.Allocation.Devices.Results, resourceapi.DeviceRequestAllocationResult{
			Request: r, Driver: testDriver, Pool: "node-a", Device: fmt.Sprintf("dev-%d", i),
		})
	}
	return c
}

// fakePlugin prepares every claim's allocated devices, fails the claims
// named in fail, and records the calls.
type fakePlugin struct {
	mu         sync.Mutex
	fail       map[types.UID]error
	omit       map[types.UID]bool
	callErr    error
	prepared   [][]types.UID
	unprepared [][]NamespacedObject
	metadata   bool
	health     func(ctx context.Context, reports chan<- DeviceHealthReport) error
}

func (p *fakePlugin) PrepareResourceClaims(_ context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]PrepareResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var uids []types.UID
	for _, c := range claims {
		uids = append(uids, c.UID)
	}
	p.prepared = append(p.prepared, uids)
	if p.callErr != nil {
		return nil, p.callErr
	}
	out := map[types.UID]PrepareResult{}
	for _, c := range claims {
		if p.omit[c.UID] {
			continue
		}
		if err := p.fail[c.UID]; err != nil {
			out[c.UID] = PrepareResult{Err: err}
			continue
		}
		var devs []Device
		for _, r := range c.Status.Allocation.Devices.Results {
			d := Device{Requests: []string{r.Request}, PoolName: r.Pool, DeviceName: r.Device, CDIDeviceIDs: []string{"sriov.dra.dev/vf=" + string(c.UID) + "-" + r.Device}}
			if p.metadata {
				d.Metadata = &DeviceMetadata{
					Attributes:  map[string]resourceapi.DeviceAttribute{"pciAddress": {StringValue: ptr("0000:5e:00.1")}, "resource.kubernetes.io/pciBusID": {StringValue: ptr("0000:5e:00.1")}, "vfIndex": {IntValue: ptr(int64(3))}},
					NetworkData: &resourceapi.NetworkDeviceData{InterfaceName: "net1", IPs: []string{"192.168.100.10/24"}, HardwareAddress: "02:00:5e:00:00:01"},
				}
			}
			devs = append(devs, d)
		}
		out[c.UID] = PrepareResult{Devices: devs}
	}
	return out, nil
}

func (p *fakePlugin) UnprepareResourceClaims(_ context.Context, claims []NamespacedObject) (map[types.UID]error, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unprepared = append(p.unprepared, claims)
	if p.callErr != nil {
		return nil, p.callErr
	}
	out := map[types.UID]error{}
	for _, c := range claims {
		if !p.omit[c.UID] {
			out[c.UID] = p.fail[c.UID]
		}
	}
	return out, nil
}

func (p *fakePlugin) WatchHealthStatus(ctx context.Context, reports chan<- DeviceHealthReport) error {
	if p.health == nil {
		return ErrHealthNotSupported
	}
	return p.health(ctx, reports)
}

func ptr[T any](v T) *T { return &v }

// shortDirs returns a registry and a plugin dir short enough for unix
// socket paths (the test's TempDir may not be).
func shortDirs(t *testing.T) (string, string) {
	t.Helper()
	base, err := os.MkdirTemp("", "ks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	reg, plug := filepath.Join(base, "reg"), filepath.Join(base, "plug")
	for _, d := range []string{reg, plug} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return reg, plug
}

func startServer(t *testing.T, p Plugin, cfg Config) *Server {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	if cfg.DriverName == "" {
		cfg.DriverName = testDriver
	}
	if cfg.RegistryDir == "" {
		cfg.RegistryDir, cfg.PluginDir = shortDirs(t)
	}
	s, err := Start(ctx, p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// TestRegistration: kubelet's plugin watcher finds the registration
// socket, gets the plugin's info (type, name, endpoint, services) and
// confirms; the configured interceptor sees both calls. A refusal is
// remembered and answered with an error.
func TestRegistration(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	icpt := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		mu.Lock()
		seen = append(seen, info.FullMethod)
		mu.Unlock()
		return h(ctx, req)
	}
	s := startServer(t, &fakePlugin{}, Config{Claims: newFakeClaims(), Interceptor: icpt, NodeName: "node-a"})
	ctx := context.Background()
	if s.RegistrationStatus() != nil {
		t.Error("status before kubelet called")
	}
	info, _ := kubelettest.Register(ctx, t, s.RegistrarSocket())
	want := []string{"v1.DRAPlugin", "v1beta1.DRAPlugin", "v1.DRAResourceHealth", "v1alpha1.DRAResourceHealth"}
	if info.Type != "DRAPlugin" || info.Name != testDriver || info.Endpoint != s.PluginSocket() || !slices.Equal(info.SupportedVersions, want) {
		t.Errorf("GetInfo = %+v", info)
	}
	if st := s.RegistrationStatus(); st == nil || !st.PluginRegistered {
		t.Errorf("status = %v", st)
	}
	mu.Lock()
	if !slices.Equal(seen, []string{"/pluginregistration.Registration/GetInfo", "/pluginregistration.Registration/NotifyRegistrationStatus"}) {
		t.Errorf("interceptor saw %v", seen)
	}
	mu.Unlock()

	rc := registerapi.NewRegistrationClient(kubelettest.Dial(t, s.RegistrarSocket()))
	_, err := rc.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: false, Error: "version not supported"})
	if err == nil || !strings.Contains(err.Error(), "version not supported") || !strings.Contains(err.Error(), testDriver) {
		t.Errorf("refused registration answered %v", err)
	}
	if st := s.RegistrationStatus(); st.PluginRegistered || st.Error != "version not supported" {
		t.Errorf("status after refusal = %v", st)
	}
}

// TestSocketsRemovedOnStop: Stop (or the end of Start's context) removes
// both sockets; a stale socket file of an earlier run does not stop Start.
func TestSocketsRemovedOnStop(t *testing.T) {
	reg, plug := shortDirs(t)
	stale := filepath.Join(reg, RegistrarSocketFile(reg, testDriver, ""))
	if err := os.WriteFile(stale, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, &fakePlugin{}, Config{DriverName: testDriver, RegistryDir: reg, PluginDir: plug, Claims: newFakeClaims()})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{s.RegistrarSocket(), s.PluginSocket()} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&os.ModeSocket == 0 {
			t.Fatalf("%s: %v %v", p, fi, err)
		}
	}
	cancel()
	s.Stop()
	s.Stop()
	for _, p := range []string{s.RegistrarSocket(), s.PluginSocket()} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after Stop: %v", p, err)
		}
	}
	if _, err := Start(ctx, &fakePlugin{}, Config{RegistryDir: reg, PluginDir: plug, Claims: newFakeClaims()}); err == nil || !strings.Contains(err.Error(), "DriverName") {
		t.Errorf("Start without driver name: %v", err)
	}
	if _, err := Start(ctx, &fakePlugin{}, Config{DriverName: testDriver, RegistryDir: reg, PluginDir: plug}); err == nil || !strings.Contains(err.Error(), "Claims") {
		t.Errorf("Start without Claims: %v", err)
	}
}

// TestPrepare: each claim kubelet names is fetched; a missing, replaced
// (other UID) or unallocated one, and one the plugin fails or forgets,
// gets its own error naming it while the others are prepared; a plugin
// failing the whole call fails the gRPC call.
func TestPrepare(t *testing.T) {
	good := testClaim("good", "uid-good", "vf", "pf/sub")
	other := testClaim("other", "uid-other", "vf")
	unalloc := testClaim("unalloc", "uid-unalloc", "vf")
	unalloc.Status.Allocation = nil
	failing := testClaim("failing", "uid-failing", "vf")
	forgotten := testClaim("forgotten", "uid-forgotten", "vf")
	claims := newFakeClaims(good, other, unalloc, failing, forgotten)
	wire := func(c *resourceapi.ResourceClaim) *drapb.Claim {
		return &drapb.Claim{Namespace: c.Namespace, Name: c.Name, Uid: string(c.UID)}
	}
	for _, tc := range []struct {
		name      string
		req       []*drapb.Claim
		callErr   error
		wantErr   map[string]string // claim UID -> error substring
		wantOK    []string
		wantPlug  []types.UID
		wantFatal string
	}{
		{name: "one claim, a subrequest", req: []*drapb.Claim{wire(good)}, wantOK: []string{"uid-good"}, wantPlug: []types.UID{"uid-good"}},
		{
			name: "bad claims beside good ones",
			req: []*drapb.Claim{
				wire(good), {Namespace: "ns", Name: "other", Uid: "uid-old"}, wire(unalloc), {Namespace: "ns", Name: "gone", Uid: "uid-gone"},
				wire(failing), wire(forgotten), wire(other),
			},
			wantOK:   []string{"uid-good", "uid-other"},
			wantPlug: []types.UID{"uid-good", "uid-failing", "uid-forgotten", "uid-other"},
			wantErr: map[string]string{
				"uid-old":       "ResourceClaim ns/other has UID uid-other, kubelet asked for UID uid-old",
				"uid-unalloc":   "ResourceClaim ns/unalloc (UID uid-unalloc) is not allocated",
				"uid-gone":      "get ResourceClaim ns/gone: resourceclaims.resource.k8s.io \"gone\" not found",
				"uid-failing":   "device dev-0 of claim failing is broken",
				"uid-forgotten": "no result for ResourceClaim ns/forgotten",
			},
		},
		{name: "only bad claims: plugin not called", req: []*drapb.Claim{wire(unalloc)}, wantErr: map[string]string{"uid-unalloc": "not allocated"}},
		{name: "plugin fails the call", req: []*drapb.Claim{wire(good)}, callErr: errors.New("checkpoint unreadable"), wantPlug: []types.UID{"uid-good"}, wantFatal: "prepare 1 ResourceClaims: checkpoint unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakePlugin{
				fail:    map[types.UID]error{"uid-failing": errors.New("device dev-0 of claim failing is broken")},
				omit:    map[types.UID]bool{"uid-forgotten": true},
				callErr: tc.callErr,
			}
			s := startServer(t, p, Config{Claims: claims})
			_, dra := kubelettest.Register(context.Background(), t, s.RegistrarSocket())
			resp, err := dra.NodePrepareResources(context.Background(), &drapb.NodePrepareResourcesRequest{Claims: tc.req})
			switch {
			case tc.wantFatal != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantFatal) {
					t.Fatalf("err = %v, want %q", err, tc.wantFatal)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if len(resp.Claims) != len(tc.req) {
					t.Errorf("%d answers for %d claims: %v", len(resp.Claims), len(tc.req), resp.Claims)
				}
				for uid, sub := range tc.wantErr {
					if r := resp.Claims[uid]; r == nil || !strings.Contains(r.Error, sub) || len(r.Devices) != 0 {
						t.Errorf("claim %s: %v, want error %q", uid, r, sub)
					}
				}
				for _, uid := range tc.wantOK {
					r := resp.Claims[uid]
					if r == nil || r.Error != "" {
						t.Fatalf("claim %s: %v", uid, r)
					}
				}
				if r := resp.Claims["uid-good"]; r != nil && r.Error == "" {
					want := []*drapb.Device{
						{RequestNames: []string{"vf"}, PoolName: "node-a", DeviceName: "dev-0", CdiDeviceIds: []string{"sriov.dra.dev/vf=uid-good-dev-0"}},
						{RequestNames: []string{"pf"}, PoolName: "node-a", DeviceName: "dev-1", CdiDeviceIds: []string{"sriov.dra.dev/vf=uid-good-dev-1"}},
					}
					if !slices.EqualFunc(r.Devices, want, devEqual) {
						t.Errorf("devices = %v, want %v", r.Devices, want)
					}
				}
			}
			var called []types.UID
			for _, c := range p.prepared {
				called = append(called, c...)
			}
			if !slices.Equal(called, tc.wantPlug) {
				t.Errorf("plugin prepared %v, want %v", called, tc.wantPlug)
			}
		})
	}
}

func devEqual(a, b *drapb.Device) bool {
	return slices.Equal(a.RequestNames, b.RequestNames) && a.PoolName == b.PoolName && a.DeviceName == b.DeviceName &&
		slices.Equal(a.CdiDeviceIds, b.CdiDeviceIds) && a.GetShareId() == b.GetShareId()
}

// TestUnprepare: every claim goes to the plugin (the API server is not
// asked: the claim may be gone); per-claim errors and forgotten claims
// are per-claim answers, a failed call a gRPC error.
func TestUnprepare(t *testing.T) {
	for _, tc := range []struct {
		name      string
		callErr   error
		wantErr   map[string]string
		wantFatal string
	}{
		{name: "per claim", wantErr: map[string]string{"uid-a": "", "uid-b": "VF dev-1 of claim b: restore MAC", "uid-c": "no result for ResourceClaim ns/c:uid-c"}},
		{name: "call fails", callErr: errors.New("checkpoint unreadable"), wantFatal: "unprepare 3 ResourceClaims: checkpoint unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakePlugin{fail: map[types.UID]error{"uid-b": errors.New("VF dev-1 of claim b: restore MAC")}, omit: map[types.UID]bool{"uid-c": true}, callErr: tc.callErr}
			s := startServer(t, p, Config{Claims: newFakeClaims()})
			_, dra := kubelettest.Register(context.Background(), t, s.RegistrarSocket())
			req := &drapb.NodeUnprepareResourcesRequest{}
			for _, n := range []string{"a", "b", "c"} {
				req.Claims = append(req.Claims, &drapb.Claim{Namespace: "ns", Name: n, Uid: "uid-" + n})
			}
			resp, err := dra.NodeUnprepareResources(context.Background(), req)
			if tc.wantFatal != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantFatal) {
					t.Fatalf("err = %v, want %q", err, tc.wantFatal)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for uid, sub := range tc.wantErr {
				r := resp.Claims[uid]
				if r == nil || (sub == "" && r.Error != "") || !strings.Contains(r.Error, sub) {
					t.Errorf("claim %s: %v, want %q", uid, r, sub)
				}
			}
			want := []NamespacedObject{
				{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "a"}, UID: "uid-a"},
				{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "b"}, UID: "uid-b"},
				{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "c"}, UID: "uid-c"},
			}
			if len(p.unprepared) != 1 || !slices.Equal(p.unprepared[0], want) {
				t.Errorf("plugin got %v", p.unprepared)
			}
		})
	}
}

// TestHealth: kubelet's health stream (v1, and v1alpha1 for older
// kubelets) carries the plugin's reports as they come; a plugin without
// health support ends it with Unimplemented.
func TestHealth(t *testing.T) {
	updated := time.Unix(1_800_000_000, 0)
	reports := []DeviceHealthReport{
		{Devices: []DeviceHealth{
			{PoolName: "node-a", DeviceName: "dev-0", Health: HealthStatusHealthy, LastUpdated: updated, HealthCheckTimeout: 45 * time.Second},
			{PoolName: "node-a", DeviceName: "dev-1", Health: HealthStatusUnhealthy, LastUpdated: updated, Message: "PF ens2f0 link down"},
		}},
		{Devices: []DeviceHealth{{PoolName: "node-a", DeviceName: "dev-1", Health: HealthStatusUnknown}}},
	}
	watch := func(ctx context.Context, ch chan<- DeviceHealthReport) error {
		for _, r := range reports {
			select {
			case ch <- r:
			case <-ctx.Done():
				return nil
			}
		}
		<-ctx.Done()
		return nil
	}
	s := startServer(t, &fakePlugin{health: watch}, Config{Claims: newFakeClaims()})
	conn := kubelettest.Dial(t, s.PluginSocket())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	st, err := drahealthv1.NewDRAResourceHealthClient(conn).NodeWatchResources(ctx, &drahealthv1.NodeWatchResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	d := first.Devices
	if len(d) != 2 || d[0].Device.DeviceName != "dev-0" || d[0].Health != drahealthv1.HealthStatus_HEALTHY || d[0].LastUpdatedTime != updated.Unix() || d[0].HealthCheckTimeoutSeconds != 45 ||
		d[1].Health != drahealthv1.HealthStatus_UNHEALTHY || d[1].Message != "PF ens2f0 link down" || d[1].HealthCheckTimeoutSeconds != 0 || d[1].Device.PoolName != "node-a" {
		t.Errorf("first report = %v", first)
	}
	second, err := st.Recv()
	if err != nil || len(second.Devices) != 1 || second.Devices[0].Health != drahealthv1.HealthStatus_UNKNOWN || second.Devices[0].LastUpdatedTime != 0 {
		t.Errorf("second report = %v, %v", second, err)
	}

	old, err := drahealthv1alpha1.NewDRAResourceHealthClient(conn).NodeWatchResources(ctx, &drahealthv1alpha1.NodeWatchResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := old.Recv(); err != nil || len(r.Devices) != 2 || r.Devices[1].Health != drahealthv1alpha1.HealthStatus_UNHEALTHY {
		t.Errorf("v1alpha1 report = %v, %v", r, err)
	}

	s2 := startServer(t, &fakePlugin{}, Config{Claims: newFakeClaims()})
	st2, err := drahealthv1.NewDRAResourceHealthClient(kubelettest.Dial(t, s2.PluginSocket())).NodeWatchResources(ctx, &drahealthv1.NodeWatchResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st2.Recv(); status.Code(err) != codes.Unimplemented {
		t.Errorf("no health support: %v, want Unimplemented", err)
	}
}

// TestSerialize: with Serialize, a second Prepare waits for the first,
// also from another server of a rolling update (another pod UID, same
// plugin dir): the lock file serializes them; without, it does not wait.
func TestSerialize(t *testing.T) {
	c := testClaim("a", "uid-a", "vf")
	for _, tc := range []struct {
		name      string
		serialize bool
		podUIDs   [2]types.UID
		wantWait  bool
	}{
		{name: "one server, serialized", serialize: true, wantWait: true},
		{name: "one server, parallel", serialize: false, wantWait: false},
		{name: "rolling update, two servers", serialize: true, podUIDs: [2]types.UID{"pod-old", "pod-new"}, wantWait: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, plug := shortDirs(t)
			gate := &gatedPlugin{fakePlugin: &fakePlugin{}, in: make(chan struct{}), release: make(chan struct{})}
			cfg := Config{RegistryDir: reg, PluginDir: plug, Serialize: tc.serialize, Claims: newFakeClaims(c), PodUID: tc.podUIDs[0]}
			s1 := startServer(t, gate, cfg)
			s2 := s1
			if tc.podUIDs[1] != "" {
				cfg.PodUID = tc.podUIDs[1]
				s2 = startServer(t, &fakePlugin{}, cfg)
				if s1.RegistrarSocket() == s2.RegistrarSocket() || s1.PluginSocket() == s2.PluginSocket() {
					t.Fatalf("two servers on the same sockets: %s %s", s1.RegistrarSocket(), s1.PluginSocket())
				}
			}
			defer close(gate.release)
			runSecond(t, s1, s2, c, gate.in, tc.wantWait)
		})
	}
}

// gatedPlugin holds only its first Prepare until release.
type gatedPlugin struct {
	*fakePlugin
	once    sync.Once
	in      chan struct{}
	release chan struct{}
}

func (g *gatedPlugin) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]PrepareResult, error) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.in)
		<-g.release
	}
	return g.fakePlugin.PrepareResourceClaims(ctx, claims)
}

// runSecond starts a Prepare on s1 and, once it is inside the plugin
// (entered closed), a second on s2, and checks whether the second waited.
func runSecond(t *testing.T, s1, s2 *Server, c *resourceapi.ResourceClaim, entered chan struct{}, wantWait bool) {
	t.Helper()
	req := &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: c.Namespace, Name: c.Name, Uid: string(c.UID)}}}
	d1 := drapb.NewDRAPluginClient(kubelettest.Dial(t, s1.PluginSocket()))
	d2 := drapb.NewDRAPluginClient(kubelettest.Dial(t, s2.PluginSocket()))
	go func() { _, _ = d1.NodePrepareResources(context.Background(), req) }()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := d2.NodePrepareResources(ctx, req)
	waited := status.Code(err) == codes.DeadlineExceeded
	if waited != wantWait {
		t.Errorf("second Prepare: %v (waited %v, want %v)", err, waited, wantWait)
	}
}
