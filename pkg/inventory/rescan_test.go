package inventory_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// TestScanPFsMatchesFullScan: after a change on one PF, rescanning the
// PFs its events map to gives what a full scan gives, and events that
// concern no PF map to none.
func TestScanPFsMatchesFullScan(t *testing.T) {
	igb3 := sysfstest.IGB()
	igb3.VFs = igb3.VFs[:3]
	igb0 := sysfstest.IGB()
	igb0.VFs = nil
	e810 := sysfstest.E810()
	e810.VFs = append(e810.VFs[:12:12], e810.VFs[12:14]...) // VFs 14, 15 gone
	enabled := sysfstest.SRIOVDisabled()
	enabled.VFs = []sysfstest.VF{{Driver: "i40evf", IfName: "ens5f0v0"}, {Driver: "vfio-pci"}}
	for _, tc := range []struct {
		name string
		// before is the topology first scanned (default Standard); the
		// fixture numbers IOMMU groups in order, so changed PFs come last.
		before  []sysfstest.PF
		after   []sysfstest.PF
		pci     []string
		ifNames []string
		wantPFs []string
	}{
		{
			name:   "numvfs 7 -> 3: uevents of removed VFs (gone from sysfs)",
			before: []sysfstest.PF{sysfstest.ConnectX6IB(), sysfstest.E810(), sysfstest.SRIOVDisabled(), sysfstest.IGB()},
			after:  []sysfstest.PF{sysfstest.ConnectX6IB(), sysfstest.E810(), sysfstest.SRIOVDisabled(), igb3},
			pci:    []string{"0000:02:00.6", "0000:02:00.5"}, ifNames: []string{"enp2s0f0v5"},
			wantPFs: []string{"0000:02:00.0"},
		},
		{
			name:    "numvfs 7 -> 0: the PF's own link event",
			before:  []sysfstest.PF{sysfstest.ConnectX6IB(), sysfstest.E810(), sysfstest.SRIOVDisabled(), sysfstest.IGB()},
			after:   []sysfstest.PF{sysfstest.ConnectX6IB(), sysfstest.E810(), sysfstest.SRIOVDisabled(), igb0},
			ifNames: []string{"enp2s0f0"},
			wantPFs: []string{"0000:02:00.0"},
		},
		{
			name:    "numvfs 0 -> 2 on a PF without VFs: uevents of the new VFs",
			after:   []sysfstest.PF{sysfstest.ConnectX6IB(), sysfstest.E810(), sysfstest.IGB(), enabled},
			ifNames: []string{"ens5f0v0"},
			wantPFs: []string{"0000:af:00.0"},
		},
		{
			name:    "two PFs change at once",
			before:  []sysfstest.PF{sysfstest.ConnectX6IB(), sysfstest.SRIOVDisabled(), sysfstest.E810(), sysfstest.IGB()},
			after:   []sysfstest.PF{sysfstest.ConnectX6IB(), sysfstest.SRIOVDisabled(), e810, igb3},
			pci:     []string{"0000:5e:00.0", "0000:02:00.2"},
			wantPFs: []string{"0000:02:00.0", "0000:5e:00.0"},
		},
		{
			name:   "PF removed (hot unplug)",
			before: []sysfstest.PF{sysfstest.ConnectX6IB(), sysfstest.IGB(), sysfstest.SRIOVDisabled(), sysfstest.E810()},
			after:  []sysfstest.PF{sysfstest.ConnectX6IB(), sysfstest.IGB(), sysfstest.SRIOVDisabled()},
			pci:    []string{"0000:5e:00.0"}, wantPFs: []string{"0000:5e:00.0"},
		},
		{
			name:    "a veth and an unknown PCI device: no PF",
			after:   []sysfstest.PF{sysfstest.ConnectX6IB(), sysfstest.E810(), sysfstest.IGB(), sysfstest.SRIOVDisabled()},
			pci:     []string{"0000:00:1f.2", "not-a-bdf"},
			ifNames: []string{"veth12ab", "../x"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			topo := sysfstest.Standard()
			if tc.before != nil {
				topo.PFs = tc.before
			}
			before := sysfstest.New(t, topo)
			prev, err := inventory.Scan(ctx, inventory.Options{Root: before.Root, Netlink: before.Netlink})
			if err != nil {
				t.Fatal(err)
			}
			after := sysfstest.New(t, sysfstest.Topology{PFs: tc.after})
			sc := inventory.Scanner{Options: inventory.Options{Root: after.Root, Netlink: after.Netlink}}
			pfs := sc.AffectedPFs(prev, tc.pci, tc.ifNames)
			if !reflect.DeepEqual(pfs, tc.wantPFs) && (len(pfs) != 0 || len(tc.wantPFs) != 0) {
				t.Fatalf("AffectedPFs = %v, want %v", pfs, tc.wantPFs)
			}
			got, err := sc.ScanPFs(ctx, prev, pfs)
			if err != nil {
				t.Fatal(err)
			}
			want, err := sc.Scan(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("rescan of %v differs from a full scan:\n got  %d devices, excluded %v\n want %d devices, excluded %v", pfs, len(got.Devices), got.Excluded, len(want.Devices), want.Excluded)
				for i := range min(len(got.Devices), len(want.Devices)) {
					if !reflect.DeepEqual(got.Devices[i], want.Devices[i]) {
						t.Errorf("first difference: got %+v\nwant %+v", got.Devices[i], want.Devices[i])
						break
					}
				}
			}
		})
	}
}

func TestScanPFsRefusesBadAddress(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Standard())
	prev := &inventory.Inventory{Devices: []inventory.Device{{Name: "x"}}}
	if _, err := inventory.ScanPFs(context.Background(), inventory.Options{Root: h.Root, Netlink: h.Netlink}, prev, []string{"../../etc"}); err == nil {
		t.Error("ScanPFs took a path for a PCI address")
	}
}
