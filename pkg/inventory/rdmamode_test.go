package inventory_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
)

// TestScanRDMANetnsMode: every scan that finds an RDMA device reports the
// RDMA netns mode as the kernel says it now; a node without RDMA devices
// does not ask, and a kernel that does not answer leaves it unknown.
func TestScanRDMANetnsMode(t *testing.T) {
	for _, tc := range []struct {
		name string
		topo sysfstest.Topology
		mode string // set in the fake; "" leaves its default (shared)
		fail bool
		want string
	}{
		{name: "shared", topo: sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.ConnectX6IB()}}, want: rdma.ModeShared},
		{name: "exclusive", topo: sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.ConnectX6IB()}}, mode: rdma.ModeExclusive, want: rdma.ModeExclusive},
		{name: "kernel does not say", topo: sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.ConnectX6IB()}}, fail: true, want: ""},
		{name: "no RDMA device", topo: sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.E810()}}, mode: rdma.ModeExclusive, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sysfstest.New(t, tc.topo)
			if tc.mode != "" {
				h.Netlink.SetRdmaNetnsMode(tc.mode)
			}
			if tc.fail {
				h.Netlink.FailMethod("RdmaSystemGetNetnsMode", "", unix.EOPNOTSUPP)
			}
			if got := scan(t, h, nil).RDMANetnsMode; got != tc.want {
				t.Errorf("RDMANetnsMode = %q, want %q", got, tc.want)
			}
			asked := slices.ContainsFunc(h.Netlink.Calls(), func(c nlinktest.Call) bool { return c.Method == "RdmaSystemGetNetnsMode" })
			if tc.want == "" && !tc.fail && asked {
				t.Error("asked the kernel for the RDMA netns mode on a node without RDMA devices")
			}
		})
	}
	// The mode is read again on the next scan, not remembered.
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.ConnectX6IB()}})
	if got := scan(t, h, nil).RDMANetnsMode; got != rdma.ModeShared {
		t.Fatalf("first scan: %q", got)
	}
	h.Netlink.SetRdmaNetnsMode(rdma.ModeExclusive)
	if got := scan(t, h, nil).RDMANetnsMode; got != rdma.ModeExclusive {
		t.Errorf("second scan after the mode changed: %q, want exclusive", got)
	}
}

// TestPortPKeys reads a VF's own port table, in table order, without the
// zero entries, and says which device lacks one.
func TestPortPKeys(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.ConnectX6IB(), sysfstest.E810()}})
	vf := h.Topology.PFs[0].VFs[1].PCIAddress
	dir := filepath.Join(h.Root, "sys", "bus", "pci", "devices", vf, "infiniband", "mlx5_2", "ports", "1", "pkeys")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, p := range []string{"0xffff", "0x0000", "0x8003", "0x0004", "0x0000"} {
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), []byte(p+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := inventory.PortPKeys(ktCtx(t), h.Root, vf)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"0xffff", "0x8003", "0x0004"}; !slices.Equal(got, want) {
		t.Errorf("PortPKeys = %v, want %v", got, want)
	}

	eth := h.Topology.PFs[1].VFs[0].PCIAddress
	if _, err := inventory.PortPKeys(ktCtx(t), h.Root, eth); err == nil || !strings.Contains(err.Error(), eth) {
		t.Errorf("PortPKeys of a VF without RDMA device: %v, want an error naming %s", err, eth)
	}
}
