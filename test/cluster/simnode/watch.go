package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The kernel hands a physical netdev back to the init netns when the
// netns it was in dies: down, with the MAC, MTU and ifindex it had there,
// under its name from that netns, or dev<ifindex> when the host has that
// name already. A veth standing in for a VF is destroyed with its netns
// instead, peer and all. watch makes the simulated node behave like the
// kernel: when a netdev's host peer disappears, it re-creates the pair as
// the kernel would have returned the netdev, with both ifindexes kept,
// so the identity the driver matches a veth on (the host peer's ifindex,
// pkg/netattach Identity.HostPeerIndex) and the fixture's ifindex files
// stay true.

// simDev is one simulated netdev as last seen, wherever it is.
type simDev struct {
	orig      string // name on the host (and the fixture's)
	index     int    // the netdev's ifindex
	peerIndex int    // the host peer <orig>p's ifindex
	name      string // current name (in the pod: the pod's name for it)
	mac       net.HardwareAddr
	mtu       int
}

// watcher tracks the simulated netdevs of one host netns.
type watcher struct {
	hostNS netns.NsHandle
	h      *netlink.Handle
	devs   []*simDev
	logf   func(format string, args ...any)
}

func newWatcher(hostNS netns.NsHandle, names []string, logf func(string, ...any)) (*watcher, error) {
	h, err := netlink.NewHandleAt(hostNS)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in the host netns: %w", err)
	}
	w := &watcher{hostNS: hostNS, h: h, logf: logf}
	for _, n := range names {
		peer, err := h.LinkByName(n + peerSuffix)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("host peer %s%s of simulated netdev %s: %w", n, peerSuffix, n, err)
		}
		d := &simDev{orig: n, peerIndex: peer.Attrs().Index, index: peer.Attrs().ParentIndex, name: n, mtu: peer.Attrs().MTU}
		if l, err := h.LinkByIndex(d.index); err == nil && l.Attrs().Name == n {
			d.mac, d.mtu = l.Attrs().HardwareAddr, l.Attrs().MTU
		}
		w.devs = append(w.devs, d)
	}
	return w, nil
}

func (w *watcher) Close() { w.h.Close() }

