package nri

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"
)

// TestTeardownRuntimeOrder runs one pod through the NRI events in the
// order each runtime sends them. containerd calls StopPodSandbox while
// the pod netns is still mounted; CRI-O unmounts it first (CNI DEL,
// containers stopped, namespaces unpinned, then the plugins). Either way
// the netdev must come back restored (original name, MAC, MTU) from the
// StopPodSandbox hook itself, not from a later retry, and the plugin's
// own hold of the netns must be gone afterwards.
func TestTeardownRuntimeOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		// restart: a new plugin takes over after the attach and learns the
		// pod from Synchronize (the driver restarted while the pod ran).
		restart bool
		// removedBeforeStop: the runtime removes the netns path before
		// StopPodSandbox (CRI-O), else after it (containerd).
		removedBeforeStop bool
		// wantDetachVia: "netns" (the runtime's path) or "hold".
		wantDetachVia string
	}{
		{name: "containerd: StopPodSandbox, then the netns goes", wantDetachVia: "netns"},
		{name: "CRI-O: the netns goes, then StopPodSandbox", removedBeforeStop: true, wantDetachVia: "hold"},
		{name: "CRI-O after a plugin restart: Synchronize holds the netns again", restart: true, removedBeforeStop: true, wantDetachVia: "hold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, ethDevice("1"))
			host := holdingHost{f.host}
			p, err := New(Config{}, f.devs, host)
			if err != nil {
				t.Fatal(err)
			}
			netns := filepath.Join(t.TempDir(), "netns-a")
			if err := writeEmpty(netns); err != nil {
				t.Fatal(err)
			}
			pod := testSandbox(testPod, "sb1", netns)
			if err := p.RunPodSandbox(ctx, pod); err != nil {
				t.Fatal(err)
			}
			if _, _, err := p.CreateContainer(ctx, pod, testContainer("c1", "sb1", "")); err != nil {
				t.Fatal(err)
			}
			if tc.restart {
				p, err = New(Config{}, f.devs, host)
				if err != nil {
					t.Fatal(err)
				}
				// The old plugin's hold dies with its process.
				for hp := range f.host.holds {
					delete(f.host.holds, hp)
				}
				if _, err := p.Synchronize(ctx, []*api.PodSandbox{pod}, nil); err != nil {
					t.Fatal(err)
				}
				p.bg.Wait()
			}
			if got := f.host.heldNetns(); !slices.Equal(got, []string{netns}) {
				t.Fatalf("netns held %v while the pod runs, want [%s]", got, netns)
			}
			f.rec.take()

			if tc.removedBeforeStop {
				f.host.gone[netns] = true
			}
			if err := p.StopPodSandbox(ctx, pod); err != nil {
				t.Fatal(err)
			}
			if !tc.removedBeforeStop {
				f.host.gone[netns] = true
			}
			if err := p.RemovePodSandbox(ctx, pod); err != nil {
				t.Fatal(err)
			}
			p.bg.Wait()

			via := netns
			if tc.wantDetachVia == "hold" {
				via = "/proc/self/fd/" // the fake's hold paths
			}
			detaches := only(f.rec.take(), "host Detach")
			if len(detaches) != 1 || !strings.HasPrefix(detaches[0], "host Detach "+via) {
				t.Errorf("detaches %q, want one through %s", detaches, via)
			}
			if ns, name := f.host.where("vf1"); ns != "" || name != "vf1" {
				t.Errorf("device is %q in netns %q after the teardown, want vf1 on the host", name, ns)
			}
			if l := f.host.link["vf1"]; l.mac != "02:00:00:00:00:01" || l.mtu != 1500 {
				t.Errorf("device restored with MAC %s MTU %d, want 02:00:00:00:00:01 1500", l.mac, l.mtu)
			}
			if got := p.Pending(); len(got) != 0 {
				t.Errorf("pending %v, want nothing (the hook finished the detach)", got)
			}
			if got := f.host.heldNetns(); len(got) != 0 {
				t.Errorf("netns still held after the detach: %v", got)
			}
			if got := p.Holds(); len(got) != 0 {
				t.Errorf("plugin still lists holds %v", got)
			}
		})
	}
}

// TestHoldNetnsFailureDoesNotFailTheAttach: a netns the plugin cannot
// hold is attached all the same; with CRI-O's order the device is then
// the kernel's to return, and the retry finds it on the host.
func TestHoldNetnsFailureDoesNotFailTheAttach(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, ethDevice("1"))
	f.host.holdFail = errInjected
	p, err := New(Config{}, f.devs, holdingHost{f.host})
	if err != nil {
		t.Fatal(err)
	}
	pod := testSandbox(testPod, "sb1", "/run/netns/a")
	if err := p.RunPodSandbox(ctx, pod); err != nil {
		t.Fatalf("RunPodSandbox failed on a netns it could not hold: %v", err)
	}
	if ns, _ := f.host.where("vf1"); ns != "/run/netns/a" {
		t.Fatalf("device in %q, want the pod netns", ns)
	}
	f.host.gone["/run/netns/a"] = true
	_ = p.StopPodSandbox(ctx, pod)
	p.bg.Wait()
	if len(p.Pending()) != 1 {
		t.Fatalf("pending %v, want the pod (nothing held its netns)", p.Pending())
	}
	f.host.link["vf1"].netns = "" // the kernel returns it under its pod name
	p.RetryPending(ctx)
	if ns, name := f.host.where("vf1"); ns != "" || name != "vf1" {
		t.Errorf("after the retry the device is %q in %q, want vf1 on the host", name, ns)
	}
}

// TestUnusedHoldReleased: a hold whose netns no device is recorded in (the
// attach failed before it recorded anything) is closed by the periodic
// retry.
func TestUnusedHoldReleased(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, ethDevice("1"))
	f.host.failOn("ReadOriginal", errInjected)
	p, err := New(Config{}, f.devs, holdingHost{f.host})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.RunPodSandbox(ctx, testSandbox(testPod, "sb1", "/run/netns/a")); err == nil {
		t.Fatal("RunPodSandbox succeeded with ReadOriginal failing")
	}
	p.RetryPending(ctx)
	if got := f.host.heldNetns(); len(got) != 0 {
		t.Errorf("netns still held after the retry: %v", got)
	}
}
