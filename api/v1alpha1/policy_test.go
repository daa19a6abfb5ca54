package v1alpha1

import (
	"encoding/json"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
)

// TestPolicy: what a claim may set is bounded by its class's policy; each
// row is an attack a tenant could try, or what an admin allows.
func TestPolicy(t *testing.T) {
	vf := func(src resourceapi.AllocationConfigSource, body string) resourceapi.DeviceAllocationConfiguration {
		return conf(src, nil, KindVfConfig, body)
	}
	pf := func(src resourceapi.AllocationConfigSource, body string) resourceapi.DeviceAllocationConfiguration {
		return conf(src, nil, KindPfConfig, body)
	}
	const class = "vf-ethernet-a.sriov.dra.dev"
	tests := []struct {
		name       string
		deviceKind string
		configs    []resourceapi.DeviceAllocationConfiguration
		errField   string // under allocPath; "" for success
		errDetail  string
		check      func(t *testing.T, r *Resolved)
	}{
		{
			name:    "pod-local fields need no policy",
			configs: []resourceapi.DeviceAllocationConfiguration{vf(fromClaim, `"ifName":"data0","mtu":9000,"routes":[{"dst":"10.1.0.0/16"}],"irqAffinity":"container","ipam":{"type":"host-local","ranges":[[{"subnet":"10.9.0.0/24"}]]}`)},
			check: func(t *testing.T, r *Resolved) {
				if r.IfName != "data0" || r.MTU != 9000 || r.IRQAffinity != IRQAffinityContainer || len(r.Routes) != 1 {
					t.Errorf("pod-local fields not applied: %+v", r)
				}
			},
		},
		{
			name:     "VLAN hop: a claim sets vlan on a class that pins another",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"vlan":100,"spoofChk":true`), vf(fromClaim, `"vlan":200`)},
			errField: "[1].opaque.parameters.vlan", errDetail: `a claim may not set vlan: DeviceClass "` + class + `" does not allow it (policy.claimMaySet)`,
		},
		{
			name:     "spoof check off",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"spoofChk":true`), vf(fromClaim, `"spoofChk":false`)},
			errField: "[1].opaque.parameters.spoofChk", errDetail: "may not set spoofChk",
		},
		{
			name:     "trust on, on a class with no config at all",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClaim, `"trust":true`)},
			errField: "[0].opaque.parameters.trust", errDetail: "may not set trust",
		},
		{
			name:     "the whole PF's bandwidth",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClaim, `"minTxRate":100000`)},
			errField: "[0].opaque.parameters.minTxRate", errDetail: "may not set minTxRate",
		},
		{
			name:       "a PF bound to vfio-pci by a claim",
			deviceKind: DevicePF,
			configs:    []resourceapi.DeviceAllocationConfiguration{pf(fromClaim, `"driver":"vfio-pci"`)},
			errField:   "[0].opaque.parameters.driver", errDetail: "may not set driver",
		},
		{
			name:     "a claim's own policy",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClaim, `"policy":{"claimMaySet":["vlan"]},"vlan":5`)},
			errField: "[0].opaque.parameters.policy", errDetail: "only a DeviceClass config may set policy",
		},
		{
			name:    "a field the class allows",
			configs: []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"vlan":100,"policy":{"claimMaySet":["mac","vlanQoS"]}`), vf(fromClaim, `"mac":"02:00:00:00:00:09","vlanQoS":3`)},
			check: func(t *testing.T, r *Resolved) {
				if r.MAC != "02:00:00:00:00:09" || *r.VLAN != 100 || *r.VLANQoS != 3 {
					t.Errorf("allowed fields not applied: %+v", r)
				}
			},
		},
		{
			name:     "the latest class policy replaces an earlier one",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"policy":{"claimMaySet":["vlan"]}`), vf(fromClass, `"policy":{"claimMaySet":["mac"]}`), vf(fromClaim, `"vlan":3`)},
			errField: "[2].opaque.parameters.vlan", errDetail: "may not set vlan",
		},
		{
			name:     "mtu above the class's limit",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"policy":{"maxMTU":1500}`), vf(fromClaim, `"mtu":9000`)},
			errField: "[1].opaque.parameters.mtu", errDetail: "at most 1500",
		},
		{
			name:     "bridge as IPAM plugin",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClaim, `"ipam":{"type":"bridge"}`)},
			errField: "[0].opaque.parameters.ipam.type", errDetail: `"host-local", "static"`,
		},
		{
			name:     "whereabouts with a host path",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClaim, `"ipam":{"type":"whereabouts","configuration_path":"/host/etc/shadow"}`)},
			errField: "[0].opaque.parameters.ipam.type", errDetail: "policy.ipam",
		},
		{
			name:     "host-local dataDir from a claim",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClaim, `"ipam":{"type":"host-local","dataDir":"/etc","ranges":[[{"subnet":"10.9.0.0/24"}]]}`)},
			errField: "[0].opaque.parameters.ipam.dataDir", errDetail: "may not set \"dataDir\"",
		},
		{
			name:     "host-local datadir, a case variant",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClaim, `"ipam":{"type":"host-local","datadir":"/etc","ranges":[[{"subnet":"10.9.0.0/24"}]]}`)},
			errField: "[0].opaque.parameters.ipam.datadir", errDetail: "may not set \"datadir\"",
		},
		{
			name:     "keys differing only in case, even where allowed",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClaim, `"ipam":{"type":"static","addresses":[{"address":"10.0.0.2/24","Address":"10.0.0.3/24"}]}`)},
			errField: "[0].opaque.parameters.ipam.addresses[0].Address", errDetail: "differ only in case",
		},
		{
			name:     "keys that fold together as Go's JSON decoding folds them (ſ is s)",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClaim, `"ipam":{"type":"host-local","ranges":[],"rangeſ":[]}`)},
			errField: "[0].opaque.parameters.ipam.rangeſ", errDetail: "differ only in case",
		},
		{
			name: "class pins whereabouts' paths, the claim picks the range",
			configs: []resourceapi.DeviceAllocationConfiguration{
				vf(fromClass, `"ipam":{"type":"whereabouts","range":"10.1.0.0/16","configuration_path":"/etc/whereabouts.conf"},"policy":{"ipam":[{"type":"whereabouts","claimKeys":["range"]}]}`),
				vf(fromClaim, `"ipam":{"type":"whereabouts","range":"10.2.0.0/16"}`),
			},
			check: func(t *testing.T, r *Resolved) {
				var got map[string]string
				if err := json.Unmarshal(r.IPAM, &got); err != nil {
					t.Fatal(err)
				}
				if got["range"] != "10.2.0.0/16" || got["configuration_path"] != "/etc/whereabouts.conf" || got["type"] != "whereabouts" {
					t.Errorf("ipam = %s, want the class's path and the claim's range", r.IPAM)
				}
			},
		},
		{
			name: "a claim key in another case replaces the class's key",
			configs: []resourceapi.DeviceAllocationConfiguration{
				vf(fromClass, `"ipam":{"type":"whereabouts","range":"10.1.0.0/16"},"policy":{"ipam":[{"type":"whereabouts","claimKeys":["range"]}]}`),
				vf(fromClaim, `"ipam":{"type":"whereabouts","Range":"10.2.0.0/16"}`),
			},
			check: func(t *testing.T, r *Resolved) {
				if strings.Contains(string(r.IPAM), "10.1.0.0") {
					t.Errorf("ipam = %s keeps the class's range next to the claim's", r.IPAM)
				}
			},
		},
		{
			name:     "mac auto from a claim on a class that does not allow mac",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClaim, `"mac":"auto"`)},
			errField: "[0].opaque.parameters.mac", errDetail: "a claim may not set mac",
		},
		{
			name:    "mac auto from a claim on a class that allows mac",
			configs: []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"policy":{"claimMaySet":["mac"]}`), vf(fromClaim, `"mac":"auto"`)},
			check: func(t *testing.T, r *Resolved) {
				if r.MAC != MACAuto {
					t.Errorf("MAC %q, want auto", r.MAC)
				}
			},
		},
		{
			name:    "mac auto from the class for all its claims",
			configs: []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"mac":"auto"`), vf(fromClaim, `"ifName":"data0"`)},
			check: func(t *testing.T, r *Resolved) {
				if r.MAC != MACAuto {
					t.Errorf("MAC %q, want auto", r.MAC)
				}
			},
		},
		{
			name:     "a foreign GUID on a class that does not allow guid",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClaim, `"guid":"00:11:22:33:44:55:66:77"`)},
			errField: "[0].opaque.parameters.guid", errDetail: "may not set guid",
		},
		{
			name:     "an explicit GUID outside the class's prefix",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"policy":{"claimMaySet":["guid"],"guidPrefix":"02:aa:00"}`), vf(fromClaim, `"guid":"00:11:22:33:44:55:66:77"`)},
			errField: "[1].opaque.parameters.guid", errDetail: "must start with 02:aa:00",
		},
		{
			name:    "an explicit GUID inside the class's prefix; the policy reaches Resolved",
			configs: []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"policy":{"claimMaySet":["guid"],"guidPrefix":"02:AA:00","rdmaManagement":true}`), vf(fromClaim, `"guid":"02:aa:00:33:44:55:66:77"`)},
			check: func(t *testing.T, r *Resolved) {
				if r.GUID != "02:aa:00:33:44:55:66:77" || r.GUIDPrefix != "02:aa:00" || !r.RDMAManagement {
					t.Errorf("GUID %q prefix %q rdmaManagement %v", r.GUID, r.GUIDPrefix, r.RDMAManagement)
				}
			},
		},
		{
			name:    "RDMA management devices are off by default",
			configs: []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"rdmaIsolation":false`)},
			check: func(t *testing.T, r *Resolved) {
				if r.RDMAManagement {
					t.Error("RDMAManagement on without a policy")
				}
			},
		},
		{
			name:     "class policy: a pod-local field in claimMaySet",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"policy":{"claimMaySet":["ifName"]}`)},
			errField: "[0].opaque.parameters.policy.claimMaySet[0]", errDetail: "pod-local",
		},
		{
			name:     "class policy: an unknown field name",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"policy":{"claimMaySet":["vlans"]}`)},
			errField: "[0].opaque.parameters.policy.claimMaySet[0]", errDetail: `"vlan"`,
		},
		{
			name:       "class policy: guidPrefix on a PfConfig",
			deviceKind: DevicePF,
			configs:    []resourceapi.DeviceAllocationConfiguration{pf(fromClass, `"policy":{"guidPrefix":"02"}`)},
			errField:   "[0].opaque.parameters.policy.guidPrefix", errDetail: "only a VfConfig",
		},
		{
			name:     "class policy: a bad guidPrefix",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"policy":{"guidPrefix":"02:00:00:00:00:00:00:00"}`)},
			errField: "[0].opaque.parameters.policy.guidPrefix", errDetail: "1 to 7 bytes",
		},
		{
			name:     "class policy: an unknown key",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"policy":{"allowAll":true}`)},
			errField: "[0].opaque.parameters.policy.allowAll", errDetail: "unknown field",
		},
		{
			name:     "class policy: the same plugin twice",
			configs:  []resourceapi.DeviceAllocationConfiguration{vf(fromClass, `"policy":{"ipam":[{"type":"static"},{"type":"static"}]}`)},
			errField: "[0].opaque.parameters.policy.ipam[1].type", errDetail: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind := tt.deviceKind
			if kind == "" {
				kind = DeviceVF
			}
			got, errs := Resolve(allocPath, tt.configs, DriverName, "req", class, kind)
			if tt.errField != "" {
				if len(errs) == 0 {
					t.Fatalf("Resolve succeeded: %+v", got)
				}
				want := allocPath.String() + tt.errField
				if errs[0].Field != want || !strings.Contains(errs[0].Error(), tt.errDetail) {
					t.Errorf("first error %q, want at %s with %q (all: %v)", errs[0], want, tt.errDetail, errs)
				}
				return
			}
			if len(errs) > 0 {
				t.Fatalf("Resolve: %v", errs)
			}
			tt.check(t, got)
		})
	}
}

func TestParseGUIDPrefix(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"02", "02", true},
		{"02:AA:00", "02:aa:00", true},
		{"02:00:00:00:00:00:00", "02:00:00:00:00:00:00", true},
		{"02:00:00:00:00:00:00:00", "", false},
		{"", "", false},
		{"2:00", "", false},
		{"zz", "", false},
		{"02-00", "", false},
	} {
		got, err := ParseGUIDPrefix(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseGUIDPrefix(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
