package vfconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/hw"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

const (
	pfPCI = "0000:3b:00.0"
	vfPCI = "0000:3b:00.3"
	pfIf  = "ens1f0"
)

func ptr[T any](v T) *T { return &v }

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

var drivers = []string{"mlx5_core", "vfio-pci"}

type env struct {
	fx   *fixture
	fake *nlinktest.Fake
	dev  inventory.Device
	k    *kernel
}

// newEnv is a PF with VF 0 and VF 1; VF 1 is the device under test, an IB
// VF when ib is set (GUIDs reported), and realPF false makes the PF a
// plain link reporting no VF info (simulated node).
func newEnv(t *testing.T, ib, realPF bool) *env {
	t.Helper()
	fx := newFixture(t, drivers,
		fxDev{pci: pfPCI, driver: "mlx5_core", ifName: pfIf, mac: "0c:42:a1:00:00:00", mtu: 1500},
		fxDev{pci: vfPCI, driver: "mlx5_core", ifName: "ens1f0v1", mac: "02:00:00:00:00:11", mtu: 1500,
			irqs: map[int]string{120: "0-7", 121: "0-7"}, group: "17"},
	)
	f := nlinktest.New()
	attrs := netlink.LinkAttrs{Name: pfIf, MTU: 1500, HardwareAddr: mustMAC("0c:42:a1:00:00:00")}
	if realPF {
		attrs.Vfs = []netlink.VfInfo{
			{ID: 0, Mac: mustMAC("02:00:00:00:00:10"), Spoofchk: true},
			{ID: 1, Mac: mustMAC("02:00:00:00:00:11"), Vlan: 10, Qos: 1, VlanProto: hw.VLANProto8021Q, Spoofchk: true, MaxTxRate: 1000},
		}
	}
	f.AddLink(attrs)
	if ib && realPF {
		f.SetVFGUIDs(pfIf, []nlink.VFGUID{
			{VF: 0, NodeGUID: mustMAC("00:00:00:00:00:00:00:10"), PortGUID: mustMAC("00:00:00:00:00:00:00:10")},
			{VF: 1, NodeGUID: mustMAC("00:00:00:00:00:00:00:11"), PortGUID: mustMAC("00:00:00:00:00:00:00:11")},
		})
	}
	lt := inventory.LinkTypeEthernet
	if ib {
		lt = inventory.LinkTypeInfiniBand
	}
	dev := inventory.Device{
		Name: inventory.DeviceName(vfPCI), Kind: inventory.KindVF, PCIAddress: vfPCI,
		PFPCIAddress: pfPCI, PFName: pfIf, VFIndex: 1, Driver: "mlx5_core", IfName: "ens1f0v1", LinkType: lt,
	}
	e := &env{fx: fx, fake: f, dev: dev}
	e.k = fx.startKernel(drivers)
	return e
}

// vfState is everything about the VF that Apply may change.
type vfState struct {
	VFs   []netlink.VfInfo
	GUIDs []nlink.VFGUID
}

func (e *env) state(t *testing.T) vfState {
	t.Helper()
	l, ok := e.fake.Link(pfIf)
	if !ok {
		t.Fatal("PF link vanished")
	}
	g, err := e.fake.VFGUIDs(l)
	if err != nil {
		t.Fatal(err)
	}
	return vfState{VFs: l.Attrs().Vfs, GUIDs: g}
}

