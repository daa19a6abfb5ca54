package nri

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"

	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// markProbe notes, at each record and at each kernel move, whether the
// device's attach marker exists, to check when the plugin creates and
// removes it.
type markProbe struct {
	marks *attachmark.Marks
	rec   *recorder
}

func (m *markProbe) note(what, claimUID, device string) {
	ok, err := m.marks.Exists(claimUID, device)
	if err != nil {
		m.rec.add("probe %s %s: %v", what, device, err)
		return
	}
	m.rec.add("probe %s %s marked=%v", what, device, ok)
}

type probedDevices struct {
	*memDevices
	probe *markProbe
}

func (d probedDevices) Attached(claimUID, device string, rdmaMoved bool) error {
	d.probe.note("Attached", claimUID, device)
	return d.memDevices.Attached(claimUID, device, rdmaMoved)
}

func (d probedDevices) Detached(claimUID, device string) error {
	d.probe.note("Detached", claimUID, device)
	return d.memDevices.Detached(claimUID, device)
}

type probedHost struct {
	*fakeHost
	probe   *markProbe
	devices map[string]PodDevice // pod ifName -> device
}

func (h probedHost) Detach(ctx context.Context, netnsPath, podIfName string, orig netattach.Original) error {
	d := h.devices[podIfName]
	h.probe.note("Detach", d.ClaimUID, d.Device)
	return h.fakeHost.Detach(ctx, netnsPath, podIfName, orig)
}

func (h probedHost) ReturnRDMA(ctx context.Context, rdmaDevice, netnsPath string) error {
	for _, d := range h.devices {
		if d.RDMADevice == rdmaDevice {
			h.probe.note("ReturnRDMA", d.ClaimUID, d.Device)
		}
	}
	return h.fakeHost.ReturnRDMA(ctx, rdmaDevice, netnsPath)
}

type markFixture struct {
	rec   *recorder
	devs  *memDevices
	host  *fakeHost
	marks *attachmark.Marks
	dir   string
	p     *Plugin
}

// newMarkFixture is a plugin with attach markers over devices of pods
// (pod UID -> devices).
func newMarkFixture(t *testing.T, pods map[string][]PodDevice) *markFixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "attached")
	marks, err := attachmark.New(dir, "/host/attached")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	f := &markFixture{rec: rec, devs: newMemDevices(rec), host: newFakeHost(rec), marks: marks, dir: dir}
	probe := &markProbe{marks: marks, rec: rec}
	byIf := map[string]PodDevice{}
	for uid, devs := range pods {
		for _, d := range devs {
			f.devs.add(uid, d)
			f.host.addLink(d.Spec.HostIfName, "02:00:00:00:00:01", 1500)
			byIf[d.Spec.PodIfName] = d
		}
	}
	p, err := New(Config{AttachMarks: marks}, probedDevices{f.devs, probe}, probedHost{f.host, probe, byIf})
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	return f
}

func (f *markFixture) marked(t *testing.T, d PodDevice) bool {
	t.Helper()
	ok, err := f.marks.Exists(d.ClaimUID, d.Device)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestAttachMarkerLifecycle(t *testing.T) {
	ctx := context.Background()
	eth := ethDevice("1")
	rdma := ethDevice("2")
	rdma.RDMAIsolation, rdma.RDMADevice = true, "mlx5_2"
	vfio := ethDevice("3")
	vfio.VFIO = true
	pod := testSandbox(testPod, "sb1", "/run/netns/a")

	for _, tc := range []struct {
		name      string
		dev       PodDevice
		wantRun   []string
		wantStop  []string
		wantMarks bool
	}{
		{"ethernet", eth,
			[]string{"probe Attached pci-0000-3b-02-1 marked=false"},
			[]string{"probe Detach pci-0000-3b-02-1 marked=false", "probe Detached pci-0000-3b-02-1 marked=false"}, true},
		{"with RDMA: removed before the RDMA device moves back", rdma,
			[]string{"probe Attached pci-0000-3b-02-2 marked=false"},
			[]string{"probe ReturnRDMA pci-0000-3b-02-2 marked=false", "probe Detach pci-0000-3b-02-2 marked=false", "probe Detached pci-0000-3b-02-2 marked=false"}, true},
		{"vfio: no marker", vfio, nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newMarkFixture(t, map[string][]PodDevice{testPod: {tc.dev}})
			if err := f.p.RunPodSandbox(ctx, pod); err != nil {
				t.Fatal(err)
			}
			// Created after the attach was recorded, not before.
			if got := only(f.rec.take(), "probe"); !slices.Equal(got, tc.wantRun) {
				t.Errorf("RunPodSandbox probes %q, want %q", got, tc.wantRun)
			}
			if f.marked(t, tc.dev) != tc.wantMarks {
				t.Fatalf("after RunPodSandbox marked = %v, want %v", !tc.wantMarks, tc.wantMarks)
			}
			if _, _, err := f.p.CreateContainer(ctx, pod, testContainer("c1", "sb1", "")); err != nil {
				t.Fatal(err)
			}
			if f.marked(t, tc.dev) != tc.wantMarks {
				t.Errorf("after CreateContainer marked = %v, want %v", !tc.wantMarks, tc.wantMarks)
			}
			f.rec.take()
			if err := f.p.StopPodSandbox(ctx, pod); err != nil {
				t.Fatal(err)
			}
			// Removed before the device leaves the pod.
			if got := only(f.rec.take(), "probe"); !slices.Equal(got, tc.wantStop) {
				t.Errorf("StopPodSandbox probes %q, want %q", got, tc.wantStop)
			}
			if f.marked(t, tc.dev) {
				t.Error("marker left after StopPodSandbox")
			}
			// A second stop (RemovePodSandbox) with the marker gone is fine.
			if err := f.p.RemovePodSandbox(ctx, pod); err != nil {
				t.Fatal(err)
			}
			if len(f.p.Pending()) != 0 {
				t.Errorf("pending detaches: %v", f.p.Pending())
			}
		})
	}
}

