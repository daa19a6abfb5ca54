package driver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/cdi"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// TestAttachMarkerMounts: every netdevice-mode device's CDI spec bind-mounts
// its attach marker from the host dir (read-only); vfio-pci devices, which
// never move into the pod netns, get none. Unprepare removes the markers
// of devices in no netns itself; a netdev the runtime kept is returned by
// the NRI plugin's DetachDevice (host.Detach), which removes its marker
// before it touches the netdev.
func TestAttachMarkerMounts(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	dir := e.useAttachMarks("/cluster/node-a/attached")
	e.restart()

	ib, eth, vfio := vfName(e, 0, 1), vfName(e, 1, 0), vfName(e, 1, 12)
	c := newClaim("u1", "p1",
		[]resourceapi.DeviceRequestAllocationResult{result("ib", ib), result("eth", eth), result("dpdk", vfio)},
		opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","driver":"vfio-pci"}`, "dpdk"),
	)
	if err := prepare(t, e.d, c)["u1"].Err; err != nil {
		t.Fatalf("prepare: %v", err)
	}
	e.cdi.mu.Lock()
	spec := e.cdi.specs["u1"]
	e.cdi.mu.Unlock()
	if len(spec) != 3 {
		t.Fatalf("CDI spec has %d devices, want 3", len(spec))
	}
	for _, tc := range []struct {
		dev  string
		want []cdi.Mount
	}{
		{ib, []cdi.Mount{{HostPath: "/cluster/node-a/attached/u1-" + ib, ContainerPath: "/run/sriov.dra.dev/attached/" + ib, Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}}}},
		{eth, []cdi.Mount{{HostPath: "/cluster/node-a/attached/u1-" + eth, ContainerPath: "/run/sriov.dra.dev/attached/" + eth, Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}}}},
		{vfio, nil},
	} {
		var got []cdi.Mount
		for _, d := range spec {
			if d.Name == tc.dev {
				got = d.Mounts
			}
		}
		if !mountsEqual(got, tc.want) {
			t.Errorf("device %s: mounts %+v, want %+v", tc.dev, got, tc.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("Prepare created markers: %v", ents)
	}

	// The NRI plugin attached both netdevs and created their markers; the
	// runtime never detached eth.
	for _, dev := range []string{ib, eth} {
		if err := e.marks.Create("u1", dev); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.d.State().Attaching("u1", eth, "/proc/42/ns/net", netattach.Original{IfName: "ens2f0v0", MAC: "02:00:5e:00:00:00", MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	if err := e.d.State().Attached("u1", eth, false); err != nil {
		t.Fatal(err)
	}

	// A marker that cannot be removed (a non-empty dir in its place) fails
	// Unprepare before the netdev is touched.
	stuck := filepath.Join(dir, "u1-"+eth)
	if err := os.Remove(stuck); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(stuck, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.j.take()
	err := unprepare(t, e.d, c)["u1"]
	if err == nil || !strings.Contains(err.Error(), "detach from pod netns: device "+eth+": remove attach marker") {
		t.Fatalf("unprepare with a stuck marker: %v", err)
	}
	for _, s := range e.j.take() {
		if strings.HasPrefix(s, "host.") {
			t.Errorf("unprepare with a stuck marker changed the host: %s", s)
		}
	}

	if err := os.RemoveAll(stuck); err != nil {
		t.Fatal(err)
	}
	if err := e.marks.Create("u1", eth); err != nil {
		t.Fatal(err)
	}
	if err := unprepare(t, e.d, c)["u1"]; err != nil {
		t.Fatalf("unprepare: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("markers left after Unprepare: %v", ents)
	}
	if steps := e.j.take(); len(steps) == 0 || steps[0] != "host.Detach /proc/42/ns/net net2->ens2f0v0" {
		t.Errorf("unprepare steps: %v", steps)
	}
}

func mountsEqual(a, b []cdi.Mount) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].HostPath != b[i].HostPath || a[i].ContainerPath != b[i].ContainerPath || strings.Join(a[i].Options, ",") != strings.Join(b[i].Options, ",") {
			return false
		}
	}
	return true
}
