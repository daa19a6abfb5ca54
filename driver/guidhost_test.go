package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
)

// guidCountingKernel counts the reads of the node's RDMA GUIDs.
type guidCountingKernel struct {
	*fakeKernel
	reads atomic.Int32
}

func (k *guidCountingKernel) RDMAGUIDs(ctx context.Context) ([]rdma.GUIDUse, error) {
	k.reads.Add(1)
	return k.fakeKernel.RDMAGUIDs(ctx)
}

// guidHostEnv is the ConnectX-6 IB PF with its VFs plus RDMA devices the
// inventory does not hold: a second InfiniBand HCA without SR-IOV (mlx5_9)
// and soft-RoCE (rxe0) on an Ethernet NIC without SR-IOV. Its driver
// counts the reads of the node's RDMA GUIDs.
func guidHostEnv(t *testing.T) (*env, *guidCountingKernel) {
	t.Helper()
	hca := sysfstest.PF{
		PCIAddress: "0000:d8:00.0", Vendor: "15b3", DeviceID: "1017", Driver: "mlx5_core",
		IfName: "ibp216s0", LinkType: sysfstest.ARPHRDInfiniBand, RDMADevice: "mlx5_9",
		NodeGUID: "0c:42:a1:03:00:77:00:00", PortGUID: "0c:42:a1:03:00:77:00:01", PKeys: []string{"0xffff"},
	}
	nic := sysfstest.PF{PCIAddress: "0000:86:00.0", Vendor: "8086", DeviceID: "1563", Driver: "ixgbe", IfName: "ens7f0", MAC: "02:11:22:33:44:55"}
	e := newEnv(t, sysfstest.Topology{
		PFs:      []sysfstest.PF{sysfstest.ConnectX6IB(), hca, nic},
		SoftRDMA: []sysfstest.SoftRDMA{{Name: "rxe0", Netdev: "ens7f0"}},
	})
	// Without sriov_totalvfs they are no SR-IOV PFs: not in the inventory.
	for _, pci := range []string{hca.PCIAddress, nic.PCIAddress} {
		if err := os.Remove(filepath.Join(e.fix.DevicePath(pci), "sriov_totalvfs")); err != nil {
			t.Fatal(err)
		}
	}
	// VF 7 has no GUID the PF reports, only one its RDMA device shows.
	if err := os.WriteFile(e.fix.SysPath("class/infiniband/mlx5_8/node_guid"), []byte("0c42:a103:00ab:cd17\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &guidCountingKernel{fakeKernel: e.kernel}
	cfg := e.config()
	cfg.Kernel = k
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	e.j.take()
	for _, name := range []string{"pci-0000-d8-00-0", "pci-0000-86-00-0"} {
		if _, ok := e.d.inventory().Find(name); ok {
			t.Fatalf("%s is in the inventory; the test needs it outside", name)
		}
	}
	return e, k
}

// TestGUIDOfAnotherRDMADeviceRefused: a guid that an RDMA device outside
// the inventory carries (another HCA's node or port GUID, a software RDMA
// device's) is refused at Prepare, naming the field and the holder, with
// nothing changed on the host; the RDMA devices of the inventory's own
// devices are theirs (a VF keeps its own GUID). A claim without a guid
// reads nothing more.
func TestGUIDOfAnotherRDMADeviceRefused(t *testing.T) {
	e, k := guidHostEnv(t)
	vf := func(i int) string { return vfName(e, 0, i) }
	for _, tc := range []struct {
		name string
		dev  string
		guid string // "" sets none
		want string // "" prepares
	}{
		{name: "another HCA's port GUID", dev: vf(6), guid: "0c:42:a1:03:00:77:00:01",
			want: "config field guid: GUID 0c:42:a1:03:00:77:00:01 is held by InfiniBand device mlx5_9 port 1"},
		{name: "another HCA's node GUID, other spelling", dev: vf(6), guid: "0C-42-A1-03-00-77-00-00",
			want: "config field guid: GUID 0c:42:a1:03:00:77:00:00 is held by InfiniBand device mlx5_9 (node GUID)"},
		{name: "a software RDMA device's node GUID", dev: vf(6), guid: "00:11:22:ff:fe:33:44:55",
			want: "config field guid: GUID 00:11:22:ff:fe:33:44:55 is held by InfiniBand device rxe0 (node GUID)"},
		{name: "a GUID only another VF's RDMA device shows", dev: vf(6), guid: "0c:42:a1:03:00:ab:cd:17",
			want: "is held by device " + vf(7)},
		{name: "the GUID the VF's own RDMA device shows (a retry)", dev: vf(7), guid: "0c:42:a1:03:00:ab:cd:17"},
		{name: "a GUID nobody holds", dev: vf(6), guid: "0c:42:a1:03:00:77:00:02"},
		{name: "guid auto", dev: vf(6), guid: "auto"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := k.reads.Load()
			c := newClaim("ug", "pg", []resourceapi.DeviceRequestAllocationResult{result("ib", tc.dev)},
				opaque(vfCfg+`,"guid":"`+tc.guid+`"}`))
			err := prepare(t, e.d, c)["ug"].Err
			if got := k.reads.Load() - before; got != 1 {
				t.Errorf("the node's RDMA GUIDs were read %d times, want once", got)
			}
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if err := unprepare(t, e.d, c)["ug"]; err != nil {
					t.Fatal(err)
				}
				e.j.take()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if steps := e.j.take(); len(steps) != 0 {
				t.Errorf("refused claim reached the host: %v", steps)
			}
			if _, ok := e.d.State().Claim("ug"); ok {
				t.Error("refused claim recorded")
			}
		})
	}

	t.Run("no guid: nothing more is read", func(t *testing.T) {
		before := k.reads.Load()
		c := newClaim("un", "pn", []resourceapi.DeviceRequestAllocationResult{result("ib", vf(6))}, opaque(vfCfg+`}`))
		if err := prepare(t, e.d, c)["un"].Err; err != nil {
			t.Fatal(err)
		}
		if got := k.reads.Load() - before; got != 0 {
			t.Errorf("the node's RDMA GUIDs were read %d times for a claim without guid", got)
		}
		if err := unprepare(t, e.d, c)["un"]; err != nil {
			t.Fatal(err)
		}
		e.j.take()
	})

	t.Run("unreadable GUIDs: refused, not taken as none", func(t *testing.T) {
		p := e.fix.SysPath("class/infiniband/mlx5_9/node_guid")
		if err := os.WriteFile(p, []byte("garbled\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		c := newClaim("ur", "pr", []resourceapi.DeviceRequestAllocationResult{result("ib", vf(6))}, opaque(vfCfg+`,"guid":"0c:42:a1:03:00:77:00:02"}`))
		err := prepare(t, e.d, c)["ur"].Err
		for _, w := range []string{"config field guid", "read the GUIDs of the node's RDMA devices", "mlx5_9/node_guid"} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("err = %v, want it to contain %q", err, w)
			}
		}
		if steps := e.j.take(); len(steps) != 0 {
			t.Errorf("refused claim reached the host: %v", steps)
		}
	})
}
