package nri

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/nri/pkg/api"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Devices with AttachStateFromKernel: the intent to attach (the original)
// was recorded at Prepare, the hooks write nothing durable, and after a
// restart the attach state is derived from the kernel. Real netns and
// veth "VFs" (root).

// restart makes the record of every device of the pod what the daemon
// loads after a restart: the attach state is not on disk.
func (m *memDevices) restart(podUID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.byPod[podUID] {
		d := m.devs[k]
		d.NetnsPath, d.Attached, d.RDMAMoved = "", false, false
	}
}

func fromKernelWorld(t *testing.T) *world {
	w := newWorld(t)
	w.fromKernel = true
	w.devs.file = filepath.Join(t.TempDir(), "state.json")
	return w
}

// noDurableWrite fails when the devices were ever written to disk.
func noDurableWrite(t *testing.T, w *world) {
	t.Helper()
	if _, err := os.Stat(w.devs.file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the attach records were written to disk (%s: %v); want them in memory only", w.devs.file, err)
	}
}

func TestFromKernelNoDurableWrite(t *testing.T) {
	w := fromKernelWorld(t)
	ctx := context.Background()
	pod := w.pod("k", 2)
	runPlugin(t, w.plugin())
	if err := w.rt.runPod(ctx, pod); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	w.checkInPod(pod)
	if err := w.rt.createContainer(ctx, pod, testContainer("ctr-k", pod.Id, "")); err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if err := w.rt.stopPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	w.checkOnHost(pod)
	for _, d := range w.devs.ForPod(pod.Uid) {
		if d.Original == nil || !d.AttachStateFromKernel {
			t.Errorf("%s: the intent recorded at Prepare is gone after the detach: %+v", d.Device, d)
		}
	}
	// A new sandbox of the same pod attaches from the same intent.
	if err := w.rt.runPod(ctx, pod); err != nil {
		t.Fatalf("second RunPodSandbox: %v", err)
	}
	w.checkInPod(pod)
	if err := w.rt.stopPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	w.checkOnHost(pod)
	noDurableWrite(t, w)
}

// A netdev that changed since Prepare read it (a VF driver that adopted
// the MAC set through its PF after a reset) is recorded durably before
// the move, and the detach restores it as it was just before the move.
func TestFromKernelChangedSincePrepare(t *testing.T) {
	w := fromKernelWorld(t)
	ctx := context.Background()
	pod := w.pod("c", 1)
	d := w.devs.ForPod(pod.Uid)[0]
	changed := "02:5d:00:00:" + w.id[:2] + ":99"
	run(t, "ip", "link", "set", "dev", d.Spec.HostIfName, "address", changed)
	runPlugin(t, w.plugin())
	if err := w.rt.runPod(ctx, pod); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	w.checkInPod(pod)
	if _, err := os.Stat(w.devs.file); err != nil {
		t.Errorf("a changed original was not written to disk: %v", err)
	}
	if err := w.rt.stopPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if l, _ := linkIn(t, "", d.Spec.HostIfName); l == nil || l.Attrs().HardwareAddr.String() != changed {
		t.Errorf("after the detach the host netdev is %v, want it back with the MAC it had before the move, %s", l, changed)
	}
}

