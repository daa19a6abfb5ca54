package settings

import (
	"fmt"
	"reflect"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1alpha1 "github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

func resolve(t *testing.T, params string) *v1alpha1.Resolved {
	t.Helper()
	configs := []resourceapi.DeviceAllocationConfiguration{{
		Source: resourceapi.AllocationConfigSourceClass, // a class config: no policy bounds it
		DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
			Driver: v1alpha1.DriverName, Parameters: runtime.RawExtension{Raw: []byte(params)},
		}},
	}}
	r, errs := v1alpha1.Resolve(field.NewPath("config"), configs, v1alpha1.DriverName, "req", "", v1alpha1.DeviceVF)
	if len(errs) > 0 {
		t.Fatalf("Resolve: %v", errs)
	}
	return r
}

// TestFromConfigToAppliedValues follows every VF setting and every netdev
// field from the user's config to the structures the driver applies.
func TestFromConfigToAppliedValues(t *testing.T) {
	r := resolve(t, `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig",
		"ifName":"data0","mtu":9000,"mac":"02:AA:00:00:00:01",
		"vlan":100,"vlanQoS":5,"vlanProto":"802.1ad","spoofChk":false,"trust":true,"linkState":"enable",
		"minTxRate":100,"maxTxRate":1000,"guid":"00-11-22-33-44-55-66-77",
		"routes":[{"dst":"10.20.0.0/16","gw":"10.1.0.1"},{"dst":"fd00::/64"}]}`)
	wantVF := vfconfig.Settings{
		MAC: new("02:aa:00:00:00:01"), VLAN: new(100), QoS: new(5), VLANProto: new("802.1ad"),
		SpoofChk: new(false), Trust: new(true), LinkState: new("enable"), MinTxRate: new(100), MaxTxRate: new(1000),
	}
	gotVF := VF(r)
	if !reflect.DeepEqual(gotVF, wantVF) {
		t.Errorf("VF:\n got  %s\n want %s", dump(gotVF), dump(wantVF))
	}
	// Every field of vfconfig.Settings is set by a full config: a field
	// added there and not mapped here fails this test.
	v := reflect.ValueOf(gotVF)
	for i := 0; i < v.NumField(); i++ {
		if v.Field(i).IsNil() {
			t.Errorf("vfconfig.Settings.%s is not carried from the config", v.Type().Field(i).Name)
		}
	}

	if g := GUID(r); g == nil || *g != "00:11:22:33:44:55:66:77" {
		t.Errorf("GUID = %v, want 00:11:22:33:44:55:66:77", g)
	}

	wantSpec := netattach.Spec{HostIfName: "enp59s0f0v2", PodIfName: "data0", MTU: 9000, MAC: "02:aa:00:00:00:01",
		Routes: []netattach.Route{{Dst: "10.20.0.0/16", GW: "10.1.0.1"}, {Dst: "fd00::/64"}}}
	gotSpec := NetSpec(r, "enp59s0f0v2", r.IfName)
	if !reflect.DeepEqual(gotSpec, wantSpec) {
		t.Errorf("NetSpec:\n got  %+v\n want %+v", gotSpec, wantSpec)
	}
	// Every field of netattach.Spec but the IPAM addresses comes from here.
	s := reflect.ValueOf(gotSpec)
	for i := 0; i < s.NumField(); i++ {
		if name := s.Type().Field(i).Name; name != "Addresses" && s.Field(i).IsZero() {
			t.Errorf("netattach.Spec.%s is not carried from the config", name)
		}
	}
}

func TestVFLeavesUnsetAlone(t *testing.T) {
	tests := []struct {
		name   string
		params string
		want   vfconfig.Settings
	}{
		{"nothing set", `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig"}`, vfconfig.Settings{}},
		{"guid auto is the driver's to pick", `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","guid":"auto"}`, vfconfig.Settings{}},
		{"mac auto is the driver's to pick", `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","mac":"auto"}`, vfconfig.Settings{}},
		{"vlan brings qos and proto defaults", `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":7}`,
			vfconfig.Settings{VLAN: new(7), QoS: new(0), VLANProto: new("802.1q")}},
		{"vfio-pci keeps the admin MAC", `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","driver":"vfio-pci","mac":"02:00:00:00:00:09"}`,
			vfconfig.Settings{MAC: new("02:00:00:00:00:09")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := VF(resolve(t, tt.params))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("VF:\n got  %s\n want %s", dump(got), dump(tt.want))
			}
		})
	}
}

func TestVFSharesNothing(t *testing.T) {
	r := resolve(t, `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":7,"trust":true}`)
	s := VF(r)
	*s.VLAN, *s.Trust = 8, false
	if *r.VLAN != 7 || !*r.Trust {
		t.Errorf("VF shares memory with the resolved config")
	}
}

func dump(s vfconfig.Settings) string {
	v := reflect.ValueOf(s)
	out := "{"
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); !f.IsNil() {
			out += " " + v.Type().Field(i).Name + "=" + reflectString(f.Elem())
		}
	}
	return out + " }"
}

func reflectString(v reflect.Value) string { return fmt.Sprint(v.Interface()) }

func TestNetSpecLeavesAutoMACToTheDriver(t *testing.T) {
	r := resolve(t, `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","mac":"auto"}`)
	if got := NetSpec(r, "ens2f0v1", "net1"); got.MAC != "" {
		t.Errorf("NetSpec MAC = %q, want none (the driver sets the MAC it picks)", got.MAC)
	}
}

func TestGUID(t *testing.T) {
	tests := []struct {
		name   string
		params string
		want   *string
	}{
		{"unset", `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig"}`, nil},
		{"auto is the driver's to pick", `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","guid":"auto"}`, nil},
		{"given, canonical", `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","guid":"02:AA:00:00:00:00:00:01"}`, new("02:aa:00:00:00:00:00:01")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := resolve(t, tt.params)
			got := GUID(r)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("GUID = %s, want %s", strOrNil(got), strOrNil(tt.want))
			}
			if got != nil && got == &r.GUID {
				t.Error("GUID shares memory with the resolved config")
			}
		})
	}
}

func strOrNil(p *string) string {
	if p == nil {
		return "nil"
	}
	return *p
}
