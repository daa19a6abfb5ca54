package nri

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

const testPod = "pod-uid-1"

func testSandbox(uid, id, netns string) *api.PodSandbox {
	pod := &api.PodSandbox{Id: id, Uid: uid, Name: "p-" + uid, Namespace: "ns", Linux: &api.LinuxPodSandbox{}}
	pod.Linux.Namespaces = []*api.LinuxNamespace{{Type: "ipc", Path: "/proc/1/ns/ipc"}}
	if netns != "" {
		pod.Linux.Namespaces = append(pod.Linux.Namespaces, &api.LinuxNamespace{Type: "network", Path: netns})
	}
	return pod
}

func testContainer(id, sandboxID, cpus string) *api.Container {
	c := &api.Container{Id: id, PodSandboxId: sandboxID, Name: "c-" + id}
	if cpus != "" {
		c.Linux = &api.LinuxContainer{Resources: &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: cpus}}}
	}
	return c
}

// oneEthDevice is the fakes most hook tests start from: a recorder, the
// in-memory Devices holding ethDevice("1") for testPod, and a fake host
// with that device's netdev (MTU 1500).
func oneEthDevice() (*recorder, *memDevices, *fakeHost, PodDevice) {
	rec := &recorder{}
	devs, host := newMemDevices(rec), newFakeHost(rec)
	dev := ethDevice("1")
	devs.add(testPod, dev)
	host.addLink(dev.Spec.HostIfName, "02:00:00:00:00:01", 1500)
	return rec, devs, host, dev
}

func ethDevice(n string) PodDevice {
	return PodDevice{
		ClaimUID: "claim-" + n, ClaimNamespace: "ns", ClaimName: "c" + n, Request: "nic",
		Device: "pci-0000-3b-02-" + n, PCIAddress: "0000:3b:02." + n,
		LinkType: inventory.LinkTypeEthernet,
		Spec:     netattach.Spec{HostIfName: "vf" + n, PodIfName: "net" + n, MTU: 9000, Addresses: []string{"10.1.0." + n + "/24"}},
	}
}

type fixture struct {
	rec  *recorder
	devs *memDevices
	host *fakeHost
	p    *Plugin
}

func newFixture(t *testing.T, devs ...PodDevice) *fixture {
	t.Helper()
	rec := &recorder{}
	f := &fixture{rec: rec, devs: newMemDevices(rec), host: newFakeHost(rec)}
	for _, d := range devs {
		f.devs.add(testPod, d)
		f.host.addLink(d.Spec.HostIfName, "02:00:00:00:00:0"+d.Device[len(d.Device)-1:], 1500)
	}
	p, err := New(Config{}, f.devs, f.host)
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	return f
}

