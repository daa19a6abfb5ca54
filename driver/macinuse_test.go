package driver

import (
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// TestMACInUseWording: the refusal of a held MAC says what breaks and
// what to do for the holder it names, whoever made that holder: a host
// link is no VF, a device of the node is no claim.
func TestMACInUseWording(t *testing.T) {
	const m = "02:00:00:00:10:01"
	hw, _ := net.ParseMAC(m)
	nl := nlinktest.New()
	nl.AddLink(netlink.LinkAttrs{Name: "eno1", HardwareAddr: hw})
	fromLinks := map[string]string{}
	if err := hostLinkMACs(nl, fromLinks); err != nil {
		t.Fatal(err)
	}
	fromDevices := map[string]string{}
	nodeMACs(&inventory.Inventory{Devices: []inventory.Device{{Name: "pci-0000-5e-00-2", Kind: inventory.KindVF, MAC: m}}}, fromDevices)
	for _, tc := range []struct {
		name    string
		holder  string
		want    []string
		notWant string
	}{
		{name: "another claim", holder: "claim ns/claim-a (ua)",
			want: []string{"MAC " + m + " is already in use on this node by claim ns/claim-a (ua): two VFs with one MAC break forwarding for both; give each claim its own mac, or mac: auto", "ResourceClaimTemplate"}},
		{name: "another request of the claim", holder: requestHolder("a"),
			want: []string{`by request "a" of this claim: two VFs with one MAC break forwarding for both; give each request its own mac, or mac: auto`}, notWant: "ResourceClaimTemplate"},
		{name: "a device of the node", holder: fromDevices[m],
			want: []string{"by device pci-0000-5e-00-2: a VF with the MAC another device of this node carries breaks forwarding for both; give the claim a mac of its own, or mac: auto"}, notWant: "two VFs"},
		{name: "a host link", holder: fromLinks[m],
			want: []string{"by host link eno1: a VF with the MAC of a link the node itself uses breaks forwarding for both", "give the claim a mac no host link carries, or mac: auto"}, notWant: "two VFs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := macInUse(m, tc.holder).Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
			if tc.notWant != "" && strings.Contains(got, tc.notWant) {
				t.Errorf("%q says %q", got, tc.notWant)
			}
		})
	}
}
