package netattach

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// HostNetnsPath is the host network namespace Detach returns links to: the
// netns of the calling thread, which for any goroutine not locked to its
// thread is the process's own (the driver runs with host networking). Not
// /proc/self/ns/net: that is the main thread's netns, and the main thread
// may at that moment be lent to a goroutine that entered a pod's netns
// (thread-locked setns in the netlink library or announce), so a link
// "returned to the host" would land in that pod (seen with 64 pods torn
// down at once). The hostNS handle given to Attach and Detach must be a
// handle in it (nlink.NewHost).
const HostNetnsPath = "/proc/thread-self/ns/net"

// attacher carries the seams: how a pod-side handle is opened and where
// the host netns is. The exported functions use the real ones.
type attacher struct {
	openPod    func(nsPath string) (nlink.Handle, error)
	hostNsPath string
}

func openAt(nsPath string) (nlink.Handle, error) {
	h, err := nlink.NewAt(nsPath)
	if err != nil {
		return nil, err
	}
	return h, nil
}

func real() attacher { return attacher{openPod: openAt, hostNsPath: HostNetnsPath} }

// Attach moves the host netdev spec.HostIfName into the network namespace
// at netnsPath as spec.PodIfName — one RTM_NEWLINK carrying the netns fd
// and the new name when the host handle can send it, else a move and a
// rename through a temporary name — then sets MTU and MAC, adds the
// addresses, brings it up, adds the routes and announces the addresses
// (gratuitous ARP / unsolicited NA on that link only). It returns what
// Detach must restore. Any failure after the move returns the link to the
// host as it was. A bad spec is refused before anything changes.
//
// If the netdev is already in the netns under spec.PodIfName (a retried
// attach), it is configured in place and the returned Original is zero:
// keep the one recorded before the first attempt (ReadOriginal).
func Attach(ctx context.Context, hostNS nlink.Handle, netnsPath string, spec Spec) (Original, error) {
	return real().attach(ctx, hostNS, netnsPath, spec)
}

// Detach returns the netdev podIfName from the netns at netnsPath to the
// host: down, MAC and MTU restored, renamed to orig.IfName (through a
// temporary name if that name is taken), moved back, and up again if it
// was. When the netns is gone, or the link is no longer in it, Detach
// looks for it on the host — the kernel hands physical netdevs back to the
// init netns under their pod name when a netns dies — and restores it
// there. A link already restored is success.
func Detach(ctx context.Context, hostNS nlink.Handle, netnsPath, podIfName string, orig Original) error {
	return real().detach(ctx, hostNS, netnsPath, podIfName, orig)
}

// ReadOriginal reads what Detach will need to restore the host netdev.
// Call it, and record the result, before Attach.
func ReadOriginal(ctx context.Context, hostNS nlink.Handle, hostIfName string) (Original, error) {
	l, err := hostNS.LinkByName(hostIfName)
	if err != nil {
		return Original{}, fmt.Errorf("read host netdev %s: %w", hostIfName, err)
	}
	return originalOf(l), nil
}

// InNetns reports whether a link named podIfName is in the netns at
// netnsPath. A netns path that no longer exists is false, no error.
func InNetns(ctx context.Context, netnsPath, podIfName string) (bool, error) {
	h, err := nlink.NewAt(netnsPath)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer h.Close()
	_, err = h.LinkByName(podIfName)
	if isNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

func originalOf(l netlink.Link) Original {
	a := l.Attrs()
	return Original{IfName: a.Name, MAC: a.HardwareAddr.String(), MTU: a.MTU, Up: a.Flags&net.FlagUp != 0, IfIndex: a.Index}
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return err != nil && (errors.As(err, &nf) || errors.Is(err, unix.ENODEV))
}

// tempName is a random name for a link between two names.
func tempName() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "sdra" + hex.EncodeToString(b)
}

