package v1alpha1

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const goodManifests = `# a bare config
apiVersion: sriov.dra.dev/v1alpha1
kind: VfConfig
vlan: 100
---
apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata:
  name: sriov-vf
spec:
  selectors:
  - cel:
      expression: device.driver == "sriov.dra.dev"
  config:
  - opaque:
      driver: sriov.dra.dev
      parameters:
        apiVersion: sriov.dra.dev/v1alpha1
        kind: VfConfig
        spoofChk: true
---
# comments only
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata:
  name: two
  namespace: default
spec:
  devices:
    requests:
    - name: a
      exactly: {deviceClassName: sriov-vf}
    - name: b
      firstAvailable:
      - {name: fast, deviceClassName: sriov-vf}
      - {name: slow, deviceClassName: sriov-vf}
    config:
    - requests: [a]
      opaque:
        driver: sriov.dra.dev
        parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, ifName: data0}
    - requests: [b/fast]
      opaque:
        driver: sriov.dra.dev
        parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, ifName: data1}
    - opaque:
        driver: gpu.example.com
        parameters: {anything: goes}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
`

// problems checks the manifests in and returns every problem as text, in
// order; it fails the test when the manifests cannot be read at all.
func problems(t *testing.T, in string) []string {
	t.Helper()
	rep, err := CheckManifests(strings.NewReader(in), DriverName)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range rep.Problems {
		got = append(got, p.String())
	}
	return got
}

func TestCheckManifestsAccepts(t *testing.T) {
	rep, err := CheckManifests(strings.NewReader(goodManifests), DriverName)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("problems: %v", rep.Problems)
	}
	if rep.Objects != 3 || rep.Configs != 4 || len(rep.Skipped) != 1 || rep.Skipped[0] != "Pod p" {
		t.Errorf("report = %+v", rep)
	}
	if got, want := rep.Summary(), "4 sriov.dra.dev configs in 3 objects: valid (1 other object skipped)"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}

