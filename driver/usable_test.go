package driver

import (
	"context"
	"slices"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/client-go/tools/events"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
)

// withEvents rebuilds the env's driver with a fake event recorder.
func withEvents(t *testing.T, e *env) *events.FakeRecorder {
	t.Helper()
	rec := events.NewFakeRecorder(10)
	cfg := e.config()
	cfg.Events = rec
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	e.j.take()
	return rec
}

func takeEvent(t *testing.T, rec *events.FakeRecorder) string {
	t.Helper()
	select {
	case ev := <-rec.Events:
		return ev
	default:
		t.Fatal("no Warning event on the claim")
		return ""
	}
}

// refused checks the outcome err of a Prepare: with want nil it must
// have succeeded (refused returns false); otherwise it must have failed
// with an error and a Warning event on the claim that each name every
// string of want and of alsoNamed (refused returns true).
func refused(t *testing.T, rec *events.FakeRecorder, err error, want []string, alsoNamed ...string) bool {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("prepare: %v", err)
		}
		return false
	}
	if err == nil {
		t.Fatal("prepare succeeded")
	}
	ev := takeEvent(t, rec)
	for _, w := range append(slices.Clone(want), alsoNamed...) {
		if !strings.Contains(err.Error(), w) || !strings.Contains(ev, w) {
			t.Errorf("error %q / event %q lack %q", err, ev, w)
		}
	}
	return true
}

// TestPrepareRefusesWhatCannotWork: a config the device cannot carry out
// as it is (no netdev for driver netdevice, no RDMA device or a shared
// RDMA netns mode for rdmaIsolation) fails Prepare with the device and
// the field named in the error and the claim's Warning event, before
// anything on the host changes.
func TestPrepareRefusesWhatCannotWork(t *testing.T) {
	const vfc = `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig"`
	topo := sysfstest.Standard()
	e810 := &topo.PFs[1]
	e810.VFs[13].Driver = "" // unbound: no driver, no netdev
	e810.VFs[11].IfName = "" // iavf bound, netdev gone
	e810.VFs[11].Driver = "iavf"
	for _, tc := range []struct {
		name   string
		pf, vf int
		mode   string // RDMA netns mode; "" keeps the fixture's shared
		config string
		want   []string // nil: Prepare succeeds
	}{
		{name: "default driver on a vfio-pci VF", pf: 1, vf: 12, config: vfc + `}`,
			want: []string{"config field driver", "has none: it is bound to vfio-pci", "driver: vfio-pci"}},
		{name: "explicit netdevice on a vfio-pci VF", pf: 1, vf: 12, config: vfc + `,"driver":"netdevice"}`,
			want: []string{"config field driver", "bound to vfio-pci"}},
		{name: "vfio-pci on a vfio-pci VF", pf: 1, vf: 12, config: vfc + `,"driver":"vfio-pci"}`},
		{name: "netdevice on an unbound VF", pf: 1, vf: 13, config: vfc + `}`,
			want: []string{"config field driver", "bound to no driver"}},
		{name: "netdevice on a VF whose netdev vanished", pf: 1, vf: 11, config: vfc + `}`,
			want: []string{"config field driver", "its driver iavf shows no network interface"}},
		{name: "rdmaIsolation without an RDMA device", pf: 1, vf: 0, mode: rdma.ModeExclusive, config: vfc + `,"rdmaIsolation":true}`,
			want: []string{"config field rdmaIsolation", "has no RDMA device"}},
		{name: "rdmaIsolation in shared mode", pf: 0, vf: 2, config: vfc + `,"rdmaIsolation":true}`,
			want: []string{"config field rdmaIsolation", "RDMA device mlx5_3", "the mode is shared"}},
		{name: "rdmaIsolation in exclusive mode", pf: 0, vf: 2, mode: rdma.ModeExclusive, config: vfc + `,"rdmaIsolation":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, topo)
			if tc.mode != "" {
				e.fix.Netlink.SetRdmaNetnsMode(tc.mode)
			}
			rec := withEvents(t, e)
			dev := vfName(e, tc.pf, tc.vf)
			c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("net", dev)}, opaque(tc.config))
			err := prepare(t, e.d, c)["u1"].Err
			steps := e.j.take()
			if !refused(t, rec, err, tc.want, dev) {
				return
			}
			if len(steps) != 0 {
				t.Errorf("refused claim reached the host or the checkpoint: %v", steps)
			}
			if len(e.d.State().Claims()) != 0 {
				t.Error("refused claim was recorded")
			}
		})
	}
}

// TestRDMANetnsModeFollowsScans: the mode is read again with every scan,
// so a node switched to exclusive mode takes rdmaIsolation claims without
// a restart of the daemon.
func TestRDMANetnsModeFollowsScans(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	dev := vfName(e, 0, 2)
	cfg := opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","rdmaIsolation":true}`)
	if err := prepare(t, e.d, newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("net", dev)}, cfg))["u1"].Err; err == nil {
		t.Fatal("prepared in shared mode")
	}
	e.fix.Netlink.SetRdmaNetnsMode(rdma.ModeExclusive)
	if _, err := e.d.scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := prepare(t, e.d, newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("net", dev)}, cfg))["u1"].Err; err != nil {
		t.Fatalf("after the switch to exclusive: %v", err)
	}
}

