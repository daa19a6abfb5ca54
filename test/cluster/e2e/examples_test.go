//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/sriov-dra/sriov-dra/pkg/devicesview"
)

// runExample creates the ResourceClaimTemplate and the Pod of
// deployments/examples/<name>.yaml (the template only if it has one) in the test's namespace, unchanged but
// for what the harness needs: the locally imported image (never pulled),
// DNS on this machine, a short grace period; and the example's admin
// DeviceClass if it has one (deleted when the test ends).
func (e *env) runExample(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(repoRoot(t), "deployments", "examples", name+".yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pods, templates int
	for _, u := range decodeObjects(t, path, data) {
		b, _ := json.Marshal(u.Object)
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(b, nil, nil)
		if err != nil {
			t.Fatalf("%s: decode %s: %v", path, u.GetKind(), err)
		}
		switch o := obj.(type) {
		case *resourceapi.DeviceClass:
			if _, err := e.cs.ResourceV1().DeviceClasses().Create(ctx, o, metav1.CreateOptions{}); err != nil {
				t.Fatalf("%s: create DeviceClass: %v", path, err)
			}
			t.Cleanup(func() {
				_ = e.cs.ResourceV1().DeviceClasses().Delete(context.Background(), o.Name, metav1.DeleteOptions{})
			})
		case *resourceapi.ResourceClaimTemplate:
			o.Namespace = e.namespace
			if _, err := e.cs.ResourceV1().ResourceClaimTemplates(e.namespace).Create(ctx, o, metav1.CreateOptions{}); err != nil {
				t.Fatalf("%s: create ResourceClaimTemplate: %v", path, err)
			}
			templates++
		case *corev1.Pod:
			o.Namespace = e.namespace
			grace := int64(2)
			o.Spec.TerminationGracePeriodSeconds = &grace
			o.Spec.DNSPolicy = corev1.DNSNone
			o.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"127.0.0.1"}}
			for i := range o.Spec.Containers {
				o.Spec.Containers[i].Image = e.image
				o.Spec.Containers[i].ImagePullPolicy = corev1.PullNever
			}
			if _, err := e.cs.CoreV1().Pods(e.namespace).Create(ctx, o, metav1.CreateOptions{}); err != nil {
				t.Fatalf("%s: create Pod: %v", path, err)
			}
			pods++
		default:
			t.Fatalf("%s: unexpected %T", path, obj)
		}
	}
	if pods != 1 || templates > 1 {
		t.Fatalf("%s: %d pods and %d templates, want one pod and at most one template", path, pods, templates)
	}
}

// sriovDRA runs bin/sriov-dra against the cluster.
func (e *env) sriovDRA(t *testing.T, args ...string) string {
	t.Helper()
	bin := os.Getenv("E2E_BINARY")
	if bin == "" {
		bin = filepath.Join(repoRoot(t), "bin", "sriov-dra")
	}
	cmd := exec.Command(bin, append(args, "--kubeconfig", e.config)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s%s", bin, args, err, out.String(), stderr.String())
	}
	return out.String()
}

