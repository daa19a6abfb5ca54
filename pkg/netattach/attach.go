package netattach

// The attach: the steps of one netdev's way into a pod netns (checks,
// the move with its rename, the pod-side configuration) and the undo of
// a move whose configuration failed.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

func (a attacher) attach(ctx context.Context, host nlink.Handle, nsPath string, spec Spec, id Identity) (Original, error) {
	log := klog.FromContext(ctx).WithValues("hostIfName", spec.HostIfName, "podIfName", spec.PodIfName, "netns", nsPath, "identity", id.String())
	p, err := parseAttach(spec, nsPath, id)
	if err != nil {
		return Original{}, err
	}
	steps := NewStepTimer(ctx)
	defer steps.Mark(StepClose) // runs after the closes deferred below
	if err := checkPodNetns(nsPath, a.hostNsPath); err != nil {
		return Original{}, fmt.Errorf("attach %s: %w", spec.HostIfName, err)
	}
	podH, err := a.openPod(nsPath)
	if err != nil {
		return Original{}, fmt.Errorf("attach %s: %w", spec.HostIfName, err)
	}
	defer podH.Close()
	steps.Mark(StepOpenPodHandle)
	hs, ps := hostScope(host), podScope(podH, nsPath, a.hostNsPath)

	hl, err := hs.find(id, spec.HostIfName)
	if errors.Is(err, errNotHere) {
		pl, err := movedAlready(ps, spec, id, nsPath, err)
		if err != nil {
			return Original{}, err
		}
		log.Info("Netdev already in the pod netns; configuring it in place")
		return Original{}, configure(ctx, podH, pl, p, nsPath, steps)
	}
	if err != nil {
		return Original{}, fmt.Errorf("attach %s: %w", spec.HostIfName, err)
	}
	if err := checkMove(podH, hl, spec, nsPath, id); err != nil {
		return Original{}, err
	}
	orig := originalOf(hl)
	orig.Identity = id
	if orig.Features, err = a.readFeatures(ctx, hl); err != nil {
		return Original{}, fmt.Errorf("attach %s: %w", spec.HostIfName, err)
	}
	if err := a.readRingsChannels(ctx, hl, &orig); err != nil {
		return Original{}, fmt.Errorf("attach %s: %w", spec.HostIfName, err)
	}
	nsf, err := os.Open(nsPath)
	if err != nil {
		return Original{}, fmt.Errorf("attach %s: open netns %s: %w", spec.HostIfName, nsPath, err)
	}
	defer nsf.Close()
	steps.Mark(StepFind)

	pl, err := a.move(ctx, hs, ps, hl, int(nsf.Fd()), spec.PodIfName, orig)
	if err != nil {
		return Original{}, fmt.Errorf("attach %s to %s: %w", spec.HostIfName, nsPath, err)
	}
	steps.Mark(StepMove)
	if err := configure(ctx, podH, pl, p, nsPath, steps); err != nil {
		uerr := a.returnLink(ctx, hs, ps, pl, orig)
		if uerr != nil {
			uerr = fmt.Errorf("undo the move: %w", uerr)
		}
		return Original{}, errors.Join(fmt.Errorf("attach %s to %s as %s: %w", spec.HostIfName, nsPath, spec.PodIfName, err), uerr)
	}
	log.V(2).Info("Attached netdev")
	return orig, nil
}

// parseAttach checks what an attach is given before anything is looked
// up: the spec, and an identity that can confirm the link is the device.
func parseAttach(spec Spec, nsPath string, id Identity) (parsed, error) {
	p, err := spec.parse()
	if err != nil {
		return parsed{}, fmt.Errorf("attach %s to %s: %w", spec.HostIfName, nsPath, err)
	}
	if !id.Known() {
		return parsed{}, fmt.Errorf("attach %s to %s: identity: none given (PCI address, permanent address or host peer): the link cannot be confirmed to be the device", spec.HostIfName, nsPath)
	}
	return p, nil
}

// movedAlready finds the device, not on the host (hostErr says why), in
// the pod netns (ps, at nsPath): a retried attach. When a move finished
// but its rename did not, it finishes the rename.
func movedAlready(ps scope, spec Spec, id Identity, nsPath string, hostErr error) (netlink.Link, error) {
	pl, err := ps.find(id, spec.PodIfName)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w; and in netns %s: %w", spec.HostIfName, hostErr, nsPath, err)
	}
	if pl.Attrs().Name != spec.PodIfName {
		// A move finished but its rename did not.
		if pl, err = renameIn(ps, pl, spec.PodIfName, id); err != nil {
			return nil, fmt.Errorf("attach %s: %w", spec.HostIfName, err)
		}
	}
	return pl, nil
}