func TestTakeSnapshot(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		ib, realPF bool
		want       Snapshot
	}{
		{
			name: "ethernet VF", realPF: true,
			want: Snapshot{PCIAddress: vfPCI, PFName: pfIf, PFPCIAddress: pfPCI, VFIndex: 1, PFDriver: "mlx5_core",
				AdminKnown: true,
				Admin: inventory.VFAdminState{MAC: "02:00:00:00:00:11", VLAN: 10, QoS: 1, VLANProto: "802.1q",
					SpoofChk: true, LinkState: "auto", MaxTxRate: 1000},
				Driver: "mlx5_core", IfName: "ens1f0v1", MAC: "02:00:00:00:00:11", MTU: 1500,
				IRQAffinity: map[int]string{120: "0-7", 121: "0-7"}},
		},
		{
			name: "infiniband VF", ib: true, realPF: true,
			want: Snapshot{PCIAddress: vfPCI, PFName: pfIf, PFPCIAddress: pfPCI, VFIndex: 1, PFDriver: "mlx5_core",
				AdminKnown: true,
				Admin: inventory.VFAdminState{MAC: "02:00:00:00:00:11", VLAN: 10, QoS: 1, VLANProto: "802.1q",
					SpoofChk: true, LinkState: "auto", MaxTxRate: 1000,
					NodeGUID: "00:00:00:00:00:00:00:11", PortGUID: "00:00:00:00:00:00:00:11"},
				Driver: "mlx5_core", IfName: "ens1f0v1", MAC: "02:00:00:00:00:11", MTU: 1500,
				IRQAffinity: map[int]string{120: "0-7", 121: "0-7"}},
		},
		{
			name: "simulated PF without VF info",
			want: Snapshot{PCIAddress: vfPCI, PFName: pfIf, PFPCIAddress: pfPCI, VFIndex: 1, PFDriver: "mlx5_core",
				Driver: "mlx5_core", IfName: "ens1f0v1", MAC: "02:00:00:00:00:11", MTU: 1500,
				IRQAffinity: map[int]string{120: "0-7", 121: "0-7"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.ib, tc.realPF)
			got, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("snapshot\n got %+v\nwant %+v", got, tc.want)
			}
			if m := e.fake.MutatingCalls(); len(m) != 0 {
				t.Errorf("snapshot changed something: %v", m)
			}
		})
	}
}

func TestTakeSnapshotErrors(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, false, true)
	odd := e.dev
	odd.Kind = "bridge"
	noPF := e.dev
	noPF.PFName = ""
	gone := e.dev
	gone.PFName = "nope0"
	for name, dev := range map[string]inventory.Device{"unknown kind": odd, "no PF name": noPF, "PF link gone": gone} {
		if _, err := TakeSnapshot(ctx, e.fake, e.fx.root, dev); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func allSettings() Settings {
	return Settings{
		MAC: ptr("02:aa:bb:cc:dd:01"), VLAN: ptr(100), QoS: ptr(3), VLANProto: ptr("802.1ad"),
		SpoofChk: ptr(false), Trust: ptr(true), LinkState: ptr("enable"),
		MinTxRate: ptr(100), MaxTxRate: ptr(5000),
	}
}

const testGUID = "02:00:00:00:00:00:aa:01"

// applyAll applies allSettings and, on an IB VF, sets testGUID; it returns
// the knobs to restore.
func applyAll(ctx context.Context, e *env, snap Snapshot, ib bool) ([]Knob, error) {
	s := allSettings()
	if err := Apply(ctx, e.fake, e.fx.root, snap, s); err != nil {
		return nil, err
	}
	if !ib {
		return s.Knobs(), nil
	}
	return append(s.Knobs(), KnobGUID), SetGUID(ctx, e.fake, e.fx.root, snap, testGUID)
}

func TestApplyAndRestore(t *testing.T) {
	ctx := context.Background()
	for _, ib := range []bool{false, true} {
		t.Run(map[bool]string{false: "ethernet", true: "infiniband"}[ib], func(t *testing.T) {
			e := newEnv(t, ib, true)
			before := e.state(t)
			snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
			if err != nil {
				t.Fatal(err)
			}
			knobs, err := applyAll(ctx, e, snap, ib)
			if err != nil {
				t.Fatal(err)
			}
			vf, _ := e.fake.VF(pfIf, 1)
			want := netlink.VfInfo{ID: 1, Mac: mustMAC("02:aa:bb:cc:dd:01"), Vlan: 100, Qos: 3, VlanProto: hw.VLANProto8021AD,
				Spoofchk: false, Trust: 1, LinkState: 1, MinTxRate: 100, MaxTxRate: 5000}
			if !reflect.DeepEqual(vf, want) {
				t.Errorf("VF after Apply\n got %+v\nwant %+v", vf, want)
			}
			if vf0, _ := e.fake.VF(pfIf, 0); !reflect.DeepEqual(vf0, before.VFs[0]) {
				t.Errorf("VF 0 touched: %+v", vf0)
			}
			if ib {
				g := e.state(t).GUIDs[1]
				if g.NodeGUID.String() != "02:00:00:00:00:00:aa:01" || g.PortGUID.String() != "02:00:00:00:00:00:aa:01" {
					t.Errorf("GUIDs after Apply: %+v", g)
				}
				if b := e.k.bindLog(); !reflect.DeepEqual(b, []string{vfPCI + ">mlx5_core"}) {
					t.Errorf("rebinds after Apply: %v", b)
				}
			}
			for i := 0; i < 2; i++ {
				e.fake.ResetCalls()
				if err := Restore(ctx, e.fake, e.fx.root, snap, knobs); err != nil {
					t.Fatalf("restore #%d: %v", i+1, err)
				}
				if got := e.state(t); !reflect.DeepEqual(got, before) {
					t.Errorf("after restore #%d\n got %+v\nwant %+v", i+1, got, before)
				}
			}
			if ib {
				if b := e.k.bindLog(); len(b) != 2 {
					t.Errorf("want one rebind for Apply and one for the first Restore only, got %v", b)
				}
			}
		})
	}
}

func TestRestoreUntouchedAlwaysSetsMAC(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, false, true)
	snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
	if err != nil {
		t.Fatal(err)
	}
	// The pod changed the MAC of its trusted VF behind our back.
	l, _ := e.fake.LinkByName(pfIf)
	if err := e.fake.LinkSetVfHardwareAddr(l, 1, mustMAC("02:de:ad:be:ef:00")); err != nil {
		t.Fatal(err)
	}
	e.fake.ResetCalls()
	if err := Restore(ctx, e.fake, e.fx.root, snap, nil); err != nil {
		t.Fatal(err)
	}
	m := e.fake.MutatingCalls()
	if len(m) != 1 || m[0].Method != "LinkSetVfHardwareAddr" {
		t.Errorf("mutating calls = %v, want the admin MAC only", m)
	}
	if vf, _ := e.fake.VF(pfIf, 1); vf.Mac.String() != "02:00:00:00:00:11" {
		t.Errorf("MAC = %s", vf.Mac)
	}
}

