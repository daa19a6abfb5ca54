//go:build vmtest

package vmtests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/cdi"
	"github.com/sriov-dra/sriov-dra/pkg/claimstatus"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

const (
	driverName = "sriov.dra.dev"
	nodeName   = "vm"
)

// scanner adapts inventory.Scan to driver.Scanner.
type scanner struct{ h nlink.Handle }

func (s scanner) Scan(ctx context.Context) (*inventory.Inventory, error) {
	return inventory.Scan(ctx, inventory.Options{Root: "/", Netlink: s.h, AllowDefaultRoutePF: true})
}

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

func grpcConn(t *testing.T, path string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
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
	// Canceled by a cleanup, after the unprepare cleanup ran (not by a
	// defer, which would run before any cleanup).
	ctx, cancel := context.WithCancel(newCtx(t))
	h := hostHandle(t)
	pf, vf := vfFor(t, 1, 4)
	before := readRaw(t, h, pf, vf.Index)
	devName := inventory.DeviceName(vf.PCI)

	base, err := os.MkdirTemp("", "lc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dirs := map[string]string{}
	for _, d := range []string{"reg", "plug", "state", "cdi", "ipam", "nri"} {
		dirs[d] = filepath.Join(base, d)
		if err := os.MkdirAll(dirs[d], 0o700); err != nil {
			t.Fatal(err)
		}
	}

	// The claim as the scheduler allocated it, reserved for the pod.
	podUID := types.UID("0e7a1c2b-5d6f-4a8b-9c0d-1e2f3a4b5c6d")
	claim := &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "vf", UID: "6b1f0c9e-2a3d-4e5f-8a7b-0c1d2e3f4a5b"},
		Status: resourceapi.ResourceClaimStatus{
			Allocation: &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{
				Results: []resourceapi.DeviceRequestAllocationResult{{Driver: driverName, Pool: nodeName, Device: devName, Request: "nic"}},
				Config: []resourceapi.DeviceAllocationConfiguration{{
					Source: resourceapi.AllocationConfigSourceClaim,
					DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
						Driver: driverName,
						Parameters: runtime.RawExtension{Raw: []byte(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig",
							"ifName":"net1","mtu":1400,"mac":"02:5a:00:00:06:01","vlan":10,"vlanQoS":2,"spoofChk":false,"trust":true,
							"ipam":{"type":"host-local","ranges":[[{"subnet":"10.66.0.0/24"}]]},
							"routes":[{"dst":"10.67.0.0/16","gw":"10.66.0.1"}]}`)},
					}},
				}},
			}},
			ReservedFor: []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: "pod", UID: podUID}},
		},
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, UID: "3c9d8e7f-0000-4000-8000-00000000a0b1"}}
	cs := fake.NewClientset(claim, node)

	// The node daemon, wired as production wires it, over the real host.
	store, bootID, err := driver.NewFileStore(dirs["state"], "/")
	if err != nil {
		t.Fatal(err)
	}
	status := claimstatus.New(cs, claimstatus.Options{DriverName: driverName})
	go status.Run(ctx, 1)
	var plugin *nri.Plugin
	detach := func(ctx context.Context, d nri.PodDevice) error { return plugin.DetachDevice(ctx, d) }
	drv, err := driver.New(ctx, driver.Config{
		NodeName: nodeName, DriverName: driverName, BootID: bootID,
		Store: store, Scanner: scanner{h}, Attributes: inventory.Attributes,
		Host:    driver.NewHost("/", h, detach),
		IPAM:    ipam.New(ipam.Config{CNIPath: []string{"/opt/cni/bin"}, DataDir: dirs["ipam"]}),
		CDI:     cdi.New(dirs["cdi"], "/"),
		Status:  status,
		Netlink: h,
	})
	if err != nil {
		t.Fatalf("driver: %v", err)
	}
	hostOps, err := nri.NewHostOps(nri.HostConfig{Root: "/", Host: h})
	if err != nil {
		t.Fatal(err)
	}
	rt, nriSock := startRuntime(t, dirs["nri"])
	plugin, err = nri.New(nri.Config{SocketPath: nriSock, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, drv.State(), hostOps)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() { _ = plugin.Run(ctx) })

	sockets := driver.PluginSockets(dirs["reg"], dirs["plug"], driverName, "")
	helper, err := kubeletplugin.Start(ctx, drv,
		kubeletplugin.KubeClient(cs), kubeletplugin.NodeName(nodeName), kubeletplugin.DriverName(driverName),
		kubeletplugin.RegistrarDirectoryPath(dirs["reg"]), kubeletplugin.PluginDataDirectoryPath(dirs["plug"]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(helper.Stop)
	wg.Go(func() { _ = drv.Run(ctx, helper) })

	// kubelet: registration, then the DRA calls.
	rc := registerapi.NewRegistrationClient(grpcConn(t, sockets.Registrar))
	info, err := rc.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	if _, err := rc.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatal(err)
	}
	dra := drapb.NewDRAPluginClient(grpcConn(t, info.Endpoint))
	ref := []*drapb.Claim{{Namespace: claim.Namespace, Name: claim.Name, Uid: string(claim.UID)}}
	unprepare := func() error {
		un, err := dra.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: ref})
		if err != nil {
			return fmt.Errorf("NodeUnprepareResources: %w", err)
		}
		if e := un.Claims[string(claim.UID)].GetError(); e != "" {
			return fmt.Errorf("NodeUnprepareResources: %s", e)
		}
		return nil
	}

	// The plugin publishes the node's VFs, this one among them.
	waitFor(t, "a ResourceSlice with "+devName, func() bool {
		l, err := cs.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{})
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

	start := time.Now()
	prep, err := dra.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: ref})
	if err != nil {
		t.Fatalf("NodePrepareResources: %v", err)
	}
	res := prep.Claims[string(claim.UID)]
	if res.GetError() != "" || len(res.GetDevices()) != 1 || res.Devices[0].DeviceName != devName {
		t.Fatalf("NodePrepareResources = %+v", prep)
	}
	t.Logf("prepare took %v, CDI devices %v", time.Since(start), res.Devices[0].CdiDeviceIds)
	prepared := false
	t.Cleanup(func() {
		if prepared {
			if err := unprepare(); err != nil {
				t.Errorf("at cleanup: %v", err)
			}
		}
	})
	prepared = true

	// Prepare changed the VF through the PF as configured.
	adm := readRaw(t, h, pf, vf.Index).Admin
	if adm.Mac.String() != "02:5a:00:00:06:01" || adm.Vlan != 10 || adm.Qos != 2 || adm.Spoofchk || adm.Trust == 0 {
		t.Errorf("after prepare the PF reports %+v for VF %d", adm, vf.Index)
	}
	devs := drv.State().ForPod(string(podUID))
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
	waitFor(t, "the NRI plugin to connect", plugin.Connected)
	start = time.Now()
	if err := rt.r.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: pod}); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	t.Logf("RunPodSandbox took %v", time.Since(start))
	rt.mu.Lock()
	rt.pods[pod.Id] = pod
	rt.mu.Unlock()
	checkInPod(t, nsPath, netattach.Spec{
		PodIfName: spec.PodIfName, MTU: 1400, MAC: "02:5a:00:00:06:01",
		Addresses: spec.Addresses, Routes: []netattach.Route{{Dst: "10.67.0.0/16", GW: "10.66.0.1"}},
	})
	if d := drv.State().ForPod(string(podUID)); len(d) != 1 || !d[0].Attached || d[0].NetnsPath != nsPath {
		t.Errorf("recorded after attach: %+v", d)
	}

	// Teardown: stop the sandbox. The hook returns within the plugin's
	// teardown budget and may finish the detach in the background (a
	// netdev move takes seconds under TCG); the runtime removes the
	// sandbox later, as kubelet's garbage collection does.
	start = time.Now()
	if err := rt.r.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: pod}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	t.Logf("StopPodSandbox took %v", time.Since(start))
	waitFor(t, "the detach to finish", func() bool {
		d := drv.State().ForPod(string(podUID))
		return len(d) == 1 && !d[0].Attached && d[0].NetnsPath == ""
	})
	t.Logf("VF back on the host %v after StopPodSandbox began", time.Since(start))
	if got := readRaw(t, h, pf, vf.Index); got.IfName != before.IfName || got.MTU != before.MTU {
		t.Errorf("after StopPodSandbox the VF netdev is %q mtu %d, want %q mtu %d", got.IfName, got.MTU, before.IfName, before.MTU)
	}
	if err := rt.r.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: pod}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	rt.mu.Lock()
	delete(rt.pods, pod.Id)
	rt.mu.Unlock()
	deleteNetns(t, "vmt-pod")
	start = time.Now()
	if err := unprepare(); err != nil {
		t.Fatal(err)
	}
	prepared = false
	t.Logf("unprepare took %v", time.Since(start))

	waitRaw(t, h, pf, vf.Index, before, waitShort)
	if n := len(drv.State().Claims()); n != 0 {
		t.Errorf("%d claims still recorded after unprepare", n)
	}
	if ents, _ := os.ReadDir(dirs["cdi"]); len(ents) != 0 {
		t.Errorf("CDI specs left after unprepare: %v", ents)
	}
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