func TestRunPodSandboxOrder(t *testing.T) {
	rdmaEth := ethDevice("1")
	rdmaEth.RDMAIsolation, rdmaEth.RDMADevice = true, "mlx5_1"
	ib := ethDevice("1")
	ib.LinkType, ib.RDMAIsolation, ib.RDMADevice = inventory.LinkTypeInfiniBand, true, "mlx5_1"
	ibShared := ethDevice("1")
	ibShared.LinkType, ibShared.RDMADevice = inventory.LinkTypeInfiniBand, "mlx5_1"
	vfio := ethDevice("1")
	vfio.VFIO = true

	tests := []struct {
		name string
		dev  PodDevice
		want []string
	}{
		{"ethernet", ethDevice("1"), []string{
			"host ReadOriginal vf1",
			"rec Attaching pci-0000-3b-02-1 /run/netns/a orig=vf1",
			"host Attach vf1 /run/netns/a as net1",
			"rec Attached pci-0000-3b-02-1 rdma=false",
		}},
		{"ethernet, RDMA after the netdev", rdmaEth, []string{
			"host ReadOriginal vf1",
			"rec Attaching pci-0000-3b-02-1 /run/netns/a orig=vf1",
			"host Attach vf1 /run/netns/a as net1",
			"host MoveRDMA mlx5_1 /run/netns/a",
			"rec Attached pci-0000-3b-02-1 rdma=true",
		}},
		{"infiniband, RDMA before the netdev", ib, []string{
			"host ReadOriginal vf1",
			"rec Attaching pci-0000-3b-02-1 /run/netns/a orig=vf1",
			"host MoveRDMA mlx5_1 /run/netns/a",
			"host Attach vf1 /run/netns/a as net1",
			"rec Attached pci-0000-3b-02-1 rdma=true",
		}},
		{"infiniband, shared RDMA: not moved", ibShared, []string{
			"host ReadOriginal vf1",
			"rec Attaching pci-0000-3b-02-1 /run/netns/a orig=vf1",
			"host Attach vf1 /run/netns/a as net1",
			"rec Attached pci-0000-3b-02-1 rdma=false",
		}},
		{"vfio: nothing to move", vfio, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.dev)
			if err := f.p.RunPodSandbox(context.Background(), testSandbox(testPod, "sb1", "/run/netns/a")); err != nil {
				t.Fatal(err)
			}
			if got := f.rec.take(); !slices.Equal(got, tc.want) {
				t.Errorf("calls:\n got %q\nwant %q", got, tc.want)
			}
			if tc.dev.VFIO {
				return
			}
			// Teardown: RDMA first, then the netdev, then the record.
			if err := f.p.StopPodSandbox(context.Background(), testSandbox(testPod, "sb1", "/run/netns/a")); err != nil {
				t.Fatal(err)
			}
			want := []string{"host Detach /run/netns/a net1 to vf1", "rec Detached pci-0000-3b-02-1"}
			if tc.dev.RDMAIsolation {
				want = append([]string{"host ReturnRDMA mlx5_1 /run/netns/a"}, want...)
			}
			if got := f.rec.take(); !slices.Equal(got, want) {
				t.Errorf("teardown calls:\n got %q\nwant %q", got, want)
			}
			if ns, name := f.host.where("vf1"); ns != "" || name != "vf1" {
				t.Errorf("after stop the netdev is %q in netns %q, want vf1 on the host", name, ns)
			}
		})
	}
}

func TestRunPodSandboxRefusesHostNetwork(t *testing.T) {
	f := newFixture(t, ethDevice("1"))
	err := f.p.RunPodSandbox(context.Background(), testSandbox(testPod, "sb1", ""))
	if err == nil || !strings.Contains(err.Error(), "hostNetwork") || !strings.Contains(err.Error(), "pci-0000-3b-02-1") {
		t.Fatalf("error %v: want one naming hostNetwork and the device", err)
	}
	if got := f.rec.take(); len(got) != 0 {
		t.Errorf("host-network pod: calls %q, want none", got)
	}

	// A vfio-pci device is fine in a host-network pod.
	vfio := ethDevice("2")
	vfio.VFIO = true
	f = newFixture(t, vfio)
	if err := f.p.RunPodSandbox(context.Background(), testSandbox(testPod, "sb1", "")); err != nil {
		t.Errorf("vfio device in a host-network pod: %v", err)
	}
}

func TestRunPodSandboxIdempotent(t *testing.T) {
	f := newFixture(t, ethDevice("1"))
	pod := testSandbox(testPod, "sb1", "/run/netns/a")
	for range 2 {
		if err := f.p.RunPodSandbox(context.Background(), pod); err != nil {
			t.Fatal(err)
		}
	}
	got := f.rec.take()
	if n := len(only(got, "host Attach")); n != 1 {
		t.Errorf("two RunPodSandbox: %d attaches, want 1 (calls %q)", n, got)
	}
	if last := got[len(got)-1]; last != "host InNetns /run/netns/a net1" {
		t.Errorf("second RunPodSandbox: last call %q, want only the InNetns check", last)
	}
}