// failAt fails the n-th call (0-based) the fake sees, once.
func failAt(n int, err error) nlinktest.FailFunc {
	var seen atomic.Int64
	return func(c nlinktest.Call) error {
		if int(seen.Add(1)-1) == n {
			return err
		}
		return nil
	}
}

func TestApplyRollsBackAtEveryCall(t *testing.T) {
	ctx := context.Background()
	for _, ib := range []bool{false, true} {
		// Count the calls of a successful Apply.
		e := newEnv(t, ib, true)
		snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
		if err != nil {
			t.Fatal(err)
		}
		e.fake.ResetCalls()
		if err := Apply(ctx, e.fake, e.fx.root, snap, allSettings()); err != nil {
			t.Fatal(err)
		}
		calls := e.fake.Calls()
		for _, fe := range []error{unix.EOPNOTSUPP, unix.EINVAL, unix.EIO} {
			for i, c := range calls {
				name := c.Method + "#" + string(rune('0'+i)) + "/" + fe.Error()
				t.Run(name, func(t *testing.T) {
					e := newEnv(t, ib, true)
					before := e.state(t)
					snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
					if err != nil {
						t.Fatal(err)
					}
					e.fake.FailWith(failAt(0, nil)) // reset counter
					e.fake.FailWith(failAt(i, fe))
					err = Apply(ctx, e.fake, e.fx.root, snap, allSettings())
					if !errors.Is(err, fe) {
						t.Fatalf("failing call %d (%s): err = %v", i, c, err)
					}
					e.fake.FailWith(nil)
					if got := e.state(t); !reflect.DeepEqual(got, before) {
						t.Errorf("failing call %d (%s) left the VF changed\n got %+v\nwant %+v", i, c, got, before)
					}
					if strings.HasPrefix(c.Method, "LinkSetVf") {
						for _, want := range []string{pfIf, "mlx5_core", "VF 1"} {
							if !strings.Contains(err.Error(), want) {
								t.Errorf("error %q does not name %q", err, want)
							}
						}
						if !errors.Is(fe, unix.EIO) && !strings.Contains(err.Error(), "does not support") {
							t.Errorf("error %q does not say the knob is unsupported", err)
						}
					}
				})
			}
		}
	}
}