func TestFromKernelRestart(t *testing.T) {
	ctx := context.Background()
	// attached returns a world whose pod's device is attached by a plugin
	// that then went away with its memory.
	attached := func(t *testing.T, name string) (*world, *api.PodSandbox) {
		w := fromKernelWorld(t)
		pod := w.pod(name, 1)
		stop := runPlugin(t, w.plugin())
		if err := w.rt.runPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		w.checkInPod(pod)
		stop()
		w.devs.restart(pod.Uid)
		return w, pod
	}

	t.Run("Synchronize finds the device in the sandbox", func(t *testing.T) {
		w, pod := attached(t, "y")
		runPlugin(t, w.plugin())
		w.checkInPod(pod)
		if err := w.rt.stopPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		w.checkOnHost(pod)
		noDurableWrite(t, w)
	})

	t.Run("the teardown finds the device in the sandbox", func(t *testing.T) {
		w, pod := attached(t, "t")
		p := w.plugin() // not connected: the hook is called directly
		if err := p.StopPodSandbox(ctx, pod); err != nil {
			t.Fatal(err)
		}
		p.bg.Wait()
		w.checkOnHost(pod)
	})

	t.Run("the attach completes in place", func(t *testing.T) {
		w, pod := attached(t, "p")
		// A crash after the move, before the addresses: take them away.
		h, err := netlink.NewHandleAt(mustNs(t, netnsOf(pod)))
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		l, err := h.LinkByName("net1")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetDown(l); err != nil {
			t.Fatal(err)
		}
		addrs, _ := h.AddrList(l, netlink.FAMILY_ALL)
		for _, a := range addrs {
			_ = h.AddrDel(l, &a)
		}
		w.rt.forget(pod) // the runtime failed that sandbox...
		runPlugin(t, w.plugin())
		if err := w.rt.runPod(ctx, pod); err != nil { // ...and retries
			t.Fatalf("RunPodSandbox: %v", err)
		}
		w.checkInPod(pod)
		if err := w.rt.stopPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		w.checkOnHost(pod)
	})

	t.Run("the kernel returned it: restored, then attached to a new sandbox", func(t *testing.T) {
		w, pod := attached(t, "r")
		d := w.devs.ForPod(pod.Uid)[0]
		// The sandbox's netns goes: the kernel hands a physical netdev
		// back to the host under its pod name, with the pod's MAC and MTU.
		old := netnsOf(pod)
		moveToHost(t, mustNs(t, old), d.Spec.PodIfName)
		w.rt.forget(pod)
		w.restartInNewSandbox(ctx, pod, "r2")
	})

	t.Run("Unprepare restores a device the kernel returned", func(t *testing.T) {
		w, pod := attached(t, "u")
		d := w.devs.ForPod(pod.Uid)[0]
		moveToHost(t, mustNs(t, netnsOf(pod)), d.Spec.PodIfName)
		w.rt.forget(pod)
		p := w.plugin()
		if err := p.DetachDevice(ctx, d); err != nil {
			t.Fatalf("DetachDevice: %v", err)
		}
		w.checkOnHost(pod)
		// Done already: nothing more to do.
		if err := p.DetachDevice(ctx, w.devs.ForPod(pod.Uid)[0]); err != nil {
			t.Fatalf("second DetachDevice: %v", err)
		}
		// A device that is nowhere (here: deleted) is nothing to restore.
		run(t, "ip", "link", "del", d.Spec.HostIfName)
		if err := p.DetachDevice(ctx, w.devs.ForPod(pod.Uid)[0]); err != nil {
			t.Fatalf("DetachDevice of a device found nowhere: %v", err)
		}
	})
}

// restartInNewSandbox starts the plugin again (the daemon restarted) and
// runs pod in a new sandbox named name: the device must be in it, and back
// on the host once that sandbox stops.
func (w *world) restartInNewSandbox(ctx context.Context, pod *api.PodSandbox, name string) {
	w.t.Helper()
	runPlugin(w.t, w.plugin())
	pod2 := w.sandbox(pod, name)
	if err := w.rt.runPod(ctx, pod2); err != nil {
		w.t.Fatalf("RunPodSandbox of the new sandbox: %v", err)
	}
	w.checkInPod(pod2)
	if err := w.rt.stopPod(ctx, pod2); err != nil {
		w.t.Fatal(err)
	}
	w.checkOnHost(pod2)
}

// sandbox is a new sandbox of pod with a netns of its own.
func (w *world) sandbox(pod *api.PodSandbox, name string) *api.PodSandbox {
	w.t.Helper()
	path := newNetns(w.t, "sd"+w.id+name)
	return &api.PodSandbox{
		Id: "sb-" + name + "-" + w.id, Uid: pod.Uid, Name: pod.Name, Namespace: pod.Namespace,
		Linux: &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: path}}},
	}
}

func mustNs(t *testing.T, path string) netns.NsHandle {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}