// run follows the netdevs until ctx ends: their renames, MAC and MTU
// changes in any netns the host has an id for (NETLINK_LISTEN_ALL_NSID),
// and re-creates a pair whose host peer is gone. ready is closed once the
// subscription is open.
func (w *watcher) run(ctx context.Context, ready chan<- struct{}) error {
	sock, err := nl.SubscribeAt(w.hostNS, netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_LINK)
	if err != nil {
		return fmt.Errorf("subscribe to link events: %w", err)
	}
	if err := unix.SetsockoptInt(sock.GetFd(), unix.SOL_NETLINK, unix.NETLINK_LISTEN_ALL_NSID, 1); err != nil {
		sock.Close()
		return fmt.Errorf("listen to the link events of every netns: %w", err)
	}
	// Receive blocks; a timeout lets the reader see ctx end.
	if err := sock.SetReceiveTimeout(&unix.Timeval{Usec: 200000}); err != nil {
		sock.Close()
		return err
	}
	events := make(chan netlink.Link, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer sock.Close()
		for ctx.Err() == nil {
			msgs, _, err := sock.Receive()
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				if errors.Is(err, unix.ENOBUFS) {
					// Lost events: the periodic check still re-creates
					// what is gone, with the last state seen.
					w.logf("link events overflowed; some renames may have been missed")
					continue
				}
				w.logf("receive link events: %v", err)
				return
			}
			for _, m := range msgs {
				if m.Header.Type != unix.RTM_NEWLINK {
					continue
				}
				hdr := unix.NlMsghdr(m.Header)
				l, err := netlink.LinkDeserialize(&hdr, m.Data)
				if err != nil {
					continue
				}
				select {
				case events <- l:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	close(ready)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return nil
		case l := <-events:
			w.seen(l)
		case <-tick.C:
			// Events already queued describe the netdev's last state.
			for drained := false; !drained; {
				select {
				case l := <-events:
					w.seen(l)
				default:
					drained = true
				}
			}
			w.check()
		}
	}
}

// seen records the state of a link event that is one of the netdevs.
func (w *watcher) seen(l netlink.Link) {
	a := l.Attrs()
	if l.Type() != "veth" {
		return
	}
	for _, d := range w.devs {
		if a.Index == d.index && a.ParentIndex == d.peerIndex {
			d.name, d.mtu = a.Name, a.MTU
			if len(a.HardwareAddr) > 0 {
				d.mac = a.HardwareAddr
			}
			return
		}
	}
}

// check re-creates every pair whose host peer is gone.
func (w *watcher) check() {
	for _, d := range w.devs {
		if _, err := w.h.LinkByIndex(d.peerIndex); err == nil {
			continue
		} else if !isNotFound(err) {
			w.logf("look up host peer %s%s (ifindex %d): %v", d.orig, peerSuffix, d.peerIndex, err)
			continue
		}
		if err := w.restore(d); err != nil {
			w.logf("%s: %v", d.orig, err)
		}
	}
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// returnName is the name the kernel gives a netdev it returns: its name
// in the dying netns if the host does not have it, else dev<ifindex>,
// else the first free dev<N>.
func (w *watcher) returnName(d *simDev) string {
	free := func(n string) bool {
		_, err := w.h.LinkByName(n)
		return isNotFound(err)
	}
	if d.name != "" && free(d.name) {
		return d.name
	}
	if n := fmt.Sprintf("dev%d", d.index); free(n) {
		return n
	}
	for i := 0; ; i++ {
		if n := fmt.Sprintf("dev%d", i); free(n) {
			return n
		}
	}
}

// restore re-creates d's pair as the kernel would have returned d.
func (w *watcher) restore(d *simDev) error {
	name := w.returnName(d)
	err := w.addPair(name, d, d.index, d.peerIndex)
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EBUSY) {
		// An ifindex was taken meanwhile: the netdev comes back as a
		// different device (as after a hot-unplug and replug); the driver
		// must not take it for the one it recorded.
		w.logf("%s: ifindex %d or %d taken; re-creating it with new ones (a new identity)", d.orig, d.index, d.peerIndex)
		err = w.addPair(name, d, 0, 0)
	}
	if err != nil {
		return fmt.Errorf("re-create veth pair %s/%s%s: %w", name, d.orig, peerSuffix, err)
	}
	peer, err := w.h.LinkByName(d.orig + peerSuffix)
	if err != nil {
		return fmt.Errorf("find re-created host peer %s%s: %w", d.orig, peerSuffix, err)
	}
	if err := w.h.LinkSetUp(peer); err != nil {
		return fmt.Errorf("set %s up: %w", peer.Attrs().Name, err)
	}
	d.peerIndex, d.index, d.name = peer.Attrs().Index, peer.Attrs().ParentIndex, name
	w.logf("netdev %s came back to the host as %s (ifindex %d, MAC %s, MTU %d, down; host peer %s%s ifindex %d)",
		d.orig, name, d.index, d.mac, d.mtu, d.orig, peerSuffix, d.peerIndex)
	return nil
}

// addPair creates veth name (down, d's MAC and MTU) with host peer
// <orig>p, at the given ifindexes (0: the kernel picks). The netlink
// library cannot set a veth peer's ifindex, so the request is built here.
func (w *watcher) addPair(name string, d *simDev, index, peerIndex int) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	if len(d.mac) > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, d.mac))
	}
	if d.mtu > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(d.mtu))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	peer := data.AddRtAttr(nl.VETH_INFO_PEER, nil)
	pmsg := nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	pmsg.Index = int32(peerIndex)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(d.orig+peerSuffix))
	if d.mtu > 0 {
		peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(d.mtu)))
	}
	req.AddData(info)

	s, err := nl.GetNetlinkSocketAt(w.hostNS, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket in the host netns: %w", err)
	}
	defer s.Close()
	if err := s.Send(req); err != nil {
		return err
	}
	for {
		msgs, _, err := s.Receive()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || m.Header.Seq != req.Seq {
				continue
			}
			errno := int32(nl.NativeEndian().Uint32(m.Data[0:4]))
			if errno == 0 {
				return nil
			}
			return syscall.Errno(-errno)
		}
	}
}

// watch runs the watcher on this process's netns until SIGTERM/SIGINT
// (ctx), for the topology's netdevs.
func watch(ctx context.Context, vfs int) error {
	host, err := netns.Get()
	if err != nil {
		return fmt.Errorf("open this process's netns: %w", err)
	}
	defer host.Close()
	w, err := newWatcher(host, netdevs(Topology(vfs)), log.Printf)
	if err != nil {
		return err
	}
	defer w.Close()
	log.Printf("watching %d simulated netdevs; a netdev whose netns dies comes back to the host", len(w.devs))
	return w.run(ctx, make(chan struct{}))
}