func TestApplyBadInputChangesNothing(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		s     Settings
		field string
	}{
		{Settings{MAC: ptr("zz")}, "mac"},
		{Settings{MAC: ptr("00:11:22:33:44:55:66:77")}, "mac"},
		{Settings{VLAN: ptr(4096)}, "vlan"},
		{Settings{VLAN: ptr(-1)}, "vlan"},
		{Settings{QoS: ptr(8)}, "qos"},
		{Settings{VLANProto: ptr("802.1x")}, "vlanProto"},
		{Settings{LinkState: ptr("up")}, "linkState"},
		{Settings{MinTxRate: ptr(-5)}, "minTxRate"},
		{Settings{MaxTxRate: ptr(-5)}, "maxTxRate"},
		{Settings{MinTxRate: ptr(500), MaxTxRate: ptr(100)}, "minTxRate"},
	} {
		e := newEnv(t, true, true)
		snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
		if err != nil {
			t.Fatal(err)
		}
		e.fake.ResetCalls()
		err = Apply(ctx, e.fake, e.fx.root, snap, tc.s)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("settings %v: err = %v, want one naming %q", tc.s.Knobs(), err, tc.field)
		}
		if c := e.fake.Calls(); len(c) != 0 {
			t.Errorf("settings %v: bad input made calls %v", tc.s.Knobs(), c)
		}
	}
}

func TestApplyMACBusy(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		busy    int // number of EBUSY answers before success
		wantErr bool
	}{{busy: 2}, {busy: macBusyRetries}, {busy: macBusyRetries + 1, wantErr: true}} {
		e := newEnv(t, false, true)
		snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
		if err != nil {
			t.Fatal(err)
		}
		var n atomic.Int64
		e.fake.FailWith(func(c nlinktest.Call) error {
			if c.Method == "LinkSetVfHardwareAddr" && n.Add(1) <= int64(tc.busy) {
				return unix.EBUSY
			}
			return nil
		})
		err = Apply(ctx, e.fake, e.fx.root, snap, Settings{MAC: ptr("02:aa:bb:cc:dd:01")})
		if tc.wantErr != (err != nil) || (err != nil && !errors.Is(err, unix.EBUSY)) {
			t.Errorf("%d busy answers: err = %v, want error %v", tc.busy, err, tc.wantErr)
		}
		vf, _ := e.fake.VF(pfIf, 1)
		if want := map[bool]string{false: "02:aa:bb:cc:dd:01", true: "02:00:00:00:00:11"}[tc.wantErr]; vf.Mac.String() != want {
			t.Errorf("%d busy answers: MAC = %s, want %s", tc.busy, vf.Mac, want)
		}
	}
}

func TestSimulatedPF(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, false, false)
	snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
	if err != nil {
		t.Fatal(err)
	}
	if snap.AdminKnown {
		t.Fatal("AdminKnown on a PF without VF info")
	}
	e.fake.ResetCalls()
	err = Apply(ctx, e.fake, e.fx.root, snap, Settings{VLAN: ptr(5)})
	if err == nil || !strings.Contains(err.Error(), "reports no VF info") {
		t.Errorf("Apply on simulated PF: err = %v", err)
	}
	if err := Apply(ctx, e.fake, e.fx.root, snap, Settings{}); err != nil {
		t.Errorf("Apply of nothing: %v", err)
	}
	if err := Restore(ctx, e.fake, e.fx.root, snap, []Knob{KnobVLAN, KnobMAC}); err != nil {
		t.Errorf("Restore: %v", err)
	}
	if c := e.fake.Calls(); len(c) != 0 {
		t.Errorf("simulated PF got calls %v", c)
	}
}

