package v1alpha1

import (
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Resolve takes the configs that name the driver's own name, whatever it
// is, and only those.
func TestResolveUnderAnotherDriverName(t *testing.T) {
	const name = "sriov.example.com"
	configs := []resourceapi.DeviceAllocationConfiguration{
		confFor(name, fromClass, nil, KindVfConfig, `"vlan":10`),
		confFor(DriverName, fromClass, nil, KindVfConfig, `"mtu":9000`),
	}
	r, errs := Resolve(allocPath, configs, name, "req", "", DeviceVF)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if r.VLAN == nil || *r.VLAN != 10 || r.MTU != 0 {
		t.Errorf("resolved vlan %v mtu %d, want the config naming %s only (vlan 10, no mtu)", r.VLAN, r.MTU, name)
	}
	r, errs = Resolve(allocPath, configs, DriverName, "req", "", DeviceVF)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if r.VLAN != nil || r.MTU != 9000 {
		t.Errorf("resolved vlan %v mtu %d, want the config naming %s only (mtu 9000)", r.VLAN, r.MTU, DriverName)
	}
}

func TestForeignConfigs(t *testing.T) {
	const (
		us     = "sriov.example.com"
		second = "sriov-b.example.com"
	)
	res := func(driver, request string) resourceapi.DeviceRequestAllocationResult {
		return resourceapi.DeviceRequestAllocationResult{Driver: driver, Request: request, Pool: "n", Device: "d-" + request}
	}
	theirs := resourceapi.DeviceAllocationConfiguration{
		Source: fromClaim,
		DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
			Driver: "gpu.example.com", Parameters: runtime.RawExtension{Raw: []byte(`{"apiVersion":"gpu.example.com/v1","kind":"GpuConfig"}`)},
		}},
	}
	for _, tc := range []struct {
		name    string
		results []resourceapi.DeviceRequestAllocationResult
		config  resourceapi.DeviceAllocationConfiguration
		want    string // the error's field, "" for none
	}{
		{"our name", []resourceapi.DeviceRequestAllocationResult{res(us, "net")},
			confFor(us, fromClass, nil, KindVfConfig, ""), ""},
		{"the default name, unscoped", []resourceapi.DeviceRequestAllocationResult{res(us, "net")},
			confFor(DriverName, fromClaim, nil, KindVfConfig, ""), "status.allocation.devices.config[0].opaque.driver"},
		{"the default name, from the class", []resourceapi.DeviceRequestAllocationResult{res(us, "net")},
			confFor(DriverName, fromClass, []string{"net"}, KindVfConfig, ""), "status.allocation.devices.config[0].opaque.driver"},
		{"a misspelt name, for a subrequest", []resourceapi.DeviceRequestAllocationResult{res(us, "net/fast")},
			confFor("sriov.example.co", fromClaim, []string{"net"}, KindVfConfig, ""), "status.allocation.devices.config[0].opaque.driver"},
		{"scoped to another request", []resourceapi.DeviceRequestAllocationResult{res(us, "net"), res(second, "other")},
			confFor(DriverName, fromClaim, []string{"other"}, KindVfConfig, ""), ""},
		{"a second copy's, unscoped, with its device in the claim", []resourceapi.DeviceRequestAllocationResult{res(us, "net"), res(second, "b")},
			confFor(second, fromClaim, nil, KindVfConfig, ""), ""},
		{"a second copy's, scoped to our request", []resourceapi.DeviceRequestAllocationResult{res(us, "net"), res(second, "b")},
			confFor(second, fromClaim, []string{"net"}, KindVfConfig, ""), "status.allocation.devices.config[0].opaque.driver"},
		{"a request served by both", []resourceapi.DeviceRequestAllocationResult{res(us, "net"), res(second, "net")},
			confFor(second, fromClaim, []string{"net"}, KindVfConfig, ""), ""},
		{"another driver's own parameters", []resourceapi.DeviceRequestAllocationResult{res(us, "net")}, theirs, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alloc := &resourceapi.DeviceAllocationResult{Results: tc.results, Config: []resourceapi.DeviceAllocationConfiguration{tc.config}}
			request := tc.results[0].Request
			errs := ForeignConfigs(allocPath, alloc, us, request)
			if tc.want == "" {
				if len(errs) > 0 {
					t.Fatalf("ForeignConfigs = %v, want none", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.want || !strings.Contains(errs[0].Detail, "set driver: "+us) {
				t.Fatalf("ForeignConfigs = %v, want one error at %s saying set driver: %s", errs, tc.want, us)
			}
		})
	}
}
