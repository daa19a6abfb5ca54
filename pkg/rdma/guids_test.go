package rdma

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/hw"
)

func TestGUIDs(t *testing.T) {
	guid := func(s string) hw.GUID {
		g, err := hw.ParseGUID(s)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	// An IB PF (mlx5_0) with two VFs (mlx5_1, mlx5_2), and soft-RoCE on
	// an Ethernet VF: every RDMA device of the node, whatever its parent.
	topo := func() sysfstest.Topology {
		ib, eth := sysfstest.ConnectX6IB(), sysfstest.E810()
		ib.VFs, eth.VFs = ib.VFs[:2], eth.VFs[:1]
		return sysfstest.Topology{PFs: []sysfstest.PF{ib, eth}, SoftRDMA: []sysfstest.SoftRDMA{{Name: "rxe0", Netdev: "ens2f0v0"}}}
	}
	node := []GUIDUse{
		{Device: "mlx5_0", GUID: guid("0c:42:a1:03:00:ab:cd:00")},
		{Device: "mlx5_0", Port: 1, GUID: guid("0c:42:a1:03:00:ab:cd:00")},
		{Device: "mlx5_1", GUID: guid("0c:42:a1:03:00:ab:cd:10")},
		{Device: "mlx5_1", Port: 1, GUID: guid("0c:42:a1:03:00:ab:ce:10")},
		{Device: "mlx5_2", GUID: guid("0c:42:a1:03:00:ab:cd:11")},
		{Device: "mlx5_2", Port: 1, GUID: guid("0c:42:a1:03:00:ab:ce:11")},
		// RoCE: the node GUID only, GID 0 is the MAC's EUI-64.
		{Device: "rxe0", GUID: guid("00:00:5e:ff:fe:00:00:00")},
	}
	write := func(t *testing.T, root, rel, content string) {
		t.Helper()
		p := filepath.Join(root, "sys/class/infiniband", rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		edit    func(t *testing.T, root string) // after the topology is built
		want    []GUIDUse
		wantErr string
	}{
		{name: "every device, its node GUID and its InfiniBand ports' GUIDs", want: node},
		{
			name: "a second port, in number order; a port without link_layer counts as InfiniBand",
			edit: func(t *testing.T, root string) {
				write(t, root, "mlx5_2/ports/10/gids/0", "fe80:0000:0000:0000:0c42:a103:00ab:cf11\n")
				write(t, root, "mlx5_2/ports/2/gids/0", "fe80:0000:0000:0000:0c42:a103:00ab:cf12\n")
				write(t, root, "mlx5_2/ports/2/link_layer", "InfiniBand\n")
			},
			want: append(append(append([]GUIDUse{}, node[:6]...),
				GUIDUse{Device: "mlx5_2", Port: 2, GUID: guid("0c:42:a1:03:00:ab:cf:12")},
				GUIDUse{Device: "mlx5_2", Port: 10, GUID: guid("0c:42:a1:03:00:ab:cf:11")}), node[6]),
		},
		{
			name: "unset (all-zero) and missing GUIDs are left out",
			edit: func(t *testing.T, root string) {
				write(t, root, "mlx5_1/node_guid", "0000:0000:0000:0000\n")
				if err := os.Remove(filepath.Join(root, "sys/class/infiniband/mlx5_2/ports/1/gids/0")); err != nil {
					t.Fatal(err)
				}
			},
			want: []GUIDUse{node[0], node[1], node[3], node[4], node[6]},
		},
		{
			name:    "a malformed node GUID is an error naming the file",
			edit:    func(t *testing.T, root string) { write(t, root, "mlx5_1/node_guid", "0c42:a103\n") },
			wantErr: "mlx5_1/node_guid",
		},
		{
			name:    "a malformed GID is an error naming the file",
			edit:    func(t *testing.T, root string) { write(t, root, "mlx5_0/ports/1/gids/0", "fe80::1\n") },
			wantErr: "mlx5_0/ports/1/gids/0",
		},
		{
			name: "no RDMA class at all: none",
			edit: func(t *testing.T, root string) {
				if err := os.RemoveAll(filepath.Join(root, "sys/class/infiniband")); err != nil {
					t.Fatal(err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sysfstest.New(t, topo())
			if tc.edit != nil {
				tc.edit(t, h.Root)
			}
			got, err := GUIDs(h.Root)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to name %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("GUIDs =\n%v\nwant\n%v", got, tc.want)
			}
		})
	}
}

func TestGUIDUseHolder(t *testing.T) {
	for _, tc := range []struct {
		use  GUIDUse
		want string
	}{
		{GUIDUse{Device: "mlx5_3"}, "InfiniBand device mlx5_3 (node GUID)"},
		{GUIDUse{Device: "mlx5_3", Port: 1}, "InfiniBand device mlx5_3 port 1"},
	} {
		if got := tc.use.Holder(); got != tc.want {
			t.Errorf("Holder() = %q, want %q", got, tc.want)
		}
	}
}
