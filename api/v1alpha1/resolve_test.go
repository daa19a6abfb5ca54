package v1alpha1

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var allocPath = field.NewPath("status", "allocation", "devices", "config")

const (
	fromClass = resourceapi.AllocationConfigSourceClass
	fromClaim = resourceapi.AllocationConfigSourceClaim
)

// conf builds one allocation config for our driver.
func conf(src resourceapi.AllocationConfigSource, requests []string, kind, body string) resourceapi.DeviceAllocationConfiguration {
	return confFor(DriverName, src, requests, kind, body)
}

func confFor(driver string, src resourceapi.AllocationConfigSource, requests []string, kind, body string) resourceapi.DeviceAllocationConfiguration {
	raw := fmt.Sprintf(`{"apiVersion":%q,"kind":%q`, APIVersion, kind)
	if body != "" {
		raw += "," + body
	}
	raw += "}"
	return resourceapi.DeviceAllocationConfiguration{
		Source:   src,
		Requests: requests,
		DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
			Driver: driver, Parameters: runtime.RawExtension{Raw: []byte(raw)},
		}},
	}
}

// fieldCase is one config field: two different valid values as written
// by a user, and what Resolve must make of each.
type fieldCase struct {
	json         string
	a, b         string // JSON values
	base         string // fields another config must set for a and b to be valid
	get          func(*Resolved) any
	wantA, wantB any
}

func vfFieldCases() []fieldCase {
	return []fieldCase{
		{json: "ifName", a: `"net7"`, b: `"data1"`, get: func(r *Resolved) any { return r.IfName }, wantA: "net7", wantB: "data1"},
		{json: "mtu", a: `1500`, b: `9000`, get: func(r *Resolved) any { return r.MTU }, wantA: 1500, wantB: 9000},
		{json: "mac", a: `"02:AA:BB:CC:DD:EE"`, b: `"02-00-00-00-00-01"`, get: func(r *Resolved) any { return r.MAC }, wantA: "02:aa:bb:cc:dd:ee", wantB: "02:00:00:00:00:01"},
		{json: "mac", a: `"02:AA:BB:CC:DD:EE"`, b: `"auto"`, get: func(r *Resolved) any { return r.MAC }, wantA: "02:aa:bb:cc:dd:ee", wantB: MACAuto},
		{json: "vlan", a: `10`, b: `20`, get: func(r *Resolved) any { return r.VLAN }, wantA: new(10), wantB: new(20)},
		{json: "vlanQoS", a: `3`, b: `5`, base: `"vlan":10`, get: func(r *Resolved) any { return r.VLANQoS }, wantA: new(3), wantB: new(5)},
		{json: "vlanProto", a: `"802.1ad"`, b: `"802.1q"`, base: `"vlan":10`, get: func(r *Resolved) any { return r.VLANProto }, wantA: new("802.1ad"), wantB: new("802.1q")},
		{json: "spoofChk", a: `true`, b: `false`, get: func(r *Resolved) any { return r.SpoofChk }, wantA: new(true), wantB: new(false)},
		{json: "trust", a: `false`, b: `true`, get: func(r *Resolved) any { return r.Trust }, wantA: new(false), wantB: new(true)},
		{json: "linkState", a: `"disable"`, b: `"auto"`, get: func(r *Resolved) any { return r.LinkState }, wantA: new("disable"), wantB: new("auto")},
		{json: "minTxRate", a: `100`, b: `200`, get: func(r *Resolved) any { return r.MinTxRate }, wantA: new(100), wantB: new(200)},
		{json: "maxTxRate", a: `1000`, b: `2000`, get: func(r *Resolved) any { return r.MaxTxRate }, wantA: new(1000), wantB: new(2000)},
		{json: "guid", a: `"00-11-22-33-44-55-66-7A"`, b: `"auto"`, get: func(r *Resolved) any { return r.GUID }, wantA: "00:11:22:33:44:55:66:7a", wantB: "auto"},
		{json: "pkey", a: `"0x8001"`, b: `32767`, get: func(r *Resolved) any { return r.PKey }, wantA: PKey(0x8001), wantB: PKey(0x7fff)},
		{json: "rdmaIsolation", a: `true`, b: `false`, get: func(r *Resolved) any { return r.RDMAIsolation }, wantA: true, wantB: false},
		{json: "driver", a: `"vfio-pci"`, b: `"netdevice"`, get: func(r *Resolved) any { return r.Driver }, wantA: "vfio-pci", wantB: "netdevice"},
		{json: "ipam", a: `{"type": "host-local", "subnet": "10.0.0.0/24"}`, b: `{"type":"static"}`, get: func(r *Resolved) any { return string(r.IPAM) },
			wantA: `{"type":"host-local","subnet":"10.0.0.0/24"}`, wantB: `{"type":"static"}`},
		{json: "routes", a: `[{"dst":"10.0.0.0/8","gw":"10.1.0.1"}]`, b: `[]`, get: func(r *Resolved) any { return r.Routes },
			wantA: []Route{{Dst: "10.0.0.0/8", GW: "10.1.0.1"}}, wantB: []Route{}},
		{json: "irqAffinity", a: `"container"`, b: `"none"`, get: func(r *Resolved) any { return r.IRQAffinity }, wantA: "container", wantB: "none"},
	}
}