func TestAttachMarkerCreateContainer(t *testing.T) {
	ctx := context.Background()
	d := ethDevice("1")
	pod := testSandbox(testPod, "sb1", "/run/netns/a")

	t.Run("missed RunPodSandbox: attaches and marks", func(t *testing.T) {
		f := newMarkFixture(t, map[string][]PodDevice{testPod: {d}})
		if _, _, err := f.p.CreateContainer(ctx, pod, testContainer("c1", "sb1", "")); err != nil {
			t.Fatal(err)
		}
		if !f.marked(t, d) {
			t.Error("no marker after the attach at container creation")
		}
	})
	t.Run("attached but marker lost: marked again", func(t *testing.T) {
		f := newMarkFixture(t, map[string][]PodDevice{testPod: {d}})
		if err := f.p.RunPodSandbox(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if err := f.marks.Remove(d.ClaimUID, d.Device); err != nil {
			t.Fatal(err)
		}
		f.rec.take()
		if _, _, err := f.p.CreateContainer(ctx, pod, testContainer("c1", "sb1", "")); err != nil {
			t.Fatal(err)
		}
		if got := only(f.rec.take(), "host Attach"); len(got) != 0 {
			t.Errorf("moved again: %q", got)
		}
		if !f.marked(t, d) {
			t.Error("marker not recreated")
		}
	})
	t.Run("attach fails: no marker, refused", func(t *testing.T) {
		f := newMarkFixture(t, map[string][]PodDevice{testPod: {d}})
		f.host.failOn("Attach", errInjected)
		if _, _, err := f.p.CreateContainer(ctx, pod, testContainer("c1", "sb1", "")); !errors.Is(err, errInjected) {
			t.Fatalf("CreateContainer = %v, want the attach error", err)
		}
		if f.marked(t, d) {
			t.Error("marker created for a failed attach")
		}
	})
	t.Run("marker cannot be created: refused", func(t *testing.T) {
		f := newMarkFixture(t, map[string][]PodDevice{testPod: {d}})
		if err := os.RemoveAll(f.dir); err != nil {
			t.Fatal(err)
		}
		_, _, err := f.p.CreateContainer(ctx, pod, testContainer("c1", "sb1", ""))
		if err == nil || !strings.Contains(err.Error(), "create attach marker of device pci-0000-3b-02-1") || !strings.Contains(err.Error(), "refuse container c-c1") {
			t.Fatalf("CreateContainer = %v, want a refusal naming the marker", err)
		}
	})
}

func TestAttachMarkerRunPodSandboxFailure(t *testing.T) {
	ctx := context.Background()
	d := ethDevice("1")
	f := newMarkFixture(t, map[string][]PodDevice{testPod: {d}})
	// The marker dir is a file: the attach succeeds but cannot be marked,
	// so the sandbox fails and the device comes back.
	if err := os.RemoveAll(f.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.dir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := f.p.RunPodSandbox(ctx, testSandbox(testPod, "sb1", "/run/netns/a"))
	if err == nil || !strings.Contains(err.Error(), "create attach marker") {
		t.Fatalf("RunPodSandbox = %v, want the marker error", err)
	}
	if ns, name := f.host.where("vf1"); ns != "" || name != "vf1" {
		t.Errorf("after the failed sandbox the device is %q in %q, want vf1 on the host", name, ns)
	}
}

func TestAttachMarkerSynchronize(t *testing.T) {
	ctx := context.Background()
	running, gone := ethDevice("1"), ethDevice("2")
	f := newMarkFixture(t, map[string][]PodDevice{"running": {running}, "gone": {gone}})
	if err := f.p.RunPodSandbox(ctx, testSandbox("gone", "sb-gone", "/run/netns/gone")); err != nil {
		t.Fatal(err)
	}
	if !f.marked(t, gone) {
		t.Fatal("no marker after RunPodSandbox")
	}
	nsRunning := filepath.Join(t.TempDir(), "running")
	if err := writeEmpty(nsRunning); err != nil {
		t.Fatal(err)
	}
	// The plugin was away while "running" got its sandbox and "gone" lost
	// its own.
	if _, err := f.p.Synchronize(ctx, []*api.PodSandbox{testSandbox("running", "sb-running", nsRunning)}, nil); err != nil {
		t.Fatal(err)
	}
	f.p.bg.Wait()
	if !f.marked(t, running) {
		t.Error("Synchronize attached without marking")
	}
	if f.marked(t, gone) {
		t.Error("Synchronize detached without removing the marker")
	}
	// A marker lost while attached is restored by the next Synchronize.
	if err := f.marks.Remove(running.ClaimUID, running.Device); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Synchronize(ctx, []*api.PodSandbox{testSandbox("running", "sb-running", nsRunning)}, nil); err != nil {
		t.Fatal(err)
	}
	f.p.bg.Wait()
	if !f.marked(t, running) {
		t.Error("Synchronize did not restore the marker of an attached device")
	}
}
