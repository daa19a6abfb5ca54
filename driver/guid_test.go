package driver

import (
	"strings"
	"testing"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

func TestAutoGUID(t *testing.T) {
	pf := &inventory.Device{Kind: inventory.KindPF, PCIAddress: "0000:3b:00.0", PortGUID: "98:03:9b:03:00:9f:cc:12"}
	vf := func(i int) *inventory.Device {
		return &inventory.Device{Kind: inventory.KindVF, Name: "v" + string(rune('a'+i)), PCIAddress: "x", PFPCIAddress: "0000:3b:00.0", VFIndex: i}
	}
	for _, tc := range []struct {
		name       string
		prefix     string
		pf, vf     *inventory.Device
		wantPrefix string
		wantErr    string
	}{
		{"the PF's OUI, locally administered", "", pf, vf(0), "9a:03:9b:", ""},
		{"the class's prefix", "02:AA:00:01", pf, vf(0), "02:aa:00:01:", ""},
		{"a class prefix needs no PF GUID", "02", &inventory.Device{Kind: inventory.KindPF, PCIAddress: "0000:3b:00.0"}, vf(0), "02:", ""},
		{"no pf", "", nil, vf(0), "", "not in the inventory"},
		{"pf without guid", "", &inventory.Device{Kind: inventory.KindPF, PCIAddress: "0000:3b:00.0"}, vf(0), "", "set policy.guidPrefix"},
		{"zero guid", "", &inventory.Device{Kind: inventory.KindPF, PCIAddress: "0000:3b:00.0", PortGUID: "00:00:00:00:00:00:00:00"}, vf(0), "", "all-zero"},
		{"a pf", "", pf, pf, "", "not a VF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AutoGUID(tc.prefix, tc.pf, tc.vf, "claim-1", 0)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !strings.HasPrefix(got, tc.wantPrefix) || len(got) != len("00:00:00:00:00:00:00:00") {
				t.Fatalf("AutoGUID = %q, %v; want 8 bytes starting %q", got, err, tc.wantPrefix)
			}
			if again, _ := AutoGUID(tc.prefix, tc.pf, tc.vf, "claim-1", 0); again != got {
				t.Error("not stable for the claim")
			}
			if next, _ := AutoGUID(tc.prefix, tc.pf, tc.vf, "claim-2", 0); next == got {
				t.Error("the next claim of the VF gets the same GUID")
			}
		})
	}
	// Unique across the VFs of a PF and the claims of a VF.
	seen := map[string]bool{}
	for i := 0; i < 16; i++ {
		for c := 0; c < 64; c++ {
			g, err := AutoGUID("", pf, vf(i), "claim-"+string(rune('A'+c)), 0)
			if err != nil || seen[g] {
				t.Fatalf("vf %d claim %d: %s %v (dup %v)", i, c, g, err, seen[g])
			}
			seen[g] = true
		}
	}
}

func TestPickAutoGUIDSkipsHeld(t *testing.T) {
	pf := &inventory.Device{Kind: inventory.KindPF, PCIAddress: "0000:3b:00.0", PortGUID: "98:03:9b:03:00:9f:cc:12"}
	vf := &inventory.Device{Kind: inventory.KindVF, Name: "0000-3b-00-4", PFPCIAddress: "0000:3b:00.0", VFIndex: 3}
	first, err := pickAutoGUID("", pf, vf, "c1", map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	// Held by another claim: the next attempt.
	second, err := pickAutoGUID("", pf, vf, "c1", map[string]string{first: "claim other"})
	if err != nil || second == first {
		t.Fatalf("with %s held: %s, %v", first, second, err)
	}
	// Carried by the VF itself (a retry after the GUID was set): kept.
	if again, _ := pickAutoGUID("", pf, vf, "c1", map[string]string{first: "device " + vf.Name}); again != first {
		t.Errorf("the VF's own GUID was not kept: %s, want %s", again, first)
	}
	// A 7-byte prefix leaves 256 values; with all of them held there is none.
	held := map[string]string{}
	for i := range 256 {
		held["02:00:00:00:00:00:00:"+strings.ToLower(hex2(i))] = "claim x"
	}
	if _, err := pickAutoGUID("02:00:00:00:00:00:00", pf, vf, "c1", held); err == nil || !strings.Contains(err.Error(), "no free GUID") {
		t.Errorf("err = %v, want no free GUID", err)
	}
}

func hex2(i int) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[i>>4], digits[i&15]})
}
