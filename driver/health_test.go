package driver

import (
	"context"
	"sync"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"

	"github.com/sriov-dra/sriov-dra/pkg/inventory/sysfstest"
)

func nextReport(t *testing.T, ch <-chan kubeletplugin.DeviceHealthReport) map[string]kubeletplugin.DeviceHealth {
	t.Helper()
	select {
	case r := <-ch:
		out := map[string]kubeletplugin.DeviceHealth{}
		for _, h := range r.Devices {
			out[h.DeviceName] = h
		}
		return out
	case <-time.After(5 * time.Second):
		t.Fatal("no health report")
		return nil
	}
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
	ch := make(chan kubeletplugin.DeviceHealthReport)
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
		if h.Health != kubeletplugin.HealthStatusHealthy || h.PoolName != testNode || h.HealthCheckTimeout <= cfg.HealthResend {
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
	if h := r[vf0]; h.Health != kubeletplugin.HealthStatusUnhealthy || h.Message == "" {
		t.Errorf("VF with PF down: %+v", h)
	}
	if err := e.fix.Netlink.LinkSetUp(pf); err != nil {
		t.Fatal(err)
	}

	// A prepared VF that vanished (numvfs lowered under it): unhealthy.
	if err := prepare(t, d, newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", vf6)}))["u1"].Err; err != nil {
		t.Fatal(err)
	}
	fewer := igb
	fewer.VFs = fewer.VFs[:3]
	fewer.TotalVFs = 7
	e.scan.set(sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{fewer}}))
	// The new fixture has its own fake netlink with the PF up.
	if _, err := d.scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(3 * time.Second)
	for {
		r = nextReport(t, ch)
		if r[vf6].Health == kubeletplugin.HealthStatusUnhealthy {
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
	if r[vf0].Health != kubeletplugin.HealthStatusHealthy {
		t.Errorf("VF 0 after PF up: %+v", r[vf0])
	}
}
