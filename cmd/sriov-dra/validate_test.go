package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runValidateCmd runs `sriov-dra <args>` and returns its exit code and
// output.
func runValidateCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	code := 0
	if err := executeRoot(t, context.Background(), root); err != nil {
		code = exitCode(err)
		errOut.WriteString("error: " + err.Error() + "\n")
	}
	return code, out.String(), errOut.String()
}

const validateClaim = `apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: foo, namespace: default}
spec:
  devices:
    requests:
    - {name: net, exactly: {deviceClassName: vf-ethernet.sriov.dra.dev}}
    config:
    - opaque:
        driver: sriov.dra.dev
        parameters:
          apiVersion: sriov.dra.dev/v1alpha1
          kind: VfConfig
          vlan: %VLAN%
          ifName: data0
`

// vlanClass lets its claims set vlan.
const vlanClass = `apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: vf-ethernet.sriov.dra.dev}
spec:
  config:
  - opaque:
      driver: sriov.dra.dev
      parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, policy: {claimMaySet: [vlan]}}
`

const twoRequests = `apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: two, namespace: default}
spec:
  devices:
    requests:
    - {name: a, exactly: {deviceClassName: vf-ethernet.sriov.dra.dev}}
    - {name: b, exactly: {deviceClassName: vf-ethernet.sriov.dra.dev}}
    config:
    - requests: [a]
      opaque: {driver: sriov.dra.dev, parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, ifName: data0}}
    - requests: [b]
      opaque: {driver: sriov.dra.dev, parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, ifName: data0}}
`

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", strings.ReplaceAll(validateClaim, "%VLAN%", "100")+"---\napiVersion: sriov.dra.dev/v1alpha1\nkind: PfConfig\nmtu: 9000\n")
	withClass := write("class.yaml", vlanClass+"---\n"+strings.ReplaceAll(validateClaim, "%VLAN%", "100"))
	bad := write("bad.yaml", strings.ReplaceAll(validateClaim, "%VLAN%", "4095")+"---\napiVersion: sriov.dra.dev/v1alpha1\nkind: VfConfig\nifName: eth0\n")

	tests := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		stdout   []string // exact lines
		stderrIn string
	}{
		{name: "valid file, class not in the input", args: []string{"validate", "-f", good}, code: 0,
			stdout: []string{
				"warning: ResourceClaim default/foo: spec.devices.config[0].opaque.parameters: sets vlan, which the policy of DeviceClass vf-ethernet.sriov.dra.dev bounds (claimMaySet, maxMTU, ipam); the class is not in the input, so the admission policy and the driver check it: add the class to the input to check it here",
				"2 sriov.dra.dev configs in 2 objects: valid as far as the input shows; 1 rule left to the driver's Prepare",
			}},
		{name: "valid with the class", args: []string{"validate", "-f", withClass}, code: 0,
			stdout: []string{"2 sriov.dra.dev configs in 2 objects: valid"}},
		{name: "errors", args: []string{"validate", "-f", bad}, code: 1,
			stdout: []string{
				"ResourceClaim default/foo: spec.devices.config[0].opaque.parameters.vlan: Invalid value: 4095: must be between 0 and 4094: a VLAN ID is 0 (no VLAN) to 4094",
				`VfConfig (document 2): ifName: Invalid value: "eth0": "eth0" is the pod's primary (cluster network) interface`,
			},
			stderrIn: "2 sriov.dra.dev configs in 2 objects: 2 errors"},
		{name: "stdin", args: []string{"validate", "--filename", "-"}, stdin: vlanClass + "---\n" + strings.ReplaceAll(validateClaim, "%VLAN%", "7"), code: 0,
			stdout: []string{"2 sriov.dra.dev configs in 2 objects: valid"}},
		{name: "warning only", args: []string{"validate", "-f", "-"}, stdin: "apiVersion: sriov.dra.dev/v1alpha1\nkind: VfConfig\nvlanQoS: 3\n", code: 0,
			stdout: []string{
				"warning: VfConfig (document 1): vlanQoS: vlanQoS 3 needs a vlan, which nothing in this object sets: it must come from another object's config (the claim's, or its DeviceClass's), or Prepare refuses the claim",
				"1 sriov.dra.dev config in 1 object: valid as far as the input shows; 1 rule left to the driver's Prepare",
			}},
		{name: "two requests, one ifName", args: []string{"validate", "-f", "-"}, stdin: twoRequests, code: 1,
			stdout: []string{
				`ResourceClaim default/two: spec.devices.config[1].opaque.parameters.ifName: Invalid value: "data0": requests "a" and "b" both get ifName "data0" (from spec.devices.config[0] and spec.devices.config[1]); each interface in the pod needs its own name`,
			},
			stderrIn: "1 error"},
		{name: "stdin with errors", args: []string{"validate", "-f", "-"}, stdin: "apiVersion: sriov.dra.dev/v1alpha2\nkind: VfConfig\n", code: 1,
			stdout:   []string{`VfConfig (document 1): apiVersion: Unsupported value: "sriov.dra.dev/v1alpha2": supported values: "sriov.dra.dev/v1alpha1"; this driver understands only sriov.dra.dev/v1alpha1`},
			stderrIn: "stdin: "},
		// A driver running under another name: its configs are checked, and
		// ones still naming sriov.dra.dev are refused, not passed over.
		{name: "another driver name", args: []string{"validate", "-f", "-", "--driver-name=sriov.example.com"},
			stdin: strings.ReplaceAll(strings.ReplaceAll(validateClaim, "%VLAN%", "7"), "driver: sriov.dra.dev", "driver: sriov.example.com"), code: 0,
			stdout: []string{
				"warning: ResourceClaim default/foo: spec.devices.config[0].opaque.parameters: sets vlan, which the policy of DeviceClass vf-ethernet.sriov.dra.dev bounds (claimMaySet, maxMTU, ipam); the class is not in the input, so the admission policy and the driver check it: add the class to the input to check it here",
				"1 sriov.example.com config in 1 object: valid as far as the input shows; 1 rule left to the driver's Prepare",
			}},
		{name: "another driver name, config names the default", args: []string{"validate", "-f", "-", "--driver-name=sriov.example.com"},
			stdin: strings.ReplaceAll(validateClaim, "%VLAN%", "7"), code: 1,
			stdout:   []string{`ResourceClaim default/foo: spec.devices.config[0].opaque.driver: Invalid value: "sriov.dra.dev": the parameters are sriov.dra.dev/v1alpha1 but the driver is another; set driver: sriov.example.com`},
			stderrIn: "0 sriov.example.com configs in 1 object: 1 error"},
		{name: "missing file", args: []string{"validate", "-f", filepath.Join(dir, "nope.yaml")}, code: 1, stderrIn: "no such file"},
		{name: "no -f", args: []string{"validate"}, code: 1, stderrIn: `"filename" not set`},
		{name: "stray argument", args: []string{"validate", "-f", good, "extra"}, code: 1, stderrIn: "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runValidateCmd(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d (stdout %q, stderr %q)", code, tt.code, stdout, stderr)
			}
			var lines []string
			if s := strings.TrimRight(stdout, "\n"); s != "" {
				lines = strings.Split(s, "\n")
			}
			if strings.Join(lines, "\n") != strings.Join(tt.stdout, "\n") {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, strings.Join(tt.stdout, "\n"))
			}
			if !strings.Contains(stderr, tt.stderrIn) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.stderrIn)
			}
		})
	}
}

// TestValidateDocsExamples runs the command over docs/config.md's YAML
// blocks, as a user copying them would.
func TestValidateDocsExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(doc), "```yaml\n")
	if len(parts) < 2 {
		t.Fatal("no yaml blocks in docs/config.md")
	}
	for i, p := range parts[1:] {
		block, _, _ := strings.Cut(p, "```")
		code, stdout, stderr := runValidateCmd(t, block, "validate", "-f", "-")
		if code != 0 {
			t.Errorf("block %d: exit %d\n%s%s", i, code, stdout, stderr)
		}
	}
}