// parkName is the deterministic name Detach leaves a link under on the
// host when its original name is taken, so a retry finds it.
func parkName(orig Original) string {
	h := fnv.New32a()
	h.Write([]byte(orig.IfName + "/" + orig.MAC))
	return fmt.Sprintf("sdrp%08x", h.Sum32())
}

func (a attacher) attach(ctx context.Context, host nlink.Handle, nsPath string, spec Spec) (Original, error) {
	log := klog.FromContext(ctx).WithValues("hostIfName", spec.HostIfName, "podIfName", spec.PodIfName, "netns", nsPath)
	p, err := spec.parse()
	if err != nil {
		return Original{}, fmt.Errorf("attach %s to %s: %w", spec.HostIfName, nsPath, err)
	}
	pod, err := a.openPod(nsPath)
	if err != nil {
		return Original{}, fmt.Errorf("attach %s: %w", spec.HostIfName, err)
	}
	defer pod.Close()

	hl, err := host.LinkByName(spec.HostIfName)
	if isNotFound(err) {
		pl, perr := pod.LinkByName(spec.PodIfName)
		if perr != nil {
			return Original{}, fmt.Errorf("attach %s: not on the host, and %s is not in netns %s: %w", spec.HostIfName, spec.PodIfName, nsPath, err)
		}
		log.Info("Netdev already in the pod netns; configuring it in place")
		return Original{}, configure(ctx, pod, pl, p, nsPath)
	}
	if err != nil {
		return Original{}, fmt.Errorf("attach %s: %w", spec.HostIfName, err)
	}
	if _, err := pod.LinkByName(spec.PodIfName); err == nil {
		return Original{}, fmt.Errorf("attach %s: interface name %s is already taken in netns %s", spec.HostIfName, spec.PodIfName, nsPath)
	} else if !isNotFound(err) {
		return Original{}, fmt.Errorf("attach %s: look up %s in netns %s: %w", spec.HostIfName, spec.PodIfName, nsPath, err)
	}
	orig := originalOf(hl)
	nsf, err := os.Open(nsPath)
	if err != nil {
		return Original{}, fmt.Errorf("attach %s: open netns %s: %w", spec.HostIfName, nsPath, err)
	}
	defer nsf.Close()

	pl, err := a.move(ctx, host, pod, hl, int(nsf.Fd()), spec.PodIfName, orig)
	if err != nil {
		return Original{}, fmt.Errorf("attach %s to %s: %w", spec.HostIfName, nsPath, err)
	}
	if err := configure(ctx, pod, pl, p, nsPath); err != nil {
		uerr := a.returnLink(ctx, host, pod, pl, orig)
		if uerr != nil {
			uerr = fmt.Errorf("undo the move: %w", uerr)
		}
		return Original{}, errors.Join(fmt.Errorf("attach %s to %s as %s: %w", spec.HostIfName, nsPath, spec.PodIfName, err), uerr)
	}
	log.V(2).Info("Attached netdev")
	return orig, nil
}

