package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
)

// `sriov-dra inventory --vf-config` shows desired vs actual VFs of the PFs
// the config selects, and only those; it writes nothing.
func TestInventoryVFProvisioning(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB(), sysfstest.SRIOVDisabled()}})
	cfg := filepath.Join(t.TempDir(), "vf.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte("apiVersion: sriov.dra.dev/v1alpha1\nkind: NodeConfig\n"+s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pfs:\n- interfaceName: enp2s0f0\n  numVfs: 3\n- pciAddress: 0000:af:00.0\n  numVfs: 65\n")
	out, log, code := runCLI(t, context.Background(), "inventory", "--host-root", h.Root, "--vf-config", cfg)
	if code != 0 {
		t.Fatalf("exit code %d\n%s", code, log)
	}
	_, section, ok := strings.Cut(out, "VF provisioning (--vf-config):")
	if !ok {
		t.Fatalf("no VF provisioning section:\n%s", out)
	}
	for _, re := range []string{
		`0000:02:00.0\s+enp2s0f0\s+3\s+7\s+7\s+-\s+differs`,
		`0000:af:00.0\s+ens5f0\s+65\s+0\s+64\s+-\s+error`,
		`PF 0000:af:00.0: pfs\[1\] \(pciAddress 0000:af:00.0\): numVfs 65 is above the PF's limit sriov_totalvfs 64`,
	} {
		if !regexp.MustCompile(re).MatchString(section) {
			t.Errorf("section lacks %s:\n%s", re, section)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(h.Root, "sys/bus/pci/devices/0000:02:00.0/sriov_numvfs")); strings.TrimSpace(string(b)) != "7" {
		t.Errorf("inventory wrote sriov_numvfs: %q", b)
	}

	out, log, code = runCLI(t, context.Background(), "inventory", "--host-root", h.Root, "--vf-config", cfg, "-o", "json")
	if code != 0 || !strings.Contains(out, `"desiredVfs": 3`) || !strings.Contains(out, `"actualVfs": 7`) {
		t.Errorf("json: exit %d, output lacks the provisioning rows:\n%s\n%s", code, out, log)
	}

	write("pfs:\n- interfaceName: enp2s0f0\n  numvfs: 3\n")
	_, log, code = runCLI(t, context.Background(), "inventory", "--host-root", h.Root, "--vf-config", cfg)
	if code != 2 || !strings.Contains(log, `unknown field "pfs[0].numvfs"`) {
		t.Errorf("bad config: exit %d, want 2 naming the field:\n%s", code, log)
	}
}

// In the driver's pod `sriov-dra inventory` reads the daemon's environment
// (HOST_ROOT, DEVICE_FILTER, PASSTHROUGH_PFS, VF_CONFIG), so it shows what
// that daemon publishes without repeating its settings; a flag wins over
// the variable, and --filter-file still works as the old name.
func TestInventoryReadsDriverEnv(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB(), sysfstest.SRIOVDisabled()}})
	filter := filepath.Join(t.TempDir(), "filter.yaml")
	if err := os.WriteFile(filter, []byte("pfNames: [ens5f0]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "vf.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: sriov.dra.dev/v1alpha1\nkind: NodeConfig\npfs:\n- interfaceName: ens5f0\n  numVfs: 8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOST_ROOT", h.Root)
	t.Setenv("DEVICE_FILTER", filter)
	t.Setenv("PASSTHROUGH_PFS", "ens5f0")
	t.Setenv("VF_CONFIG", cfg)
	out, log, code := runCLI(t, context.Background(), "inventory")
	if code != 0 {
		t.Fatalf("exit code %d\n%s", code, log)
	}
	for _, re := range []string{
		`(?m)^pci-0000-af-00-0\s+pf\s`,                                   // HOST_ROOT
		`PF 0000:af:00.0 \(ens5f0\): listed for passthrough but refused`, // PASSTHROUGH_PFS
		`0000:af:00.0\s+ens5f0\s+8\s+0\s+64\s+-\s+differs`,               // VF_CONFIG
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "enp2s0f0") { // DEVICE_FILTER
		t.Errorf("the filter of DEVICE_FILTER (ens5f0 only) was not applied:\n%s", out)
	}

	out, log, code = runCLI(t, context.Background(), "inventory", "--passthrough-pfs", "enp2s0f0", "--filter-file", filepath.Join(t.TempDir(), "none.yaml"))
	if code != 2 || !strings.Contains(log, "--device-filter") {
		t.Errorf("a missing --filter-file: exit %d, want 2 naming --device-filter:\n%s\n%s", code, out, log)
	}
	out, _, code = runCLI(t, context.Background(), "inventory", "--passthrough-pfs", "enp2s0f0")
	if code != 0 || !strings.Contains(out, "PF 0000:af:00.0 (ens5f0): "+"not offered whole: not listed") {
		t.Errorf("--passthrough-pfs must win over PASSTHROUGH_PFS: exit %d\n%s", code, out)
	}
}
