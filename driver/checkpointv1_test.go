package driver

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	cpv1 "github.com/sriov-dra/sriov-dra/api/checkpoint/v1"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/ethtool"
)

// filler sets every field reachable from a value to a distinct non-zero
// value: a field the conversion forgets comes back zero.
type filler struct{ n int }

var rawMessageType = reflect.TypeOf(json.RawMessage(nil))

func (f *filler) fill(v reflect.Value) {
	f.n++
	if v.Type() == rawMessageType {
		v.SetBytes([]byte(fmt.Sprintf(`{"n":%d}`, f.n)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", f.n))
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(f.n))
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(f.n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		f.fill(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				f.fill(v.Field(i))
			}
		}
	case reflect.Array:
		for i := range v.Len() {
			f.fill(v.Index(i))
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		f.fill(s.Index(0))
		f.fill(s.Index(1))
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		f.fill(k)
		e := reflect.New(v.Type().Elem()).Elem()
		f.fill(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	default:
		panic(fmt.Sprintf("filler: kind %s of %s", v.Kind(), v.Type()))
	}
}

// A field added to a runtime record type (or to a type it holds: the
// VF settings and snapshot, the IPAM result, the published device, the
// NRI view) but not to the schema and the conversion would silently not
// be checkpointed. Every field survives runtime -> v1 -> JSON -> v1 ->
// runtime, except the NRI view's fields that podDevice fills from the
// claim and device records.
func TestCheckpointConversionCoversEveryField(t *testing.T) {
	var rec ClaimRecord
	(&filler{}).fill(reflect.ValueOf(&rec).Elem())
	rec.Phase = PhasePrepareCompleted // an enumeration: one of its values
	for _, d := range rec.Devices {
		d.Pod.PodUID, d.Pod.ClaimUID, d.Pod.ClaimNamespace, d.Pod.ClaimName = "", "", "", ""
		d.Pod.Request, d.Pod.Device, d.Pod.PCIAddress = "", "", ""
		d.Pod.Original.Features.Count = 32 * ethtool.MaxWords // every word kept
	}
	cp := &Checkpoint{BootID: "boot-x", Owner: "daemon-x", Claims: map[string]*ClaimRecord{rec.UID: &rec},
		DropRequests: []DropRequest{{ClaimUID: rec.UID, By: "admin", At: "2026-12-06T00:00:00Z"}}}
	b, err := json.Marshal(CheckpointToV1(cp))
	if err != nil {
		t.Fatal(err)
	}
	var doc cpv1.Checkpoint
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	got, err := CheckpointFromV1(&doc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cp) {
		gb, _ := json.MarshalIndent(got, "", " ")
		wb, _ := json.MarshalIndent(cp, "", " ")
		t.Errorf("lost in the conversion:\n got  %s\n want %s", gb, wb)
	}

	// The runtime Checkpoint's own fields, the one version marker aside.
	var all Checkpoint
	(&filler{}).fill(reflect.ValueOf(&all).Elem())
	for uid, r := range all.Claims {
		r.UID, r.Phase = uid, PhasePrepareStarted
		for _, d := range r.Devices {
			d.Pod = nri.PodDevice{}
		}
	}
	again, err := CheckpointFromV1(CheckpointToV1(&all))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, &all) {
		t.Errorf("runtime checkpoint lost a field:\n got  %+v\n want %+v", again, &all)
	}
}

// What the v1 conversion refuses, each naming what is wrong.
func TestCheckpointFromV1Refuses(t *testing.T) {
	ok := func() *cpv1.Checkpoint {
		return &cpv1.Checkpoint{Version: cpv1.Version, BootID: "b", Claims: map[string]*cpv1.Claim{
			"u1": {UID: "u1", Phase: cpv1.PhasePrepareCompleted, Devices: []*cpv1.Device{{Device: "d"}}},
		}}
	}
	for _, tc := range []struct {
		name   string
		change func(*cpv1.Checkpoint)
		want   string // "" accepted
	}{
		{name: "valid", change: func(*cpv1.Checkpoint) {}},
		{name: "no claims", change: func(c *cpv1.Checkpoint) { c.Claims = nil }},
		{name: "newer version", change: func(c *cpv1.Checkpoint) { c.Version = "sriov.dra.dev/checkpoint/v2" }, want: `version "sriov.dra.dev/checkpoint/v2"`},
		{name: "no version", change: func(c *cpv1.Checkpoint) { c.Version = "" }, want: `version ""`},
		{name: "no boot", change: func(c *cpv1.Checkpoint) { c.BootID = "" }, want: "no bootID"},
		{name: "null record", change: func(c *cpv1.Checkpoint) { c.Claims["u1"] = nil }, want: `entry "u1" is malformed`},
		{name: "mismatched uid", change: func(c *cpv1.Checkpoint) { c.Claims["u1"].UID = "u2" }, want: `entry "u1" is malformed`},
		{name: "unknown phase", change: func(c *cpv1.Checkpoint) { c.Claims["u1"].Phase = "Attaching" }, want: `phase "Attaching"`},
		{name: "null device", change: func(c *cpv1.Checkpoint) { c.Claims["u1"].Devices = append(c.Claims["u1"].Devices, nil) }, want: "devices[1] is null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := ok()
			tc.change(doc)
			cp, err := CheckpointFromV1(doc)
			if tc.want == "" {
				if err != nil || cp.Claims == nil {
					t.Fatalf("CheckpointFromV1 = %+v, %v", cp, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
