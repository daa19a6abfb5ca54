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