func TestApplyGUIDRefusedWhenUnrestorable(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, false, true) // Ethernet PF: no GUIDs reported
	snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
	if err != nil {
		t.Fatal(err)
	}
	e.fake.ResetCalls()
	err = SetGUID(ctx, e.fake, e.fx.root, snap, testGUID)
	if err == nil || !strings.Contains(err.Error(), "guid") {
		t.Errorf("err = %v", err)
	}
	if m := e.fake.MutatingCalls(); len(m) != 0 {
		t.Errorf("calls %v", m)
	}
}

func TestRebindRenames(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, true, true)
	// The driver's re-probe creates the netdev under a new name.
	e.k.onBind = func(pci, driver string) {
		e.fx.addNetdev(pci, "ib1", "02:00:00:00:00:11", 2044)
	}
	if err := removeAll(e.fx.path(filepath.Join("sys/bus/pci/devices", vfPCI, "net"))); err != nil {
		t.Fatal(err)
	}
	name, err := Rebind(ctx, e.fx.root, vfPCI, "mlx5_core", true)
	if err != nil {
		t.Fatal(err)
	}
	if name != "ib1" {
		t.Errorf("netdev after rebind = %q, want ib1", name)
	}
	if got := e.fx.read("sys/bus/pci/drivers/mlx5_core/unbind"); got != "" {
		t.Errorf("unbind not consumed: %q", got)
	}
	if b := e.k.bindLog(); !reflect.DeepEqual(b, []string{vfPCI + ">mlx5_core"}) {
		t.Errorf("binds %v", b)
	}
	// Unbound VF: nothing to do.
	if name, err := Rebind(ctx, e.fx.root, vfPCI, "", true); err != nil || name != "" {
		t.Errorf("Rebind unbound = %q, %v", name, err)
	}
}

func TestApplyGUIDRebindFailureRevertsGUIDs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, true, true)
	before := e.state(t)
	snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
	if err != nil {
		t.Fatal(err)
	}
	// The driver's unbind file is gone: the rebind fails at once.
	if err := removeAll(e.fx.path("sys/bus/pci/drivers/mlx5_core/unbind")); err != nil {
		t.Fatal(err)
	}
	err = SetGUID(ctx, e.fake, e.fx.root, snap, testGUID)
	if err == nil || !strings.Contains(err.Error(), "rebind") {
		t.Fatalf("err = %v, want a rebind failure", err)
	}
	if got := e.state(t); !reflect.DeepEqual(got, before) {
		t.Errorf("after a failed rebind\n got %+v\nwant %+v", got, before)
	}
	if d, _ := DriverOf(e.fx.root, vfPCI); d != "mlx5_core" {
		t.Errorf("driver = %q, want mlx5_core still bound", d)
	}
}

func TestSnapshotOfWholePF(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, false, true)
	pf := inventory.Device{Name: inventory.DeviceName(pfPCI), Kind: inventory.KindPF, PCIAddress: pfPCI,
		PFPCIAddress: pfPCI, PFName: pfIf, VFIndex: -1, Driver: "mlx5_core", IfName: pfIf}
	snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, pf)
	if err != nil {
		t.Fatal(err)
	}
	want := Snapshot{PCIAddress: pfPCI, PFName: pfIf, PFPCIAddress: pfPCI, VFIndex: -1, PFDriver: "mlx5_core",
		Driver: "mlx5_core", IfName: pfIf, MAC: "0c:42:a1:00:00:00", MTU: 1500}
	if !reflect.DeepEqual(snap, want) {
		t.Errorf("snapshot\n got %+v\nwant %+v", snap, want)
	}
	if c := e.fake.Calls(); len(c) != 0 {
		t.Errorf("snapshot of a PF made netlink calls %v", c)
	}
	if err := Apply(ctx, e.fake, e.fx.root, snap, Settings{Trust: ptr(true)}); err == nil || !strings.Contains(err.Error(), "whole PF") {
		t.Errorf("Apply on a PF: err = %v", err)
	}
	if err := Restore(ctx, e.fake, e.fx.root, snap, nil); err != nil {
		t.Errorf("Restore of a PF: %v", err)
	}
	if c := e.fake.Calls(); len(c) != 0 {
		t.Errorf("PF got netlink calls %v", c)
	}
}

