package vfconfig

import (
	"context"
	"reflect"
	"testing"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/hw"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
)

// TestStandardFixture runs snapshot, apply and restore on every VF the
// inventory finds in the shared sysfs fixture (ConnectX-6 IB, E810, I350):
// the snapshot matches what the fixture was built with, and a full apply
// followed by a restore leaves every PF exactly as it was.
func TestStandardFixture(t *testing.T) {
	ctx := context.Background()
	h := sysfstest.New(t, sysfstest.Standard())
	inv, err := inventory.Scan(ctx, inventory.Options{Root: h.Root, Netlink: h.Netlink})
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{t: t, root: h.Root}
	fx.startKernel([]string{"mlx5_core", "iavf", "igbvf", "vfio-pci"})
	pfState := func() map[string]vfState {
		out := map[string]vfState{}
		for _, pf := range []string{"ibp59s0f0", "ens2f0", "enp2s0f0"} {
			l, ok := h.Netlink.Link(pf)
			if !ok {
				t.Fatalf("PF %s missing", pf)
			}
			g, err := h.Netlink.VFGUIDs(l)
			if err != nil {
				t.Fatal(err)
			}
			vfs := l.Attrs().Vfs
			for i := range vfs {
				// Not reported (0) means 802.1Q; the kernel takes only
				// 802.1Q or 802.1ad back, so restore writes 802.1Q.
				if vfs[i].VlanProto == 0 {
					vfs[i].VlanProto = hw.VLANProto8021Q
				}
			}
			out[pf] = vfState{VFs: vfs, GUIDs: g}
		}
		return out
	}
	before := pfState()
	vfs := 0
	for _, dev := range inv.Devices {
		if dev.Kind != inventory.KindVF || dev.Driver == VFIODriver {
			continue
		}
		vfs++
		snap, err := TakeSnapshot(ctx, h.Netlink, h.Root, dev)
		if err != nil {
			t.Fatalf("%s: %v", dev.Name, err)
		}
		if !snap.AdminKnown || snap.IfName != dev.IfName || snap.MAC != dev.MAC || snap.Driver != dev.Driver || len(snap.IRQAffinity) == 0 {
			t.Errorf("%s: snapshot %+v does not match the device %+v", dev.Name, snap, dev)
		}
		if dev.Admin != nil && !reflect.DeepEqual(snap.Admin, *dev.Admin) {
			t.Errorf("%s: snapshot admin %+v, inventory admin %+v", dev.Name, snap.Admin, *dev.Admin)
		}
		s := allSettings()
		knobs := s.Knobs()
		ib := dev.LinkType == inventory.LinkTypeInfiniBand && snap.Admin.NodeGUID != ""
		if ib {
			knobs = append(knobs, KnobGUID)
			chars, err := rdma.CharDevices(h.Root, dev.PCIAddress)
			if err != nil || len(chars) == 0 {
				t.Errorf("%s: RDMA char devices %v, %v", dev.Name, chars, err)
			}
		}
		if err := Apply(ctx, h.Netlink, h.Root, snap, s); err != nil {
			t.Fatalf("%s: apply: %v", dev.Name, err)
		}
		if ib {
			if err := SetGUID(ctx, h.Netlink, h.Root, snap, testGUID); err != nil {
				t.Fatalf("%s: set GUID: %v", dev.Name, err)
			}
		}
		if err := Restore(ctx, h.Netlink, h.Root, snap, knobs); err != nil {
			t.Fatalf("%s: restore: %v", dev.Name, err)
		}
	}
	if vfs < 20 {
		t.Fatalf("only %d netdev VFs found in the standard fixture", vfs)
	}
	if after := pfState(); !reflect.DeepEqual(after, before) {
		t.Errorf("PFs changed after apply+restore of every VF\n got %+v\nwant %+v", after, before)
	}
}