// move puts host link hl into the pod netns (fd) under name and returns it
// as seen there. On failure the link is back on the host as it was.
func (a attacher) move(ctx context.Context, host, pod nlink.Handle, hl netlink.Link, fd int, name string, orig Original) (netlink.Link, error) {
	log := klog.FromContext(ctx)
	if r, ok := host.(nlink.NsRenamer); ok {
		err := r.LinkSetNsFdAndName(hl, fd, name)
		if err == nil {
			pl, err := pod.LinkByName(name)
			if err != nil {
				return nil, fmt.Errorf("find %s in the pod netns after the move: %w", name, err)
			}
			return pl, nil
		}
		if _, herr := host.LinkByName(orig.IfName); herr != nil {
			// It moved but was not renamed: it is there under its old name.
			pl, perr := pod.LinkByName(orig.IfName)
			if perr != nil {
				return nil, errors.Join(err, fmt.Errorf("link %s left the host but is not in the pod netns: %w", orig.IfName, perr))
			}
			if rerr := pod.LinkSetName(pl, name); rerr != nil {
				return nil, errors.Join(err, rerr, a.returnLink(ctx, host, pod, pl, orig))
			}
			return pod.LinkByName(name)
		}
		log.V(2).Info("Move-and-rename in one request refused; moving through a temporary name", "err", err)
	}
	// Two steps: move (under a temporary name when the host name is taken
	// in the pod; the kernel wants the link down to rename it), then rename.
	moveName := orig.IfName
	if _, err := pod.LinkByName(orig.IfName); err == nil {
		moveName = tempName()
		if err := host.LinkSetDown(hl); err != nil {
			return nil, fmt.Errorf("set %s down: %w", orig.IfName, err)
		}
		if err := host.LinkSetName(hl, moveName); err != nil {
			return nil, errors.Join(fmt.Errorf("rename %s to %s: %w", orig.IfName, moveName, err), a.hostFinish(ctx, host, hl, orig))
		}
	}
	if err := host.LinkSetNsFd(hl, fd); err != nil {
		err = fmt.Errorf("move %s into the pod netns: %w", moveName, err)
		if l, lerr := host.LinkByName(moveName); lerr == nil {
			err = errors.Join(err, a.hostFinish(ctx, host, l, orig))
		}
		return nil, err
	}
	pl, err := pod.LinkByName(moveName)
	if err != nil {
		return nil, fmt.Errorf("find %s in the pod netns after the move: %w", moveName, err)
	}
	if err := pod.LinkSetName(pl, name); err != nil {
		return nil, errors.Join(fmt.Errorf("rename %s to %s in the pod netns: %w", moveName, name, err), a.returnLink(ctx, host, pod, pl, orig))
	}
	return pod.LinkByName(name)
}

// configure sets the pod-side state of link l: MTU, MAC, addresses, up,
// routes, announcements. Each step is skipped when already so, which
// makes a retried attach work.
func configure(ctx context.Context, pod nlink.Handle, l netlink.Link, p parsed, nsPath string) error {
	log := klog.FromContext(ctx)
	a := l.Attrs()
	if mtu := p.mtuOr(a.MTU); mtu != a.MTU {
		if err := pod.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set MTU %d: %w", mtu, err)
		}
	}
	mac := a.HardwareAddr
	if p.mac != nil && p.mac.String() != a.HardwareAddr.String() {
		if err := pod.LinkSetHardwareAddr(l, p.mac); err != nil {
			return fmt.Errorf("set MAC %s: %w", p.mac, err)
		}
		mac = p.mac
	}
	var ips []net.IP
	for _, addr := range p.addrs {
		if err := pod.AddrAdd(l, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add address %s: %w", addr.IPNet, err)
		}
		ips = append(ips, addr.IP)
	}
	if a.Flags&net.FlagUp == 0 {
		if err := pod.LinkSetUp(l); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
	}
	for _, r := range p.routes {
		nr := &netlink.Route{LinkIndex: a.Index, Dst: r.dst, Gw: r.gw, Family: unix.AF_INET}
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
	if len(ips) > 0 {
		if a.EncapType != "" && a.EncapType != "ether" {
			log.V(2).Info("Not announcing addresses on a non-Ethernet link", "encap", a.EncapType)
		} else if err := announce(nsPath, a.Index, mac, ips); err != nil {
			// Peers learn the address on first traffic anyway.
			log.Error(err, "Could not announce addresses", "link", a.Name)
		}
	}
	return nil
}

// mtuOr is the MTU the spec asks for, or cur when it says keep.
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

