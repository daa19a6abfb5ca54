package reliability

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

func vfConfig(fields string) string {
	return `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig",` + fields + `}`
}

// TestBadInput sends hostile configs and claims through kubelet's
// NodePrepareResources: each must be refused with an error naming the
// problem, and nothing may change on the host.
func TestBadInput(t *testing.T) {
	n := newNode(t, 4)
	// VF 3 is outside the admin's filter.
	n.Filter = inventory.Filter{PCIAddresses: []string{n.vf(0).PCIAddress, n.vf(1).PCIAddress, n.vf(2).PCIAddress}}
	ctx := logCtx(t)
	held := n.claim(2, "") // VF 2 is prepared for another pod
	twoDevs := n.claim(0, vfConfig(`"ifName":"net1"`))
	twoDevs.Status.Allocation.Devices.Results = append(twoDevs.Status.Allocation.Devices.Results,
		resourceapi.DeviceRequestAllocationResult{Driver: driverName, Pool: nodeName, Device: n.device(1), Request: "nic2"})
	otherNode := n.claim(0, "")
	otherNode.Status.Allocation.Devices.Results[0].Pool = "some-other-node"
	missing := n.claim(0, "")
	missing.Status.Allocation.Devices.Results[0].Device = "pci-0000-99-00-1"
	taken := n.claim(0, "")
	taken.Status.Allocation.Devices.Results[0].Device = n.device(2)
	pf := n.claim(0, "")
	pf.Status.Allocation.Devices.Results[0].Device = inventory.DeviceName(pfPCI)
	filtered := n.claim(0, "")
	filtered.Status.Allocation.Devices.Results[0].Device = n.device(3)
	unallocated := n.claim(0, "")
	unallocated.Status.Allocation = nil
	twoPods := n.claim(0, "")
	twoPods.Status.ReservedFor = append(twoPods.Status.ReservedFor, twoPods.Status.ReservedFor[0])
	twoPods.Status.ReservedFor[1].UID = "someone-else"
	// VF 1 joins VF 0's IOMMU group, as VFs without ACS between them are
	// grouped: vfio-pci for VF 0 would hand the pod VF 1 too.
	shareIOMMUGroup(t, n.root(), n.vf(0).PCIAddress, n.vf(1).PCIAddress)
	// VF 1's host peer is a host link and no device of the driver: a
	// tenant copies its MAC below.
	const hostMAC = "02:77:ee:00:00:01"
	setLinkMAC(t, n.vfName(1)+"p", hostMAC)

	// The tenant's class: the admin pins VLAN 100, spoof check on, trust
	// off, and lets claims set only the MAC besides pod-local fields.
	class := vfConfig(`"vlan":100,"spoofChk":true,"trust":false,"policy":{"claimMaySet":["mac"]}`)
	tenant := func(fields string) *resourceapi.ResourceClaim { return n.tenantClaim(0, class, vfConfig(fields)) }
	cases := []struct {
		name   string
		claim  *resourceapi.ResourceClaim
		want   string // in the error
		tenant bool   // a hostile tenant's claim: a row of the tenant table
	}{
		{"ifName with /", n.claim(0, vfConfig(`"ifName":"a/b"`)), "ifName", false},
		{"ifName ..", n.claim(0, vfConfig(`"ifName":".."`)), "ifName", false},
		{"ifName with a space", n.claim(0, vfConfig(`"ifName":"net 1"`)), "ifName", false},
		{"ifName of 16 characters", n.claim(0, vfConfig(`"ifName":"abcdefghijklmnop"`)), "ifName", false},
		{"ifName eth0", n.claim(0, vfConfig(`"ifName":"eth0"`)), "ifName", false},
		{"ifName lo", n.claim(0, vfConfig(`"ifName":"lo"`)), "ifName", false},
		{"ifName all", n.claim(0, vfConfig(`"ifName":"all"`)), "ifName", false},
		{"route via a loopback gateway", n.claim(0, vfConfig(`"routes":[{"dst":"10.9.0.0/16","gw":"127.0.0.1"}]`)), "routes[0].gw", false},
		{"two devices with ifName net1 in one pod", twoDevs, "ifName", false},
		{"vlan 4095", n.claim(0, vfConfig(`"vlan":4095`)), "vlan", false},
		{"GUID all-ones", n.claim(0, vfConfig(`"guid":"ff:ff:ff:ff:ff:ff:ff:ff"`)), "guid", false},
		{"IPAM type ../../bin/sh", n.claim(0, vfConfig(`"ipam":{"type":"../../bin/sh"}`)), "ipam", false},
		{"IPAM type .x (a hidden file)", n.claim(0, vfConfig(`"ipam":{"type":".x"}`)), "ipam.type", false},
		{"MAC multicast", n.claim(0, vfConfig(`"mac":"01:00:5e:00:00:01"`)), "mac", false},
		{"unknown field", n.claim(0, vfConfig(`"vlna":5`)), "vlna", false},
		{"device of another node's pool", otherNode, "pool", false},
		{"device not on this node", missing, "not in this node", false},
		{"device prepared for another claim", taken, "already prepared", false},
		{"PF whose VFs are enabled (and one in use)", pf, "not in this node", false},
		{"device outside the admin's filter", filtered, "not in this node", false},
		{"claim not allocated", unallocated, "not allocated", false},
		{"claim reserved for two pods", twoPods, "reservedFor", false},
		{"ifName of a host link (another VF's host peer)", n.claim(0, vfConfig(`"ifName":"`+n.vfName(1)+`p"`)), "is the name of host link", false},
		{"vfio-pci for a VF whose IOMMU group holds another VF", n.claim(0, vfConfig(`"driver":"vfio-pci"`)), "config field driver: vfio-pci for " + n.vf(0).PCIAddress + ": IOMMU group", false},
		{"VLAN hop: vlan 200 on a class that pins 100", tenant(`"vlan":200`), `vlan: Forbidden: a claim may not set vlan: DeviceClass "` + tenantClass + `"`, true},
		{"anti-spoofing off", tenant(`"spoofChk":false`), "may not set spoofChk", true},
		{"trust on (promiscuous, MAC changes)", tenant(`"trust":true`), "may not set trust", true},
		{"the PF's bandwidth: minTxRate", tenant(`"minTxRate":100000`), "may not set minTxRate", true},
		{"link state forced up", tenant(`"linkState":"enable"`), "may not set linkState", true},
		{"a foreign GUID", tenant(`"guid":"00:11:22:33:44:55:66:77"`), "may not set guid", true},
		{"another pod's MAC (the class allows mac)", tenant(`"mac":"` + n.podMAC(2) + `"`), "is already in use on this node by claim ns/net-2", true},
		{"another VF's MAC (the class allows mac)", tenant(`"mac":"` + n.vf(1).MAC + `"`), "is already in use on this node by device " + n.device(1) + ": a VF with the MAC another device of this node carries", true},
		{"a host link's MAC (the class allows mac)", tenant(`"mac":"` + hostMAC + `"`), "is already in use on this node by host link " + n.vfName(1) + "p: a VF with the MAC of a link the node itself uses", true},
		{"vfio-pci from a claim", tenant(`"driver":"vfio-pci"`), "may not set driver", true},
		{"bridge as IPAM plugin", tenant(`"ipam":{"type":"bridge","bridge":"cni0"}`), `ipam.type: Unsupported value: "bridge"`, true},
		{"whereabouts configuration_path: /host/etc/shadow", tenant(`"ipam":{"type":"whereabouts","configuration_path":"/host/etc/shadow"}`), `ipam.type: Unsupported value: "whereabouts"`, true},
		{"host-local datadir (case variant of dataDir)", tenant(`"ipam":{"type":"host-local","datadir":"/etc","ranges":[[{"subnet":"10.9.0.0/24"}]]}`), `ipam.datadir: Forbidden`, true},
		{"keys differing only in case (gateway, Gateway)", tenant(`"ipam":{"type":"host-local","ranges":[[{"subnet":"10.9.0.0/24","gateway":"10.9.0.1","Gateway":"10.9.0.2"}]]}`), "differ only in case", true},
		{"a claim's own policy", tenant(`"policy":{"claimMaySet":["vlan","trust"]},"trust":true`), "only a DeviceClass config may set policy", true},
		{"MTU above the class's policy.maxMTU", n.tenantClaim(0, vfConfig(`"policy":{"maxMTU":1500}`), vfConfig(`"mtu":9000`)), "policy.maxMTU", true},
	}
	var claims []*resourceapi.ResourceClaim
	claims = append(claims, held)
	for i, tc := range cases {
		tc.claim.UID = types.UID(fmt.Sprintf("bad00000-0000-4000-8000-%012d", i))
		tc.claim.Name = fmt.Sprintf("bad-%d", i)
		claims = append(claims, tc.claim)
	}
	dm := startPrepared(t, ctx, n, newAPI(claims...), held)
	before := n.view(t, dm.pf)
	leftBefore := strings.Join(n.leftovers(t), ",")
	calls := len(dm.pf.fake.MutatingCalls())
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg, _, err := dm.prepare(ctx, tc.claim)
			result := ""
			if err != nil {
				// Refused by the kubelet plugin library before the driver.
				msg = err.Error()
			}
			switch {
			case msg == "":
				t.Errorf("accepted")
				result = "FAIL: accepted"
				_, _ = dm.unprepare(context.Background(), tc.claim)
			case !strings.Contains(msg, tc.want):
				t.Errorf("error %q does not mention %q", msg, tc.want)
				result = "FAIL: error does not name " + tc.want + ": " + msg
			}
			if after := n.view(t, dm.pf); mustJSON(after) != mustJSON(before) {
				t.Errorf("host changed: %s -> %s", mustJSON(before), mustJSON(after))
				result = "FAIL: host changed"
			}
			if got := len(dm.pf.fake.MutatingCalls()); got != calls {
				t.Errorf("%d PF netlink changes", got-calls)
				result = "FAIL: PF changed"
			}
			if l := strings.Join(n.leftovers(t), ","); l != leftBefore {
				t.Errorf("left: %s", l)
				result = "FAIL: left " + l
			}
			if cs := dm.d.State().Claims(); len(cs) != 1 {
				t.Errorf("%d claims recorded, want only the holder", len(cs))
				result = "FAIL: recorded"
			}
			if result == "" {
				// The node's random ID and host ifindexes vary by run.
				msg = strings.ReplaceAll(msg, "rl"+n.ID, "rl<id>")
				msg = ifindexRE.ReplaceAllString(msg, "(index <n>)")
				result = "refused, host unchanged: " + shorten(msg)
			}
			table := "input"
			if tc.tenant {
				table = "tenant"
			}
			results.add(table, fmt.Sprintf("%02d", i), tc.name, result)
		})
	}
	results.complete("input")
	results.complete("tenant")
}

