package netattach

// The detach: the device found by its identity in the pod netns, or on
// the host when the netns is gone or it is not there, and put back on the
// host under its original name, MAC and MTU (parked under a fixed name
// when that name is taken, so a retry finds it), with its original link
// flags, alias and offload features and without an XDP program.

import (
	"context"
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

func (a attacher) detach(ctx context.Context, host nlink.Handle, nsPath, podIfName string, orig Original) error {
	id := orig.Identity
	log := klog.FromContext(ctx).WithValues("podIfName", podIfName, "hostIfName", orig.IfName, "netns", nsPath, "identity", id.String())
	if err := checkDetach(nsPath, podIfName, orig); err != nil {
		return err
	}
	hs := hostScope(host)
	if nsPath == "" {
		return a.finishOnHost(ctx, hs, podIfName, orig, "a pod netns (none known)")
	}
	pod, gone, why, err := a.openIfThere(nsPath)
	if err != nil {
		return fmt.Errorf("detach %s: %w", podIfName, err)
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

// checkDetach checks what a detach is given before anything is looked
// up: the names, the MAC, and an identity to find the device by.
func checkDetach(nsPath, podIfName string, orig Original) error {
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
	if !orig.Identity.Known() {
		return fmt.Errorf("detach %s (host name %s) from %s: the record holds no identity for the device (PCI address, permanent address or host peer): refusing to change a link found only by its name", podIfName, orig.IfName, nsPath)
	}
	return nil
}

// openIfThere opens a handle in the pod netns at nsPath, unless the
// netns is gone (NetnsGone) or vanishes meanwhile: then gone is true,
// with why.
func (a attacher) openIfThere(nsPath string) (_ nlink.Handle, gone bool, why string, _ error) {
	gone, why, err := NetnsGone(nsPath)
	if err != nil || gone {
		return nil, gone, why, err
	}
	pod, err := a.openPod(nsPath)
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT):
		return nil, true, "the path vanished", nil
	case errors.Is(err, unix.EINVAL):
		return nil, true, "the path is not a network namespace (EINVAL)", nil
	case err != nil:
		return nil, false, "", err
	}
	return pod, false, "", nil
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
// identified by the caller: down, MAC, MTU, link flags and alias
// (restoreFlags), offload features, ring sizes and channel counts
// (restoreFeatures, restoreRingsChannels), name (parked under parkName if the original name is
// taken), then up if it was. Steps already so are skipped. An XDP
// program on it is taken off: the pod attached it (one stays on a netdev
// across namespaces), and the next pod must not get it.
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
	errs = append(errs, restoreFlags(ctx, host, l, orig.Flags)...)
	if err := a.restoreFeatures(ctx, l, orig.Features); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, a.restoreRingsChannels(ctx, l, orig)...)
	name, err := renameBack(host, l, orig)
	if err != nil {
		errs = append(errs, err)
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

// restoreFlags puts back on the host link l the promiscuous and
// all-multicast mode, ARP, alias, transmit queue length and device group
// of want (hostDefaultFlags when want
// was not recorded): a pod with NET_ADMIN may have changed them, the
// kernel keeps them on the device across namespaces, and the next pod
// would get them ("arp off" breaks its neighbour resolution). Each one
// already so is skipped; every failure is returned.
func restoreFlags(ctx context.Context, host nlink.Handle, l netlink.Link, want LinkFlags) []error {
	if !want.Known {
		want = hostDefaultFlags()
	}
	have := flagsOf(l)
	name := l.Attrs().Name
	var errs []error
	set := func(what string, on bool, setOn, setOff func(netlink.Link) error) {
		fn, state := setOff, "off"
		if on {
			fn, state = setOn, "on"
		}
		if err := fn(l); err != nil {
			errs = append(errs, fmt.Errorf("restore %s %s of %s: %w", what, state, name, err))
			return
		}
		klog.FromContext(ctx).V(2).Info("Restored a link flag the device came back with changed", "link", name, "flag", what, "state", state)
	}
	if have.Promisc != want.Promisc {
		set("promiscuous mode", want.Promisc, host.SetPromiscOn, host.SetPromiscOff)
	}
	if have.AllMulti != want.AllMulti {
		set("all-multicast mode", want.AllMulti, host.LinkSetAllmulticastOn, host.LinkSetAllmulticastOff)
	}
	if have.NoARP != want.NoARP {
		// ARP on is IFF_NOARP off.
		set("ARP", !want.NoARP, host.LinkSetARPOn, host.LinkSetARPOff)
	}
	if have.Alias != want.Alias {
		if err := host.LinkSetAlias(l, want.Alias); err != nil {
			errs = append(errs, fmt.Errorf("restore alias %q of %s (it has %q): %w", want.Alias, name, have.Alias, err))
		} else {
			klog.FromContext(ctx).V(2).Info("Restored the alias the device came back with changed", "link", name, "alias", want.Alias)
		}
	}
	if want.TxQLen > 0 && have.TxQLen != want.TxQLen {
		if err := host.LinkSetTxQLen(l, want.TxQLen); err != nil {
			errs = append(errs, fmt.Errorf("restore transmit queue length %d of %s (it has %d): %w", want.TxQLen, name, have.TxQLen, err))
		} else {
			klog.FromContext(ctx).V(2).Info("Restored the transmit queue length the device came back with changed", "link", name, "txQLen", want.TxQLen)
		}
	}
	if have.Group != want.Group {
		if err := host.LinkSetGroup(l, int(want.Group)); err != nil {
			errs = append(errs, fmt.Errorf("restore device group %d of %s (it has %d): %w", want.Group, name, have.Group, err))
		} else {
			klog.FromContext(ctx).V(2).Info("Restored the device group the device came back with changed", "link", name, "group", want.Group)
		}
	}
	return errs
}

// renameBack renames the host link l to orig.IfName. When that name is
// taken it parks the link under parkName, so that a retry finds it. It
// returns the name the link has now, and the rename's error.
func renameBack(host nlink.Handle, l netlink.Link, orig Original) (string, error) {
	name := l.Attrs().Name
	if name == orig.IfName {
		return name, nil
	}
	err := host.LinkSetName(l, orig.IfName)
	if err == nil {
		return orig.IfName, nil
	}
	park := parkName(orig)
	if errors.Is(err, unix.EEXIST) && name != park {
		if perr := host.LinkSetName(l, park); perr == nil {
			name = park
		}
	}
	return name, fmt.Errorf("rename %s back to %s (the link is on the host as %s): %w", l.Attrs().Name, orig.IfName, name, err)
}

// returnLink takes the device pl (in the pod netns, identified by the
// caller) back to the host as orig says: down, MAC and MTU, then moved
// under its original name (moveToHost), then restored there (hostFinish).
func (a attacher) returnLink(ctx context.Context, hs, ps scope, pl netlink.Link, orig Original) error {
	// Work from its current state, not the caller's copy.
	pl, err := ps.refresh(pl, orig.Identity)
	if err != nil {
		return err
	}
	// Any failure before the move leaves the link in the pod (down) for a
	// retry, which finds it by its identity.
	if err := restoreInPod(ps.h, pl, orig); err != nil {
		return err
	}
	names, err := a.moveToHost(ctx, ps.h, pl, orig)
	if err != nil {
		return err
	}
	hl, err := hs.find(orig.Identity, names...)
	if err != nil {
		return fmt.Errorf("%s left the pod netns: %w", pl.Attrs().Name, err)
	}
	return a.hostFinish(ctx, hs, hl, orig)
}

// restoreInPod sets the device pl down in the pod netns and restores its
// MAC and MTU there, before it leaves.
func restoreInPod(pod nlink.Handle, pl netlink.Link, orig Original) error {
	at := pl.Attrs()
	if at.Flags&net.FlagUp != 0 {
		if err := pod.LinkSetDown(pl); err != nil {
			return fmt.Errorf("set %s down: %w", at.Name, err)
		}
	}
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
	return nil
}

// moveToHost moves the device pl from the pod netns to the host under
// its original name, in one request when the pod handle can send it, else
// parked under parkName (a name nobody uses in either netns). It returns
// the names to look for it under on the host first.
func (a attacher) moveToHost(ctx context.Context, pod nlink.Handle, pl netlink.Link, orig Original) ([]string, error) {
	at := pl.Attrs()
	hf, err := os.Open(a.hostNsPath)
	if err != nil {
		return nil, fmt.Errorf("open host netns: %w", err)
	}
	defer hf.Close()
	fd := int(hf.Fd())
	if r, ok := pod.(nlink.NsRenamer); ok {
		err := r.LinkSetNsFdAndName(pl, fd, orig.IfName)
		if err == nil {
			return []string{orig.IfName}, nil
		}
		if _, perr := pod.LinkByIndex(at.Index); isNotFound(perr) {
			// It left the pod but the rename failed: it is on the host
			// under its pod name; hostFinish names it.
			return []string{at.Name, orig.IfName}, nil
		}
		klog.FromContext(ctx).V(2).Info("Move back under the original name refused; parking it", "err", err)
	}
	// Park under a name nobody uses in either netns, move, rename there.
	park := parkName(orig)
	if at.Name != park {
		if err := pod.LinkSetName(pl, park); err != nil {
			return nil, fmt.Errorf("rename %s to %s: %w", at.Name, park, err)
		}
	}
	if err := pod.LinkSetNsFd(pl, fd); err != nil {
		return nil, fmt.Errorf("move %s to the host netns: %w", park, err)
	}
	return []string{park}, nil
}

// parkName is the deterministic name Detach leaves a link under on the
// host when its original name is taken, so a retry finds it.
func parkName(orig Original) string {
	h := fnv.New32a()
	h.Write([]byte(orig.IfName + "/" + orig.MAC))
	return fmt.Sprintf("sdrp%08x", h.Sum32())
}