func (a attacher) detach(ctx context.Context, host nlink.Handle, nsPath, podIfName string, orig Original) error {
	log := klog.FromContext(ctx).WithValues("podIfName", podIfName, "hostIfName", orig.IfName, "netns", nsPath)
	if err := ValidIfName(podIfName); err != nil {
		return fmt.Errorf("detach from %s: podIfName: %w", nsPath, err)
	}
	if err := ValidIfName(orig.IfName); err != nil {
		return fmt.Errorf("detach %s from %s: original ifName: %w", podIfName, nsPath, err)
	}
	if orig.MAC != "" {
		if _, err := net.ParseMAC(orig.MAC); err != nil {
			return fmt.Errorf("detach %s from %s: original mac %q: %w", podIfName, nsPath, orig.MAC, err)
		}
	}
	pod, err := a.openPod(nsPath)
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT):
		log.Info("Pod netns is gone; the kernel returns physical netdevs to the host, looking for it there")
	case err != nil:
		return fmt.Errorf("detach %s: %w", podIfName, err)
	default:
		defer pod.Close()
		pl, err := pod.LinkByName(podIfName)
		if err == nil {
			if err := a.returnLink(ctx, host, pod, pl, orig); err != nil {
				return fmt.Errorf("detach %s from %s: %w", podIfName, nsPath, err)
			}
			log.V(2).Info("Detached netdev")
			return nil
		}
		if !isNotFound(err) {
			return fmt.Errorf("detach %s: look it up in %s: %w", podIfName, nsPath, err)
		}
		log.Info("Netdev not in the pod netns; looking for it on the host")
	}
	return a.finishOnHost(ctx, host, podIfName, orig)
}

// finishOnHost finds the link on the host (already restored, returned by
// the kernel under its pod name or dev<ifindex>, or parked) and restores
// it there.
func (a attacher) finishOnHost(ctx context.Context, host nlink.Handle, podIfName string, orig Original) error {
	if l, err := host.LinkByName(orig.IfName); err == nil {
		if orig.MAC == "" || l.Attrs().HardwareAddr.String() == orig.MAC {
			return a.hostFinish(ctx, host, l, orig)
		}
		klog.FromContext(ctx).Info("A link with the original name but another MAC is on the host; not ours",
			"name", orig.IfName, "mac", l.Attrs().HardwareAddr.String(), "want", orig.MAC)
	}
	cands := []string{podIfName, parkName(orig)}
	if orig.IfIndex > 0 {
		cands = append(cands, fmt.Sprintf("dev%d", orig.IfIndex))
	}
	for _, n := range cands {
		l, err := host.LinkByName(n)
		if err == nil {
			klog.FromContext(ctx).Info("Found the netdev on the host", "name", n)
			return a.hostFinish(ctx, host, l, orig)
		}
		if !isNotFound(err) {
			return fmt.Errorf("look for %s on the host: %w", n, err)
		}
	}
	return fmt.Errorf("detach: netdev %s is neither in the pod netns nor on the host (looked for %s and %v)", podIfName, orig.IfName, cands)
}