func TestRunPodSandboxFailureRollsBack(t *testing.T) {
	tests := []struct {
		name   string
		failOn string
		onDevs bool
	}{
		{"attach of the second device", "Attach", false},
		{"RDMA move of the second device", "MoveRDMA", false},
		{"record of the second attach", "Attached", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d2 := ethDevice("2")
			d2.RDMAIsolation, d2.RDMADevice = true, "mlx5_2"
			f := newFixture(t, ethDevice("1"), d2)
			ctx := context.Background()
			pod := testSandbox(testPod, "sb1", "/run/netns/a")
			// The first device is in already; the failure hits the second.
			first := f.devs.ForPod(testPod)[0]
			if _, err := f.p.attach(ctx, first, "/run/netns/a"); err != nil {
				t.Fatal(err)
			}
			if tc.onDevs {
				f.devs.failOn(tc.failOn, errInjected)
			} else {
				f.host.failOn(tc.failOn, errInjected)
			}
			err := f.p.RunPodSandbox(ctx, pod)
			if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "pci-0000-3b-02-2") {
				t.Fatalf("error %v: want the injected one naming the second device", err)
			}
			for _, d := range f.devs.ForPod(testPod) {
				if d.NetnsPath != "" || d.Attached {
					t.Errorf("%s after a failed sandbox: recorded in %q attached=%v, want back on the host", d.Device, d.NetnsPath, d.Attached)
				}
				if ns, name := f.host.where(d.Spec.HostIfName); ns != "" || name != d.Spec.HostIfName {
					t.Errorf("%s after a failed sandbox: %q in netns %q, want %s on the host", d.Device, name, ns, d.Spec.HostIfName)
				}
			}
			if f.host.rdma["mlx5_2"] != "" {
				t.Errorf("RDMA device left in %q", f.host.rdma["mlx5_2"])
			}
		})
	}
}

func TestAttachResumesWithRecordedOriginal(t *testing.T) {
	f := newFixture(t, ethDevice("1"))
	ctx := context.Background()
	// A crash after Attaching, before Attached.
	orig := netattach.Original{IfName: "vf1", MAC: "02:00:00:00:00:01", MTU: 1500}
	if err := f.devs.Attaching("claim-1", "pci-0000-3b-02-1", "/run/netns/a", orig); err != nil {
		t.Fatal(err)
	}
	f.rec.take()
	if err := f.p.RunPodSandbox(ctx, testSandbox(testPod, "sb1", "/run/netns/a")); err != nil {
		t.Fatal(err)
	}
	got := f.rec.take()
	if len(only(got, "host ReadOriginal", "rec Attaching")) != 0 {
		t.Errorf("resumed attach re-read or re-recorded the original: %q", got)
	}
	want := []string{"host Attach vf1 /run/netns/a as net1", "rec Attached pci-0000-3b-02-1 rdma=false"}
	if !slices.Equal(got, want) {
		t.Errorf("calls:\n got %q\nwant %q", got, want)
	}
}

