//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const vfClass = "vf-ethernet.sriov.dra.dev"

// vfSelector picks VFs of the simulated Ethernet PF on NUMA node 0 by CEL on
// our attributes.
const vfSelector = `device.attributes['sriov.dra.dev'].linkType == 'ethernet' &&
device.attributes['sriov.dra.dev'].pfName == 'sdpf0' &&
device.attributes['sriov.dra.dev'].numaNode == 0`

// 0. The cluster itself: a plain pod (no claim) runs from the imported image.
func TestPlainPod(t *testing.T) {
	e := setup(t)
	e.pod(t, "plain", "")
	e.waitRunning(t, "plain", 60*time.Second)
	if out := e.exec(t, "plain", "echo", "hello"); strings.TrimSpace(out) != "hello" {
		t.Fatalf("exec output %q", out)
	}
}

// 1. The ResourceSlice lists the simulated VFs and the passthrough PF with
// the documented attributes; the PF that has VFs is not offered whole.
func TestResourceSlice(t *testing.T) {
	e := setup(t)
	devs := publishedDevices(t, e.cs)
	byIf := map[string]resourceapi.Device{}
	for _, d := range devs {
		byIf[strAttr(d, "ifName")] = d
	}
	for i := 0; i < simVFs; i++ {
		name := fmt.Sprintf("%s%d", simVFPrefix, i)
		d, ok := byIf[name]
		if !ok {
			t.Errorf("VF %s not published; devices: %v", name, keys(devs))
			continue
		}
		want := map[string]string{"kind": "vf", "pfName": simPF, "linkType": "ethernet", "vendor": "8086",
			"deviceID": "1889", "driver": "iavf", "pfPciAddress": "0000:3b:00.0"}
		for k, v := range want {
			if got := strAttr(d, k); got != v {
				t.Errorf("%s: attribute %s = %q, want %q", name, k, got, v)
			}
		}
		wantPCI := fmt.Sprintf("0000:3b:00.%d", i+1)
		if strAttr(d, "pciAddress") != wantPCI || d.Name != "pci-0000-3b-00-"+fmt.Sprint(i+1) {
			t.Errorf("%s: device %s pciAddress %q, want %s", name, d.Name, strAttr(d, "pciAddress"), wantPCI)
		}
		if a := d.Attributes["sriov.dra.dev/vfIndex"]; a.IntValue == nil || *a.IntValue != int64(i) {
			t.Errorf("%s: vfIndex %v, want %d", name, a.IntValue, i)
		}
		if a := d.Attributes["sriov.dra.dev/numaNode"]; a.IntValue == nil || *a.IntValue != 0 {
			t.Errorf("%s: numaNode %v, want 0", name, a.IntValue)
		}
		if a := d.Attributes["resource.kubernetes.io/pcieRoot"]; a.StringValue == nil || *a.StringValue == "" {
			t.Errorf("%s: no resource.kubernetes.io/pcieRoot", name)
		}
	}
	pf, ok := byIf[simPassPF]
	if !ok || strAttr(pf, "kind") != "pf" {
		t.Errorf("PF %s (no VFs, in PASSTHROUGH_PFS) not published as kind pf", simPassPF)
	}
	if _, ok := byIf[simPF]; ok {
		t.Errorf("PF %s has VFs enabled but is published whole", simPF)
	}
	if len(devs) != simVFs+1 {
		t.Errorf("%d devices published, want %d: %v", len(devs), simVFs+1, keys(devs))
	}
}

func keys[M ~map[string]V, V any](m M) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}

// 2 + 3. A pod with a CEL-selected VF sees it as net1 with the host-local
// address; the claim's networkData matches; deleting the pod returns the
// link under its original name and frees the address for the next pod.
func TestVFInPodAndBack(t *testing.T) {
	e := setup(t)
	// A one-address range: the second pod can only get it if the first freed it.
	e.template(t, "vf", vfClass, vfSelector, config("VfConfig", map[string]any{
		"ifName": "net1",
		"ipam":   hostLocal("192.168.50.0/24", "192.168.50.7", "192.168.50.7"),
	}))
	e.pod(t, "first", "vf")
	e.waitRunning(t, "first", 90*time.Second)
	claim := e.claimOf(t, "first")
	device, hostIf := allocatedIfName(t, e.cs, claim)
	if !strings.HasPrefix(hostIf, simVFPrefix) {
		t.Fatalf("allocated %s (netdev %q), want a VF of %s", device, hostIf, simPF)
	}
	if _, err := netlink.LinkByName(hostIf); err == nil {
		t.Errorf("%s is still in the host netns while the pod runs", hostIf)
	}
	out := e.exec(t, "first", "ip", "-o", "-4", "addr", "show")
	addrs := podIPv4(out, "net1")
	if !slices.Equal(addrs, []string{"192.168.50.7/24"}) {
		t.Fatalf("net1 in the pod has %v, want [192.168.50.7/24]\n%s", addrs, out)
	}
	mac := strings.Fields(e.exec(t, "first", "cat", "/sys/class/net/net1/address"))[0]

	// networkData in the claim status, written by the driver after attach.
	st := e.waitNetworkData(t, claim.Name, device)
	nd := st.NetworkData
	if st.Driver != driverName || nd.InterfaceName != "net1" || !slices.Contains(nd.IPs, "192.168.50.7/24") ||
		!strings.EqualFold(nd.HardwareAddress, mac) {
		t.Errorf("claim networkData = %+v (driver %s); pod sees net1 %s with %v", *nd, st.Driver, mac, addrs)
	}

	e.deletePod(t, "first")
	waitFor(t, 30*time.Second, hostIf+" back on the host", func() (bool, error) {
		_, err := netlink.LinkByName(hostIf)
		return err == nil, nil
	})
	l, _ := netlink.LinkByName(hostIf)
	if a, _ := netlink.AddrList(l, netlink.FAMILY_V4); len(a) != 0 {
		t.Errorf("%s came back with addresses %v", hostIf, a)
	}

	e.pod(t, "second", "vf")
	e.waitRunning(t, "second", 90*time.Second)
	if got := podIPv4(e.exec(t, "second", "ip", "-o", "-4", "addr", "show"), "net1"); !slices.Equal(got, []string{"192.168.50.7/24"}) {
		t.Errorf("second pod got %v, want the freed 192.168.50.7/24", got)
	}
}

