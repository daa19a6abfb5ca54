package driver

import (
	"encoding/json"
	"testing"

	cpv1 "github.com/sriov-dra/sriov-dra/api/checkpoint/v1"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// The attach original's link flags in the file: absent (not recorded, an
// earlier release's record) reads as not Known and is written absent
// again, so a downgrade reads the file as before; recorded ones, the
// defaults included ("flags":{}), survive both ways.
func TestCheckpointLinkFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string // the original's "flags" member, "" for none
		want netattach.LinkFlags
	}{
		{name: "not recorded", json: "", want: netattach.LinkFlags{}},
		{name: "defaults", json: `,"flags":{}`, want: netattach.LinkFlags{Known: true}},
		{name: "all set", json: `,"flags":{"promisc":true,"allMulti":true,"noARP":true,"alias":"pool a"}`,
			want: netattach.LinkFlags{Known: true, Promisc: true, AllMulti: true, NoARP: true, Alias: "pool a"}},
		{name: "queue length and group", json: `,"flags":{"alias":"pool a","txQLen":500,"group":3}`,
			want: netattach.LinkFlags{Known: true, Alias: "pool a", TxQLen: 500, Group: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := `{"ifName":"ens2f0v2","mac":"02:00:5e:00:00:06","mtu":1500,"identity":{"pciAddress":"0000:5e:00.3"}` + tc.json + `}`
			var p cpv1.PodDevice
			if err := json.Unmarshal([]byte(`{"spec":{"hostIfName":"ens2f0v2","podIfName":"data0"},"original":`+in+`}`), &p); err != nil {
				t.Fatal(err)
			}
			got := podFromV1(p)
			if got.Original == nil || got.Original.Flags != tc.want {
				t.Fatalf("read %s: original %+v, want flags %+v", in, got.Original, tc.want)
			}
			out, err := json.Marshal(podToV1(got).Original)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != in {
				t.Errorf("written again:\n got  %s\n want %s", out, in)
			}
		})
	}
}

// The golden files: the first v1 release's attached record holds no
// flags (Detach restores the host defaults), the release that added them
// reads its own back.
func TestGoldenCheckpointLinkFlags(t *testing.T) {
	for _, tc := range []struct {
		golden string
		want   netattach.LinkFlags
	}{
		{golden: "attached", want: netattach.LinkFlags{}},
		{golden: "attach-intent-flags", want: netattach.LinkFlags{Known: true, AllMulti: true, Alias: "pool a"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			var doc cpv1.Checkpoint
			if err := json.Unmarshal(goldenData(t, goldenFile(t, tc.golden)), &doc); err != nil {
				t.Fatal(err)
			}
			cp, err := CheckpointFromV1(&doc)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, rec := range cp.Claims {
				for _, d := range rec.Devices {
					if o := d.Pod.Original; o != nil {
						n++
						if o.Flags != tc.want {
							t.Errorf("device %s: flags %+v, want %+v", d.Device, o.Flags, tc.want)
						}
					}
				}
			}
			if n == 0 {
				t.Fatal("no device with an attach original in the file")
			}
		})
	}
}
