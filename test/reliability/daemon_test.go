package reliability

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"

	sriovdaemon "github.com/sriov-dra/sriov-dra/daemon"
	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/internal/apitest"
	"github.com/sriov-dra/sriov-dra/internal/kubelettest"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/hwevents"
	"github.com/sriov-dra/sriov-dra/pkg/kubeapi"
)

// daemon is the node daemon as `sriov-dra driver` runs it (daemon.New and
// Run: the owned checkpoint, attach markers, metrics, the NRI plugin as
// the driver's Detacher, the kubelet plugin serving the real registration
// and DRA gRPC sockets), over the simulated node and a fake API server.
type daemon struct {
	n      *node
	dm     *sriovdaemon.Daemon
	d      *driver.Driver
	plugin *nri.Plugin
	pf     *pfHandle
	cs     *fake.Clientset
	// api serves the daemon's own requests (claim status, Events), with
	// the claims and the node of cs.
	api  *apitest.Server
	kube drapb.DRAPluginClient
	stop func()
}

// logCtx is a context with a logger that does not flood the test output
// (the crash child's output is read on failure only).
func logCtx(t testing.TB) context.Context {
	if os.Getenv(childEnv) != "" {
		return klog.NewContext(context.Background(), klog.Background())
	}
	_, ctx := ktesting.NewTestContext(t)
	return ctx
}

// newAPI is the fake API server with the claims of the test and the node.
func newAPI(claims ...*resourceapi.ResourceClaim) *fake.Clientset {
	objs := []runtime.Object{&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, UID: "node-uid"}}}
	for _, c := range claims {
		objs = append(objs, c)
	}
	return fake.NewClientset(objs...)
}

// ownAPI is the in-memory API server of the daemon's own requests, with
// the claims and nodes of cs, and its client.
func ownAPI(t testing.TB, cs *fake.Clientset) (*apitest.Server, *kubeapi.Client) {
	t.Helper()
	srv := apitest.New(t)
	// Through the tracker: what the clientset records as the daemon's
	// calls (TestLeastPrivilege) stays the daemon's.
	gv := resourceapi.SchemeGroupVersion
	claims, err := cs.Tracker().List(gv.WithResource("resourceclaims"), gv.WithKind("ResourceClaim"), "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range claims.(*resourceapi.ResourceClaimList).Items {
		srv.Add(&claims.(*resourceapi.ResourceClaimList).Items[i])
	}
	nodes, err := cs.Tracker().List(corev1.SchemeGroupVersion.WithResource("nodes"), corev1.SchemeGroupVersion.WithKind("Node"), "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range nodes.(*corev1.NodeList).Items {
		srv.Add(&nodes.(*corev1.NodeList).Items[i])
	}
	api, err := kubeapi.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	return srv, api
}

// startDaemon starts the daemon; an error from daemon.New is returned
// (a daemon that refuses to start), others fail the test.
func startDaemon(t testing.TB, n *node, cs *fake.Clientset) (*daemon, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(logCtx(t))
	fh, err := n.fakePF()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	pf, err := openPFHandle(fh.Netlink, n.pfName(), n.VFs, n.pfFile())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv, api := ownAPI(t, cs)
	regDir, plugDir := filepath.Join(n.Dir, "reg"), filepath.Join(n.Dir, "plug")
	if err := os.MkdirAll(regDir, 0o700); err != nil {
		t.Fatal(err)
	}
	dm, err := sriovdaemon.New(ctx, sriovdaemon.Config{
		NodeName: nodeName, DriverName: driverName, HostRoot: n.root(),
		StateDir: n.stateDir(), CDIDir: n.cdiDir(), AttachMarkerDir: n.markDir(),
		KubeletPluginsDir: plugDir, KubeletRegistryDir: regDir,
		Filter: n.Filter, CNIPath: n.cniPath(),
		NRI:          nri.Config{SocketPath: filepath.Join(n.Dir, "nri.sock"), RetryInterval: 50 * time.Millisecond, TeardownBudget: 5 * time.Second},
		PollInterval: time.Hour,
		API:          api,
		Netlink:      pf,
		// The simulated host's devices are not the test machine's: no
		// device events, the slow rescan is the only one.
		DeviceEvents:      hwevents.Quiet{},
		LostDeviceTimeout: n.LostTimeout,
	})
	if err != nil {
		cancel()
		pf.Close()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- dm.Run(ctx) }()
	select {
	case <-dm.Ready():
	case err := <-done:
		cancel()
		pf.Close()
		t.Fatalf("daemon ended before it served: %v", err)
	}
	d := &daemon{n: n, dm: dm, d: dm.Driver(), plugin: dm.NRI(), pf: pf, cs: cs, api: srv}
	var once sync.Once
	d.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("daemon: %v", err)
			}
			pf.Close()
		})
	}
	t.Cleanup(d.stop)
	d.kube = registerKubelet(t, ctx, dm.Sockets().Registrar)
	return d, nil
}

