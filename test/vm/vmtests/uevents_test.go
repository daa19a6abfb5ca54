//go:build vmtest

package vmtests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sriov-dra/sriov-dra/daemon"
	"github.com/sriov-dra/sriov-dra/pkg/hwevents"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// countingScanner is inventory.Scanner counting full and PF rescans.
type countingScanner struct {
	inventory.Scanner
	mu            sync.Mutex
	full, partial int
}

func (c *countingScanner) Scan(ctx context.Context) (*inventory.Inventory, error) {
	c.mu.Lock()
	c.full++
	c.mu.Unlock()
	return c.Scanner.Scan(ctx)
}

func (c *countingScanner) ScanPFs(ctx context.Context, prev *inventory.Inventory, pfs []string) (*inventory.Inventory, error) {
	c.mu.Lock()
	c.partial++
	c.mu.Unlock()
	return c.Scanner.ScanPFs(ctx, prev, pfs)
}

func (c *countingScanner) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.full, c.partial
}

// TestNumVFsChangeByUevents: with the kernel's uevents and link events as
// the device event source and no full rescan meanwhile, a
// sriov_numvfs write on a real igb PF is in the ResourceSlice within 1 s
// of the write returning, through rescans of that PF only. The first PF
// is not touched; the second gets its VF count back at the end.
func TestNumVFsChangeByUevents(t *testing.T) {
	h := hostHandle(t)
	pfs := testbed(t)
	pf, other := pfs[1], pfs[0]
	orig, otherOrig := len(pf.VFs), len(other.VFs)
	t.Cleanup(func() {
		if numVFs(t, pf.PCI) != orig {
			setNumVFsRaw(t, pf.PCI, orig)
		}
		if got := numVFs(t, other.PCI); got != otherOrig {
			t.Errorf("PF %s not ours, yet sriov_numvfs %d -> %d", other.PCI, otherOrig, got)
		}
	})
	sc := &countingScanner{Scanner: inventory.Scanner{Options: inventory.Options{Root: "/", Netlink: h, AllowDefaultRoutePF: true}}}
	claim := vfClaim("uevents", "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b", types.UID("1a2b3c4d-0000-4e5f-8a7b-9c0d1e2f3a4c"),
		inventory.DeviceName(pf.VFs[0].PCI), `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig"}`)
	n := startNode(t, h, claim, func(c *daemon.Config) {
		// No full rescan in the test's time (the default is 1 min): the
		// events alone must carry every change.
		c.Scanner, c.DeviceEvents, c.PollInterval = sc, hwevents.Kernel{Links: true}, time.Hour
	})
	n.published(inventory.DeviceName(pf.VFs[0].PCI))

	sliceVFs := func() int {
		l, err := n.api.ListSlices(n.ctx, metav1.ListOptions{})
		if err != nil {
			return -1
		}
		c := 0
		for _, sl := range l.Items {
			for _, d := range sl.Spec.Devices {
				if a, ok := d.Attributes[inventory.AttrPFPCIAddress]; ok && a.StringValue != nil && *a.StringValue == pf.PCI && d.Name != inventory.DeviceName(pf.PCI) {
					c++
				}
			}
		}
		return c
	}
	if got := sliceVFs(); got != orig {
		t.Fatalf("ResourceSlice lists %d VFs of %s, want %d", got, pf.PCI, orig)
	}
	p := filepath.Join("/sys/bus/pci/devices", pf.PCI, "sriov_numvfs")
	for _, want := range []int{2, 0, orig} {
		full0, part0 := sc.counts()
		for _, v := range []int{0, want} {
			if numVFs(t, pf.PCI) == v {
				continue
			}
			if err := os.WriteFile(p, []byte(strconv.Itoa(v)), 0); err != nil {
				t.Fatalf("write %d to %s: %v", v, p, err)
			}
		}
		written := time.Now()
		for sliceVFs() != want {
			if time.Since(written) > waitShort {
				t.Fatalf("ResourceSlice lists %d VFs of %s %v after sriov_numvfs %d was written", sliceVFs(), pf.PCI, waitShort, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(written)
		full, part := sc.counts()
		t.Logf("sriov_numvfs %d: in the ResourceSlice %v after the write returned (%d PF rescans, %d full scans)",
			want, took.Round(time.Millisecond), part-part0, full-full0)
		if took > time.Second {
			t.Errorf("sriov_numvfs %d reached the ResourceSlice after %v, want within 1s", want, took.Round(time.Millisecond))
		}
		if full != full0 || part == part0 {
			t.Errorf("sriov_numvfs %d: %d full scans and %d PF rescans, want only PF rescans", want, full-full0, part-part0)
		}
		if want > 0 {
			// Let the VF netdevs appear (igbvf probes them after the
			// write) before the next change.
			waitFor(t, fmt.Sprintf("%d VF netdevs of %s", want, pf.PCI), func() bool {
				links, _ := filepath.Glob(filepath.Join("/sys/bus/pci/devices", pf.PCI, "virtfn*", "net", "*"))
				return len(links) == want
			})
		}
	}
}
