package cdi

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	oci "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/klog/v2/ktesting"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"
	cdispec "tags.cncf.io/container-device-interface/specs-go"
)

// fakeRoot makes a host root whose device nodes are symlinks to /dev/null
// (a real character device), so no mknod is needed.
func fakeRoot(t *testing.T, nodes ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, n := range nodes {
		p := filepath.Join(root, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/dev/null", p); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func readSpec(t *testing.T, p string) cdispec.Spec {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var s cdispec.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("spec %s: %v", p, err)
	}
	return s
}

func TestWriteRemove(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	root := fakeRoot(t, "/dev/infiniband/uverbs3", "/dev/infiniband/rdma_cm", "/dev/vfio/42", "/dev/vfio/vfio")
	dir := filepath.Join(t.TempDir(), "cdi")
	w := New(dir, root)
	devs := []Device{
		{Request: "rdma-nic", Name: "0000-3b-00-2", PCIAddress: "0000:3b:00.2", IfName: "net1", RDMADevice: "mlx5_3",
			RDMACharDevices: []string{"/dev/infiniband/uverbs3", "/dev/infiniband/rdma_cm"}},
		{Request: "dpdk/fast", Name: "0000-3b-00-3", PCIAddress: "0000:3b:00.3", VFIOGroup: "42"},
	}
	ids, err := w.Write(ctx, "uid-1", devs)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	want := []string{"sriov.dra.dev/vf=uid-1-0000-3b-00-2", "sriov.dra.dev/vf=uid-1-0000-3b-00-3"}
	if !slices.Equal(ids, want) {
		t.Fatalf("ids = %v, want %v", ids, want)
	}
	if DeviceID("uid-1", "0000-3b-00-2") != want[0] {
		t.Errorf("DeviceID disagrees with Write")
	}
	p := w.SpecPath("uid-1")
	if filepath.Base(p) != "sriov.dra.dev-vf_uid-1.json" {
		t.Errorf("spec file = %s", p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("spec mode = %v, want 0644", fi.Mode().Perm())
	}
	s := readSpec(t, p)
	if s.Kind != Kind || s.Version == "" || len(s.Devices) != 2 {
		t.Fatalf("spec = %+v", s)
	}
	d0, d1 := s.Devices[0], s.Devices[1]
	wantEnv0 := []string{
		"SRIOV_DRA_RDMA_NIC_DEVICE=0000-3b-00-2", "SRIOV_DRA_RDMA_NIC_PCI_ADDRESS=0000:3b:00.2",
		"SRIOV_DRA_RDMA_NIC_IFNAME=net1", "SRIOV_DRA_RDMA_NIC_RDMA_DEVICE=mlx5_3",
	}
	if !slices.Equal(d0.ContainerEdits.Env, wantEnv0) {
		t.Errorf("device 0 env = %v, want %v", d0.ContainerEdits.Env, wantEnv0)
	}
	if got := nodePaths(d0.ContainerEdits); !slices.Equal(got, []string{"/dev/infiniband/uverbs3", "/dev/infiniband/rdma_cm"}) {
		t.Errorf("device 0 nodes = %v", got)
	}
	wantEnv1 := []string{"SRIOV_DRA_DPDK_FAST_DEVICE=0000-3b-00-3", "SRIOV_DRA_DPDK_FAST_PCI_ADDRESS=0000:3b:00.3", "SRIOV_DRA_DPDK_FAST_VFIO_GROUP=42"}
	if !slices.Equal(d1.ContainerEdits.Env, wantEnv1) {
		t.Errorf("device 1 env = %v, want %v", d1.ContainerEdits.Env, wantEnv1)
	}
	if got := nodePaths(d1.ContainerEdits); !slices.Equal(got, []string{"/dev/vfio/42", "/dev/vfio/vfio"}) {
		t.Errorf("device 1 nodes = %v", got)
	}
	for _, n := range append(d0.ContainerEdits.DeviceNodes, d1.ContainerEdits.DeviceNodes...) {
		if n.Major != 0 || n.Minor != 0 || n.Permissions != "rw" {
			t.Errorf("node %+v: want path only (runtime fills major/minor) with rw", n)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("dir holds %d entries, want only the spec (no temp files)", len(ents))
	}
	if got, err := w.Claims(); err != nil || !slices.Equal(got, []string{"uid-1"}) {
		t.Errorf("Claims = %v, %v", got, err)
	}

	// Rewrite replaces.
	if _, err := w.Write(ctx, "uid-1", devs[:1]); err != nil {
		t.Fatal(err)
	}
	if s := readSpec(t, p); len(s.Devices) != 1 {
		t.Errorf("rewritten spec has %d devices", len(s.Devices))
	}

	for range 2 {
		if err := w.Remove(ctx, "uid-1"); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("spec still there: %v", err)
	}
	if got, _ := w.Claims(); len(got) != 0 {
		t.Errorf("Claims after Remove = %v", got)
	}
	if got, err := New(filepath.Join(dir, "missing"), root).Claims(); err != nil || got != nil {
		t.Errorf("Claims of a missing dir = %v, %v", got, err)
	}
}

func nodePaths(e cdispec.ContainerEdits) []string {
	var out []string
	for _, n := range e.DeviceNodes {
		out = append(out, n.Path)
	}
	return out
}

func TestSeveralDevicesPerRequest(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	w := New(t.TempDir(), t.TempDir())
	devs := []Device{
		{Request: "nics", Name: "a", PCIAddress: "0000:01:00.1", IfName: "net1"},
		{Request: "nics", Name: "b", PCIAddress: "0000:01:00.2", IfName: "net2"},
		{Request: "other", Name: "c", PCIAddress: "0000:01:00.3", IfName: "net3", EnvName: "mgmt.1"},
	}
	if _, err := w.Write(ctx, "u", devs); err != nil {
		t.Fatal(err)
	}
	s := readSpec(t, w.SpecPath("u"))
	for i, want := range []string{"SRIOV_DRA_NICS_0_IFNAME=net1", "SRIOV_DRA_NICS_1_IFNAME=net2", "SRIOV_DRA_MGMT_1_IFNAME=net3"} {
		if !slices.Contains(s.Devices[i].ContainerEdits.Env, want) {
			t.Errorf("device %d env %v lacks %s", i, s.Devices[i].ContainerEdits.Env, want)
		}
	}
}

func TestDevicePluginEnv(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	tests := []struct {
		name    string
		devs    []Device
		want    map[int]string // device index -> PCIDEVICE_ entry
		wantErr string
	}{{
		name: "one device",
		devs: []Device{{Request: "container-0-request-0", Name: "a", PCIAddress: "0000:01:00.1", IfName: "net1", ResourceName: "intel.com/sriov_netdevice"}},
		want: map[int]string{0: "PCIDEVICE_INTEL_COM_SRIOV_NETDEVICE=0000:01:00.1"},
	}, {
		name: "two devices share the list, another resource has its own",
		devs: []Device{
			{Request: "container-0-request-0", Name: "a", PCIAddress: "0000:01:00.1", ResourceName: "intel.com/sriov-net"},
			{Request: "container-0-request-0", Name: "b", PCIAddress: "0000:01:00.2", ResourceName: "intel.com/sriov-net"},
			{Request: "container-0-request-1", Name: "c", PCIAddress: "0000:02:00.1", ResourceName: "example.com/dpdk"},
		},
		want: map[int]string{
			0: "PCIDEVICE_INTEL_COM_SRIOV_NET=0000:01:00.1,0000:01:00.2",
			1: "PCIDEVICE_INTEL_COM_SRIOV_NET=0000:01:00.1,0000:01:00.2",
			2: "PCIDEVICE_EXAMPLE_COM_DPDK=0000:02:00.1",
		},
	}, {
		name: "no resource name, no variable",
		devs: []Device{{Request: "nic", Name: "a", PCIAddress: "0000:01:00.1"}},
		want: map[int]string{0: ""},
	}, {
		name:    "resource name without PCI address",
		devs:    []Device{{Request: "nic", Name: "a", ResourceName: "intel.com/x"}},
		wantErr: `device "a": resourceName "intel.com/x": no PCI address`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := New(t.TempDir(), t.TempDir())
			_, err := w.Write(ctx, "u", tt.devs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Write: got %v, want %q", err, tt.wantErr)
				}
				if _, err := os.Stat(w.SpecPath("u")); !os.IsNotExist(err) {
					t.Errorf("spec written despite the error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := readSpec(t, w.SpecPath("u"))
			for i, want := range tt.want {
				var got []string
				for _, e := range s.Devices[i].ContainerEdits.Env {
					if strings.HasPrefix(e, DevicePluginEnvPrefix) {
						got = append(got, e)
					}
				}
				if want == "" && len(got) != 0 || want != "" && !slices.Equal(got, []string{want}) {
					t.Errorf("device %d: PCIDEVICE_ env %v, want %q", i, got, want)
				}
			}
		})
	}
}

func TestSanitizeEnv(t *testing.T) {
	for in, want := range map[string]string{
		"nic": "NIC", "rdma-nic": "RDMA_NIC", "req/sub-1": "REQ_SUB_1", "a.b c": "A_B_C", "ünï": "__N__", "": "",
	} {
		if got := SanitizeEnv(in); got != want {
			t.Errorf("SanitizeEnv(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestInjectWithCDILibrary has the CDI library read the dir the way a
// runtime does and inject a device into an OCI spec: the device node's
// type, major and minor come from the host path.
func TestInjectWithCDILibrary(t *testing.T) {
	if _, err := os.Stat("/dev/null"); err != nil {
		t.Skip("no /dev/null")
	}
	_, ctx := ktesting.NewTestContext(t)
	dir := t.TempDir()
	w := New(dir, "/")
	marker := filepath.Join(t.TempDir(), "not-yet", "uid-2-dev") // missing on purpose
	ids, err := w.Write(ctx, "uid-2", []Device{{Request: "r", Name: "dev", PCIAddress: "0000:01:00.1", IfName: "net1", RDMACharDevices: []string{"/dev/null"},
		Mounts: []Mount{{HostPath: marker, ContainerPath: "/run/sriov.dra.dev/attached/dev", Options: []string{"bind", "ro"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := cdiapi.NewCache(cdiapi.WithSpecDirs(dir), cdiapi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	if errs := cache.GetErrors(); len(errs) != 0 {
		t.Fatalf("CDI cache errors: %v", errs)
	}
	spec := &oci.Spec{Process: &oci.Process{}}
	if _, err := cache.InjectDevices(spec, ids...); err != nil {
		t.Fatalf("InjectDevices: %v", err)
	}
	if !slices.Contains(spec.Process.Env, "SRIOV_DRA_R_IFNAME=net1") {
		t.Errorf("env = %v", spec.Process.Env)
	}
	if spec.Linux == nil || len(spec.Linux.Devices) != 1 {
		t.Fatalf("linux devices = %+v", spec.Linux)
	}
	d := spec.Linux.Devices[0]
	if d.Path != "/dev/null" || d.Type != "c" || d.Major != 1 || d.Minor != 3 {
		t.Errorf("injected device = %+v, want /dev/null c 1:3", d)
	}
	// The mount's source need not exist for the spec to be valid and
	// injected: the runtime then fails to create the container.
	var got []oci.Mount
	for _, m := range spec.Mounts {
		if m.Destination == "/run/sriov.dra.dev/attached/dev" {
			got = append(got, m)
		}
	}
	if len(got) != 1 || got[0].Source != marker || got[0].Type != "bind" || !slices.Equal(got[0].Options, []string{"bind", "ro"}) {
		t.Errorf("injected mounts = %+v, want one read-only bind of %s", spec.Mounts, marker)
	}
}

func TestWriteRefusesBadInput(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	root := fakeRoot(t, "/dev/infiniband/uverbs0")
	if err := os.WriteFile(filepath.Join(root, "dev/infiniband/regular"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	good := Device{Request: "r", Name: "d", PCIAddress: "0000:01:00.1", IfName: "net1"}
	tests := []struct {
		name  string
		claim string
		devs  []Device
		want  string
	}{
		{"no devices", "u", nil, "no devices"},
		{"bad claim UID", "u/1", []Device{good}, "claim UID"},
		{"empty claim UID", "", []Device{good}, "claim UID"},
		{"empty device name", "u", []Device{{Request: "r"}}, "empty name"},
		{"bad device name", "u", []Device{{Request: "r", Name: "a b"}}, `device "a b": name`},
		{"duplicate", "u", []Device{good, good}, "listed twice"},
		{"no request", "u", []Device{{Name: "d"}}, "request"},
		{"missing node", "u", []Device{{Request: "r", Name: "d", RDMACharDevices: []string{"/dev/infiniband/uverbs9"}}}, "uverbs9"},
		{"not a char device", "u", []Device{{Request: "r", Name: "d", RDMACharDevices: []string{"/dev/infiniband/regular"}}}, "not a character device"},
		{"node outside /dev", "u", []Device{{Request: "r", Name: "d", RDMACharDevices: []string{"/etc/shadow"}}}, "rdmaCharDevices"},
		{"node path escapes", "u", []Device{{Request: "r", Name: "d", RDMACharDevices: []string{"/dev/../etc/shadow"}}}, "rdmaCharDevices"},
		{"bad vfio group", "u", []Device{{Request: "r", Name: "d", VFIOGroup: "../1"}}, "vfioGroup"},
		{"missing vfio group", "u", []Device{{Request: "r", Name: "d", VFIOGroup: "7"}}, "/dev/vfio/7"},
		{"newline in ifName", "u", []Device{{Request: "r", Name: "d", IfName: "a\nB=1"}}, "ifName"},
		{"relative mount source", "u", []Device{{Request: "r", Name: "d", Mounts: []Mount{{HostPath: "m", ContainerPath: "/run/m"}}}}, "mounts[0].hostPath"},
		{"mount target escapes", "u", []Device{{Request: "r", Name: "d", Mounts: []Mount{{HostPath: "/m", ContainerPath: "/run/../etc/m"}}}}, "mounts[0].containerPath"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := New(dir, root)
			// An earlier good spec of the same claim must survive a bad rewrite.
			if tc.claim == "u" {
				if _, err := w.Write(ctx, "u", []Device{good}); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := os.ReadFile(w.SpecPath("u"))
			_, err := w.Write(ctx, tc.claim, tc.devs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write = %v, want an error containing %q", err, tc.want)
			}
			after, _ := os.ReadFile(w.SpecPath("u"))
			if string(before) != string(after) {
				t.Error("a refused Write changed the existing spec")
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.Contains(e.Name(), ".tmp-") {
					t.Errorf("temp file %s left behind", e.Name())
				}
			}
		})
	}
}

// Claims lists only specs this package wrote: the name, the kind and the
// device names must all say so. Anything else in the dir is left out.
func TestClaimsOnlyOurs(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	dir := t.TempDir()
	w := New(dir, t.TempDir())
	if _, err := w.Write(ctx, "uid-1", []Device{{Request: "eth", Name: "dev0"}}); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"example.com-gpu_x.json":         `{"cdiVersion":"0.6.0","kind":"example.com/gpu","devices":[{"name":"x"}]}`,
		"sriov.dra.dev-vf_a.json":        `{"cdiVersion":"0.6.0","kind":"example.com/gpu","devices":[{"name":"a-x"}]}`, // other kind
		"sriov.dra.dev-vf_b.json":        `{"cdiVersion":"0.6.0","kind":"sriov.dra.dev/vf","devices":[{"name":"other-x"}]}`,
		"sriov.dra.dev-vf_c.json":        `{"cdiVersion":"0.6.0","kind":"sriov.dra.dev/vf","devices":[]}`,
		"sriov.dra.dev-vf_d.json":        `{"kind":"sriov.dra.dev/vf",`,
		"sriov.dra.dev-vf_e.yaml":        `kind: sriov.dra.dev/vf`,
		".sriov.dra.dev-vf_f.json.tmp-1": `{"cdiVersion":"0.6.0","kind":"sriov.dra.dev/vf","devices":[{"name":"f-x"}]}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(w.SpecPath("uid-1"), w.SpecPath("g")); err != nil {
		t.Fatal(err)
	}
	got, err := w.Claims()
	if err != nil || !slices.Equal(got, []string{"uid-1"}) {
		t.Errorf("Claims = %v, %v; want only uid-1", got, err)
	}
}
