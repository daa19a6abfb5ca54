package driver

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/kubeletserver"
	"github.com/sriov-dra/sriov-dra/pkg/slicepub"
)

func nextReport(t *testing.T, ch <-chan kubeletserver.DeviceHealthReport) map[string]kubeletserver.DeviceHealth {
	t.Helper()
	select {
	case r := <-ch:
		out := map[string]kubeletserver.DeviceHealth{}
		for _, h := range r.Devices {
			out[h.DeviceName] = h
		}
		return out
	case <-time.After(5 * time.Second):
		t.Fatal("no health report")
		return nil
	}
}

// prepareThenVanish prepares claim u1 on vf, a VF of pf past its third,
// and lowers pf's numvfs to three under it: the next scans see a fixture
// (with its own fake netlink, the PF up) where vf is gone.
func prepareThenVanish(t *testing.T, e *env, d *Driver, pf sysfstest.PF, vf string) {
	t.Helper()
	if err := prepare(t, d, newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", vf)}))["u1"].Err; err != nil {
		t.Fatal(err)
	}
	fewer := pf
	fewer.VFs = fewer.VFs[:3]
	fewer.TotalVFs = 7
	e.scan.set(sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{fewer}}))
}

func TestHealth(t *testing.T) {
	igb := sysfstest.IGB()
	e := newEnv(t, sysfstest.Topology{PFs: []sysfstest.PF{igb}})
	cfg := e.config()
	cfg.HealthResend = 200 * time.Millisecond
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan kubeletserver.DeviceHealthReport)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = d.WatchHealthStatus(ctx, ch) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	vf0, vf6 := vfName(e, 0, 0), vfName(e, 0, 6)
	r := nextReport(t, ch)
	if len(r) != 7 {
		t.Fatalf("report covers %d devices, want 7", len(r))
	}
	for name, h := range r {
		if h.Health != kubeletserver.HealthStatusHealthy || h.PoolName != testNode || h.HealthCheckTimeout <= cfg.HealthResend {
			t.Errorf("%s: %+v", name, h)
		}
	}
	// Re-sent without any change, well within the timeout.
	start := time.Now()
	nextReport(t, ch)
	if el := time.Since(start); el > time.Second {
		t.Errorf("resend took %v", el)
	}

	// PF link down (a netlink event triggers a rescan): every VF unhealthy.
	pf, _ := e.fix.Netlink.LinkByName(igb.IfName)
	if err := e.fix.Netlink.LinkSetDown(pf); err != nil {
		t.Fatal(err)
	}
	if _, err := d.scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = nextReport(t, ch)
	if h := r[vf0]; h.Health != kubeletserver.HealthStatusUnhealthy || h.Message == "" {
		t.Errorf("VF with PF down: %+v", h)
	}
	if err := e.fix.Netlink.LinkSetUp(pf); err != nil {
		t.Fatal(err)
	}

	// A prepared VF that vanished (numvfs lowered under it): unhealthy.
	prepareThenVanish(t, e, d, igb, vf6)
	// The new fixture has its own fake netlink with the PF up.
	if _, err := d.scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(3 * time.Second)
	for {
		r = nextReport(t, ch)
		if r[vf6].Health == kubeletserver.HealthStatusUnhealthy {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("vanished prepared VF reported %+v", r[vf6])
		default:
		}
	}
	if _, listed := r[vfName(e, 0, 5)]; listed {
		t.Error("an unprepared VF that vanished is still reported")
	}
	if r[vf0].Health != kubeletserver.HealthStatusHealthy {
		t.Errorf("VF 0 after PF up: %+v", r[vf0])
	}
}

// taintsOf returns the published devices' taints by device name.
func taintsOf(pub *countingPublisher) map[string][]resourceapi.DeviceTaint {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	out := map[string][]resourceapi.DeviceTaint{}
	for _, s := range pub.last.Slices {
		for _, d := range s.Devices {
			if len(d.Taints) > 0 {
				out[d.Name] = d.Taints
			}
		}
	}
	return out
}

