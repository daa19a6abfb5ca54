package driver

import (
	"encoding/json"
	"strings"
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

// The attach original's offload features (and ring sizes and channel
// counts) in the file: absent (an
// earlier release's record, or a netdev that does not report them)
// reads as not recorded and is written absent again; recorded ones are
// written with the words their count takes and read back as they were.
func TestCheckpointFeatures(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string // the original's "features" member, "" for none
		want netattach.Features
	}{
		{name: "not recorded", json: "", want: netattach.Features{}},
		{name: "one word", json: `,"features":{"count":20,"changeable":[7],"requested":[5]}`,
			want: netattach.Features{Count: 20, Changeable: [4]uint32{7}, Requested: [4]uint32{5}}},
		{name: "three words", json: `,"features":{"count":66,"changeable":[4294967295,1,2],"requested":[0,1,0]}`,
			want: netattach.Features{Count: 66, Changeable: [4]uint32{0xffffffff, 1, 2}, Requested: [4]uint32{0, 1}}},
	} {
		// The ring sizes and channel counts ride along: absent in the
		// first case, recorded in the others.
		rc := `,"rings":{"rx":256,"tx":512},"channels":{"combined":4}`
		wantR, wantC := netattach.Rings{Known: true, RX: 256, TX: 512}, netattach.Channels{Known: true, Combined: 4}
		if tc.json == "" {
			rc, wantR, wantC = "", netattach.Rings{}, netattach.Channels{}
		}
		tc.json += rc
		t.Run(tc.name, func(t *testing.T) {
			in := `{"ifName":"ens2f0v2","mac":"02:00:5e:00:00:06","mtu":1500,"identity":{"pciAddress":"0000:5e:00.3"},"flags":{}` + tc.json + `}`
			var p cpv1.PodDevice
			if err := json.Unmarshal([]byte(`{"spec":{"hostIfName":"ens2f0v2","podIfName":"data0"},"original":`+in+`}`), &p); err != nil {
				t.Fatal(err)
			}
			if err := checkFeaturesV1(p.Original.Features); err != nil {
				t.Fatalf("check %s: %v", in, err)
			}
			got := podFromV1(p)
			if got.Original == nil || got.Original.Features != tc.want {
				t.Fatalf("read %s: original %+v, want features %+v", in, got.Original, tc.want)
			}
			if got.Original.Rings != wantR || got.Original.Channels != wantC {
				t.Fatalf("read %s: rings %+v, channels %+v; want %+v, %+v", in, got.Original.Rings, got.Original.Channels, wantR, wantC)
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

// Recorded features whose words do not fit their count make the record
// unreadable, naming the device and the field: restoring them would set
// features nobody recorded.
func TestCheckpointFeaturesMalformed(t *testing.T) {
	for _, tc := range []struct {
		name, json, want string
	}{
		{name: "no count", json: `{"count":0,"changeable":[],"requested":[]}`, want: "count 0"},
		{name: "too many", json: `{"count":129,"changeable":[0,0,0,0,0],"requested":[0,0,0,0,0]}`, want: "count 129"},
		{name: "short changeable", json: `{"count":40,"changeable":[1],"requested":[1,0]}`, want: "changeable has 1 words"},
		{name: "long requested", json: `{"count":40,"changeable":[1,0],"requested":[1,0,0]}`, want: "requested has 3 words"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := `{"version":"` + cpv1.Version + `","bootID":"b","claims":{"u1":{"uid":"u1","phase":"PrepareCompleted","devices":[{"device":"vf-3","pod":{"spec":{"hostIfName":"e","podIfName":"net1"},` +
				`"original":{"ifName":"e","mac":"","mtu":1500,"identity":{"pciAddress":"0000:5e:00.3"},"features":` + tc.json + `}}}]}}}`
			var v cpv1.Checkpoint
			if err := json.Unmarshal([]byte(doc), &v); err != nil {
				t.Fatal(err)
			}
			_, err := CheckpointFromV1(&v)
			for _, w := range []string{"vf-3", "original features", tc.want} {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("read: %v, want an error saying %q", err, w)
				}
			}
		})
	}
}
