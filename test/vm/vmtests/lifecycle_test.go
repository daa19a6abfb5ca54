//go:build vmtest

package vmtests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"

	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/sriov-dra/sriov-dra/daemon"
	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/internal/apitest"
	"github.com/sriov-dra/sriov-dra/internal/kubelettest"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/irq"
	"github.com/sriov-dra/sriov-dra/pkg/kubeapi"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

const (
	driverName = "sriov.dra.dev"
	nodeName   = "vm"
)

// nriRuntime is the runtime side of NRI in process: the real adaptation,
// with the pod list a runtime keeps for Synchronize.
type nriRuntime struct {
	mu   sync.Mutex
	pods map[string]*api.PodSandbox
	r    *adaptation.Adaptation
}

func startRuntime(t *testing.T, dir string) (*nriRuntime, string) {
	t.Helper()
	rt := &nriRuntime{pods: map[string]*api.PodSandbox{}}
	// A runtime's plugin request timeout is configurable (containerd:
	// plugin_request_timeout, 2s by default). Under TCG a netdev move
	// takes 1-5 s, so this emulated runtime allows 30 s: the VM tests
	// check what the kernel does, not hook latency (the benchmarks do).
	adaptation.SetPluginRequestTimeout(30 * time.Second)
	sock := filepath.Join(dir, "nri.sock")
	sync := func(ctx context.Context, cb adaptation.SyncCB) error {
		rt.mu.Lock()
		var pods []*api.PodSandbox
		for _, p := range rt.pods {
			pods = append(pods, p)
		}
		rt.mu.Unlock()
		_, err := cb(ctx, pods, nil)
		return err
	}
	update := func(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) { return nil, nil }
	r, err := adaptation.New("vmtest-runtime", "0.0.1", sync, update,
		adaptation.WithPluginPath(filepath.Join(dir, "plugins")),
		adaptation.WithPluginConfigPath(filepath.Join(dir, "conf.d")),
		adaptation.WithSocketPath(sock))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	rt.r = r
	return rt, sock
}

func (rt *nriRuntime) add(pod *api.PodSandbox) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.pods[pod.Id] = pod
}

func (rt *nriRuntime) remove(pod *api.PodSandbox) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	delete(rt.pods, pod.Id)
}

// node is the node daemon as production builds it (daemon.New and Run:
// the owned checkpoint, attach markers, metrics, the NRI plugin as the
// driver's Detacher) over the real host, with kubelet's and the runtime's
// sides played by the test: an in-memory API server over HTTP, a gRPC
// client on the DRA plugin's socket, and the NRI adaptation in process.
type node struct {
	t       *testing.T
	ctx     context.Context
	api     *kubeapi.Client
	dm      *daemon.Daemon
	drv     *driver.Driver
	plugin  *nri.Plugin
	rt      *nriRuntime
	dra     drapb.DRAPluginClient
	cdiDir  string
	markDir string
}

// vfClaim is a claim whose config comes from its DeviceClass (the
// admin's, so its VF settings are not bounded by a class policy).
func vfClaim(name, uid string, podUID types.UID, devName, params string) *resourceapi.ResourceClaim {
	return &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID(uid)},
		Status: resourceapi.ResourceClaimStatus{
			Allocation: &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{
				Results: []resourceapi.DeviceRequestAllocationResult{{Driver: driverName, Pool: nodeName, Device: devName, Request: "nic"}},
				Config: []resourceapi.DeviceAllocationConfiguration{{
					Source: resourceapi.AllocationConfigSourceClass,
					DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
						Driver: driverName, Parameters: runtime.RawExtension{Raw: []byte(params)},
					}},
				}},
			}},
			ReservedFor: []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: "pod", UID: podUID}},
		},
	}
}