func TestNewSandboxTakesDeviceFromEarlierOne(t *testing.T) {
	f := newFixture(t, ethDevice("1"))
	ctx := context.Background()
	old, cur := testSandbox(testPod, "sb1", "/run/netns/old"), testSandbox(testPod, "sb2", "/run/netns/new")
	if err := f.p.RunPodSandbox(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := f.p.RunPodSandbox(ctx, cur); err != nil {
		t.Fatal(err)
	}
	got := only(f.rec.take(), "host Detach", "host Attach")
	want := []string{"host Attach vf1 /run/netns/old as net1", "host Detach /run/netns/old net1 to vf1", "host Attach vf1 /run/netns/new as net1"}
	if !slices.Equal(got, want) {
		t.Errorf("calls:\n got %q\nwant %q", got, want)
	}
	// kubelet removes the old sandbox later: the device stays in the new one.
	if err := f.p.RemovePodSandbox(ctx, old); err != nil {
		t.Fatal(err)
	}
	if got := only(f.rec.take(), "host Detach"); len(got) != 0 {
		t.Errorf("removing the old sandbox detached from the new one: %q", got)
	}
	if ns, _ := f.host.where("vf1"); ns != "/run/netns/new" {
		t.Errorf("device in %q, want /run/netns/new", ns)
	}
}

func TestCreateContainerFailClosed(t *testing.T) {
	ctx := context.Background()
	pod := testSandbox(testPod, "sb1", "/run/netns/a")

	t.Run("attached: only checks", func(t *testing.T) {
		f := newFixture(t, ethDevice("1"))
		if err := f.p.RunPodSandbox(ctx, pod); err != nil {
			t.Fatal(err)
		}
		f.rec.take()
		if _, _, err := f.p.CreateContainer(ctx, pod, testContainer("c1", "sb1", "")); err != nil {
			t.Fatal(err)
		}
		if got := f.rec.take(); !slices.Equal(got, []string{"host InNetns /run/netns/a net1"}) {
			t.Errorf("calls %q, want only the check", got)
		}
	})
	t.Run("missed RunPodSandbox: attaches", func(t *testing.T) {
		f := newFixture(t, ethDevice("1"))
		if _, _, err := f.p.CreateContainer(ctx, pod, testContainer("c1", "sb1", "")); err != nil {
			t.Fatal(err)
		}
		if ns, name := f.host.where("vf1"); ns != "/run/netns/a" || name != "net1" {
			t.Errorf("device is %q in %q, want net1 in /run/netns/a", name, ns)
		}
		if d := f.devs.device("claim-1", "pci-0000-3b-02-1"); !d.Attached {
			t.Errorf("attach at container creation not recorded")
		}
	})
	t.Run("recorded but gone from the netns: attaches again", func(t *testing.T) {
		f := newFixture(t, ethDevice("1"))
		if err := f.p.RunPodSandbox(ctx, pod); err != nil {
			t.Fatal(err)
		}
		// Someone moved it back to the host behind our back.
		l := f.host.link["vf1"]
		l.netns, l.name = "", "vf1"
		if _, _, err := f.p.CreateContainer(ctx, pod, testContainer("c1", "sb1", "")); err != nil {
			t.Fatal(err)
		}
		if ns, _ := f.host.where("vf1"); ns != "/run/netns/a" {
			t.Errorf("device in %q, want /run/netns/a", ns)
		}
	})
	t.Run("cannot attach: refused", func(t *testing.T) {
		f := newFixture(t, ethDevice("1"))
		f.host.failOn("Attach", errInjected)
		_, _, err := f.p.CreateContainer(ctx, pod, testContainer("c1", "sb1", ""))
		if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "refuse container c-c1") || !strings.Contains(err.Error(), "pci-0000-3b-02-1") {
			t.Fatalf("error %v: want a refusal naming the container and device", err)
		}
	})
	t.Run("host network: refused", func(t *testing.T) {
		f := newFixture(t, ethDevice("1"))
		_, _, err := f.p.CreateContainer(ctx, testSandbox(testPod, "sb1", ""), testContainer("c1", "sb1", ""))
		if err == nil || !strings.Contains(err.Error(), "hostNetwork") {
			t.Fatalf("error %v: want a hostNetwork refusal", err)
		}
	})
	t.Run("pod without devices: nothing", func(t *testing.T) {
		f := newFixture(t, ethDevice("1"))
		if _, _, err := f.p.CreateContainer(ctx, testSandbox("other", "x", "/run/netns/x"), testContainer("c1", "x", "")); err != nil {
			t.Fatal(err)
		}
		if got := f.rec.take(); len(got) != 0 {
			t.Errorf("calls %q, want none", got)
		}
	})
}

func TestIRQAffinityFollowsContainerCPUs(t *testing.T) {
	ctx := context.Background()
	d := ethDevice("1")
	d.IRQAffinity = true
	f := newFixture(t, d)
	pod := testSandbox(testPod, "sb1", "/run/netns/a")
	if err := f.p.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		do   func() error
		want string // pinned CPUs after the step, "" for no pin call
	}{
		{func() error { _, _, err := f.p.CreateContainer(ctx, pod, testContainer("init", "sb1", "")); return err }, ""},
		{func() error { _, _, err := f.p.CreateContainer(ctx, pod, testContainer("a", "sb1", "2-3")); return err }, "2-3"},
		{func() error { _, _, err := f.p.CreateContainer(ctx, pod, testContainer("b", "sb1", "4,8")); return err }, "2-4,8"},
		{func() error {
			_, err := f.p.UpdateContainer(ctx, pod, testContainer("b", "sb1", ""), &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: "5"}})
			return err
		}, "2-3,5"},
		{func() error { return f.p.RemoveContainer(ctx, pod, testContainer("a", "sb1", "")) }, "5"},
		{func() error { return f.p.RemoveContainer(ctx, pod, testContainer("init", "sb1", "")) }, ""},
	}
	for i, s := range steps {
		f.rec.take()
		if err := s.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		pins := only(f.rec.take(), "host PinIRQs")
		var want []string
		if s.want != "" {
			want = []string{"host PinIRQs 0000:3b:02.1 " + s.want}
		}
		if !slices.Equal(pins, want) {
			t.Errorf("step %d: pins %q, want %q", i, pins, want)
		}
	}

	f.host.failOn("PinIRQs", errInjected)
	if _, _, err := f.p.CreateContainer(ctx, pod, testContainer("c", "sb1", "7")); !errors.Is(err, errInjected) {
		t.Errorf("failed pin: error %v, want the container refused with it", err)
	}
}

