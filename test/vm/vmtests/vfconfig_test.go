//go:build vmtest

package vmtests

import (
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

func ptr[T any](v T) *T { return &v }

// TestVFSettings applies mac, vlan+qos, spoofchk and trust to a real VF
// through its igb PF, reads them back from the kernel, restores the snapshot
// and reads the originals back.
func TestVFSettings(t *testing.T) {
	ctx := newCtx(t)
	h := hostHandle(t)
	pf, vf := vfFor(t, 0, 1)
	before := readRaw(t, h, pf, vf.Index)
	dev := scanDevice(t, ctx, h, vf.PCI)
	snap, err := vfconfig.TakeSnapshot(ctx, h, "/", dev)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if !snap.AdminKnown || snap.PFDriver != "igb" || snap.Driver != "igbvf" || snap.IfName != vf.IfName ||
		snap.Admin.MAC != adminMAC(before.Admin.Mac) || snap.Admin.SpoofChk != before.Admin.Spoofchk ||
		snap.MTU != before.MTU || snap.MAC != before.MAC {
		t.Fatalf("snapshot %+v does not match the kernel's %+v", snap, before)
	}

	s := vfconfig.Settings{
		MAC:      ptr("02:5a:00:00:01:01"),
		VLAN:     ptr(100),
		QoS:      ptr(3),
		SpoofChk: ptr(!before.Admin.Spoofchk),
		Trust:    ptr(before.Admin.Trust == 0),
	}
	t.Cleanup(func() {
		if err := vfconfig.Restore(ctx, h, "/", snap, s.Knobs()); err != nil {
			t.Errorf("restore at cleanup: %v", err)
		}
	})
	if err := vfconfig.Apply(ctx, h, "/", snap, s); err != nil {
		t.Fatalf("apply %v: %v", s.Knobs(), err)
	}
	got := readRaw(t, h, pf, vf.Index).Admin
	if got.Mac.String() != *s.MAC || got.Vlan != *s.VLAN || got.Qos != *s.QoS ||
		got.Spoofchk != *s.SpoofChk || (got.Trust != 0) != *s.Trust {
		t.Errorf("after apply the PF reports %+v, want mac %s vlan %d qos %d spoofchk %v trust %v",
			got, *s.MAC, *s.VLAN, *s.QoS, *s.SpoofChk, *s.Trust)
	}
	if err := vfconfig.Restore(ctx, h, "/", snap, s.Knobs()); err != nil {
		t.Fatalf("restore: %v", err)
	}
	waitRaw(t, h, pf, vf.Index, before, waitShort)
	// Restoring twice is fine and changes nothing.
	if err := vfconfig.Restore(ctx, h, "/", snap, s.Knobs()); err != nil {
		t.Fatalf("second restore: %v", err)
	}
	waitRaw(t, h, pf, vf.Index, before, waitShort)
}

// TestUnsupportedKnobs asks igb for what it cannot do — VF link state, a TX
// rate while the PF link is down, an 802.1ad VLAN — each after knobs it can
// do, and wants a clear error naming knob and driver and the VF exactly as
// it was (the knobs already applied rolled back).
func TestUnsupportedKnobs(t *testing.T) {
	ctx := newCtx(t)
	h := hostHandle(t)
	pf, vf := vfFor(t, 0, 2)

	pfl, err := h.LinkByName(pf.IfName)
	if err != nil {
		t.Fatal(err)
	}
	if pfl.Attrs().OperState == netlink.OperUp {
		if err := h.LinkSetDown(pfl); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.LinkSetUp(pfl) })
	}

	cases := []struct {
		name     string
		s        vfconfig.Settings
		wantText []string
	}{
		{
			name:     "link state",
			s:        vfconfig.Settings{MAC: ptr("02:5a:00:00:02:01"), Trust: ptr(true), LinkState: ptr("enable")},
			wantText: []string{"linkState", "igb", pf.IfName},
		},
		{
			name:     "max tx rate with the PF link down",
			s:        vfconfig.Settings{MAC: ptr("02:5a:00:00:02:02"), VLAN: ptr(7), MaxTxRate: ptr(100)},
			wantText: []string{"tx rate", "igb", pf.IfName},
		},
		{
			name:     "802.1ad vlan",
			s:        vfconfig.Settings{MAC: ptr("02:5a:00:00:02:03"), VLAN: ptr(8), VLANProto: ptr("802.1ad")},
			wantText: []string{"vlan", "igb", pf.IfName},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := readRaw(t, h, pf, vf.Index)
			dev := scanDevice(t, ctx, h, vf.PCI)
			snap, err := vfconfig.TakeSnapshot(ctx, h, "/", dev)
			if err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			t.Cleanup(func() { _ = vfconfig.Restore(ctx, h, "/", snap, tc.s.Knobs()) })
			err = vfconfig.Apply(ctx, h, "/", snap, tc.s)
			if err == nil {
				t.Fatalf("apply %v on igb succeeded, want an error", tc.s.Knobs())
			}
			t.Logf("error: %v", err)
			for _, w := range tc.wantText {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			waitRaw(t, h, pf, vf.Index, before, waitShort)
		})
	}
}
