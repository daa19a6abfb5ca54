package rdma

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

const pci = "0000:3b:00.2"

func mkdirs(t *testing.T, root string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDevicesAndCharDevices(t *testing.T) {
	dev := filepath.Join("sys/bus/pci/devices", pci)
	for _, tc := range []struct {
		name     string
		dirs     []string
		wantDev  string
		wantChar []string
	}{
		{name: "no RDMA", dirs: []string{dev}},
		{
			name: "IB VF with rdma_cm",
			dirs: []string{dev + "/infiniband/mlx5_3", dev + "/infiniband_verbs/uverbs3",
				dev + "/infiniband_mad/umad3", dev + "/infiniband_mad/issm3", "sys/class/misc/rdma_cm"},
			wantDev:  "mlx5_3",
			wantChar: []string{"/dev/infiniband/uverbs3", "/dev/infiniband/issm3", "/dev/infiniband/umad3", "/dev/infiniband/rdma_cm"},
		},
		{
			name:     "RoCE VF without rdma_cm",
			dirs:     []string{dev + "/infiniband/mlx5_4", dev + "/infiniband_verbs/uverbs4"},
			wantDev:  "mlx5_4",
			wantChar: []string{"/dev/infiniband/uverbs4"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			mkdirs(t, root, tc.dirs...)
			d, err := Device(root, pci)
			if err != nil || d != tc.wantDev {
				t.Errorf("Device = %q, %v; want %q", d, err, tc.wantDev)
			}
			c, err := CharDevices(root, pci)
			if err != nil || !reflect.DeepEqual(c, tc.wantChar) {
				t.Errorf("CharDevices = %v, %v; want %v", c, err, tc.wantChar)
			}
		})
	}
}

func TestNetnsMode(t *testing.T) {
	f := nlinktest.New()
	f.SetRdmaNetnsMode(ModeExclusive)
	if m, err := NetnsMode(f); err != nil || m != ModeExclusive {
		t.Errorf("NetnsMode = %q, %v", m, err)
	}
	f.FailMethod("RdmaSystemGetNetnsMode", "", unix.EOPNOTSUPP)
	if _, err := NetnsMode(f); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("err = %v", err)
	}
}

func TestMove(t *testing.T) {
	ctx := context.Background()
	nsPath := filepath.Join(t.TempDir(), "netns") // any openable file stands in
	if err := os.WriteFile(nsPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	host, pod := nlinktest.New(), nlinktest.New()
	host.AddRdmaLink("mlx5_3", 3)

	if err := Move(ctx, host, "mlx5_3", nsPath, pod); err != nil {
		t.Fatal(err)
	}
	if _, err := host.RdmaLinkByName("mlx5_3"); err == nil {
		t.Error("still on the host after Move")
	}
	m := host.MutatingCalls()
	if len(m) != 1 || m[0].Method != "RdmaLinkSetNsFd" || !strings.HasPrefix(m[0].Args, "mlx5_3,") {
		t.Errorf("calls %v", m)
	}
	// The fake does not carry it over; put it in the pod as the kernel would.
	pod.AddRdmaLink("mlx5_3", 3)
	// Again: already there, success without a call.
	host.ResetCalls()
	if err := Move(ctx, host, "mlx5_3", nsPath, pod); err != nil {
		t.Errorf("second Move: %v", err)
	}
	if m := host.MutatingCalls(); len(m) != 0 {
		t.Errorf("second Move made calls %v", m)
	}
	// Shared mode: the kernel refuses with EOPNOTSUPP; the error says why.
	host.AddRdmaLink("mlx5_4", 4)
	host.FailMethod("RdmaLinkSetNsFd", "", unix.EOPNOTSUPP)
	if err := Move(ctx, host, "mlx5_4", nsPath, nil); err == nil || !strings.Contains(err.Error(), "exclusive") {
		t.Errorf("Move in shared mode: err = %v", err)
	}
	// Unknown device, nowhere.
	if err := Move(ctx, host, "mlx5_9", nsPath, pod); err == nil {
		t.Error("Move of an unknown device succeeded")
	}
	if err := Move(ctx, host, "", nsPath, pod); err == nil {
		t.Error("Move without a name succeeded")
	}
}

func TestSharedFixture(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.ConnectX6IB()}})
	vf := h.Topology.PFs[0].VFs[2]
	d, err := Device(h.Root, vf.PCIAddress)
	if err != nil || d != vf.RDMADevice {
		t.Errorf("Device = %q, %v; want %s", d, err, vf.RDMADevice)
	}
	c, err := CharDevices(h.Root, vf.PCIAddress)
	if err != nil || len(c) < 2 || !strings.HasPrefix(c[0], "/dev/infiniband/uverbs") || c[len(c)-1] != "/dev/infiniband/rdma_cm" {
		t.Errorf("CharDevices = %v, %v", c, err)
	}
}

