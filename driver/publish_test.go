package driver

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

func nameAttrs(d inventory.Device) map[resourceapi.QualifiedName]resourceapi.DeviceAttribute {
	s := d.MAC
	return map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{"sriov.dra.dev/mac": {StringValue: &s}}
}

func TestBuildResourcesChunks(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 129, 256, 300} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var devs []inventory.Device
			for i := 0; i < n; i++ {
				devs = append(devs, inventory.Device{Name: inventory.DeviceName(fmt.Sprintf("0000:%02x:%02x.%x", i/256, (i/8)%32, i%8))})
			}
			res := BuildResources("node-a", devs, nil, nameAttrs, nil)
			pool := res
			if pool.Name != "node-a" {
				t.Fatalf("pool named %q, not after the node", pool.Name)
			}
			wantSlices := max(1, (n+MaxDevicesPerSlice-1)/MaxDevicesPerSlice)
			if len(pool.Slices) != wantSlices {
				t.Fatalf("slices = %d, want %d", len(pool.Slices), wantSlices)
			}
			total, prev := 0, ""
			for _, s := range pool.Slices {
				if len(s.Devices) > MaxDevicesPerSlice {
					t.Errorf("slice with %d devices", len(s.Devices))
				}
				if s.Devices == nil {
					t.Error("nil device list (an empty pool must still be one slice)")
				}
				for _, d := range s.Devices {
					if d.Name <= prev {
						t.Errorf("devices not sorted: %s after %s", d.Name, prev)
					}
					prev = d.Name
				}
				total += len(s.Devices)
			}
			if total != n {
				t.Errorf("devices = %d, want %d", total, n)
			}
		})
	}
}

func TestBuildResourcesKeepsPreparedAttributes(t *testing.T) {
	before := inventory.Device{Name: "pci-0000-5e-00-1", MAC: "02:00:00:00:00:01"}
	now := before
	now.MAC = "02:aa:aa:aa:aa:aa" // changed by prepare
	other := inventory.Device{Name: "pci-0000-5e-00-2", MAC: "02:00:00:00:00:02"}
	gone := inventory.Device{Name: "pci-0000-5e-00-3", MAC: "02:00:00:00:00:03"} // netdev in a pod, not seen by the scan
	res := BuildResources("n", []inventory.Device{now, other}, map[string]inventory.Device{before.Name: before, gone.Name: gone}, nameAttrs, nil)
	got := map[string]string{}
	for _, d := range res.Slices[0].Devices {
		got[d.Name] = *d.Attributes["sriov.dra.dev/mac"].StringValue
	}
	want := map[string]string{before.Name: before.MAC, other.Name: other.MAC, gone.Name: gone.MAC}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("published %v, want %v", got, want)
	}
}

// TestAttributesPerFixture checks what each fixture NIC publishes.
func TestAttributesPerFixture(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	pub := &countingPublisher{}
	if _, err := e.d.publish(context.Background(), pub); err != nil {
		t.Fatal(err)
	}
	devs := map[string]resourceapi.Device{}
	for _, s := range pub.last.Slices {
		for _, d := range s.Devices {
			devs[d.Name] = d
		}
	}
	// ConnectX-6 IB: 8 VFs; E810: 16 VFs; IGB: 7 VFs; X710 with no VFs: the PF.
	if len(devs) != 8+16+7+1 {
		t.Errorf("published %d devices, want 32", len(devs))
	}
	str := func(d resourceapi.Device, k string) string {
		a, ok := d.Attributes[resourceapi.QualifiedName(k)]
		if !ok || a.StringValue == nil {
			return "<none>"
		}
		return *a.StringValue
	}
	for _, tc := range []struct {
		dev  string
		want map[string]string
		none []string
	}{
		{vfName(e, 0, 0), map[string]string{"sriov.dra.dev/kind": "vf", "sriov.dra.dev/linkType": "infiniband", "sriov.dra.dev/pfName": "ibp59s0f0", "sriov.dra.dev/vendor": "15b3", "sriov.dra.dev/guid": "0c:42:a1:03:00:ab:cd:10"}, nil},
		{vfName(e, 1, 1), map[string]string{"sriov.dra.dev/kind": "vf", "sriov.dra.dev/linkType": "ethernet", "sriov.dra.dev/pfName": "ens2f0", "sriov.dra.dev/driver": "iavf"}, []string{"sriov.dra.dev/guid"}},
		{vfName(e, 1, 12), map[string]string{"sriov.dra.dev/driver": "vfio-pci"}, []string{"sriov.dra.dev/ifName"}},
		{inventory.DeviceName("0000:af:00.0"), map[string]string{"sriov.dra.dev/kind": "pf", "sriov.dra.dev/ifName": "ens5f0"}, nil},
	} {
		d, ok := devs[tc.dev]
		if !ok {
			t.Errorf("%s not published", tc.dev)
			continue
		}
		for k, v := range tc.want {
			if got := str(d, k); got != v {
				t.Errorf("%s %s = %s, want %s", tc.dev, k, got, v)
			}
		}
		for _, k := range tc.none {
			if _, ok := d.Attributes[resourceapi.QualifiedName(k)]; ok {
				t.Errorf("%s has %s", tc.dev, k)
			}
		}
		if _, ok := d.Attributes["resource.kubernetes.io/pcieRoot"]; !ok {
			t.Errorf("%s lacks resource.kubernetes.io/pcieRoot", tc.dev)
		}
		for _, k := range []string{"sriov.dra.dev/operstate", "sriov.dra.dev/ip"} {
			if _, ok := d.Attributes[resourceapi.QualifiedName(k)]; ok {
				t.Errorf("%s publishes %s, which changes by the second", tc.dev, k)
			}
		}
	}
	// The E810 PF has VFs enabled: never offered with them.
	if _, ok := devs[inventory.DeviceName("0000:5e:00.0")]; ok {
		t.Error("E810 PF published together with its VFs")
	}
}

