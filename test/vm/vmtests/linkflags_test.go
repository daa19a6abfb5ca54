//go:build vmtest

package vmtests

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/ethtool"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// vfFlags are the link flags, alias, transmit queue length and device
// group of a netdev as the kernel reports them (the ifinfomsg's flags,
// IFLA_IFALIAS, IFLA_TXQLEN, IFLA_GROUP).
type vfFlags struct {
	Promisc, AllMulti, NoARP bool
	Alias                    string
	TxQLen                   int
	Group                    uint32
}

func vfFlagsOf(l netlink.Link) vfFlags {
	a := l.Attrs()
	return vfFlags{
		Promisc:  a.RawFlags&unix.IFF_PROMISC != 0,
		AllMulti: a.RawFlags&unix.IFF_ALLMULTI != 0,
		NoARP:    a.RawFlags&unix.IFF_NOARP != 0,
		Alias:    a.Alias,
		TxQLen:   a.TxQLen,
		Group:    a.Group,
	}
}

// TestDetachRestoresLinkFlagsVF: a pod with NET_ADMIN turns promiscuous
// and all-multicast mode on, ARP off and sets an alias, a transmit queue
// length and a device group on a real igbvf netdev, and turns over the
// offload features igbvf lets it change (checksumming, TSO, GRO, ...)
// and its ring sizes; the detach gives it
// back to the host with the ones it had before the attach, whether it is returned from the pod's netns
// or handed back by the kernel when that netns is deleted.
func TestDetachRestoresLinkFlagsVF(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pf, vf int
		gone   bool
	}{
		{name: "from the pod netns", pf: 0, vf: 3},
		{name: "netns deleted", pf: 1, vf: 3, gone: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := newCtx(t)
			h := hostHandle(t)
			pf, vf := vfFor(t, tc.pf, tc.vf)
			before := readRaw(t, h, pf, vf.Index)
			hl, err := h.LinkByName(vf.IfName)
			if err != nil {
				t.Fatal(err)
			}
			beforeFlags := vfFlagsOf(hl)
			beforeF := vfFeatures(t, "", vf.IfName, hl.Attrs().Index)
			nsName := "vmt-flags"
			nsPath := newNetns(t, nsName)
			spec := podSpec(vf.IfName)
			orig, err := netattach.Attach(ctx, h, nsPath, spec, netattach.Identity{PCIAddress: vf.PCI})
			if err != nil {
				t.Fatalf("attach: %v", err)
			}
			ph, err := nlink.NewAt(nsPath)
			if err != nil {
				t.Fatal(err)
			}
			pl, err := ph.LinkByName(spec.PodIfName)
			if err == nil {
				err = errors.Join(ph.SetPromiscOn(pl), ph.LinkSetAllmulticastOn(pl), ph.LinkSetARPOff(pl), ph.LinkSetAlias(pl, "tenant"),
					ph.LinkSetTxQLen(pl, 42), ph.LinkSetGroup(pl, 7))
			}
			if err == nil {
				pl, err = ph.LinkByName(spec.PodIfName)
			}
			ph.Close()
			if err != nil {
				t.Fatalf("set the tenant's flags in the pod: %v", err)
			}
			if got, want := vfFlagsOf(pl), (vfFlags{Promisc: true, AllMulti: true, NoARP: true, Alias: "tenant", TxQLen: 42, Group: 7}); got != want {
				t.Fatalf("flags in the pod: %+v, want %+v", got, want)
			}

			podF, flipped := flipVFFeatures(t, nsPath, spec.PodIfName, pl.Attrs().Index)
			beforeRings, podRings := changeVFRings(t, nsPath, spec.PodIfName, pl.Attrs().Index)
			if !orig.Rings.Known || orig.Rings.RX != beforeRings.RX || orig.Rings.TX != beforeRings.TX {
				t.Fatalf("Attach recorded rings %+v, igbvf had %+v", orig.Rings, beforeRings)
			}
			t.Logf("the pod flipped %v on igbvf", flipped)
			if podF.Requested == beforeF.Requested {
				t.Fatalf("the pod's features %x are the host's", podF.Requested)
			}

			if tc.gone {
				deleteNetns(t, nsName)
			}
			deadline := time.Now().Add(waitLong)
			for {
				err = netattach.Detach(ctx, h, nsPath, spec.PodIfName, orig)
				if err == nil || !tc.gone || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond) // the kernel returns it asynchronously
			}
			if err != nil {
				t.Fatalf("detach: %v", err)
			}
			waitRaw(t, h, pf, vf.Index, before, waitShort)
			back, err := h.LinkByName(vf.IfName)
			if err != nil {
				t.Fatal(err)
			}
			if got := vfFlagsOf(back); got != beforeFlags {
				t.Errorf("flags on the host after the detach: %+v, want %+v as before the attach", got, beforeFlags)
			}
			if got := vfRings(t, "", vf.IfName, back.Attrs().Index); got != beforeRings {
				t.Errorf("ring sizes on the host after the detach: %+v, want %+v as before the attach (the pod's %+v)", got, beforeRings, podRings)
			}
			if got := vfFeatures(t, "", vf.IfName, back.Attrs().Index); got.Requested != beforeF.Requested {
				t.Errorf("requested offload features on the host after the detach: %x, want %x as before the attach (the pod's %x)", got.Requested, beforeF.Requested, podF.Requested)
			}
		})
	}
}

