package kubeletserver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	metadatav1alpha1 "k8s.io/dynamic-resource-allocation/api/metadata/v1alpha1"
	metadatav1beta1 "k8s.io/dynamic-resource-allocation/api/metadata/v1beta1"
	"k8s.io/klog/v2/ktesting"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"

	"github.com/sriov-dra/sriov-dra/internal/kubelettest"
)

// TestMetadataConfig: versions the files cannot carry are refused at
// Start, naming the field.
func TestMetadataConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		versions []schema.GroupVersion
		wantErr  string
	}{
		{name: "both", versions: []schema.GroupVersion{metadatav1beta1.SchemeGroupVersion, metadatav1alpha1.SchemeGroupVersion}},
		{name: "none", wantErr: "MetadataConfig.Versions is empty"},
		{name: "unknown version", versions: []schema.GroupVersion{metadatav1beta1.SchemeGroupVersion, {Group: "metadata.resource.k8s.io", Version: "v9"}}, wantErr: `MetadataConfig.Versions[1]: "metadata.resource.k8s.io/v9"`},
		{name: "other group", versions: []schema.GroupVersion{{Group: "resource.k8s.io", Version: "v1"}}, wantErr: "MetadataConfig.Versions[0]"},
		{name: "internal version", versions: []schema.GroupVersion{{Group: "metadata.resource.k8s.io", Version: "__internal"}}, wantErr: "MetadataConfig.Versions[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, plug := shortDirs(t)
			_, ctx := ktesting.NewTestContext(t)
			s, err := Start(ctx, &fakePlugin{}, Config{DriverName: testDriver, RegistryDir: reg, PluginDir: plug, Claims: newFakeClaims(), Metadata: &MetadataConfig{Versions: tc.versions}})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				s.Stop()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Start = %v, want %q", err, tc.wantErr)
			}
			if entries, _ := os.ReadDir(reg); len(entries) != 0 {
				t.Errorf("refused Start left %v", entries)
			}
		})
	}
}

// TestMetadataFiles: the metadata CDI device goes with the first device of
// each request only (a subrequest counts as its request), the files land
// where the CDI spec says, a failed write leaves the claim prepared
// without them, and unprepare removes them.
func TestMetadataFiles(t *testing.T) {
	claim := testClaim("net", "uid-net", "vf", "vf", "pf/sub")
	for _, tc := range []struct {
		name      string
		writeErr  error
		wantExtra [][]string // metadata CDI IDs added per device
	}{
		{name: "written", wantExtra: [][]string{{"sriov.dra.dev/metadata=uid-net_vf"}, nil, {"sriov.dra.dev/metadata=uid-net_pf"}}},
		{name: "write fails", writeErr: errors.New("disk full"), wantExtra: [][]string{nil, nil, nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, plug := shortDirs(t)
			cdiDir := filepath.Join(filepath.Dir(plug), "cdi")
			var write func(string, []byte, os.FileMode) error
			if tc.writeErr != nil {
				write = func(string, []byte, os.FileMode) error { return tc.writeErr }
			}
			s := startServer(t, &fakePlugin{metadata: true}, Config{
				RegistryDir: reg, PluginDir: plug, Claims: newFakeClaims(claim),
				Metadata: &MetadataConfig{Versions: []schema.GroupVersion{metadatav1beta1.SchemeGroupVersion}, CDIDir: cdiDir, WriteFile: write},
			})
			ctx := context.Background()
			_, dra := kubelettest.Register(ctx, t, s.RegistrarSocket())
			wire := []*drapb.Claim{{Namespace: "ns", Name: "net", Uid: "uid-net"}}
			resp, err := dra.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: wire})
			if err != nil {
				t.Fatal(err)
			}
			r := resp.Claims["uid-net"]
			if r == nil || r.Error != "" || len(r.Devices) != 3 {
				t.Fatalf("prepare = %v", r)
			}
			for i, d := range r.Devices {
				want := append([]string{"sriov.dra.dev/vf=uid-net-" + d.DeviceName}, tc.wantExtra[i]...)
				if !slices.Equal(d.CdiDeviceIds, want) {
					t.Errorf("device %d CDI IDs = %v, want %v", i, d.CdiDeviceIds, want)
				}
			}
			files := []string{
				filepath.Join(plug, "dra-device-metadata", "ns_net", "vf", "metadata.json"),
				filepath.Join(plug, "dra-device-metadata", "ns_net", "pf", "metadata.json"),
				filepath.Join(cdiDir, "sriov.dra.dev_metadata_uid-net_vf.json"),
				filepath.Join(cdiDir, "sriov.dra.dev_metadata_uid-net_pf.json"),
			}
			for _, f := range files {
				_, err := os.Stat(f)
				if (err == nil) != (tc.writeErr == nil) {
					t.Errorf("%s: %v", f, err)
				}
			}
			if tc.writeErr == nil {
				b, _ := os.ReadFile(files[0])
				if n := strings.Count(string(b), `"kind": "DeviceMetadata"`); n != 1 || !strings.Contains(string(b), `"name": "vf"`) || !strings.Contains(string(b), `"interfaceName": "net1"`) {
					t.Errorf("metadata file (%d objects):\n%s", n, b)
				}
				spec, _ := os.ReadFile(files[2])
				if !strings.Contains(string(spec), files[0]) || !strings.Contains(string(spec), "/var/run/kubernetes.io/dra-device-attributes/resourceclaims/net/vf/sriov.dra.dev-metadata.json") {
					t.Errorf("CDI spec:\n%s", spec)
				}
			}
			un, err := dra.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: wire})
			if err != nil || un.Claims["uid-net"].Error != "" {
				t.Fatalf("unprepare = %v, %v", un, err)
			}
			for _, f := range files {
				if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s after unprepare: %v", f, err)
				}
			}
		})
	}
}

