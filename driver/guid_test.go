package driver

import (
	"strings"
	"testing"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

func TestAutoGUID(t *testing.T) {
	pf := &inventory.Device{Kind: inventory.KindPF, PCIAddress: "0000:3b:00.0", PortGUID: "98:03:9b:03:00:9f:cc:12"}
	vf := func(i int) *inventory.Device {
		return &inventory.Device{Kind: inventory.KindVF, Name: "v", PCIAddress: "x", PFPCIAddress: "0000:3b:00.0", VFIndex: i}
	}
	for _, tc := range []struct {
		name    string
		pf, vf  *inventory.Device
		want    string
		wantErr string
	}{
		{"vf 0", pf, vf(0), "9a:03:9b:9f:cc:12:00:01", ""},
		{"vf 4", pf, vf(4), "9a:03:9b:9f:cc:12:00:05", ""},
		{"vf 300", pf, vf(300), "9a:03:9b:9f:cc:12:01:2d", ""},
		{"no pf", nil, vf(0), "", "not in the inventory"},
		{"pf without guid", &inventory.Device{Kind: inventory.KindPF, PCIAddress: "0000:3b:00.0"}, vf(0), "", "no usable port GUID"},
		{"zero guid", &inventory.Device{Kind: inventory.KindPF, PCIAddress: "0000:3b:00.0", PortGUID: "00:00:00:00:00:00:00:00"}, vf(0), "", "all zero"},
		{"a pf", pf, pf, "", "not a VF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AutoGUID(tc.pf, tc.vf)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("AutoGUID = %q, %v; want %q", got, err, tc.want)
			}
			again, _ := AutoGUID(tc.pf, tc.vf)
			if again != got {
				t.Error("not deterministic")
			}
		})
	}
	// Unique across the VFs of a PF.
	seen := map[string]bool{}
	for i := 0; i < 1024; i++ {
		g, err := AutoGUID(pf, vf(i))
		if err != nil || seen[g] {
			t.Fatalf("vf %d: %s %v (dup %v)", i, g, err, seen[g])
		}
		seen[g] = true
	}
}
