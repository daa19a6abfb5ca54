package nri

import (
	"context"
	"testing"

	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

func TestIdentityOfRecord(t *testing.T) {
	peer := netattach.Identity{HostPeerIndex: 7, Kind: "veth"}
	for _, tc := range []struct {
		name string
		d    PodDevice
		want netattach.Identity
	}{
		{"recorded with the original", PodDevice{PCIAddress: "0000:3b:02.1", Original: &netattach.Original{IfName: "vf1", Identity: peer}}, peer},
		{"a record from before identities: the driver's PCI address", PodDevice{PCIAddress: "0000:3b:02.1", Original: &netattach.Original{IfName: "vf1"}}, netattach.Identity{PCIAddress: "0000:3b:02.1"}},
		{"nothing moved yet", PodDevice{PCIAddress: "0000:3b:02.1"}, netattach.Identity{PCIAddress: "0000:3b:02.1"}},
		{"nothing to go by", PodDevice{Original: &netattach.Original{IfName: "vf1"}}, netattach.Identity{}},
	} {
		if got := identity(tc.d); got != tc.want {
			t.Errorf("%s: identity = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// origHost records the Original each Detach is given.
type origHost struct {
	*fakeHost
	got []netattach.Original
}

func (h *origHost) Detach(ctx context.Context, netnsPath, podIfName string, orig netattach.Original) error {
	h.got = append(h.got, orig)
	return h.fakeHost.Detach(ctx, netnsPath, podIfName, orig)
}

// TestDetachOldRecordUsesPCIAddress: a device recorded in a netns by a
// version that did not record identities is detached by the PCI address
// of the driver's record, never by name alone.
func TestDetachOldRecordUsesPCIAddress(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, ethDevice("1"))
	if err := f.p.RunPodSandbox(ctx, testSandbox(testPod, "sb", "/run/netns/a")); err != nil {
		t.Fatal(err)
	}
	d := f.devs.ForPod(testPod)[0]
	if d.Original == nil || d.Original.Identity != (netattach.Identity{PCIAddress: "0000:3b:02.1"}) {
		t.Fatalf("attach recorded %+v, want the identity read with the original", d.Original)
	}
	old := *d.Original
	old.Identity = netattach.Identity{}
	d.Original = &old
	h := &origHost{fakeHost: f.host}
	p, err := New(Config{}, f.devs, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.DetachDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	if len(h.got) != 1 || h.got[0].Identity != (netattach.Identity{PCIAddress: "0000:3b:02.1"}) || h.got[0].IfName != "vf1" {
		t.Errorf("Detach was given %+v, want the record's original with PCI 0000:3b:02.1", h.got)
	}
}
