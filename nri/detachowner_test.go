package nri

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
)

// countingMarks counts marker removals per device on top of the real
// markers.
type countingMarks struct {
	*attachmark.Marks
	mu      sync.Mutex
	removed map[string]int
}

func (c *countingMarks) Remove(claimUID, device string) error {
	c.mu.Lock()
	c.removed[key(claimUID, device)]++
	c.mu.Unlock()
	return c.Marks.Remove(claimUID, device)
}

func (c *countingMarks) removals(d PodDevice) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removed[key(d.ClaimUID, d.Device)]
}

// TestDetachOneOwner runs the driver's Unprepare detach (DetachDevice)
// against a slow background teardown of the same device, in both orders:
// whoever comes second waits for the pod's lock, finds the device back on
// the host by its record and does nothing. One detach, one Detached
// record, one marker removal, no error. Run with -race.
func TestDetachOneOwner(t *testing.T) {
	for _, tc := range []struct {
		name string
		// unprepareFirst: DetachDevice is the one held in the kernel and
		// the teardown comes second; otherwise the other way round.
		unprepareFirst bool
	}{
		{name: "teardown first, Unprepare waits and finds it detached"},
		{name: "Unprepare first, teardown waits and finds it detached", unprepareFirst: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			rec, devs, host, dev := oneEthDevice()
			marks, err := attachmark.New(filepath.Join(t.TempDir(), "attached"), "/host/attached")
			if err != nil {
				t.Fatal(err)
			}
			counted := &countingMarks{Marks: marks, removed: map[string]int{}}
			p, err := New(Config{AttachMarks: marks, TeardownBudget: 10 * time.Millisecond}, devs, host)
			if err != nil {
				t.Fatal(err)
			}
			p.marks = counted
			pod := testSandbox(testPod, "sb1", "/run/netns/a")
			if err := p.RunPodSandbox(ctx, pod); err != nil {
				t.Fatal(err)
			}
			// What Unprepare read from its record before either detach
			// began: the device in the pod netns.
			unprepView := devs.ForPod(testPod)[0]
			if unprepView.NetnsPath == "" || unprepView.PodUID != testPod {
				t.Fatalf("record after attach: %+v", unprepView)
			}
			rec.take()

			gate, entered := make(chan struct{}), make(chan struct{}, 2)
			host.mu.Lock()
			host.detachGate, host.detachEntered = gate, entered
			host.mu.Unlock()

			unprepErr := make(chan error, 1)
			unprepare := func() { unprepErr <- p.DetachDevice(ctx, unprepView) }
			teardown := func() {
				if err := p.StopPodSandbox(ctx, pod); err != nil {
					t.Errorf("StopPodSandbox: %v", err)
				}
			}
			first, second := teardown, func() { go unprepare() }
			if tc.unprepareFirst {
				first, second = func() { go unprepare() }, teardown
			}
			first()
			select {
			case <-entered: // the first detach is in the kernel, holding the pod's lock
			case <-time.After(10 * time.Second):
				t.Fatal("the first detach never reached the host")
			}
			second()
			// The second one waits for the lock: it neither reaches the
			// kernel nor (for Unprepare) returns while the first is held.
			select {
			case <-entered:
				t.Fatal("a second detach of the device reached the host while the first was running")
			case err := <-unprepErr:
				if !tc.unprepareFirst {
					t.Fatalf("DetachDevice returned (%v) while the teardown was still detaching the device", err)
				}
				t.Fatalf("DetachDevice returned (%v) while held in the kernel", err)
			case <-time.After(100 * time.Millisecond):
			}
			close(gate)
			if err := <-unprepErr; err != nil {
				t.Errorf("DetachDevice: %v", err)
			}
			p.bg.Wait()

			var hostDetach, recDetached int
			for _, c := range rec.take() {
				switch {
				case strings.HasPrefix(c, "host Detach "):
					hostDetach++
				case strings.HasPrefix(c, "rec Detached "):
					recDetached++
				}
			}
			if hostDetach != 1 || recDetached != 1 {
				t.Errorf("host Detach %d times, Detached recorded %d times; want once each", hostDetach, recDetached)
			}
			if n := counted.removals(dev); n != 1 {
				t.Errorf("marker removed %d times, want once", n)
			}
			if ok, err := marks.Exists(dev.ClaimUID, dev.Device); err != nil || ok {
				t.Errorf("marker exists = %v (%v) after the detach", ok, err)
			}
			if d := devs.device(dev.ClaimUID, dev.Device); d.NetnsPath != "" || d.Attached {
				t.Errorf("record after the detach: netns %q attached %v, want back on the host", d.NetnsPath, d.Attached)
			}
			if ns, name := host.where(dev.Spec.HostIfName); ns != "" || name != dev.Spec.HostIfName {
				t.Errorf("netdev in netns %q as %q, want on the host as %s", ns, name, dev.Spec.HostIfName)
			}
			if len(p.Pending()) != 0 {
				t.Errorf("pending detaches: %v", p.Pending())
			}
		})
	}
}

// TestDetachDeviceGivesUpWithItsContext: Unprepare's detach that cannot get
// the pod's lock before its deadline returns the context's error and
// changes nothing; the teardown holding the lock finishes the detach.
func TestDetachDeviceGivesUpWithItsContext(t *testing.T) {
	ctx := context.Background()
	rec, devs, host, _ := oneEthDevice()
	p, err := New(Config{TeardownBudget: 10 * time.Millisecond}, devs, host)
	if err != nil {
		t.Fatal(err)
	}
	pod := testSandbox(testPod, "sb1", "/run/netns/a")
	if err := p.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	view := devs.ForPod(testPod)[0]
	rec.take()
	gate, entered := make(chan struct{}), make(chan struct{}, 2)
	host.mu.Lock()
	host.detachGate, host.detachEntered = gate, entered
	host.mu.Unlock()
	if err := p.StopPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	<-entered
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = p.DetachDevice(dctx, view)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "wait for the other detach of pod "+testPod) {
		t.Errorf("DetachDevice with the pod locked: %v, want the deadline naming the pod", err)
	}
	close(gate)
	p.bg.Wait()
	if got := only(rec.take(), "host Detach", "rec Detached"); len(got) != 2 {
		t.Errorf("calls %q, want the teardown's one detach and one record", got)
	}
	// The lock is free again and the device is back: a retried
	// Unprepare finds nothing to do.
	if err := p.DetachDevice(ctx, view); err != nil {
		t.Errorf("retried DetachDevice: %v", err)
	}
	if got := only(rec.take(), "host", "rec"); len(got) != 0 {
		t.Errorf("retried DetachDevice did %q, want nothing", got)
	}
}