// checkMove refuses a move that would not do what the spec says: the
// device hl on the host under another name than the spec's (a stale
// spec), or the pod name taken in the pod netns (pod, at nsPath).
func checkMove(pod nlink.Handle, hl netlink.Link, spec Spec, nsPath string, id Identity) error {
	if hl.Attrs().Name != spec.HostIfName {
		return fmt.Errorf("attach %s: the device (%s) is on the host as %s, not as %s: refusing a stale spec", spec.HostIfName, id, hl.Attrs().Name, spec.HostIfName)
	}
	if _, err := pod.LinkByName(spec.PodIfName); err == nil {
		return fmt.Errorf("attach %s: interface name %s is already taken in netns %s", spec.HostIfName, spec.PodIfName, nsPath)
	} else if !isNotFound(err) {
		return fmt.Errorf("attach %s: look up %s in netns %s: %w", spec.HostIfName, spec.PodIfName, nsPath, err)
	}
	return nil
}

// renameIn renames the device l (in scope s) to name, down first as the
// kernel wants; a name taken by another link is an error.
func renameIn(s scope, l netlink.Link, name string, id Identity) (netlink.Link, error) {
	if _, err := s.h.LinkByName(name); err == nil {
		return nil, fmt.Errorf("the device is in %s as %s, and %s is taken there by another link", s.name, l.Attrs().Name, name)
	}
	if l.Attrs().Flags&net.FlagUp != 0 {
		if err := s.h.LinkSetDown(l); err != nil {
			return nil, fmt.Errorf("set %s down in %s: %w", l.Attrs().Name, s.name, err)
		}
	}
	if err := s.h.LinkSetName(l, name); err != nil {
		return nil, fmt.Errorf("rename %s to %s in %s: %w", l.Attrs().Name, name, s.name, err)
	}
	return s.refresh(l, id)
}

// move puts host link hl (the device orig.Identity) into the pod netns
// (fd) under name and returns it as seen there. On failure the link is
// back on the host as it was.
func (a attacher) move(ctx context.Context, hs, ps scope, hl netlink.Link, fd int, name string, orig Original) (netlink.Link, error) {
	if r, ok := hs.h.(nlink.NsRenamer); ok {
		pl, done, err := a.moveInOne(ctx, r, hs, ps, hl, fd, name, orig)
		if done {
			return pl, err
		}
	}
	return a.moveInTwo(ctx, hs, ps, hl, fd, name, orig)
}

// moveInOne is move in one RTM_NEWLINK that carries the netns fd and the
// new name. done is false when the kernel refused it and the link is on
// the host as it was: the caller moves it in two steps.
func (a attacher) moveInOne(ctx context.Context, r nlink.NsRenamer, hs, ps scope, hl netlink.Link, fd int, name string, orig Original) (_ netlink.Link, done bool, _ error) {
	id := orig.Identity
	err := r.LinkSetNsFdAndName(hl, fd, name)
	if err == nil {
		pl, err := ps.find(id, name)
		if err != nil {
			return nil, true, fmt.Errorf("find the device after the move: %w", err)
		}
		return pl, true, nil
	}
	if _, herr := hs.find(id, orig.IfName); errors.Is(herr, errNotHere) {
		// It moved but was not renamed: it is there under its old name.
		pl, perr := ps.find(id, orig.IfName)
		if perr != nil {
			return nil, true, errors.Join(err, fmt.Errorf("link %s left the host but is not in the pod netns: %w", orig.IfName, perr))
		}
		if rerr := ps.h.LinkSetName(pl, name); rerr != nil {
			return nil, true, errors.Join(err, rerr, a.returnLink(ctx, hs, ps, pl, orig))
		}
		pl, err = ps.refresh(pl, id)
		return pl, true, err
	}
	klog.FromContext(ctx).V(2).Info("Move-and-rename in one request refused; moving through a temporary name", "err", err)
	return nil, false, nil
}

