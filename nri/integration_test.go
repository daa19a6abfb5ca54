package nri

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// These tests run the real NRI protocol: the runtime side is the real
// adaptation in process, the plugin connects to it over a unix socket
// with Run. Pod network namespaces are real, the "VF" netdevs are veth
// links, the addresses come from the real host-local IPAM plugin.

func cniPath() []string {
	if p := os.Getenv("SRIOV_DRA_CNI_PATH"); p != "" {
		return filepath.SplitList(p)
	}
	return []string{"/opt/cni/bin", "/usr/lib/cni"}
}

func needHostLocal(t testing.TB) []string {
	t.Helper()
	for _, d := range cniPath() {
		if fi, err := os.Stat(filepath.Join(d, "host-local")); err == nil && fi.Mode().IsRegular() {
			return cniPath()
		}
	}
	t.Skipf("CNI plugin host-local not found in %v: install containernetworking-plugins or set SRIOV_DRA_CNI_PATH", cniPath())
	return nil
}

// world is one test's node: runtime, devices, host operations, IPAM.
type world struct {
	t      testing.TB
	id     string // short random suffix for names
	rt     *testRuntime
	devs   *memDevices
	host   HostOps
	alloc  *ipam.Allocator
	subnet string
	// macvlan: the "VFs" are macvlan links instead of veth.
	macvlan bool
	// fromKernel: pod records the intent to attach as Prepare does (the
	// original read from the host, AttachStateFromKernel), so the hooks
	// write nothing durable.
	fromKernel bool
}

func newWorld(t testing.TB) *world {
	t.Helper()
	needRoot(t)
	paths := needHostLocal(t)
	w := &world{
		t:      t,
		id:     randHex(2),
		rt:     newTestRuntime(t),
		devs:   newMemDevices(nil),
		host:   newTestHostOps(t),
		alloc:  ipam.New(ipam.Config{CNIPath: paths, DataDir: t.TempDir()}),
		subnet: "10.251.0.0/16",
	}
	return w
}

func (w *world) plugin() *Plugin {
	w.t.Helper()
	p, err := New(Config{SocketPath: w.rt.socket, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, RetryInterval: 50 * time.Millisecond}, w.devs, w.host)
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

// pod creates a pod netns and n "VFs" prepared for it, with addresses from
// host-local (what Prepare does), and returns the sandbox the runtime
// will report.
func (w *world) pod(name string, n int) *api.PodSandbox {
	w.t.Helper()
	ctx := context.Background()
	uid := "uid-" + name + "-" + w.id
	path := newNetns(w.t, "sd"+w.id+name)
	for i := range n {
		vf := "sd" + w.id + name + string(rune('a'+i))
		mac := "02:5d:00:00:" + w.id[:2] + ":" + string("0123456789abcdef"[i%16]) + "0"
		if w.macvlan {
			newMacvlanVF(w.t, vf, mac, 1500)
		} else {
			newVF(w.t, vf, mac, 1500)
		}
		dev := "pci-0000-5d-00-" + name + string(rune('a'+i))
		claim := "claim-" + name + "-" + w.id
		res, err := w.alloc.Allocate(ctx, ipam.Request{
			ClaimUID: claim, Device: dev, IfName: "net" + string(rune('1'+i)),
			PodName: name, PodNamespace: "default", PodUID: uid,
			IPAM: json.RawMessage(`{"type":"host-local","ranges":[[{"subnet":"` + w.subnet + `"}]],"routes":[{"dst":"10.252.0.0/16"}]}`),
		})
		if err != nil {
			w.t.Fatal(err)
		}
		w.t.Cleanup(func() { _ = w.alloc.Release(context.Background(), res) })
		pd := PodDevice{
			ClaimUID: claim, ClaimNamespace: "default", ClaimName: "c-" + name, Request: "nic",
			Device: dev, PCIAddress: "0000:5d:00." + string(rune('0'+i)), LinkType: inventory.LinkTypeEthernet,
			Spec: netattach.Spec{
				HostIfName: vf, PodIfName: "net" + string(rune('1'+i)), MTU: 1400,
				MAC:       "02:aa:00:00:" + w.id[:2] + ":" + string("0123456789abcdef"[i%16]) + "1",
				Addresses: res.Addresses(), Routes: res.Routes,
			},
		}
		if w.fromKernel {
			orig, err := w.host.ReadOriginal(ctx, vf, pd.PCIAddress)
			if err != nil {
				w.t.Fatal(err)
			}
			pd.Original, pd.AttachStateFromKernel = &orig, true
		}
		w.devs.add(uid, pd)
	}
	return &api.PodSandbox{
		Id: "sb-" + name + "-" + w.id, Uid: uid, Name: name, Namespace: "default",
		Linux: &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: path}}},
	}
}