// TestPKeyCheckedAfterGUIDChange: with a GUID change the pkey is checked
// against the table the port has after it (the table belongs to the port
// GUID), and a partition missing there rolls the GUID back; without one,
// the pre-flight check against the inventory's table still refuses
// before anything changes.
func TestPKeyCheckedAfterGUIDChange(t *testing.T) {
	const vfc = `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig"`
	// The PF's table (the pre-flight's) is [0xffff 0x8001 0x8002].
	for _, tc := range []struct {
		name      string
		config    string
		after     []string // the VF port's table after SetGUID; nil: none
		want      []string // nil: success
		wantSteps []string // host steps, in order (prefixes)
	}{
		{name: "partition only for the new GUID", config: vfc + `,"guid":"auto","pkey":"0x8003"}`, after: []string{"0xffff", "0x8003"},
			wantSteps: []string{"host.Snapshot", "host.SetGUID", "host.PKeys", "host.CDIInfo", "cdi.Write"}},
		{name: "partition of the old GUID, not of the new one", config: vfc + `,"guid":"auto","pkey":"0x8001"}`, after: []string{"0xffff", "0x8002"},
			want:      []string{"config field pkey", "after setting GUID", "pkey 0x8001 is not in the port's pkey table [0xffff 0x8002]"},
			wantSteps: []string{"host.Snapshot", "host.SetGUID", "host.PKeys", "host.RestoreGUID"}},
		{name: "limited entry for the new GUID", config: vfc + `,"guid":"02:00:00:00:00:00:00:07","pkey":"0x8001"}`, after: []string{"0x0001"},
			want:      []string{"config field pkey", "asks for full membership"},
			wantSteps: []string{"host.Snapshot", "host.SetGUID", "host.PKeys", "host.RestoreGUID"}},
		{name: "default partition needs no table", config: vfc + `,"guid":"auto","pkey":"0xffff"}`,
			wantSteps: []string{"host.Snapshot", "host.SetGUID", "host.CDIInfo", "cdi.Write"}},
		{name: "no GUID change: pre-flight refuses", config: vfc + `,"pkey":"0x8003"}`,
			want: []string{"config field pkey", "not in the port's pkey table [0xffff 0x8001 0x8002]"}},
		{name: "no GUID change: pre-flight passes", config: vfc + `,"pkey":"0x8002"}`,
			wantSteps: []string{"host.Snapshot", "host.CDIInfo", "cdi.Write"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, sysfstest.Standard())
			rec := withEvents(t, e)
			dev := vfName(e, 0, 2)
			if tc.after != nil {
				e.kernel.pkeys = map[string][]string{pci(dev): tc.after}
			}
			c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("ib", dev)}, opaque(tc.config))
			err := prepare(t, e.d, c)["u1"].Err
			var steps []string
			for _, s := range e.j.take() {
				if !strings.HasPrefix(s, "store.") && !strings.HasPrefix(s, "status.") {
					steps = append(steps, strings.Fields(s)[0])
				}
			}
			if !slices.Equal(steps, tc.wantSteps) {
				t.Errorf("steps = %v, want %v", steps, tc.wantSteps)
			}
			if !refused(t, rec, err, tc.want, dev) {
				return
			}
			if len(e.d.State().Claims()) != 0 {
				t.Error("refused claim stayed recorded")
			}
		})
	}
}
