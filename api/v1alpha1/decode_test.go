package v1alpha1

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var testRoot = field.NewPath("spec", "devices", "config").Index(1).Child("opaque", "parameters")

const vfHead = "apiVersion: sriov.dra.dev/v1alpha1\nkind: VfConfig\n"
const pfHead = "apiVersion: sriov.dra.dev/v1alpha1\nkind: PfConfig\n"

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Config
	}{
		{
			name: "bare VfConfig, YAML",
			in:   vfHead,
			want: &VfConfig{TypeMeta: vfMeta()},
		},
		{
			name: "JSON as the API server stores it",
			in:   `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":100,"vlanQoS":3,"spoofChk":false}`,
			want: &VfConfig{TypeMeta: vfMeta(), VLAN: new(100), VLANQoS: new(3), SpoofChk: new(false)},
		},
		{
			name: "every VfConfig field",
			in: vfHead + `ifName: data0
mtu: 9000
mac: "02:AA:bb:cc:dd:ee"
vlan: 100
vlanQoS: 5
vlanProto: 802.1ad
spoofChk: true
trust: false
linkState: enable
minTxRate: 100
maxTxRate: 1000
guid: "00-11-22-33-44-55-66-77"
pkey: "0x8001"
rdmaIsolation: true
driver: netdevice
ipam: {type: host-local, ranges: [[{subnet: 10.1.0.0/24}]]}
routes: [{dst: 10.20.0.0/16, gw: 10.1.0.1}, {dst: "fd00::/64"}]
irqAffinity: container
`,
			want: &VfConfig{
				TypeMeta: vfMeta(), IfName: new("data0"), MTU: new(9000), MAC: new("02:AA:bb:cc:dd:ee"),
				VLAN: new(100), VLANQoS: new(5), VLANProto: new("802.1ad"), SpoofChk: new(true), Trust: new(false),
				LinkState: new("enable"), MinTxRate: new(100), MaxTxRate: new(1000), GUID: new("00-11-22-33-44-55-66-77"),
				PKey: new(PKey(0x8001)), RDMAIsolation: new(true), Driver: new("netdevice"),
				IPAM:        json.RawMessage(`{"ranges":[[{"subnet":"10.1.0.0/24"}]],"type":"host-local"}`),
				Routes:      []Route{{Dst: "10.20.0.0/16", GW: "10.1.0.1"}, {Dst: "fd00::/64"}},
				IRQAffinity: new("container"),
			},
		},
		{
			name: "pkey as a YAML hex number is a number",
			in:   vfHead + "pkey: 0x7fff\n",
			want: &VfConfig{TypeMeta: vfMeta(), PKey: new(PKey(0x7fff))},
		},
		{
			name: "pkey as a decimal number",
			in:   vfHead + "pkey: 32769\n",
			want: &VfConfig{TypeMeta: vfMeta(), PKey: new(PKey(0x8001))},
		},
		{
			name: "IPv6 link-local next hop",
			in:   vfHead + "routes: [{dst: \"::/0\", gw: \"fe80::1\"}]\n",
			want: &VfConfig{TypeMeta: vfMeta(), Routes: []Route{{Dst: "::/0", GW: "fe80::1"}}},
		},
		{
			name: "mac auto",
			in:   vfHead + "mac: auto\n",
			want: &VfConfig{TypeMeta: vfMeta(), MAC: new("auto")},
		},
		{
			name: "guid auto",
			in:   vfHead + "guid: auto\n",
			want: &VfConfig{TypeMeta: vfMeta(), GUID: new("auto")},
		},
		{
			name: "null means unset",
			in:   `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":null,"ipam":null,"routes":null}`,
			want: &VfConfig{TypeMeta: vfMeta()},
		},
		{
			name: "empty routes list is set (clears routes from a class)",
			in:   vfHead + "routes: []\n",
			want: &VfConfig{TypeMeta: vfMeta(), Routes: []Route{}},
		},
		{
			name: "vlanQoS without vlan: the vlan may come from another config",
			in:   vfHead + "vlanQoS: 3\n",
			want: &VfConfig{TypeMeta: vfMeta(), VLANQoS: new(3)},
		},
		{
			name: "maxTxRate 0 is no limit, any minTxRate",
			in:   vfHead + "minTxRate: 500\nmaxTxRate: 0\n",
			want: &VfConfig{TypeMeta: vfMeta(), MinTxRate: new(500), MaxTxRate: new(0)},
		},
		{
			name: "vfio-pci keeps mac, VF settings and IPAM",
			in:   vfHead + "driver: vfio-pci\nmac: 02:00:00:00:00:01\nvlan: 10\nrdmaIsolation: false\nirqAffinity: none\nipam: {type: static, addresses: [{address: 10.0.0.5/24}]}\n",
			want: &VfConfig{TypeMeta: vfMeta(), Driver: new("vfio-pci"), MAC: new("02:00:00:00:00:01"), VLAN: new(10),
				RDMAIsolation: new(false), IRQAffinity: new("none"),
				IPAM: json.RawMessage(`{"addresses":[{"address":"10.0.0.5/24"}],"type":"static"}`)},
		},
		{
			name: "number written 1e3 by a YAML float",
			in:   vfHead + "mtu: 1.5e3\n",
			want: &VfConfig{TypeMeta: vfMeta(), MTU: new(1500)},
		},
		{
			name: "PfConfig, every field",
			in:   pfHead + "ifName: pf0\nmtu: 1500\ndriver: netdevice\nipam: {type: whereabouts, range: 10.5.0.0/24}\nroutes: [{dst: 0.0.0.0/0, gw: 10.5.0.1}]\n",
			want: &PfConfig{TypeMeta: pfMeta(), IfName: new("pf0"), MTU: new(1500), Driver: new("netdevice"),
				IPAM:   json.RawMessage(`{"range":"10.5.0.0/24","type":"whereabouts"}`),
				Routes: []Route{{Dst: "0.0.0.0/0", GW: "10.5.0.1"}}},
		},
		{
			name: "PfConfig with vfio-pci",
			in:   pfHead + "driver: vfio-pci\n",
			want: &PfConfig{TypeMeta: pfMeta(), Driver: new("vfio-pci")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := Decode(testRoot, []byte(tt.in))
			if len(errs) > 0 {
				t.Fatalf("Decode: unexpected errors: %v", errs)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode:\n got  %s\n want %s", mustJSON(t, got), mustJSON(t, tt.want))
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	long := strings.Repeat("x", MaxParametersSize+1)
	tests := []struct {
		name   string
		in     string
		field  string // path below testRoot ("" for testRoot itself)
		typ    field.ErrorType
		detail string // substring of the detail
	}{
		// Whole object.
		{"empty", "", "", field.ErrorTypeRequired, "empty"},
		{"blank", "  \n", "", field.ErrorTypeRequired, "empty"},
		{"too large", vfHead + "ifName: " + long, "", field.ErrorTypeTooLong, ""},
		{"a list", "[1,2]", "", field.ErrorTypeTypeInvalid, "must be an object"},
		{"a string", `"VfConfig"`, "", field.ErrorTypeTypeInvalid, "must be an object"},
		{"null", "null", "", field.ErrorTypeTypeInvalid, "must be an object"},
		{"bad YAML", "a: [1,\n", "", field.ErrorTypeInvalid, "not valid JSON or YAML"},
		{"duplicate YAML key", vfHead + "vlan: 1\nvlan: 2\n", "", field.ErrorTypeInvalid, "already set"},
		{"duplicate JSON key", `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":1,"vlan":2}`, "vlan", field.ErrorTypeDuplicate, "more than once"},
		{"two YAML documents", vfHead + "---\n" + vfHead + "vlan: 1\n", "", field.ErrorTypeInvalid, "more than one YAML document"},
		{"trailing data", `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig"} {}`, "", field.ErrorTypeInvalid, ""},

		// apiVersion and kind.
		{"no apiVersion", "kind: VfConfig\n", "apiVersion", field.ErrorTypeRequired, "sriov.dra.dev/v1alpha1"},
		{"unknown apiVersion", "apiVersion: sriov.dra.dev/v1beta1\nkind: VfConfig\n", "apiVersion", field.ErrorTypeNotSupported, "understands only"},
		{"other group", "apiVersion: example.com/v1\nkind: VfConfig\n", "apiVersion", field.ErrorTypeNotSupported, "sriov.dra.dev/v1alpha1"},
		{"apiVersion not a string", "apiVersion: 1\nkind: VfConfig\n", "apiVersion", field.ErrorTypeTypeInvalid, "must be a string"},
		{"no kind", "apiVersion: sriov.dra.dev/v1alpha1\n", "kind", field.ErrorTypeRequired, "VfConfig"},
		{"wrong kind", "apiVersion: sriov.dra.dev/v1alpha1\nkind: VFConfig\n", "kind", field.ErrorTypeNotSupported, "PfConfig"},

		// Unknown fields and wrong types.
		{"unknown field", vfHead + "vlanid: 1\n", "vlanid", field.ErrorTypeForbidden, "unknown field"},
		{"wrong case", vfHead + "vlanQos: 1\n", "vlanQos", field.ErrorTypeForbidden, `did you mean "vlanQoS"`},
		{"VF field in a PfConfig", pfHead + "vlan: 10\n", "vlan", field.ErrorTypeForbidden, "PfConfig fields are"},
		{"vlan as a string", vfHead + "vlan: \"10\"\n", "vlan", field.ErrorTypeTypeInvalid, "not a string"},
		{"vlan fraction", vfHead + "vlan: 1.5\n", "vlan", field.ErrorTypeTypeInvalid, "must be a whole number in range, not 1.5"},
		{"vlan huge", vfHead + "vlan: 99999999999999999999\n", "vlan", field.ErrorTypeTypeInvalid, "in range, not 1"}, // YAML made it 1e20
		{"mtu fraction", vfHead + "mtu: 1500.5\n", "mtu", field.ErrorTypeTypeInvalid, "must be a whole number in range, not 1500.5"},
		{"spoofChk string", vfHead + "spoofChk: \"true\"\n", "spoofChk", field.ErrorTypeTypeInvalid, "true or false"},
		{"ifName number", vfHead + "ifName: 5\n", "ifName", field.ErrorTypeTypeInvalid, "must be a string"},
		{"ifName YAML boolean", vfHead + "ifName: on\n", "ifName", field.ErrorTypeTypeInvalid, "quote"},
		{"pkey bool", vfHead + "pkey: true\n", "pkey", field.ErrorTypeTypeInvalid, "0x8001"},

		// ifName.
		{"ifName with slash", vfHead + "ifName: a/b\n", "ifName", field.ErrorTypeInvalid, "'/'"},
		{"ifName ..", vfHead + "ifName: ..\n", "ifName", field.ErrorTypeInvalid, `".."`},
		{"ifName .", vfHead + "ifName: .\n", "ifName", field.ErrorTypeInvalid, `"."`},
		{"ifName with space", vfHead + "ifName: \"net 1\"\n", "ifName", field.ErrorTypeInvalid, "space"},
		{"ifName with tab", vfHead + "ifName: \"net\\t1\"\n", "ifName", field.ErrorTypeInvalid, "printable"},
		{"ifName 16 chars", vfHead + "ifName: abcdefghijklmnop\n", "ifName", field.ErrorTypeInvalid, "at most 15"},
		{"ifName eth0", vfHead + "ifName: eth0\n", "ifName", field.ErrorTypeInvalid, "primary"},
		{"ifName lo", vfHead + "ifName: lo\n", "ifName", field.ErrorTypeInvalid, "loopback"},
		{"ifName empty", vfHead + "ifName: \"\"\n", "ifName", field.ErrorTypeInvalid, "empty"},
		{"ifName template", vfHead + "ifName: net%d\n", "ifName", field.ErrorTypeInvalid, "'%'"},
		{"ifName colon", vfHead + "ifName: \"net:1\"\n", "ifName", field.ErrorTypeInvalid, "':'"},
		{"ifName non-ASCII", vfHead + "ifName: nét1\n", "ifName", field.ErrorTypeInvalid, "printable ASCII"},
		{"PfConfig ifName eth0", pfHead + "ifName: eth0\n", "ifName", field.ErrorTypeInvalid, "primary"},

		// mtu, mac.
		{"mtu too small", vfHead + "mtu: 67\n", "mtu", field.ErrorTypeInvalid, "between 68 and 65535"},
		{"mtu too big", vfHead + "mtu: 65536\n", "mtu", field.ErrorTypeInvalid, "between 68 and 65535"},
		{"PfConfig mtu", pfHead + "mtu: 0\n", "mtu", field.ErrorTypeInvalid, "between 68 and 65535"},
		{"mac garbage", vfHead + "mac: hello\n", "mac", field.ErrorTypeInvalid, "not a MAC"},
		{"mac multicast", vfHead + "mac: 01:00:5e:00:00:01\n", "mac", field.ErrorTypeInvalid, "multicast"},
		{"mac broadcast", vfHead + "mac: ff:ff:ff:ff:ff:ff\n", "mac", field.ErrorTypeInvalid, "multicast"},
		{"mac zero", vfHead + "mac: 00:00:00:00:00:00\n", "mac", field.ErrorTypeInvalid, "all-zero"},
		{"mac 8 bytes", vfHead + "mac: 02:00:00:00:00:00:00:01\n", "mac", field.ErrorTypeInvalid, "6 bytes"},

		// VLAN.
		{"vlan 4095", vfHead + "vlan: 4095\n", "vlan", field.ErrorTypeInvalid, "0 and 4094"},
		{"vlan -1", vfHead + "vlan: -1\n", "vlan", field.ErrorTypeInvalid, "0 and 4094"},
		{"vlanQoS 8", vfHead + "vlan: 5\nvlanQoS: 8\n", "vlanQoS", field.ErrorTypeInvalid, "0 and 7"},
		{"vlanQoS with vlan 0", vfHead + "vlan: 0\nvlanQoS: 3\n", "vlanQoS", field.ErrorTypeInvalid, "needs a VLAN"},
		{"vlanProto unknown", vfHead + "vlanProto: 802.1x\n", "vlanProto", field.ErrorTypeNotSupported, "802.1ad"},
		{"vlanProto upper case", vfHead + "vlanProto: 802.1Q\n", "vlanProto", field.ErrorTypeNotSupported, "802.1q"},
		{"802.1ad with vlan 0", vfHead + "vlan: 0\nvlanProto: 802.1ad\n", "vlanProto", field.ErrorTypeInvalid, "needs a VLAN"},
		{"linkState", vfHead + "linkState: up\n", "linkState", field.ErrorTypeNotSupported, "enable"},

		// Rates.
		{"minTxRate negative", vfHead + "minTxRate: -1\n", "minTxRate", field.ErrorTypeInvalid, "Mbps"},
		{"maxTxRate in bps", vfHead + "maxTxRate: 10000000000\n", "maxTxRate", field.ErrorTypeTypeInvalid, "range"},
		{"maxTxRate too big", vfHead + "maxTxRate: 1000001\n", "maxTxRate", field.ErrorTypeInvalid, "Mbps"},
		{"min above max", vfHead + "minTxRate: 2000\nmaxTxRate: 1000\n", "minTxRate", field.ErrorTypeInvalid, "must not exceed maxTxRate (1000 Mbps)"},

		// InfiniBand.
		{"guid all ones", vfHead + "guid: ff:ff:ff:ff:ff:ff:ff:ff\n", "guid", field.ErrorTypeInvalid, "all-ones"},
		{"guid all zero", vfHead + "guid: 00:00:00:00:00:00:00:00\n", "guid", field.ErrorTypeInvalid, "all-zero"},
		{"guid 6 bytes", vfHead + "guid: 02:00:00:00:00:01\n", "guid", field.ErrorTypeInvalid, "8 bytes"},
		{"guid garbage", vfHead + "guid: automatic\n", "guid", field.ErrorTypeInvalid, "auto"},
		{"mac garbage", vfHead + "mac: Auto\n", "mac", field.ErrorTypeInvalid, `or "auto"`},
		{"pkey 0", vfHead + "pkey: 0\n", "pkey", field.ErrorTypeInvalid, "0x0001 and 0xffff"},
		{"pkey 0x8000", vfHead + "pkey: \"0x8000\"\n", "pkey", field.ErrorTypeInvalid, "partition number 0"},
		{"pkey too big", vfHead + "pkey: 65536\n", "pkey", field.ErrorTypeInvalid, "0x0001 and 0xffff"},
		{"pkey negative", vfHead + "pkey: -1\n", "pkey", field.ErrorTypeInvalid, "0x0001 and 0xffff"},
		{"pkey hex string too long", vfHead + "pkey: \"0x10000\"\n", "pkey", field.ErrorTypeInvalid, "up to 4 digits"},
		{"pkey decimal string", vfHead + "pkey: \"32769\"\n", "pkey", field.ErrorTypeInvalid, "hex string with 0x"},
		{"pkey bare 0x", vfHead + "pkey: \"0x\"\n", "pkey", field.ErrorTypeInvalid, "hex string with 0x"},
		{"rdmaIsolation string", vfHead + "rdmaIsolation: yes please\n", "rdmaIsolation", field.ErrorTypeTypeInvalid, "true or false"},

		// driver and what vfio-pci refuses.
		{"driver unknown", vfHead + "driver: mlx5_core\n", "driver", field.ErrorTypeNotSupported, "vfio-pci"},
		{"vfio-pci ifName", vfHead + "driver: vfio-pci\nifName: net1\n", "ifName", field.ErrorTypeForbidden, "vfio-pci"},
		{"vfio-pci mtu", vfHead + "driver: vfio-pci\nmtu: 9000\n", "mtu", field.ErrorTypeForbidden, "vfio-pci"},
		{"vfio-pci routes", vfHead + "driver: vfio-pci\nroutes: []\n", "routes", field.ErrorTypeForbidden, "vfio-pci"},
		{"vfio-pci rdmaIsolation", vfHead + "driver: vfio-pci\nrdmaIsolation: true\n", "rdmaIsolation", field.ErrorTypeForbidden, "RDMA"},
		{"vfio-pci irqAffinity", vfHead + "driver: vfio-pci\nirqAffinity: container\n", "irqAffinity", field.ErrorTypeForbidden, "interrupts"},
		{"PfConfig vfio-pci ifName", pfHead + "driver: vfio-pci\nifName: pf0\n", "ifName", field.ErrorTypeForbidden, "vfio-pci"},
		{"irqAffinity unknown", vfHead + "irqAffinity: all\n", "irqAffinity", field.ErrorTypeNotSupported, "container"},

		// IPAM.
		{"ipam string", vfHead + "ipam: host-local\n", "ipam", field.ErrorTypeTypeInvalid, "must be an object"},
		{"ipam without type", vfHead + "ipam: {subnet: 10.0.0.0/24}\n", "ipam.type", field.ErrorTypeRequired, "host-local"},
		{"ipam type null", vfHead + "ipam: {type: null}\n", "ipam.type", field.ErrorTypeRequired, "host-local"},
		{"ipam type empty", vfHead + "ipam: {type: \"\"}\n", "ipam.type", field.ErrorTypeInvalid, "must name"},
		{"ipam type number", vfHead + "ipam: {type: 5}\n", "ipam.type", field.ErrorTypeTypeInvalid, "must be a string"},
		{"ipam type path", vfHead + "ipam: {type: ../../bin/sh}\n", "ipam.type", field.ErrorTypeInvalid, "bare plugin name"},
		{"ipam type absolute", vfHead + "ipam: {type: /bin/sh}\n", "ipam.type", field.ErrorTypeInvalid, "bare plugin name"},
		{"ipam type dotdot", vfHead + "ipam: {type: ..}\n", "ipam.type", field.ErrorTypeInvalid, `".."`},
		{"ipam dhcp", vfHead + "ipam: {type: dhcp}\n", "ipam.type", field.ErrorTypeInvalid, "DHCP client"},
		{"PfConfig ipam dhcp", pfHead + "ipam: {type: dhcp}\n", "ipam.type", field.ErrorTypeInvalid, "DHCP client"},

		// Routes.
		{"routes object", vfHead + "routes: {dst: 0.0.0.0/0}\n", "routes", field.ErrorTypeTypeInvalid, "must be a list"},
		{"route not object", vfHead + "routes: [10.0.0.0/8]\n", "routes[0]", field.ErrorTypeTypeInvalid, "must be an object"},
		{"route unknown key", vfHead + "routes: [{dst: 10.0.0.0/8, via: 10.1.0.1}]\n", "routes[0].via", field.ErrorTypeForbidden, "dst and gw"},
		{"route without dst", vfHead + "routes: [{gw: 10.1.0.1}]\n", "routes[0].dst", field.ErrorTypeRequired, "destination"},
		{"route bad dst", vfHead + "routes: [{dst: 10.0.0.0}]\n", "routes[0].dst", field.ErrorTypeInvalid, "CIDR"},
		{"route host bits", vfHead + "routes: [{dst: 10.1.2.3/16}]\n", "routes[0].dst", field.ErrorTypeInvalid, "10.1.0.0/16"},
		{"route duplicate", vfHead + "routes: [{dst: 10.0.0.0/8}, {dst: 10.0.0.0/8, gw: 10.1.0.1}]\n", "routes[1].dst", field.ErrorTypeInvalid, "routes[0]"},
		{"route gw family", vfHead + "routes: [{dst: 10.0.0.0/8, gw: \"fd00::1\"}]\n", "routes[0].gw", field.ErrorTypeInvalid, "same IP family"},
		{"route gw garbage", vfHead + "routes: [{dst: 10.0.0.0/8, gw: router}]\n", "routes[0].gw", field.ErrorTypeInvalid, "IP address"},
		{"route gw unspecified", vfHead + "routes: [{dst: 10.0.0.0/8, gw: 0.0.0.0}]\n", "routes[0].gw", field.ErrorTypeInvalid, "unicast"},
		{"route gw loopback", vfHead + "routes: [{dst: 10.0.0.0/8, gw: 127.0.0.1}]\n", "routes[0].gw", field.ErrorTypeInvalid, "loopback"},
		{"route gw loopback v4 net", vfHead + "routes: [{dst: 10.0.0.0/8, gw: 127.5.0.9}]\n", "routes[0].gw", field.ErrorTypeInvalid, "loopback"},
		{"route gw loopback v6", vfHead + "routes: [{dst: \"fd00::/64\", gw: \"::1\"}]\n", "routes[0].gw", field.ErrorTypeInvalid, "loopback"},
		{"route gw limited broadcast", vfHead + "routes: [{dst: 10.0.0.0/8, gw: 255.255.255.255}]\n", "routes[0].gw", field.ErrorTypeInvalid, "limited broadcast"},
		{"route gw link-local v4", vfHead + "routes: [{dst: 0.0.0.0/0, gw: 169.254.1.1}]\n", "routes[0].gw", field.ErrorTypeInvalid, "link-local"},
		{"ifName all", vfHead + "ifName: all\n", "ifName", field.ErrorTypeInvalid, "conf/all"},
		{"ifName default", vfHead + "ifName: default\n", "ifName", field.ErrorTypeInvalid, "conf/default"},
		{"ipam type dot", vfHead + "ipam: {type: \".\"}\n", "ipam.type", field.ErrorTypeInvalid, "letter or digit"},
		{"ipam type hidden", vfHead + "ipam: {type: .x}\n", "ipam.type", field.ErrorTypeInvalid, "letter or digit"},
		{"route dst number", vfHead + "routes: [{dst: 5}]\n", "routes[0].dst", field.ErrorTypeTypeInvalid, "must be a string"},
		{"PfConfig route", pfHead + "routes: [{dst: 10.1.2.3/16}]\n", "routes[0].dst", field.ErrorTypeInvalid, "host bits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := Decode(testRoot, []byte(tt.in))
			if got != nil {
				t.Errorf("Decode returned a config with errors: %#v", got)
			}
			if len(errs) == 0 {
				t.Fatalf("Decode accepted %q", tt.in)
			}
			want := testRoot.String()
			if tt.field != "" {
				want += "." + tt.field
				if strings.HasPrefix(tt.field, "[") {
					want = testRoot.String() + tt.field
				}
			}
			e := errs[0]
			if e.Field != want || e.Type != tt.typ || !strings.Contains(e.Detail, tt.detail) {
				t.Errorf("first error = %q (%s)\nwant field %s, type %s, detail containing %q\nall: %v", e.Error(), e.Type, want, tt.typ, tt.detail, errs)
			}
			for _, e := range errs {
				if !strings.HasPrefix(e.Field, testRoot.String()) {
					t.Errorf("error outside the root path: %v", e)
				}
			}
		})
	}
}

// TestDecodeCollectsAllErrors: a config with several bad fields reports
// each of them, not only the first.
func TestDecodeCollectsAllErrors(t *testing.T) {
	_, errs := Decode(testRoot, []byte(vfHead+"vlan: 4095\nmtu: 1\nifName: eth0\nbogus: 1\n"))
	got := map[string]bool{}
	for _, e := range errs {
		got[strings.TrimPrefix(e.Field, testRoot.String()+".")] = true
	}
	// Unknown and mistyped fields are reported before value checks run.
	if !got["bogus"] || len(errs) != 1 {
		t.Errorf("errors = %v, want only the unknown field first", errs)
	}
	_, errs = Decode(testRoot, []byte(vfHead+"vlan: 4095\nmtu: 1\nifName: eth0\n"))
	got = map[string]bool{}
	for _, e := range errs {
		got[strings.TrimPrefix(e.Field, testRoot.String()+".")] = true
	}
	for _, f := range []string{"vlan", "mtu", "ifName"} {
		if !got[f] {
			t.Errorf("no error for %s in %v", f, errs)
		}
	}
}

// TestDecodeShortensEcho: errors do not repeat a long hostile input.
func TestDecodeShortensEcho(t *testing.T) {
	for _, in := range []string{
		vfHead + "ifName: \"" + strings.Repeat("\\u00e9", 1600) + "\"\n",
		vfHead + strings.Repeat("x: 1\n", 2000),
		vfHead + "mac: " + strings.Repeat("ab", 3000) + "\n",
		"apiVersion: sriov.dra.dev/v1alpha1\nkind: " + strings.Repeat("K", 5000) + "\n",
	} {
		_, errs := Decode(testRoot, []byte(in))
		if len(errs) == 0 {
			t.Fatalf("accepted %.40q", in)
		}
		for _, e := range errs {
			if n := len(e.Error()); n > 600 {
				t.Errorf("error of %d bytes: %.200s", n, e.Error())
			}
		}
	}
	if got := truncate("aé"+strings.Repeat("b", 10), 5); got != "a..." {
		t.Errorf("truncate = %q", got)
	}
}

func TestDecodeNilRoot(t *testing.T) {
	_, errs := Decode(nil, []byte(vfHead+"vlan: 4095\n"))
	if len(errs) != 1 || errs[0].Field != "vlan" {
		t.Errorf("errors = %v, want one at vlan", errs)
	}
	_, errs = Decode(nil, []byte("[]"))
	if len(errs) != 1 || errs[0].Field != "(object)" {
		t.Errorf("errors = %v, want one at (object)", errs)
	}
}

func vfMeta() metav1.TypeMeta { return metav1.TypeMeta{APIVersion: APIVersion, Kind: KindVfConfig} }
func pfMeta() metav1.TypeMeta { return metav1.TypeMeta{APIVersion: APIVersion, Kind: KindPfConfig} }

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
