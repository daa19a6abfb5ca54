package driver

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// podIfNameOnHost refuses a pod interface name that is the name of another
// link in the host netns now. The detach path finds the device by its
// identity, never by this name (pkg/netattach), so this is defence in
// depth: a VF that the kernel returns from a dying pod netns takes a
// dev<ifindex> name instead of its pod name when that is taken, and an
// operator reading logs should never see a pod name that is a node NIC's.
// The device's own host name (ownHostName) is allowed: it leaves the host
// when the device moves. A nil handle (no netlink seam) checks nothing.
func podIfNameOnHost(h nlink.Handle, podIfName, ownHostName string) error {
	if h == nil || podIfName == "" || podIfName == ownHostName {
		return nil
	}
	l, err := h.LinkByName(podIfName)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf) || errors.Is(err, unix.ENODEV):
		return nil
	case err != nil:
		return fmt.Errorf("ifName %q: look it up in the host netns: %w", podIfName, err)
	}
	// The tenant named the link; the error says no more about it (no
	// index, no type) than that the name is taken.
	return fmt.Errorf("ifName %q is the name of host link %s on this node; choose another name", podIfName, l.Attrs().Name)
}
