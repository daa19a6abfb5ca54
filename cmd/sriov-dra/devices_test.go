package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sriov-dra/sriov-dra/pkg/devicesview"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

func devicesFixture() *fake.Clientset {
	vlan, idx := int64(7), int64(3)
	kind := "vf"
	mk := func(node string) *resourceapi.ResourceSlice {
		return &resourceapi.ResourceSlice{
			ObjectMeta: metav1.ObjectMeta{Name: node + "-slice"},
			Spec: resourceapi.ResourceSliceSpec{
				Driver: "sriov.dra.dev", NodeName: &node,
				Pool: resourceapi.ResourcePool{Name: node, Generation: 1, ResourceSliceCount: 1},
				Devices: []resourceapi.Device{{Name: "pci-0000-3b-02-3", Attributes: map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
					inventory.AttrKind: {StringValue: &kind}, inventory.AttrVLAN: {IntValue: &vlan}, inventory.AttrVFIndex: {IntValue: &idx},
				}}},
			},
		}
	}
	claim := &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "c1"},
		Status: resourceapi.ResourceClaimStatus{
			Allocation: &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{Results: []resourceapi.DeviceRequestAllocationResult{
				{Request: "vf", Driver: "sriov.dra.dev", Pool: "n2", Device: "pci-0000-3b-02-3"},
			}}},
			ReservedFor: []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: "p1", UID: "u1"}},
		},
	}
	return fake.NewClientset(mk("n1"), mk("n2"), claim)
}

func runDevices(t *testing.T, argv []string, newClient clientFunc) (string, error) {
	t.Helper()
	root := newRootCmd()
	// Swap in the command with the test's client.
	for _, c := range root.Commands() {
		if c.Name() == "devices" {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(newDevicesCmdWith(newClient))
	root.SetArgs(argv[1:])
	asKubectlPlugin(root, argv)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	err := executeRoot(t, context.Background(), root)
	return out.String(), err
}

func TestDevicesCommand(t *testing.T) {
	client := func(kubeconfig, ctx string) (kubernetes.Interface, error) {
		if kubeconfig != "" && kubeconfig != "/tmp/kc" {
			t.Errorf("kubeconfig %q", kubeconfig)
		}
		return devicesFixture(), nil
	}
	tests := []struct {
		name    string
		argv    []string
		want    []string // substrings of the output
		notWant []string
		code    int // exit code, 0 for none
	}{
		{name: "table", argv: []string{"sriov-dra", "devices"}, want: []string{"NODE", "n1", "n2", "apps", "p1", "c1", "2 devices: 1 allocated, 1 free"}},
		{name: "node", argv: []string{"sriov-dra", "devices", "--node", "n1", "--kubeconfig", "/tmp/kc"}, want: []string{"n1", "1 devices: 0 allocated, 1 free"}, notWant: []string{"n2", "c1"}},
		{name: "json", argv: []string{"sriov-dra", "devices", "-o", "json"}, want: []string{`"claim": "c1"`, `"vlan": 7`}},
		{name: "yaml", argv: []string{"sriov-dra", "devices", "-o", "yaml", "--node", "n2"}, want: []string{"claim: c1", "vfIndex: 3"}, notWant: []string{"node: n1"}},
		{name: "bad output", argv: []string{"sriov-dra", "devices", "-o", "wide"}, code: 2},
		{name: "plugin without subcommand", argv: []string{"/usr/local/bin/kubectl-sriov", "--node", "n2"}, want: []string{"n2", "c1"}, notWant: []string{"n1 "}},
		{name: "plugin bare", argv: []string{"kubectl-sriov"}, want: []string{"n1", "n2"}},
		{name: "plugin with subcommand", argv: []string{"kubectl-sriov", "devices", "-o", "json"}, want: []string{`"pods": [`}},
		{name: "plugin help names kubectl sriov", argv: []string{"kubectl-sriov", "--help"}, want: []string{"kubectl sriov devices"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runDevices(t, tc.argv, client)
			if tc.code != 0 {
				if err == nil || exitCode(err) != tc.code {
					t.Fatalf("error %v (exit %d), want exit %d", err, exitCode(err), tc.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestDevicesJSONIsTheView(t *testing.T) {
	out, err := runDevices(t, []string{"sriov-dra", "devices", "-o", "json"}, func(string, string) (kubernetes.Interface, error) { return devicesFixture(), nil })
	if err != nil {
		t.Fatal(err)
	}
	var v devicesview.View
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(v.Devices) != 2 || v.Allocated != 1 || v.Devices[1].Holder == nil || v.Devices[1].Holder.Pods[0] != "p1" {
		t.Errorf("view %+v", v)
	}
}

func TestDevicesClientError(t *testing.T) {
	_, err := runDevices(t, []string{"sriov-dra", "devices"}, func(string, string) (kubernetes.Interface, error) {
		return nil, errors.New("no kubeconfig")
	})
	if err == nil || !strings.Contains(err.Error(), "no kubeconfig") {
		t.Errorf("error %v", err)
	}
}

// asKubectlPlugin leaves the arguments alone unless started as kubectl-sriov.
func TestAsKubectlPluginArgs(t *testing.T) {
	tests := []struct {
		argv []string
		want string // the command that runs, "" when not a plugin
	}{
		{[]string{"sriov-dra", "inventory"}, ""},
		{[]string{"kubectl-sriov"}, "devices"},
		{[]string{"kubectl-sriov", "-o", "yaml"}, "devices"},
		{[]string{"kubectl-sriov.exe", "--node", "a"}, "devices"},
		{[]string{"kubectl-sriov", "devices", "--node", "a"}, "devices"},
		{[]string{"kubectl-sriov", "version"}, "version"},
		{[]string{"kubectl-sriov", "-v=4", "--node", "a"}, "devices"},
	}
	for _, tc := range tests {
		root := newRootCmd()
		var ran string
		for _, c := range root.Commands() {
			c.RunE = func(c *cobra.Command, _ []string) error { ran = c.Name(); return nil }
			c.Run = nil
		}
		root.SetArgs([]string{})
		asKubectlPlugin(root, tc.argv)
		if tc.want == "" {
			if _, ok := root.Annotations[cobra.CommandDisplayNameAnnotation]; ok {
				t.Errorf("%q: treated as a plugin", tc.argv)
			}
			continue
		}
		if err := executeRoot(t, context.Background(), root); err != nil {
			t.Errorf("%q: %v", tc.argv, err)
		}
		if ran != tc.want {
			t.Errorf("%q ran %q, want %q", tc.argv, ran, tc.want)
		}
	}
}
