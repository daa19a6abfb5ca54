package vfprov

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
)

func TestParse(t *testing.T) {
	head := "apiVersion: sriov.dra.dev/v1alpha1\nkind: NodeConfig\n"
	for _, tc := range []struct {
		name, in string
		wantErr  string // substring; "" = valid
	}{
		{"by name", head + "pfs:\n- interfaceName: eth1\n  numVfs: 3\n", ""},
		{"by pci, driver", head + "pfs:\n- pciAddress: 0000:3B:00.0\n  numVfs: 0\n  vfDriver: vfio-pci\n", ""},
		{"by ids", head + "pfs:\n- vendor: \"0x8086\"\n  device: \"10c9\"\n  numVfs: 7\n", ""},
		{"empty list", head + "pfs: []\n", ""},
		{"unknown field", head + "pfs:\n- interfaceName: eth1\n  numVFs: 3\n", `unknown field "pfs[0].numVFs"`},
		{"wrong type", head + "pfs:\n- interfaceName: eth1\n  numVfs: three\n", "numVfs"},
		{"missing count", head + "pfs:\n- interfaceName: eth1\n", "pfs[0].numVfs: Required"},
		{"negative", head + "pfs:\n- interfaceName: eth1\n  numVfs: -1\n", "pfs[0].numVfs: Invalid value: -1"},
		{"no selector", head + "pfs:\n- numVfs: 1\n", "pfs[0]: Required"},
		{"two selectors", head + "pfs:\n- interfaceName: eth1\n  pciAddress: 0000:3b:00.0\n  numVfs: 1\n", "exactly one selector"},
		{"vendor alone", head + "pfs:\n- vendor: \"8086\"\n  numVfs: 1\n", "pfs[0].vendor: Required"},
		{"bad pci", head + "pfs:\n- interfaceName: eth0\n  numVfs: 1\n- pciAddress: 3b:00.0\n  numVfs: 1\n", "pfs[1].pciAddress: Invalid value"},
		{"bad device", head + "pfs:\n- vendor: \"8086\"\n  device: xyz\n  numVfs: 1\n", "pfs[0].device: Invalid value"},
		{"bad ifname", head + "pfs:\n- interfaceName: a/b\n  numVfs: 1\n", "pfs[0].interfaceName"},
		{"bad driver", head + "pfs:\n- interfaceName: eth1\n  numVfs: 1\n  vfDriver: \"../x\"\n", "pfs[0].vfDriver"},
		{"wrong kind", "apiVersion: sriov.dra.dev/v1alpha1\nkind: VfConfig\npfs: []\n", "kind: Unsupported value"},
		{"wrong version", "apiVersion: v1\nkind: NodeConfig\npfs: []\n", "apiVersion: Unsupported value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in))
			// Check (sriov-dra validate) refuses exactly what Parse refuses.
			if errs := Check([]byte(tc.in)); (len(errs) == 0) != (err == nil) || (err != nil && !strings.Contains(errs.ToAggregate().Error(), tc.wantErr)) {
				t.Errorf("Check = %v, Parse error = %v: want both to refuse (naming %q) or both to accept", errs, err, tc.wantErr)
			}
			if tc.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func cfg(entries ...PFConfig) *NodeConfig {
	return &NodeConfig{APIVersion: APIVersion, Kind: Kind, PFs: entries}
}

func n(i int) *int { return &i }

// fixture: IGB 0000:02:00.0 enp2s0f0 (8086:1521, 7 of 7 VFs) and
// SRIOVDisabled 0000:af:00.0 ens5f0 (8086:1572, 0 of 64 VFs).
func fixture(t *testing.T) (*sysfstest.Fixture, []PF) {
	t.Helper()
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB(), sysfstest.SRIOVDisabled()}})
	pfs, err := ScanPFs(h.Root)
	if err != nil {
		t.Fatal(err)
	}
	return h, pfs
}

