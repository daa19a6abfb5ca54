//go:build e2e

package e2e

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vishvananda/netlink"
)

// A pod written for sriov-network-device-plugin (deployments/examples/
// device-plugin-resource.yaml: resources.limits intel.com/sriov_netdevice,
// no resourceClaims) gets a VF through the DeviceClass whose
// extendedResourceName is that name: the scheduler makes the claim, the
// VF is net1 with an address from the class's host-local range, and the
// container sees PCIDEVICE_INTEL_COM_SRIOV_NETDEVICE with the VF's PCI
// address. Deleting the pod returns the VF to the host.
func TestExtendedResourcePod(t *testing.T) {
	e := setup(t)
	requireFeature(t, e, "DRAExtendedResource", "pods that ask for a VF through resources.limits (extended resources)")
	ctx := context.Background()
	const pod = "device-plugin-resource"
	e.runExample(t, pod)
	e.waitRunning(t, pod, 90*time.Second)

	p := e.getPod(t, pod)
	if len(p.Spec.ResourceClaims) != 0 {
		t.Fatalf("pod has resourceClaims %v; the example must use resources.limits only", p.Spec.ResourceClaims)
	}
	st := p.Status.ExtendedResourceClaimStatus
	if st == nil || st.ResourceClaimName == "" {
		t.Fatalf("pod status has no extendedResourceClaimStatus: %+v", p.Status)
	}
	claim, err := e.cs.ResourceV1().ResourceClaims(e.namespace).Get(ctx, st.ResourceClaimName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get the scheduler's claim %s: %v", st.ResourceClaimName, err)
	}
	if claim.Annotations[resourceapi.ExtendedResourceClaimAnnotation] != "true" {
		t.Errorf("claim %s lacks annotation %s", claim.Name, resourceapi.ExtendedResourceClaimAnnotation)
	}
	device, hostIf := allocatedIfName(t, e.cs, claim)
	if !strings.HasPrefix(hostIf, simVFPrefix) {
		t.Fatalf("allocated %s (netdev %q), want a VF of %s", device, hostIf, simPF)
	}
	pci := strAttr(publishedDevices(t, e.cs)[device], "pciAddress")
	if pci == "" {
		t.Fatalf("device %s publishes no pciAddress", device)
	}

	out := e.exec(t, pod, "ip", "-o", "-4", "addr", "show")
	addrs := podIPv4(out, "net1")
	if len(addrs) != 1 {
		t.Fatalf("net1 has %v, want one address from the class's range\n%s", addrs, out)
	}
	a, err := netip.ParsePrefix(addrs[0])
	if err != nil || a.Bits() != 24 || a.Addr().Compare(netip.MustParseAddr("192.168.110.10")) < 0 ||
		a.Addr().Compare(netip.MustParseAddr("192.168.110.200")) > 0 {
		t.Errorf("net1 address %s, want one of 192.168.110.10-200/24 (the class's IPAM)", addrs[0])
	}
	if env := strings.TrimSpace(e.exec(t, pod, "sh", "-c", "echo \"$PCIDEVICE_INTEL_COM_SRIOV_NETDEVICE\"")); env != pci {
		t.Errorf("PCIDEVICE_INTEL_COM_SRIOV_NETDEVICE = %q in the container, want %q", env, pci)
	}
	if env := strings.TrimSpace(e.exec(t, pod, "sh", "-c", "echo \"$SRIOV_DRA_CONTAINER_0_REQUEST_0_PCI_ADDRESS\"")); env != pci {
		t.Errorf("SRIOV_DRA_CONTAINER_0_REQUEST_0_PCI_ADDRESS = %q, want %q (the driver's own variables stay)", env, pci)
	}

	e.deletePod(t, pod)
	waitFor(t, 30*time.Second, hostIf+" back on the host", func() (bool, error) {
		_, err := netlink.LinkByName(hostIf)
		return err == nil, nil
	})
	l, _ := netlink.LinkByName(hostIf)
	if as, _ := netlink.AddrList(l, netlink.FAMILY_V4); len(as) != 0 {
		t.Errorf("%s came back with addresses %v", hostIf, as)
	}
}
