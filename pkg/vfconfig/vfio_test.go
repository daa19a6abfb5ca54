package vfconfig

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
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
