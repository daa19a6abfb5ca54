package rdma

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/Mellanox/rdmamap"

	"github.com/sriov-dra/sriov-dra/pkg/hw"
)

// GUIDUse is a GUID an RDMA device of the node carries: its node GUID
// (Port 0) or the port GUID of its InfiniBand port Port.
type GUIDUse struct {
	Device string // RDMA device, "mlx5_3"
	Port   int    // 0: the node GUID
	GUID   hw.GUID
}

// Holder names the use for an error: "InfiniBand device mlx5_3 port 1",
// "InfiniBand device mlx5_3 (node GUID)".
func (u GUIDUse) Holder() string {
	if u.Port == 0 {
		return "InfiniBand device " + u.Device + " (node GUID)"
	}
	return fmt.Sprintf("InfiniBand device %s port %d", u.Device, u.Port)
}

// GUIDs returns the GUIDs the RDMA devices of <root>/sys/class/infiniband
// carry, whatever their parent (an SR-IOV function or not, another HCA, a
// software device): each device's node GUID, and the port GUID of each of
// its InfiniBand ports, which sysfs shows as the interface ID (the low 64
// bits) of the port's GID 0. Ports of another link layer (RoCE, iWARP)
// have no port GUID: their GID 0 is made from the netdev's MAC. All-zero
// GUIDs (unset) are left out, and so are a device or attribute gone
// while it is read. In exclusive RDMA netns mode sysfs shows only the
// devices of the reader's netns. Anything else unreadable or malformed
// is an error: the caller checks GUIDs against these and must not take
// a partial list for a full one.
func GUIDs(root string) ([]GUIDUse, error) {
	class := filepath.Join(root, "sys/class", rdmamap.RdmaClassName)
	devs, err := names(class)
	if err != nil {
		return nil, fmt.Errorf("list RDMA devices in %s: %w", class, err)
	}
	var out []GUIDUse
	for _, d := range devs {
		dir := filepath.Join(class, d)
		g, ok, err := readGUID(filepath.Join(dir, "node_guid"), hw.ParseGUID)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, GUIDUse{Device: d, GUID: g})
		}
		ports, err := names(filepath.Join(dir, rdmamap.RdmaPortsdir))
		if err != nil {
			return nil, fmt.Errorf("list ports of RDMA device %s: %w", d, err)
		}
		for _, p := range portNumbers(ports) {
			pdir := filepath.Join(dir, rdmamap.RdmaPortsdir, strconv.Itoa(p))
			layer, err := os.ReadFile(filepath.Join(pdir, "link_layer"))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("RDMA device %s port %d: %w", d, p, err)
			}
			if err == nil && strings.TrimSpace(string(layer)) != "InfiniBand" {
				continue
			}
			g, ok, err := readGUID(filepath.Join(pdir, "gids", "0"), hw.GUIDFromGID)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, GUIDUse{Device: d, Port: p, GUID: g})
			}
		}
	}
	return out, nil
}

// readGUID reads a GUID attribute with parse; ok is false when the file is
// gone or the GUID all zeros.
func readGUID(path string, parse func(string) (hw.GUID, error)) (hw.GUID, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return hw.GUID{}, false, nil
	}
	if err != nil {
		return hw.GUID{}, false, err
	}
	g, err := parse(strings.TrimSpace(string(b)))
	if err != nil {
		return hw.GUID{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return g, !g.IsZero(), nil
}

// portNumbers are the numeric entries of a ports/ folder, in order (names
// sorts them as strings).
func portNumbers(entries []string) []int {
	var out []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
