// Package deployments holds the manifests (kustomize base, DeviceClasses,
// examples); this test checks them without a cluster: every sriov.dra.dev
// config is valid, and every CEL selector selects exactly the fixture
// devices it is meant for. The cluster e2e applies them for real.
package deployments

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/dynamic-resource-allocation/cel"
	"sigs.k8s.io/yaml"

	"github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/vfprov"
)

// docs splits a YAML file into its documents.
func docs(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(bytes.TrimSpace(d)) > 0 {
			out = append(out, d)
		}
	}
}

func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{"base", "examples"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 8 {
		t.Fatalf("found only %d manifest files", len(files))
	}
	return files
}

func TestConfigsAreValid(t *testing.T) {
	total := 0
	for _, f := range manifestFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := v1alpha1.CheckManifests(bytes.NewReader(b), v1alpha1.DriverName)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range rep.Problems {
			t.Errorf("%s: %s", f, p)
		}
		total += rep.Configs
	}
	// Every example has a config, and the DPDK class has one.
	if total < 8 {
		t.Errorf("validated %d configs, want at least 8 (one per example and the DPDK class)", total)
	}
}

// fixtureDevices is what the driver would publish for the standard fixture
// host (ConnectX-6 IB PF with VFs, E810 with some VFs on vfio-pci, igb, a
// PF with SR-IOV disabled, listed for passthrough), as CEL inputs keyed by
// device name.
func fixtureDevices(t *testing.T) (map[string]cel.Device, []inventory.Device) {
	t.Helper()
	h := sysfstest.New(t, sysfstest.Standard())
	inv, err := inventory.Scan(context.Background(), inventory.Options{Root: h.Root, Netlink: h.Netlink})
	if err != nil {
		t.Fatal(err)
	}
	pub := inv.Publishable([]string{"ens5f0"})
	out := map[string]cel.Device{}
	for _, d := range pub {
		out[d.Name] = cel.Device{Driver: v1alpha1.DriverName, Attributes: inventory.Attributes(d)}
	}
	return out, pub
}

func matching(t *testing.T, expr string, devs map[string]cel.Device) []string {
	t.Helper()
	res := cel.GetCompiler(cel.Features{}).CompileCELExpression(expr, cel.Options{})
	if res.Error != nil {
		t.Fatalf("compile %q: %v", expr, res.Error)
	}
	var names []string
	for name, d := range devs {
		ok, _, err := res.DeviceMatches(context.Background(), d)
		if err != nil {
			t.Fatalf("evaluate %q on %s: %v", expr, name, err)
		}
		if ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func TestDeviceClassSelectors(t *testing.T) {
	devs, pub := fixtureDevices(t)
	want := map[string]func(d inventory.Device) bool{
		"vf-ethernet.sriov.dra.dev": func(d inventory.Device) bool {
			return d.Kind == inventory.KindVF && d.LinkType == inventory.LinkTypeEthernet
		},
		"vf-dpdk.sriov.dra.dev": func(d inventory.Device) bool {
			return d.Kind == inventory.KindVF && d.LinkType == inventory.LinkTypeEthernet
		},
		"vf-infiniband.sriov.dra.dev": func(d inventory.Device) bool {
			return d.Kind == inventory.KindVF && d.LinkType == inventory.LinkTypeInfiniBand
		},
		"pf.sriov.dra.dev": func(d inventory.Device) bool { return d.Kind == inventory.KindPF },
	}
	seen := map[string]bool{}
	for _, doc := range docs(t, "base/deviceclasses.yaml") {
		var dc resourceapi.DeviceClass
		if err := yaml.UnmarshalStrict(doc, &dc); err != nil {
			t.Fatalf("deviceclasses.yaml: %v", err)
		}
		pred, ok := want[dc.Name]
		if !ok {
			t.Errorf("unexpected DeviceClass %s", dc.Name)
			continue
		}
		seen[dc.Name] = true
		if len(dc.Spec.Selectors) != 1 || dc.Spec.Selectors[0].CEL == nil {
			t.Fatalf("%s: want one CEL selector", dc.Name)
		}
		got := matching(t, dc.Spec.Selectors[0].CEL.Expression, devs)
		var exp []string
		for _, d := range pub {
			if pred(d) {
				exp = append(exp, d.Name)
			}
		}
		slices.Sort(exp)
		if len(exp) == 0 {
			t.Errorf("%s: the fixture has no device for this class; the test proves nothing", dc.Name)
		}
		if !slices.Equal(got, exp) {
			t.Errorf("%s selects %v\nwant %v", dc.Name, got, exp)
		}
		// A device of another driver never matches.
		for name, d := range devs {
			d.Driver = "other.example.com"
			if len(matching(t, dc.Spec.Selectors[0].CEL.Expression, map[string]cel.Device{name: d})) != 0 {
				t.Errorf("%s selects %s of another driver", dc.Name, name)
			}
			break
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("DeviceClass %s missing from base/deviceclasses.yaml", name)
		}
	}
}

// Every CEL selector in the examples compiles and runs without error on
// every fixture device (a runtime error would fail the allocation).
func TestExampleSelectorsEvaluate(t *testing.T) {
	devs, _ := fixtureDevices(t)
	files, _ := filepath.Glob("examples/*.yaml")
	n := 0
	for _, f := range files {
		for _, doc := range docs(t, f) {
			if !strings.Contains(string(doc), "kind: ResourceClaimTemplate") {
				continue
			}
			var tmpl resourceapi.ResourceClaimTemplate
			if err := yaml.UnmarshalStrict(doc, &tmpl); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, r := range tmpl.Spec.Spec.Devices.Requests {
				if r.Exactly == nil {
					continue
				}
				for _, s := range r.Exactly.Selectors {
					if s.CEL != nil {
						n++
						if len(matching(t, s.CEL.Expression, devs)) == 0 {
							t.Errorf("%s request %s: selector matches no fixture device", f, r.Name)
						}
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no example selectors found")
	}
}

// The VF config the base ships in its ConfigMap is one the driver accepts
// (and selects no PF: the base changes no VF count).
func TestVFConfigIsValid(t *testing.T) {
	b, err := os.ReadFile("base/vfconfig.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Kind string            `json:"kind"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	raw, ok := cm.Data["config.yaml"]
	if cm.Kind != "ConfigMap" || !ok {
		t.Fatalf("base/vfconfig.yaml: want a ConfigMap with data config.yaml, got %+v", cm)
	}
	c, err := vfprov.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("base/vfconfig.yaml config.yaml: %v", err)
	}
	if len(c.PFs) != 0 {
		t.Errorf("the base selects PFs: %+v", c.PFs)
	}
	ds, err := os.ReadFile("base/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: VF_CONFIG", "value: /etc/sriov-dra/vf-config/config.yaml", "mountPath: /etc/sriov-dra/vf-config", "name: sriov-dra-vf-config"} {
		if !strings.Contains(string(ds), want) {
			t.Errorf("base/daemonset.yaml lacks %q", want)
		}
	}
}