// TestRestoreFailureAtEveryCallThenRetry fails each call of a restore in
// turn; the restore reports it, and a second restore puts everything back.
func TestRestoreFailureAtEveryCallThenRetry(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (*env, vfState, Snapshot) {
		e := newEnv(t, true, true)
		before := e.state(t)
		snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := applyAll(ctx, e, snap, true); err != nil {
			t.Fatal(err)
		}
		e.fake.ResetCalls()
		return e, before, snap
	}
	e, _, snap := setup(t)
	if err := Restore(ctx, e.fake, e.fx.root, snap, append(allSettings().Knobs(), KnobGUID)); err != nil {
		t.Fatal(err)
	}
	calls := e.fake.Calls()
	for i, c := range calls {
		t.Run(fmt.Sprintf("%d-%s", i, c.Method), func(t *testing.T) {
			e, before, snap := setup(t)
			e.fake.FailWith(failAt(i, unix.EIO))
			if err := Restore(ctx, e.fake, e.fx.root, snap, append(allSettings().Knobs(), KnobGUID)); !errors.Is(err, unix.EIO) {
				t.Errorf("failing call %d (%s): err = %v", i, c, err)
			}
			e.fake.FailWith(nil)
			if err := Restore(ctx, e.fake, e.fx.root, snap, append(allSettings().Knobs(), KnobGUID)); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if got := e.state(t); !reflect.DeepEqual(got, before) {
				t.Errorf("failing call %d (%s) then retry\n got %+v\nwant %+v", i, c, got, before)
			}
		})
	}
}

func TestSetGUIDBadInputChangesNothing(t *testing.T) {
	ctx := context.Background()
	for _, g := range []string{"00:11", "zz", "", "02:00:00:00:00:00:aa"} {
		e := newEnv(t, true, true)
		snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
		if err != nil {
			t.Fatal(err)
		}
		e.fake.ResetCalls()
		if err := SetGUID(ctx, e.fake, e.fx.root, snap, g); err == nil || !strings.Contains(err.Error(), "guid") {
			t.Errorf("SetGUID(%q): err = %v, want one naming guid", g, err)
		}
		if c := e.fake.Calls(); len(c) != 0 {
			t.Errorf("SetGUID(%q): bad input made calls %v", g, c)
		}
		if b := e.k.bindLog(); len(b) != 0 {
			t.Errorf("SetGUID(%q): bad input rebound %v", g, b)
		}
	}
}

// TestSetGUIDRollsBackAtEveryCall fails each netlink call of SetGUID in
// turn: the VF keeps the snapshot's GUIDs.
func TestSetGUIDRollsBackAtEveryCall(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, true, true)
	snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
	if err != nil {
		t.Fatal(err)
	}
	e.fake.ResetCalls()
	if err := SetGUID(ctx, e.fake, e.fx.root, snap, testGUID); err != nil {
		t.Fatal(err)
	}
	calls := e.fake.Calls()
	if len(calls) == 0 {
		t.Fatal("SetGUID made no netlink calls")
	}
	for i, c := range calls {
		t.Run(fmt.Sprintf("%d-%s", i, c.Method), func(t *testing.T) {
			e := newEnv(t, true, true)
			before := e.state(t)
			snap, err := TakeSnapshot(ctx, e.fake, e.fx.root, e.dev)
			if err != nil {
				t.Fatal(err)
			}
			e.fake.FailWith(failAt(i, unix.EIO))
			if err := SetGUID(ctx, e.fake, e.fx.root, snap, testGUID); !errors.Is(err, unix.EIO) {
				t.Fatalf("failing call %d (%s): err = %v", i, c, err)
			}
			e.fake.FailWith(nil)
			if got := e.state(t); !reflect.DeepEqual(got, before) {
				t.Errorf("failing call %d (%s) left the VF changed\n got %+v\nwant %+v", i, c, got, before)
			}
		})
	}
}