// registerKubelet is kubelet's plugin watcher: GetInfo and
// NotifyRegistrationStatus on the registration socket; it returns a DRA
// client on the endpoint the plugin named.
func registerKubelet(t testing.TB, ctx context.Context, regSock string) drapb.DRAPluginClient {
	t.Helper()
	_, dra := kubelettest.Register(ctx, t, regSock)
	return dra
}

// startPrepared starts the daemon on n with the API cs and prepares c on
// it, as most cases begin; anything but success ends the test.
func startPrepared(t testing.TB, ctx context.Context, n *node, cs *fake.Clientset, c *resourceapi.ResourceClaim) *daemon {
	t.Helper()
	dm, err := startDaemon(t, n, cs)
	if err != nil {
		t.Fatal(err)
	}
	if msg, _, err := dm.prepare(ctx, c); err != nil || msg != "" {
		t.Fatalf("prepare claim %s: %v %s", c.Name, err, msg)
	}
	return dm
}

// prepare is kubelet's NodePrepareResources for one claim; it returns the
// claim's error ("" for none) and its CDI device IDs.
func (dm *daemon) prepare(ctx context.Context, c *resourceapi.ResourceClaim) (string, []string, error) {
	resp, err := dm.kube.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: c.Namespace, Name: c.Name, Uid: string(c.UID)}}})
	if err != nil {
		return "", nil, err
	}
	r := resp.Claims[string(c.UID)]
	if r == nil {
		return "", nil, fmt.Errorf("no answer for claim %s", c.UID)
	}
	var ids []string
	for _, d := range r.Devices {
		ids = append(ids, d.CdiDeviceIds...)
	}
	return r.Error, ids, nil
}

// unprepare is kubelet's NodeUnprepareResources for one claim.
func (dm *daemon) unprepare(ctx context.Context, c *resourceapi.ResourceClaim) (string, error) {
	resp, err := dm.kube.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: c.Namespace, Name: c.Name, Uid: string(c.UID)}}})
	if err != nil {
		return "", err
	}
	r := resp.Claims[string(c.UID)]
	if r == nil {
		return "", fmt.Errorf("no answer for claim %s", c.UID)
	}
	return r.Error, nil
}

// claim is the ResourceClaim of pod i: VF i with VF settings (MAC, VLAN,
// spoof check, trust), pod MTU and name, and a host-local address. The
// config comes from the claim's DeviceClass (the admin's: its VF settings
// are not bounded by a class policy); tenantClaim adds a tenant's config.
func (n *node) claim(i int, config string) *resourceapi.ResourceClaim {
	if config == "" {
		config = n.goodConfig(i)
	}
	uid := fmt.Sprintf("c0ffee00-0000-4000-8000-%012d", i)
	return &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("net-%d", i), UID: types.UID(uid)},
		Status: resourceapi.ResourceClaimStatus{
			Allocation: &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{
				Results: []resourceapi.DeviceRequestAllocationResult{{Driver: driverName, Pool: nodeName, Device: n.device(i), Request: "nic"}},
				Config:  []resourceapi.DeviceAllocationConfiguration{allocConfig(resourceapi.AllocationConfigSourceClass, config)},
			}},
			ReservedFor: []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: fmt.Sprintf("pod-%d", i), UID: types.UID(n.podUID(i))}},
		},
	}
}