func TestCheckManifestsRejects(t *testing.T) {
	in := `apiVersion: sriov.dra.dev/v1alpha1
kind: VfConfig
vlan: 4095
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: foo, namespace: default}
spec:
  devices:
    requests:
    - {name: a, exactly: {deviceClassName: sriov-vf}}
    - {name: b, exactly: {deviceClassName: sriov-pf}}
    config:
    - opaque:
        driver: sriov.dra.dev
        parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, vlan: 4095, ifName: ../x}
    - requests: [b]
      opaque:
        driver: sriov.dra.dev
        parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: PfConfig}
    - requests: [c]
      opaque:
        driver: sriov.dra.dev
        parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig}
    - opaque:
        driver: sriov.dra.io
        parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig}
    - opaque:
        driver: sriov.dra.dev
        parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig}
---
apiVersion: resource.k8s.io/v1beta2
kind: ResourceClaimTemplate
metadata: {name: tmpl}
spec:
  spec:
    devices:
      requests:
      - {name: a, exactly: {deviceClassName: sriov-vf}}
      config:
      - opaque:
          driver: sriov.dra.dev
          parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, ipam: {type: ../../bin/sh}}
---
apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: mixed}
spec:
  config:
  - opaque:
      driver: sriov.dra.dev
      parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig}
  - opaque:
      driver: sriov.dra.dev
      parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: PfConfig, mtu: 9000}
---
kind: List
apiVersion: v1
items:
- apiVersion: resource.k8s.io/v1
  kind: DeviceClass
  metadata: {name: in-list}
  spec:
    config:
    - opaque: {driver: sriov.dra.dev, parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, guid: ff:ff:ff:ff:ff:ff:ff:ff}}
---
a: [1,
`
	got := problems(t, in)
	want := []string{
		`VfConfig (document 1): vlan: Invalid value: 4095: must be between 0 and 4094: a VLAN ID is 0 (no VLAN) to 4094`,
		`ResourceClaim default/foo: spec.devices.config[0].opaque.parameters.ifName: Invalid value: "../x": may contain only printable ASCII characters other than '/', ':', '%' and space; found '/'`,
		`ResourceClaim default/foo: spec.devices.config[0].opaque.parameters.vlan: Invalid value: 4095: must be between 0 and 4094: a VLAN ID is 0 (no VLAN) to 4094`,
		`ResourceClaim default/foo: spec.devices.config[2].requests[0]: Invalid value: "c": the claim has no request (or subrequest) of this name`,
		`ResourceClaim default/foo: spec.devices.config[3].opaque.driver: Invalid value: "sriov.dra.io": the parameters are sriov.dra.dev/v1alpha1 but the driver is another; set driver: sriov.dra.dev`,
		`ResourceClaim default/foo: spec.devices.config[4].opaque.parameters.kind: Invalid value: "VfConfig": request "b" also gets a PfConfig from spec.devices.config[1]; a device is either a VF (VfConfig) or a whole PF (PfConfig), not both`,
		`ResourceClaimTemplate tmpl: spec.spec.devices.config[0].opaque.parameters.ipam.type: Invalid value: "../../bin/sh": must be a bare plugin name looked up in CNI_PATH; ".." is not allowed`,
		`DeviceClass mixed: spec.config[1].opaque.parameters.kind: Invalid value: "PfConfig": every request also gets a VfConfig from spec.config[0]; a device is either a VF (VfConfig) or a whole PF (PfConfig), not both`,
		`DeviceClass in-list: spec.config[0].opaque.parameters.guid: Invalid value: "ff:ff:ff:ff:ff:ff:ff:ff": the all-ones GUID is not a valid GUID`,
	}
	for i, w := range want {
		g := ""
		if i < len(got) {
			g = got[i]
		}
		if g != w {
			t.Errorf("problem %d:\n got  %s\n want %s", i, g, w)
		}
	}
	// The last document is not YAML: reported, not fatal.
	if len(got) != len(want)+1 {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want)+1, strings.Join(got, "\n"))
	}
	if last := got[len(got)-1]; !strings.HasPrefix(last, "document 6: (document): Invalid value: not valid YAML") {
		t.Errorf("last problem = %q", last)
	}
}

// TestDocsExamplesValidate extracts every yaml block of docs/config.md and
// checks that each one validates, and that the doc has an example of each
// use case.
func TestDocsExamplesValidate(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 7 {
		t.Fatalf("docs/config.md has %d yaml blocks, want at least 7", len(blocks))
	}
	// The shipped classes come first, so that a claim naming one of
	// them is checked against its policy as Prepare would.
	shipped, err := os.ReadFile("../../deployments/base/deviceclasses.yaml")
	if err != nil {
		t.Fatal(err)
	}
	all := ""
	for i, b := range blocks {
		rep, err := CheckManifests(strings.NewReader(string(shipped)+"\n---\n"+b[1]), DriverName)
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		for _, p := range rep.Problems {
			t.Errorf("docs/config.md yaml block %d: %s", i, p)
		}
		if rep.Configs == 0 {
			t.Errorf("docs/config.md yaml block %d has no sriov.dra.dev config:\n%s", i, b[1])
		}
		all += b[1]
	}
	for _, want := range []string{"guid:", "pkey:", "rdmaIsolation: true", "vlanQoS:", "spoofChk:", "trust:", "maxTxRate:",
		"driver: vfio-pci", "kind: PfConfig", "irqAffinity: container", "kind: ResourceClaimTemplate", "ipam:", "routes:"} {
		if !strings.Contains(all, want) {
			t.Errorf("no docs/config.md example uses %q", want)
		}
	}
}