// TestMetadataPodClaimName: the container path comes from the claim's
// pod-claim-name annotation only when it is a DNS label, as the claim
// controller writes it; a namespace user's own claim with a path in it
// gets the path of a claim the pod names directly.
func TestMetadataPodClaimName(t *testing.T) {
	const byName = "/var/run/kubernetes.io/dra-device-attributes/resourceclaims/net/vf/sriov.dra.dev-metadata.json"
	for _, tc := range []struct {
		name     string
		anno     *string
		wantPath string
		wantPod  string // podClaimName in the file; "" none
	}{
		{name: "no annotation", wantPath: byName},
		{name: "from a template", anno: ptr("web"), wantPath: "/var/run/kubernetes.io/dra-device-attributes/resourceclaimtemplates/web/vf/sriov.dra.dev-metadata.json", wantPod: "web"},
		{name: "empty", anno: ptr(""), wantPath: byName},
		{name: "parent directories", anno: ptr("../../../../etc"), wantPath: byName},
		{name: "a slash", anno: ptr("a/b"), wantPath: byName},
		{name: "upper case", anno: ptr("Web"), wantPath: byName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w, err := newMetadataWriter(testDriver, filepath.Join(dir, "plugin"), &MetadataConfig{
				Versions: []schema.GroupVersion{metadatav1beta1.SchemeGroupVersion}, CDIDir: filepath.Join(dir, "cdi"),
			})
			if err != nil {
				t.Fatal(err)
			}
			claim := testClaim("net", "uid-net", "vf")
			if tc.anno != nil {
				claim.Annotations = map[string]string{"resource.kubernetes.io/pod-claim-name": *tc.anno}
			}
			if _, err := w.writeClaim(claim, []Device{{Requests: []string{"vf"}, PoolName: "node-a", DeviceName: "dev-0"}}); err != nil {
				t.Fatal(err)
			}
			spec, err := os.ReadFile(w.specFile("uid-net", "vf"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(spec), `"containerPath": "`+tc.wantPath+`"`) {
				t.Errorf("CDI spec does not mount at %s:\n%s", tc.wantPath, spec)
			}
			file, err := os.ReadFile(w.metadataFile("ns", "net", "vf"))
			if err != nil {
				t.Fatal(err)
			}
			hasPod := strings.Contains(string(file), `"podClaimName"`)
			if hasPod != (tc.wantPod != "") || (hasPod && !strings.Contains(string(file), `"podClaimName": "`+tc.wantPod+`"`)) {
				t.Errorf("metadata file, want podClaimName %q:\n%s", tc.wantPod, file)
			}
		})
	}
}