func pfFieldCases() []fieldCase {
	var out []fieldCase
	for _, c := range vfFieldCases() {
		switch c.json {
		case "ifName", "mtu", "driver", "ipam", "routes":
			out = append(out, c)
		}
	}
	return out
}

// TestEveryFieldSurvivesMerge proves, for every field of VfConfig and
// PfConfig, that a value survives decode -> merge -> the resolved value,
// from a class config, from a claim config, and over an earlier value.
func TestEveryFieldSurvivesMerge(t *testing.T) {
	for _, k := range []struct {
		kind       string
		deviceKind string
		obj        Config
		cases      []fieldCase
		other      [2]string // a field set by another config: used unless it is the field under test
	}{
		{KindVfConfig, DeviceVF, &VfConfig{}, vfFieldCases(), [2]string{`"trust":true`, `"spoofChk":true`}},
		{KindPfConfig, DevicePF, &PfConfig{}, pfFieldCases(), [2]string{`"ipam":{"type":"static"}`, `"driver":"netdevice"`}},
	} {
		// The table must cover every JSON field of the type.
		var covered []string
		for _, c := range k.cases {
			covered = append(covered, c.json)
		}
		for name := range jsonFields(reflect.TypeOf(k.obj).Elem()) {
			// policy is no device setting: TestPolicy covers it.
			if !slices.Contains(covered, name) && name != "policy" {
				t.Errorf("%s field %q has no case in the every-field table", k.kind, name)
			}
		}
		for _, c := range k.cases {
			other := k.other[0]
			if strings.HasPrefix(other, `"`+c.json+`"`) {
				other = k.other[1]
			}
			set := func(v string) string {
				if c.base != "" {
					return c.base + `,"` + c.json + `":` + v
				}
				return `"` + c.json + `":` + v
			}
			scenarios := []struct {
				name    string
				request string
				configs []resourceapi.DeviceAllocationConfiguration
				want    any
			}{
				{"class only", "req", []resourceapi.DeviceAllocationConfiguration{conf(fromClass, nil, k.kind, set(c.a))}, c.wantA},
				{"claim only", "req", []resourceapi.DeviceAllocationConfiguration{conf(fromClaim, []string{"req"}, k.kind, set(c.b))}, c.wantB},
				{"claim over class", "req", []resourceapi.DeviceAllocationConfiguration{
					conf(fromClass, nil, k.kind, set(c.a)), conf(fromClaim, nil, k.kind, set(c.b))}, c.wantB},
				{"claim over class, claim listed first", "req", []resourceapi.DeviceAllocationConfiguration{
					conf(fromClaim, nil, k.kind, set(c.b)), conf(fromClass, nil, k.kind, set(c.a))}, c.wantB},
				{"later claim config wins", "req", []resourceapi.DeviceAllocationConfiguration{
					conf(fromClaim, nil, k.kind, set(c.a)), conf(fromClaim, []string{"req"}, k.kind, set(c.b))}, c.wantB},
				{"kept when a later config sets another field", "req", []resourceapi.DeviceAllocationConfiguration{
					conf(fromClass, nil, k.kind, set(c.a)), conf(fromClaim, nil, k.kind, other)}, c.wantA},
				{"main request's config applies to a subrequest", "req/fast", []resourceapi.DeviceAllocationConfiguration{
					conf(fromClaim, []string{"req"}, k.kind, set(c.a)), conf(fromClaim, []string{"other"}, k.kind, set(c.b))}, c.wantA},
			}
			for _, s := range scenarios {
				// A class that lets its claims set every field, so that
				// claim configs reach the merge.
				s.configs = append([]resourceapi.DeviceAllocationConfiguration{openClass(k.kind)}, s.configs...)
				t.Run(k.kind+"/"+c.json+"/"+s.name, func(t *testing.T) {
					r, errs := Resolve(allocPath, s.configs, DriverName, s.request, "", k.deviceKind)
					if len(errs) > 0 {
						t.Fatalf("Resolve: %v", errs)
					}
					got := c.get(r)
					if gi, ok := got.(string); ok && strings.HasPrefix(gi, "{") {
						got = compactJSON(t, gi)
						s.want = compactJSON(t, s.want.(string))
					}
					if !reflect.DeepEqual(got, s.want) {
						t.Errorf("%s = %s, want %s", c.json, show(got), show(s.want))
					}
					if r.Kind != k.kind {
						t.Errorf("Kind = %q, want %q", r.Kind, k.kind)
					}
				})
			}
		}
	}
}

