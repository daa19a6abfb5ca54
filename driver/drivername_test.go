package driver

import (
	"context"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
)

// A driver running under another name (--driver-name) applies the configs
// that name it, and refuses, before touching the device, a config of ours
// that still names sriov.dra.dev: dropping it would give the pod a VF
// without its VLAN. A config for a second copy of the driver, which has a
// device in the same claim, is that copy's.
func TestPrepareUnderAnotherDriverName(t *testing.T) {
	const (
		name  = "sriov.example.com"
		other = "sriov-b.example.com"
		vlan  = `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":100}`
	)
	// The DeviceClass's configs (the claim policy is not under test).
	cfgFor := func(driver, params string, requests ...string) resourceapi.DeviceAllocationConfiguration {
		return resourceapi.DeviceAllocationConfiguration{
			Source: resourceapi.AllocationConfigSourceClass, Requests: requests,
			DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
				Driver: driver, Parameters: runtime.RawExtension{Raw: []byte(params)},
			}},
		}
	}
	for _, tc := range []struct {
		name     string
		cfg      resourceapi.DeviceAllocationConfiguration
		otherDev bool   // the claim also has a device of the other copy
		wantVF   string // the settings ApplyVF gets, "" for no call
		wantErr  string
	}{
		{name: "config naming the driver's name", cfg: cfgFor(name, vlan), wantVF: "vlan,vlanQoS,vlanProto"},
		{name: "config still naming sriov.dra.dev", cfg: cfgFor("sriov.dra.dev", vlan),
			wantErr: `config[0].opaque.driver: Invalid value: "sriov.dra.dev": the parameters are sriov.dra.dev/v1alpha1 and apply to request "net", whose device comes from sriov.example.com (the name this driver runs under), but to no request with a device of sriov.dra.dev; set driver: sriov.example.com`},
		{name: "scoped to our request, naming the other copy", cfg: cfgFor(other, vlan, "net"), otherDev: true,
			wantErr: `config[0].opaque.driver: Invalid value: "sriov-b.example.com"`},
		{name: "unscoped, for the other copy's device", cfg: cfgFor(other, vlan), otherDev: true},
		{name: "another driver's own config", cfg: cfgFor("gpu.example.com", `{"apiVersion":"gpu.example.com/v1","kind":"GpuConfig"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, sysfstest.Standard())
			cfg := e.config()
			cfg.DriverName = name
			d, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			e.j.take()
			dev := vfName(e, 1, 0)
			results := []resourceapi.DeviceRequestAllocationResult{{Driver: name, Pool: testNode, Device: dev, Request: "net"}}
			if tc.otherDev {
				results = append(results, resourceapi.DeviceRequestAllocationResult{Driver: other, Pool: testNode, Device: "vf-b", Request: "net-b"})
			}
			c := newClaim("u1", "p1", results, tc.cfg)
			res := prepare(t, d, c)["u1"]
			steps := e.j.take()
			if tc.wantErr != "" {
				if res.Err == nil || !strings.Contains(res.Err.Error(), tc.wantErr) {
					t.Fatalf("Prepare error %v, want one with %q", res.Err, tc.wantErr)
				}
				for _, s := range steps {
					if strings.HasPrefix(s, "host.") {
						t.Errorf("refused claim touched the host: %v", steps)
						break
					}
				}
				return
			}
			if res.Err != nil {
				t.Fatalf("Prepare: %v", res.Err)
			}
			var applied string
			for _, s := range steps {
				if rest, ok := strings.CutPrefix(s, "host.ApplyVF "+pci(dev)); ok {
					applied = strings.TrimSpace(rest)
				}
			}
			if applied != tc.wantVF {
				t.Errorf("ApplyVF settings %q, want %q; steps %v", applied, tc.wantVF, steps)
			}
		})
	}
}