// checkInPod asserts every device of the pod is in its netns as the spec says.
func (w *world) checkInPod(pod *api.PodSandbox) {
	w.t.Helper()
	ns := netnsOf(pod)
	for _, d := range w.devs.ForPod(pod.Uid) {
		l, addrs := linkIn(w.t, ns, d.Spec.PodIfName)
		if l == nil {
			w.t.Errorf("%s: no %s in the pod netns %s", d.Device, d.Spec.PodIfName, ns)
			continue
		}
		a := l.Attrs()
		if a.MTU != d.Spec.MTU || a.HardwareAddr.String() != d.Spec.MAC || a.Flags&1 == 0 {
			w.t.Errorf("%s in the pod: mtu %d mac %s flags %v, want mtu %d mac %s up", d.Device, a.MTU, a.HardwareAddr, a.Flags, d.Spec.MTU, d.Spec.MAC)
		}
		for _, want := range d.Spec.Addresses {
			if !slices.Contains(addrs, want) {
				w.t.Errorf("%s in the pod: addresses %v, want %s", d.Device, addrs, want)
			}
		}
		if host, _ := linkIn(w.t, "", d.Spec.HostIfName); host != nil {
			w.t.Errorf("%s: %s still on the host", d.Device, d.Spec.HostIfName)
		}
		if !d.Attached || d.NetnsPath != ns {
			w.t.Errorf("%s: recorded attached=%v netns=%q, want attached in %s", d.Device, d.Attached, d.NetnsPath, ns)
		}
	}
}

// checkOnHost asserts every device of the pod is back on the host as it
// was before, and recorded so.
func (w *world) checkOnHost(pod *api.PodSandbox) {
	w.t.Helper()
	for i, d := range w.devs.ForPod(pod.Uid) {
		l, addrs := linkIn(w.t, "", d.Spec.HostIfName)
		if l == nil {
			w.t.Errorf("%s: %s not back on the host", d.Device, d.Spec.HostIfName)
			continue
		}
		a := l.Attrs()
		wantMAC := "02:5d:00:00:" + w.id[:2] + ":" + string("0123456789abcdef"[i%16]) + "0"
		if a.MTU != 1500 || a.HardwareAddr.String() != wantMAC {
			w.t.Errorf("%s on the host: mtu %d mac %s, want the original 1500 %s", d.Device, a.MTU, a.HardwareAddr, wantMAC)
		}
		if len(addrs) != 0 {
			w.t.Errorf("%s on the host keeps the pod's addresses %v", d.Device, addrs)
		}
		if d.Attached || d.NetnsPath != "" {
			w.t.Errorf("%s: recorded attached=%v netns=%q after detach", d.Device, d.Attached, d.NetnsPath)
		}
	}
}

func TestIntegrationLifecycle(t *testing.T) {
	for _, macvlan := range []bool{false, true} {
		t.Run(map[bool]string{false: "veth", true: "macvlan"}[macvlan], func(t *testing.T) {
			testLifecycle(t, macvlan)
		})
	}
}