// TestCheckManifestsPolicy: a claim is checked against the policy of the
// DeviceClasses in the same input (in any order); a claim's own policy is
// refused whatever its class.
func TestCheckManifestsPolicy(t *testing.T) {
	in := `apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {name: tenant, namespace: team-a}
spec:
  spec:
    devices:
      requests:
      - {name: a, exactly: {deviceClassName: vlan100}}
      - {name: b, exactly: {deviceClassName: elsewhere}}
      config:
      - requests: [a]
        opaque:
          driver: sriov.dra.dev
          parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, vlan: 200, mac: "02:00:00:00:00:01", ifName: data0}
      - requests: [b]
        opaque:
          driver: sriov.dra.dev
          parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, vlan: 300, policy: {claimMaySet: [vlan]}}
---
apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: vlan100}
spec:
  config:
  - opaque:
      driver: sriov.dra.dev
      parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, vlan: 100, policy: {claimMaySet: [mac]}}
`
	got := problems(t, in)
	want := []string{
		`ResourceClaimTemplate team-a/tenant: spec.spec.devices.config[0].opaque.parameters.vlan: Forbidden: a claim may not set vlan: DeviceClass "vlan100" does not allow it (policy.claimMaySet); ask the admin for a class that sets or allows it`,
		`ResourceClaimTemplate team-a/tenant: spec.spec.devices.config[1].opaque.parameters.policy: Forbidden: only a DeviceClass config may set policy: the admin decides what the claims of a class may set`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n got  %s\n want %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

func TestCheckClaimIfNames(t *testing.T) {
	const head = `apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: c}
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: x, namespace: ns}
spec:
  devices:
`
	cfg := func(requests, ifName string) string {
		r := ""
		if requests != "" {
			r = "requests: [" + requests + "], "
		}
		return "    - {" + r + "opaque: {driver: sriov.dra.dev, parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, ifName: " + ifName + "}}}\n"
	}
	for _, tc := range []struct {
		name     string
		requests string
		configs  string
		want     []string // problem substrings, in order; nil: none
	}{
		{name: "distinct names", requests: "    - {name: a, exactly: {deviceClassName: c}}\n    - {name: b, exactly: {deviceClassName: c}}\n",
			configs: cfg("a", "data0") + cfg("b", "data1")},
		{name: "same name for two requests", requests: "    - {name: a, exactly: {deviceClassName: c}}\n    - {name: b, exactly: {deviceClassName: c}}\n",
			configs: cfg("a", "data0") + cfg("b", "data0"),
			want:    []string{`config[1].opaque.parameters.ifName: Invalid value: "data0": requests "a" and "b" both get ifName "data0"`}},
		{name: "one unscoped config names every request", requests: "    - {name: a, exactly: {deviceClassName: c}}\n    - {name: b, exactly: {deviceClassName: c}}\n",
			configs: cfg("", "data0"),
			want:    []string{`config[0].opaque.parameters.ifName: Invalid value: "data0": requests "a" and "b" both get ifName "data0" (from spec.devices.config[0] and spec.devices.config[0])`}},
		{name: "a later config renames one", requests: "    - {name: a, exactly: {deviceClassName: c}}\n    - {name: b, exactly: {deviceClassName: c}}\n",
			configs: cfg("", "data0") + cfg("b", "data1")},
		{name: "alternatives of one request may share a name", requests: "    - {name: a, firstAvailable: [{name: fast, deviceClassName: c}, {name: slow, deviceClassName: c}]}\n",
			configs: cfg("a", "data0")},
		{name: "a subrequest and another request", requests: "    - {name: a, firstAvailable: [{name: fast, deviceClassName: c}, {name: slow, deviceClassName: c}]}\n    - {name: b, exactly: {deviceClassName: c}}\n",
			configs: cfg("a/slow", "data0") + cfg("b", "data0"),
			want:    []string{`requests "a/slow" and "b" both get ifName "data0"`}},
		{name: "one name for two devices of a request", requests: "    - {name: a, exactly: {deviceClassName: c, count: 2}}\n",
			configs: cfg("a", "data0"),
			want:    []string{`request "a" asks for 2 devices and this gives each of them the name "data0"`}},
		{name: "one name for all devices", requests: "    - {name: a, exactly: {deviceClassName: c, allocationMode: All}}\n",
			configs: cfg("a", "data0"),
			want:    []string{`request "a" asks for all matching devices`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := CheckManifests(strings.NewReader(head+"    requests:\n"+tc.requests+"    config:\n"+tc.configs), DriverName)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) != len(tc.want) {
				t.Fatalf("problems %v, want %d", rep.Problems, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(rep.Problems[i].String(), w) {
					t.Errorf("problem %q lacks %q", rep.Problems[i], w)
				}
			}
		})
	}
}

// TestCheckManifestsWarnings: what one input cannot decide is a warning,
// not "valid"; once the input has what decides it, the warning goes.
func TestCheckManifestsWarnings(t *testing.T) {
	const claim = `apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {name: t, namespace: ns}
spec:
  spec:
    devices:
      requests:
      - {name: a, exactly: {deviceClassName: tenant}}
      config:
      - opaque: {driver: sriov.dra.dev, parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, mac: auto, vlanQoS: 3, ifName: data0}}
`
	const class = `apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: tenant}
spec:
  config:
  - opaque: {driver: sriov.dra.dev, parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, vlan: 10, policy: {claimMaySet: [mac, vlanQoS]}}}
`
	for _, tc := range []struct {
		name string
		in   string
		want []string
	}{
		{name: "claim alone", in: claim, want: []string{
			"warning: ResourceClaimTemplate ns/t: spec.spec.devices.config[0].opaque.parameters.vlanQoS: vlanQoS 3 needs a vlan, which the claim does not set: it must come from DeviceClass tenant, which is not in the input",
			"warning: ResourceClaimTemplate ns/t: spec.spec.devices.config[0].opaque.parameters: sets mac, vlanQoS, which the policy of DeviceClass tenant bounds",
		}},
		{name: "claim with its class, which sets the vlan", in: claim + "---\n" + class},
		{name: "vlan in the same object", in: "apiVersion: sriov.dra.dev/v1alpha1\nkind: VfConfig\nvlan: 5\nvlanQoS: 3\nvlanProto: 802.1ad\n"},
		{name: "802.1ad alone", in: "apiVersion: sriov.dra.dev/v1alpha1\nkind: VfConfig\nvlanProto: 802.1ad\n", want: []string{
			"warning: VfConfig (document 1): vlanProto: vlanProto 802.1ad needs a vlan",
		}},
		{name: "mtu depends on the class's maxMTU", in: strings.Replace(claim, "mac: auto, vlanQoS: 3, ", "mtu: 1500, ", 1), want: []string{
			"warning: ResourceClaimTemplate ns/t: spec.spec.devices.config[0].opaque.parameters: sets mtu, which the policy of DeviceClass tenant bounds",
		}},
		{name: "ifName only", in: strings.Replace(claim, "mac: auto, vlanQoS: 3, ", "", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := CheckManifests(strings.NewReader(tc.in), DriverName)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) > 0 {
				t.Fatalf("problems: %v", rep.Problems)
			}
			if len(rep.Warnings) != len(tc.want) {
				t.Fatalf("warnings %v, want %d", rep.Warnings, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(rep.Warnings[i].String(), w) {
					t.Errorf("warning %q does not start with %q", rep.Warnings[i], w)
				}
			}
			if len(tc.want) > 0 && strings.HasSuffix(rep.Summary(), ": valid") {
				t.Errorf("Summary %q is a bare valid despite warnings", rep.Summary())
			}
		})
	}
}

// TestCheckManifestsVLANFromClass: with the class in the input, a claim's
// vlanQoS without any vlan is an error, as Prepare would find.
func TestCheckManifestsVLANFromClass(t *testing.T) {
	in := `apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: novlan}
spec:
  config:
  - opaque: {driver: sriov.dra.dev, parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, policy: {claimMaySet: [vlanQoS]}}}
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: c, namespace: ns}
spec:
  devices:
    requests:
    - {name: a, exactly: {deviceClassName: novlan}}
    config:
    - opaque: {driver: sriov.dra.dev, parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, vlanQoS: 3}}
`
	rep, err := CheckManifests(strings.NewReader(in), DriverName)
	if err != nil {
		t.Fatal(err)
	}
	want := `ResourceClaim ns/c: spec.devices.config[0].opaque.parameters.vlanQoS: Invalid value: 3: needs a vlan, which neither the claim nor DeviceClass novlan sets`
	if len(rep.Problems) != 1 || !strings.HasPrefix(rep.Problems[0].String(), want) || len(rep.Warnings) != 0 {
		t.Errorf("problems %v warnings %v, want one problem starting %q", rep.Problems, rep.Warnings, want)
	}
}

// TestCheckManifestsNodeConfig: the driver's --vf-config file (kind
// NodeConfig, the README and install.md show one) is checked by the
// driver's own rules, not refused as an unknown config kind.
func TestCheckManifestsNodeConfig(t *testing.T) {
	head := "apiVersion: sriov.dra.dev/v1alpha1\nkind: NodeConfig\n"
	for _, tc := range []struct {
		name, in string
		want     []string // problems; none: valid
	}{
		{name: "valid", in: head + "pfs:\n- interfaceName: ens5f0\n  numVfs: 8\n- pciAddress: \"0000:af:00.0\"\n  numVfs: 0\n"},
		{name: "misspelt field", in: head + "pfs:\n- interfaceName: ens5f0\n  numVFs: 8\n", want: []string{
			`NodeConfig (document 1): pfs[0].numVFs: Forbidden: unknown field "pfs[0].numVFs"`,
			`NodeConfig (document 1): pfs[0].numVfs: Required value: the number of VFs (0 turns SR-IOV off)`,
		}},
		{name: "bad value", in: head + "pfs:\n- pciAddress: 3b:00.0\n  numVfs: -1\n", want: []string{
			`NodeConfig (document 1): pfs[0].pciAddress: Invalid value: "3b:00.0": want a full PCI address, e.g. 0000:3b:00.0`,
			`NodeConfig (document 1): pfs[0].numVfs: Invalid value: -1: must be 0 or more`,
		}},
		{name: "wrong type", in: head + "pfs:\n- interfaceName: a\n  numVfs: \"8\"\n", want: []string{
			`NodeConfig (document 1): (document): Invalid value: json: cannot unmarshal string into Go struct field PFConfig.pfs.numVfs of type int`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := CheckManifests(strings.NewReader(tc.in), DriverName)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range rep.Problems {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if rep.Objects != 1 || rep.Configs != 0 || len(rep.Skipped) != 0 {
				t.Errorf("report = %+v, want 1 object, 0 device configs", rep)
			}
		})
	}
}

// TestDocsYAMLBlocksValidate: every yaml block of the README and
// docs/install.md that `sriov-dra validate` reads (configs, classes,
// claims, the NodeConfig; fragments are skipped) passes it, so a reader who
// checks what the docs show before applying it gets no error.
func TestDocsYAMLBlocksValidate(t *testing.T) {
	shipped, err := os.ReadFile("../../deployments/base/deviceclasses.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"README.md", "docs/install.md"} {
		doc, err := os.ReadFile("../../" + name)
		if err != nil {
			t.Fatal(err)
		}
		blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
		if len(blocks) == 0 {
			t.Fatalf("%s has no yaml blocks", name)
		}
		for i, b := range blocks {
			rep, err := CheckManifests(strings.NewReader(string(shipped)+"\n---\n"+b[1]), DriverName)
			if err != nil {
				t.Fatalf("%s yaml block %d: %v", name, i, err)
			}
			for _, p := range rep.Problems {
				t.Errorf("%s yaml block %d: %s", name, i, p)
			}
		}
	}
}