// openClass is a class config whose policy lets claims set every policy
// field of kind.
func openClass(kind string) resourceapi.DeviceAllocationConfiguration {
	names, _ := json.Marshal(PolicyFields(kind))
	return conf(fromClass, nil, kind, `"policy":{"claimMaySet":`+string(names)+`}`)
}

func compactJSON(t *testing.T, s string) string {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON %q: %v", s, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func show(v any) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		return fmt.Sprintf("&%v", rv.Elem().Interface())
	}
	return fmt.Sprintf("%#v", v)
}

func TestResolve(t *testing.T) {
	vf := func(src resourceapi.AllocationConfigSource, body string, requests ...string) resourceapi.DeviceAllocationConfiguration {
		return conf(src, requests, KindVfConfig, body)
	}
	pf := func(src resourceapi.AllocationConfigSource, body string, requests ...string) resourceapi.DeviceAllocationConfiguration {
		return conf(src, requests, KindPfConfig, body)
	}
	bogus := resourceapi.DeviceAllocationConfiguration{Source: fromClaim, DeviceConfiguration: resourceapi.DeviceConfiguration{
		Opaque: &resourceapi.OpaqueDeviceConfiguration{Driver: DriverName, Parameters: runtime.RawExtension{Raw: []byte(`{"kind":5}`)}}}}
	tests := []struct {
		name       string
		configs    []resourceapi.DeviceAllocationConfiguration
		request    string
		deviceKind string
		want       *Resolved
		errField   string // first error's path below allocPath
		errDetail  string
	}{
		{
			name: "no config: VF defaults", request: "req", deviceKind: DeviceVF,
			want: &Resolved{Kind: KindVfConfig, Driver: DriverNetdevice, IRQAffinity: IRQAffinityNone},
		},
		{
			name: "no config: PF defaults", request: "req", deviceKind: DevicePF,
			want: &Resolved{Kind: KindPfConfig, Driver: DriverNetdevice, IRQAffinity: IRQAffinityNone},
		},
		{
			name: "configs of other drivers and other requests are ignored, even broken ones", request: "a/x", deviceKind: DeviceVF,
			configs: []resourceapi.DeviceAllocationConfiguration{
				openClass(KindVfConfig),
				confFor("gpu.example.com", fromClass, nil, KindVfConfig, `"vlan":99999`),
				vf(fromClaim, `"vlan":99999`, "b"),
				vf(fromClaim, `"vlan":99999`, "a/y"),
				{Source: fromClaim}, // not opaque
				vf(fromClaim, `"vlan":7`, "a/x"),
			},
			want: &Resolved{Kind: KindVfConfig, Driver: DriverNetdevice, IRQAffinity: IRQAffinityNone, VLAN: new(7), VLANQoS: new(0), VLANProto: new("802.1q")},
		},
		{
			name: "vlan set: qos 0 and 802.1q by default", request: "req", deviceKind: DeviceVF,
			configs: []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"vlan":100`)},
			want:    &Resolved{Kind: KindVfConfig, Driver: DriverNetdevice, IRQAffinity: IRQAffinityNone, VLAN: new(100), VLANQoS: new(0), VLANProto: new("802.1q")},
		},
		{
			name: "vlan from the class, qos from the claim", request: "req", deviceKind: DeviceVF,
			configs: []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"vlan":100,"spoofChk":true,"policy":{"claimMaySet":["vlanQoS","vlanProto"]}`), vf(fromClaim, `"vlanQoS":4,"vlanProto":"802.1ad"`)},
			want: &Resolved{Kind: KindVfConfig, Driver: DriverNetdevice, IRQAffinity: IRQAffinityNone,
				VLAN: new(100), VLANQoS: new(4), VLANProto: new("802.1ad"), SpoofChk: new(true)},
		},
		{
			name: "kind unknown to the caller: the config decides", request: "req",
			configs: []resourceapi.DeviceAllocationConfiguration{pf(fromClass, `"mtu":9000`)},
			want:    &Resolved{Kind: KindPfConfig, Driver: DriverNetdevice, IRQAffinity: IRQAffinityNone, MTU: 9000},
		},
		{
			name: "VfConfig and PfConfig for one request", request: "req", deviceKind: DeviceVF,
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, ``), pf(fromClaim, ``, "req")},
			errField: "[1].opaque.parameters.kind", errDetail: "either a VF (VfConfig) or a whole PF",
		},
		{
			name: "VfConfig for a PF", request: "req", deviceKind: DevicePF,
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClaim, `"vlan":1`)},
			errField: "[0].opaque.parameters.kind", errDetail: "kind: PfConfig",
		},
		{
			name: "PfConfig for a VF", request: "req", deviceKind: DeviceVF,
			configs:  []resourceapi.DeviceAllocationConfiguration{pf(fromClaim, ``)},
			errField: "[0].opaque.parameters.kind", errDetail: "kind: VfConfig",
		},
		{
			name: "decode error names the config's index", request: "req", deviceKind: DeviceVF,
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, ``), vf(fromClaim, ``, "other"), vf(fromClaim, `"vlan":4095`)},
			errField: "[2].opaque.parameters.vlan", errDetail: "0 and 4094",
		},
		{
			name: "broken parameters", request: "req", deviceKind: DeviceVF,
			configs:  []resourceapi.DeviceAllocationConfiguration{bogus},
			errField: "[0].opaque.parameters.apiVersion", errDetail: "sriov.dra.dev/v1alpha1",
		},
		{
			name: "unknown source", request: "req", deviceKind: DeviceVF,
			configs:  []resourceapi.DeviceAllocationConfiguration{{Source: "FromNowhere", DeviceConfiguration: vf(fromClass, ``).DeviceConfiguration}},
			errField: "[0].source", errDetail: "FromClass",
		},
		{
			name: "merged: vlan 0 from the class, vlanQoS from the claim", request: "req", deviceKind: DeviceVF,
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"vlan":0,"policy":{"claimMaySet":["vlanQoS"]}`), vf(fromClaim, `"vlanQoS":3`)},
			errField: "[1].opaque.parameters.vlanQoS", errDetail: "needs a VLAN",
		},
		{
			name: "merged: vlanQoS and no vlan anywhere", request: "req", deviceKind: DeviceVF,
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"mtu":1500,"policy":{"claimMaySet":["vlanQoS"]}`), vf(fromClaim, `"vlanQoS":3`)},
			errField: "[1].opaque.parameters.vlanQoS", errDetail: "needs a VLAN",
		},
		{
			name: "merged: 802.1ad and no vlan", request: "req", deviceKind: DeviceVF,
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"vlanProto":"802.1ad"`)},
			errField: "[0].opaque.parameters.vlanProto", errDetail: "needs a VLAN",
		},
		{
			name: "merged: vfio-pci from the class, ifName from the claim", request: "req", deviceKind: DeviceVF,
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"driver":"vfio-pci"`), vf(fromClaim, `"ifName":"dpdk0"`)},
			errField: "[1].opaque.parameters.ifName", errDetail: "vfio-pci",
		},
		{
			name: "merged: vfio-pci PF with routes", request: "req", deviceKind: DevicePF,
			configs:  []resourceapi.DeviceAllocationConfiguration{openClass(KindPfConfig), pf(fromClaim, `"routes":[]`), pf(fromClaim, `"driver":"vfio-pci"`)},
			errField: "[1].opaque.parameters.routes", errDetail: "vfio-pci",
		},
		{
			name: "merged: minTxRate above the class's maxTxRate", request: "req", deviceKind: DeviceVF,
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"maxTxRate":100,"policy":{"claimMaySet":["minTxRate"]}`), vf(fromClaim, `"minTxRate":200`)},
			errField: "[1].opaque.parameters.minTxRate", errDetail: "maxTxRate (100 Mbps)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := Resolve(allocPath, tt.configs, DriverName, tt.request, "", tt.deviceKind)
			if tt.errField != "" {
				if len(errs) == 0 {
					t.Fatalf("Resolve succeeded: %+v", got)
				}
				if got != nil {
					t.Errorf("Resolve returned a result with errors")
				}
				want := allocPath.String() + tt.errField
				if errs[0].Field != want || !strings.Contains(errs[0].Detail, tt.errDetail) {
					t.Errorf("first error %q, want at %s with %q (all: %v)", errs[0], want, tt.errDetail, errs)
				}
				return
			}
			if len(errs) > 0 {
				t.Fatalf("Resolve: %v", errs)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Resolve:\n got  %+v\n want %+v", got, tt.want)
			}
		})
	}
}

// TestResolveSharesNothing: changing one result does not change a
// result resolved from the same configs.
func TestResolveSharesNothing(t *testing.T) {
	configs := []resourceapi.DeviceAllocationConfiguration{conf(fromClass, nil, KindVfConfig, `"vlan":5,"routes":[{"dst":"10.0.0.0/8"}],"ipam":{"type":"static"}`)}
	a, errs := Resolve(allocPath, configs, DriverName, "r", "", DeviceVF)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	b, _ := Resolve(allocPath, configs, DriverName, "r", "", DeviceVF)
	*a.VLAN = 6
	a.Routes[0].Dst = "x"
	a.IPAM[0] = 'x'
	if *b.VLAN != 5 || b.Routes[0].Dst != "10.0.0.0/8" || b.IPAM[0] != '{' {
		t.Errorf("results share memory: %+v", b)
	}
}

func TestAppliesTo(t *testing.T) {
	tests := []struct {
		requests []string
		request  string
		want     bool
	}{
		{nil, "a", true},
		{[]string{}, "a/b", true},
		{[]string{"a"}, "a", true},
		{[]string{"a"}, "a/b", true},
		{[]string{"a/b"}, "a/b", true},
		{[]string{"a/b"}, "a/c", false},
		{[]string{"a/b"}, "a", false},
		{[]string{"b"}, "a", false},
		{[]string{"ab"}, "a/b", false},
		{[]string{"x", "a"}, "a/b", true},
	}
	for _, tt := range tests {
		if got := AppliesTo(tt.requests, tt.request); got != tt.want {
			t.Errorf("AppliesTo(%q, %q) = %v, want %v", tt.requests, tt.request, got, tt.want)
		}
	}
}

// TestResolveEscapesHostileKeys: a claim's own keys end up in the error's
// field path (an unknown field, an ipam key the class does not allow);
// Prepare's error goes to the claim's Event, kubelet's Event and the log, so
// a key with a newline or a terminal escape sequence comes out escaped, and
// a long one cut, with the reason still in the message.
func TestResolveEscapesHostileKeys(t *testing.T) {
	key := "x\n\x1b[31mFAKE level=error\x1b[0m\r\n" + strings.Repeat("A", 3000)
	k, err := json.Marshal(key)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body, want string
	}{
		{"unknown field", string(k) + `:1`, "unknown field"},
		{"ipam key", `"ipam":{"type":"host-local",` + string(k) + `:1,"ranges":[[{"subnet":"10.9.0.0/24"}]]}`, "a claim may not set"},
		{"route member", `"routes":[{"dst":"10.1.0.0/16",` + string(k) + `:1}]`, "a route has dst and gw"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			configs := []resourceapi.DeviceAllocationConfiguration{conf(fromClaim, nil, KindVfConfig, tc.body)}
			_, errs := Resolve(allocPath, configs, DriverName, "req", "c", DeviceVF)
			if len(errs) == 0 {
				t.Fatalf("accepted a config with key %.20q", key)
			}
			for _, e := range errs {
				msg := e.Error()
				if strings.ContainsFunc(msg, func(r rune) bool { return !strconv.IsPrint(r) }) {
					t.Errorf("error carries characters that are not printable: %.120q", msg)
				}
				if n := len(msg); n > 700 {
					t.Errorf("error of %d bytes: %.200s", n, msg)
				}
				if !strings.HasPrefix(e.Field, allocPath.String()+"[0].opaque.parameters.") {
					t.Errorf("field %.80q does not start at the config", e.Field)
				}
			}
			if msg := errs.ToAggregate().Error(); !strings.Contains(msg, tc.want) || !strings.Contains(msg, `x\n\x1b[31mFAKE`) {
				t.Errorf("error %.400q: want the reason %q and the key escaped", msg, tc.want)
			}
		})
	}
}
