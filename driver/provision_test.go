package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/client-go/tools/events"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/vfprov"
)

// TestProvisionWaitsForPreparedVF: the configured count of a PF with a
// prepared VF waits (metric, one log and one Node event, nothing written);
// after Unprepare it is written (through 0), the inventory is rescanned
// at once, and the PF the config does not select is never written.
func TestProvisionWaitsForPreparedVF(t *testing.T) {
	e := newEnv(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB(), sysfstest.SRIOVDisabled()}})
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	writeCfg := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte("apiVersion: sriov.dra.dev/v1alpha1\nkind: NodeConfig\n"+s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("pfs:\n- interfaceName: enp2s0f0\n  numVfs: 3\n")
	src, err := vfprov.NewSource(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	rec := events.NewFakeRecorder(10)
	cfg := e.config()
	cfg.VFConfig, cfg.HostRoot, cfg.Metrics, cfg.Events = src, e.fix.Root, NewMetrics(reg), rec
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	numvfs := func(pci string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(e.fix.Root, "sys/bus/pci/devices", pci, "sriov_numvfs"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	event := func() string {
		select {
		case ev := <-rec.Events:
			return ev
		default:
			return ""
		}
	}
	ctx := context.Background()

	claim := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", vfName(e, 0, 2))})
	if err := prepare(t, d, claim)["u1"].Err; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		wrote, err := d.provision(ctx)
		if wrote || err != nil {
			t.Fatalf("provision with a prepared VF: wrote=%v err=%v", wrote, err)
		}
	}
	if got := numvfs("0000:02:00.0"); got != "7" {
		t.Errorf("sriov_numvfs written while a VF is prepared: %s", got)
	}
	if got := gather(t, reg)["sriov_dra_vf_provisioning_pending"]; got != 1 {
		t.Errorf("vf_provisioning_pending = %v, want 1", got)
	}
	ev := event()
	if !strings.Contains(ev, "Normal VFProvisioningPending") || !strings.Contains(ev, "0000:02:00.0 (enp2s0f0)") || !strings.Contains(ev, vfName(e, 0, 2)) {
		t.Errorf("pending event = %q", ev)
	}
	if ev := event(); ev != "" {
		t.Errorf("second poll posted another event: %q", ev)
	}

	if err := unprepare(t, d, claim)["u1"]; err != nil {
		t.Fatal(err)
	}
	gen := d.invGen
	wrote, err := d.provision(ctx)
	if !wrote || err != nil {
		t.Fatalf("provision after Unprepare: wrote=%v err=%v", wrote, err)
	}
	if d.invGen == gen {
		t.Error("no rescan after writing sriov_numvfs")
	}
	if got := numvfs("0000:02:00.0"); got != "3" {
		t.Errorf("sriov_numvfs = %s, want 3", got)
	}
	if got := numvfs("0000:af:00.0"); got != "0" {
		t.Errorf("unselected PF written: sriov_numvfs = %s", got)
	}
	if got := gather(t, reg)["sriov_dra_vf_provisioning_pending"]; got != 0 {
		t.Errorf("vf_provisioning_pending = %v, want 0", got)
	}
	if ev := event(); !strings.Contains(ev, "Normal VFsProvisioned") || !strings.Contains(ev, "sriov_numvfs 7 -> 3") {
		t.Errorf("provisioned event = %q", ev)
	}

	// A bad value: an error naming the PF and the limit, nothing written.
	writeCfg("pfs:\n- interfaceName: ens5f0\n  numVfs: 65\n")
	if wrote, err := d.provision(ctx); wrote || err != nil {
		t.Fatalf("provision above the limit: wrote=%v err=%v", wrote, err)
	}
	if ev := event(); !strings.Contains(ev, "Warning VFProvisioningFailed") || !strings.Contains(ev, "sriov_totalvfs 64") || !strings.Contains(ev, "interfaceName ens5f0") {
		t.Errorf("limit event = %q", ev)
	}
	// A config that does not parse keeps the last valid one and says why.
	writeCfg("pfs:\n- interfaceName: ens5f0\n  numVF: 1\n")
	if wrote, err := d.provision(ctx); wrote || err != nil {
		t.Fatalf("provision with a bad file: wrote=%v err=%v", wrote, err)
	}
	if ev := event(); !strings.Contains(ev, "Warning VFConfigInvalid") || !strings.Contains(ev, "numVF") {
		t.Errorf("bad config event = %q", ev)
	}
	if got := numvfs("0000:af:00.0"); got != "0" {
		t.Errorf("sriov_numvfs of ens5f0 = %s after bad configs, want 0", got)
	}
}