// hostFinish restores a link that is on the host: down, name (parked
// under parkName if the original name is taken), MAC, MTU, then up if it
// was. Steps already so are skipped.
func (a attacher) hostFinish(ctx context.Context, host nlink.Handle, l netlink.Link, orig Original) error {
	var errs []error
	at := l.Attrs()
	if at.Name != orig.IfName || (orig.MAC != "" && at.HardwareAddr.String() != orig.MAC) || (orig.MTU > 0 && at.MTU != orig.MTU) {
		if at.Flags&net.FlagUp != 0 {
			if err := host.LinkSetDown(l); err != nil {
				return fmt.Errorf("set %s down: %w", at.Name, err)
			}
			at.Flags &^= net.FlagUp
		}
	}
	if orig.MAC != "" && at.HardwareAddr.String() != orig.MAC {
		mac, _ := net.ParseMAC(orig.MAC)
		if err := host.LinkSetHardwareAddr(l, mac); err != nil {
			errs = append(errs, fmt.Errorf("restore MAC %s of %s: %w", orig.MAC, at.Name, err))
		}
	}
	if orig.MTU > 0 && at.MTU != orig.MTU {
		if err := host.LinkSetMTU(l, orig.MTU); err != nil {
			errs = append(errs, fmt.Errorf("restore MTU %d of %s: %w", orig.MTU, at.Name, err))
		}
	}
	name := at.Name
	if name != orig.IfName {
		if err := host.LinkSetName(l, orig.IfName); err != nil {
			park := parkName(orig)
			if errors.Is(err, unix.EEXIST) && name != park {
				if perr := host.LinkSetName(l, park); perr == nil {
					name = park
				}
			}
			errs = append(errs, fmt.Errorf("rename %s back to %s (the link is on the host as %s): %w", at.Name, orig.IfName, name, err))
		} else {
			name = orig.IfName
		}
	}
	if orig.Up && at.Flags&net.FlagUp == 0 {
		nl, err := host.LinkByName(name)
		if err == nil {
			err = host.LinkSetUp(nl)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("set %s up: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// returnLink takes link pl (in the pod netns) back to the host as orig
// says: down, MAC and MTU, then moved under its original name — one
// request when the pod handle can send it, else through a temporary name.
func (a attacher) returnLink(ctx context.Context, host, pod nlink.Handle, pl netlink.Link, orig Original) error {
	// Work from its current state, not the caller's copy.
	fresh, err := pod.LinkByName(pl.Attrs().Name)
	if err != nil {
		return fmt.Errorf("look up %s in the pod netns: %w", pl.Attrs().Name, err)
	}
	pl = fresh
	at := pl.Attrs()
	if at.Flags&net.FlagUp != 0 {
		if err := pod.LinkSetDown(pl); err != nil {
			return fmt.Errorf("set %s down: %w", at.Name, err)
		}
	}
	// Any failure before the move leaves the link in the pod (down) for a
	// retry: on the host it is recognised by its original MAC.
	var errs []error
	if orig.MAC != "" && at.HardwareAddr.String() != orig.MAC {
		mac, _ := net.ParseMAC(orig.MAC)
		if err := pod.LinkSetHardwareAddr(pl, mac); err != nil {
			return fmt.Errorf("restore MAC %s of %s: %w", orig.MAC, at.Name, err)
		}
	}
	if orig.MTU > 0 && at.MTU != orig.MTU {
		if err := pod.LinkSetMTU(pl, orig.MTU); err != nil {
			return fmt.Errorf("restore MTU %d of %s: %w", orig.MTU, at.Name, err)
		}
	}
	hf, err := os.Open(a.hostNsPath)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("open host netns: %w", err))...)
	}
	defer hf.Close()
	fd := int(hf.Fd())
	moved := false
	var names []string // where to look for it on the host afterwards
	if r, ok := pod.(nlink.NsRenamer); ok {
		if err := r.LinkSetNsFdAndName(pl, fd, orig.IfName); err == nil {
			moved, names = true, []string{orig.IfName}
		} else if _, perr := pod.LinkByName(at.Name); perr != nil {
			// It left the pod but the rename failed: it is on the host
			// under its pod name; hostFinish below names it.
			moved, names = true, []string{at.Name, orig.IfName}
		} else {
			klog.FromContext(ctx).V(2).Info("Move back under the original name refused; parking it", "err", err)
		}
	}
	if !moved {
		// Park under a name nobody uses in either netns, move, rename there.
		park := parkName(orig)
		if at.Name != park {
			if err := pod.LinkSetName(pl, park); err != nil {
				return errors.Join(append(errs, fmt.Errorf("rename %s to %s: %w", at.Name, park, err))...)
			}
		}
		if err := pod.LinkSetNsFd(pl, fd); err != nil {
			return errors.Join(append(errs, fmt.Errorf("move %s to the host netns: %w", park, err))...)
		}
		names = []string{park}
	}
	var hl netlink.Link
	for _, n := range names {
		l, err := host.LinkByName(n)
		if err == nil && (orig.MAC == "" || l.Attrs().HardwareAddr.String() == orig.MAC) {
			hl = l
			break
		}
	}
	if hl == nil {
		return errors.Join(append(errs, fmt.Errorf("%s left the pod netns but is not found on the host", at.Name))...)
	}
	errs = append(errs, a.hostFinish(ctx, host, hl, orig))
	return errors.Join(errs...)
}
