package driver

import (
	"context"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	resourceapi "k8s.io/api/resource/v1"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// TestPrepareUnprepareWithRealKernel runs Prepare and Unprepare through
// the production Kernel (pkg/vfconfig over the recording nlinktest.Fake and
// the fixture sysfs): the VF settings reach the PF in order, and
// Unprepare puts the VF's admin state back exactly.
func TestPrepareUnprepareWithRealKernel(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	cfg := e.config()
	cfg.Kernel = NewKernel(e.fix.Root, e.fix.Netlink)
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	const pf = "ens2f0"
	before, ok := e.fix.Netlink.VF(pf, 1) // VLAN 100 QoS 3 802.1ad, spoofchk on
	if !ok {
		t.Fatal("no VF 1 on the fake PF")
	}
	dev := vfName(e, 1, 1)
	c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("eth", dev)},
		opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":300,"spoofChk":false,"trust":true,"mac":"02:12:34:56:78:9a"}`))
	e.fix.Netlink.ResetCalls()
	if err := prepare(t, d, c)["u1"].Err; err != nil {
		t.Fatal(err)
	}
	var methods []string
	for _, call := range e.fix.Netlink.MutatingCalls() {
		methods = append(methods, call.Method)
	}
	want := []string{"LinkSetVfHardwareAddr", "LinkSetVfVlanQosProto", "LinkSetVfSpoofchk", "LinkSetVfTrust"}
	if !reflect.DeepEqual(methods, want) {
		t.Errorf("prepare changed %v, want %v", methods, want)
	}
	now, _ := e.fix.Netlink.VF(pf, 1)
	if now.Vlan != 300 || now.Spoofchk || now.Trust != 1 || now.Mac.String() != "02:12:34:56:78:9a" {
		t.Errorf("VF after prepare: %+v", now)
	}
	// A second prepare (kubelet retry) does not touch the PF.
	e.fix.Netlink.ResetCalls()
	if err := prepare(t, d, c)["u1"].Err; err != nil {
		t.Fatal(err)
	}
	if calls := e.fix.Netlink.MutatingCalls(); len(calls) != 0 {
		t.Errorf("retry changed %v", calls)
	}
	if err := unprepare(t, d, c)["u1"]; err != nil {
		t.Fatal(err)
	}
	after, _ := e.fix.Netlink.VF(pf, 1)
	if !reflect.DeepEqual(after, before) {
		t.Errorf("VF not restored:\n got  %+v\n want %+v", after, before)
	}

	// A knob the PF refuses (also while rolling back): the error names
	// the knob and the device, the claim stays recorded, and once the PF
	// behaves, Unprepare puts everything back from the record.
	e.fix.Netlink.FailMethod("LinkSetVfTrust", "", errInjected)
	err = prepare(t, d, c)["u1"].Err
	if err == nil || !strings.Contains(err.Error(), "trust") || !strings.Contains(err.Error(), dev) || !strings.Contains(err.Error(), "rolling back also failed") {
		t.Fatalf("err = %v", err)
	}
	if _, ok := d.State().Claim("u1"); !ok {
		t.Fatal("claim with an unfinished rollback not recorded")
	}
	e.fix.Netlink.FailWith(nil)
	if err := unprepare(t, d, c)["u1"]; err != nil {
		t.Fatal(err)
	}
	if after, _ := e.fix.Netlink.VF(pf, 1); !reflect.DeepEqual(after, before) {
		t.Errorf("VF not restored:\n got  %+v\n want %+v", after, before)
	}
	if len(d.State().Claims()) != 0 {
		t.Error("claim still recorded after unprepare")
	}
}

// TestRealKernelRefusesPFInUseAtPrepare: the scan that offered a PF may be a
// second old; the production Kernel checks the PF's netdev again when
// Prepare snapshots it, and a PF the host has started to use in between
// is refused before anything is recorded or changed.
func TestRealKernelRefusesPFInUseAtPrepare(t *testing.T) {
	const pfPCI, pfName = "0000:af:00.0", "ens5f0"
	for _, tc := range []struct {
		name  string
		inUse bool
	}{
		{name: "unused: snapshot taken"},
		{name: "address added after the scan", inUse: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, sysfstest.Standard()) // ens5f0 listed, unused at the scan
			cfg := e.config()
			cfg.Kernel = NewKernel(e.fix.Root, e.fix.Netlink)
			d, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.inUse {
				l, _ := e.fix.Netlink.Link(pfName)
				if err := e.fix.Netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 3), Mask: net.CIDRMask(24, 32)}}); err != nil {
					t.Fatal(err)
				}
			}
			dev, ok := d.inventory().Find(inventory.DeviceName(pfPCI))
			if !ok {
				t.Fatal("PF not in the inventory")
			}
			snap, err := cfg.Kernel.Snapshot(context.Background(), dev)
			if !tc.inUse {
				if err != nil || snap.IfName != pfName || snap.PCIAddress != pfPCI {
					t.Fatalf("Snapshot = %+v, %v", snap, err)
				}
				return
			}
			want := "PF 0000:af:00.0 is not taken: the host uses netdev ens5f0: global addresses 192.0.2.3/24"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Snapshot err = %v, want %q", err, want)
			}
			e.fix.Netlink.ResetCalls()
			perr := prepare(t, d, newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", dev.Name)}))["u"].Err
			if perr == nil || !strings.Contains(perr.Error(), want) {
				t.Fatalf("prepare err = %v, want %q", perr, want)
			}
			if _, ok := d.State().Claim("u"); ok {
				t.Error("refused claim recorded")
			}
			if m := e.fix.Netlink.MutatingCalls(); len(m) != 0 {
				t.Errorf("refused claim changed %v", m)
			}
		})
	}
}