func TestTeardownNeverFailsAndRetries(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, ethDevice("1"), ethDevice("2"))
	pod := testSandbox(testPod, "sb1", "/run/netns/a")
	if err := f.p.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	f.host.failOn("Detach", errInjected)
	if err := f.p.StopPodSandbox(ctx, pod); err != nil {
		t.Fatalf("StopPodSandbox failed the teardown: %v", err)
	}
	if err := f.p.RemovePodSandbox(ctx, pod); err != nil {
		t.Fatalf("RemovePodSandbox failed the teardown: %v", err)
	}
	if got := f.p.Pending(); !slices.Equal(got[testPod], []string{"/run/netns/a"}) {
		t.Fatalf("pending %v, want the pod's netns", got)
	}
	f.host.failOn("Detach", nil)
	f.p.RetryPending(ctx)
	if got := f.p.Pending(); len(got) != 0 {
		t.Errorf("pending %v after a successful retry", got)
	}
	for _, n := range []string{"1", "2"} {
		if ns, name := f.host.where("vf" + n); ns != "" || name != "vf"+n {
			t.Errorf("vf%s is %q in %q after the retry", n, name, ns)
		}
	}
	// Idempotent: more teardowns touch nothing.
	f.rec.take()
	_ = f.p.StopPodSandbox(ctx, pod)
	_ = f.p.RemovePodSandbox(ctx, pod)
	if got := f.rec.take(); len(got) != 0 {
		t.Errorf("repeated teardown: calls %q, want none", got)
	}
}

func TestTeardownNetnsGone(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, ethDevice("1"))
	pod := testSandbox(testPod, "sb1", "/run/netns/a")
	if err := f.p.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	// The runtime deleted the netns first (CRI-O's order); the netns is
	// still alive elsewhere, so the link has not come back yet.
	f.host.gone["/run/netns/a"] = true
	_ = f.p.StopPodSandbox(ctx, pod)
	if len(f.p.Pending()) != 1 {
		t.Fatalf("pending %v, want the pod", f.p.Pending())
	}
	// The kernel returns the netdev to the host under its pod name.
	l := f.host.link["vf1"]
	l.netns = ""
	f.p.RetryPending(ctx)
	if ns, name := f.host.where("vf1"); ns != "" || name != "vf1" {
		t.Errorf("after the retry the device is %q in %q, want vf1 on the host", name, ns)
	}
	if d := f.devs.device("claim-1", "pci-0000-3b-02-1"); d.NetnsPath != "" {
		t.Errorf("detach not recorded: %+v", d)
	}
}