func testLifecycle(t *testing.T, macvlan bool) {
	w := newWorld(t)
	w.macvlan = macvlan
	ctx := context.Background()
	pod := w.pod("a", 2)
	p := w.plugin()
	runPlugin(t, p)

	if err := w.rt.runPod(ctx, pod); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	w.checkInPod(pod)
	if err := w.rt.createContainer(ctx, pod, testContainer("ctr-a", pod.Id, "")); err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	w.checkInPod(pod)
	if err := w.rt.stopPod(ctx, pod); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	w.checkOnHost(pod)
	if err := w.rt.removePod(ctx, pod); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	w.checkOnHost(pod)
	if len(p.Pending()) != 0 {
		t.Errorf("pending after a clean teardown: %v", p.Pending())
	}

	// A host-network pod with a netdevice claim fails its sandbox.
	hostPod := w.pod("h", 1)
	hostPod.Linux.Namespaces = nil
	err := w.rt.runPod(ctx, hostPod)
	if err == nil || !strings.Contains(err.Error(), "hostNetwork") {
		t.Fatalf("host-network pod: RunPodSandbox error %v, want one about hostNetwork", err)
	}
	w.checkOnHost(hostPod)
}

func TestIntegrationPluginRestart(t *testing.T) {
	ctx := context.Background()

	t.Run("Synchronize attaches", func(t *testing.T) {
		w := newWorld(t)
		pod := w.pod("s", 1)
		// The plugin is down while the sandbox is created.
		if err := w.rt.runPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if d := w.devs.ForPod(pod.Uid)[0]; d.NetnsPath != "" {
			t.Fatalf("attached without a plugin: %+v", d)
		}
		runPlugin(t, w.plugin())
		w.checkInPod(pod)
		if err := w.rt.createContainer(ctx, pod, testContainer("ctr-s", pod.Id, "")); err != nil {
			t.Fatal(err)
		}
		if err := w.rt.stopPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		w.checkOnHost(pod)
	})

	t.Run("CreateContainer attaches", func(t *testing.T) {
		w := newWorld(t)
		pod := w.pod("c", 1)
		if err := w.rt.runPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		// The runtime lists the sandbox only once it is ready: the plugin
		// connects in between and its Synchronize does not see the pod.
		w.rt.forget(pod)
		runPlugin(t, w.plugin())
		if d := w.devs.ForPod(pod.Uid)[0]; d.NetnsPath != "" {
			t.Fatalf("attached before CreateContainer: %+v", d)
		}
		if err := w.rt.createContainer(ctx, pod, testContainer("ctr-c", pod.Id, "")); err != nil {
			t.Fatalf("CreateContainer: %v", err)
		}
		w.checkInPod(pod)
		if err := w.rt.stopPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		w.checkOnHost(pod)
	})

	t.Run("CreateContainer refuses", func(t *testing.T) {
		w := newWorld(t)
		pod := w.pod("r", 1)
		if err := w.rt.runPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		w.rt.forget(pod)
		// The VF is gone from the host: it cannot be attached.
		d := w.devs.ForPod(pod.Uid)[0]
		run(t, "ip", "link", "set", d.Spec.HostIfName, "name", d.Spec.HostIfName+"x")
		t.Cleanup(func() { run(t, "ip", "link", "del", d.Spec.HostIfName+"x") })
		runPlugin(t, w.plugin())
		err := w.rt.createContainer(ctx, pod, testContainer("ctr-r", pod.Id, ""))
		if err == nil || !strings.Contains(err.Error(), "refuse container") || !strings.Contains(err.Error(), d.Device) {
			t.Fatalf("CreateContainer error %v, want a refusal naming %s", err, d.Device)
		}
	})
}

// withoutHold hides the host operations' NetnsHolder: a plugin that holds
// no netns, as after a restart between the runtime's removal of the netns
// and the teardown.
type withoutHold struct{ HostOps }

