package driver

import (
	"strings"
	"testing"

	v1alpha1 "github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

func TestCheckPKey(t *testing.T) {
	ib := &inventory.Device{Name: "pci-0000-3b-00-1", LinkType: inventory.LinkTypeInfiniBand}
	pf := &inventory.Device{PKeys: []string{"0xffff", "0x8001", "0x0002"}}
	eth := &inventory.Device{Name: "pci-0000-5e-00-1", LinkType: inventory.LinkTypeEthernet}
	for _, tc := range []struct {
		name    string
		want    v1alpha1.PKey
		pf, dev *inventory.Device
		errHas  string
	}{
		{name: "unset", want: 0, pf: pf, dev: eth},
		{name: "full member present", want: 0x8001, pf: pf, dev: ib},
		{name: "limited member present", want: 0x0002, pf: pf, dev: ib},
		{name: "limited request of a full-member entry", want: 0x0001, pf: pf, dev: ib, errHas: "asks for limited membership but the port's pkey table [0xffff 0x8001 0x0002] of device pci-0000-3b-00-1 has the partition as 0x8001 (full membership)"},
		{name: "full request of a limited entry", want: 0x8002, pf: pf, dev: ib, errHas: "asks for full membership"},
		{name: "the VF's own table first", want: 0x8005, pf: pf, dev: &inventory.Device{Name: "v", LinkType: inventory.LinkTypeInfiniBand, PKeys: []string{"0x8005"}}},
		{name: "default partition", want: 0x7fff, pf: &inventory.Device{}, dev: ib},
		{name: "absent", want: 0x8003, pf: pf, dev: ib, errHas: "not in the port's pkey table"},
		{name: "no table at all", want: 0x8001, pf: nil, dev: ib, errHas: "subnet manager"},
		{name: "ethernet", want: 0x8001, pf: pf, dev: eth, errHas: "not infiniband"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPKey(tc.want, tc.pf, tc.dev)
			if tc.errHas == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.errHas)
			}
		})
	}
}