func TestSynchronize(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	devs, host := newMemDevices(rec), newFakeHost(rec)
	running, gone, fresh, stopped := ethDevice("1"), ethDevice("2"), ethDevice("3"), ethDevice("4")
	torn, hostNet := ethDevice("5"), ethDevice("6")
	devs.add("running", running) // runs, never attached (plugin was down)
	devs.add("gone", gone)       // attached, pod gone while plugin was down
	devs.add("fresh", fresh)     // prepared, not started yet
	devs.add("stopped", stopped) // attached, sandbox stopped while plugin was down
	devs.add("torn", torn)       // attached, sandbox's netns torn down, sandbox still listed
	devs.add("hostnet", hostNet) // a host-network pod (its sandbox failed, never attached)
	for _, d := range []PodDevice{running, gone, fresh, stopped, torn, hostNet} {
		host.addLink(d.Spec.HostIfName, "02:00:00:00:00:01", 1500)
	}
	p, err := New(Config{}, devs, host)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.RunPodSandbox(ctx, testSandbox("gone", "sb-gone", "/run/netns/gone")); err != nil {
		t.Fatal(err)
	}
	if err := p.RunPodSandbox(ctx, testSandbox("stopped", "sb-stopped", "/run/netns/stopped")); err != nil {
		t.Fatal(err)
	}
	if err := p.RunPodSandbox(ctx, testSandbox("torn", "sb-torn", "/run/netns/torn")); err != nil {
		t.Fatal(err)
	}
	rec.take()
	// The runtime still lists a stopped sandbox, without namespaces: that
	// is not a host-network pod, its devices go back to the host.
	stoppedPod := testSandbox("stopped", "sb-stopped", "")
	stoppedPod.Linux.Namespaces = nil
	// A sandbox being torn down is listed with its other namespaces but
	// without the network one once its netns is gone (containerd drops
	// it), pause still running: not host network either (the issue's
	// "Cannot attach: pod ... runs in the host network namespace" after a
	// restart). A running host-network sandbox looks the same, but its
	// pod never had a device in a netns: still refused.
	tornPod := testSandbox("torn", "sb-torn", "")
	tornPod.Pid = 4321
	hostNetPod := testSandbox("hostnet", "sb-hostnet", "")
	hostNetPod.Pid = 4322

	dir := t.TempDir() // netns paths that exist
	nsRunning := dir + "/running"
	if err := writeEmpty(nsRunning); err != nil {
		t.Fatal(err)
	}
	pods := []*api.PodSandbox{testSandbox("running", "sb-running", nsRunning), testSandbox("nodevs", "sb-x", dir+"/x"), stoppedPod, tornPod, hostNetPod}
	ctrs := []*api.Container{testContainer("c1", "sb-running", "1-2")}
	if _, err := p.Synchronize(ctx, pods, ctrs); err != nil {
		t.Fatal(err)
	}
	p.bg.Wait()
	got := only(rec.take(), "host Attach", "host Detach")
	want := []string{"host Detach /run/netns/gone net2 to vf2", "host Detach /run/netns/stopped net4 to vf4", "host Detach /run/netns/torn net5 to vf5", "host Attach vf1 " + nsRunning + " as net1"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("calls:\n got %q\nwant %q", got, want)
	}
	if d := devs.device("claim-3", "pci-0000-3b-02-3"); d.NetnsPath != "" {
		t.Errorf("a pod not started yet got its device attached: %+v", d)
	}
	// Synchronize learnt the container's cpuset.
	p.mu.Lock()
	cpus := p.pods["running"].cpus["c1"]
	p.mu.Unlock()
	if cpus != "1-2" {
		t.Errorf("cpuset of c1 after sync %q, want 1-2", cpus)
	}
	// Again: nothing to do.
	if _, err := p.Synchronize(ctx, pods, ctrs); err != nil {
		t.Fatal(err)
	}
	p.bg.Wait()
	if got := only(rec.take(), "host Attach", "host Detach"); len(got) != 0 {
		t.Errorf("second sync: %q, want no moves", got)
	}
}

