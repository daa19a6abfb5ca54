//go:build vmtest

package vmtests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sriov-dra/sriov-dra/daemon"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/vfprov"
)

func numVFs(t *testing.T, pci string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/bus/pci/devices", pci, "sriov_numvfs"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// setNumVFsRaw writes sriov_numvfs directly (the test's own restore, not
// the code under test) and waits for every VF's netdev.
func setNumVFsRaw(t *testing.T, pci string, n int) {
	t.Helper()
	p := filepath.Join("/sys/bus/pci/devices", pci, "sriov_numvfs")
	for _, v := range []int{0, n} {
		if err := os.WriteFile(p, []byte(strconv.Itoa(v)), 0); err != nil {
			t.Errorf("restore: write %d to %s: %v", v, p, err)
			return
		}
	}
	waitFor(t, fmt.Sprintf("%d VF netdevs of %s", n, pci), func() bool {
		links, _ := filepath.Glob(filepath.Join("/sys/bus/pci/devices", pci, "virtfn*"))
		if len(links) != n {
			return false
		}
		for _, l := range links {
			if ents, err := os.ReadDir(filepath.Join(l, "net")); err != nil || len(ents) == 0 {
				return false
			}
		}
		return true
	})
}

// TestVFProvisioning drives the second PF's VF count through the driver's
// VF config on real igb VFs: a change waits while a VF of the PF is
// prepared (metric, nothing written); then 6 -> 0 -> 3 -> 5 -> 0, each new
// VF in the ResourceSlice without a restart and each removed one gone from
// it; a count above sriov_totalvfs is refused naming the PF and the limit.
// The first PF is never touched. The PF's 6 VFs are restored at the end.
func TestVFProvisioning(t *testing.T) {
	h := hostHandle(t)
	pfs := testbed(t)
	pf, other := pfs[1], pfs[0]
	orig, otherOrig := len(pf.VFs), len(other.VFs)
	t.Cleanup(func() {
		if numVFs(t, pf.PCI) != orig || len(pf.VFs) != orig {
			setNumVFsRaw(t, pf.PCI, orig)
		}
		if got := numVFs(t, other.PCI); got != otherOrig {
			t.Errorf("PF %s not selected, yet sriov_numvfs %d -> %d", other.PCI, otherOrig, got)
		}
	})

	cfgPath := filepath.Join(t.TempDir(), "vf-config.yaml")
	vfDriver := ""
	setCfg := func(n int) {
		t.Helper()
		// A different size each time too, so a coarse mtime cannot hide it.
		body := fmt.Sprintf("apiVersion: sriov.dra.dev/v1alpha1\nkind: NodeConfig\n# %s\npfs:\n- pciAddress: %s\n  numVfs: %d\n",
			strings.Repeat("x", n), pf.PCI, n)
		if vfDriver != "" {
			body += "  vfDriver: " + vfDriver + "\n"
		}
		if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setCfg(orig)
	var reg prometheus.Gatherer // the daemon's, once it runs
	pending := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "sriov_dra_vf_provisioning_pending" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}

	vf := pf.VFs[0]
	devName := inventory.DeviceName(vf.PCI)
	claim := vfClaim("prov", "5d0c1b2a-3e4f-4a5b-8c6d-7e8f9a0b1c2d", types.UID("a1b2c3d4-0000-4e5f-8a7b-9c0d1e2f3a4b"), devName,
		`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig"}`)
	n := startNode(t, h, claim, func(c *daemon.Config) { c.VFConfig = cfgPath })
	reg = n.dm.Metrics()
	n.published(devName)
	_, prepared := n.prepare(claim)

	// sliceVFs lists the published VF devices of the PF.
	sliceVFs := func() map[string]bool {
		out := map[string]bool{}
		l, err := n.api.ListSlices(n.ctx, metav1.ListOptions{})
		if err != nil {
			return out
		}
		for _, sl := range l.Items {
			for _, d := range sl.Spec.Devices {
				if a, ok := d.Attributes[inventory.AttrPFPCIAddress]; ok && a.StringValue != nil && *a.StringValue == pf.PCI && d.Name != inventory.DeviceName(pf.PCI) {
					out[d.Name] = true
				}
			}
		}
		return out
	}
	if got := len(sliceVFs()); got != orig {
		t.Fatalf("ResourceSlice lists %d VFs of %s, want %d (is the attribute name right?)", got, pf.PCI, orig)
	}

	// Refused while a VF is prepared.
	setCfg(0)
	waitFor(t, "vf_provisioning_pending 1", func() bool { return pending() == 1 })
	time.Sleep(3 * time.Second) // three polls
	if got := numVFs(t, pf.PCI); got != orig {
		t.Fatalf("sriov_numvfs %d -> %d while %s is prepared", orig, got, devName)
	}
	if err := n.unprepare(claim); err != nil {
		t.Fatal(err)
	}
	*prepared = false

	for _, want := range []int{0, 3, 5, 0} {
		setCfg(want)
		start := time.Now()
		waitFor(t, fmt.Sprintf("sriov_numvfs %d", want), func() bool { return numVFs(t, pf.PCI) == want })
		kernel := time.Since(start)
		links, _ := filepath.Glob(filepath.Join("/sys/bus/pci/devices", pf.PCI, "virtfn*"))
		if len(links) != want {
			t.Fatalf("%d virtfn links, want %d", len(links), want)
		}
		names := map[string]bool{}
		for _, l := range links {
			target, err := os.Readlink(l)
			if err != nil {
				t.Fatal(err)
			}
			names[inventory.DeviceName(filepath.Base(target))] = true
		}
		waitFor(t, fmt.Sprintf("the ResourceSlice to list the %d VFs of %s", want, pf.PCI), func() bool {
			got := sliceVFs()
			if len(got) != want {
				return false
			}
			for d := range names {
				if !got[d] {
					return false
				}
			}
			return true
		})
		t.Logf("numVfs %d: sriov_numvfs written %v after the config changed, ResourceSlice current %v after that",
			want, kernel.Round(time.Millisecond), (time.Since(start) - kernel).Round(time.Millisecond))
		if pending() != 0 {
			t.Errorf("vf_provisioning_pending = %v after applying %d", pending(), want)
		}
	}

	// With a VF driver: the new VFs are rebound to it (vfio-pci, loaded
	// by init.sh), and published; then back to none.
	vfDriver = "vfio-pci"
	setCfg(2)
	waitFor(t, "2 VFs of "+pf.PCI+" on vfio-pci", func() bool {
		links, _ := filepath.Glob(filepath.Join("/sys/bus/pci/devices", pf.PCI, "virtfn*"))
		if len(links) != 2 {
			return false
		}
		for _, l := range links {
			if readLink(t, filepath.Join(l, "driver")) != "vfio-pci" {
				return false
			}
		}
		return true
	})
	waitFor(t, "the ResourceSlice to list 2 VFs of "+pf.PCI, func() bool { return len(sliceVFs()) == 2 })
	vfDriver = ""
	setCfg(0)
	waitFor(t, "sriov_numvfs 0", func() bool { return numVFs(t, pf.PCI) == 0 })

	// Above sriov_totalvfs: an error naming the PF and the limit; nothing
	// written.
	total, err := strconv.Atoi(strings.TrimSpace(string(must(os.ReadFile(filepath.Join("/sys/bus/pci/devices", pf.PCI, "sriov_totalvfs"))))))
	if err != nil {
		t.Fatal(err)
	}
	setCfg(total + 1)
	time.Sleep(3 * time.Second)
	if got := numVFs(t, pf.PCI); got != 0 {
		t.Errorf("numVfs %d above the limit: sriov_numvfs became %d", total+1, got)
	}
	onHost, err := vfprov.ScanPFs("/")
	if err != nil {
		t.Fatal(err)
	}
	// The config as it is now (the daemon reads the file on its own).
	src, err := vfprov.NewSource(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	plan := vfprov.Plan("/", src.Config(), onHost, nil)
	if len(plan) != 1 || plan[0].State != vfprov.StateError ||
		!strings.Contains(plan[0].Reason, pf.PCI) || !strings.Contains(plan[0].Reason, fmt.Sprintf("sriov_totalvfs %d", total)) {
		t.Errorf("plan above the limit = %+v", plan)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
