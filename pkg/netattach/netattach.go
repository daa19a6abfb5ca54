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

// ErrDeviceGone is wrapped by Detach's error when the device is found
// nowhere, neither in the pod netns nor on the host (every link checked
// by identity): removed VF, hot-unplugged NIC. Callers may wait for it to
// come back, then give up on it (the driver's lost-device release).
var ErrDeviceGone = errors.New("device gone")

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

// kernelAttacher is the attacher of Attach and Detach: pod netns handles
// opened for real, the host netns at HostNetnsPath (tests build their own).
func kernelAttacher() attacher { return attacher{openPod: openAt, hostNsPath: HostNetnsPath} }

// Attach moves the host netdev spec.HostIfName, which must be the device
// id (see Identity), into the network namespace at netnsPath as
// spec.PodIfName — one RTM_NEWLINK carrying the netns fd and the new name
// when the host handle can send it, else a move and a rename through a
// temporary name — then sets MTU and MAC, adds the addresses, brings it
// up, adds the routes and announces the addresses (gratuitous ARP /
// unsolicited NA on that link only). It returns what Detach must restore.
// Any failure after the move returns the link to the host as it was. A bad
// spec, or a host link by that name that is not the device, is refused
// before anything changes.
//
// If the device is already in the netns (a retried attach), it is
// configured in place and the returned Original is zero: keep the one
// recorded before the first attempt (ReadOriginal).
func Attach(ctx context.Context, hostNS nlink.Handle, netnsPath string, spec Spec, id Identity) (Original, error) {
	return kernelAttacher().attach(ctx, hostNS, netnsPath, spec, id)
}

// Detach returns the device orig.Identity from the netns at netnsPath to
// the host: down, MAC and MTU restored, renamed to orig.IfName (through a
// temporary name if that name is taken), moved back, and up again if it
// was. The device is found by its identity, in the pod and on the host;
// podIfName and the host names are only where it is looked for first, and
// a link that is not the device is never changed, whatever its name. When
// the netns is gone (NetnsGone), or the device is no longer in it, Detach
// looks for it on the host — the kernel hands physical netdevs back to the
// init netns, under their pod name or dev<ifindex> — and restores it
// there. A device already restored is success; a device found nowhere is
// an error (ErrDeviceGone) that changes nothing. netnsPath "" means no pod
// netns is known: the device is looked for, and restored, on the host only.
func Detach(ctx context.Context, hostNS nlink.Handle, netnsPath, podIfName string, orig Original) error {
	return kernelAttacher().detach(ctx, hostNS, netnsPath, podIfName, orig)
}

// ReadOriginal reads what Detach will need to restore the host netdev,
// its identity included (checked against pciAddress, the device's PCI
// address from the driver's record, when the netdev has a PCI parent).
// Call it, and record the result, before Attach.
func ReadOriginal(ctx context.Context, hostNS nlink.Handle, hostIfName, pciAddress string) (Original, error) {
	l, err := hostNS.LinkByName(hostIfName)
	if err != nil {
		return Original{}, fmt.Errorf("read host netdev %s: %w", hostIfName, err)
	}
	id, err := ReadIdentity(l, pciAddress)
	if err != nil {
		return Original{}, err
	}
	o := originalOf(l)
	o.Identity = id
	return o, nil
}

// InNetns reports whether the device id is in the netns at netnsPath
// (under any name; podIfName is looked at first). A netns that is gone
// (NetnsGone) is false, no error.
func InNetns(ctx context.Context, netnsPath, podIfName string, id Identity) (bool, error) {
	gone, _, err := NetnsGone(netnsPath)
	if err != nil || gone {
		return false, err
	}
	h, err := nlink.NewAt(netnsPath)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer h.Close()
	_, err = podScope(h, netnsPath, HostNetnsPath).find(id, podIfName)
	if errors.Is(err, errNotHere) {
		return false, nil
	}
	return err == nil, err
}

