package netattach

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// Identity is what makes a link the device a record is about. A name is
// not an identity: a tenant with NET_ADMIN in the pod renames links and
// creates new ones, and the kernel renames a netdev it returns from a
// dying netns to "dev<ifindex>" when its pod name is taken on the host.
// Nor is a MAC address, which the same tenant can set. Exactly one field
// is set, the first that applies:
//
//   - PCIAddress: the PCI function the netdev belongs to, as netlink
//     reports it (IFLA_PARENT_DEV_NAME on bus "pci", Linux 5.15 and
//     later; the same parent as the netdev's sysfs "device" link). Every
//     VF and PF netdev has one, in any netns.
//   - PermAddr: the permanent (burned-in) address (IFLA_PERM_ADDRESS) of
//     a netdev without a PCI parent.
//   - HostPeerIndex: for a virtual netdev with neither (the veth standing
//     in for a VF on the simulated node and in host-kernel tests, or a
//     macvlan), the host ifindex of the link it is tied to (its veth peer
//     or macvlan lower device), which stays in the host netns. It matches
//     a link of the same Kind whose IFLA_LINK is that index in the host
//     netns: nobody without NET_ADMIN over the host netns can make such a
//     link. (The kind tells a macvlan from its lower device's own veth
//     peer; two macvlans on one lower device are ambiguous, and find then
//     refuses both.)
//
// The zero Identity is unknown: nothing matches it, so nothing is touched.
type Identity struct {
	PCIAddress    string `json:"pciAddress,omitempty"`
	PermAddr      string `json:"permAddr,omitempty"`
	HostPeerIndex int    `json:"hostPeerIndex,omitempty"`
	// Kind is the link kind ("veth", "macvlan") of a HostPeerIndex
	// identity.
	Kind string `json:"kind,omitempty"`
}

// Known reports whether the identity can match a link.
func (id Identity) Known() bool {
	return id.PCIAddress != "" || id.PermAddr != "" || (id.HostPeerIndex > 0 && id.Kind != "")
}

func (id Identity) String() string {
	switch {
	case id.PCIAddress != "":
		return "PCI " + id.PCIAddress
	case id.PermAddr != "":
		return "permanent address " + id.PermAddr
	case id.HostPeerIndex > 0:
		return fmt.Sprintf("%s tied to host ifindex %d", id.Kind, id.HostPeerIndex)
	}
	return "unknown identity"
}

// identityOf reads the identity of a link in the host netns.
func identityOf(l netlink.Link) Identity {
	a := l.Attrs()
	if a.ParentDevBus == "pci" && a.ParentDev != "" {
		return Identity{PCIAddress: a.ParentDev}
	}
	if permAddr(a) != "" {
		return Identity{PermAddr: permAddr(a)}
	}
	if a.ParentIndex > 0 && a.ParentIndex != a.Index && a.NetNsID < 0 {
		return Identity{HostPeerIndex: a.ParentIndex, Kind: l.Type()}
	}
	return Identity{}
}

func permAddr(a *netlink.LinkAttrs) string {
	if len(a.PermHWAddr) == 0 || bytes.Count(a.PermHWAddr, []byte{0}) == len(a.PermHWAddr) {
		return ""
	}
	return a.PermHWAddr.String()
}

// ReadIdentity reads the identity of l, a link in the host netns. When the
// netdev has a PCI parent and pciAddress is not "", they must agree: the
// name may have moved to another device since it was looked up.
func ReadIdentity(l netlink.Link, pciAddress string) (Identity, error) {
	id := identityOf(l)
	name := l.Attrs().Name
	switch {
	case !id.Known():
		return id, fmt.Errorf("host netdev %s has no PCI parent, no permanent address and no host peer: it cannot be identified, so it is not moved", name)
	case pciAddress != "" && id.PCIAddress != "" && !strings.EqualFold(id.PCIAddress, pciAddress):
		return id, fmt.Errorf("host netdev %s belongs to PCI %s, not to the device's PCI %s", name, id.PCIAddress, pciAddress)
	}
	return id, nil
}

