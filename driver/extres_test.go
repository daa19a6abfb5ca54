package driver

import (
	"context"
	"errors"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
)

// TestExtendedResourceName: for a claim the scheduler made from a pod's
// resources.limits (annotated resource.kubernetes.io/extended-resource-claim),
// each CDI device carries the extended resource name of its request's
// DeviceClass, from which pkg/cdi writes PCIDEVICE_<RESOURCE>. Other claims
// never ask for the class. A class that cannot be read fails Prepare,
// naming the class, and leaves nothing prepared.
func TestExtendedResourceName(t *testing.T) {
	classes := map[string]string{"sriov-netdevice": "intel.com/sriov_netdevice", "sriov-other": "example.com/other"}
	tests := []struct {
		name      string
		annotated bool
		lookupErr error
		want      []string // ResourceName per CDI device, in order
		wantErr   string
		wantAsked int
	}{
		{name: "extended-resource claim", annotated: true, want: []string{"intel.com/sriov_netdevice", "example.com/other"}, wantAsked: 2},
		{name: "ordinary claim", want: []string{"", ""}},
		{name: "class lookup fails", annotated: true, lookupErr: errors.New("forbidden"),
			wantErr: `extended resource name of DeviceClass "sriov-netdevice": forbidden`, wantAsked: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, sysfstest.Standard())
			asked := 0
			cfg := e.config()
			cfg.ClassResourceName = func(_ context.Context, class string) (string, error) {
				asked++
				if tt.lookupErr != nil {
					return "", tt.lookupErr
				}
				n, ok := classes[class]
				if !ok {
					return "", errors.New("no such class")
				}
				return n, nil
			}
			d, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			a, b := vfName(e, 1, 0), vfName(e, 1, 1)
			c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{
				result("container-0-request-0", a), result("container-0-request-1", b)})
			c.Spec.Devices.Requests = []resourceapi.DeviceRequest{
				{Name: "container-0-request-0", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: "sriov-netdevice"}},
				{Name: "container-0-request-1", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: "sriov-other"}},
			}
			if tt.annotated {
				c.Annotations = map[string]string{resourceapi.ExtendedResourceClaimAnnotation: "true"}
			}
			err = prepare(t, d, c)["u1"].Err
			if asked != tt.wantAsked {
				t.Errorf("DeviceClass looked up %d times, want %d", asked, tt.wantAsked)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("prepare: %v, want an error containing %q", err, tt.wantErr)
				}
				if n := e.cdi.count(); n != 0 {
					t.Errorf("%d CDI specs left after the failed prepare", n)
				}
				if n := e.ipam.allocated(); n != 0 {
					t.Errorf("%d IPAM allocations left after the failed prepare", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("prepare: %v", err)
			}
			e.cdi.mu.Lock()
			spec := e.cdi.specs["u1"]
			e.cdi.mu.Unlock()
			var got []string
			for _, dev := range spec {
				got = append(got, dev.ResourceName)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("CDI devices' ResourceName %q, want %q", got, tt.want)
			}
			if err := unprepare(t, d, c)["u1"]; err != nil {
				t.Errorf("unprepare: %v", err)
			}
		})
	}
}
