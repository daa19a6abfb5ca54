package vfconfig

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
)

func TestCheckVFIOIsolation(t *testing.T) {
	// IGB: PF 0000:02:00.0, VFs 0000:02:00.1 to .7, each in its own IOMMU
	// group unless the case puts several in one.
	const pf = "0000:02:00.0"
	write := func(h *sysfstest.Fixture, rel, content string) {
		t.Helper()
		p := filepath.Join(h.Root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	group := func(h *sysfstest.Fixture, vf int) string {
		return filepath.Join("sys/kernel/iommu_groups", strconv.Itoa(h.Topology.PFs[0].VFs[vf].IOMMUGroup))
	}
	cases := []struct {
		name  string
		share []int // VF indexes put in one IOMMU group with VF 0
		setup func(t *testing.T, h *sysfstest.Fixture, vf0 string)
		want  string // part of the error; "" = allowed
	}{
		{name: "own group", want: ""},
		{name: "own group, no-IOMMU mode off", setup: func(t *testing.T, h *sysfstest.Fixture, _ string) {
			write(h, noIOMMUParam, "N\n")
		}},
		{name: "group shared with a sibling VF", share: []int{1}, want: "also holds 0000:02:00.2: a container given /dev/vfio/"},
		{name: "group shared with three VFs", share: []int{1, 2, 3}, want: "also holds 0000:02:00.2, 0000:02:00.3, 0000:02:00.4"},
		{name: "group shared with a bridge", setup: func(t *testing.T, h *sysfstest.Fixture, vf0 string) {
			g := filepath.Join(h.Root, group(h, 0), "devices", "0000:00:1c.0")
			if err := os.Symlink("../../../devices/pci0000:00/0000:00:1c.0", g); err != nil {
				t.Fatal(err)
			}
		}, want: "also holds 0000:00:1c.0"},
		{name: "no-IOMMU module parameter", setup: func(t *testing.T, h *sysfstest.Fixture, _ string) {
			write(h, noIOMMUParam, "Y\n")
		}, want: "unsafe no-IOMMU mode (sys/module/vfio/parameters/enable_unsafe_noiommu_mode is Y)"},
		{name: "no-IOMMU group name", setup: func(t *testing.T, h *sysfstest.Fixture, _ string) {
			write(h, filepath.Join(group(h, 0), "name"), "vfio-noiommu\n")
		}, want: "vfio no-IOMMU group (name vfio-noiommu)"},
		{name: "no-IOMMU group link", setup: func(t *testing.T, h *sysfstest.Fixture, vf0 string) {
			l := filepath.Join(h.DevicePath(vf0), "iommu_group")
			if err := os.Remove(l); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../../../../kernel/iommu_groups/noiommu-3", l); err != nil {
				t.Fatal(err)
			}
		}, want: "IOMMU group noiommu-3 is a vfio no-IOMMU group"},
		{name: "no IOMMU group at all", setup: func(t *testing.T, h *sysfstest.Fixture, vf0 string) {
			if err := os.Remove(filepath.Join(h.DevicePath(vf0), "iommu_group")); err != nil {
				t.Fatal(err)
			}
		}, want: "has no IOMMU group (the IOMMU is off"},
		{name: "group lists other devices but not this one", setup: func(t *testing.T, h *sysfstest.Fixture, vf0 string) {
			if err := os.Remove(filepath.Join(h.Root, group(h, 0), "devices", vf0)); err != nil {
				t.Fatal(err)
			}
		}, want: "does not list the device"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pfc := sysfstest.IGB()
			pfc.VFs[0].IOMMUGroup = 40
			for _, i := range tc.share {
				pfc.VFs[i].IOMMUGroup = 40
			}
			h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{pfc}})
			vf0 := h.Topology.PFs[0].VFs[0].PCIAddress
			if h.Topology.PFs[0].PCIAddress != pf || vf0 != "0000:02:00.1" {
				t.Fatalf("fixture moved: PF %s VF0 %s", h.Topology.PFs[0].PCIAddress, vf0)
			}
			if tc.setup != nil {
				tc.setup(t, h, vf0)
			}
			err := CheckVFIOIsolation(h.Root, vf0)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckVFIOIsolation: %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), vf0) {
				t.Fatalf("CheckVFIOIsolation err = %v, want one naming %s and containing %q", err, vf0, tc.want)
			}
		})
	}
}