// scope is one netns in which links are looked up by identity: the host
// (hostNsPath "") or a pod netns.
type scope struct {
	h    nlink.Handle
	name string // for errors: "the host" or "netns <path>"
	// hostNsPath is the host netns, opened to learn its id in a pod netns
	// ("" when the scope is the host itself).
	hostNsPath string
}

func hostScope(h nlink.Handle) scope { return scope{h: h, name: "the host"} }

func podScope(h nlink.Handle, nsPath, hostNsPath string) scope {
	return scope{h: h, name: "netns " + nsPath, hostNsPath: hostNsPath}
}

// hostNsid is the id by which this scope's netns knows the host netns:
// -1 in the host itself (a link tied to a host link there reports no
// NetNsID), and -2 (matching nothing) when the pod netns has assigned
// the host none.
func (s scope) hostNsid() (int, error) {
	if s.hostNsPath == "" {
		return -1, nil
	}
	f, err := os.Open(s.hostNsPath)
	if err != nil {
		return 0, fmt.Errorf("open host netns %s: %w", s.hostNsPath, err)
	}
	defer f.Close()
	id, err := s.h.GetNetNsIdByFd(int(f.Fd()))
	if err != nil {
		return 0, fmt.Errorf("id of the host netns in %s: %w", s.name, err)
	}
	if id < 0 {
		return -2, nil
	}
	return id, nil
}

// is reports whether link l (in this scope) is the device id.
func (s scope) is(l netlink.Link, id Identity) (bool, error) {
	a := l.Attrs()
	switch {
	case id.PCIAddress != "":
		return a.ParentDevBus == "pci" && strings.EqualFold(a.ParentDev, id.PCIAddress), nil
	case id.PermAddr != "":
		// Not a PCI netdev (those are known by their PCI parent only).
		return a.ParentDevBus != "pci" && permAddr(a) != "" && strings.EqualFold(permAddr(a), id.PermAddr), nil
	case id.HostPeerIndex > 0:
		if a.ParentDev != "" || permAddr(a) != "" || a.ParentIndex != id.HostPeerIndex || l.Type() != id.Kind {
			return false, nil
		}
		nsid, err := s.hostNsid()
		if err != nil {
			return false, err
		}
		return a.NetNsID == nsid, nil
	}
	return false, nil
}

// errNotHere is returned by find when no link in the scope is the device.
var errNotHere = errors.New("no link with that identity")

// find returns the link in this scope that is the device id. The names
// are tried first (cheap, and usually right); then every link is listed.
// Links that are not the device are never returned, whatever their name.
// More than one link with the identity is an error: nothing is touched.
func (s scope) find(id Identity, names ...string) (netlink.Link, error) {
	if !id.Known() {
		return nil, fmt.Errorf("look for the device in %s: no identity recorded (PCI address, permanent address or host peer), so no link can be confirmed to be it", s.name)
	}
	for _, n := range names {
		if n == "" {
			continue
		}
		l, err := s.h.LinkByName(n)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("look up %s in %s: %w", n, s.name, err)
		}
		ok, err := s.is(l, id)
		if err != nil {
			return nil, err
		}
		if ok {
			return l, nil
		}
	}
	all, err := s.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links in %s: %w", s.name, err)
	}
	var found netlink.Link
	for _, l := range all {
		ok, err := s.is(l, id)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("two links in %s have %s (%s and %s): not touching either", s.name, id, found.Attrs().Name, l.Attrs().Name)
		}
		found = l
	}
	if found == nil {
		return nil, fmt.Errorf("%s in %s: %w", id, s.name, errNotHere)
	}
	return found, nil
}

// refresh re-reads link l by index and confirms it is still the device.
func (s scope) refresh(l netlink.Link, id Identity) (netlink.Link, error) {
	fresh, err := s.h.LinkByIndex(l.Attrs().Index)
	if err != nil {
		return nil, fmt.Errorf("look up %s (index %d) in %s: %w", l.Attrs().Name, l.Attrs().Index, s.name, err)
	}
	ok, err := s.is(fresh, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("link %s (index %d) in %s is no longer %s", fresh.Attrs().Name, fresh.Attrs().Index, s.name, id)
	}
	return fresh, nil
}