// TestHostNetwork: which sandboxes listed without a network namespace
// are host-network pods (refused) rather than sandboxes being torn down.
func TestHostNetwork(t *testing.T) {
	attached := ethDevice("1")
	attached.NetnsPath = "/run/netns/a"
	vfio := ethDevice("2")
	vfio.VFIO = true
	for _, tc := range []struct {
		name string
		pid  uint32
		nss  bool
		devs []PodDevice
		want bool
	}{
		{name: "running, never attached", pid: 10, nss: true, devs: []PodDevice{ethDevice("1")}, want: true},
		{name: "running, only vfio devices", pid: 10, nss: true, devs: []PodDevice{vfio}, want: true},
		{name: "running, a device attached to a netns of the pod", pid: 10, nss: true, devs: []PodDevice{attached}},
		{name: "no PID: stopped", nss: true, devs: []PodDevice{ethDevice("1")}},
		{name: "no namespaces: stopped", pid: 10, devs: []PodDevice{ethDevice("1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testSandbox("u", "sb", "")
			pod.Pid = tc.pid
			if !tc.nss {
				pod.Linux.Namespaces = nil
			}
			if got := hostNetwork(pod, tc.devs); got != tc.want {
				t.Errorf("hostNetwork = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		cfg     Config
		wantErr string
	}{
		{Config{}, ""},
		{Config{PluginIndex: "05", SocketPath: "/x.sock"}, ""},
		{Config{PluginIndex: "5"}, "two digits"},
		{Config{PluginIndex: "1a"}, "two digits"},
		{Config{MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "backoff"},
		{Config{RetryInterval: -time.Second}, "retryInterval"},
		{Config{TeardownBudget: -time.Second}, "teardownBudget"},
	}
	for _, tc := range tests {
		_, err := New(tc.cfg, newMemDevices(nil), newFakeHost(nil))
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("New(%+v): error %v, want %q", tc.cfg, err, tc.wantErr)
		}
	}
	if _, err := New(Config{}, nil, newFakeHost(nil)); err == nil {
		t.Error("New without Devices: no error")
	}
	if _, err := New(Config{}, newMemDevices(nil), nil); err == nil {
		t.Error("New without HostOps: no error")
	}
}

func TestUnionCPUs(t *testing.T) {
	tests := []struct {
		in      map[string]string
		want    string
		wantErr bool
	}{
		{nil, "", false},
		{map[string]string{"a": ""}, "", false},
		{map[string]string{"a": "0-3"}, "0-3", false},
		{map[string]string{"a": "0-1", "b": "2,3", "c": ""}, "0-3", false},
		{map[string]string{"a": "8,1", "b": "4-5", "c": "10-11,3"}, "1,3-5,8,10-11", false},
		{map[string]string{"a": "3-1"}, "", true},
		{map[string]string{"a": "x"}, "", true},
		{map[string]string{"a": "0-1", "b": "0-4294967295"}, "", true},
		{map[string]string{"a": "0-8191", "b": "0-8191,5"}, "0-8191", false},
	}
	for _, tc := range tests {
		got, err := unionCPUs(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("unionCPUs(%v) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestSynchronizeYieldsToNewerHooks(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, ethDevice("1"))
	pod := testSandbox(testPod, "sb1", "/run/netns/a")

	// The runtime's list was taken before the pod ran; the reconcile runs
	// only after RunPodSandbox came in.
	f.p.reconcileMu.Lock()
	if _, err := f.p.Synchronize(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.p.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	f.p.reconcileMu.Unlock()
	f.p.bg.Wait()
	if got := only(f.rec.take(), "host Detach"); len(got) != 0 {
		t.Errorf("a reconcile from an older pod list detached a pod that runs: %q", got)
	}
	if ns, _ := f.host.where("vf1"); ns != "/run/netns/a" {
		t.Errorf("device in %q, want /run/netns/a", ns)
	}
	f.p.mu.Lock()
	left := len(f.p.touched)
	f.p.mu.Unlock()
	if left != 0 {
		t.Errorf("%d touched marks left after the reconcile", left)
	}

	// Without a newer hook, the same stale list does detach (the pod is gone).
	if _, err := f.p.Synchronize(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	f.p.bg.Wait()
	if ns, _ := f.host.where("vf1"); ns != "" {
		t.Errorf("pod absent from the runtime: device still in %q", ns)
	}
}

func TestTeardownWithinBudget(t *testing.T) {
	ctx := context.Background()
	rec, devs, host, _ := oneEthDevice()
	p, err := New(Config{TeardownBudget: 20 * time.Millisecond}, devs, host)
	if err != nil {
		t.Fatal(err)
	}
	pod := testSandbox(testPod, "sb1", "/run/netns/a")
	if err := p.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	host.detachDelay = 300 * time.Millisecond
	start := time.Now()
	if err := p.StopPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("StopPodSandbox took %v with a 20ms budget", took)
	}
	// The next hook for the pod waits for the detach still running.
	if err := p.RemovePodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	p.bg.Wait()
	if ns, name := host.where("vf1"); ns != "" || name != "vf1" {
		t.Errorf("after the background detach the device is %q in %q", name, ns)
	}
	if n := len(only(rec.take(), "host Detach")); n != 1 {
		t.Errorf("%d detaches, want 1 (the second teardown finds it done)", n)
	}
}

// kubelet removes a pod's old, stopped sandbox after it started a new one.
// containerd reports a stopped sandbox without namespaces: its teardown
// must not take the device out of the new sandbox's live netns.
func TestRemoveStoppedSandboxKeepsNewSandboxDevice(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, ethDevice("1"))
	live := t.TempDir() + "/new-netns" // exists: the new sandbox's netns
	if err := writeEmpty(live); err != nil {
		t.Fatal(err)
	}
	if err := f.p.RunPodSandbox(ctx, testSandbox(testPod, "sb-new", live)); err != nil {
		t.Fatal(err)
	}
	f.rec.take()
	old := testSandbox(testPod, "sb-old", "")
	old.Linux.Namespaces = nil
	if err := f.p.RemovePodSandbox(ctx, old); err != nil {
		t.Fatal(err)
	}
	f.p.bg.Wait()
	if got := only(f.rec.take(), "host Detach"); len(got) != 0 {
		t.Errorf("removing the old sandbox detached %q from the new sandbox's netns", got)
	}
	if d := f.devs.device("claim-1", "pci-0000-3b-02-1"); d.NetnsPath != live {
		t.Errorf("device record after removing the old sandbox: %+v, want it in %s", d, live)
	}

	// When that netns is gone too, a sandbox without namespaces returns it.
	if err := os.Remove(live); err != nil {
		t.Fatal(err)
	}
	f.host.gone[live] = true
	l := f.host.link["vf1"]
	l.netns = "" // the kernel gave it back
	if err := f.p.RemovePodSandbox(ctx, old); err != nil {
		t.Fatal(err)
	}
	f.p.bg.Wait()
	f.p.RetryPending(ctx)
	if d := f.devs.device("claim-1", "pci-0000-3b-02-1"); d.NetnsPath != "" {
		t.Errorf("device of a gone netns not returned: %+v", d)
	}
}

// containerd 1.7 sends StopPodSandbox without namespaces (they come from
// the sandbox task, gone by then) while the netns still exists, and deletes
// the netns right after: the plugin detaches from the netns the same
// sandbox reported when it ran. A sandbox it did not see run (another ID)
// still gets nothing from a live netns.
func TestStopWithoutNamespacesUsesTheSandboxsNetns(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, ethDevice("1"))
	live := t.TempDir() + "/netns" // exists until the runtime deletes it
	if err := writeEmpty(live); err != nil {
		t.Fatal(err)
	}
	if err := f.p.RunPodSandbox(ctx, testSandbox(testPod, "sb-1", live)); err != nil {
		t.Fatal(err)
	}
	f.rec.take()

	other := testSandbox(testPod, "sb-other", "")
	other.Linux.Namespaces = nil
	if err := f.p.StopPodSandbox(ctx, other); err != nil {
		t.Fatal(err)
	}
	f.p.bg.Wait()
	if got := only(f.rec.take(), "host Detach"); len(got) != 0 {
		t.Errorf("stopping another sandbox detached %q from the live netns", got)
	}

	stopping := testSandbox(testPod, "sb-1", "")
	stopping.Linux.Namespaces = nil
	if err := f.p.StopPodSandbox(ctx, stopping); err != nil {
		t.Fatal(err)
	}
	f.p.bg.Wait()
	if got, want := only(f.rec.take(), "host Detach"), []string{"host Detach " + live + " net1 to vf1"}; !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	if d := f.devs.device("claim-1", "pci-0000-3b-02-1"); d.NetnsPath != "" {
		t.Errorf("device record after StopPodSandbox: %+v, want it back on the host", d)
	}
}