func TestScanPFs(t *testing.T) {
	_, pfs := fixture(t)
	if len(pfs) != 2 {
		t.Fatalf("got %d PFs, want 2: %+v", len(pfs), pfs)
	}
	igb, x710 := pfs[0], pfs[1]
	if igb.PCIAddress != "0000:02:00.0" || igb.IfName != "enp2s0f0" || igb.Vendor != "8086" || igb.Device != "1521" ||
		igb.Driver != "igb" || igb.NumVFs != 7 || igb.TotalVFs != 7 || len(igb.VFs) != 7 || igb.VFs[0] != "0000:02:00.1" {
		t.Errorf("igb PF = %+v", igb)
	}
	if x710.PCIAddress != "0000:af:00.0" || x710.NumVFs != 0 || x710.TotalVFs != 64 || len(x710.VFs) != 0 {
		t.Errorf("x710 PF = %+v", x710)
	}
}

func TestPlan(t *testing.T) {
	h, pfs := fixture(t)
	noBusy := func(PF) []Held { return nil }
	igbBusy := func(pf PF) []Held {
		if pf.PCIAddress == "0000:02:00.0" {
			return []Held{{Device: "pci-0000-02-00-1", PCIAddress: "0000:02:00.1"}}
		}
		return nil
	}
	type want struct {
		pf      string
		state   State
		desired int
		reason  string
	}
	for _, tc := range []struct {
		name string
		cfg  *NodeConfig
		busy BusyFunc
		want []want
	}{
		{"nil config selects nothing", nil, noBusy, nil},
		{"unselected PFs are absent", cfg(PFConfig{InterfaceName: "eth9", NumVFs: n(1)}), noBusy, nil},
		{"already right", cfg(PFConfig{InterfaceName: "enp2s0f0", NumVFs: n(7)}), noBusy,
			[]want{{"0000:02:00.0", StateOK, 7, ""}}},
		{"by pci: enable", cfg(PFConfig{PCIAddress: "0000:AF:00.0", NumVFs: n(8)}), noBusy,
			[]want{{"0000:af:00.0", StateApply, 8, ""}}},
		{"by ids selects one PF only", cfg(PFConfig{Vendor: "0x8086", Device: "1521", NumVFs: n(3)}), noBusy,
			[]want{{"0000:02:00.0", StateApply, 3, ""}}},
		{"above the limit", cfg(PFConfig{InterfaceName: "enp2s0f0", NumVFs: n(8)}), noBusy,
			[]want{{"0000:02:00.0", StateError, 8, "numVfs 8 is above the PF's limit sriov_totalvfs 7"}}},
		{"prepared VF holds the change", cfg(PFConfig{InterfaceName: "enp2s0f0", NumVFs: n(0)}), igbBusy,
			[]want{{"0000:02:00.0", StatePending, 0, "waits until no VF of it is prepared; prepared: pci-0000-02-00-1"}}},
		{"prepared VF of another PF does not", cfg(PFConfig{InterfaceName: "ens5f0", NumVFs: n(2)}), igbBusy,
			[]want{{"0000:af:00.0", StateApply, 2, ""}}},
		{"busy but nothing to do", cfg(PFConfig{InterfaceName: "enp2s0f0", NumVFs: n(7)}), igbBusy,
			[]want{{"0000:02:00.0", StateOK, 7, ""}}},
		{"two entries", cfg(PFConfig{InterfaceName: "enp2s0f0", NumVFs: n(1)}, PFConfig{PCIAddress: "0000:02:00.0", NumVFs: n(2)}), noBusy,
			[]want{{"0000:02:00.0", StateError, 1, "selected by more than one entry: pfs[0] (interfaceName enp2s0f0), pfs[1] (pciAddress 0000:02:00.0)"}}},
		{"driver differs", cfg(PFConfig{InterfaceName: "enp2s0f0", NumVFs: n(7), VFDriver: "vfio-pci"}), noBusy,
			[]want{{"0000:02:00.0", StateApply, 7, ""}}},
		{"driver matches", cfg(PFConfig{InterfaceName: "enp2s0f0", NumVFs: n(7), VFDriver: "igbvf"}), noBusy,
			[]want{{"0000:02:00.0", StateOK, 7, ""}}},
		{"driver differs, a VF prepared: the others are rebound", cfg(PFConfig{InterfaceName: "enp2s0f0", NumVFs: n(7), VFDriver: "vfio-pci"}), igbBusy,
			[]want{{"0000:02:00.0", StateApply, 7, ""}}},
		{"driver differs, the PF prepared whole", cfg(PFConfig{InterfaceName: "enp2s0f0", NumVFs: n(7), VFDriver: "vfio-pci"}),
			func(pf PF) []Held { return []Held{{Device: "pci-0000-02-00-0", PCIAddress: pf.PCIAddress}} },
			[]want{{"0000:02:00.0", StatePending, 7, "binding its VFs to vfio-pci waits until the PF itself is no longer prepared"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Plan(h.Root, tc.cfg, pfs, tc.busy)
			if tc.name == "driver differs, a VF prepared: the others are rebound" && (len(got) != 1 || len(got[0].Rebind) != 6 || slices.Contains(got[0].Rebind, "0000:02:00.1")) {
				t.Errorf("rebind %v: want the 6 VFs other than the prepared 0000:02:00.1", got[0].Rebind)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d statuses, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.PF.PCIAddress != w.pf || g.State != w.state || g.Desired != w.desired || !strings.Contains(g.Reason, w.reason) {
					t.Errorf("status %d = {%s %s %d %q}, want {%s %s %d ~%q}", i, g.PF.PCIAddress, g.State, g.Desired, g.Reason, w.pf, w.state, w.desired, w.reason)
				}
				if (w.reason == "") != (g.Reason == "") {
					t.Errorf("status %d reason %q, want one only when %q", i, g.Reason, w.reason)
				}
			}
		})
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestApplyWrites(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cfg        *NodeConfig
		wantWrites []int
		igb, x710  string // sriov_numvfs afterwards
	}{
		{"non-zero to non-zero goes through 0", cfg(PFConfig{InterfaceName: "enp2s0f0", NumVFs: n(3)}), []int{0, 3}, "0\n3", "0"},
		{"to zero", cfg(PFConfig{InterfaceName: "enp2s0f0", NumVFs: n(0)}), []int{0}, "0", "0"},
		{"from zero", cfg(PFConfig{InterfaceName: "ens5f0", NumVFs: n(5)}), []int{5}, "7", "5"},
		{"above the limit writes nothing", cfg(PFConfig{InterfaceName: "ens5f0", NumVFs: n(65)}), nil, "7", "0"},
		{"unselected untouched", cfg(PFConfig{InterfaceName: "eth0", NumVFs: n(1)}), nil, "7", "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, pfs := fixture(t)
			// The fixture's files keep every write appended, so the test
			// sees the sequence the kernel would have been given.
			for _, pf := range pfs {
				p := filepath.Join(h.Root, "sys/bus/pci/devices", pf.PCIAddress, "sriov_numvfs")
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
				if err != nil {
					t.Fatal(err)
				}
				_, err = f.WriteString(strconv.Itoa(pf.NumVFs))
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			var writes []int
			for _, st := range Plan(h.Root, tc.cfg, pfs, nil) {
				w, err := Apply(context.Background(), h.Root, st)
				if err != nil {
					t.Fatalf("Apply %s: %v", st.Name(), err)
				}
				writes = append(writes, w...)
			}
			if !reflect.DeepEqual(writes, tc.wantWrites) {
				t.Errorf("writes = %v, want %v", writes, tc.wantWrites)
			}
			// writeAttr truncates: the file holds the last write.
			last := func(s string) string { return s[strings.LastIndex(s, "\n")+1:] }
			if got := readFile(t, filepath.Join(h.Root, "sys/bus/pci/devices/0000:02:00.0/sriov_numvfs")); got != last(tc.igb) {
				t.Errorf("igb sriov_numvfs = %q, want %q", got, last(tc.igb))
			}
			if got := readFile(t, filepath.Join(h.Root, "sys/bus/pci/devices/0000:af:00.0/sriov_numvfs")); got != tc.x710 {
				t.Errorf("x710 sriov_numvfs = %q, want %q", got, tc.x710)
			}
		})
	}
}

// TestApplyBindsVFDriver plays the kernel for the fixture: when a VF is
// written to drivers_probe it moves the VF's driver link to its
// driver_override.
func TestApplyBindsVFDriver(t *testing.T) {
	h, pfs := fixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dev := func(vf string) string { return filepath.Join(h.Root, "sys/bus/pci/devices", vf) }
	go func() {
		probe := filepath.Join(h.Root, "sys/bus/pci/drivers_probe")
		for ctx.Err() == nil {
			if b, err := os.ReadFile(probe); err == nil && len(b) > 0 {
				vf := strings.TrimSpace(string(b))
				if ov, err := os.ReadFile(filepath.Join(dev(vf), "driver_override")); err == nil {
					drv := strings.TrimSpace(string(ov))
					link := filepath.Join(dev(vf), "driver")
					os.Remove(link)
					if err := os.Symlink(filepath.Join("../../../bus/pci/drivers", drv), link); err != nil {
						t.Errorf("bind %s to %s: %v", vf, drv, err)
					}
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	sts := Plan(h.Root, cfg(PFConfig{InterfaceName: "enp2s0f0", NumVFs: n(7), VFDriver: "vfio-pci"}), pfs, nil)
	if len(sts) != 1 || sts[0].State != StateApply || len(sts[0].Rebind) != 7 {
		t.Fatalf("plan = %+v", sts)
	}
	w, err := Apply(ctx, h.Root, sts[0])
	if err != nil || len(w) != 0 {
		t.Fatalf("Apply = %v, %v; want no numvfs writes, no error", w, err)
	}
	for _, vf := range pfs[0].VFs {
		if got := linkBase(filepath.Join(dev(vf), "driver")); got != "vfio-pci" {
			t.Errorf("VF %s driver %q, want vfio-pci", vf, got)
		}
		if got := readFile(t, filepath.Join(h.Root, "sys/bus/pci/drivers/igbvf/unbind")); got == "" {
			t.Errorf("no unbind written to igbvf")
		}
	}
	again := Plan(h.Root, cfg(PFConfig{InterfaceName: "enp2s0f0", NumVFs: n(7), VFDriver: "vfio-pci"}), pfs, nil)
	if again[0].State != StateOK {
		t.Errorf("after binding, plan = %+v, want ok", again[0])
	}
	// The other PF was not selected: nothing written to its attributes.
	if got := readFile(t, filepath.Join(h.Root, "sys/bus/pci/devices/0000:af:00.0/sriov_numvfs")); got != "0" {
		t.Errorf("unselected PF's sriov_numvfs = %q", got)
	}
}

func TestSource(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.yaml")
	s, err := NewSource(p)
	if err != nil || s.Config() != nil {
		t.Fatalf("missing file: %v, %+v; want no config, no error", err, s.Config())
	}
	if s.Changed() {
		t.Error("Changed with the file still missing")
	}
	good := "apiVersion: sriov.dra.dev/v1alpha1\nkind: NodeConfig\npfs:\n- interfaceName: eth1\n  numVfs: 3\n"
	if err := os.WriteFile(p, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	if !s.Changed() {
		t.Error("file created, Changed false")
	}
	changed, c, err := s.Refresh()
	if err != nil || !changed || c == nil || *c.PFs[0].NumVFs != 3 {
		t.Fatalf("new file: %v %+v %v", changed, c, err)
	}
	if changed, _, err := s.Refresh(); changed || err != nil || s.Changed() {
		t.Fatalf("unchanged file reported changed=%v (Changed %v) err=%v", changed, s.Changed(), err)
	}
	bad := strings.Replace(good, "numVfs: 3", "numVfs: 3\n  extra: 1", 1)
	if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, c, err = s.Refresh()
	if err == nil || !strings.Contains(err.Error(), "extra") || changed || c == nil || *c.PFs[0].NumVFs != 3 {
		t.Fatalf("bad file: changed=%v cfg=%+v err=%v; want the error and the last good config", changed, c, err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if !s.Changed() {
		t.Error("file removed, Changed false")
	}
	if changed, c, err := s.Refresh(); !changed || c != nil || err != nil {
		t.Fatalf("removed file: changed=%v cfg=%+v err=%v", changed, c, err)
	}
}
