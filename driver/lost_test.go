package driver

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/client-go/tools/events"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// TestLostDevice: a device found nowhere when its claim is unprepared
// (removed VF, hot-unplug) blocks the claim only for LostDeviceTimeout;
// then everything else is released (IPAM, CDI spec, attach marker,
// record), the device is reported (Warning event, metrics, unhealthy and
// tainted) and refused by Prepare, across a restart, until a scan sees it
// back with the identity it had.
func TestLostDevice(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	dir := e.useAttachMarks("")
	e.lostTimeout = 300 * time.Millisecond
	start := func() (*events.FakeRecorder, *prometheus.Registry) {
		rec := events.NewFakeRecorder(10)
		m := prometheus.NewRegistry()
		cfg := e.config()
		cfg.Events, cfg.Metrics = rec, NewMetrics(m)
		d, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		e.d = d
		e.j.take()
		return rec, m
	}
	rec, m := start()

	eth, other := vfName(e, 1, 0), vfName(e, 1, 1)
	c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("eth", eth), result("eth2", other)},
		opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","ipam":{"type":"host-local"}}`, "eth"))
	if err := prepare(t, e.d, c)["u1"].Err; err != nil {
		t.Fatalf("prepare: %v", err)
	}
	dev, _ := e.d.inventory().Find(eth)
	id := netattach.Identity{PCIAddress: pci(eth)}
	for _, name := range []string{eth, other} {
		if err := e.d.State().Attaching("u1", name, "/proc/42/ns/net", netattach.Original{IfName: "host-" + name[len(name)-4:], MAC: "02:00:5e:00:00:00", MTU: 1500, Identity: id}); err != nil {
			t.Fatal(err)
		}
		if err := e.d.State().Attached("u1", name, false); err != nil {
			t.Fatal(err)
		}
		if err := e.marks.Create("u1", name); err != nil {
			t.Fatal(err)
		}
	}
	e.j.take()

	// A detach error other than "gone" never makes a device lost.
	e.j.failOn("host.Detach /proc/42/ns/net net1", errInjected)
	for range 2 {
		if err := unprepare(t, e.d, c)["u1"]; err == nil || strings.Contains(err.Error(), "lost") {
			t.Fatalf("unprepare with a failing detach: %v, want the failure without a lost-device note", err)
		}
		time.Sleep(e.lostTimeout)
	}
	if _, lost := e.d.State().Lost(eth); lost {
		t.Fatal("a device whose detach failed for another reason was recorded lost")
	}

	// The device is gone: Unprepare fails until the timeout, naming it.
	e.j.clearFail()
	e.j.failOn("host.Detach /proc/42/ns/net net1", fmt.Errorf("detach: the device %s is in neither netns nor the host: %w", id, netattach.ErrDeviceGone))
	err := unprepare(t, e.d, c)["u1"]
	if err == nil || !strings.Contains(err.Error(), eth) || !strings.Contains(err.Error(), "recorded as lost") {
		t.Fatalf("unprepare within the timeout: %v, want an error naming the device and the lost-device release", err)
	}
	if len(e.d.State().Claims()) != 1 || e.ipam.allocated() != 1 {
		t.Fatalf("released before the timeout: claims %d, ipam %d", len(e.d.State().Claims()), e.ipam.allocated())
	}
	e.j.take()
	time.Sleep(e.lostTimeout)
	if err := unprepare(t, e.d, c)["u1"]; err != nil {
		t.Fatalf("unprepare after the timeout: %v", err)
	}
	steps := e.j.take()
	for _, s := range steps {
		if strings.HasPrefix(s, "host.Restore") && strings.Contains(s, pci(eth)) {
			t.Errorf("restored the lost device: %q", s)
		}
	}
	if !contains(steps, "host.Detach /proc/42/ns/net net2->host-00-2") {
		t.Errorf("the claim's other device was not returned: %q", steps)
	}
	if e.ipam.allocated() != 0 || e.cdi.count() != 0 || len(e.d.State().Claims()) != 0 {
		t.Errorf("left behind: ipam %d cdi %d claims %d", e.ipam.allocated(), e.cdi.count(), len(e.d.State().Claims()))
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("attach markers left: %v", ents)
	}
	if ev := takeEvent(t, rec); !strings.Contains(ev, "Warning DeviceLost") || !strings.Contains(ev, eth) {
		t.Errorf("event %q, want a DeviceLost warning naming %s", ev, eth)
	}
	if got := gather(t, m)["sriov_dra_devices_lost_total"]; got != 1 {
		t.Errorf("devices_lost_total = %v, want 1", got)
	}
	if got := gather(t, m)["sriov_dra_devices_lost"]; got != 1 {
		t.Errorf("devices_lost = %v, want 1", got)
	}

	refused := func(when string) {
		t.Helper()
		if taints := e.d.healthTaints()[eth]; len(taints) != 1 || taints[0].Value != TaintLost {
			t.Errorf("%s: taints of %s = %+v, want %s=%s", when, eth, taints, TaintKeyUnhealthy, TaintLost)
		}
		c2 := newClaim("u2", "p2", []resourceapi.DeviceRequestAllocationResult{result("eth", eth)})
		if err := prepare(t, e.d, c2)["u2"].Err; err == nil || !strings.Contains(err.Error(), "lost") {
			t.Errorf("%s: prepare of the lost device: %v, want a refusal", when, err)
		}
	}
	refused("after the release")
	rec, m = start() // a restart keeps it lost
	refused("after a restart")
	_ = rec

	// Its netdev is on the host again but with no identity (a stand-in
	// that is not the device): still lost. With its PCI parent: back.
	if _, err := e.d.scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, lost := e.d.State().Lost(eth); !lost {
		t.Fatal("a netdev without the device's identity cleared the lost record")
	}
	l, _ := e.fix.Netlink.Link(dev.IfName)
	a := *l.Attrs()
	a.ParentDev, a.ParentDevBus = pci(eth), "pci"
	e.fix.Netlink.AddLink(a)
	if _, err := e.d.scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, lost := e.d.State().Lost(eth); lost {
		t.Fatal("the device is back with its identity but still lost")
	}
	if got := gather(t, m)["sriov_dra_devices_lost"]; got != 0 {
		t.Errorf("devices_lost = %v after it came back, want 0", got)
	}
	c3 := newClaim("u3", "p3", []resourceapi.DeviceRequestAllocationResult{result("eth", eth)})
	if err := prepare(t, e.d, c3)["u3"].Err; err != nil {
		t.Errorf("prepare of the device back on the host: %v", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
