package v1alpha1

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestResolvedMarshalLog(t *testing.T) {
	vlan, trust := 100, false
	for _, tc := range []struct {
		name string
		in   *Resolved
		want map[string]any
	}{
		{"nil", nil, nil},
		{"defaults only", &Resolved{Kind: KindVfConfig, Driver: DriverNetdevice, IRQAffinity: IRQAffinityNone},
			map[string]any{"kind": KindVfConfig, "driver": DriverNetdevice, "irqAffinity": IRQAffinityNone}},
		{"set fields, pointers dereferenced", &Resolved{
			Kind: KindVfConfig, Driver: DriverNetdevice, IfName: "net1", MAC: "02:00:00:00:00:01",
			VLAN: &vlan, Trust: &trust, PKey: 0x8001, IPAM: json.RawMessage(`{"type":"host-local"}`),
			Routes: []Route{{Dst: "10.0.0.0/8"}},
		}, map[string]any{
			"kind": KindVfConfig, "driver": DriverNetdevice, "ifName": "net1", "mac": "02:00:00:00:00:01",
			"vlan": 100, "trust": false, "pKey": "0x8001", "ipam": json.RawMessage(`{"type":"host-local"}`),
			"routes": []Route{{Dst: "10.0.0.0/8"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in.MarshalLog()
			if tc.want == nil {
				if got != nil {
					t.Fatalf("MarshalLog() = %v, want nil", got)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("MarshalLog() =\n%#v\nwant\n%#v", got, tc.want)
			}
		})
	}
}

func TestLowerCamel(t *testing.T) {
	for in, want := range map[string]string{
		"IfName": "ifName", "MTU": "mtu", "MAC": "mac", "VLANQoS": "vlanQoS", "GUIDPrefix": "guidPrefix",
		"PKey": "pKey", "IRQAffinity": "irqAffinity", "Kind": "kind", "X": "x",
	} {
		if got := lowerCamel(in); got != want {
			t.Errorf("lowerCamel(%q) = %q, want %q", in, got, want)
		}
	}
}