// 4. Two pods at once, then more pods than devices: the extra pod stays
// Pending and runs when a device frees up.
func TestMorePodsThanDevices(t *testing.T) {
	e := setup(t)
	e.template(t, "vf", vfClass, vfSelector, config("VfConfig", map[string]any{
		"ipam": hostLocal("192.168.60.0/24", "", ""),
	}))
	for i := 0; i < simVFs; i++ {
		e.pod(t, fmt.Sprintf("p%d", i), "vf")
	}
	used := map[string]string{}
	for i := 0; i < simVFs; i++ {
		name := fmt.Sprintf("p%d", i)
		e.waitRunning(t, name, 120*time.Second)
		dev, _ := allocatedIfName(t, e.cs, e.claimOf(t, name))
		if other, dup := used[dev]; dup {
			t.Fatalf("device %s allocated to %s and %s", dev, other, name)
		}
		used[dev] = name
	}
	e.pod(t, "extra", "vf")
	// The scheduler reports it unschedulable; it must not run.
	waitFor(t, 60*time.Second, "extra pod reported unschedulable", func() (bool, error) {
		p := e.getPod(t, "extra")
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return true, nil
			}
		}
		return false, nil
	})
	time.Sleep(3 * time.Second)
	if p := e.getPod(t, "extra"); p.Status.Phase != corev1.PodPending {
		t.Fatalf("extra pod is %s with all devices taken", p.Status.Phase)
	}
	e.deletePod(t, "p0")
	e.waitRunning(t, "extra", 120*time.Second)
}

// 5. Invalid config: the pod does not start, and a Warning Event on the
// claim names the field.
func TestInvalidConfig(t *testing.T) {
	e := setup(t)
	e.template(t, "bad", vfClass, "", config("VfConfig", map[string]any{"mtu": 10}))
	e.pod(t, "bad", "bad")
	claim := e.claimOf(t, "bad")
	var msg string
	waitFor(t, 90*time.Second, "Warning event on claim "+claim.Name, func() (bool, error) {
		evs, err := e.cs.CoreV1().Events(e.namespace).List(context.Background(), metav1.ListOptions{
			FieldSelector: "involvedObject.kind=ResourceClaim,involvedObject.name=" + claim.Name,
		})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.Type == corev1.EventTypeWarning {
				msg = ev.Message
				return true, nil
			}
		}
		return false, nil
	})
	if !strings.Contains(msg, "mtu") {
		t.Errorf("event %q does not name the field mtu", msg)
	}
	if p := e.getPod(t, "bad"); podReady(p) {
		t.Errorf("pod with an invalid config is running")
	}
	if m := missingHostLinks(); len(m) != 0 {
		t.Errorf("failed prepare left links off the host: %v", m)
	}
}