func originalOf(l netlink.Link) Original {
	a := l.Attrs()
	return Original{IfName: a.Name, MAC: a.HardwareAddr.String(), MTU: a.MTU, Up: a.Flags&net.FlagUp != 0, IfIndex: a.Index, Identity: identityOf(l)}
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

func (a attacher) attach(ctx context.Context, host nlink.Handle, nsPath string, spec Spec, id Identity) (Original, error) {
	log := klog.FromContext(ctx).WithValues("hostIfName", spec.HostIfName, "podIfName", spec.PodIfName, "netns", nsPath, "identity", id.String())
	p, err := spec.parse()
	if err != nil {
		return Original{}, fmt.Errorf("attach %s to %s: %w", spec.HostIfName, nsPath, err)
	}
	if !id.Known() {
		return Original{}, fmt.Errorf("attach %s to %s: identity: none given (PCI address, permanent address or host peer): the link cannot be confirmed to be the device", spec.HostIfName, nsPath)
	}
	steps := newStepTimer(ctx)
	defer steps.mark(StepClose) // runs after the closes deferred below
	if err := checkPodNetns(nsPath, a.hostNsPath); err != nil {
		return Original{}, fmt.Errorf("attach %s: %w", spec.HostIfName, err)
	}
	podH, err := a.openPod(nsPath)
	if err != nil {
		return Original{}, fmt.Errorf("attach %s: %w", spec.HostIfName, err)
	}
	defer podH.Close()
	steps.mark(StepOpenPodHandle)
	hs, ps := hostScope(host), podScope(podH, nsPath, a.hostNsPath)

	hl, err := hs.find(id, spec.HostIfName)
	if errors.Is(err, errNotHere) {
		pl, perr := ps.find(id, spec.PodIfName)
		if perr != nil {
			return Original{}, fmt.Errorf("attach %s: %w; and in netns %s: %w", spec.HostIfName, err, nsPath, perr)
		}
		if pl.Attrs().Name != spec.PodIfName {
			// A move finished but its rename did not.
			if pl, err = renameIn(ps, pl, spec.PodIfName, id); err != nil {
				return Original{}, fmt.Errorf("attach %s: %w", spec.HostIfName, err)
			}
		}
		log.Info("Netdev already in the pod netns; configuring it in place")
		return Original{}, configure(ctx, podH, pl, p, nsPath, steps)
	}
	if err != nil {
		return Original{}, fmt.Errorf("attach %s: %w", spec.HostIfName, err)
	}
	if hl.Attrs().Name != spec.HostIfName {
		return Original{}, fmt.Errorf("attach %s: the device (%s) is on the host as %s, not as %s: refusing a stale spec", spec.HostIfName, id, hl.Attrs().Name, spec.HostIfName)
	}
	if _, err := podH.LinkByName(spec.PodIfName); err == nil {
		return Original{}, fmt.Errorf("attach %s: interface name %s is already taken in netns %s", spec.HostIfName, spec.PodIfName, nsPath)
	} else if !isNotFound(err) {
		return Original{}, fmt.Errorf("attach %s: look up %s in netns %s: %w", spec.HostIfName, spec.PodIfName, nsPath, err)
	}
	orig := originalOf(hl)
	orig.Identity = id
	nsf, err := os.Open(nsPath)
	if err != nil {
		return Original{}, fmt.Errorf("attach %s: open netns %s: %w", spec.HostIfName, nsPath, err)
	}
	defer nsf.Close()
	steps.mark(StepFind)

	pl, err := a.move(ctx, hs, ps, hl, int(nsf.Fd()), spec.PodIfName, orig)
	if err != nil {
		return Original{}, fmt.Errorf("attach %s to %s: %w", spec.HostIfName, nsPath, err)
	}
	steps.mark(StepMove)
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
	log := klog.FromContext(ctx)
	id := orig.Identity
	if r, ok := hs.h.(nlink.NsRenamer); ok {
		err := r.LinkSetNsFdAndName(hl, fd, name)
		if err == nil {
			pl, err := ps.find(id, name)
			if err != nil {
				return nil, fmt.Errorf("find the device after the move: %w", err)
			}
			return pl, nil
		}
		if _, herr := hs.find(id, orig.IfName); errors.Is(herr, errNotHere) {
			// It moved but was not renamed: it is there under its old name.
			pl, perr := ps.find(id, orig.IfName)
			if perr != nil {
				return nil, errors.Join(err, fmt.Errorf("link %s left the host but is not in the pod netns: %w", orig.IfName, perr))
			}
			if rerr := ps.h.LinkSetName(pl, name); rerr != nil {
				return nil, errors.Join(err, rerr, a.returnLink(ctx, hs, ps, pl, orig))
			}
			return ps.refresh(pl, id)
		}
		log.V(2).Info("Move-and-rename in one request refused; moving through a temporary name", "err", err)
	}
	// Two steps: move (under a temporary name when the host name is taken
	// in the pod; the kernel wants the link down to rename it), then rename.
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

// configure sets the pod-side state of link l: MTU, MAC, addresses, up,
// routes, announcements. Each step is skipped when already so, which
// makes a retried attach work. steps is told when each part ended.
func configure(ctx context.Context, pod nlink.Handle, l netlink.Link, p parsed, nsPath string, steps *stepTimer) error {
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
	steps.mark(StepLink)
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
	steps.mark(StepRoutes)
	if len(ips) > 0 {
		if a.EncapType != "" && a.EncapType != "ether" {
			log.V(2).Info("Not announcing addresses on a non-Ethernet link", "encap", a.EncapType)
		} else if err := announce(nsPath, a.Index, mac, ips); err != nil {
			// Peers learn the address on first traffic anyway.
			log.Error(err, "Could not announce addresses", "link", a.Name)
		}
		steps.mark(StepAnnounce)
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
	id := orig.Identity
	log := klog.FromContext(ctx).WithValues("podIfName", podIfName, "hostIfName", orig.IfName, "netns", nsPath, "identity", id.String())
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
	if !id.Known() {
		return fmt.Errorf("detach %s (host name %s) from %s: the record holds no identity for the device (PCI address, permanent address or host peer): refusing to change a link found only by its name", podIfName, orig.IfName, nsPath)
	}
	hs := hostScope(host)
	if nsPath == "" {
		return a.finishOnHost(ctx, hs, podIfName, orig, "a pod netns (none known)")
	}
	gone, why, err := NetnsGone(nsPath)
	if err != nil {
		return fmt.Errorf("detach %s: %w", podIfName, err)
	}
	var pod nlink.Handle
	if !gone {
		pod, err = a.openPod(nsPath)
		switch {
		case errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT):
			gone, why = true, "the path vanished"
		case errors.Is(err, unix.EINVAL):
			gone, why = true, "the path is not a network namespace (EINVAL)"
		case err != nil:
			return fmt.Errorf("detach %s: %w", podIfName, err)
		}
	}
	where := "netns " + nsPath
	if gone {
		log.Info("Pod netns is gone; the kernel returns physical netdevs to the host, looking for the device there", "reason", why)
		where = fmt.Sprintf("netns %s (gone: %s)", nsPath, why)
	} else {
		defer pod.Close()
		ps := podScope(pod, nsPath, a.hostNsPath)
		pl, err := ps.find(id, podIfName)
		if err == nil {
			if pl.Attrs().Name != podIfName {
				log.Info("The device is in the pod netns under another name; returning it", "name", pl.Attrs().Name)
			}
			if err := a.returnLink(ctx, hs, ps, pl, orig); err != nil {
				return fmt.Errorf("detach %s from %s: %w", podIfName, nsPath, err)
			}
			log.V(2).Info("Detached netdev")
			return nil
		}
		if !errors.Is(err, errNotHere) {
			return fmt.Errorf("detach %s: %w", podIfName, err)
		}
		log.Info("Device not in the pod netns; looking for it on the host")
	}
	return a.finishOnHost(ctx, hs, podIfName, orig, where)
}

// finishOnHost finds the device on the host by its identity (already
// restored, returned by the kernel under its pod name or dev<ifindex>,
// parked, or any other name) and restores it there. where says where it
// was looked for before, for the error when it is nowhere.
func (a attacher) finishOnHost(ctx context.Context, hs scope, podIfName string, orig Original, where string) error {
	hints := []string{orig.IfName, podIfName, parkName(orig)}
	if orig.IfIndex > 0 {
		hints = append(hints, fmt.Sprintf("dev%d", orig.IfIndex))
	}
	l, err := hs.find(orig.Identity, hints...)
	if errors.Is(err, errNotHere) {
		return fmt.Errorf("detach: the device %s (host name %s, pod name %s) is in neither %s nor the host netns (every host link checked): nothing changed: %w", orig.Identity, orig.IfName, podIfName, where, ErrDeviceGone)
	}
	if err != nil {
		return fmt.Errorf("detach %s: %w", podIfName, err)
	}
	if l.Attrs().Name != orig.IfName {
		klog.FromContext(ctx).Info("Found the device on the host", "name", l.Attrs().Name, "identity", orig.Identity.String())
	}
	return a.hostFinish(ctx, hs, l, orig)
}

// hostFinish restores the device l, which is on the host and was
// identified by the caller: down, name (parked under parkName if the
// original name is taken), MAC, MTU, then up if it was. Steps already so
// are skipped. An XDP program on it is taken off: the pod attached it
// (one stays on a netdev across namespaces), and the next pod must not
// get it.
func (a attacher) hostFinish(ctx context.Context, hs scope, l netlink.Link, orig Original) error {
	host := hs.h
	var errs []error
	at := l.Attrs()
	if x := at.Xdp; x != nil && x.Attached {
		if d, ok := host.(nlink.XDPDetacher); !ok {
			errs = append(errs, fmt.Errorf("%s came back with XDP program %d attached, which this handle cannot take off", at.Name, x.ProgId))
		} else if err := d.LinkDetachXDP(l); err != nil {
			errs = append(errs, fmt.Errorf("take off XDP program %d that %s came back with: %w", x.ProgId, at.Name, err))
		} else {
			klog.FromContext(ctx).Info("Took off an XDP program the device came back with", "link", at.Name, "progID", x.ProgId)
		}
	}
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
		nl, err := hs.refresh(l, orig.Identity)
		if err == nil {
			err = host.LinkSetUp(nl)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("set %s up: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// returnLink takes the device pl (in the pod netns, identified by the
// caller) back to the host as orig says: down, MAC and MTU, then moved
// under its original name — one request when the pod handle can send it,
// else through a temporary name.
func (a attacher) returnLink(ctx context.Context, hs, ps scope, pl netlink.Link, orig Original) error {
	pod := ps.h
	// Work from its current state, not the caller's copy.
	pl, err := ps.refresh(pl, orig.Identity)
	if err != nil {
		return err
	}
	at := pl.Attrs()
	if at.Flags&net.FlagUp != 0 {
		if err := pod.LinkSetDown(pl); err != nil {
			return fmt.Errorf("set %s down: %w", at.Name, err)
		}
	}
	// Any failure before the move leaves the link in the pod (down) for a
	// retry, which finds it by its identity.
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
	var names []string // where to look for it on the host first
	if r, ok := pod.(nlink.NsRenamer); ok {
		if err := r.LinkSetNsFdAndName(pl, fd, orig.IfName); err == nil {
			moved, names = true, []string{orig.IfName}
		} else if _, perr := pod.LinkByIndex(at.Index); isNotFound(perr) {
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
	hl, err := hs.find(orig.Identity, names...)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("%s left the pod netns: %w", at.Name, err))...)
	}
	errs = append(errs, a.hostFinish(ctx, hs, hl, orig))
	return errors.Join(errs...)
}