func TestPublishOnlyOnChangeAndNumVFsWithin2s(t *testing.T) {
	e := newEnv(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB()}})
	cfg := e.config()
	cfg.PollInterval = 100 * time.Millisecond
	d, pub := startRun(t, cfg, 1)

	<-pub.ch
	// Polls and link events with nothing changed: no API write.
	for i := 0; i < 5; i++ {
		d.TriggerRescan()
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if n := pub.count(); n != 1 {
		t.Fatalf("%d publishes with nothing changed, want 1", n)
	}
	if pub.devices() != 7 {
		t.Fatalf("published %d devices, want 7", pub.devices())
	}

	// sriov_numvfs 7 -> 3 (no netlink event): seen by the slow poll.
	pf := sysfstest.IGB()
	pf.VFs = pf.VFs[:3]
	pf.TotalVFs = 7
	start := time.Now()
	e.scan.set(sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{pf}}))
	deadline := time.After(2 * time.Second)
	for pub.devices() != 3 {
		select {
		case <-pub.ch:
		case <-deadline:
			t.Fatalf("numvfs change not published within 2s (devices %d)", pub.devices())
		}
	}
	t.Logf("sriov_numvfs change published after %v", time.Since(start).Round(time.Millisecond))
	if n := pub.count(); n != 2 {
		t.Errorf("%d publishes, want 2", n)
	}
}

// flakyScanner returns an empty inventory for the scans numbered in
// empty (1-based), the inner scanner's result otherwise.
type flakyScanner struct {
	inner Scanner
	mu    sync.Mutex
	n     int
	empty map[int]bool
}

func (f *flakyScanner) Scan(ctx context.Context) (*inventory.Inventory, error) {
	f.mu.Lock()
	f.n++
	blank := f.empty[f.n]
	f.mu.Unlock()
	if blank {
		return &inventory.Inventory{Devices: []inventory.Device{}}, nil
	}
	return f.inner.Scan(ctx)
}

// One scan that misses every device (a PF rebinding, an odd read) does not
// withdraw the node's devices: a second scan has to agree.
func TestOneEmptyScanDoesNotWithdrawDevices(t *testing.T) {
	e := newEnv(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB()}})
	cfg := e.config()
	cfg.PollInterval = 50 * time.Millisecond
	flaky := &flakyScanner{inner: e.scan, empty: map[int]bool{3: true}}
	cfg.Scanner = flaky
	_, pub := startRun(t, cfg, 16)

	// Let the polls run well past the empty scan.
	deadline := time.Now().Add(3 * time.Second)
	for {
		flaky.mu.Lock()
		n := flaky.n
		flaky.mu.Unlock()
		if n >= 8 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := pub.count(); n != 1 || pub.devices() != 7 {
		t.Errorf("%d publishes, last with %d devices; want 1 publish of 7 devices (the empty scan not published)", n, pub.devices())
	}

	// Two empty scans in a row do withdraw them.
	flaky.mu.Lock()
	next := flaky.n + 1
	flaky.empty = map[int]bool{next: true, next + 1: true, next + 2: true, next + 3: true}
	flaky.mu.Unlock()
	deadline = time.Now().Add(2 * time.Second)
	for pub.devices() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if pub.devices() != 0 {
		t.Errorf("devices gone in two scans in a row still published: %d", pub.devices())
	}
}
