package v1alpha1

import (
	"reflect"
	"strings"
	"testing"
)

func TestAssignIfNames(t *testing.T) {
	dev := func(claim, req string, ifName *string) PodNetdev {
		return PodNetdev{Claim: claim, Request: req, Device: "pci-0000-3b-00-2-" + req, IfName: ifName}
	}
	tests := []struct {
		name string
		devs []PodNetdev
		want []string
		err  string
	}{
		{name: "none", devs: nil, want: []string{}},
		{name: "defaults in order", devs: []PodNetdev{dev("ns/a", "r1", nil), dev("ns/a", "r2", nil), dev("ns/b", "r1", nil)},
			want: []string{"net1", "net2", "net3"}},
		{name: "configured names kept, empty means default", devs: []PodNetdev{dev("ns/a", "r1", new("data")), dev("ns/a", "r2", new("")), dev("ns/a", "r3", nil)},
			want: []string{"data", "net1", "net2"}},
		{name: "a default skips a name configured later in the pod", devs: []PodNetdev{dev("ns/a", "r1", nil), dev("ns/a", "r2", new("net1")), dev("ns/a", "r3", nil)},
			want: []string{"net2", "net1", "net3"}},
		{name: "duplicate configured names across claims", devs: []PodNetdev{dev("ns/a", "r1", new("data")), dev("ns/b", "r9", new("data"))},
			err: `ifName "data" is configured for two devices of the pod: pci-0000-3b-00-2-r1 (claim ns/a, request r1) and pci-0000-3b-00-2-r9 (claim ns/b, request r9)`},
		{name: "invalid configured name", devs: []PodNetdev{dev("ns/a", "r1", new("eth0"))},
			err: `ifName "eth0" of device pci-0000-3b-00-2-r1 (claim ns/a, request r1)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AssignIfNames(tt.devs)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("AssignIfNames = %v, %v; want error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("AssignIfNames: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("AssignIfNames = %q, want %q", got, tt.want)
			}
		})
	}
}
