package vfconfig

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestBindVFIOAndBack(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		groupName string // content of iommu_groups/17/name, "" = no file
		modeParam string // enable_unsafe_noiommu_mode, "" = no file
		wantNodes []string
		noIOMMU   bool
	}{
		{name: "iommu", wantNodes: []string{"/dev/vfio/17", "/dev/vfio/vfio"}},
		{name: "noiommu group name", groupName: "vfio-noiommu", modeParam: "Y",
			wantNodes: []string{"/dev/vfio/noiommu-17", "/dev/vfio/vfio"}, noIOMMU: true},
		{name: "iommu with noiommu allowed", groupName: "", modeParam: "N",
			wantNodes: []string{"/dev/vfio/17", "/dev/vfio/vfio"}},
		{name: "noiommu from module parameter", modeParam: "Y",
			wantNodes: []string{"/dev/vfio/noiommu-17", "/dev/vfio/vfio"}, noIOMMU: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, false, true)
			if tc.groupName != "" {
				e.fx.write("sys/kernel/iommu_groups/17/name", tc.groupName+"\n")
			}
			if tc.modeParam != "" {
				e.fx.write("sys/module/vfio/parameters/enable_unsafe_noiommu_mode", tc.modeParam+"\n")
			}
			b, err := BindVFIO(ctx, e.fx.root, vfPCI)
			if err != nil {
				t.Fatal(err)
			}
			want := VFIOBinding{OriginalDriver: "mlx5_core", IOMMUGroup: "17", NoIOMMU: tc.noIOMMU, DeviceNodes: tc.wantNodes}
			if !reflect.DeepEqual(b, want) {
				t.Errorf("binding = %+v, want %+v", b, want)
			}
			if d, _ := DriverOf(e.fx.root, vfPCI); d != VFIODriver {
				t.Errorf("driver = %q", d)
			}
			if ov := e.fx.read("sys/bus/pci/devices/" + vfPCI + "/driver_override"); ov != VFIODriver {
				t.Errorf("driver_override = %q", ov)
			}
			// Binding again only reports.
			again, err := BindVFIO(ctx, e.fx.root, vfPCI)
			if err != nil || !reflect.DeepEqual(again.DeviceNodes, tc.wantNodes) {
				t.Errorf("second bind = %+v, %v", again, err)
			}
			for i := 0; i < 2; i++ {
				if err := UnbindVFIO(ctx, e.fx.root, vfPCI, b.OriginalDriver); err != nil {
					t.Fatalf("unbind #%d: %v", i+1, err)
				}
				if d, _ := DriverOf(e.fx.root, vfPCI); d != "mlx5_core" {
					t.Errorf("unbind #%d: driver = %q", i+1, d)
				}
				if ov := strings.TrimSpace(e.fx.read("sys/bus/pci/devices/" + vfPCI + "/driver_override")); ov != "" {
					t.Errorf("unbind #%d: driver_override = %q", i+1, ov)
				}
			}
		})
	}
}

func TestBindVFIOFailureRestoresDriver(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, false, true)
	// No drivers_probe: the write fails after the unbind.
	if err := os.Remove(e.fx.path("sys/bus/pci/drivers_probe")); err != nil {
		t.Fatal(err)
	}
	if _, err := BindVFIO(ctx, e.fx.root, vfPCI); err == nil || !strings.Contains(err.Error(), "probe") {
		t.Fatalf("err = %v", err)
	}
	if d, _ := DriverOf(e.fx.root, vfPCI); d != "mlx5_core" {
		t.Errorf("driver after failed bind = %q, want mlx5_core", d)
	}
	if ov := strings.TrimSpace(e.fx.read("sys/bus/pci/devices/" + vfPCI + "/driver_override")); ov != "" {
		t.Errorf("driver_override after failed bind = %q", ov)
	}
}

func TestVFIODeviceNodesNoGroup(t *testing.T) {
	fx := newFixture(t, nil, fxDev{pci: vfPCI})
	if _, err := VFIODeviceNodes(fx.root, vfPCI); err == nil || !strings.Contains(err.Error(), "IOMMU group") {
		t.Errorf("err = %v", err)
	}
}

// After vfio-pci is undone, the vendor driver's probe names the netdev
// afresh and may make up a MAC; RestoreNetdev gives it the snapshot's
// name, MAC and MTU back, and changes nothing when they already match.
func TestRestoreNetdevAfterRebind(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, false, true)
	snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
	if err != nil {
		t.Fatal(err)
	}
	if snap.IfName != "ens1f0v1" || snap.MAC != "02:00:00:00:00:11" || snap.MTU != 1500 {
		t.Fatalf("snapshot netdev %q %q %d", snap.IfName, snap.MAC, snap.MTU)
	}
	b, err := BindVFIO(ctx, e.fx.root, vfPCI)
	if err != nil {
		t.Fatal(err)
	}
	// The probe after the unbind: a new name, a random MAC, another MTU.
	if err := removeAll(e.fx.path(filepath.Join("sys/bus/pci/devices", vfPCI, "net"))); err != nil {
		t.Fatal(err)
	}
	e.k.mu.Lock()
	e.k.onBind = func(pci, driver string) {
		e.fx.addNetdev(pci, "eth7", "7e:11:22:33:44:55", 9000)
		e.fake.AddLink(netlink.LinkAttrs{Name: "eth7", MTU: 9000, HardwareAddr: mustMAC("7e:11:22:33:44:55")})
	}
	e.k.mu.Unlock()
	if err := UnbindVFIO(ctx, e.fx.root, vfPCI, b.OriginalDriver); err != nil {
		t.Fatal(err)
	}
	e.fake.ResetCalls()
	if err := RestoreNetdev(ctx, e.fake, e.fx.root, snap); err != nil {
		t.Fatal(err)
	}
	l, ok := e.fake.Link("ens1f0v1")
	if !ok {
		t.Fatalf("netdev not renamed back to ens1f0v1; calls %v", e.fake.MutatingCalls())
	}
	if a := l.Attrs(); a.HardwareAddr.String() != "02:00:00:00:00:11" || a.MTU != 1500 {
		t.Errorf("netdev after restore: MAC %s MTU %d, want 02:00:00:00:00:11 1500", a.HardwareAddr, a.MTU)
	}

	// As recorded already (the fixture still says eth7, so point it at the
	// restored name): no change at all.
	if err := removeAll(e.fx.path(filepath.Join("sys/bus/pci/devices", vfPCI, "net"))); err != nil {
		t.Fatal(err)
	}
	e.fx.addNetdev(vfPCI, "ens1f0v1", "02:00:00:00:00:11", 1500)
	e.fake.ResetCalls()
	if err := RestoreNetdev(ctx, e.fake, e.fx.root, snap); err != nil {
		t.Fatal(err)
	}
	if m := e.fake.MutatingCalls(); len(m) != 0 {
		t.Errorf("restore of a netdev as recorded changed %v", m)
	}
	// No netdev in the snapshot (bound to vfio-pci or unbound before): nothing.
	if err := RestoreNetdev(ctx, e.fake, e.fx.root, Snapshot{PCIAddress: vfPCI}); err != nil {
		t.Error(err)
	}
}