// 10 + 11. Two examples from deployments/examples run as they are on the
// simulated node (ethernet-vf: a VF with host-local IPAM, MTU and a route;
// pf-passthrough: a whole PF with a static address). The other examples
// need what the simulated node lacks (a PF named ens2f0 with VF VLAN and
// trust, InfiniBand, vfio-pci, the static CPU manager); TestManifestsDryRun
// covers them as manifests and make vmtest covers the VF settings on real
// VFs. While the pods hold their devices, `sriov-dra devices` shows them
// with their holders and the other devices free, as a table and as JSON.
func TestExamplesAndDevicesCommand(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	e.runExample(t, "ethernet-vf")
	e.runExample(t, "pf-passthrough")
	e.waitRunning(t, "ethernet-vf", 90*time.Second)
	e.waitRunning(t, "pf-passthrough", 90*time.Second)

	// ethernet-vf: net1 with an address from 192.168.100.10-200, MTU 1500
	// and the route to 192.168.0.0/16; it was there before the container
	// started (the example's `ip addr` at start logged it).
	out := e.exec(t, "ethernet-vf", "ip", "-o", "-4", "addr", "show")
	addrs := podIPv4(out, "net1")
	if len(addrs) != 1 {
		t.Fatalf("ethernet-vf: net1 has %v\n%s", addrs, out)
	}
	p, err := netip.ParsePrefix(addrs[0])
	if err != nil || p.Bits() != 24 || p.Addr().Compare(netip.MustParseAddr("192.168.100.10")) < 0 ||
		p.Addr().Compare(netip.MustParseAddr("192.168.100.200")) > 0 {
		t.Errorf("ethernet-vf: net1 address %s, want one of 192.168.100.10-200/24", addrs[0])
	}
	if mtu := strings.TrimSpace(e.exec(t, "ethernet-vf", "cat", "/sys/class/net/net1/mtu")); mtu != "1500" {
		t.Errorf("ethernet-vf: net1 MTU %s, want 1500", mtu)
	}
	if routes := e.exec(t, "ethernet-vf", "ip", "-4", "route", "show", "dev", "net1"); !strings.Contains(routes, "192.168.0.0/16") {
		t.Errorf("ethernet-vf: no route to 192.168.0.0/16 on net1:\n%s", routes)
	}
	logs, err := e.cs.CoreV1().Pods(e.namespace).GetLogs("ethernet-vf", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil || !strings.Contains(string(logs), "net1") {
		t.Errorf("ethernet-vf: the container's first `ip addr` does not show net1 (%v):\n%s", err, logs)
	}

	// pf-passthrough: the whole PF as net1 with its static address.
	if got := podIPv4(e.exec(t, "pf-passthrough", "ip", "-o", "-4", "addr", "show"), "net1"); !slices.Equal(got, []string{"192.168.200.10/24"}) {
		t.Errorf("pf-passthrough: net1 has %v, want [192.168.200.10/24]", got)
	}

	// What each pod holds, from the claims.
	type holding struct{ pod, claim string }
	held := map[string]holding{} // device -> holder
	for _, pod := range []string{"ethernet-vf", "pf-passthrough"} {
		c := e.claimOf(t, pod)
		dev, _ := allocatedIfName(t, e.cs, c)
		held[dev] = holding{pod, c.Name}
	}
	published := publishedDevices(t, e.cs)

	t.Run("table", func(t *testing.T) {
		out := e.sriovDRA(t, "devices")
		t.Logf("sriov-dra devices:\n%s", out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) == 0 || !strings.HasPrefix(lines[0], "NODE") {
			t.Fatalf("no table header:\n%s", out)
		}
		header := strings.Fields(lines[0])
		col := func(name string) int { return slices.Index(header, name) }
		rows := map[string][]string{}
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			if len(f) == len(header) {
				rows[f[col("DEVICE")]] = f
			}
		}
		for dev := range published {
			r, ok := rows[dev]
			if !ok {
				t.Errorf("published device %s is not listed", dev)
				continue
			}
			ns, pod, claim := r[col("NAMESPACE")], r[col("POD")], r[col("CLAIM")]
			if h, isHeld := held[dev]; isHeld {
				if ns != e.namespace || pod != h.pod || claim != h.claim {
					t.Errorf("%s: holder %s/%s claim %s, want %s/%s claim %s", dev, ns, pod, claim, e.namespace, h.pod, h.claim)
				}
			} else if ns != "-" || pod != "-" || claim != "-" {
				t.Errorf("%s is free but shows holder %s/%s claim %s", dev, ns, pod, claim)
			}
			if r[col("NODE")] != nodeName {
				t.Errorf("%s: node %s, want %s", dev, r[col("NODE")], nodeName)
			}
		}
		if len(rows) != len(published) {
			t.Errorf("%d rows, %d published devices", len(rows), len(published))
		}
		if want := "5 devices: 2 allocated, 3 free"; !strings.Contains(out, want) {
			t.Errorf("summary line missing %q", want)
		}
	})

	t.Run("json", func(t *testing.T) {
		var v devicesview.View
		out := e.sriovDRA(t, "devices", "-o", "json", "--node", nodeName)
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("decode -o json: %v\n%s", err, out)
		}
		if v.Driver != driverName || v.Total != len(published) || v.Allocated != len(held) || v.Free != len(published)-len(held) {
			t.Errorf("json: driver %s, %d total, %d allocated, %d free; want %s, %d, %d, %d",
				v.Driver, v.Total, v.Allocated, v.Free, driverName, len(published), len(held), len(published)-len(held))
		}
		for _, d := range v.Devices {
			pub, ok := published[d.Device]
			if !ok || !d.Published {
				t.Errorf("json lists %s (published=%v), not in the ResourceSlice", d.Device, d.Published)
				continue
			}
			if d.Kind != strAttr(pub, "kind") || d.PCIAddress != strAttr(pub, "pciAddress") {
				t.Errorf("%s: kind %q pci %q, slice says %q %q", d.Device, d.Kind, d.PCIAddress, strAttr(pub, "kind"), strAttr(pub, "pciAddress"))
			}
			h, isHeld := held[d.Device]
			switch {
			case isHeld && (d.Holder == nil || d.Holder.Namespace != e.namespace || d.Holder.Claim != h.claim || !slices.Equal(d.Holder.Pods, []string{h.pod})):
				t.Errorf("%s: holder %+v, want %s/%s claim %s", d.Device, d.Holder, e.namespace, h.pod, h.claim)
			case !isHeld && d.Holder != nil:
				t.Errorf("%s is free but has holder %+v", d.Device, d.Holder)
			}
		}
	})
}