// moveInTwo is move in two steps: the move (under a temporary name when
// the host name is taken in the pod; the kernel wants the link down to
// rename it), then the rename.
func (a attacher) moveInTwo(ctx context.Context, hs, ps scope, hl netlink.Link, fd int, name string, orig Original) (netlink.Link, error) {
	id := orig.Identity
	moveName := orig.IfName
	if _, err := ps.h.LinkByName(orig.IfName); err == nil {
		moveName = tempName()
		if err := hs.h.LinkSetDown(hl); err != nil {
			return nil, fmt.Errorf("set %s down: %w", orig.IfName, err)
		}
		if err := hs.h.LinkSetName(hl, moveName); err != nil {
			return nil, errors.Join(fmt.Errorf("rename %s to %s: %w", orig.IfName, moveName, err), a.hostFinish(ctx, hs, hl, orig))
		}
	}
	if err := hs.h.LinkSetNsFd(hl, fd); err != nil {
		err = fmt.Errorf("move %s into the pod netns: %w", moveName, err)
		if l, lerr := hs.find(id, moveName, orig.IfName); lerr == nil {
			err = errors.Join(err, a.hostFinish(ctx, hs, l, orig))
		}
		return nil, err
	}
	pl, err := ps.find(id, moveName)
	if err != nil {
		return nil, fmt.Errorf("find the device after the move: %w", err)
	}
	if err := ps.h.LinkSetName(pl, name); err != nil {
		return nil, errors.Join(fmt.Errorf("rename %s to %s in the pod netns: %w", moveName, name, err), a.returnLink(ctx, hs, ps, pl, orig))
	}
	return ps.refresh(pl, id)
}

// tempName is a random name for a link between two names.
func tempName() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "sdra" + hex.EncodeToString(b)
}

// configure sets the pod-side state of link l: MTU, MAC, addresses, up,
// routes, announcements. Each step is skipped when already so, which
// makes a retried attach work. steps is told when each part ended.
func configure(ctx context.Context, pod nlink.Handle, l netlink.Link, p parsed, nsPath string, steps *StepTimer) error {
	log := klog.FromContext(ctx)
	a := l.Attrs()
	mac, ips, err := configureLink(pod, l, p)
	if err != nil {
		return err
	}
	steps.Mark(StepLink)
	if err := addRoutes(pod, a.Index, p.routes); err != nil {
		return err
	}
	steps.Mark(StepRoutes)
	if len(ips) > 0 {
		if a.EncapType != "" && a.EncapType != "ether" {
			log.V(2).Info("Not announcing addresses on a non-Ethernet link", "encap", a.EncapType)
		} else if err := announce(nsPath, a.Index, mac, ips); err != nil {
			// Peers learn the address on first traffic anyway.
			log.Error(err, "Could not announce addresses", "link", a.Name)
		}
		steps.Mark(StepAnnounce)
	}
	return nil
}

// configureLink sets MTU and MAC of link l, adds the addresses and
// brings it up. It returns the link's MAC and the addresses' IPs, for the
// announcements.
func configureLink(pod nlink.Handle, l netlink.Link, p parsed) (net.HardwareAddr, []net.IP, error) {
	a := l.Attrs()
	if mtu := p.mtuOr(a.MTU); mtu != a.MTU {
		if err := pod.LinkSetMTU(l, mtu); err != nil {
			return nil, nil, fmt.Errorf("set MTU %d: %w", mtu, err)
		}
	}
	mac := a.HardwareAddr
	if p.mac != nil && p.mac.String() != a.HardwareAddr.String() {
		if err := pod.LinkSetHardwareAddr(l, p.mac); err != nil {
			return nil, nil, fmt.Errorf("set MAC %s: %w", p.mac, err)
		}
		mac = p.mac
	}
	var ips []net.IP
	for _, addr := range p.addrs {
		if err := pod.AddrAdd(l, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, nil, fmt.Errorf("add address %s: %w", addr.IPNet, err)
		}
		ips = append(ips, addr.IP)
	}
	if a.Flags&net.FlagUp == 0 {
		if err := pod.LinkSetUp(l); err != nil {
			return nil, nil, fmt.Errorf("set up: %w", err)
		}
	}
	return mac, ips, nil
}

// addRoutes adds (replaces) the routes through the link with index
// ifIndex.
func addRoutes(pod nlink.Handle, ifIndex int, routes []route) error {
	for _, r := range routes {
		nr := &netlink.Route{LinkIndex: ifIndex, Dst: r.dst, Gw: r.gw, Family: unix.AF_INET}
		if r.v6 {
			nr.Family = unix.AF_INET6
		}
		if r.gw == nil {
			nr.Scope = netlink.SCOPE_LINK
		}
		if err := pod.RouteReplace(nr); err != nil {
			return fmt.Errorf("add route %s via %v: %w", dstString(r), r.gw, err)
		}
	}
	return nil
}

func (p parsed) mtuOr(cur int) int {
	if p.mtu > 0 {
		return p.mtu
	}
	return cur
}

func dstString(r route) string {
	if r.dst == nil {
		if r.v6 {
			return "::/0"
		}
		return "0.0.0.0/0"
	}
	return r.dst.String()
}