// An unhealthy device is published with a NoSchedule taint, so the
// scheduler stops allocating it; the taint goes when it recovers.
func TestHealthTaints(t *testing.T) {
	igb := sysfstest.IGB()
	e := newEnv(t, sysfstest.Topology{PFs: []sysfstest.PF{igb}})
	d := e.d
	ctx := context.Background()
	pub := &countingPublisher{}
	want := func(value string) []resourceapi.DeviceTaint {
		return []resourceapi.DeviceTaint{{Key: TaintKeyUnhealthy, Value: value, Effect: resourceapi.DeviceTaintEffectNoSchedule}}
	}
	step := func(name string, wantWrite bool, check func(map[string][]resourceapi.DeviceTaint)) {
		t.Helper()
		if _, err := d.scan(ctx); err != nil {
			t.Fatal(err)
		}
		wrote, err := d.publish(ctx, pub)
		if err != nil {
			t.Fatal(err)
		}
		if wrote != wantWrite {
			t.Errorf("%s: published=%v, want %v", name, wrote, wantWrite)
		}
		check(taintsOf(pub))
	}
	vfs := make([]string, len(igb.VFs))
	for i := range vfs {
		vfs[i] = vfName(e, 0, i)
	}

	step("healthy", true, func(got map[string][]resourceapi.DeviceTaint) {
		if len(got) != 0 {
			t.Errorf("healthy devices tainted: %v", got)
		}
	})
	step("no change", false, func(map[string][]resourceapi.DeviceTaint) {})

	pf, _ := e.fix.Netlink.LinkByName(igb.IfName)
	if err := e.fix.Netlink.LinkSetDown(pf); err != nil {
		t.Fatal(err)
	}
	step("PF down", true, func(got map[string][]resourceapi.DeviceTaint) {
		for _, vf := range vfs {
			if !reflect.DeepEqual(got[vf], want(TaintPFLinkDown)) {
				t.Errorf("VF %s with its PF down: taints %v, want %v", vf, got[vf], want(TaintPFLinkDown))
			}
		}
		if len(got) != len(vfs) {
			t.Errorf("%d devices tainted, want %d", len(got), len(vfs))
		}
	})
	step("PF still down", false, func(map[string][]resourceapi.DeviceTaint) {})
	if err := e.fix.Netlink.LinkSetUp(pf); err != nil {
		t.Fatal(err)
	}
	step("PF up again", true, func(got map[string][]resourceapi.DeviceTaint) {
		if len(got) != 0 {
			t.Errorf("taints left after the PF came up: %v", got)
		}
	})

	// A prepared VF that vanished stays published, tainted; an unprepared
	// one leaves the pool.
	vf6 := vfs[6]
	prepareThenVanish(t, e, d, igb, vf6)
	step("VFs vanished", true, func(got map[string][]resourceapi.DeviceTaint) {
		if !reflect.DeepEqual(got, map[string][]resourceapi.DeviceTaint{vf6: want(TaintVanished)}) {
			t.Errorf("taints %v, want only %s %s", got, vf6, TaintVanished)
		}
	})
}

// The API server of a cluster without DRADeviceTaints drops the taints:
// the driver logs that once and carries on (no fatal error, and the error
// is not reported again).
func TestTaintsDroppedByServer(t *testing.T) {
	e := newEnv(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB()}})
	fatal := 0
	e.d.cfg.OnFatal = func(error) { fatal++ }
	dropped := &slicepub.DroppedFieldsError{Pool: testNode, SliceName: "00000-sriov.dra.dev-n-abcde", Fields: []string{"spec.devices[0].taints (device d)"}, Features: []string{"DRADeviceTaints"}}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		// Wrapped, as a publisher may pass it.
		if !e.d.taintsDropped(ctx, fmt.Errorf("publish: %w", dropped)) {
			t.Fatalf("call %d: dropped taints not recognised", i)
		}
		e.d.HandleError(ctx, dropped, "publish")
		e.d.HandlePublishError(ctx, dropped, "publish")
	}
	if !e.d.taintsDroppedLogged.Load() {
		t.Error("dropped taints not logged")
	}
	if fatal != 0 {
		t.Errorf("dropped taints were fatal %d times", fatal)
	}
	// Another dropped field is not mistaken for it.
	other := &slicepub.DroppedFieldsError{Pool: testNode, Fields: []string{"spec.devices[0] (device d)"}, Features: []string{"unknown"}}
	if e.d.taintsDropped(ctx, other) {
		t.Error("another dropped field taken for dropped taints")
	}
	if e.d.taintsDropped(ctx, errors.New("conflict")) {
		t.Error("an unrelated error taken for dropped taints")
	}
}