// TestIntegrationNetnsGone: CRI-O's order, the runtime removes the pod
// netns (its bind mount) before StopPodSandbox reaches the plugin.
func TestIntegrationNetnsGone(t *testing.T) {
	// The plugin holds the netns from the attach on, so the netdev is
	// still in it and comes back through the hold at once, restored.
	t.Run("held by the plugin", func(t *testing.T) {
		w := newWorld(t)
		ctx := context.Background()
		pod := w.pod("h", 1)
		p := w.plugin()
		runPlugin(t, p)
		if err := w.rt.runPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		w.checkInPod(pod)
		path := netnsOf(pod)
		if got := p.Holds(); !slices.Equal(got, []string{path}) {
			t.Fatalf("plugin holds %v after the attach, want [%s]", got, path)
		}
		run(t, "ip", "netns", "del", filepath.Base(path))

		if err := w.rt.stopPod(ctx, pod); err != nil {
			t.Fatalf("StopPodSandbox failed the teardown: %v", err)
		}
		waitFor(t, "the detach through the hold", func() bool {
			d := w.devs.ForPod(pod.Uid)[0]
			return d.NetnsPath == ""
		})
		w.checkOnHost(pod)
		if got := p.Pending(); len(got) != 0 {
			t.Errorf("pending %v, want nothing", got)
		}
		if got := p.Holds(); len(got) != 0 {
			t.Errorf("plugin still holds %v after the detach", got)
		}
		if err := w.rt.removePod(ctx, pod); err != nil {
			t.Fatalf("RemovePodSandbox failed the teardown: %v", err)
		}
	})

	// Nothing of the plugin's holds it; something else does, so the
	// kernel has not returned the netdev yet: the detach stays pending
	// until it has, then finds the device on the host.
	t.Run("not held by the plugin", func(t *testing.T) {
		w := newWorld(t)
		w.host = withoutHold{w.host}
		ctx := context.Background()
		pod := w.pod("g", 1)
		p := w.plugin()
		runPlugin(t, p)
		if err := w.rt.runPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		w.checkInPod(pod)
		d := w.devs.ForPod(pod.Uid)[0]

		path := netnsOf(pod)
		held, err := netns.GetFromPath(path)
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		run(t, "ip", "netns", "del", filepath.Base(path))

		if err := w.rt.stopPod(ctx, pod); err != nil {
			t.Fatalf("StopPodSandbox failed the teardown: %v", err)
		}
		if err := w.rt.removePod(ctx, pod); err != nil {
			t.Fatalf("RemovePodSandbox failed the teardown: %v", err)
		}
		if got := p.Pending(); len(got[pod.Uid]) != 1 {
			t.Fatalf("pending %v, want the pod's netns recorded", got)
		}

		// The last holder goes: the kernel returns a physical netdev to the
		// host under its pod name. Do that for the veth "VF".
		moveToHost(t, held, d.Spec.PodIfName)

		waitFor(t, "the retried detach", func() bool { return len(p.Pending()) == 0 })
		w.checkOnHost(pod)
	})
}

// moveToHost moves the link named name from the netns ns to the host netns.
func moveToHost(t testing.TB, ns netns.NsHandle, name string) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	host, err := netns.GetFromPath(netattach.HostNetnsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	if err := h.LinkSetNsFd(l, int(host)); err != nil {
		t.Fatal(err)
	}
}

func TestIntegrationRuntimeRestart(t *testing.T) {
	w := newWorld(t)
	w.rt.stop()
	w.rt = newKillableRuntime(t)
	ctx := context.Background()
	kept, lost := w.pod("k", 1), w.pod("l", 1)
	p := w.plugin()
	runPlugin(t, p)
	for _, pod := range []*api.PodSandbox{kept, lost} {
		if err := w.rt.runPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		w.checkInPod(pod)
	}

	// The runtime goes away; while it is down, one pod goes away too.
	syncs := p.syncs.Load()
	w.rt.stop()
	waitFor(t, "the plugin to see the connection drop", func() bool { return !p.Connected() })
	w.rt.forget(lost)
	time.Sleep(50 * time.Millisecond) // a few failed reconnects
	w.rt.start(t)

	waitFor(t, "the plugin to reconnect and synchronise", func() bool { return p.syncs.Load() > syncs })
	w.checkInPod(kept)
	w.checkOnHost(lost)

	// The new runtime connection serves hooks.
	if err := w.rt.createContainer(ctx, kept, testContainer("ctr-k", kept.Id, "")); err != nil {
		t.Fatal(err)
	}
	if err := w.rt.stopPod(ctx, kept); err != nil {
		t.Fatal(err)
	}
	w.checkOnHost(kept)
}