// setLinkMAC sets the MAC of the host link name (one the test made).
func setLinkMAC(t *testing.T, name, mac string) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetHardwareAddr(l, hw); err != nil {
		t.Fatalf("set the MAC of %s: %v", name, err)
	}
}

var ifindexRE = regexp.MustCompile(`\(index [0-9]+\)`)

// shorten keeps the part of an error after the claim/device prefix.
func shorten(msg string) string {
	if i := strings.Index(msg, "device pci-"); i >= 0 {
		if j := strings.Index(msg[i:], ": "); j >= 0 {
			msg = msg[i+j+2:]
		}
	}
	msg = strings.ReplaceAll(msg, "bad00000-0000-4000-8000-", "")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}

// shareIOMMUGroup lists the PCI function other in the IOMMU group of dev
// in the fixture sysfs under root, the way the kernel lists the members of
// a group.
func shareIOMMUGroup(t *testing.T, root, dev, other string) {
	t.Helper()
	group, err := filepath.EvalSymlinks(filepath.Join(root, "sys/bus/pci/devices", dev, "iommu_group"))
	if err != nil {
		t.Fatal(err)
	}
	target, err := filepath.EvalSymlinks(filepath.Join(root, "sys/bus/pci/devices", other))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(group, "devices", other)); err != nil {
		t.Fatal(err)
	}
}