// TestNetdevBound: software RDMA devices (rxe, siw) have no PCI parent;
// Devices and CharDevices find them through the function's netdev, after
// the function's own devices.
func TestNetdevBound(t *testing.T) {
	e810, cx6 := sysfstest.E810(), sysfstest.ConnectX6IB()
	for _, tc := range []struct {
		name string
		pfs  []sysfstest.PF
		soft []sysfstest.SoftRDMA
		mod  func(t *testing.T, h *sysfstest.Fixture)
		vf   [2]int // PF, VF index of the function asked about
		devs []string
		char []string
	}{
		{
			name: "iavf VF without RDMA",
			pfs:  []sysfstest.PF{e810},
		},
		{
			name: "rxe on an iavf VF",
			pfs:  []sysfstest.PF{e810},
			soft: []sysfstest.SoftRDMA{{Name: "rxe0", Netdev: "ens2f0v2"}},
			vf:   [2]int{0, 2},
			devs: []string{"rxe0"},
			char: []string{"/dev/infiniband/uverbs0", "/dev/infiniband/rdma_cm"},
		},
		{
			name: "rxe on another VF and on the PF: not this VF's",
			pfs:  []sysfstest.PF{e810},
			soft: []sysfstest.SoftRDMA{{Name: "rxe0", Netdev: "ens2f0v3"}, {Name: "rxe1", Netdev: "ens2f0"}},
			vf:   [2]int{0, 2},
		},
		{
			name: "two on one VF, with a MAD device",
			pfs:  []sysfstest.PF{e810},
			soft: []sysfstest.SoftRDMA{{Name: "rxe_b", Netdev: "ens2f0v1"}, {Name: "siw_a", Netdev: "ens2f0v1", Type: sysfstest.SoftRDMASIW}},
			mod: func(t *testing.T, h *sysfstest.Fixture) {
				mad := h.SysPath("devices/virtual/infiniband_mad/umad0")
				mkdirs(t, "/", mad)
				if err := os.WriteFile(filepath.Join(mad, "ibdev"), []byte("rxe_b\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				mkdirs(t, "/", h.SysPath("class/infiniband_mad"))
				if err := os.Symlink("../../devices/virtual/infiniband_mad/umad0", h.SysPath("class/infiniband_mad/umad0")); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(h.SysPath("class/infiniband_mad/abi_version"), []byte("5\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(h.Root, "dev/infiniband/umad0"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			vf:   [2]int{0, 1},
			devs: []string{"rxe_b", "siw_a"},
			char: []string{"/dev/infiniband/uverbs0", "/dev/infiniband/uverbs1", "/dev/infiniband/umad0", "/dev/infiniband/rdma_cm"},
		},
		{
			name: "siw after the VF's own mlx5 device",
			pfs:  []sysfstest.PF{cx6},
			soft: []sysfstest.SoftRDMA{{Name: "siw0", Netdev: "ibp59s0f0v1", Type: sysfstest.SoftRDMASIW}},
			vf:   [2]int{0, 1},
			devs: []string{"mlx5_2", "siw0"},
			char: []string{"/dev/infiniband/uverbs2", "/dev/infiniband/uverbs9", "/dev/infiniband/rdma_cm"},
		},
		{
			name: "rxe without parent attribute: GID 0's netdev",
			pfs:  []sysfstest.PF{e810},
			soft: []sysfstest.SoftRDMA{{Name: "rxe0", Netdev: "ens2f0v2"}},
			mod: func(t *testing.T, h *sysfstest.Fixture) {
				if err := os.Remove(h.SysPath("devices/virtual/infiniband/rxe0/parent")); err != nil {
					t.Fatal(err)
				}
			},
			vf:   [2]int{0, 2},
			devs: []string{"rxe0"},
			char: []string{"/dev/infiniband/uverbs0", "/dev/infiniband/rdma_cm"},
		},
		{
			name: "neither parent nor GID netdev",
			pfs:  []sysfstest.PF{e810},
			soft: []sysfstest.SoftRDMA{{Name: "rxe0", Netdev: "ens2f0v2"}},
			mod: func(t *testing.T, h *sysfstest.Fixture) {
				for _, f := range []string{"parent", "ports/1/gid_attrs/ndevs/0"} {
					if err := os.Remove(h.SysPath("devices/virtual/infiniband/rxe0", f)); err != nil {
						t.Fatal(err)
					}
				}
			},
			vf: [2]int{0, 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sysfstest.New(t, sysfstest.Topology{PFs: tc.pfs, SoftRDMA: tc.soft})
			if tc.mod != nil {
				tc.mod(t, h)
			}
			pci := h.Topology.PFs[tc.vf[0]].VFs[tc.vf[1]].PCIAddress
			d, err := Devices(h.Root, pci)
			if err != nil || !reflect.DeepEqual(d, tc.devs) {
				t.Errorf("Devices(%s) = %v, %v; want %v", pci, d, err, tc.devs)
			}
			c, err := CharDevices(h.Root, pci)
			if err != nil || !reflect.DeepEqual(c, tc.char) {
				t.Errorf("CharDevices(%s) = %v, %v; want %v", pci, c, err, tc.char)
			}
			for _, p := range c {
				if _, err := os.Stat(filepath.Join(h.Root, p)); err != nil {
					t.Errorf("reported %s: %v", p, err)
				}
			}
		})
	}
}

// TestMoveInterruptedDump: finding the RDMA device is a dump of every RDMA
// device; one interrupted by a concurrent change (NLM_F_DUMP_INTR) is sent
// again, so it does not fail the pod's attach. Only a dump interrupted on
// every try fails, and then nothing moved.
func TestMoveInterruptedDump(t *testing.T) {
	ctx := context.Background()
	nsPath := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(nsPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		interrupts int
		wantErr    bool
	}{
		{interrupts: 1},
		{interrupts: nlink.DumpTries - 1},
		{interrupts: nlink.DumpTries, wantErr: true},
	} {
		host := nlinktest.New()
		host.AddRdmaLink("mlx5_3", 3)
		host.InterruptDumps("RdmaLinkByName", tc.interrupts)
		err := Move(ctx, host, "mlx5_3", nsPath, nil)
		moved := len(host.MutatingCalls()) == 1
		if tc.wantErr {
			if !errors.Is(err, netlink.ErrDumpInterrupted) || !strings.Contains(err.Error(), "mlx5_3") || moved {
				t.Errorf("%d interrupts: err %v, moved %v; want an interrupted-dump error naming mlx5_3 and no move", tc.interrupts, err, moved)
			}
			continue
		}
		if err != nil || !moved {
			t.Errorf("%d interrupts: err %v, moved %v; want the device moved", tc.interrupts, err, moved)
		}
	}
}
