package driver

import (
	"slices"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
)

// claimOpaque is a config the claim's owner wrote (a namespace user).
func claimOpaque(params string, requests ...string) resourceapi.DeviceAllocationConfiguration {
	c := opaque(params, requests...)
	c.Source = resourceapi.AllocationConfigSourceClaim
	return c
}

// withClass names the DeviceClass of each request of the claim.
func withClass(c *resourceapi.ResourceClaim, class string) *resourceapi.ResourceClaim {
	for _, r := range c.Status.Allocation.Devices.Results {
		c.Spec.Devices.Requests = append(c.Spec.Devices.Requests, resourceapi.DeviceRequest{
			Name: r.Request, Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: class},
		})
	}
	return c
}

// TestPrepareEnforcesClassPolicy: a tenant's claim that sets what its
// class does not allow is refused before anything is touched, with the
// error and the Warning event naming the field and the class.
func TestPrepareEnforcesClassPolicy(t *testing.T) {
	const vfc = `"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig"`
	for _, tc := range []struct {
		name    string
		configs []resourceapi.DeviceAllocationConfiguration
		want    []string // in the error and the event; nil: Prepare succeeds
		notWant string
	}{
		{
			name:    "VLAN hop",
			configs: []resourceapi.DeviceAllocationConfiguration{opaque(`{` + vfc + `,"vlan":100}`), claimOpaque(`{` + vfc + `,"vlan":200}`)},
			want:    []string{"config[1].opaque.parameters.vlan", "Forbidden", `DeviceClass "vf-a.sriov.dra.dev"`, "policy.claimMaySet"},
		},
		{
			name:    "trust and spoof check from a claim",
			configs: []resourceapi.DeviceAllocationConfiguration{claimOpaque(`{` + vfc + `,"trust":true,"spoofChk":false}`)},
			want:    []string{"parameters.trust", "parameters.spoofChk"},
		},
		{
			name:    "host-local datadir from a claim",
			configs: []resourceapi.DeviceAllocationConfiguration{claimOpaque(`{` + vfc + `,"ipam":{"type":"host-local","datadir":"/etc"}}`)},
			want:    []string{"parameters.ipam.datadir", "policy.ipam"},
		},
		{
			name:    "bridge as IPAM plugin",
			configs: []resourceapi.DeviceAllocationConfiguration{claimOpaque(`{` + vfc + `,"ipam":{"type":"bridge"}}`)},
			want:    []string{"parameters.ipam.type", `"bridge"`},
		},
		{
			name:    "a claim writing its own policy",
			configs: []resourceapi.DeviceAllocationConfiguration{claimOpaque(`{` + vfc + `,"policy":{"claimMaySet":["vlan"]}}`)},
			want:    []string{"parameters.policy", "only a DeviceClass config may set policy"},
		},
		{
			name: "allowed by the class",
			configs: []resourceapi.DeviceAllocationConfiguration{
				opaque(`{` + vfc + `,"vlan":100,"policy":{"claimMaySet":["mac"]}}`),
				claimOpaque(`{` + vfc + `,"mac":"02:00:00:00:00:42","ifName":"data0"}`),
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, sysfstest.Standard())
			rec := withEvents(t, e)
			d := e.d
			dev := vfName(e, 1, 2)
			c := withClass(newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("net", dev)}, tc.configs...), "vf-a.sriov.dra.dev")
			e.j.take()
			err := prepare(t, d, c)["u1"].Err
			steps := e.j.take()
			if !refused(t, rec, err, tc.want) {
				return
			}
			// Nothing was touched: no snapshot, no change, no record.
			if slices.ContainsFunc(steps, func(s string) bool { return !strings.HasPrefix(s, "store.") || strings.Contains(s, "Prepare") }) {
				t.Errorf("refused claim reached the host: %v", steps)
			}
			if len(d.State().Claims()) != 0 {
				t.Error("refused claim was recorded")
			}
		})
	}
}

// TestRDMAManagementDevices: umad/issm reach the container only when the
// class allows them; the verbs devices always do.
func TestRDMAManagementDevices(t *testing.T) {
	for _, tc := range []struct {
		name   string
		class  string
		wantMg bool
	}{
		{"default: verbs only", `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig"}`, false},
		{"class allows them", `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","policy":{"rdmaManagement":true}}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, sysfstest.Standard())
			e.kernel.rdmaChar = []string{"/dev/infiniband/uverbs0", "/dev/infiniband/umad0", "/dev/infiniband/issm0", "/dev/infiniband/rdma_cm"}
			ib := vfName(e, 0, 1)
			c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("ib", ib)}, opaque(tc.class))
			if err := prepare(t, e.d, c)["u1"].Err; err != nil {
				t.Fatal(err)
			}
			got := e.cdi.specs["u1"][0].RDMACharDevices
			want := []string{"/dev/infiniband/uverbs0", "/dev/infiniband/rdma_cm"}
			if tc.wantMg {
				want = e.kernel.rdmaChar
			}
			if !slices.Equal(got, want) {
				t.Errorf("RDMA devices in the CDI spec = %v, want %v", got, want)
			}
		})
	}
}
