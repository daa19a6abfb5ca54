package netattach

// The package's entry points (Attach, Detach, ReadOriginal, InNetns), the
// attacher that carries their seams, and small helpers of both ways; the
// attach itself is in attach.go, the detach in detach.go.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/ethtool"
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
	// openEthtool opens an ethtool handle in the host netns, for the
	// offload features (features.go). nil: they are neither recorded
	// nor restored (tests whose links are fakes, which a real ioctl
	// must never be aimed at).
	openEthtool func() (ethtool.Handle, error)
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
func kernelAttacher() attacher {
	return attacher{openPod: openAt, hostNsPath: HostNetnsPath, openEthtool: openHostEthtool}
}

// openHostEthtool opens an ethtool handle in the calling thread's netns,
// which is the host's (see HostNetnsPath).
func openHostEthtool() (ethtool.Handle, error) { return ethtool.Open() }

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

// AttachRecorded is Attach for a caller that recorded the device's
// Original with ReadOriginal before: it does not read the ethtool
// settings again (offload features, rings, channels), which only the
// Original needs. That keeps the runtime's sandbox hook to the netlink
// calls of the move, and a driver's odd ethtool answer cannot fail it.
func AttachRecorded(ctx context.Context, hostNS nlink.Handle, netnsPath string, spec Spec, id Identity) error {
	a := kernelAttacher()
	a.openEthtool = nil
	_, err := a.attach(ctx, hostNS, netnsPath, spec, id)
	return err
}

// Detach returns the device orig.Identity from the netns at netnsPath to
// the host: down, MAC and MTU restored, renamed to orig.IfName (through a
// temporary name if that name is taken), moved back, its link flags
// (promiscuous, all-multicast, ARP) and alias put back as orig.Flags has
// them, its offload features, ring sizes and channel counts as orig has
// them, an XDP program the pod attached taken off, and up again if it
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
// its ethtool settings and its identity included (checked against
// pciAddress, the device's PCI address from the driver's record, when the
// netdev has a PCI parent).
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
	a := kernelAttacher()
	if o.Features, err = a.readFeatures(ctx, l); err != nil {
		return Original{}, err
	}
	if err := a.readRingsChannels(ctx, l, &o); err != nil {
		return Original{}, err
	}
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
	return Original{IfName: a.Name, MAC: a.HardwareAddr.String(), MTU: a.MTU, Up: a.Flags&net.FlagUp != 0, IfIndex: a.Index, Identity: identityOf(l), Flags: flagsOf(l)}
}

// flagsOf reads l's link flags and alias. The flags come from the
// ifinfomsg's flags (RawFlags), where the kernel reports promiscuous and
// all-multicast mode as set by a user; LinkAttrs.Promisc and Allmulti
// are not that (Promisc is the promiscuity counter, which a packet
// socket raises too).
func flagsOf(l netlink.Link) LinkFlags {
	a := l.Attrs()
	return LinkFlags{
		Known:    true,
		Promisc:  a.RawFlags&unix.IFF_PROMISC != 0,
		AllMulti: a.RawFlags&unix.IFF_ALLMULTI != 0,
		NoARP:    a.RawFlags&unix.IFF_NOARP != 0,
		Alias:    a.Alias,
		TxQLen:   a.TxQLen,
		Group:    a.Group,
	}
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return err != nil && (errors.As(err, &nf) || errors.Is(err, unix.ENODEV))
}