// vfFeatures reads the offload features of the netdev name (ifindex
// index) in the netns at nsPath ("": this one).
func vfFeatures(t *testing.T, nsPath, name string, index int) ethtool.Features {
	t.Helper()
	c, err := openEthtool(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := c.Features(name, index)
	if err != nil {
		t.Fatalf("offload features of %s: %v", name, err)
	}
	return f
}

func openEthtool(nsPath string) (*ethtool.Conn, error) {
	if nsPath == "" {
		return ethtool.Open()
	}
	return ethtool.OpenAt(nsPath)
}

// flipVFFeatures turns over, as "ethtool -K" in the pod would, those of
// a few common offloads the netdev lets a user change (the others are
// skipped: which ones igbvf offers is its driver's business); it fails
// the test when none can be. It returns the features then, and the
// names flipped.
func flipVFFeatures(t *testing.T, nsPath, name string, index int) (ethtool.Features, []string) {
	t.Helper()
	c, err := openEthtool(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := c.Features(name, index)
	if err != nil {
		t.Fatal(err)
	}
	names, err := c.FeatureNames(name, index)
	if err != nil {
		t.Fatal(err)
	}
	var valid [ethtool.MaxWords]uint32
	var flipped []string
	for _, w := range []string{"tx-checksum-ip-generic", "rx-checksum", "tx-tcp-segmentation", "rx-gro", "tx-scatter-gather"} {
		b := slices.Index(names, w)
		if b < 0 || f.Changeable[b/32]&(1<<(b%32)) == 0 {
			t.Logf("%s cannot change %s", name, w)
			continue
		}
		valid[b/32] |= 1 << (b % 32)
		flipped = append(flipped, w)
	}
	if len(flipped) == 0 {
		t.Fatalf("%s can change none of the offloads tried (changeable bits %v)", name, ethtool.Bits(f.Changeable))
	}
	want := f
	for i := range want.Requested {
		want.Requested[i] ^= valid[i]
	}
	if err := c.SetFeatures(name, index, valid, want); err != nil {
		t.Fatalf("the pod's ethtool -K on %s: %v", name, err)
	}
	got, err := c.Features(name, index)
	if err != nil {
		t.Fatal(err)
	}
	if got.Requested != want.Requested {
		t.Fatalf("requested features on %s in the pod: %x, want %x", name, got.Requested, want.Requested)
	}
	return got, flipped
}

// vfRings reads the ring sizes of the netdev name (ifindex index) in the
// netns at nsPath ("": this one).
func vfRings(t *testing.T, nsPath, name string, index int) ethtool.Rings {
	t.Helper()
	c, err := openEthtool(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Rings(name, index)
	if err != nil {
		t.Fatalf("ring sizes of %s: %v", name, err)
	}
	return r
}

// changeVFRings halves the receive and transmit rings of the netdev in
// the pod ("ethtool -G"; igbvf's floor is 80 descriptors, in steps of 8)
// and returns them before and after.
func changeVFRings(t *testing.T, nsPath, name string, index int) (before, after ethtool.Rings) {
	t.Helper()
	before = vfRings(t, nsPath, name, index)
	half := func(n uint32) uint32 { return max(80, n/2/8*8) }
	want := before
	want.RX, want.TX = half(before.RX), half(before.TX)
	if want.RX == before.RX {
		want.RX = before.RX + 8
	}
	c, err := openEthtool(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetRings(name, index, want); err != nil {
		t.Fatalf("the pod's ethtool -G on %s: %v", name, err)
	}
	after = vfRings(t, nsPath, name, index)
	if after == before {
		t.Fatalf("ring sizes of %s unchanged after setting rx %d tx %d: %+v", name, want.RX, want.TX, after)
	}
	t.Logf("the pod set the rings of %s from rx %d tx %d to rx %d tx %d", name, before.RX, before.TX, after.RX, after.TX)
	return before, after
}
