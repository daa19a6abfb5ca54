package nri

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/ethtool"
)

// A pod with NET_ADMIN turned on promiscuous and all-multicast mode,
// turned ARP off and set an alias on its netdev; the daemon died in the
// middle of the detach, right after the netdev came back to the host
// under its own name (MAC and MTU restored, flags not yet). The next
// sandbox's attach reads the host netdev again, and it looks unchanged
// but for its flags: the flags recorded at Prepare are kept, so the
// detach restores those and not the pod's. Real netns and veth (root).
func TestFromKernelKeepsPreparedLinkFlags(t *testing.T) {
	w := fromKernelWorld(t)
	ctx := context.Background()
	pod := w.pod("f", 1)
	d := w.devs.ForPod(pod.Uid)[0]
	stop := runPlugin(t, w.plugin())
	if err := w.rt.runPod(ctx, pod); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	w.checkInPod(pod)
	ns := filepath.Base(netnsOf(pod))
	run(t, "ip", "-netns", ns, "link", "set", "dev", d.Spec.PodIfName, "promisc", "on", "allmulticast", "on", "arp", "off", "alias", "tenant")

	// The crash, after the move back under the host name.
	stop()
	w.devs.restart(pod.Uid)
	run(t, "ip", "-netns", ns, "link", "set", "dev", d.Spec.PodIfName, "down")
	run(t, "ip", "-netns", ns, "link", "set", "dev", d.Spec.PodIfName, "address", d.Original.MAC, "mtu", "1500")
	moveToHost(t, mustNs(t, netnsOf(pod)), d.Spec.PodIfName)
	run(t, "ip", "link", "set", "dev", d.Spec.PodIfName, "name", d.Spec.HostIfName)
	w.rt.forget(pod)

	w.restartInNewSandbox(ctx, pod, "f2")
	l, _ := linkIn(t, "", d.Spec.HostIfName)
	if l == nil {
		t.Fatalf("%s not on the host", d.Spec.HostIfName)
	}
	a := l.Attrs()
	if a.RawFlags&(unix.IFF_PROMISC|unix.IFF_ALLMULTI|unix.IFF_NOARP) != 0 || a.Alias != "" {
		t.Errorf("%s on the host after the detach: flags %#x alias %q, want promisc, allmulticast and noarp off and no alias, as at Prepare", d.Spec.HostIfName, a.RawFlags, a.Alias)
	}
}

// The same crash with the offload features: the pod turned some over
// ("ethtool -K"), the netdev came back to the host under its own name
// with them. The next sandbox's attach keeps the features recorded at
// Prepare, and its detach puts those back, not the pod's.
func TestFromKernelKeepsPreparedFeatures(t *testing.T) {
	w := fromKernelWorld(t)
	ctx := context.Background()
	pod := w.pod("g", 1)
	d := w.devs.ForPod(pod.Uid)[0]
	if d.Original == nil || d.Original.Features.Count == 0 {
		t.Fatalf("Prepare recorded no offload features: %+v", d.Original)
	}
	prepared := d.Original.Features
	stop := runPlugin(t, w.plugin())
	if err := w.rt.runPod(ctx, pod); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	w.checkInPod(pod)
	pl, _ := linkIn(t, netnsOf(pod), d.Spec.PodIfName)
	if pl == nil {
		t.Fatalf("%s not in the pod", d.Spec.PodIfName)
	}
	c, err := ethtool.OpenAt(netnsOf(pod))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	podF, err := c.Features(d.Spec.PodIfName, pl.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	names, err := c.FeatureNames(d.Spec.PodIfName, pl.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	var valid [ethtool.MaxWords]uint32
	for _, n := range []string{"tx-checksum-ip-generic", "rx-gro"} {
		if b := slices.Index(names, n); b >= 0 && podF.Changeable[b/32]&(1<<(b%32)) != 0 {
			valid[b/32] |= 1 << (b % 32)
			podF.Requested[b/32] ^= 1 << (b % 32)
		}
	}
	if valid == ([ethtool.MaxWords]uint32{}) {
		t.Fatal("the veth can change neither tx-checksumming nor GRO")
	}
	if err := c.SetFeatures(d.Spec.PodIfName, pl.Attrs().Index, valid, podF); err != nil {
		t.Fatal(err)
	}

	// The crash, after the move back under the host name.
	stop()
	w.devs.restart(pod.Uid)
	run(t, "ip", "-netns", filepath.Base(netnsOf(pod)), "link", "set", "dev", d.Spec.PodIfName, "down")
	run(t, "ip", "-netns", filepath.Base(netnsOf(pod)), "link", "set", "dev", d.Spec.PodIfName, "address", d.Original.MAC, "mtu", "1500")
	moveToHost(t, mustNs(t, netnsOf(pod)), d.Spec.PodIfName)
	run(t, "ip", "link", "set", "dev", d.Spec.PodIfName, "name", d.Spec.HostIfName)
	w.rt.forget(pod)

	w.restartInNewSandbox(ctx, pod, "g2")
	l, _ := linkIn(t, "", d.Spec.HostIfName)
	if l == nil {
		t.Fatalf("%s not on the host", d.Spec.HostIfName)
	}
	h, err := ethtool.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	got, err := h.Features(d.Spec.HostIfName, l.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	if got.Requested != prepared.Requested {
		t.Errorf("%s on the host after the detach: requested features %x, want %x as at Prepare (the pod's %x)", d.Spec.HostIfName, got.Requested, prepared.Requested, podF.Requested)
	}
}