func startNode(t *testing.T, h nlink.Handle, claim *resourceapi.ResourceClaim, opts ...func(*daemon.Config)) *node {
	t.Helper()
	base, err := os.MkdirTemp("", "lc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	return startNodeAt(t, h, claim, base, opts...)
}

// startNodeAt is startNode with its state, CDI, IPAM and socket dirs
// under base, which the caller owns: a daemon restarted on the same base
// finds what the one before it left (the crash matrix).
func startNodeAt(t *testing.T, h nlink.Handle, claim *resourceapi.ResourceClaim, base string, opts ...func(*daemon.Config)) *node {
	t.Helper()
	// Canceled by a cleanup, after the unprepare cleanup ran (not by a
	// defer, which would run before any cleanup).
	ctx, cancel := context.WithCancel(newCtx(t))
	// A runtime that died with a crashed daemon left its socket.
	if err := os.Remove(filepath.Join(base, "nri", "nri.sock")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	dirs := map[string]string{}
	for _, d := range []string{"reg", "plug", "state", "cdi", "attached", "nri"} {
		dirs[d] = filepath.Join(base, d)
		if err := os.MkdirAll(dirs[d], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	k8sNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, UID: "3c9d8e7f-0000-4000-8000-00000000a0b1"}}
	n := &node{t: t, ctx: ctx, cdiDir: dirs["cdi"], markDir: dirs["attached"]}

	// The daemon's requests go over HTTP to an in-memory API server with
	// the claim and the node.
	srv := apitest.New(t)
	srv.Add(claim, k8sNode)
	api, err := kubeapi.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	n.api = api

	var nriSock string
	n.rt, nriSock = startRuntime(t, dirs["nri"])
	cfg := daemon.Config{
		NodeName: nodeName, DriverName: driverName, HostRoot: "/",
		StateDir: dirs["state"], CDIDir: dirs["cdi"], AttachMarkerDir: dirs["attached"],
		KubeletPluginsDir: dirs["plug"], KubeletRegistryDir: dirs["reg"],
		CNIPath: []string{"/opt/cni/bin"},
		NRI:     nri.Config{SocketPath: nriSock, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
		API:     api, Netlink: h,
		// The VM's NICs carry its default route.
		AllowDefaultRoutePF: true,
	}
	for _, o := range opts {
		o(&cfg)
	}
	n.dm, err = daemon.New(ctx, cfg)
	if err != nil {
		t.Fatalf("daemon: %v", err)
	}
	n.drv, n.plugin = n.dm.Driver(), n.dm.NRI()
	done := make(chan error, 1)
	go func() { done <- n.dm.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	select {
	case <-n.dm.Ready():
	case err := <-done:
		done <- err
		t.Fatalf("daemon ended before it served: %v", err)
	}

	// kubelet's plugin watcher: registration, then the DRA service.
	_, n.dra = kubelettest.Register(ctx, t, n.dm.Sockets().Registrar)
	waitFor(t, "the NRI plugin to connect", n.plugin.Connected)
	return n
}

// attachMarked reports whether the claim's device has its "attached"
// marker (the file its containers bind-mount).
func (n *node) attachMarked(claimUID, device string) bool {
	n.t.Helper()
	name, err := attachmark.Name(claimUID, device)
	if err != nil {
		n.t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(n.markDir, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		n.t.Fatal(err)
	}
	return err == nil
}

// published waits until the node's ResourceSlice lists devName.
func (n *node) published(devName string) {
	n.t.Helper()
	waitFor(n.t, "a ResourceSlice with "+devName, func() bool {
		l, err := n.api.ListSlices(n.ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, sl := range l.Items {
			for _, d := range sl.Spec.Devices {
				if d.Name == devName && sl.Spec.Driver == driverName && sl.Spec.Pool.Name == nodeName {
					return true
				}
			}
		}
		return false
	})
}

// prepare is kubelet's NodePrepareResources for the claim; it registers
// the matching unprepare as a cleanup until unprepare is called.
func (n *node) prepare(claim *resourceapi.ResourceClaim) (*drapb.NodePrepareResourceResponse, *bool) {
	n.t.Helper()
	ref := []*drapb.Claim{{Namespace: claim.Namespace, Name: claim.Name, Uid: string(claim.UID)}}
	start := time.Now()
	resp, err := n.dra.NodePrepareResources(n.ctx, &drapb.NodePrepareResourcesRequest{Claims: ref})
	if err != nil {
		n.t.Fatalf("NodePrepareResources: %v", err)
	}
	res := resp.Claims[string(claim.UID)]
	if res.GetError() != "" || len(res.GetDevices()) != 1 {
		n.t.Fatalf("NodePrepareResources = %+v", resp)
	}
	n.t.Logf("prepare took %v, CDI devices %v", time.Since(start), res.Devices[0].CdiDeviceIds)
	prepared := true
	n.t.Cleanup(func() {
		if !prepared {
			return
		}
		// kubelet retries a failed unprepare; so does the cleanup (a
		// netdev the kernel returns from a deleted netns comes back
		// asynchronously).
		deadline := time.Now().Add(waitLong)
		for {
			err := n.unprepare(claim)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				n.t.Errorf("at cleanup: %v", err)
				return
			}
			time.Sleep(time.Second)
		}
	})
	return res, &prepared
}

func (n *node) unprepare(claim *resourceapi.ResourceClaim) error {
	ref := []*drapb.Claim{{Namespace: claim.Namespace, Name: claim.Name, Uid: string(claim.UID)}}
	start := time.Now()
	un, err := n.dra.NodeUnprepareResources(n.ctx, &drapb.NodeUnprepareResourcesRequest{Claims: ref})
	if err != nil {
		return fmt.Errorf("NodeUnprepareResources: %w", err)
	}
	if e := un.Claims[string(claim.UID)].GetError(); e != "" {
		return fmt.Errorf("NodeUnprepareResources: %s", e)
	}
	n.t.Logf("unprepare took %v", time.Since(start))
	return nil
}

// TestNodeLifecycle runs the node side of a pod's life on a real VF:
// kubelet's NodePrepareResources over the DRA plugin's gRPC socket (a
// client-go fake as API server holding the allocated claim), the
// runtime's RunPodSandbox through the in-process NRI adaptation (the
// plugin connects over its socket), then StopPodSandbox,
// RemovePodSandbox and NodeUnprepareResources. Afterwards the VF must be
// byte for byte what it was: the PF's VF info, driver, netdev name, MAC,
// MTU and up flag.
func TestNodeLifecycle(t *testing.T) {
	h := hostHandle(t)
	pf, vf := vfFor(t, 1, 4)
	// Up on the host, so igbvf has requested its IRQs and the snapshot
	// records their affinity (a down igbvf VF has none yet).
	setVFUp(t, h, vf.IfName)
	before := readRaw(t, h, pf, vf.Index)
	irqBefore, err := irq.Affinities("/", vf.PCI)
	if err != nil || len(irqBefore) == 0 {
		t.Fatalf("IRQ affinity of the up VF: %v, %v", irqBefore, err)
	}
	devName := inventory.DeviceName(vf.PCI)
	podUID := types.UID("0e7a1c2b-5d6f-4a8b-9c0d-1e2f3a4b5c6d")
	claim := vfClaim("vf", "6b1f0c9e-2a3d-4e5f-8a7b-0c1d2e3f4a5b", podUID, devName, `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig",
		"ifName":"net1","mtu":1400,"mac":"02:5a:00:00:06:01","vlan":10,"vlanQoS":2,"spoofChk":false,"trust":true,
		"ipam":{"type":"host-local","ranges":[[{"subnet":"10.66.0.0/24"}]]},
		"routes":[{"dst":"10.67.0.0/16","gw":"10.66.0.1"}],"irqAffinity":"container"}`)
	n := startNode(t, h, claim)
	n.published(devName)

	res, prepared := n.prepare(claim)
	if res.Devices[0].DeviceName != devName {
		t.Fatalf("prepared device %s, want %s", res.Devices[0].DeviceName, devName)
	}
	// Prepare changed the VF through the PF as configured.
	adm := readRaw(t, h, pf, vf.Index).Admin
	if adm.Mac.String() != "02:5a:00:00:06:01" || adm.Vlan != 10 || adm.Qos != 2 || adm.Spoofchk || adm.Trust == 0 {
		t.Errorf("after prepare the PF reports %+v for VF %d", adm, vf.Index)
	}
	devs := n.drv.State().ForPod(string(podUID))
	if len(devs) != 1 || devs[0].Spec.HostIfName == "" || len(devs[0].Spec.Addresses) != 1 {
		t.Fatalf("prepared pod devices %+v", devs)
	}
	spec := devs[0].Spec
	t.Logf("pod device spec %+v", spec)

	// The runtime creates the sandbox: the plugin attaches the VF.
	nsPath := newNetns(t, "vmt-pod")
	pod := &api.PodSandbox{
		Id: "sandbox-1", Uid: string(podUID), Name: "pod", Namespace: "default",
		Linux: &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: nsPath}}},
	}
	start := time.Now()
	if err := n.rt.r.RunPodSandbox(n.ctx, &api.RunPodSandboxRequest{Pod: pod}); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	t.Logf("RunPodSandbox took %v", time.Since(start))
	n.rt.add(pod)
	checkInPod(t, nsPath, netattach.Spec{
		PodIfName: spec.PodIfName, MTU: 1400, MAC: "02:5a:00:00:06:01",
		Addresses: spec.Addresses, Routes: []netattach.Route{{Dst: "10.67.0.0/16", GW: "10.66.0.1"}},
	})
	if d := n.drv.State().ForPod(string(podUID)); len(d) != 1 || !d[0].Attached || d[0].NetnsPath != nsPath {
		t.Errorf("recorded after attach: %+v", d)
	} else if !d[0].AttachStateFromKernel || d[0].Original == nil {
		// Prepare recorded the intent: the hook wrote nothing to disk.
		t.Errorf("no attach intent from Prepare: %+v", d[0])
	}
	// Fail closed: the marker the container's CDI spec bind-mounts exists
	// only while the VF is in the pod.
	if !n.attachMarked(string(claim.UID), devName) {
		t.Errorf("no attach marker for %s after RunPodSandbox", devName)
	}

	// A container on CPU 1: irqAffinity container pins the VF's IRQs there.
	ctr := &api.Container{Id: "ctr-1", PodSandboxId: pod.Id, Name: "app",
		Linux: &api.LinuxContainer{Resources: &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: "1"}}}}
	if _, err := n.rt.r.CreateContainer(n.ctx, &api.CreateContainerRequest{Pod: pod, Container: ctr}); err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	pinned, err := irq.Affinities("/", vf.PCI)
	if err != nil {
		t.Fatal(err)
	}
	for n, cpus := range pinned {
		if cpus != "1" {
			t.Errorf("IRQ %d of the VF has affinity %q after CreateContainer on CPU 1, want 1", n, cpus)
		}
	}
	t.Logf("IRQ affinity before %v, in the pod %v", irqBefore, pinned)

	// Teardown: stop the sandbox. The hook returns within the plugin's
	// teardown budget and may finish the detach in the background (a
	// netdev move takes seconds under TCG); the runtime removes the
	// sandbox later, as kubelet's garbage collection does.
	start = time.Now()
	if err := n.rt.r.StopPodSandbox(n.ctx, &api.StopPodSandboxRequest{Pod: pod}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	t.Logf("StopPodSandbox took %v", time.Since(start))
	waitFor(t, "the detach to finish", func() bool {
		d := n.drv.State().ForPod(string(podUID))
		return len(d) == 1 && !d[0].Attached && d[0].NetnsPath == ""
	})
	t.Logf("VF back on the host %v after StopPodSandbox began", time.Since(start))
	if n.attachMarked(string(claim.UID), devName) {
		t.Errorf("attach marker of %s left after the detach", devName)
	}
	if got := readRaw(t, h, pf, vf.Index); got.IfName != before.IfName || got.MTU != before.MTU {
		t.Errorf("after StopPodSandbox the VF netdev is %q mtu %d, want %q mtu %d", got.IfName, got.MTU, before.IfName, before.MTU)
	}
	if err := n.rt.r.RemovePodSandbox(n.ctx, &api.RemovePodSandboxRequest{Pod: pod}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	n.rt.remove(pod)
	deleteNetns(t, "vmt-pod")
	if err := n.unprepare(claim); err != nil {
		t.Fatal(err)
	}
	*prepared = false

	waitRaw(t, h, pf, vf.Index, before, waitShort)
	if after, err := irq.Affinities("/", vf.PCI); err != nil || !maps.Equal(after, irqBefore) {
		t.Errorf("IRQ affinity after unprepare %v (%v), want %v", after, err, irqBefore)
	}
	if c := len(n.drv.State().Claims()); c != 0 {
		t.Errorf("%d claims still recorded after unprepare", c)
	}
	if ents, _ := os.ReadDir(n.cdiDir); len(ents) != 0 {
		t.Errorf("CDI specs left after unprepare: %v", ents)
	}
}

// TestNodeLifecycleVFIO runs a `driver: vfio-pci` claim through the same
// node: Prepare binds the real VF to vfio-pci and writes a CDI spec whose
// device nodes exist, the NRI hooks leave it alone (no netdev), and
// Unprepare gives it back to igbvf with its settings restored.
func TestNodeLifecycleVFIO(t *testing.T) {
	h := hostHandle(t)
	pf, vf := vfFor(t, 0, 4)
	if _, err := os.Stat(filepath.Join("/sys/bus/pci/devices", vf.PCI, "iommu_group")); err != nil {
		t.Skip("booted without an IOMMU (VMTEST_IOMMU=0): vfio-pci cannot bind with this kernel")
	}
	before := readRaw(t, h, pf, vf.Index)
	devName := inventory.DeviceName(vf.PCI)
	podUID := types.UID("7d2c4b1a-0e9f-4c8d-a7b6-5e4f3a2b1c0d")
	claim := vfClaim("dpdk", "2f4e6a8c-1b3d-4f5a-9c7e-0d2f4a6c8e1b", podUID, devName,
		`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","driver":"vfio-pci","mac":"02:5a:00:00:07:01","vlan":20}`)
	n := startNode(t, h, claim)
	n.published(devName)

	_, prepared := n.prepare(claim)
	if d := readLink(t, filepath.Join("/sys/bus/pci/devices", vf.PCI, "driver")); d != "vfio-pci" {
		t.Errorf("after prepare %s is bound to %q, want vfio-pci", vf.PCI, d)
	}
	adm := readRaw(t, h, pf, vf.Index).Admin
	if adm.Mac.String() != "02:5a:00:00:07:01" || adm.Vlan != 20 {
		t.Errorf("after prepare the PF reports %+v for VF %d", adm, vf.Index)
	}
	group := readLink(t, filepath.Join("/sys/bus/pci/devices", vf.PCI, "iommu_group"))
	nodes := cdiDeviceNodes(t, n.cdiDir)
	t.Logf("CDI device nodes %v (IOMMU group %s)", nodes, group)
	want := map[string]bool{"/dev/vfio/" + group: false, "/dev/vfio/vfio": false}
	for _, p := range nodes {
		if _, ok := want[p]; ok {
			want[p] = true
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			t.Errorf("CDI device node %s: not a character device (%v)", p, err)
		}
	}
	for p, seen := range want {
		if !seen {
			t.Errorf("CDI spec lacks %s", p)
		}
	}

	// The runtime's hooks: nothing to move for a vfio device.
	nsPath := newNetns(t, "vmt-dpdk")
	pod := &api.PodSandbox{
		Id: "sandbox-2", Uid: string(podUID), Name: "pod", Namespace: "default",
		Linux: &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: nsPath}}},
	}
	if err := n.rt.r.RunPodSandbox(n.ctx, &api.RunPodSandboxRequest{Pod: pod}); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	n.rt.add(pod)
	if err := n.rt.r.StopPodSandbox(n.ctx, &api.StopPodSandboxRequest{Pod: pod}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if err := n.rt.r.RemovePodSandbox(n.ctx, &api.RemovePodSandboxRequest{Pod: pod}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	n.rt.remove(pod)
	deleteNetns(t, "vmt-dpdk")

	if err := n.unprepare(claim); err != nil {
		t.Fatal(err)
	}
	*prepared = false
	// With no admin MAC on the PF igbvf makes up a new netdev MAC when it
	// probes the VF again; Unprepare gives the netdev its recorded name,
	// MAC and MTU back, so the VF is exactly as before.
	want2 := before
	waitRaw(t, h, pf, vf.Index, want2, waitShort)
	if ents, _ := os.ReadDir(n.cdiDir); len(ents) != 0 {
		t.Errorf("CDI specs left after unprepare: %v", ents)
	}
}

// cdiDeviceNodes reads the device node paths of every CDI spec in dir.
func cdiDeviceNodes(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var spec cdispec.Spec
		if err := json.Unmarshal(b, &spec); err != nil {
			t.Fatalf("CDI spec %s: %v", e.Name(), err)
		}
		for _, d := range spec.Devices {
			for _, dn := range d.ContainerEdits.DeviceNodes {
				out = append(out, dn.Path)
			}
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitShort)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
