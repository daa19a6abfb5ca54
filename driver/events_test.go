package driver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/hwevents"
	"github.com/sriov-dra/sriov-dra/pkg/vfprov"
)

// runWithEvents starts Run with device events from a fake source and
// waits for the first publication.
func runWithEvents(t *testing.T, e *env, src *fakeEvents, tune func(*Config)) (*Driver, *countingPublisher) {
	t.Helper()
	cfg := e.config()
	cfg.DeviceEvents = src
	if tune != nil {
		tune(&cfg)
	}
	d, pub := startRun(t, cfg, 1)
	select {
	case <-pub.ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no first publication")
	}
	return d, pub
}

// waitDevices waits up to limit for a publication of want devices and
// returns how long it took.
func waitDevices(t *testing.T, pub *countingPublisher, want int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(limit)
	for pub.devices() != want {
		select {
		case <-pub.ch:
		case <-deadline:
			t.Fatalf("no publication of %d devices within %v (last: %d devices)", want, limit, pub.devices())
		}
	}
	return time.Since(start)
}

// A sriov_numvfs change announced by the kernel's uevents reaches the
// ResourceSlice within 1 s through a rescan of that PF only; events about
// other devices cost no scan and no API write, and the full rescan is the
// minute-long safety net.
func TestNumVFsChangeByDeviceEventsWithin1s(t *testing.T) {
	e := newEnv(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.SRIOVDisabled(), sysfstest.IGB()}})
	src := &fakeEvents{ch: make(chan hwevents.Event, 64)}
	d, pub := runWithEvents(t, e, src, nil)
	if d.cfg.PollInterval != DefaultResyncInterval {
		t.Errorf("full rescan every %v with device events, want %v", d.cfg.PollInterval, DefaultResyncInterval)
	}
	// 7 VFs, and the X710 PF offered whole (passthrough).
	if got := pub.devices(); got != 8 {
		t.Fatalf("published %d devices, want 8", got)
	}
	full0, part0 := e.scan.counts()

	// Pod sandboxes come and go (veths), another PCI device is probed.
	src.ch <- hwevents.Event{Origin: hwevents.OriginLink, Action: "newlink", Subsystem: "net", IfName: "veth0a1b2c"}
	src.ch <- hwevents.Event{Origin: hwevents.OriginLink, Action: "dellink", Subsystem: "net", IfName: "veth0a1b2c"}
	src.ch <- hwevents.Event{Origin: hwevents.OriginUevent, Action: "bind", Subsystem: "pci", PCIAddress: "0000:00:1f.2"}
	time.Sleep(500 * time.Millisecond)
	if full, part := e.scan.counts(); full != full0 || part != part0 {
		t.Errorf("events about no SR-IOV device caused %d full and %d PF scans, want none", full-full0, part-part0)
	}
	if n := pub.count(); n != 1 {
		t.Errorf("%d publishes with nothing changed, want 1", n)
	}

	// sriov_numvfs 7 -> 3: the kernel removes VFs 3-6 (uevents "remove"
	// of the PCI functions and their netdevs).
	pf := sysfstest.IGB()
	pf.VFs = pf.VFs[:3]
	e.scan.set(sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.SRIOVDisabled(), pf}}))
	for i := 6; i >= 3; i-- {
		src.ch <- hwevents.Event{Origin: hwevents.OriginUevent, Action: "remove", Subsystem: "net", PCIAddress: fmt.Sprintf("0000:02:00.%d", i+1), IfName: fmt.Sprintf("enp2s0f0v%d", i)}
		src.ch <- hwevents.Event{Origin: hwevents.OriginUevent, Action: "remove", Subsystem: "pci", PCIAddress: fmt.Sprintf("0000:02:00.%d", i+1)}
	}
	took := waitDevices(t, pub, 4, time.Second)
	t.Logf("sriov_numvfs change published %v after its uevents", took.Round(time.Millisecond))
	full, part := e.scan.counts()
	// Two PF scans: devices vanished, which a second scan confirms.
	if full != full0 || part != part0+2 {
		t.Errorf("the change cost %d full and %d PF scans, want 0 and 2", full-full0, part-part0)
	}
	e.scan.mu.Lock()
	last := e.scan.partialPFs[len(e.scan.partialPFs)-1]
	e.scan.mu.Unlock()
	if len(last) != 1 || last[0] != "0000:02:00.0" {
		t.Errorf("rescanned PFs %v, want [0000:02:00.0]", last)
	}
	if n := pub.count(); n != 2 {
		t.Errorf("%d publishes, want 2", n)
	}

	// Lost events (a socket overflow): everything is rescanned once.
	src.ch <- hwevents.Event{Origin: hwevents.OriginUevent, Resync: true}
	deadline := time.Now().Add(2 * time.Second)
	for f, _ := e.scan.counts(); f == full && time.Now().Before(deadline); f, _ = e.scan.counts() {
		time.Sleep(10 * time.Millisecond)
	}
	if f, _ := e.scan.counts(); f != full+1 {
		t.Errorf("lost events caused %d full scans, want 1", f-full)
	}
	if n := pub.count(); n != 2 {
		t.Errorf("%d publishes after a full rescan that found nothing new, want 2", n)
	}
}

// Without a device event subscription the driver falls back to a fast
// full poll, so a sriov_numvfs change is still seen.
func TestDeviceEventsUnavailableFallsBackToPolling(t *testing.T) {
	e := newEnv(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB()}})
	src := &fakeEvents{err: errors.New("open uevent socket: permission denied")}
	_, pub := runWithEvents(t, e, src, nil)
	pf := sysfstest.IGB()
	pf.VFs = pf.VFs[:2]
	e.scan.set(sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{pf}}))
	waitDevices(t, pub, 2, 3*time.Second)
}

// With a VF config the config file is checked every ConfigCheckInterval
// (a stat), not only at the minute-long full rescan.
func TestVFConfigChangeSeenWithoutFastPoll(t *testing.T) {
	e := newEnv(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB()}})
	src := &fakeEvents{ch: make(chan hwevents.Event)}
	path, vfs := writeVFConfig(t, "0000:02:00.0", 7)
	_, pub := runWithEvents(t, e, src, func(c *Config) {
		c.VFConfig, c.HostRoot = vfs, e.fix.Root
		c.ConfigCheckInterval = 50 * time.Millisecond
	})
	if got := pub.devices(); got != 7 {
		t.Fatalf("published %d devices, want 7", got)
	}
	rewriteVFConfig(t, path, "0000:02:00.0", 2)
	waitDevices(t, pub, 2, 3*time.Second)
}

func vfConfigBody(pci string, n int) []byte {
	// The count repeated in a comment changes the size too, so a coarse
	// modification time cannot hide a rewrite.
	return fmt.Appendf(nil, "apiVersion: sriov.dra.dev/v1alpha1\nkind: NodeConfig\n# %s\npfs:\n- pciAddress: %s\n  numVfs: %d\n", strings.Repeat("x", n), pci, n)
}

func writeVFConfig(t *testing.T, pci string, n int) (string, *vfprov.Source) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vf-config.yaml")
	rewriteVFConfig(t, path, pci, n)
	src, err := vfprov.NewSource(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, src
}

func rewriteVFConfig(t *testing.T, path, pci string, n int) {
	t.Helper()
	if err := os.WriteFile(path, vfConfigBody(pci, n), 0o644); err != nil {
		t.Fatal(err)
	}
}