// TestRunWaitsForRuntime: Run started before the runtime keeps trying, then
// connects and serves hooks; cancelling its context ends it cleanly. No
// root needed: the host is the in-memory fake.
func TestRunWaitsForRuntime(t *testing.T) {
	dir, err := os.MkdirTemp("", "nri")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt := &testRuntime{socket: filepath.Join(dir, "nri.sock"), dir: dir, pods: map[string]*api.PodSandbox{}, ctrs: map[string]*api.Container{}}
	t.Cleanup(rt.stop)

	_, devs, host, _ := oneEthDevice()
	var observed latencies
	p, err := New(Config{SocketPath: rt.socket, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		ObserveHook: func(h string, took time.Duration, _ error) {
			if h == "RunPodSandbox" {
				observed.add(took)
			}
		}}, devs, host)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	time.Sleep(100 * time.Millisecond) // several failed attempts
	if p.Connected() {
		t.Fatal("connected without a runtime")
	}
	select {
	case err := <-done:
		t.Fatalf("Run gave up without a runtime: %v", err)
	default:
	}
	rt.start(t)
	waitFor(t, "the plugin to connect", func() bool { return p.syncs.Load() > 0 })
	if !p.Connected() {
		t.Error("synchronised but not connected")
	}
	pod := testSandbox(testPod, "sb1", "/run/netns/a")
	if err := rt.runPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if ns, name := host.where("vf1"); ns != "/run/netns/a" || name != "net1" {
		t.Errorf("after RunPodSandbox over NRI the device is %q in %q", name, ns)
	}
	if len(observed.d) != 1 {
		t.Errorf("ObserveHook saw %d RunPodSandbox, want 1", len(observed.d))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if p.Connected() {
		t.Error("still connected after Run returned")
	}
}

// TestIntegrationIRQAffinity: irqAffinity pins the VF's IRQs to the union
// of the cpusets of the pod's containers, as they come over NRI. The IRQ
// files are a fixture tree (root seam); the attach is real.
func TestIntegrationIRQAffinity(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	root := t.TempDir()
	var err error
	if w.host, err = NewHostOps(HostConfig{Root: root, Netlink: nlinktest.HostHandle(t)}); err != nil {
		t.Fatal(err)
	}
	pod := w.pod("i", 1)
	d := w.devs.ForPod(pod.Uid)[0]
	w.devs.mu.Lock()
	w.devs.devs[key(d.ClaimUID, d.Device)].IRQAffinity = true
	w.devs.mu.Unlock()
	irqFile := func(n string) string { return filepath.Join(root, "proc/irq", n, "smp_affinity_list") }
	for _, n := range []string{"120", "121"} {
		if err := os.MkdirAll(filepath.Join(root, "sys/bus/pci/devices", d.PCIAddress, "msi_irqs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "sys/bus/pci/devices", d.PCIAddress, "msi_irqs", n), []byte("msix\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(irqFile(n)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(irqFile(n), []byte("0-15\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runPlugin(t, w.plugin())
	if err := w.rt.runPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ id, cpus, want string }{
		{"init", "", "0-15"},
		{"app", "4-5", "4-5"},
		{"sidecar", "7", "4-5,7"},
	} {
		if err := w.rt.createContainer(ctx, pod, testContainer(c.id, pod.Id, c.cpus)); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"120", "121"} {
			b, err := os.ReadFile(irqFile(n))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(b)); got != c.want {
				t.Errorf("after container %s: IRQ %s affinity %q, want %q", c.id, n, got, c.want)
			}
		}
	}
	w.checkInPod(pod)
	if err := w.rt.stopPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	w.checkOnHost(pod)
}
