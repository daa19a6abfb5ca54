package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sriov-dra/sriov-dra/internal/apitest"
	"github.com/sriov-dra/sriov-dra/pkg/devicesview"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/kubeapi"
)

// devicesServer is an in-memory API server with two nodes' slices and a
// claim holding a device of n2.
func devicesServer(t *testing.T) *apitest.Server {
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
	srv := apitest.New(t)
	srv.Add(mk("n1"), mk("n2"), claim)
	return srv
}

// devicesFixture is a client of a devicesServer.
func devicesFixture(t *testing.T) devicesview.API {
	t.Helper()
	c, err := kubeapi.NewForConfig(devicesServer(t).Config())
	if err != nil {
		t.Fatal(err)
	}
	return c
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
	client := func(kubeconfig, ctx string) (devicesview.API, error) {
		if kubeconfig != "" && kubeconfig != "/tmp/kc" {
			t.Errorf("kubeconfig %q", kubeconfig)
		}
		return devicesFixture(t), nil
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
	out, err := runDevices(t, []string{"sriov-dra", "devices", "-o", "json"}, func(string, string) (devicesview.API, error) { return devicesFixture(t), nil })
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
	_, err := runDevices(t, []string{"sriov-dra", "devices"}, func(string, string) (devicesview.API, error) {
		return nil, errors.New("no kubeconfig")
	})
	if err == nil || !strings.Contains(err.Error(), "no kubeconfig") {
		t.Errorf("error %v", err)
	}
}

// The real client from a kubeconfig file: --kubeconfig and --context
// choose the server, the user agent names the command.
func TestDevicesKubeconfig(t *testing.T) {
	srv := devicesServer(t)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: good, cluster: {server: %q}}, {name: bad, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: good, context: {cluster: good, user: u}}, {name: bad, context: {cluster: bad, user: u}}]
current-context: bad
`, srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{name: "context given", args: []string{"--kubeconfig", kc, "--context", "good"}, want: "2 devices: 1 allocated, 1 free"},
		{name: "current context unreachable", args: []string{"--kubeconfig", kc}, wantErr: "list ResourceSlices"},
		{name: "unknown context", args: []string{"--kubeconfig", kc, "--context", "nope"}, wantErr: "load kubeconfig"},
		{name: "missing file", args: []string{"--kubeconfig", kc + ".missing"}, wantErr: "load kubeconfig"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runDevices(t, append([]string{"sriov-dra", "devices"}, tc.args...), newKubeClient)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(out, tc.want) {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
	for _, r := range srv.Requests() {
		if r.UserAgent != "sriov-dra-devices" {
			t.Errorf("user agent %q", r.UserAgent)
		}
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