// restartDriver deletes the driver pod and waits for its replacement.
func (e *env) restartDriver(t *testing.T, wait bool) {
	t.Helper()
	ctx := context.Background()
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=sriov-dra"}
	old, err := e.cs.CoreV1().Pods("sriov-dra").List(ctx, sel)
	if err != nil || len(old.Items) == 0 {
		t.Fatalf("no driver pod: %v", err)
	}
	if err := e.cs.CoreV1().Pods("sriov-dra").Delete(ctx, old.Items[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete driver pod: %v", err)
	}
	if wait {
		e.waitDriverReady(t)
	}
}

// waitDriverReady waits for exactly one driver pod, Ready and not being
// deleted.
func (e *env) waitDriverReady(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=sriov-dra"}
	waitFor(t, 120*time.Second, "a driver pod Ready", func() (bool, error) {
		pods, err := e.cs.CoreV1().Pods("sriov-dra").List(ctx, sel)
		if err != nil {
			return false, err
		}
		if len(pods.Items) != 1 {
			return false, nil
		}
		p := pods.Items[0]
		return p.DeletionTimestamp == nil && podReady(&p), nil
	})
}

// 6. Restarting the driver while a pod runs and while a pod is being
// created: nothing leaks, the pod gets its device, deletion still cleans up.
func TestDriverRestart(t *testing.T) {
	e := setup(t)
	e.template(t, "vf", vfClass, vfSelector, config("VfConfig", map[string]any{
		"ifName": "net1", "ipam": hostLocal("192.168.70.0/24", "", ""),
	}))
	e.pod(t, "running", "vf")
	e.waitRunning(t, "running", 90*time.Second)
	devRunning, ifRunning := allocatedIfName(t, e.cs, e.claimOf(t, "running"))
	e.restartDriver(t, true)
	if got := podIPv4(e.exec(t, "running", "ip", "-o", "-4", "addr", "show"), "net1"); len(got) != 1 {
		t.Errorf("after a driver restart the running pod has net1 %v", got)
	}

	// Restart while a pod is being created.
	e.pod(t, "creating", "vf")
	time.Sleep(300 * time.Millisecond)
	e.restartDriver(t, false)
	e.waitRunning(t, "creating", 180*time.Second)
	// Even when the runtime created the sandbox while no NRI plugin was
	// connected, the container could not start before the restarted
	// driver attached net1 (its CDI spec bind-mounts the device's attach
	// marker, created only after the attach): Running means net1 is there.
	if got := podIPv4(e.exec(t, "creating", "ip", "-o", "-4", "addr", "show"), "net1"); len(got) != 1 {
		t.Errorf("pod created across a driver restart is Running but has net1 %v", got)
	}
	devCreating, ifCreating := allocatedIfName(t, e.cs, e.claimOf(t, "creating"))
	// The container sees its device's marker (read-only), and so does the
	// host, in the folder the CDI spec names.
	e.exec(t, "creating", "cat", "/run/sriov.dra.dev/attached/"+devCreating) // empty; fails if missing
	markers := ""
	if e.cdiDir != "" {
		markers = filepath.Join(filepath.Dir(e.cdiDir), "attached")
		if m, _ := filepath.Glob(filepath.Join(markers, "*-"+devCreating)); len(m) != 1 {
			t.Errorf("attach markers of %s on the host: %v, want one", devCreating, m)
		}
	}

	// Delete only once the new driver is up: a pod deleted while no NRI
	// plugin listens loses its netns with the netdev inside; the simulated
	// node then brings it back as the kernel does a VF (simnode watch) and
	// Unprepare finds it there, which make chaos covers; here the detach
	// from a live netns is the path under test.
	e.waitDriverReady(t)
	e.deletePod(t, "running")
	e.deletePod(t, "creating")
	for _, n := range []string{ifRunning, ifCreating} {
		waitFor(t, 60*time.Second, n+" back on the host", func() (bool, error) {
			_, err := netlink.LinkByName(n)
			return err == nil, nil
		})
	}
	// No CDI spec left behind once every claim is released.
	if e.cdiDir != "" {
		waitFor(t, 30*time.Second, "no CDI specs of released claims", func() (bool, error) {
			m, _ := filepath.Glob(filepath.Join(e.cdiDir, "*sriov*"))
			return len(m) == 0, nil
		})
	}
	// Nor an attach marker.
	if markers != "" {
		waitFor(t, 30*time.Second, "no attach markers of released claims", func() (bool, error) {
			a, _ := filepath.Glob(filepath.Join(markers, "*-"+devRunning))
			b, _ := filepath.Glob(filepath.Join(markers, "*-"+devCreating))
			return len(a)+len(b) == 0, nil
		})
	}
}

// 7. A whole PF through its own DeviceClass: sdpf1, opted in by
// test/cluster/driver.sh (PASSTHROUGH_PFS), unused by the host.
func TestPFPassthrough(t *testing.T) {
	e := setup(t)
	e.template(t, "pf", "pf.sriov.dra.dev", "", config("PfConfig", map[string]any{
		"ifName": "net1",
		"ipam":   map[string]any{"type": "static", "addresses": []map[string]any{{"address": "192.168.80.5/24"}}},
	}))
	e.pod(t, "pf", "pf")
	e.waitRunning(t, "pf", 90*time.Second)
	_, hostIf := allocatedIfName(t, e.cs, e.claimOf(t, "pf"))
	if hostIf != simPassPF {
		t.Fatalf("allocated netdev %q, want %s", hostIf, simPassPF)
	}
	if got := podIPv4(e.exec(t, "pf", "ip", "-o", "-4", "addr", "show"), "net1"); !slices.Equal(got, []string{"192.168.80.5/24"}) {
		t.Errorf("PF in the pod has %v, want [192.168.80.5/24]", got)
	}
	e.deletePod(t, "pf")
	waitFor(t, 30*time.Second, simPassPF+" back on the host", func() (bool, error) {
		_, err := netlink.LinkByName(simPassPF)
		return err == nil, nil
	})
}
