package nri

import (
	"context"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
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
