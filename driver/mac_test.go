package driver

import (
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	resourceapi "k8s.io/api/resource/v1"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

const vfCfg = `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig"`

func recordedMAC(t *testing.T, e *env, uid string) string {
	t.Helper()
	rec, ok := e.d.State().Claim(uid)
	if !ok || len(rec.Devices) == 0 || rec.Devices[0].Settings.MAC == nil {
		t.Fatalf("claim %s has no recorded MAC", uid)
	}
	return *rec.Devices[0].Settings.MAC
}

// TestAutoMACScheme: the documented derivation, a locally administered
// unicast address, distinct per claim and per device.
func TestAutoMACScheme(t *testing.T) {
	got := AutoMAC("c1", "pci-0000-5e-00-3", 0)
	if got != "96:af:18:d9:0b:5b" {
		t.Errorf("AutoMAC(c1, pci-0000-5e-00-3, 0) = %s, want the value docs/config.md and the AutoMAC comment show", got)
	}
	seen := map[string]bool{}
	for _, uid := range []string{"c1", "c2", "c3"} {
		for _, dev := range []string{"pci-0000-5e-00-3", "pci-0000-5e-00-4"} {
			for attempt := range 3 {
				m := AutoMAC(uid, dev, attempt)
				hw, err := net.ParseMAC(m)
				if err != nil || len(hw) != 6 {
					t.Fatalf("AutoMAC = %q: %v", m, err)
				}
				if hw[0]&0x01 != 0 || hw[0]&0x02 == 0 {
					t.Errorf("%s is not a locally administered unicast MAC", m)
				}
				if seen[m] {
					t.Errorf("%s made twice", m)
				}
				seen[m] = true
			}
		}
	}
}

func TestPickAutoMACSkipsHeld(t *testing.T) {
	vf := &inventory.Device{Name: "pci-0000-5e-00-3", Kind: inventory.KindVF}
	first, second := AutoMAC("c1", vf.Name, 0), AutoMAC("c1", vf.Name, 1)
	for _, tc := range []struct {
		name string
		held map[string]string
		want string
	}{
		{"free", map[string]string{}, first},
		{"held by another claim", map[string]string{first: "claim ns/x (u9)"}, second},
		{"carried by another device", map[string]string{first: "device pci-0000-5e-00-9"}, second},
		{"carried by the VF itself (a retry)", map[string]string{first: "device " + vf.Name}, first},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pickAutoMAC(vf, "c1", tc.held)
			if err != nil || got != tc.want {
				t.Errorf("pickAutoMAC = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	full := map[string]string{}
	for attempt := range maxAutoMACAttempts {
		full[AutoMAC("c1", vf.Name, attempt)] = "claim ns/x (u9)"
	}
	if _, err := pickAutoMAC(vf, "c1", full); err == nil || !strings.Contains(err.Error(), vf.Name) {
		t.Errorf("every attempt held: %v, want an error naming the device", err)
	}
}

// TestDuplicateMACRefused: a MAC another prepared claim holds, or another
// device carries, is refused with the holder named; a device's own MAC
// and a MAC freed by Unprepare are fine.
func TestDuplicateMACRefused(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	rec := withEvents(t, e)
	vf := func(i int) string { return vfName(e, 1, i) }
	template := opaque(vfCfg + `,"mac":"02:00:00:00:10:01"}`) // one config, every replica
	a := newClaim("ua", "pa", []resourceapi.DeviceRequestAllocationResult{result("net", vf(8))}, template)
	b := newClaim("ub", "pb", []resourceapi.DeviceRequestAllocationResult{result("net", vf(9))}, template)
	if err := prepare(t, e.d, a)["ua"].Err; err != nil {
		t.Fatal(err)
	}
	e.j.take()
	err := prepare(t, e.d, b)["ub"].Err
	if err == nil {
		t.Fatal("second claim with the same MAC prepared")
	}
	ev := takeEvent(t, rec)
	for _, w := range []string{"device " + vf(9), "config field mac", "MAC 02:00:00:00:10:01 is already in use on this node by claim ns/claim-ua (ua)", "mac: auto"} {
		if !strings.Contains(err.Error(), w) || !strings.Contains(ev, w) {
			t.Errorf("error %q / event %q lack %q", err, ev, w)
		}
	}
	if steps := e.j.take(); len(steps) != 0 {
		t.Errorf("refused claim reached the host: %v", steps)
	}
	if err := unprepare(t, e.d, a)["ua"]; err != nil {
		t.Fatal(err)
	}
	if err := prepare(t, e.d, b)["ub"].Err; err != nil {
		t.Errorf("after the holder's Unprepare: %v", err)
	}
	mgmt, _ := net.ParseMAC("0a:00:00:00:ee:01")
	e.fix.Netlink.AddLink(netlink.LinkAttrs{Name: "eno1", HardwareAddr: mgmt})

	for _, tc := range []struct {
		name    string
		dev     string
		results []resourceapi.DeviceRequestAllocationResult
		mac     string
		want    string // "" succeeds
	}{
		{name: "another VF's admin MAC", results: []resourceapi.DeviceRequestAllocationResult{result("net", vf(2))}, mac: "02:00:5e:00:00:01",
			want: "already in use on this node by device " + vf(1)},
		{name: "another VF's admin MAC, other spelling", results: []resourceapi.DeviceRequestAllocationResult{result("net", vf(2))}, mac: "02-00-5E-00-00-01",
			want: "MAC 02:00:5e:00:00:01 is already in use"},
		{name: "the VF's own admin MAC", results: []resourceapi.DeviceRequestAllocationResult{result("net", vf(2))}, mac: "02:00:5e:00:00:02"},
		{name: "one MAC for two requests of a claim", results: []resourceapi.DeviceRequestAllocationResult{result("a", vf(3)), result("b", vf(4))}, mac: "02:00:00:00:10:07",
			want: `in use on this node by request "a" of this claim`},
		// Not an SR-IOV device: the node's management NIC (added below).
		{name: "a host link's MAC", results: []resourceapi.DeviceRequestAllocationResult{result("net", vf(5))}, mac: "0A:00:00:00:EE:01",
			want: "MAC 0a:00:00:00:ee:01 is already in use on this node by host link eno1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClaim("uc", "pc", tc.results, opaque(vfCfg+`,"mac":"`+tc.mac+`"}`))
			err := prepare(t, e.d, c)["uc"].Err
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if err := unprepare(t, e.d, c)["uc"]; err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestMACAuto: every replica of a template with mac: auto gets its own
// MAC, the one the documented scheme gives, on the VF and the netdev; a
// retried Prepare gets the same one.
func TestMACAuto(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	template := opaque(vfCfg + `,"mac":"auto"}`)
	dev1, dev2 := vfName(e, 1, 8), vfName(e, 1, 9)
	a := newClaim("ua", "pa", []resourceapi.DeviceRequestAllocationResult{result("net", dev1)}, template)
	b := newClaim("ub", "pb", []resourceapi.DeviceRequestAllocationResult{result("net", dev2)}, template)

	// The first attempt of a fails after the VF change; the retry makes
	// the same MAC.
	e.j.failOn("host.ApplyVF", errInjected)
	if err := prepare(t, e.d, a)["ua"].Err; err == nil {
		t.Fatal("prepare with a failing host succeeded")
	}
	e.j.clearFail()
	e.j.take()
	if err := prepare(t, e.d, a, b)["ua"].Err; err != nil {
		t.Fatal(err)
	}
	ma, mb := recordedMAC(t, e, "ua"), recordedMAC(t, e, "ub")
	if ma != AutoMAC("ua", dev1, 0) || mb != AutoMAC("ub", dev2, 0) {
		t.Errorf("MACs %s %s, want the scheme's %s %s", ma, mb, AutoMAC("ua", dev1, 0), AutoMAC("ub", dev2, 0))
	}
	if ma == mb {
		t.Errorf("two replicas got one MAC %s", ma)
	}
	steps := strings.Join(e.j.take(), "\n")
	if !strings.Contains(steps, "host.ApplyVF "+pci(dev1)+" mac") {
		t.Errorf("the auto MAC was not set on the VF:\n%s", steps)
	}
	for _, pd := range e.d.State().ForPod("pod-uid-pa") {
		if pd.Spec.MAC != ma {
			t.Errorf("netdev MAC in the pod %q, want %s", pd.Spec.MAC, ma)
		}
	}
}