// tenantClass is the DeviceClass of tenantClaim's request.
const tenantClass = "vf-tenant.sriov.dra.dev"

// tenantClaim is pod i's claim on tenantClass, whose admin config is
// classConfig, with tenantConfig written by the claim's owner.
func (n *node) tenantClaim(i int, classConfig, tenantConfig string) *resourceapi.ResourceClaim {
	c := n.claim(i, classConfig)
	c.Spec.Devices.Requests = []resourceapi.DeviceRequest{{Name: "nic", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: tenantClass}}}
	c.Status.Allocation.Devices.Config = append(c.Status.Allocation.Devices.Config, allocConfig(resourceapi.AllocationConfigSourceClaim, tenantConfig))
	return c
}

func allocConfig(src resourceapi.AllocationConfigSource, params string) resourceapi.DeviceAllocationConfiguration {
	return resourceapi.DeviceAllocationConfiguration{
		Source: src,
		DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
			Driver: driverName, Parameters: runtime.RawExtension{Raw: []byte(params)},
		}},
	}
}

func (n *node) podUID(i int) string { return fmt.Sprintf("pod-uid-%s-%d", n.ID, i) }

func (n *node) podMAC(i int) string { return fmt.Sprintf("02:77:%02x:%02x:00:%02x", i/256, i%256, 1) }

func (n *node) goodConfig(i int) string {
	return fmt.Sprintf(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","ifName":"net1","mtu":1400,"mac":%q,"vlan":%d,"spoofChk":false,"trust":true,`+
		`"ipam":{"type":"host-local","ranges":[[{"subnet":"10.77.0.0/16"}]]}}`, n.podMAC(i), 100+i)
}

// sandbox is the runtime's view of pod i.
func (n *node) sandbox(i int) *api.PodSandbox {
	return &api.PodSandbox{
		Id: fmt.Sprintf("sb-%s-%d", n.ID, i), Uid: n.podUID(i), Name: fmt.Sprintf("pod-%d", i), Namespace: "ns",
		Linux: &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: n.netnsPath(i)}}},
	}
}

// waitDetached waits until no device of the pod is recorded in a netns
// (a teardown hook may finish the detach in the background).
func (dm *daemon) waitDetached(uid string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for {
		in := false
		for _, d := range dm.d.State().ForPod(uid) {
			if d.NetnsPath != "" {
				in = true
			}
		}
		if !in {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkInPod asserts pod i's interface is in its netns as configured.
func (dm *daemon) checkInPod(t testing.TB, i int) {
	t.Helper()
	n := dm.n
	l, addrs := linkIn(t, n.netnsPath(i), "net1")
	if l == nil {
		t.Errorf("pod %d: no net1 in %s", i, n.netnsPath(i))
		return
	}
	a := l.Attrs()
	if a.MTU != 1400 || a.HardwareAddr.String() != n.podMAC(i) || len(addrs) != 1 {
		t.Errorf("pod %d net1: mtu %d mac %s addrs %v, want 1400 %s and one address", i, a.MTU, a.HardwareAddr, addrs, n.podMAC(i))
	}
	vf, _ := dm.pf.fake.VF(n.pfName(), i)
	if vf.Vlan != 100+i || vf.Spoofchk || vf.Trust != 1 {
		t.Errorf("pod %d: VF %d admin state vlan %d spoofchk %v trust %d, want vlan %d off on", i, i, vf.Vlan, vf.Spoofchk, vf.Trust, 100+i)
	}
	// The attach took the production path: intent recorded at Prepare,
	// nothing durable written in the hook.
	for _, pd := range dm.d.State().ForPod(n.sandbox(i).Uid) {
		if !pd.AttachStateFromKernel || pd.Original == nil {
			t.Errorf("pod %d: device %s has no attach intent from Prepare (flag %v, original %+v)", i, pd.Device, pd.AttachStateFromKernel, pd.Original)
		}
	}
}
